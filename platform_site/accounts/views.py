from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from ledger import selectors as ledger_selectors
from ledger import services as ledger_services
from platform_site.accounts.forms import (
    ApiTokenCreateForm,
    MembershipAddForm,
    MembershipRoleForm,
    OrganizationCreateForm,
    PublicKeyRegisterForm,
    SignupForm,
)
from platform_site.accounts.models import ApiToken, Membership, Organization
from platform_site.accounts.selectors import (
    api_token_get_for_user,
    api_token_list_for_user,
    membership_get_for_organization,
    membership_list_for_organization,
    membership_list_for_user,
    organization_get_for_user,
    organization_list_for_user,
    organization_list_owned_by,
    public_key_get_for_user,
    public_key_list_for_organization,
    public_key_list_for_user,
)
from platform_site.accounts.services import (
    api_token_create,
    api_token_revoke,
    membership_remove,
    membership_set,
    organization_create,
    public_key_register,
    public_key_revoke,
    user_signup,
)
from platform_site.errors import Conflict, DomainError
from platform_site.home.selectors import activity_list_for_user


def login_locked_out(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """django-axes's answer to a log-in while locked out: the site's page, with 429 Too Many Requests."""
    minutes = max(1, round(settings.AXES_COOLOFF_TIME.total_seconds() / 60))
    context = {"failure_limit": settings.AXES_FAILURE_LIMIT, "cooloff_minutes": minutes}
    return render(request, "accounts/lockout.html", context, status=429)


def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("home:dashboard")
    form = SignupForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        try:
            user = user_signup(
                username=form.cleaned_data["username"],
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password1"],
            )
        except Conflict as exc:
            form.add_error("username", exc.message)
        except ValidationError as exc:  # Django's password validators
            form.add_error("password1", exc)
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("home:dashboard")  # which greets a new user and shows where to start
    return render(request, "accounts/signup.html", {"form": form})


WALLET_ENTRIES = 10


def _org_wallet(organization, account: str, balances: dict[str, int]) -> dict:
    return {
        "organization": organization,
        "account": account,
        "balance": ledger_services.format_amount(balances.get(account, 0)),
    }


def _wallet(user, memberships: list[Membership]) -> dict:
    name = ledger_services.account_name(user=user)
    balances = {a.name: a.balance for a in ledger_selectors.account_list_for_user(user=user)}
    return {
        "account": name,
        "balance": ledger_services.format_amount(balances.get(name, 0)),
        "organizations": [
            _org_wallet(m.organization, ledger_services.account_name(org=m.organization_id), balances)
            for m in memberships
        ],
        # In words, with links to what each entry is about (the selector loads those in bulk).
        "activity": activity_list_for_user(user=user, limit=WALLET_ENTRIES),
    }


def _render_profile(
    request: HttpRequest,
    *,
    token_form: ApiTokenCreateForm | None = None,
    key_form: PublicKeyRegisterForm | None = None,
    new_token: ApiToken | None = None,
    new_key: str = "",
) -> HttpResponse:
    user = request.user
    owned = organization_list_owned_by(user=user)
    memberships = list(membership_list_for_user(user=user))
    context = {
        "memberships": memberships,
        "wallet": _wallet(user, memberships),
        "tokens": api_token_list_for_user(user=user),
        "public_keys": public_key_list_for_user(user=user),
        "owned_organization_ids": set(owned.values_list("pk", flat=True)),
        "token_form": token_form or ApiTokenCreateForm(),
        "key_form": key_form or PublicKeyRegisterForm(owned_organizations=owned),
        "new_token": new_token,
        "new_key": new_key,
    }
    return render(request, "accounts/profile.html", context)


@never_cache
@login_required
def profile(request: HttpRequest) -> HttpResponse:
    return _render_profile(request)


@never_cache  # the response carries a new key: no cache may keep it
@login_required
@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    form = ApiTokenCreateForm(request.POST)
    if form.is_valid():
        days = form.cleaned_data["expires_in_days"]
        try:
            token, key = api_token_create(
                user=request.user,
                name=form.cleaned_data["name"],
                expires_at=timezone.now() + timedelta(days=days) if days else None,
            )
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            # Rendered here rather than redirected, so the key is never stored anywhere, not even in the session.
            return _render_profile(request, new_token=token, new_key=key)
    return _render_profile(request, token_form=form)


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = api_token_get_for_user(token_id=token_id, user=request.user)
    try:
        api_token_revoke(token=token, actor=request.user)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"The token “{token.name}” is revoked: it no longer works.")
    return redirect("accounts:profile")


