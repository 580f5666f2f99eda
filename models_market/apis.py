"""The models market's REST API: models in (the list, training, uploads, cards, downloads) and money (metered
predictions, receipts, licences, tokens, the call deposit)."""

import codecs
import csv
import io

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from ledger.services import AMOUNT_MAX
from marketplace import selectors as data_selectors
from ml.features import MAX_PREDICT_ROWS
from models_market import selectors, services
from models_market.jobkinds import TrainOptions
from models_market.models import ModelAsset, ModelLicense, ModelParent, ModelToken, ModelVersion, Receipt
from models_market.services.tokens import MAX_PRICE, MAX_QUOTA_CALLS, MAX_TIMED_DAYS
from platform_site.api import api_errors, paginated_response
from platform_site.errors import DomainError
from platform_site.jobs.apis import JobOutputSerializer
from platform_site.throttling import ScopedRateThrottle

# ---- models in


class CardMetricSerializer(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField()
    value = serializers.FloatField(allow_null=True)
    source = serializers.ChoiceField(choices=["measured", "self_reported"])
    source_label = serializers.CharField(help_text="measured by the platform, or self-reported by its maker")


class CardInputSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.ChoiceField(choices=["number", "text"])
    levels = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="text columns: the values the model knows"
    )


class CardOutputSchemaSerializer(serializers.Serializer):
    target = serializers.CharField(allow_null=True)
    task = serializers.CharField(allow_null=True)
    classes = serializers.ListField(child=serializers.JSONField(), required=False)


class CardTrainingDataSerializer(serializers.Serializer):
    dataset = serializers.IntegerField()
    title = serializers.CharField()
    version = serializers.IntegerField()
    sha256 = serializers.CharField()
    published_seq = serializers.IntegerField(
        allow_null=True, help_text="the ledger entry that published this dataset version"
    )
    url = serializers.CharField()


class CardParentSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    name = serializers.CharField()
    number = serializers.IntegerField()
    relation = serializers.ChoiceField(choices=ModelParent.Relation.choices)
    artifact_sha256 = serializers.CharField()


class CardTokenSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="the token id, never reused")
    owner = serializers.CharField()
    creator = serializers.CharField()
    royalty_bp = serializers.IntegerField(help_text="the creator's royalty on every resale, in basis points")
    minted_seq = serializers.IntegerField(help_text="the ledger entry that minted it")


class CardPrivacySerializer(serializers.Serializer):
    private = serializers.BooleanField()
    epsilon = serializers.CharField(allow_null=True)
    delta = serializers.FloatField(allow_null=True)
    epsilon_spent = serializers.FloatField(allow_null=True)
    statement = serializers.CharField()


class ModelCardSerializer(serializers.Serializer):
    """A model version's card: what it is for, its inputs and output, its metrics (each measured by the platform
    or self-reported), its training data and parents, its token, licence and privacy."""

    version = serializers.IntegerField()
    number = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    task = serializers.ChoiceField(choices=ModelAsset.Task.choices)
    status = serializers.ChoiceField(choices=ModelVersion.Status.choices)
    error = serializers.CharField(allow_blank=True, help_text="why validation failed")
    origin = serializers.ChoiceField(choices=ModelVersion.Origin.choices)
    format = serializers.CharField(
        allow_blank=True, help_text="torch (safetensors + spec) or sklearn (skops)"
    )
    algorithm = serializers.CharField(allow_blank=True)
    artifact_sha256 = serializers.CharField()
    size = serializers.IntegerField()
    created_by = serializers.CharField()
    created_at = serializers.CharField()
    entry_seq = serializers.IntegerField(allow_null=True, help_text="the models_market.version.created entry")
    intended_use = serializers.CharField(allow_blank=True)
    limitations = serializers.CharField(allow_blank=True)
    inputs = CardInputSerializer(many=True)
    output = CardOutputSchemaSerializer()
    metrics = CardMetricSerializer(many=True)
    metrics_note = serializers.CharField(allow_blank=True)
    evaluation = serializers.JSONField(
        allow_null=True, help_text="the held-out split, confusion matrix and calibration bins"
    )
    learning_curve = serializers.ListField(child=serializers.DictField())
    training_data = CardTrainingDataSerializer(allow_null=True)
    parents = CardParentSerializer(many=True)
    lineage_bp = serializers.IntegerField()
    token = CardTokenSerializer(allow_null=True)
    privacy = CardPrivacySerializer()
    licence = serializers.CharField()
    downloadable = serializers.BooleanField()


class ModelVersionSummarySerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="asset.name")
    task = serializers.CharField(source="asset.task")
    token = serializers.IntegerField(source="token.pk", allow_null=True, default=None)
    owner = serializers.CharField(source="token.owner.username", allow_null=True, default=None)
    metrics = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "id", "name", "number", "task", "origin", "format", "algorithm", "private", "artifact_sha256",
            "token", "owner", "metrics", "lineage_bp", "created_at",
        ]  # fmt: skip

    def get_metrics(self, version: ModelVersion) -> dict[str, float | None]:
        """Each metric's value; the card says whether the platform measured it."""
        return {name: m.get("value") for name, m in (version.metrics or {}).items() if isinstance(m, dict)}


class ModelListApi(APIView):
    """Ready model versions, newest first."""

    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    class FilterSerializer(serializers.Serializer):
        task = serializers.ChoiceField(choices=ModelAsset.Task.choices, required=False)
        q = serializers.CharField(
            required=False, max_length=100, help_text="words of the name or description"
        )

    @extend_schema(
        parameters=[FilterSerializer],
        responses={200: ModelVersionSummarySerializer(many=True), **api_errors(400)},
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        return paginated_response(
            request=request, view=self, queryset=services.version_list_ready(**filters.validated_data),
            serializer_class=ModelVersionSummarySerializer,
        )  # fmt: skip


class ModelTrainApi(APIView):
    """Train a model on a dataset version you own or license (its terms must allow derived models); under a
    compute-only licence the training is differentially private and spends ε of the licence's budget."""

    class InputSerializer(TrainOptions):
        dataset = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
        version = serializers.IntegerField(
            min_value=1, max_value=2**31 - 1, required=False, allow_null=True, default=None,
            help_text="the dataset version's number; empty: your licence's version (the owner: the latest ready "
            "one)",
        )  # fmt: skip

    @extend_schema(
        request=InputSerializer, responses={201: JobOutputSerializer, **api_errors(400, 403, 404, 409, 429)}
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        params = dict(data.validated_data)
        version = data_selectors.dataset_version_get_for_user(
            user=request.user, dataset_id=params.pop("dataset"), number=params.pop("version")
        )
        job = services.model_train_submit(user=request.user, dataset_version=version, params=params)
        return Response(JobOutputSerializer(job).data, status=status.HTTP_201_CREATED)


class ModelUploadOutputSerializer(ModelCardSerializer):
    job = serializers.IntegerField(help_text="the validation job: follow it at /api/jobs/<id>/")


class ModelUploadApi(APIView):
    """Upload a model: safetensors weights with an architecture spec, or a skops file, as multipart form data.
    Pickle, joblib and torch.save files are refused unloaded; a worker validates the rest against the schema."""

    parser_classes = [MultiPartParser]

    class ParentSerializer(serializers.Serializer):
        version = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
        relation = serializers.ChoiceField(choices=ModelParent.Relation.choices)

    class InputSerializer(serializers.Serializer):
        artifact = serializers.FileField(help_text=".safetensors or .skops")
        name = serializers.CharField(max_length=200)
        description = serializers.CharField(max_length=5_000, required=False, allow_blank=True, default="")
        task = serializers.ChoiceField(choices=ModelAsset.Task.choices)
        spec = serializers.JSONField(
            binary=True, required=False, default=None,
            help_text="safetensors: the architecture spec (JSON), unless the file's metadata carries it",
        )  # fmt: skip
        schema = serializers.JSONField(
            binary=True, help_text="the feature schema (JSON) the model's inputs follow"
        )
        intended_use = serializers.CharField(max_length=5_000, required=False, allow_blank=True, default="")
        limitations = serializers.CharField(max_length=5_000, required=False, allow_blank=True, default="")
        metrics = serializers.JSONField(
            binary=True, required=False, default=None, help_text='self-reported, e.g. {"accuracy": 0.91}'
        )
        parents = serializers.JSONField(
            binary=True, required=False, default=None,
            help_text='models it was built on, e.g. [{"version": 7, "relation": "fine_tuned"}]',
        )  # fmt: skip
        royalty_bp = serializers.IntegerField(min_value=0, max_value=10_000, default=0)
        lineage_bp = serializers.IntegerField(min_value=0, max_value=10_000, required=False, allow_null=True)

        def validate_parents(self, parents):
            if parents is None:
                return []
            items = ModelUploadApi.ParentSerializer(data=parents, many=True)
            if not isinstance(parents, list) or not items.is_valid():
                raise serializers.ValidationError('a list of {"version": id, "relation": "fine_tuned"}')
            return items.validated_data

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={201: ModelUploadOutputSerializer, **api_errors(400, 403, 404, 429)},
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        d = data.validated_data
        parents = [
            (services.version_get_visible(version_id=p["version"], user=request.user), p["relation"])
            for p in d["parents"]
        ]
        version = services.model_upload(
            user=request.user, name=d["name"], description=d["description"], task=d["task"],
            artifact=d["artifact"], spec=d["spec"], schema=d["schema"],
            card={"intended_use": d["intended_use"], "limitations": d["limitations"]},
            self_reported_metrics=d["metrics"], parents=parents, royalty_bp=d["royalty_bp"],
            lineage_bp=d.get("lineage_bp"),
        )  # fmt: skip
        version = services.version_get_visible(version_id=version.pk, user=request.user)
        card = {**services.version_card(version, viewer=request.user), "job": version.job_id}
        return Response(ModelUploadOutputSerializer(card).data, status=status.HTTP_201_CREATED)


class ModelVersionApi(APIView):
    """GET: a model version's card; PATCH: its intended use and limitations (the token's owner)."""

    class InputSerializer(serializers.Serializer):
        intended_use = serializers.CharField(max_length=5_000, required=False, allow_blank=True)
        limitations = serializers.CharField(max_length=5_000, required=False, allow_blank=True)

    @extend_schema(responses={200: ModelCardSerializer, **api_errors(404)})
    def get(self, request, version_id: int):
        version = services.version_get_visible(version_id=version_id, user=request.user)
        return Response(ModelCardSerializer(services.version_card(version, viewer=request.user)).data)

    @extend_schema(request=InputSerializer, responses={200: ModelCardSerializer, **api_errors(400, 403, 404)})
    def patch(self, request, version_id: int):
        version = services.version_get_visible(version_id=version_id, user=request.user)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = services.version_card_update(version=version, actor=request.user, **data.validated_data)
        return Response(ModelCardSerializer(services.version_card(version, viewer=request.user)).data)


class ModelDownloadApi(APIView):
    """The weights, for the token's owner; never those of a model trained under a compute-only licence."""

    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY),
            **api_errors(403, 404, 409),
        }
    )
    def get(self, request, version_id: int):
        version = services.version_get_visible(version_id=version_id, user=request.user)
        version = services.version_download_authorize(version=version, user=request.user)
        extension = version.artifact.name.rsplit(".", 1)[-1]
        return FileResponse(
            version.artifact.open("rb"), as_attachment=True, content_type="application/octet-stream",
            filename=f"model-{version.pk}-v{version.number}.{extension}",
        )  # fmt: skip


