from django.conf import settings
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import BaseParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from marketplace import selectors, services
from marketplace.jobkinds import AnalysisOptions
from marketplace.models import Analysis, Dataset, DatasetVersion, License
from platform_site.api import api_errors, paginated_response
from platform_site.errors import DomainError
from platform_site.jobs.apis import JobOutputSerializer


class VersionOutputSerializer(serializers.ModelSerializer):
    stats_job = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text="the statistics job: follow it at /api/jobs/<id>/"
    )

    class Meta:
        model = DatasetVersion
        fields = [
            "number",
            "format",
            "size",
            "sha256",
            "status",
            "stats",
            "error",
            "stats_job",
            "published_seq",
            "created_at",
        ]


class PreviewSerializer(serializers.Serializer):
    columns = serializers.ListField(child=serializers.CharField())
    rows = serializers.ListField(child=serializers.ListField(child=serializers.CharField(allow_null=True)))


class DatasetOutputSerializer(serializers.ModelSerializer):
    """A listing as lists show it: no preview (the detail has it), so a page of listings stays small."""

    owner = serializers.CharField(source="owner.username")
    current_version = VersionOutputSerializer(allow_null=True)

    class Meta:
        model = Dataset
        fields = [
            "id", "title", "description", "tags", "owner", "status", "price_download", "price_compute", "terms",
            "privacy_budget", "preview_enabled", "current_version", "created_at",
        ]  # fmt: skip


class ActionsSerializer(serializers.Serializer):
    is_owner = serializers.BooleanField()
    buy_download = serializers.BooleanField()
    buy_compute = serializers.BooleanField()
    download = serializers.BooleanField()
    analyse = serializers.BooleanField()
    analyse_private = serializers.BooleanField(
        help_text="a compute-only licensee's analyses are differentially private and spend ε"
    )
    publish = serializers.BooleanField()
    withdraw = serializers.BooleanField()
    upload = serializers.BooleanField()
    edit = serializers.BooleanField()
    see_versions = serializers.BooleanField()


class DatasetDetailOutputSerializer(DatasetOutputSerializer):
    """One listing: with its preview, and what the requesting user may do with it (`context["user"]`)."""

    preview = serializers.SerializerMethodField(
        help_text="The first rows of the version on sale, as uploaded and capped; null unless the owner enabled "
        "the preview"
    )
    actions = serializers.SerializerMethodField(help_text="what you may do with this dataset now")

    class Meta(DatasetOutputSerializer.Meta):
        fields = [*DatasetOutputSerializer.Meta.fields, "preview", "actions"]

    @extend_schema_field(PreviewSerializer(allow_null=True))
    def get_preview(self, dataset: Dataset) -> dict | None:
        return selectors.dataset_preview(dataset=dataset, version=dataset.current_version)

    @extend_schema_field(ActionsSerializer)
    def get_actions(self, dataset: Dataset) -> dict[str, bool]:
        return selectors.dataset_actions(user=self.context["user"], dataset=dataset).as_dict()


def _detail(request, dataset: Dataset, **kwargs) -> Response:
    return Response(DatasetDetailOutputSerializer(dataset, context={"user": request.user}).data, **kwargs)


class LicenseOutputSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version.number")
    epsilon_left = serializers.DecimalField(
        max_digits=6, decimal_places=2, read_only=True, allow_null=True,
        help_text="compute-only licences: the privacy budget (ε) that analyses may still spend",
    )  # fmt: skip

    class Meta:
        model = License
        fields = [
            "id",
            "dataset",
            "version",
            "tier",
            "price",
            "terms",
            "terms_hash",
            "expires_at",
            "entry_seq",
            "epsilon_budget",
            "epsilon_spent",
            "epsilon_left",
        ]


def _privacy_budget_field(**kwargs) -> serializers.DecimalField:
    low, high = services.PRIVACY_BUDGET_RANGE
    return serializers.DecimalField(
        max_digits=6, decimal_places=2, min_value=low, max_value=high,
        **{"help_text": "the total ε each compute-only licence may spend on private analyses (default 10)",
           **kwargs},
    )  # fmt: skip


# Filters are bounded so that no number overflows a database integer.
MAX_FILTER = 10**15


class DatasetListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    class FilterSerializer(serializers.Serializer):
        q = serializers.CharField(
            required=False, max_length=100, help_text='full-text search: words, "a phrase", -excluded'
        )
        tier = serializers.ChoiceField(choices=["download", "compute"], required=False)
        tag = serializers.CharField(
            required=False, max_length=200, help_text="tags, comma separated; all must match"
        )
        owner = serializers.CharField(required=False, max_length=150, help_text="the seller's username")
        price_min = serializers.IntegerField(
            required=False, min_value=0, max_value=MAX_FILTER, help_text="minor units"
        )
        price_max = serializers.IntegerField(
            required=False, min_value=0, max_value=MAX_FILTER, help_text="minor units"
        )
        rows_min = serializers.IntegerField(required=False, min_value=0, max_value=MAX_FILTER)
        rows_max = serializers.IntegerField(required=False, min_value=0, max_value=MAX_FILTER)
        sort = serializers.ChoiceField(
            choices=list(selectors.SORTS),
            required=False,
            help_text="default: relevance with a search query, else newest; price sorts by the cheapest tier offered",
        )

        def validate(self, attrs):
            for low, high in (("price_min", "price_max"), ("rows_min", "rows_max")):
                if attrs.get(low) is not None and attrs.get(high) is not None and attrs[low] > attrs[high]:
                    raise serializers.ValidationError({low: f"{low} is above {high}"})
            return attrs

    class InputSerializer(serializers.Serializer):
        title = serializers.CharField(max_length=services.TITLE_MAX)
        description = serializers.CharField(
            required=False, default="", allow_blank=True, max_length=services.DESCRIPTION_MAX
        )
        tags = serializers.ListField(
            child=serializers.CharField(max_length=services.TAG_MAX),
            required=False,
            max_length=services.TAGS_MAX,
        )
        terms_preset = serializers.ChoiceField(choices=list(services.TERM_PRESETS))
        terms_text = serializers.CharField(
            required=False, default="", allow_blank=True, max_length=services.TERMS_TEXT_MAX
        )
        price_download = serializers.IntegerField(
            required=False, allow_null=True, min_value=1, max_value=services.MAX_PRICE, default=None,
            help_text="minor units (1 token = 100)",
        )  # fmt: skip
        price_compute = serializers.IntegerField(
            required=False, allow_null=True, min_value=1, max_value=services.MAX_PRICE, default=None,
            help_text="minor units (1 token = 100)",
        )  # fmt: skip
        preview_enabled = serializers.BooleanField(required=False, default=False)
        privacy_budget = _privacy_budget_field(required=False, default=None)
        derived_models = serializers.BooleanField(
            required=False, allow_null=True, default=None,
            help_text="whether models may be trained from the data; empty: the preset's choice",
        )  # fmt: skip

    @extend_schema(
        parameters=[FilterSerializer], responses={200: DatasetOutputSerializer(many=True), **api_errors(400)}
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        datasets = selectors.dataset_list_public(**filters.validated_data)
        return paginated_response(
            request=request, view=self, queryset=datasets, serializer_class=DatasetOutputSerializer
        )

    @extend_schema(request=InputSerializer, responses={201: DatasetDetailOutputSerializer, **api_errors(400)})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        derived = fields.pop("derived_models")
        overrides = {} if derived is None else {"derived_models": derived}
        dataset = services.dataset_create(owner=request.user, terms_overrides=overrides, **fields)
        return _detail(request, dataset, status=status.HTTP_201_CREATED)


class DatasetDetailApi(APIView):
    class InputSerializer(serializers.Serializer):
        preview_enabled = serializers.BooleanField(
            required=False, help_text="show the first rows of the version on sale"
        )
        privacy_budget = _privacy_budget_field(
            required=False, help_text="applies to licences sold from now on"
        )
        derived_models = serializers.BooleanField(
            required=False,
            help_text="whether models may be trained from the data: for licences sold from now on, and when "
            "allowing, for those already sold",
        )

        def validate(self, attrs):
            if not attrs:
                raise serializers.ValidationError("change preview_enabled, privacy_budget, derived_models")
            return attrs

    @extend_schema(responses={200: DatasetDetailOutputSerializer, **api_errors(404)})
    def get(self, request, dataset_id: int):
        return _detail(request, selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user))

    @extend_schema(
        request=InputSerializer, responses={200: DatasetDetailOutputSerializer, **api_errors(400, 403, 404)}
    )
    def patch(self, request, dataset_id: int):
        dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changes = data.validated_data
        if "preview_enabled" in changes:
            dataset = services.dataset_preview_set(
                dataset=dataset, actor=request.user, enabled=changes["preview_enabled"]
            )
        if "privacy_budget" in changes:
            dataset = services.dataset_privacy_budget_set(
                dataset=dataset, actor=request.user, budget=changes["privacy_budget"]
            )
        if "derived_models" in changes:
            dataset = services.dataset_derived_models_set(
                dataset=dataset, actor=request.user, allowed=changes["derived_models"]
            )
        return _detail(request, dataset)


