import base64
import binascii
import hashlib
import hmac
import secrets
import time
from datetime import datetime

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from platform_site.accounts.models import ApiToken, Membership, Organization, PublicKey, User
from platform_site.errors import Conflict, DomainError, PermissionDenied
from platform_site.keys import public_key_fingerprint

TOKEN_PREFIX_LEN = 12


def user_signup(*, username: str, password: str, email: str = "", display_name: str = "") -> User:
    """Create a user after Django's password validators accept the password."""
    user_model = get_user_model()
    if user_model.objects.filter(username__iexact=username).exists():
        raise Conflict(f"the username {username!r} is taken")
    candidate = user_model(username=username, email=email, display_name=display_name)
    validate_password(password, user=candidate)
    candidate.set_password(password)
    # A savepoint, so that losing a race for the username leaves the caller's transaction usable.
    try:
        with transaction.atomic():
            candidate.save()
    except IntegrityError as exc:
        raise Conflict(f"the username {username!r} is taken") from exc
    return candidate


def organization_create(*, owner: User, name: str, description: str = "") -> Organization:
    """Create an organization with its creator as owner."""
    slug = slugify(name)[:80]
    if not slug:
        raise DomainError("an organization needs a name with letters or digits")
    # One transaction: an organization must never exist without its owner.
    with transaction.atomic():
        try:
            org = Organization.objects.create(name=name, slug=slug, description=description)
        except IntegrityError as exc:
            raise Conflict(f"an organization named {name!r} already exists") from exc
        Membership.objects.create(organization=org, user=owner, role=Membership.Role.OWNER)
    return org


def _require_owner(*, organization: Organization, actor: User) -> None:
    if not Membership.objects.filter(
        organization=organization, user=actor, role=Membership.Role.OWNER
    ).exists():
        raise PermissionDenied("only an owner of the organization may do this")


def _owner_ids_locked(*, organization: Organization) -> list[int]:
    return list(
        Membership.objects.select_for_update()
        .filter(organization=organization, role=Membership.Role.OWNER)
        .values_list("user_id", flat=True)
    )


def membership_set(*, organization: Organization, actor: User, user: User, role: str) -> Membership:
    """Add a member to an organization or change their role; owners only."""
    _require_owner(organization=organization, actor=actor)
    if role not in Membership.Role.values:
        raise DomainError(f"unknown role {role!r}; choose one of {', '.join(Membership.Role.values)}")
    # Locked like membership_remove: demoting the last owner would leave the organization ownerless.
    with transaction.atomic():
        owners = _owner_ids_locked(organization=organization)
        if role != Membership.Role.OWNER and owners == [user.pk]:
            raise DomainError("the last owner cannot step down; make someone else owner first")
        membership, _ = Membership.objects.update_or_create(
            organization=organization, user=user, defaults={"role": role}
        )
    return membership


def membership_remove(*, organization: Organization, actor: User, user: User) -> None:
    """Remove a member; the last owner cannot be removed."""
    _require_owner(organization=organization, actor=actor)
    # Locked so that two owners removing each other at once cannot leave the organization ownerless.
    with transaction.atomic():
        owners = _owner_ids_locked(organization=organization)
        if owners == [user.pk]:
            raise DomainError("the last owner cannot leave; make someone else owner first")
        Membership.objects.filter(organization=organization, user=user).delete()


def _hash_token(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_token_create(*, user: User, name: str, expires_at: datetime | None = None) -> tuple[ApiToken, str]:
    """Create an API token and return it with its key; the key is shown once and only its hash is kept."""
    if not name.strip():
        raise DomainError("give the token a name, so you can tell it apart later")
    if expires_at is not None and expires_at <= timezone.now():
        raise DomainError("the expiry date must be in the future")
    prefix = secrets.token_hex(TOKEN_PREFIX_LEN // 2)
    key = f"{prefix}.{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(
        user=user, name=name.strip(), prefix=prefix, key_hash=_hash_token(key), expires_at=expires_at
    )
    return token, key


def api_token_revoke(*, token: ApiToken, actor: User) -> ApiToken:
    """Revoke a token of the actor's own; revoking twice is harmless."""
    if token.user_id != actor.pk:
        raise PermissionDenied("you can only revoke your own tokens")
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    _recent_forget(token_id=token.pk)
    return token


def api_token_authenticate(*, key: str) -> User | None:
    """The active user a token key belongs to, or None for an unknown, revoked or expired key."""
    token = _token_authenticate(key)
    return token.user if token is not None else None


def _token_authenticate(key: str) -> ApiToken | None:
    prefix, _, _secret = key.partition(".")
    if len(prefix) != TOKEN_PREFIX_LEN:
        return None
    token = ApiToken.objects.select_related("user").filter(prefix=prefix).first()
    if token is None or not hmac.compare_digest(token.key_hash, _hash_token(key)):
        return None
    now = timezone.now()
    if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now):
        return None
    if not token.user.is_active:
        return None
    # A plain UPDATE, at most once a minute per token, so that busy scripts do not write on every call.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