# ---- money (tokens, licences, metered calls)

ROWS_EXPECTED = 'send {"rows": [{column: value}, ...]} as JSON, or the rows as CSV'
# The largest predict body read: 10,000 rows of a few dozen columns fit well within it.
PREDICT_MAX_BYTES = 16 * 1024 * 1024


def _read_capped(stream) -> bytes:
    data = stream.read(PREDICT_MAX_BYTES + 1) if stream is not None else b""
    if len(data) > PREDICT_MAX_BYTES:
        raise ParseError(f"the body is larger than {PREDICT_MAX_BYTES:,} bytes")
    return data


def _keep_body(parser_context: dict | None, body: bytes) -> None:
    """The body the rows were read from, for the call's receipt (format 2 hashes it as received)."""
    if parser_context and parser_context.get("request") is not None:
        parser_context["request"].predict_body = body


class RowsJsonParser(JSONParser):
    """JSON, read up to PREDICT_MAX_BYTES; nesting too deep for Python's parser is a 400 like other bad JSON."""

    def parse(self, stream, media_type=None, parser_context=None):
        body = _read_capped(stream)
        try:
            data = super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None
        _keep_body(parser_context, body)
        return data


class RowsCsvParser(BaseParser):
    """A CSV body (UTF-8, a header line of column names): {"rows": [{column: text}, ...]}; an empty cell is a
    missing value."""

    media_type = "text/csv"

    def parse(self, stream, media_type=None, parser_context=None):
        body = _read_capped(stream)
        try:
            reader = csv.DictReader(io.StringIO(codecs.decode(body, "utf-8"), newline=""))
            rows = []
            for i, row in enumerate(reader):
                if None in row:
                    raise ParseError(f"CSV row {i} has more cells than the header has columns")
                rows.append({k: (v if v != "" else None) for k, v in row.items()})
                if len(rows) > MAX_PREDICT_ROWS:
                    break  # one too many is enough for the schema's check to say how many are allowed
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ParseError(f"CSV parse error - {exc}") from None
        _keep_body(parser_context, body)
        return {"rows": rows}


