"""Federated learning's REST API: what the party's client (`federation.client`) and the pages use. Thin: each
class validates, calls one service or selector and shapes the answer."""

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from federation import selectors, services
from federation.models import Federation, Party, Round
from federation.services.common import STRATEGY_NAMES
from federation.waiting import STATE_WAIT_MAX
from ledger.services import AMOUNT_MAX
from platform_site.api import api_errors, paginated_response

ID_MAX = 2**63 - 1


# ---- shapes of the answers


class FederationCurrentRoundSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Round.Status.choices)
    global_sha256 = serializers.CharField(
        help_text="the digest (ml.federated.tensors.digest) of the global model"
    )
    deadline = serializers.DateTimeField()
    secagg_roster = serializers.ListField(
        child=serializers.IntegerField(), allow_null=True, help_text="party ids that mask together"
    )
    global_weights = serializers.CharField(
        required=False,
        help_text="the global model itself (safetensors, base64): only in a look asked with `weights=true`, "
        "when the round is open, your party is admitted, and the file is at most "
        "FEDERATION_STATE_WEIGHTS_MAX_BYTES (4 MiB by default; else download it)",
    )


class FederationClosedRoundSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    metrics = serializers.JSONField(help_text="the aggregated model's metrics on the validation data")


class FederationMeSerializer(serializers.Serializer):
    party = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Party.Status.choices)
    epsilon_spent = serializers.FloatField()


class FederationPrivacySerializer(serializers.Serializer):
    clip_norm = serializers.FloatField()
    noise_multiplier = serializers.FloatField()
    delta = serializers.FloatField()


class FederationOutputSerializer(serializers.ModelSerializer):
    coordinator = serializers.CharField(source="coordinator.username")
    admitted = serializers.IntegerField(read_only=True, default=None, help_text="parties admitted")

    class Meta:
        model = Federation
        fields = [
            "id", "name", "description", "coordinator", "status", "strategy", "secure_aggregation", "rounds",
            "min_parties", "target_metric", "target_value", "reward_pool", "fee_bp", "admitted", "created_at",
        ]  # fmt: skip


class FederationDetailSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    coordinator = serializers.CharField()
    status = serializers.ChoiceField(choices=Federation.Status.choices)
    schema = serializers.JSONField(help_text="the ml.features.FeatureSchema JSON: columns and target")
    spec = serializers.JSONField(help_text="the validated MLP spec (ml.architecture)")
    recipe = serializers.JSONField(
        help_text="local training: optimizer, lr, batch_size, local_epochs, proximal_mu"
    )
    strategy = serializers.ChoiceField(choices=STRATEGY_NAMES)
    options = serializers.JSONField()
    privacy = FederationPrivacySerializer(allow_null=True)
    secure_aggregation = serializers.BooleanField()
    update_norm_bound = serializers.FloatField()
    max_update_bytes = serializers.IntegerField()
    rounds = serializers.IntegerField()
    min_parties = serializers.IntegerField()
    round_deadline = serializers.IntegerField(help_text="seconds each round stays open")
    target_metric = serializers.CharField()
    target_value = serializers.FloatField(allow_null=True)
    reward_pool = serializers.IntegerField(help_text="minor units, escrowed")
    fee_bp = serializers.IntegerField()
    global_sha256 = serializers.CharField(allow_blank=True)
    model_version = serializers.IntegerField(source="model_version_id", allow_null=True)
    created_seq = serializers.IntegerField(allow_null=True)
    finished_seq = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_blank=True)
    current_round = FederationCurrentRoundSerializer(allow_null=True)
    closed_round = FederationClosedRoundSerializer(allow_null=True, help_text="the last round aggregated")
    me = FederationMeSerializer(allow_null=True)


class FederationStateSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Federation.Status.choices)
    rounds = serializers.IntegerField()
    error = serializers.CharField(allow_blank=True)
    current_round = FederationCurrentRoundSerializer(allow_null=True)
    closed_round = FederationClosedRoundSerializer(allow_null=True, help_text="the last round aggregated")
    me = FederationMeSerializer(allow_null=True)


def federation_state(federation: Federation, user, *, weights_after: int | None = None) -> dict:
    """What changes while a federation runs, as the caller sees it: its status, the current round and their
    party (None unless the caller or one of their organizations is a party). With `weights_after`, an open
    round after that one brings its global weights along when the caller's party is admitted to train on it."""
    party = selectors.party_for_user(federation=federation, user=user)
    current, closed = selectors.rounds_latest_state(federation=federation)
    if (
        weights_after is not None
        and current is not None
        and current.status == Round.Status.OPEN
        and current.number > weights_after
        and party is not None
        and party.status == Party.Status.ADMITTED
    ):
        inline = selectors.round_weights_inline(round=current)
        if inline is not None:
            current.global_weights = inline
    return {
        "id": federation.pk, "status": federation.status, "rounds": federation.rounds, "error": federation.error,
        "current_round": current, "closed_round": closed,
        "me": {"party": party.pk, "status": party.status, "epsilon_spent": party.epsilon_spent} if party else None,
    }  # fmt: skip


def federation_view(federation: Federation, user) -> dict:
    """The detail of a federation as the caller sees it: the settings, the current round and their party."""
    data = {f: getattr(federation, f) for f in FederationDetailSerializer().fields if hasattr(federation, f)}
    data["coordinator"] = federation.coordinator.username
    data["model_version_id"] = federation.model_version_id
    data.update(federation_state(federation, user))
    return data


class FederationRoundSerializer(serializers.ModelSerializer):
    submitted = serializers.IntegerField(read_only=True, default=None, help_text="updates accepted")

    class Meta:
        model = Round
        fields = [
            "number", "status", "global_sha256", "deadline", "secagg_roster", "result_sha256", "metrics",
            "included", "excluded", "submitted", "extensions", "error", "opened_seq", "aggregated_seq", "job",
            "created_at", "closed_at",
        ]  # fmt: skip


# ---- federations


class FederationListApi(APIView):
    """GET: federations, newest first (`?status=`, `?mine=true`). POST (multipart): create one as its
    coordinator; the reward pool is escrowed from your account."""

    parser_classes = [MultiPartParser, FormParser]

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=Federation.Status.choices, required=False)
        mine = serializers.BooleanField(
            required=False, default=False, help_text="only yours (coordinated or joined)"
        )

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        description = serializers.CharField(max_length=5_000, required=False, allow_blank=True, default="")
        schema = serializers.JSONField(binary=True, help_text="the ml.features.FeatureSchema JSON")
        spec = serializers.JSONField(
            binary=True,
            help_text='the MLP, e.g. {"hidden": [64], "activation": "relu"}; widths come from the schema',
        )
        recipe = serializers.JSONField(
            binary=True,
            help_text='e.g. {"optimizer": "sgd", "lr": 0.05, "batch_size": 32, "local_epochs": 1}',
        )
        strategy = serializers.ChoiceField(choices=STRATEGY_NAMES)
        options = serializers.JSONField(
            binary=True, required=False, default=None, help_text="the strategy's options"
        )
        privacy = serializers.JSONField(
            binary=True,
            required=False,
            default=None,
            help_text='{"clip_norm", "noise_multiplier", "delta"} or null',
        )
        secure_aggregation = serializers.BooleanField(required=False, default=False)
        update_norm_bound = serializers.FloatField(help_text="the largest L2 norm an update may have")
        rounds = serializers.IntegerField(min_value=1, max_value=1_000)
        min_parties = serializers.IntegerField(min_value=1, max_value=1_000)
        round_deadline = serializers.IntegerField(min_value=10, max_value=30 * 24 * 3600, help_text="seconds")
        target_metric = serializers.CharField(
            max_length=16, help_text="accuracy or loss; regression: loss, rmse, mae, r2"
        )
        target_value = serializers.FloatField(required=False, allow_null=True, default=None)
        reward_pool = serializers.IntegerField(
            min_value=0, max_value=AMOUNT_MAX, default=0, help_text="minor units"
        )
        seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)
        contribution_method = serializers.ChoiceField(choices=["loo", "shapley"], default="loo")
        validation = serializers.FileField(
            help_text="the coordinator's validation rows (CSV with the target)"
        )

    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        parameters=[FilterSerializer],
        responses={200: FederationOutputSerializer(many=True), **api_errors(400)},
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        rows = selectors.federation_list(status=f.get("status"), mine=request.user if f["mine"] else None)
        return paginated_response(
            request=request, view=self, queryset=rows, serializer_class=FederationOutputSerializer
        )

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={201: FederationDetailSerializer, **api_errors(400, 402, 429)},
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        federation = services.federation_create(coordinator=request.user, **data.validated_data)
        return Response(
            FederationDetailSerializer(federation_view(federation, request.user)).data,
            status=status.HTTP_201_CREATED,
        )


