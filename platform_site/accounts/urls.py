from django.contrib.auth import views as auth_views
from django.urls import path

from platform_site.accounts import apis, views

app_name = "accounts"

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="accounts/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("signup/", views.signup, name="signup"),
    path("profile/", views.profile, name="profile"),
    path("profile/tokens/", views.token_create, name="token-create"),
    path("profile/tokens/<int:token_id>/revoke/", views.token_revoke, name="token-revoke"),
    path("profile/keys/", views.public_key_register_view, name="key-register"),
    path("profile/keys/<int:public_key_id>/revoke/", views.public_key_revoke_view, name="key-revoke"),
    path("organizations/", views.organization_list, name="organizations"),
    path("organizations/<int:organization_id>/", views.organization_detail, name="organization-detail"),
    path("organizations/<int:organization_id>/members/", views.membership_add, name="member-add"),
    path(
        "organizations/<int:organization_id>/members/<int:user_id>/role/",
        views.membership_role,
        name="member-role",
    ),
    path(
        "organizations/<int:organization_id>/members/<int:user_id>/remove/",
        views.membership_remove_view,
        name="member-remove",
    ),
]

api_urlpatterns = [
    path("me/", apis.MeApi.as_view(), name="api-accounts-me"),
    path("tokens/", apis.ApiTokenListCreateApi.as_view(), name="api-accounts-tokens"),
    path("tokens/<int:token_id>/revoke/", apis.ApiTokenRevokeApi.as_view(), name="api-accounts-token-revoke"),
    path("keys/", apis.PublicKeyListRegisterApi.as_view(), name="api-accounts-keys"),
    path(
        "keys/<int:public_key_id>/revoke/", apis.PublicKeyRevokeApi.as_view(), name="api-accounts-key-revoke"
    ),
    path("organizations/", apis.OrganizationListCreateApi.as_view(), name="api-accounts-organizations"),
    path(
        "organizations/<int:organization_id>/",
        apis.OrganizationDetailApi.as_view(),
        name="api-accounts-organization-detail",
    ),
    path(
        "organizations/<int:organization_id>/members/",
        apis.MembershipSetApi.as_view(),
        name="api-accounts-organization-members",
    ),
]
