from django.urls import path

from marketplace import apis, views

app_name = "marketplace"

urlpatterns = [
    path("", views.index, name="index"),
    path("new/", views.new, name="new"),
    path("mine/", views.mine, name="mine"),
    path("<int:dataset_id>/", views.detail, name="detail"),
    path("<int:dataset_id>/buy/", views.buy, name="buy"),
    path("<int:dataset_id>/state/", views.version_state, name="version-state"),
    path("<int:dataset_id>/publish/", views.publish, name="publish"),
    path("<int:dataset_id>/withdraw/", views.withdraw, name="withdraw"),
    path("<int:dataset_id>/versions/", views.version_upload, name="version-upload"),
    path("<int:dataset_id>/preview/", views.preview_toggle, name="preview"),
    path("<int:dataset_id>/privacy-budget/", views.privacy_budget_set, name="privacy-budget"),
    path("<int:dataset_id>/analyses/", views.analysis_submit, name="analysis"),
    path("<int:dataset_id>/analyses/<int:job_id>/", views.analysis_detail, name="analysis-detail"),
    path("<int:dataset_id>/analyses/<int:job_id>/cancel/", views.analysis_cancel, name="analysis-cancel"),
]

api_urlpatterns = [
    path("datasets/", apis.DatasetListApi.as_view(), name="api-data-datasets"),
    path("datasets/<int:dataset_id>/", apis.DatasetDetailApi.as_view(), name="api-data-dataset"),
    path("datasets/<int:dataset_id>/versions/", apis.VersionListApi.as_view(), name="api-data-versions"),
    path(
        "datasets/<int:dataset_id>/versions/upload/",
        apis.VersionRawUploadApi.as_view(),
        name="api-data-version-upload",
    ),
    path("datasets/<int:dataset_id>/publish/", apis.DatasetPublishApi.as_view(), name="api-data-publish"),
    path("datasets/<int:dataset_id>/withdraw/", apis.DatasetWithdrawApi.as_view(), name="api-data-withdraw"),
    path("datasets/<int:dataset_id>/buy/", apis.DatasetBuyApi.as_view(), name="api-data-buy"),
    path("datasets/<int:dataset_id>/download/", apis.DatasetDownloadApi.as_view(), name="api-data-download"),
    path("datasets/<int:dataset_id>/analyses/", apis.AnalysisSubmitApi.as_view(), name="api-data-analyses"),
    path("datasets/<int:dataset_id>/privacy/", apis.DatasetPrivacyApi.as_view(), name="api-data-privacy"),
    path("licenses/", apis.LicenseListApi.as_view(), name="api-data-licenses"),
]