@login_required
@require_POST
def public_key_register_view(request: HttpRequest) -> HttpResponse:
    form = PublicKeyRegisterForm(
        request.POST, owned_organizations=organization_list_owned_by(user=request.user)
    )
    if form.is_valid():
        try:
            key = public_key_register(
                actor=request.user,
                name=form.cleaned_data["name"],
                key_text=form.cleaned_data["public_key"],
                organization=form.cleaned_data["organization"],
            )
        except DomainError as exc:
            form.add_error("public_key", exc.message)
        else:
            messages.success(request, f"The key “{key.name}” is registered with id {key.key_id}.")
            return redirect("accounts:profile")
    return _render_profile(request, key_form=form)


@login_required
@require_POST
def public_key_revoke_view(request: HttpRequest, public_key_id: int) -> HttpResponse:
    key = public_key_get_for_user(public_key_id=public_key_id, user=request.user)
    try:
        public_key_revoke(key=key, actor=request.user)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"The key “{key.name}” is revoked.")
    return redirect("accounts:profile")


@login_required
def organization_list(request: HttpRequest) -> HttpResponse:
    form = OrganizationCreateForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        try:
            organization = organization_create(
                owner=request.user,
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
            )
        except DomainError as exc:
            form.add_error("name", exc.message)
        else:
            messages.success(request, f"{organization.name} is created and you are its owner.")
            return redirect("accounts:organization-detail", organization_id=organization.pk)
    organizations = organization_list_for_user(user=request.user)
    return render(request, "accounts/organization_list.html", {"organizations": organizations, "form": form})


def _render_organization(
    request: HttpRequest, organization: Organization, *, add_form: MembershipAddForm | None = None
) -> HttpResponse:
    context = {
        "organization": organization,
        "is_owner": organization.role == Membership.Role.OWNER,
        "members": membership_list_for_organization(organization=organization),
        "public_keys": public_key_list_for_organization(organization=organization),
        "roles": Membership.Role.choices,
        "add_form": add_form or MembershipAddForm(),
    }
    return render(request, "accounts/organization_detail.html", context)


@login_required
def organization_detail(request: HttpRequest, organization_id: int) -> HttpResponse:
    return _render_organization(
        request, organization_get_for_user(organization_id=organization_id, user=request.user)
    )


@login_required
@require_POST
def membership_add(request: HttpRequest, organization_id: int) -> HttpResponse:
    organization = organization_get_for_user(organization_id=organization_id, user=request.user)
    form = MembershipAddForm(request.POST)
    if not form.is_valid():
        return _render_organization(request, organization, add_form=form)
    user = form.cleaned_data["username"]
    try:
        membership_set(
            organization=organization, actor=request.user, user=user, role=form.cleaned_data["role"]
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"{user.username} is now {form.cleaned_data['role']} of {organization.name}."
        )
    return redirect("accounts:organization-detail", organization_id=organization.pk)


@login_required
@require_POST
def membership_role(request: HttpRequest, organization_id: int, user_id: int) -> HttpResponse:
    organization = organization_get_for_user(organization_id=organization_id, user=request.user)
    membership = membership_get_for_organization(organization=organization, user_id=user_id)
    form = MembershipRoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a role: owner or member.")
    else:
        try:
            membership_set(
                organization=organization,
                actor=request.user,
                user=membership.user,
                role=form.cleaned_data["role"],
            )
        except DomainError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"{membership.user.username} is now {form.cleaned_data['role']}.")
    return redirect("accounts:organization-detail", organization_id=organization.pk)


@login_required
@require_POST
def membership_remove_view(request: HttpRequest, organization_id: int, user_id: int) -> HttpResponse:
    organization = organization_get_for_user(organization_id=organization_id, user=request.user)
    membership = membership_get_for_organization(organization=organization, user_id=user_id)
    try:
        membership_remove(organization=organization, actor=request.user, user=membership.user)
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("accounts:organization-detail", organization_id=organization.pk)
    if membership.user_id == request.user.pk:
        messages.success(request, f"You left {organization.name}.")
        return redirect("accounts:organizations")
    messages.success(request, f"{membership.user.username} is no longer a member of {organization.name}.")
    return redirect("accounts:organization-detail", organization_id=organization.pk)