class FederationDetailApi(APIView):
    @extend_schema(responses={200: FederationDetailSerializer, **api_errors(404)})
    def get(self, request, federation_id: int):
        federation = selectors.federation_get(federation_id=federation_id)
        return Response(FederationDetailSerializer(federation_view(federation, request.user)).data)


class FederationStateApi(APIView):
    """The lean look a party's client polls: the status, the current round and your party, without the settings
    (which do not change once the federation is created: read them once from the detail)."""

    class QuerySerializer(serializers.Serializer):
        after = serializers.IntegerField(
            min_value=0,
            max_value=2**31 - 1,
            required=False,
            help_text="with `wait`: the round you are done with",
        )
        wait = serializers.FloatField(
            min_value=0, max_value=STATE_WAIT_MAX, required=False,
            help_text="with `after`: hold the answer up to this many seconds until a later round opens, the "
            "federation ends or your party changes",
        )  # fmt: skip
        weights = serializers.BooleanField(
            default=False,
            help_text="bring the open round's global weights in the answer (`current_round.global_weights`), "
            "when there are some for you to train on (a round after `after`, when given): no model download",
        )

    @extend_schema(
        parameters=[QuerySerializer], responses={200: FederationStateSerializer, **api_errors(400, 404)}
    )
    def get(self, request, federation_id: int):
        # A held look (after and wait) is held by federation.waiting, which asks this view until there is news.
        asked = self.QuerySerializer(data=request.query_params)
        asked.is_valid(raise_exception=True)
        query = asked.validated_data
        federation = selectors.federation_state_get(federation_id=federation_id)
        state = federation_state(
            federation, request.user, weights_after=query.get("after", 0) if query["weights"] else None
        )
        return Response(FederationStateSerializer(state).data)


class FederationPartySerializer(serializers.ModelSerializer):
    party = serializers.IntegerField(source="pk")
    owner = serializers.CharField(source="owner_label")

    class Meta:
        model = Party
        fields = [
            "party", "owner", "status", "key_id", "contribution", "weight", "epsilon_spent", "joined_seq",
            "admitted_seq", "removed_seq", "created_at",
        ]  # fmt: skip