class ReceiptProofSerializer(serializers.Serializer):
    entry_seq = serializers.IntegerField(help_text="the models_market.calls.settled entry carrying the root")
    leaf_index = serializers.IntegerField()
    tree_size = serializers.IntegerField()
    root = serializers.CharField(help_text="RFC 6962 Merkle root of the settled receipts, hex")
    path = serializers.ListField(child=serializers.CharField(), help_text="the audit path, hex, leaf upwards")


class ModelReceiptOutputSerializer(serializers.ModelSerializer):
    """A receipt as its holder keeps it: the signed body, the key and signature, and once settled the proof of
    its inclusion in its settlement's entry (`python -m models_market.verify_receipt RECEIPT EXPORT`)."""

    body = serializers.JSONField(help_text="what the platform vouches for, as RFC 8785 JSON")
    group = serializers.JSONField(
        source="signing_group", allow_null=True,
        help_text="null when the signature is of the body; else the receipt was signed with the calls written "
        "together with it: its index among them, their number (size), its own random salt (hex) and the RFC 6962 "
        "audit path (hex) from its leaf (the body and the salt) to their Merkle root, which the signature is of",
    )  # fmt: skip
    settled = serializers.SerializerMethodField()
    proof = serializers.SerializerMethodField()

    class Meta:
        model = Receipt
        fields = ["id", "body", "key_id", "signature", "group", "settled", "proof"]

    def get_settled(self, receipt: Receipt) -> bool:
        return receipt.settlement_id is not None

    @extend_schema_field(ReceiptProofSerializer(allow_null=True))
    def get_proof(self, receipt: Receipt) -> dict | None:
        return services.receipt_proof(receipt=receipt) if self.context.get("proof") else None


def fresh_receipt(receipt: Receipt | None) -> dict | None:
    """A receipt just issued, as ModelReceiptOutputSerializer writes it (built by hand: this is every call)."""
    if receipt is None:
        return None
    return {"id": receipt.pk, "body": receipt.body, "key_id": receipt.key_id, "signature": receipt.signature,
            "group": receipt.signing_group, "settled": False, "proof": None}  # fmt: skip


