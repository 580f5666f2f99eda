from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from marketplace import selectors, services
from marketplace.jobkinds import AnalysisOptions
from marketplace.models import Dataset, DatasetVersion, License
from platform_site.api import api_errors, paginated_response
from platform_site.jobs.apis import JobOutputSerializer


class VersionOutputSerializer(serializers.ModelSerializer):
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
            "published_seq",
            "created_at",
        ]


class PreviewSerializer(serializers.Serializer):
    columns = serializers.ListField(child=serializers.CharField())
    rows = serializers.ListField(child=serializers.ListField(child=serializers.CharField(allow_null=True)))


class DatasetOutputSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username")
    current_version = VersionOutputSerializer(allow_null=True)
    preview = serializers.SerializerMethodField(
        help_text="The first rows of the version on sale, as uploaded; null unless the owner enabled the preview"
    )

    class Meta:
        model = Dataset
        fields = [
            "id", "title", "description", "tags", "owner", "status", "price_download", "price_compute", "terms",
            "privacy_budget", "preview_enabled", "preview", "current_version", "created_at",
        ]  # fmt: skip

    @extend_schema_field(PreviewSerializer(allow_null=True))
    def get_preview(self, dataset: Dataset) -> dict | None:
        return selectors.dataset_preview(dataset=dataset, version=dataset.current_version)


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
        title = serializers.CharField(max_length=200)
        description = serializers.CharField(required=False, default="", allow_blank=True)
        tags = serializers.ListField(
            child=serializers.CharField(max_length=40), required=False, max_length=20
        )
        terms_preset = serializers.ChoiceField(choices=list(services.TERM_PRESETS))
        terms_text = serializers.CharField(required=False, default="", allow_blank=True, max_length=5000)
        price_download = serializers.IntegerField(required=False, allow_null=True, min_value=1, default=None)
        price_compute = serializers.IntegerField(required=False, allow_null=True, min_value=1, default=None)
        preview_enabled = serializers.BooleanField(required=False, default=False)
        privacy_budget = _privacy_budget_field(required=False, default=None)

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

    @extend_schema(request=InputSerializer, responses={201: DatasetOutputSerializer, **api_errors(400)})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        terms = services.terms_build(preset=fields.pop("terms_preset"), free_text=fields.pop("terms_text"))
        dataset = services.dataset_create(owner=request.user, terms=terms, **fields)
        return Response(DatasetOutputSerializer(dataset).data, status=status.HTTP_201_CREATED)


class DatasetDetailApi(APIView):
    class InputSerializer(serializers.Serializer):
        preview_enabled = serializers.BooleanField(
            required=False, help_text="show the first rows of the version on sale"
        )
        privacy_budget = _privacy_budget_field(
            required=False, help_text="applies to licences sold from now on"
        )

        def validate(self, attrs):
            if not attrs:
                raise serializers.ValidationError("change preview_enabled, privacy_budget or both")
            return attrs

    @extend_schema(responses={200: DatasetOutputSerializer, **api_errors(404)})
    def get(self, request, dataset_id: int):
        return Response(
            DatasetOutputSerializer(
                selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
            ).data
        )

    @extend_schema(
        request=InputSerializer, responses={200: DatasetOutputSerializer, **api_errors(400, 403, 404)}
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
        return Response(DatasetOutputSerializer(dataset).data)


class VersionUploadApi(APIView):
    parser_classes = [MultiPartParser]

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(help_text=".csv or .jsonl; streamed to storage, hashed on the way")

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={201: VersionOutputSerializer, **api_errors(400, 403, 404, 409)},
    )
    def post(self, request, dataset_id: int):
        dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = services.dataset_version_upload(
            dataset=dataset, actor=request.user, upload=data.validated_data["file"]
        )
        return Response(VersionOutputSerializer(version).data, status=status.HTTP_201_CREATED)


class DatasetPublishApi(APIView):
    @extend_schema(request=None, responses={200: DatasetOutputSerializer, **api_errors(403, 404, 409)})
    def post(self, request, dataset_id: int):
        dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
        return Response(
            DatasetOutputSerializer(services.dataset_publish(dataset=dataset, actor=request.user)).data
        )


class DatasetWithdrawApi(APIView):
    @extend_schema(request=None, responses={200: DatasetOutputSerializer, **api_errors(403, 404, 409)})
    def post(self, request, dataset_id: int):
        dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
        return Response(
            DatasetOutputSerializer(services.dataset_withdraw(dataset=dataset, actor=request.user)).data
        )


class DatasetBuyApi(APIView):
    class InputSerializer(serializers.Serializer):
        tier = serializers.ChoiceField(choices=License.Tier.choices)

    @extend_schema(
        request=InputSerializer, responses={201: LicenseOutputSerializer, **api_errors(400, 404, 409)}
    )
    def post(self, request, dataset_id: int):
        dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        license = services.license_purchase(
            buyer=request.user, dataset=dataset, tier=data.validated_data["tier"]
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


class AnalysisSubmitApi(APIView):
    """GET: the user's own analyses of the dataset, newest first; POST: start one."""

    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS
    InputSerializer = AnalysisOptions

    @extend_schema(responses={200: JobOutputSerializer(many=True), **api_errors(404)})
    def get(self, request, dataset_id: int):
        dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
        return paginated_response(
            request=request,
            view=self,
            queryset=selectors.analysis_list_for_user(user=request.user, dataset=dataset),
            serializer_class=JobOutputSerializer,
        )

    @extend_schema(
        request=InputSerializer, responses={201: JobOutputSerializer, **api_errors(400, 403, 404, 409)}
    )
    def post(self, request, dataset_id: int):
        dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = services.analysis_submit(user=request.user, dataset=dataset, params=dict(data.validated_data))
        return Response(JobOutputSerializer(job).data, status=status.HTTP_201_CREATED)


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