class JoinApi(APIView):
    """Ask to join with a registered Ed25519 key (yours or an organization's you belong to)."""

    parser_classes = [JSONParser, FormParser, MultiPartParser]

    class InputSerializer(serializers.Serializer):
        key_id = serializers.CharField(max_length=16)

    @extend_schema(
        request=InputSerializer,
        responses={201: FederationPartySerializer, **api_errors(400, 403, 404, 409, 429)},
    )
    def post(self, request, federation_id: int):
        federation = selectors.federation_get(federation_id=federation_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        party = services.party_join(
            federation=federation, user=request.user, key_id=data.validated_data["key_id"]
        )
        return Response(FederationPartySerializer(party).data, status=status.HTTP_201_CREATED)


class PartyListApi(APIView):
    """The federation's parties and their status, contribution and ε spent."""

    @extend_schema(responses={200: FederationPartySerializer(many=True), **api_errors(404)})
    def get(self, request, federation_id: int):
        federation = selectors.federation_get(federation_id=federation_id)
        return Response(
            FederationPartySerializer(selectors.party_list(federation=federation), many=True).data
        )


class PartyAdmitApi(APIView):
    """The coordinator admits a pending party; reaching the minimum starts round 1."""

    @extend_schema(request=None, responses={200: FederationPartySerializer, **api_errors(403, 404, 409)})
    def post(self, request, federation_id: int, party_id: int):
        federation = selectors.federation_get(federation_id=federation_id)
        party = services.party_admit(federation=federation, party_id=party_id, actor=request.user)
        return Response(FederationPartySerializer(party).data)


class PartyRemoveApi(APIView):
    """The coordinator removes a party."""

    @extend_schema(request=None, responses={200: FederationPartySerializer, **api_errors(403, 404, 409)})
    def post(self, request, federation_id: int, party_id: int):
        federation = selectors.federation_get(federation_id=federation_id)
        party = services.party_remove(federation=federation, party_id=party_id, actor=request.user)
        return Response(FederationPartySerializer(party).data)


# ---- rounds


class RoundListApi(APIView):
    @extend_schema(responses={200: FederationRoundSerializer(many=True), **api_errors(404)})
    def get(self, request, federation_id: int):
        federation = selectors.federation_get(federation_id=federation_id)
        return Response(
            FederationRoundSerializer(selectors.round_list(federation=federation), many=True).data
        )


class RoundDetailApi(APIView):
    @extend_schema(responses={200: FederationRoundSerializer, **api_errors(404)})
    def get(self, request, federation_id: int, number: int):
        federation = selectors.federation_get(federation_id=federation_id)
        return Response(
            FederationRoundSerializer(selectors.round_get(federation=federation, number=number)).data
        )


class RoundModelApi(APIView):
    """The round's global weights (safetensors), with their digest in `X-Content-Digest`; for the coordinator
    and admitted parties."""

    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY),
            **api_errors(403, 404),
        }
    )
    def get(self, request, federation_id: int, number: int):
        federation = selectors.federation_get(federation_id=federation_id)
        selectors.round_require_download(federation=federation, user=request.user)
        rnd = selectors.round_get(federation=federation, number=number, submitted=False)
        response = FileResponse(
            rnd.weights.open("rb"), as_attachment=True, content_type="application/octet-stream",
            filename=f"federation-{federation.pk}-round-{rnd.number}.safetensors",
        )  # fmt: skip
        response["X-Content-Digest"] = rnd.global_sha256
        return response