class PredictApi(APIView):
    """Run a model version on rows: JSON `{"rows": [{column: value}, ...]}` or a CSV body (`text/csv`). A
    licensee's call returns its signed receipt; the token's owner calls for free, without one."""

    parser_classes = [RowsJsonParser, RowsCsvParser]
    throttle_classes = [*api_settings.DEFAULT_THROTTLE_CLASSES, ScopedRateThrottle]
    throttle_scope = "models_predict"

    class InputSerializer(serializers.Serializer):
        rows = serializers.ListField(child=serializers.DictField(), max_length=MAX_PREDICT_ROWS)

    class OutputSerializer(serializers.Serializer):
        predictions = serializers.ListField(
            child=serializers.DictField(),
            help_text='per row {"prediction": class, "probabilities": {class: p}} or {"prediction": value}',
        )
        receipt = ModelReceiptOutputSerializer(allow_null=True)

    @extend_schema(
        request={"application/json": InputSerializer, "text/csv": OpenApiTypes.STR},
        responses={200: OutputSerializer, **api_errors(400, 402, 403, 404, 429)},
    )
    def post(self, request, version_id: int):
        version = selectors.version_get_for_call(version_id=version_id)
        if not isinstance(request.data, dict) or "rows" not in request.data:
            raise DomainError(ROWS_EXPECTED)
        outputs, receipt = services.predict_call(
            user=request.user, version=version, rows=request.data["rows"],
            body=getattr(request, "predict_body", None),
        )  # fmt: skip
        return Response({"predictions": outputs, "receipt": fresh_receipt(receipt)})


class ReceiptDetailApi(APIView):
    """A receipt, for its caller or the model's owner; with its inclusion proof once settled."""

    @extend_schema(responses={200: ModelReceiptOutputSerializer, **api_errors(404)})
    def get(self, request, receipt_id: int):
        receipt = selectors.receipt_get_for_user(receipt_id=receipt_id, user=request.user)
        return Response(ModelReceiptOutputSerializer(receipt, context={"proof": True}).data)


class ModelLicenseOutputSerializer(serializers.ModelSerializer):
    token = serializers.IntegerField(source="version.token.pk", allow_null=True)
    model = serializers.CharField(source="version.asset.name")

    class Meta:
        model = ModelLicense
        fields = [
            "id", "token", "version", "model", "kind", "price", "price_per_call", "expires_at", "calls_left",
            "calls_made", "entry_seq", "created_at",
        ]  # fmt: skip


class LicenseListApi(APIView):
    """My model licences, newest first."""

    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(responses={200: ModelLicenseOutputSerializer(many=True)})
    def get(self, request):
        return paginated_response(
            request=request, view=self, queryset=selectors.license_list_for_user(user=request.user),
            serializer_class=ModelLicenseOutputSerializer,
        )  # fmt: skip


class OfferTermsSerializer(serializers.Serializer):
    """The offer's terms a buyer agrees to (services.offer_terms' names, each optional): changed meanwhile, 409."""

    price = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PRICE)
    price_per_call = serializers.IntegerField(required=False, min_value=0, max_value=MAX_PRICE)
    days = serializers.IntegerField(required=False, min_value=1, max_value=MAX_TIMED_DAYS)
    calls = serializers.IntegerField(required=False, min_value=1, max_value=MAX_QUOTA_CALLS)


class LicensePurchaseApi(APIView):
    class InputSerializer(OfferTermsSerializer):
        kind = serializers.ChoiceField(choices=ModelLicense.Kind.choices)

    @extend_schema(
        request=InputSerializer, responses={201: ModelLicenseOutputSerializer, **api_errors(400, 404, 409)}
    )
    def post(self, request, token_id: int):
        token = selectors.token_get(token_id=token_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        license = services.license_purchase(
            buyer=request.user,
            token=token,
            kind=data.validated_data.pop("kind"),
            expected=data.validated_data,
        )
        return Response(ModelLicenseOutputSerializer(license).data, status=status.HTTP_201_CREATED)


class ModelTokenOutputSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username")
    creator = serializers.CharField(source="creator.username")
    approved = serializers.CharField(source="approved.username", allow_null=True)
    model = serializers.CharField(source="version.asset.name")

    class Meta:
        model = ModelToken
        fields = [
            "id", "version", "model", "owner", "creator", "approved", "artifact_sha256", "metadata", "royalty_bp",
            "sale_price", "price_perpetual", "price_timed", "timed_days", "price_quota", "quota_calls",
            "price_per_call", "listed", "minted_seq", "updated_at",
        ]  # fmt: skip


def _price(**kwargs) -> serializers.IntegerField:
    return serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_PRICE, help_text="minor units (1 token = 100)", **kwargs
    )