class VersionListApi(APIView):
    """GET: every version, drafts and failed ones too, with its statistics job's outcome (the owner only);
    POST: upload a new version as multipart form data (PUT .../versions/upload/ is faster)."""

    parser_classes = [MultiPartParser]
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(help_text=".csv or .jsonl; streamed to storage, hashed on the way")

    @extend_schema(responses={200: VersionOutputSerializer(many=True), **api_errors(403, 404)})
    def get(self, request, dataset_id: int):
        dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
        return paginated_response(
            request=request,
            view=self,
            queryset=selectors.version_list_for_owner(user=request.user, dataset=dataset),
            serializer_class=VersionOutputSerializer,
        )

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={201: VersionOutputSerializer, **api_errors(400, 403, 404, 409, 429)},
    )
    def post(self, request, dataset_id: int):
        dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = services.dataset_version_upload(
            dataset=dataset, actor=request.user, upload=data.validated_data["file"]
        )
        return Response(VersionOutputSerializer(version).data, status=status.HTTP_201_CREATED)


class RawBodyParser(BaseParser):
    """Names the raw body's media type for content negotiation and the schema; the view reads the stream."""

    media_type = "application/octet-stream"

    def parse(self, stream, media_type=None, parser_context=None):
        return stream


class VersionRawUploadApi(APIView):
    """PUT the file itself as the body (`Content-Type: application/octet-stream`, `Content-Length` required),
    its name in `?filename=`: streamed to storage and hashed on the way, with no form parsing or temporary
    file, then handled as a multipart upload is."""

    parser_classes = [RawBodyParser]

    class FilterSerializer(serializers.Serializer):
        filename = serializers.CharField(max_length=255, help_text="the file's name, ending .csv or .jsonl")

    @extend_schema(
        parameters=[FilterSerializer],
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={201: VersionOutputSerializer, **api_errors(400, 403, 404, 409, 429)},
    )
    def put(self, request, dataset_id: int):
        dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
        query = self.FilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            size = int(request.META.get("CONTENT_LENGTH") or "")
        except ValueError:
            raise DomainError("send the file's size in Content-Length") from None
        limit = settings.UPLOAD_MAX_BYTES
        if size > limit:  # refused before a byte is read
            raise DomainError(f"the file is larger than the limit of {limit:,} bytes")
        upload = services.StreamUpload(request._request, name=query.validated_data["filename"], size=size)
        version = services.dataset_version_upload(dataset=dataset, actor=request.user, upload=upload)
        return Response(VersionOutputSerializer(version).data, status=status.HTTP_201_CREATED)


class DatasetPublishApi(APIView):
    @extend_schema(request=None, responses={200: DatasetDetailOutputSerializer, **api_errors(403, 404, 409)})
    def post(self, request, dataset_id: int):
        dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
        return _detail(request, services.dataset_publish(dataset=dataset, actor=request.user))


class DatasetWithdrawApi(APIView):
    @extend_schema(request=None, responses={200: DatasetDetailOutputSerializer, **api_errors(403, 404, 409)})
    def post(self, request, dataset_id: int):
        dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
        return _detail(request, services.dataset_withdraw(dataset=dataset, actor=request.user))


