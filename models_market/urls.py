from django.urls import path

from models_market import apis, views

app_name = "models_market"

urlpatterns = [path("", views.index, name="index")]

api_urlpatterns: list = [
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
    path("deposit/", apis.DepositApi.as_view(), name="api-models-deposit"),
    path("deposit/withdraw/", apis.DepositWithdrawApi.as_view(), name="api-models-deposit-withdraw"),
]
