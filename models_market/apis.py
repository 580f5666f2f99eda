"""The models market's REST API."""

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from marketplace import selectors as data_selectors
from models_market import services
from models_market.jobkinds import TrainOptions
from models_market.models import ModelAsset, ModelParent, ModelVersion
from platform_site.api import api_errors, paginated_response
from platform_site.jobs.apis import JobOutputSerializer

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