class UpdateSubmitApi(APIView):
    """Submit your signed update to the open round (multipart). A refusal is a 400 (403 for a key that is not
    an admitted party's) naming the reason, a 409 for a second update or a closed round; each is ledgered."""

    parser_classes = [MultiPartParser]

    class InputSerializer(serializers.Serializer):
        update = serializers.FileField(
            help_text="safetensors of the delta (masked uint64 under secure aggregation)"
        )
        num_examples = serializers.IntegerField(min_value=1, max_value=10**12)
        metrics = serializers.JSONField(
            binary=True, required=False, default=None, help_text='e.g. {"loss": 0.3}'
        )
        key_id = serializers.CharField(max_length=16)
        signature = serializers.CharField(
            max_length=200,
            required=False,
            default=None,
            help_text="base64 Ed25519 over protocol.update_message",
        )
        norm_bound = serializers.FloatField(
            required=False, allow_null=True, default=None, help_text="masked only"
        )

    class OutputSerializer(serializers.Serializer):
        update = serializers.IntegerField()
        sha256 = serializers.CharField()
        entry_seq = serializers.IntegerField()

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={201: OutputSerializer, **api_errors(400, 403, 404, 409, 429)},
    )
    def post(self, request, federation_id: int, number: int):
        federation = selectors.federation_get(federation_id=federation_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        d = data.validated_data
        update = services.update_submit(
            federation=federation, number=number, user=request.user, file=d["update"], num_examples=d["num_examples"],
            metrics=d["metrics"], key_id=d["key_id"], signature=d["signature"], norm_bound=d["norm_bound"],
        )  # fmt: skip
        body = {"update": update.pk, "sha256": update.sha256, "entry_seq": update.entry_seq}
        return Response(self.OutputSerializer(body).data, status=status.HTTP_201_CREATED)


class SecaggApi(APIView):
    """GET: the round's roster and the X25519 keys published so far. POST: publish yours, signed."""

    parser_classes = [JSONParser, FormParser, MultiPartParser]

    class InputSerializer(serializers.Serializer):
        key_id = serializers.CharField(max_length=16)
        public_key = serializers.CharField(max_length=64, help_text="X25519, base64")
        signature = serializers.CharField(
            max_length=200, help_text="base64 Ed25519 over protocol.secagg_key_message"
        )

    class OutputSerializer(serializers.Serializer):
        roster = serializers.ListField(child=serializers.IntegerField())
        keys = serializers.DictField(
            child=serializers.CharField(), help_text="party id -> X25519 key (base64)"
        )
        ready = serializers.BooleanField()

    @extend_schema(responses={200: OutputSerializer, **api_errors(404)})
    def get(self, request, federation_id: int, number: int):
        federation = selectors.federation_get(federation_id=federation_id)
        rnd = selectors.round_get(federation=federation, number=number)
        return Response(self.OutputSerializer(selectors.secagg_state(round=rnd)).data)

    @extend_schema(
        request=InputSerializer, responses={201: OutputSerializer, **api_errors(400, 403, 404, 409)}
    )
    def post(self, request, federation_id: int, number: int):
        federation = selectors.federation_get(federation_id=federation_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        row = services.secagg_key_submit(
            federation=federation, number=number, user=request.user, **data.validated_data
        )
        return Response(
            self.OutputSerializer(selectors.secagg_state(round=row.round)).data,
            status=status.HTTP_201_CREATED,
        )


class FederationSubmissionUpdateSerializer(serializers.Serializer):
    update = serializers.IntegerField(source="pk")
    round = serializers.IntegerField(source="round.number")
    party = serializers.IntegerField(source="party_id")
    sha256 = serializers.CharField()
    num_examples = serializers.IntegerField()
    metrics = serializers.JSONField()
    masked = serializers.BooleanField()
    entry_seq = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()


class FederationSubmissionRejectionSerializer(serializers.Serializer):
    round = serializers.IntegerField(source="round.number", allow_null=True, default=None)
    party = serializers.IntegerField(source="party_id", allow_null=True)
    key_id = serializers.CharField(allow_blank=True)
    sha256 = serializers.CharField(allow_blank=True)
    reason = serializers.CharField()
    status_code = serializers.IntegerField()
    entry_seq = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()


class MySubmissionsApi(APIView):
    """Your parties' accepted updates to this federation and the refusals of what you sent."""

    class OutputSerializer(serializers.Serializer):
        updates = FederationSubmissionUpdateSerializer(many=True)
        rejections = FederationSubmissionRejectionSerializer(many=True)

    @extend_schema(responses={200: OutputSerializer, **api_errors(404)})
    def get(self, request, federation_id: int):
        federation = selectors.federation_get(federation_id=federation_id)
        return Response(
            self.OutputSerializer(
                selectors.submissions_for_user(federation=federation, user=request.user)
            ).data
        )
