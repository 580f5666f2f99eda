from django.urls import path

from models_market import apis, views

app_name = "models_market"

urlpatterns = [
    path("", views.index, name="index"),
    path("mine/", views.mine, name="mine"),
    path("train/", views.train, name="train"),
    path("<int:version_id>/", views.detail, name="detail"),
    path("<int:version_id>/buy/", views.buy, name="buy"),
    path("<int:version_id>/try/", views.try_model, name="try"),
]

api_urlpatterns: list = [
    # models in
    path("", apis.ModelListApi.as_view(), name="api-models"),
    path("train/", apis.ModelTrainApi.as_view(), name="api-models-train"),
    path("upload/", apis.ModelUploadApi.as_view(), name="api-models-upload"),
    path("versions/<int:version_id>/", apis.ModelVersionApi.as_view(), name="api-models-version"),
    path("versions/<int:version_id>/download/", apis.ModelDownloadApi.as_view(), name="api-models-download"),
]
