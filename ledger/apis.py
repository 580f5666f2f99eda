from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from ledger import chain, selectors, services
from ledger.export import entry_record
from platform_site.accounts import selectors as accounts_selectors
from platform_site.api import api_errors, paginated_response


def _bounded(*, min_value: int, max_value: int = chain.JSON_INT_MAX, **kwargs) -> serializers.IntegerField:
    """An integer the database (bigint) and exact JSON both hold: anything larger is a 400 that says so."""
    return serializers.IntegerField(min_value=min_value, max_value=max_value, **kwargs)


def _hex_list(hashes: list[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


class EntryOutputSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    kind = serializers.CharField()
    actor = serializers.CharField()
    payload = serializers.JSONField()
    created_at = serializers.CharField(help_text="UTC, six fraction digits, as hashed")
    key_id = serializers.CharField()
    actor_key_id = serializers.CharField(allow_null=True)
    prev_hash = serializers.CharField(help_text="hex")
    entry_hash = serializers.CharField(help_text="hex")
    leaf_hash = serializers.CharField(help_text="hex: SHA-256(0x00 || canonical bytes)")
    signature = serializers.CharField(help_text="base64 Ed25519 over entry_hash")
    actor_signature = serializers.CharField(allow_null=True)

    def to_representation(self, entry):
        record = entry_record(entry)
        del record["type"]
        return {**record, "leaf_hash": bytes(entry.leaf_hash).hex()}


class EntryListApi(APIView):
    # The journal is public, like the explorer; anonymous callers get the API's anonymous rate limit.
    permission_classes = [AllowAny]
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    class FilterSerializer(serializers.Serializer):
        kind = serializers.CharField(
            required=False, max_length=100, help_text="exact, or a prefix ending in '.'"
        )
        actor = serializers.CharField(required=False, max_length=64)
        seq_min = _bounded(required=False, min_value=0)
        seq_max = _bounded(required=False, min_value=0)

    @extend_schema(
        parameters=[FilterSerializer], responses={200: EntryOutputSerializer(many=True), **api_errors(400)}
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        entries = selectors.entry_list(**filters.validated_data)
        return paginated_response(
            request=request, view=self, queryset=entries, serializer_class=EntryOutputSerializer
        )


class EntryDetailApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses={200: EntryOutputSerializer, **api_errors(404)})
    def get(self, request, seq: int):
        return Response(EntryOutputSerializer(selectors.entry_get(seq=seq)).data)


class CheckpointApi(APIView):
    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        tree_size = _bounded(required=False, min_value=1)

    @extend_schema(
        parameters=[InputSerializer],
        responses={
            (200, "text/plain"): OpenApiResponse(
                OpenApiTypes.STR, description="the signed note, byte for byte"
            ),
            **api_errors(400, 404),
        },
    )
    def get(self, request):
        params = self.InputSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        checkpoint = selectors.checkpoint_get(tree_size=params.validated_data.get("tree_size"))
        note = selectors.checkpoint_note_with_cosignatures(checkpoint)
        return HttpResponse(note.encode(), content_type="text/plain; charset=utf-8")


class InclusionProofApi(APIView):
    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        seq = _bounded(min_value=0)
        tree_size = _bounded(min_value=1)

    class OutputSerializer(serializers.Serializer):
        seq = serializers.IntegerField()
        tree_size = serializers.IntegerField()
        leaf_hash = serializers.CharField()
        proof = serializers.ListField(child=serializers.CharField())
        root_hash = serializers.CharField()

    @extend_schema(parameters=[InputSerializer], responses={200: OutputSerializer, **api_errors(400)})
    def get(self, request):
        params = self.InputSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        proof = selectors.inclusion_proof(**params.validated_data)
        return Response(
            {
                "seq": proof.seq,
                "tree_size": proof.tree_size,
                "leaf_hash": proof.leaf_hash.hex(),
                "proof": _hex_list(proof.proof),
                "root_hash": proof.root_hash.hex(),
            }
        )


class ConsistencyProofApi(APIView):
    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        first = _bounded(min_value=0)
        second = _bounded(min_value=1)

    class OutputSerializer(serializers.Serializer):
        first = serializers.IntegerField()
        second = serializers.IntegerField()
        first_root = serializers.CharField()
        second_root = serializers.CharField()
        proof = serializers.ListField(child=serializers.CharField())

    @extend_schema(parameters=[InputSerializer], responses={200: OutputSerializer, **api_errors(400)})
    def get(self, request):
        params = self.InputSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        proof = selectors.consistency_proof(**params.validated_data)
        return Response(
            {
                "first": proof.first,
                "second": proof.second,
                "first_root": proof.first_root.hex(),
                "second_root": proof.second_root.hex(),
                "proof": _hex_list(proof.proof),
            }
        )


class PublicKeyListApi(APIView):
    permission_classes = [AllowAny]

    class OutputSerializer(serializers.Serializer):
        name = serializers.CharField()
        key_id = serializers.CharField()
        public_key = serializers.CharField(help_text="raw 32 bytes, base64")
        verifier_key = serializers.CharField(help_text="C2SP: name+hex(key_id)+base64(0x01||key)")
        first_seq = serializers.IntegerField()
        active = serializers.BooleanField()

    @extend_schema(responses={200: OutputSerializer(many=True)})
    def get(self, request):
        from django.conf import settings

        keys = [
            {
                "name": settings.LEDGER_ORIGIN,
                "key_id": key.key_id,
                "public_key": chain.b64encode(bytes(key.public_key)),
                "verifier_key": key.verifier_key,
                "first_seq": key.first_seq,
                "active": key.active,
            }
            for key in selectors.signing_key_list()
        ]
        return Response(keys)


class WitnessRegisterApi(APIView):
    class InputSerializer(serializers.Serializer):
        organization = _bounded(min_value=1)
        name = serializers.CharField(max_length=200)
        verifier_key = serializers.CharField(
            max_length=300, help_text="C2SP cosignature/v1 verifier key (0x04)"
        )

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        key_id = serializers.CharField()
        verifier_key = serializers.CharField()

    @extend_schema(
        request=InputSerializer, responses={201: OutputSerializer, **api_errors(400, 403, 404, 409)}
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        organization = accounts_selectors.organization_get_for_user(
            organization_id=data.validated_data["organization"], user=request.user
        )
        witness = services.witness_register(
            organization=organization,
            actor=request.user,
            name=data.validated_data["name"],
            verifier_key=data.validated_data["verifier_key"],
        )
        return Response(self.OutputSerializer(witness).data, status=status.HTTP_201_CREATED)


class CosignApi(APIView):
    # The cosignature authenticates itself: it must verify under a registered witness's key.
    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        tree_size = _bounded(min_value=1)
        cosignature = serializers.CharField(
            max_length=500, help_text="the '— name base64' cosignature/v1 line"
        )

    class OutputSerializer(serializers.Serializer):
        tree_size = serializers.IntegerField()
        witness = serializers.CharField()
        timestamp = serializers.IntegerField()

    @extend_schema(
        request=InputSerializer, responses={201: OutputSerializer, **api_errors(400, 403, 404, 409)}
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        cosignature = services.cosignature_add(
            tree_size=data.validated_data["tree_size"], cosignature_line=data.validated_data["cosignature"]
        )
        return Response(
            {"tree_size": cosignature.checkpoint.tree_size, "witness": cosignature.witness.name,
             "timestamp": cosignature.timestamp},
            status=status.HTTP_201_CREATED,
        )  # fmt: skip


class AccountOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.CharField()
    balance = serializers.IntegerField(help_text="minor units (1 token = 100)")


class AccountListApi(APIView):
    @extend_schema(responses={200: AccountOutputSerializer(many=True)})
    def get(self, request):
        services.account_open(name=services.account_name(user=request.user))
        return Response(
            AccountOutputSerializer(selectors.account_list_for_user(user=request.user), many=True).data
        )


class TransferApi(APIView):
    class InputSerializer(serializers.Serializer):
        destination = serializers.CharField(
            max_length=64, help_text="user:<id>, org:<id> or dao:<id>, the id in ASCII digits"
        )
        amount = _bounded(min_value=1, max_value=services.AMOUNT_MAX, help_text="minor units (1 token = 100)")
        memo = serializers.CharField(
            max_length=200, required=False, default="", help_text="public: written into the ledger's entry"
        )
        idempotency_key = serializers.CharField(max_length=64, required=False, allow_null=True, default=None)

    @extend_schema(request=InputSerializer, responses={201: EntryOutputSerializer, **api_errors(400, 409)})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        entry = services.transfer_request(user=request.user, **data.validated_data)
        return Response(EntryOutputSerializer(entry).data, status=status.HTTP_201_CREATED)


class FaucetApi(APIView):
    @extend_schema(request=None, responses={201: EntryOutputSerializer, **api_errors(403, 409)})
    def post(self, request):
        entry = services.faucet_request(user=request.user)
        return Response(EntryOutputSerializer(entry).data, status=status.HTTP_201_CREATED)


class MintApi(APIView):
    """Staff grant new tokens; everyone else gets a 403."""

    class InputSerializer(serializers.Serializer):
        destination = serializers.CharField(
            max_length=64, help_text="user:<id>, org:<id>, dao:<id> or treasury, the id in ASCII digits"
        )
        amount = _bounded(min_value=1, max_value=services.AMOUNT_MAX, help_text="minor units (1 token = 100)")
        reason = serializers.CharField(max_length=200)

    @extend_schema(request=InputSerializer, responses={201: EntryOutputSerializer, **api_errors(400, 403)})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        entry = services.mint_request(staff=request.user, **data.validated_data)
        return Response(EntryOutputSerializer(entry).data, status=status.HTTP_201_CREATED)
