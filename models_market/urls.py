from django.urls import path

from models_market import apis, views

app_name = "models_market"

urlpatterns = [
    path("", views.index, name="index"),
    path("mine/", views.mine, name="mine"),
    path("train/", views.train, name="train"),
    path("evaluate/", views.evaluate, name="evaluate"),
    path("evaluations/<int:evaluation_id>/", views.evaluation, name="evaluation"),
    path("<int:version_id>/", views.detail, name="detail"),
    path("<int:version_id>/buy/", views.buy, name="buy"),
    path("<int:version_id>/try/", views.try_model, name="try"),
    path("<int:version_id>/guarantee/", views.guarantee, name="guarantee"),
    path("<int:version_id>/buy-guaranteed/", views.buy_guaranteed, name="buy-guaranteed"),
]

api_urlpatterns: list = [
    # models in
    path("", apis.ModelListApi.as_view(), name="api-models"),
    path("train/", apis.ModelTrainApi.as_view(), name="api-models-train"),
    path("upload/", apis.ModelUploadApi.as_view(), name="api-models-upload"),
    path("versions/<int:version_id>/", apis.ModelVersionApi.as_view(), name="api-models-version"),
    path("versions/<int:version_id>/download/", apis.ModelDownloadApi.as_view(), name="api-models-download"),
    # money (tokens, licences, metered calls)
    path("versions/<int:version_id>/predict/", apis.PredictApi.as_view(), name="api-models-predict"),
    path("receipts/<int:receipt_id>/", apis.ReceiptDetailApi.as_view(), name="api-models-receipt"),
    path("licenses/", apis.LicenseListApi.as_view(), name="api-models-licenses"),
    path("tokens/<int:token_id>/", apis.TokenDetailApi.as_view(), name="api-models-token"),
    path(
        "tokens/<int:token_id>/licenses/", apis.LicensePurchaseApi.as_view(), name="api-models-token-license"
    ),
    path(
        "tokens/<int:token_id>/transfer/", apis.TokenTransferApi.as_view(), name="api-models-token-transfer"
    ),
    path("tokens/<int:token_id>/approve/", apis.TokenApproveApi.as_view(), name="api-models-token-approve"),
    path("tokens/<int:token_id>/buy/", apis.TokenBuyApi.as_view(), name="api-models-token-buy"),
    # guarantees and paid evaluations
    path(
        "tokens/<int:token_id>/guarantee/",
        apis.TokenGuaranteeApi.as_view(),
        name="api-models-token-guarantee",
    ),
    path(
        "tokens/<int:token_id>/licenses/guaranteed/",
        apis.GuaranteedPurchaseApi.as_view(),
        name="api-models-token-license-guaranteed",
    ),
    path("guaranteed/", apis.GuaranteedPurchaseListApi.as_view(), name="api-models-guaranteed"),
    path("evaluations/", apis.EvaluationSubmitApi.as_view(), name="api-models-evaluations"),
    path("evaluations/mine/", apis.OwnerEvaluationListApi.as_view(), name="api-models-evaluations-mine"),
    path(
        "evaluations/<int:evaluation_id>/", apis.EvaluationDetailApi.as_view(), name="api-models-evaluation"
    ),
    path("deposit/", apis.DepositApi.as_view(), name="api-models-deposit"),
    path("deposit/withdraw/", apis.DepositWithdrawApi.as_view(), name="api-models-deposit-withdraw"),
]