# Keys accepted lately, by their hash: (until when, time.monotonic(); the token with its user). Only for callers
# that check the token again in the statement that writes the call (models_market's metered predict does), so
# that a token revoked in another process meanwhile is still refused there.
RECENT_TOKEN_SECONDS = 10.0
_RECENT_TOKENS_MAX = 10_000
_recent_tokens: dict[str, tuple[float, ApiToken]] = {}


def api_token_authenticate_recent(*, key: str) -> ApiToken | None:
    """The token of `key`, with its user, as api_token_authenticate finds it, but without a query when this
    process accepted the key within RECENT_TOKEN_SECONDS (its expiry is checked every time). The caller must
    check revocation again where it writes."""
    digest = _hash_token(key)
    hit = _recent_tokens.get(digest)
    if hit is not None and hit[0] > time.monotonic():
        token = hit[1]
        if token.expires_at is None or token.expires_at > timezone.now():
            return token
    token = _token_authenticate(key)
    if token is None:
        _recent_tokens.pop(digest, None)
        return None
    if len(_recent_tokens) >= _RECENT_TOKENS_MAX:
        _recent_tokens.clear()
    _recent_tokens[digest] = (time.monotonic() + RECENT_TOKEN_SECONDS, token)
    return token


def _recent_forget(*, token_id: int) -> None:
    for digest, (_, token) in list(_recent_tokens.items()):
        if token.pk == token_id:
            _recent_tokens.pop(digest, None)


def parse_ed25519_public_key(text: str) -> bytes:
    """Raw 32 bytes of an Ed25519 public key given as PEM or as base64 of the raw bytes."""
    text = text.strip()
    if not text:
        raise DomainError("paste an Ed25519 public key (PEM, or the raw 32 bytes in base64)")
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode())
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise DomainError("this PEM block is not a readable public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise DomainError("only Ed25519 public keys are accepted")
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        # Whitespace is dropped so that base64 wrapped over several lines is accepted.
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DomainError("this is neither PEM nor valid base64") from exc
    if len(raw) != 32:
        raise DomainError(f"an Ed25519 public key is 32 bytes; this one is {len(raw)}")
    Ed25519PublicKey.from_public_bytes(raw)
    return raw


def public_key_register(
    *, actor: User, name: str, key_text: str, organization: Organization | None = None
) -> PublicKey:
    """Register an Ed25519 public key for the actor, or for an organization the actor owns."""
    if not name.strip():
        raise DomainError("give the key a name")
    raw = parse_ed25519_public_key(key_text)
    if organization is not None:
        _require_owner(organization=organization, actor=actor)
    key_id = public_key_fingerprint(raw)
    if PublicKey.objects.filter(key_id=key_id).exists():
        raise Conflict("this public key is already registered")
    try:
        return PublicKey.objects.create(
            user=None if organization else actor,
            organization=organization,
            name=name.strip(),
            raw=raw,
            key_id=key_id,
        )
    except IntegrityError as exc:
        raise Conflict("this public key is already registered") from exc


def public_key_revoke(*, key: PublicKey, actor: User) -> PublicKey:
    """Revoke a key: signatures made with it are no longer accepted."""
    if key.organization_id is not None:
        _require_owner(organization=key.organization, actor=actor)
    elif key.user_id != actor.pk:
        raise PermissionDenied("you can only revoke your own keys")
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key
