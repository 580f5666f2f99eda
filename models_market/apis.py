"""The models market's REST API."""

import codecs
import csv
import io

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser, JSONParser
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from ledger.services import AMOUNT_MAX
from ml.features import MAX_PREDICT_ROWS
from models_market import selectors, services
from models_market.models import ModelLicense, ModelToken, Receipt
from models_market.services.tokens import MAX_PRICE, MAX_QUOTA_CALLS, MAX_TIMED_DAYS
from platform_site.api import api_errors, paginated_response
from platform_site.errors import DomainError
from platform_site.throttling import ScopedRateThrottle

# ---- money (tokens, licences, metered calls)

# The largest predict body read: 10,000 rows of a few dozen columns fit well within it.
PREDICT_MAX_BYTES = 16 * 1024 * 1024


def _read_capped(stream) -> bytes:
    data = stream.read(PREDICT_MAX_BYTES + 1) if stream is not None else b""
    if len(data) > PREDICT_MAX_BYTES:
        raise ParseError(f"the body is larger than {PREDICT_MAX_BYTES:,} bytes")
    return data


class RowsJsonParser(JSONParser):
    """JSON, read up to PREDICT_MAX_BYTES; nesting too deep for Python's parser is a 400 like other bad JSON."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(io.BytesIO(_read_capped(stream)), media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None


class RowsCsvParser(BaseParser):
    """A CSV body (UTF-8, a header line of column names): {"rows": [{column: text}, ...]}; an empty cell is a
    missing value."""

    media_type = "text/csv"

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            reader = csv.DictReader(io.StringIO(codecs.decode(_read_capped(stream), "utf-8"), newline=""))
            rows = []
            for i, row in enumerate(reader):
                if None in row:
                    raise ParseError(f"CSV row {i} has more cells than the header has columns")
                rows.append({k: (v if v != "" else None) for k, v in row.items()})
                if len(rows) > MAX_PREDICT_ROWS:
                    break  # one too many is enough for the schema's check to say how many are allowed
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ParseError(f"CSV parse error - {exc}") from None
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

    body = serializers.JSONField(help_text="what the platform signed, as RFC 8785 JSON")
    settled = serializers.SerializerMethodField()
    proof = serializers.SerializerMethodField()

    class Meta:
        model = Receipt
        fields = ["id", "body", "key_id", "signature", "settled", "proof"]

    def get_settled(self, receipt: Receipt) -> bool:
        return receipt.settlement_id is not None

    @extend_schema_field(ReceiptProofSerializer(allow_null=True))
    def get_proof(self, receipt: Receipt) -> dict | None:
        return services.receipt_proof(receipt=receipt) if self.context.get("proof") else None


def _fresh_receipt(receipt: Receipt | None) -> dict | None:
    """A receipt just issued, as ModelReceiptOutputSerializer writes it (built by hand: this is every call)."""
    if receipt is None:
        return None
    return {"id": receipt.pk, "body": receipt.body, "key_id": receipt.key_id, "signature": receipt.signature,
            "settled": False, "proof": None}  # fmt: skip


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
            raise DomainError('send {"rows": [{column: value}, ...]} as JSON, or the rows as CSV')
        outputs, receipt = services.predict_call(
            user=request.user, version=version, rows=request.data["rows"]
        )
        return Response({"predictions": outputs, "receipt": _fresh_receipt(receipt)})


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


class LicensePurchaseApi(APIView):
    class InputSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=ModelLicense.Kind.choices)

    @extend_schema(
        request=InputSerializer, responses={201: ModelLicenseOutputSerializer, **api_errors(400, 404, 409)}
    )
    def post(self, request, token_id: int):
        token = selectors.token_get(token_id=token_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        license = services.license_purchase(buyer=request.user, token=token, kind=data.validated_data["kind"])
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
