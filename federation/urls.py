from django.urls import path

from federation import apis, views

app_name = "federation"

urlpatterns = [
    path("", views.index, name="index"),
    path("new/", views.create, name="create"),
    path("<int:federation_id>/", views.detail, name="detail"),
    path("<int:federation_id>/join/", views.join, name="join"),
    path(
        "<int:federation_id>/parties/<int:party_id>/admit/",
        views.party_action,
        {"action": "admit"},
        name="party-admit",
    ),
    path(
        "<int:federation_id>/parties/<int:party_id>/remove/",
        views.party_action,
        {"action": "remove"},
        name="party-remove",
    ),
]

api_urlpatterns: list = [
    path("", apis.FederationListApi.as_view(), name="api-federations"),
    path("<int:federation_id>/", apis.FederationDetailApi.as_view(), name="api-federation"),
    path("<int:federation_id>/state/", apis.FederationStateApi.as_view(), name="api-federation-state"),
    path("<int:federation_id>/join/", apis.JoinApi.as_view(), name="api-federation-join"),
    path("<int:federation_id>/parties/", apis.PartyListApi.as_view(), name="api-federation-parties"),
    path(
        "<int:federation_id>/parties/<int:party_id>/admit/",
        apis.PartyAdmitApi.as_view(),
        name="api-federation-party-admit",
    ),
    path(
        "<int:federation_id>/parties/<int:party_id>/remove/",
        apis.PartyRemoveApi.as_view(),
        name="api-federation-party-remove",
    ),
    path("<int:federation_id>/rounds/", apis.RoundListApi.as_view(), name="api-federation-rounds"),
    path(
        "<int:federation_id>/rounds/<int:number>/", apis.RoundDetailApi.as_view(), name="api-federation-round"
    ),
    path(
        "<int:federation_id>/rounds/<int:number>/model/",
        apis.RoundModelApi.as_view(),
        name="api-federation-round-model",
    ),
    path(
        "<int:federation_id>/rounds/<int:number>/updates/",
        apis.UpdateSubmitApi.as_view(),
        name="api-federation-round-updates",
    ),
    path(
        "<int:federation_id>/rounds/<int:number>/secagg/",
        apis.SecaggApi.as_view(),
        name="api-federation-round-secagg",
    ),
    path(
        "<int:federation_id>/me/submissions/",
        apis.MySubmissionsApi.as_view(),
        name="api-federation-my-submissions",
    ),
]