class DatasetBuyApi(APIView):
    class InputSerializer(serializers.Serializer):
        tier = serializers.ChoiceField(choices=License.Tier.choices)
        # What the buyer agrees to (each optional): if the owner changed it meanwhile, 409.
        price = serializers.IntegerField(required=False, min_value=0, max_value=2**53 - 1)
        terms_hash = serializers.RegexField(
            r"^[0-9a-f]{64}$", required=False, help_text="SHA-256 of the terms of use, as licences record it"
        )
        privacy_budget = serializers.DecimalField(
            max_digits=6, decimal_places=2, required=False, help_text="compute-only access: the ε granted"
        )

    @extend_schema(
        request=InputSerializer, responses={201: LicenseOutputSerializer, **api_errors(400, 404, 409)}
    )
    def post(self, request, dataset_id: int):
        dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        expected = data.validated_data
        if "privacy_budget" in expected:
            expected["privacy_budget"] = str(expected["privacy_budget"])
        license = services.license_purchase(
            buyer=request.user, dataset=dataset, tier=expected.pop("tier"), expected=expected
        )
        return Response(LicenseOutputSerializer(license).data, status=status.HTTP_201_CREATED)


class DatasetDownloadApi(APIView):
    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY),
            **api_errors(403, 404),
        }
    )
    def get(self, request, dataset_id: int):
        dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
        version = services.download_authorize(user=request.user, dataset=dataset)
        # Streamed from storage in blocks; never read whole.
        return FileResponse(
            version.file.open("rb"), as_attachment=True, filename=version.file.name.rsplit("/", 1)[-1],
            content_type="application/octet-stream",
        )  # fmt: skip


class LicenseListApi(APIView):
    @extend_schema(responses={200: LicenseOutputSerializer(many=True)})
    def get(self, request):
        return Response(
            LicenseOutputSerializer(selectors.license_list_for_user(user=request.user), many=True).data
        )


class AnalysisRecordSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version.number", help_text="the version analysed")
    entry_seq = serializers.IntegerField(
        allow_null=True, help_text="the marketplace.analysis.completed ledger entry, once it succeeded"
    )

    class Meta:
        model = Analysis
        fields = ["kind", "version", "options", "private", "epsilon", "license", "result_sha256", "entry_seq"]


class AnalysisOutputSerializer(JobOutputSerializer):
    """The job, and its analysis: kind, version, options, the ε charged and the ledger entry of its result."""

    analysis = AnalysisRecordSerializer(read_only=True)

    class Meta(JobOutputSerializer.Meta):
        fields = [*JobOutputSerializer.Meta.fields, "analysis"]


class AnalysisSubmitApi(APIView):
    """GET: the user's own analyses of the dataset, newest first; POST: start one."""

    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS
    InputSerializer = AnalysisOptions

    @extend_schema(responses={200: AnalysisOutputSerializer(many=True), **api_errors(404)})
    def get(self, request, dataset_id: int):
        dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
        return paginated_response(
            request=request,
            view=self,
            queryset=selectors.analysis_list_for_user(user=request.user, dataset=dataset),
            serializer_class=AnalysisOutputSerializer,
        )

    @extend_schema(
        request=InputSerializer,
        responses={201: AnalysisOutputSerializer, **api_errors(400, 403, 404, 409, 429)},
    )
    def post(self, request, dataset_id: int):
        dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = services.analysis_submit(user=request.user, dataset=dataset, params=dict(data.validated_data))
        return Response(AnalysisOutputSerializer(job).data, status=status.HTTP_201_CREATED)


class DatasetPrivacyApi(APIView):
    """The privacy budget: a compute-only licensee's own, or, for the owner, what each licence has spent."""

    class OutputSerializer(serializers.Serializer):
        privacy_budget = serializers.DecimalField(max_digits=6, decimal_places=2)
        licenses = LicenseOutputSerializer(many=True)
        buyers = serializers.ListField(child=serializers.CharField(), help_text="by licence, for the owner")

    @extend_schema(responses={200: OutputSerializer, **api_errors(403, 404)})
    def get(self, request, dataset_id: int):
        dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
        licenses = list(selectors.privacy_budget_licenses(user=request.user, dataset=dataset))
        return Response(
            self.OutputSerializer(
                {
                    "privacy_budget": dataset.privacy_budget,
                    "licenses": licenses,
                    "buyers": [license.buyer.username for license in licenses],
                }
            ).data
        )
