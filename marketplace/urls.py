from django.urls import path

from marketplace import apis, views

app_name = "marketplace"

urlpatterns = [path("", views.index, name="index")]

api_urlpatterns = [
    path("datasets/", apis.DatasetListApi.as_view(), name="api-data-datasets"),
    path("datasets/<int:dataset_id>/", apis.DatasetDetailApi.as_view(), name="api-data-dataset"),
    path("datasets/<int:dataset_id>/versions/", apis.VersionUploadApi.as_view(), name="api-data-versions"),
    path("datasets/<int:dataset_id>/publish/", apis.DatasetPublishApi.as_view(), name="api-data-publish"),
    path("datasets/<int:dataset_id>/withdraw/", apis.DatasetWithdrawApi.as_view(), name="api-data-withdraw"),
    path("datasets/<int:dataset_id>/buy/", apis.DatasetBuyApi.as_view(), name="api-data-buy"),
    path("datasets/<int:dataset_id>/download/", apis.DatasetDownloadApi.as_view(), name="api-data-download"),
    path("datasets/<int:dataset_id>/analyses/", apis.AnalysisSubmitApi.as_view(), name="api-data-analyses"),
    path("licenses/", apis.LicenseListApi.as_view(), name="api-data-licenses"),
]
