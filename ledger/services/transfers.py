"""Moving tokens: transfers, mints and split payments, and the requests users and staff make of them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from ledger.models import Entry
from ledger.names import ISSUANCE, account_name
from ledger.services.accounts import InsufficientFunds, account_check_destination, check_amount, postings_post
from platform_site.errors import Conflict, DomainError, PermissionDenied

if TYPE_CHECKING:
    from platform_site.accounts.models import User


def transfer(
    *,
    source: str,
    destination: str,
    amount: int,
    actor: str,
    memo: str = "",
    kind: str = "ledger.transfer",
    idempotency_key: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Entry:
    """Move `amount` from one account to another and write one entry (inside the caller's transaction)."""
    check_amount(amount)
    if source == destination:
        raise DomainError("the source and destination are the same account")
    if source == ISSUANCE:
        raise PermissionDenied("tokens leave issuance only by a mint")
    account_check_destination(name=destination, system_ok=True)
    payload = {**(extra or {}), **({"memo": memo} if memo else {})}
    return postings_post(
        kind=kind,
        actor=actor,
        payload=payload,
        postings=[{"account": source, "amount": -amount}, {"account": destination, "amount": amount}],
        idempotency_key=idempotency_key,
    )


def mint(
    *, destination: str, amount: int, actor: str, reason: str, idempotency_key: str | None = None
) -> Entry:
    """Create tokens: the only way in. Debits issuance, whose negative balance is the total supply."""
    check_amount(amount)
    if not reason.strip():
        raise DomainError("say why the tokens are minted")
    account_check_destination(name=destination, system_ok=True)
    return postings_post(
        kind="ledger.mint",
        actor=actor,
        payload={"reason": reason},
        postings=[{"account": ISSUANCE, "amount": -amount}, {"account": destination, "amount": amount}],
        idempotency_key=idempotency_key,
    )


@dataclass(frozen=True)
class Share:
    account: str
    basis_points: int


def split_amounts(amount: int, shares: Iterable[Share]) -> list[tuple[str, int]]:
    """Split by basis points, rounding each share down; the remainder (at most one unit per share) goes to the
    first share. Shares must add up to 10,000 basis points, so the parts always sum to exactly `amount`."""
    shares = list(shares)
    if not shares or sum(s.basis_points for s in shares) != 10_000:
        raise DomainError("the shares must add up to 10,000 basis points (100%)")
    if any(s.basis_points <= 0 for s in shares) or len({s.account for s in shares}) != len(shares):
        raise DomainError("each receiver appears once, with a positive share")
    parts = [(s.account, amount * s.basis_points // 10_000) for s in shares]
    remainder = amount - sum(p for _, p in parts)
    parts[0] = (parts[0][0], parts[0][1] + remainder)
    return parts


def split_pay(
    *, source: str, amount: int, shares: Iterable[Share], actor: str, kind: str = "ledger.split.paid",
    memo: str = "", idempotency_key: str | None = None, extra: dict[str, Any] | None = None,
) -> Entry:  # fmt: skip
    """Pay `amount` from `source` to several receivers by basis points, in one entry; `extra` adds the
    caller's own payload fields (what was bought), as with `transfer`."""
    check_amount(amount)
    parts = split_amounts(amount, shares)
    postings = [{"account": source, "amount": -amount}]
    postings += [{"account": account, "amount": part} for account, part in parts if part]
    payload = {
        **(extra or {}),
        "shares": [{"account": a, "amount": p} for a, p in parts],
        **({"memo": memo} if memo else {}),
    }
    return postings_post(
        kind=kind, actor=actor, postings=postings, payload=payload, idempotency_key=idempotency_key
    )


# ---------------------------------------------------------------------------------------------------- requests


def _idempotent(key: str | None, work: Callable[[], Entry]) -> Entry:
    """Run `work` in its own durable transaction; a retried request with the same key gets the first result."""
    if key:
        existing = Entry.objects.filter(idempotency_key=key).first()
        if existing is not None:
            return existing
    try:
        # Durable: the entry and its balances commit together, or the key stays free for a retry.
        with transaction.atomic(durable=True):
            return work()
    except (IntegrityError, DomainError):
        # A twin request with the same key may have committed while this one waited for the account locks:
        # then this one lost the unique key (IntegrityError), or found the tokens gone (InsufficientFunds).
        # Either way the answer is the twin's entry.
        existing = Entry.objects.filter(idempotency_key=key).first() if key else None
        if existing is None:
            raise
        return existing


def transfer_request(
    *, user: User, destination: str, amount: int, memo: str = "", idempotency_key: str | None = None
) -> Entry:
    """A user's transfer from their own account."""
    own = account_name(user=user)
    key = f"{own}:{idempotency_key}" if idempotency_key else None
    entry = _idempotent(key, lambda: _transfer_from_user(own, destination, amount, memo, key))
    expected = [{"account": own, "amount": -amount}, {"account": destination, "amount": amount}]
    if entry.kind != "ledger.transfer" or entry.payload.get("postings") != expected:
        raise Conflict("this idempotency key was used for a different request")
    return entry


def _transfer_from_user(own: str, destination: str, amount: int, memo: str, key: str | None) -> Entry:
    account_check_destination(name=destination)  # users send to users, orgs and DAOs only
    try:
        return transfer(
            source=own, destination=destination, amount=amount, actor=own, memo=memo, idempotency_key=key
        )
    except InsufficientFunds as exc:  # the user's own account is the one short: say it without its name
        raise exc.to_owner(what="this transfer needs") from exc


def faucet_request(*, user: User) -> Entry:
    """The demo faucet: mints LEDGER_FAUCET_AMOUNT to the user, at most once a day."""
    amount = settings.LEDGER_FAUCET_AMOUNT
    if not amount:
        raise PermissionDenied("the faucet is closed on this site")
    day = timezone.now().date().isoformat()
    key = f"faucet:{user.pk}:{day}"  # the user's id, not an account name: keys already stored stay valid
    if Entry.objects.filter(idempotency_key=key).exists():
        raise Conflict("you have used the faucet today; come back tomorrow")
    return _idempotent(
        key,
        lambda: mint(destination=account_name(user=user), amount=amount, actor=account_name(user=user),
                     reason="demo faucet", idempotency_key=key),
    )  # fmt: skip


def mint_request(*, staff: User, destination: str, amount: int, reason: str) -> Entry:
    """An administrator's grant of new tokens."""
    if not staff.is_staff:
        raise PermissionDenied("only staff may mint")
    # Durable: the mint is the whole request.
    with transaction.atomic(durable=True):
        return mint(destination=destination, amount=amount, actor=account_name(user=staff), reason=reason)