class TokenDetailApi(APIView):
    """GET: a token and its offers (tokens are public). PATCH: its owner changes the offers; a price of null
    withdraws that offer; fields not sent stay."""

    class InputSerializer(serializers.Serializer):
        sale_price = _price(allow_null=True)
        price_perpetual = _price(allow_null=True)
        price_timed = _price(allow_null=True)
        timed_days = serializers.IntegerField(
            required=False, allow_null=True, min_value=1, max_value=MAX_TIMED_DAYS
        )
        price_quota = _price(allow_null=True)
        quota_calls = serializers.IntegerField(
            required=False, allow_null=True, min_value=1, max_value=MAX_QUOTA_CALLS
        )
        price_per_call = serializers.IntegerField(required=False, min_value=0, max_value=MAX_PRICE)
        listed = serializers.BooleanField(required=False)

        def validate(self, attrs):
            if not attrs:
                raise serializers.ValidationError("change at least one offer")
            return attrs

    @extend_schema(responses={200: ModelTokenOutputSerializer, **api_errors(404)})
    def get(self, request, token_id: int):
        return Response(ModelTokenOutputSerializer(selectors.token_get(token_id=token_id)).data)

    @extend_schema(
        request=InputSerializer, responses={200: ModelTokenOutputSerializer, **api_errors(400, 403, 404, 409)}
    )
    def patch(self, request, token_id: int):
        token = selectors.token_get(token_id=token_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token = services.token_offer_set(token=token, actor=request.user, **data.validated_data)
        return Response(ModelTokenOutputSerializer(selectors.token_get(token_id=token.pk)).data)


class TokenTransferApi(APIView):
    class InputSerializer(serializers.Serializer):
        to = serializers.CharField(max_length=200, help_text="the new owner: a username, or user:<id>")

    @extend_schema(
        request=InputSerializer, responses={200: ModelTokenOutputSerializer, **api_errors(400, 403, 404, 409)}
    )
    def post(self, request, token_id: int):
        token = selectors.token_get(token_id=token_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token = services.token_transfer(token=token, actor=request.user, to=data.validated_data["to"])
        return Response(ModelTokenOutputSerializer(selectors.token_get(token_id=token.pk)).data)


class TokenApproveApi(APIView):
    class InputSerializer(serializers.Serializer):
        operator = serializers.CharField(
            max_length=200,
            allow_null=True,
            help_text="who may transfer the token: a username, or null for nobody",
        )

    @extend_schema(
        request=InputSerializer, responses={200: ModelTokenOutputSerializer, **api_errors(400, 403, 404, 409)}
    )
    def post(self, request, token_id: int):
        token = selectors.token_get(token_id=token_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token = services.token_approve(
            token=token, actor=request.user, operator=data.validated_data["operator"]
        )
        return Response(ModelTokenOutputSerializer(selectors.token_get(token_id=token.pk)).data)


class TokenBuyApi(APIView):
    class InputSerializer(serializers.Serializer):
        price = serializers.IntegerField(
            required=False, min_value=1, max_value=MAX_PRICE,
            help_text="the price you agree to pay: if the owner changed it meanwhile, 409",
        )  # fmt: skip

    @extend_schema(
        request=InputSerializer, responses={200: ModelTokenOutputSerializer, **api_errors(400, 404, 409)}
    )
    def post(self, request, token_id: int):
        token = selectors.token_get(token_id=token_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token = services.token_buy(
            token=token, buyer=request.user, expected_price=data.validated_data.get("price")
        )
        return Response(ModelTokenOutputSerializer(selectors.token_get(token_id=token.pk)).data)


class CallDepositOutputSerializer(serializers.Serializer):
    deposit = serializers.IntegerField(help_text="what your call deposit holds (minor units)")
    reserved = serializers.IntegerField(help_text="what calls not yet settled have reserved of it")
    available = serializers.IntegerField(help_text="what you may withdraw")


class DepositApi(APIView):
    """My call deposit: the tokens set aside from my balance to pay for metered calls."""

    @extend_schema(responses={200: CallDepositOutputSerializer})
    def get(self, request):
        return Response(CallDepositOutputSerializer(services.deposit_status(user=request.user)).data)


class DepositWithdrawApi(APIView):
    """Return the unreserved part of my call deposit (all of it, or `amount`) to my balance."""

    class InputSerializer(serializers.Serializer):
        amount = serializers.IntegerField(required=False, min_value=1, max_value=AMOUNT_MAX)

    @extend_schema(
        request=InputSerializer, responses={200: CallDepositOutputSerializer, **api_errors(400, 409)}
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        state = services.deposit_withdraw(user=request.user, amount=data.validated_data.get("amount"))
        return Response(CallDepositOutputSerializer(state).data)


# ---- guarantees and paid evaluations


class TokenGuaranteeApi(APIView):
    class InputSerializer(serializers.Serializer):
        metric = serializers.CharField(
            max_length=16, allow_blank=True, help_text="empty: withdraw the guarantee"
        )
        threshold = serializers.FloatField(required=False, allow_null=True)
        direction = serializers.ChoiceField(choices=["min", "max"], required=False, allow_null=True)
        price_evaluation = serializers.IntegerField(min_value=0, max_value=AMOUNT_MAX, required=False)

    @extend_schema(request=InputSerializer, responses={200: OpenApiTypes.OBJECT, **api_errors(400, 403, 404)})
    def post(self, request, token_id: int):
        token = selectors.token_get(token_id=token_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token = services.guarantee_set(token=token, actor=request.user, **data.validated_data)
        return Response({"token": token.pk, "metric": token.guarantee_metric,
                         "threshold": token.guarantee_threshold, "direction": token.guarantee_direction,
                         "price_evaluation": token.price_evaluation})  # fmt: skip


class GuaranteedPurchaseOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    token = serializers.IntegerField(source="token_id")
    version = serializers.IntegerField(source="version_id")
    kind = serializers.CharField()
    price = serializers.IntegerField()
    metric = serializers.CharField()
    threshold = serializers.FloatField()
    direction = serializers.CharField()
    status = serializers.CharField()
    outcome = serializers.CharField()
    measured = serializers.FloatField(allow_null=True)
    holdout_sha256 = serializers.CharField()
    deadline = serializers.DateTimeField()
    license = serializers.IntegerField(source="license_id", allow_null=True)
    job = serializers.IntegerField(source="job_id", allow_null=True)


class GuaranteedPurchaseApi(APIView):
    parser_classes = [MultiPartParser]

    class InputSerializer(OfferTermsSerializer):
        kind = serializers.ChoiceField(choices=ModelLicense.Kind.choices)
        holdout = serializers.FileField(
            help_text="labelled rows (CSV or JSON Lines), sealed: never shown to the seller"
        )
        format = serializers.ChoiceField(choices=["csv", "jsonl"], required=False)
        # The standard the buyer agrees to (each optional), beside the offer's terms: changed meanwhile, 409.
        metric = serializers.CharField(required=False, max_length=16)
        direction = serializers.ChoiceField(choices=["max", "min"], required=False)
        threshold = serializers.FloatField(required=False)

    @extend_schema(
        request=InputSerializer,
        responses={202: GuaranteedPurchaseOutputSerializer, **api_errors(400, 402, 404, 409)},
    )
    def post(self, request, token_id: int):
        token = selectors.token_get(token_id=token_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        purchase = services.license_purchase_guaranteed(
            buyer=request.user, token=token, kind=v["kind"], holdout_file=v["holdout"], holdout_format=v.get("format"),
            expected={n: v[n] for n in OfferTermsSerializer().fields if n in v},
            expected_standard={n: v[n] for n in ("metric", "direction", "threshold") if n in v},
        )  # fmt: skip
        return Response(GuaranteedPurchaseOutputSerializer(purchase).data, status=status.HTTP_202_ACCEPTED)


class GuaranteedPurchaseListApi(APIView):
    """Guaranteed purchases you made or whose model you sold: the seller reads the measured metric only."""

    @extend_schema(responses={200: GuaranteedPurchaseOutputSerializer(many=True)})
    def get(self, request):
        rows = selectors.guaranteed_purchases_for_user(user=request.user)[:200]
        return Response(GuaranteedPurchaseOutputSerializer(rows, many=True).data)


class EvaluationScoreSerializer(serializers.Serializer):
    version = serializers.IntegerField(source="version_id")
    rank = serializers.IntegerField(allow_null=True)
    estimate = serializers.FloatField(allow_null=True)
    low = serializers.FloatField(allow_null=True)
    high = serializers.FloatField(allow_null=True)
    error = serializers.CharField()
    price = serializers.IntegerField()


class EvaluationOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    metric = serializers.CharField()
    status = serializers.CharField()
    error = serializers.CharField()
    fee = serializers.IntegerField()
    total = serializers.IntegerField()
    holdout_sha256 = serializers.CharField()
    holdout_rows = serializers.IntegerField()
    entry_seq = serializers.IntegerField(allow_null=True)
    result_seq = serializers.IntegerField(allow_null=True)
    job = serializers.IntegerField(source="job_id", allow_null=True)
    ranking = serializers.SerializerMethodField()

    def get_ranking(self, ev) -> list[dict]:
        rows = sorted(ev.scores.all(), key=lambda s: (s.rank is None, s.rank or 0, s.pk))
        return EvaluationScoreSerializer(rows, many=True).data


class EvaluationSubmitApi(APIView):
    parser_classes = [MultiPartParser]

    class InputSerializer(serializers.Serializer):
        versions = serializers.ListField(
            child=serializers.IntegerField(min_value=1), min_length=1, max_length=50
        )
        metric = serializers.CharField(max_length=16)
        holdout = serializers.FileField()
        format = serializers.ChoiceField(choices=["csv", "jsonl"], required=False)

    @extend_schema(
        request=InputSerializer, responses={202: EvaluationOutputSerializer, **api_errors(400, 402, 409)}
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        versions = [ModelVersion(pk=pk) for pk in v["versions"]]
        ev = services.evaluation_submit(user=request.user, versions=versions, holdout_file=v["holdout"],
                                        metric=v["metric"], holdout_format=v.get("format"))  # fmt: skip
        return Response(EvaluationOutputSerializer(ev).data, status=status.HTTP_202_ACCEPTED)


class EvaluationDetailApi(APIView):
    @extend_schema(responses={200: EvaluationOutputSerializer, **api_errors(404)})
    def get(self, request, evaluation_id: int):
        ev = selectors.evaluation_get_for_user(evaluation_id=evaluation_id, user=request.user)
        return Response(EvaluationOutputSerializer(ev).data)


class OwnerEvaluationScoreSerializer(EvaluationScoreSerializer):
    evaluation = serializers.IntegerField(source="evaluation_id")
    metric = serializers.CharField(source="evaluation.metric")
    holdout_sha256 = serializers.CharField(source="evaluation.holdout_sha256")
    rank = None  # the rank would tell the owner how the others scored


class OwnerEvaluationListApi(APIView):
    """Evaluations that scored your models: your own model's row only."""

    @extend_schema(responses={200: OwnerEvaluationScoreSerializer(many=True)})
    def get(self, request):
        rows = selectors.evaluation_scores_for_owner(user=request.user)[:200]
        return Response(OwnerEvaluationScoreSerializer(rows, many=True).data)
