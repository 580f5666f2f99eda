from django.urls import path

from ledger import apis, views

app_name = "ledger"

urlpatterns = [
    path("", views.index, name="index"),
    path("entries/<int:seq>/", views.entry_detail, name="entry"),
    path("faucet/", views.faucet, name="faucet"),
]

api_urlpatterns = [
    path("entries/", apis.EntryListApi.as_view(), name="api-ledger-entries"),
    path("entries/<int:seq>/", apis.EntryDetailApi.as_view(), name="api-ledger-entry"),
    path("checkpoint/", apis.CheckpointApi.as_view(), name="api-ledger-checkpoint"),
    path("proof/inclusion/", apis.InclusionProofApi.as_view(), name="api-ledger-inclusion"),
    path("proof/consistency/", apis.ConsistencyProofApi.as_view(), name="api-ledger-consistency"),
    path("public-keys/", apis.PublicKeyListApi.as_view(), name="api-ledger-public-keys"),
    path("witnesses/", apis.WitnessRegisterApi.as_view(), name="api-ledger-witnesses"),
    path("witness/cosign/", apis.CosignApi.as_view(), name="api-ledger-cosign"),
    path("accounts/", apis.AccountListApi.as_view(), name="api-ledger-accounts"),
    path("transfers/", apis.TransferApi.as_view(), name="api-ledger-transfers"),
    path("faucet/", apis.FaucetApi.as_view(), name="api-ledger-faucet"),
    path("mints/", apis.MintApi.as_view(), name="api-ledger-mints"),
]
