from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from platform_site.api import api_errors, paginated_response
from platform_site.jobs.jobkinds import SelfTestParams
from platform_site.jobs.models import Job
from platform_site.jobs.selectors import job_get_for_user, job_list_for_user
from platform_site.jobs.services import job_cancel, job_submit


class JobOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Job
        fields = [
            "id", "kind", "status", "params", "progress", "message", "metrics", "result", "error",
            "queue", "worker", "attempts", "created_at", "started_at", "finished_at",
        ]  # fmt: skip


class JobListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS  # so the schema documents the page envelope

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=Job.Status.choices, required=False)
        kind = serializers.CharField(required=False, max_length=64)

    @extend_schema(
        parameters=[
            OpenApiParameter("status", enum=Job.Status.values),
            OpenApiParameter("kind", str),
        ],
        responses={200: JobOutputSerializer(many=True), **api_errors(400)},
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        jobs = job_list_for_user(user=request.user, **filters.validated_data)
        return paginated_response(
            request=request, view=self, queryset=jobs, serializer_class=JobOutputSerializer
        )


class JobDetailApi(APIView):
    @extend_schema(responses={200: JobOutputSerializer, **api_errors(404)})
    def get(self, request, job_id: int):
        job = job_get_for_user(job_id=job_id, user=request.user)
        return Response(JobOutputSerializer(job).data)


class JobCancelApi(APIView):
    @extend_schema(request=None, responses={200: JobOutputSerializer, **api_errors(404, 409)})
    def post(self, request, job_id: int):
        job = job_get_for_user(job_id=job_id, user=request.user)
        job = job_cancel(job=job, actor=request.user)
        return Response(JobOutputSerializer(job).data)


class JobSelfTestApi(APIView):
    @extend_schema(request=SelfTestParams, responses={201: JobOutputSerializer, **api_errors(400, 429)})
    def post(self, request):
        params = SelfTestParams(data=request.data)
        params.is_valid(raise_exception=True)
        job = job_submit(owner=request.user, kind="ml.selftest", params=params.validated_data)
        return Response(JobOutputSerializer(job).data, status=status.HTTP_201_CREATED)
