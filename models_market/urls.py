from django.urls import path

from models_market import apis, views

app_name = "models_market"

urlpatterns = [path("", views.index, name="index")]

api_urlpatterns: list = [
    # models in
    path("", apis.ModelListApi.as_view(), name="api-models"),
    path("train/", apis.ModelTrainApi.as_view(), name="api-models-train"),
    path("upload/", apis.ModelUploadApi.as_view(), name="api-models-upload"),
    path("versions/<int:version_id>/", apis.ModelVersionApi.as_view(), name="api-models-version"),
    path("versions/<int:version_id>/download/", apis.ModelDownloadApi.as_view(), name="api-models-download"),
]
