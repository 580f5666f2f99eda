from django.db.models import Case, CharField, Count, OuterRef, Prefetch, Q, QuerySet, Subquery, Value, When
from django.utils import timezone

from platform_site.accounts.models import ApiToken, Membership, Organization, PublicKey, User
from platform_site.errors import NotFound

# Owners first ("owner" sorts after "member"), then by username.
MEMBER_ORDER = ("-role", "user__username")


def membership_list_for_user(*, user: User | int) -> QuerySet[Membership]:
    """The user's memberships (a User or a user id), with their organizations, by organization name."""
    return Membership.objects.filter(user=user).select_related("organization").order_by("organization__name")


def user_get_with_memberships(*, user_id: int) -> User:
    """The user with `memberships` (and their organizations) prefetched."""
    return User.objects.prefetch_related(
        Prefetch("memberships", queryset=membership_list_for_user(user=user_id))
    ).get(pk=user_id)


def organization_list_for_user(*, user: User) -> QuerySet[Organization]:
    """Organizations the user belongs to, each annotated with `role` (the user's) and `member_count`."""
    role = Membership.objects.filter(organization=OuterRef("pk"), user=user).values("role")[:1]
    return (
        # A subquery, not a join on memberships, so that member_count counts every member.
        Organization.objects.filter(pk__in=Membership.objects.filter(user=user).values("organization"))
        .annotate(role=Subquery(role), member_count=Count("memberships", distinct=True))
        .order_by("name", "pk")
    )


def organization_list_owned_by(*, user: User) -> QuerySet[Organization]:
    return Organization.objects.filter(
        memberships__user=user, memberships__role=Membership.Role.OWNER
    ).order_by("name", "pk")


def organization_get_for_user(*, organization_id: int, user: User) -> Organization:
    """The organization with the user's `role` annotated; NotFound for non-members, so ids do not leak."""
    organization = organization_list_for_user(user=user).filter(pk=organization_id).first()
    if organization is None:
        raise NotFound("no such organization")
    return organization


def organization_get_with_members(*, organization_id: int, user: User) -> Organization:
    """Like organization_get_for_user, with `memberships` (and their users) prefetched."""
    organization = (
        organization_list_for_user(user=user)
        .filter(pk=organization_id)
        .prefetch_related(
            Prefetch(
                "memberships",
                queryset=Membership.objects.select_related("user").order_by(*MEMBER_ORDER),
            )
        )
        .first()
    )
    if organization is None:
        raise NotFound("no such organization")
    return organization


def membership_list_for_organization(*, organization: Organization) -> QuerySet[Membership]:
    return Membership.objects.filter(organization=organization).select_related("user").order_by(*MEMBER_ORDER)


def membership_get_for_organization(*, organization: Organization, user_id: int) -> Membership:
    membership = membership_list_for_organization(organization=organization).filter(user_id=user_id).first()
    if membership is None:
        raise NotFound("no such member")
    return membership


def api_token_list_for_user(*, user: User) -> QuerySet[ApiToken]:
    """The user's tokens, newest first, each annotated with `status`: active, expired or revoked."""
    return ApiToken.objects.filter(user=user).annotate(
        status=Case(
            When(revoked_at__isnull=False, then=Value("revoked")),
            When(expires_at__lte=timezone.now(), then=Value("expired")),
            default=Value("active"),
            output_field=CharField(),
        )
    )


def api_token_get_for_user(*, token_id: int, user: User) -> ApiToken:
    token = api_token_list_for_user(user=user).filter(pk=token_id).first()
    if token is None:
        raise NotFound("no such token")
    return token


def public_key_list_for_user(*, user: User) -> QuerySet[PublicKey]:
    """Keys the user registered for themself and keys of the organizations they belong to."""
    return PublicKey.objects.filter(
        Q(user=user) | Q(organization__in=Membership.objects.filter(user=user).values("organization"))
    ).select_related("user", "organization")


def public_key_get_for_user(*, public_key_id: int, user: User) -> PublicKey:
    key = public_key_list_for_user(user=user).filter(pk=public_key_id).first()
    if key is None:
        raise NotFound("no such key")
    return key


def public_key_list_for_organization(*, organization: Organization) -> QuerySet[PublicKey]:
    return PublicKey.objects.filter(organization=organization)


# ---------------------------------------------------------------------------------------------------- for the ledger
# The ledger reads users, organizations and keys only through these, never through the accounts models.


def user_is_active(*, user_id: int) -> bool:
    return User.objects.filter(pk=user_id, is_active=True).exists()


def user_list_by_usernames(*, usernames: list[str]) -> QuerySet[User]:
    return User.objects.filter(username__in=usernames)


def organization_exists(*, organization_id: int) -> bool:
    return Organization.objects.filter(pk=organization_id).exists()


def organization_ids_for_user(*, user: User) -> list[int]:
    return list(organization_ids_query(user=user))


def organization_ids_query(*, user: User) -> QuerySet:
    """The ids of the user's organizations as a query, for a filter to use as its subquery (no query of its own)."""
    return Membership.objects.filter(user=user).values_list("organization_id", flat=True)


def organization_is_owned_by(*, organization: Organization, user: User) -> bool:
    return Membership.objects.filter(
        organization=organization, user=user, role=Membership.Role.OWNER
    ).exists()


def public_key_get_by_key_id(*, key_id: str, active_only: bool = False) -> PublicKey | None:
    """The registered key with this key id (None when there is none, or when it is revoked and `active_only`)."""
    keys = PublicKey.objects.filter(key_id=key_id)
    if active_only:
        keys = keys.filter(revoked_at__isnull=True)
    return keys.first()


def public_key_list_by_key_ids(*, key_ids: QuerySet | list[str]) -> QuerySet[PublicKey]:
    """The registered keys with these key ids (revoked ones included), by key id."""
    return PublicKey.objects.filter(key_id__in=key_ids).order_by("key_id")


# ---------------------------------------------------------------------------------------------------- for pages


def username_map(*, ids: set[int]) -> dict[int, str]:
    """Usernames by user id, in one query: for pages that name the people behind account names."""
    return dict(User.objects.filter(pk__in=ids).values_list("pk", "username")) if ids else {}


def organization_name_map(*, ids: set[int]) -> dict[int, str]:
    """Organization names by id, in one query."""
    return dict(Organization.objects.filter(pk__in=ids).values_list("pk", "name")) if ids else {}
