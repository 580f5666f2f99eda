from django.urls import path

from platform_site.jobs import apis, views

app_name = "jobs"

urlpatterns = [
    path("", views.job_list, name="list"),
    path("selftest/", views.job_selftest, name="selftest"),
    path("<int:job_id>/", views.job_detail, name="detail"),
    path("<int:job_id>/cancel/", views.job_cancel_view, name="cancel"),
    path("<int:job_id>/raw/", views.job_raw, name="raw"),
]

api_urlpatterns = [
    path("", apis.JobListApi.as_view(), name="api-jobs-list"),
    path("selftest/", apis.JobSelfTestApi.as_view(), name="api-jobs-selftest"),
    path("<int:job_id>/", apis.JobDetailApi.as_view(), name="api-jobs-detail"),
    path("<int:job_id>/cancel/", apis.JobCancelApi.as_view(), name="api-jobs-cancel"),
]
