"""Tokens with ERC-721 semantics: transfer, approve, the owner's offers, and sale with the creator's royalty.

Every change locks the token's row and writes its ledger entry in the same durable transaction. A request
made on what the caller read before another change landed (the token changed hands, its price changed) is a
Conflict (409), not a refusal: the caller may read again and decide.
"""

from typing import Any

from django.conf import settings
from django.db import transaction

from ledger import services as ledger
from models_market.models import ModelToken
from models_market.services.lineage import payees_open
from platform_site.accounts.models import User
from platform_site.accounts.selectors import user_is_active
from platform_site.errors import Conflict, DomainError, PermissionDenied

# Prices go into the ledger's canonical JSON, whose integers are exact up to 2**53-1.
MAX_PRICE = 2**53 - 1
# How long a timed licence may last: a datetime ends in the year 9999.
MAX_TIMED_DAYS = 36_500
MAX_QUOTA_CALLS = 2**31 - 1  # a PositiveIntegerField
KEEP: Any = object()  # token_offer_set: leave this offer as it is


def _recipient(to: User | str) -> User:
    """An active user, given as a User, a username or `user:<id>`; never a system, org, DAO, escrow or deposit
    account (tokens belong to people), nor somebody who does not exist."""
    if isinstance(to, User):
        user = to
    elif isinstance(to, str) and (":" in to or to in (ledger.TREASURY, ledger.ISSUANCE)):
        kind, ident = ledger.account_parse(to)
        if kind != "user":
            raise DomainError(f"a model token belongs to a user; {to} is not a user's account")
        user = User.objects.filter(pk=ident).first()
    elif isinstance(to, str) and to:
        user = User.objects.filter(username=to).first()
    else:
        raise DomainError("name the user by username or as user:<id>")
    if user is None or not user.is_active:
        raise DomainError(f"there is no user {to}")
    return user


def _locked(token: ModelToken) -> ModelToken:
    """The token's row, locked (changes to one token queue behind each other), checked against what the caller
    read: if it changed hands meanwhile, the caller's request no longer means what it meant."""
    locked = ModelToken.objects.select_for_update().select_related("version").get(pk=token.pk)
    if locked.owner_id != token.owner_id:
        raise Conflict("the token changed hands meanwhile; read it again")
    return locked


def _entry(kind: str, actor: User, token: ModelToken, **payload: Any):
    return ledger.entry_append(
        kind=kind,
        actor=ledger.account_name(user=actor),
        payload={"token": token.pk, "version": token.version_id, **payload},
    )


def token_transfer(*, token: ModelToken, actor: User, to: User | str) -> ModelToken:
    """Give the token to another user: by its owner or its approved operator. The approval and any sale price
    are cleared (they were the previous owner's)."""
    recipient = _recipient(to)
    with transaction.atomic(durable=True):
        token = _locked(token)
        if actor.pk not in (token.owner_id, token.approved_id):
            raise PermissionDenied("only the token's owner or its approved operator transfers it")
        if recipient.pk == token.owner_id:
            raise DomainError("the token is already theirs")
        _entry(
            "models_market.token.transferred", actor, token,
            **{"from": ledger.account_name(user=token.owner_id), "to": ledger.account_name(user=recipient)},
        )  # fmt: skip
        token.owner, token.approved, token.sale_price = recipient, None, None
        token.save(update_fields=["owner", "approved", "sale_price", "updated_at"])
    return token


def token_approve(*, token: ModelToken, actor: User, operator: User | str | None) -> ModelToken:
    """Let one other user transfer the token (ERC-721 `approve`), or nobody (None). Only the owner approves."""
    operator_user = None if operator is None else _recipient(operator)
    with transaction.atomic(durable=True):
        token = _locked(token)
        if actor.pk != token.owner_id:
            raise PermissionDenied("only the token's owner approves an operator")
        if operator_user is not None and operator_user.pk == token.owner_id:
            raise DomainError("the owner needs no approval")
        _entry(
            "models_market.token.approved", actor, token,
            operator=ledger.account_name(user=operator_user) if operator_user else None,
        )  # fmt: skip
        token.approved = operator_user
        token.save(update_fields=["approved", "updated_at"])
    return token


def _check_price(name: str, value: Any, *, zero_ok: bool = False) -> None:
    low = 0 if zero_ok else 1
    if value is None and not zero_ok:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_PRICE:
        raise DomainError(f"{name} must be a whole number of minor units from {low} to {MAX_PRICE:,}")


def _check_count(name: str, value: Any, high: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= high):
        raise DomainError(f"{name} must be a whole number from 1 to {high:,}")


OFFER_FIELDS = (
    "sale_price", "price_perpetual", "price_timed", "timed_days", "price_quota", "quota_calls", "price_per_call",
    "listed",
)  # fmt: skip


def token_offer_set(
    *,
    token: ModelToken,
    actor: User,
    sale_price: int | None = KEEP,
    price_perpetual: int | None = KEEP,
    price_timed: int | None = KEEP,
    timed_days: int | None = KEEP,
    price_quota: int | None = KEEP,
    quota_calls: int | None = KEEP,
    price_per_call: int = KEEP,
    listed: bool = KEEP,
) -> ModelToken:
    """The owner's offers: the token's own sale price (None: not for sale) and the access licences (a price of
    None: not offered) with the per-call price of perpetual and timed licences. Fields left as KEEP stay."""
    given = dict(
        sale_price=sale_price, price_perpetual=price_perpetual, price_timed=price_timed, timed_days=timed_days,
        price_quota=price_quota, quota_calls=quota_calls, price_per_call=price_per_call, listed=listed,
    )  # fmt: skip
    with transaction.atomic(durable=True):
        token = _locked(token)
        if actor.pk != token.owner_id:
            raise PermissionDenied("only the token's owner sets its offers")
        offer = {name: getattr(token, name) if value is KEEP else value for name, value in given.items()}
        for name in ("sale_price", "price_perpetual", "price_timed", "price_quota"):
            _check_price(name, offer[name])
        _check_price("price_per_call", offer["price_per_call"], zero_ok=True)
        _check_count("timed_days", offer["timed_days"], MAX_TIMED_DAYS)
        _check_count("quota_calls", offer["quota_calls"], MAX_QUOTA_CALLS)
        if not isinstance(offer["listed"], bool):
            raise DomainError("listed is true or false")
        if offer["price_timed"] is not None and offer["timed_days"] is None:
            raise DomainError("a timed licence needs timed_days, how long it lasts")
        if offer["price_quota"] is not None and offer["quota_calls"] is None:
            raise DomainError("a quota licence needs quota_calls, how many calls it buys")
        if offer["listed"] and all(
            offer[k] is None for k in ("price_perpetual", "price_timed", "price_quota")
        ):
            raise DomainError("to list the model, offer at least one licence: perpetual, timed or quota")
        if offer["listed"] and token.version.status != token.version.Status.READY:
            raise Conflict("the model version is not ready to be called")
        _entry("models_market.token.offered", actor, token, **offer)
        for name, value in offer.items():
            setattr(token, name, value)
        token.save(update_fields=[*OFFER_FIELDS, "updated_at"])
    return token


def sale_split(*, token: ModelToken, price: int) -> dict[str, int]:
    """The parts of a sale of the token at `price`: the platform fee (MODELS_FEE_BP) to the treasury, the
    creator's royalty (royalty_bp of the rest; none when the creator sells), the remainder to the seller."""
    fee = price * settings.MODELS_FEE_BP // 10_000
    royalty = (price - fee) * token.royalty_bp // 10_000 if token.owner_id != token.creator_id else 0
    return {"fee": fee, "royalty": royalty, "seller": price - fee - royalty}


def token_buy(*, token: ModelToken, buyer: User, expected_price: int | None = None) -> ModelToken:
    """Buy the token at its sale price: the seller is paid less the creator's royalty and the platform fee, in
    one entry; ownership moves and the approval and sale price are cleared. `expected_price`, when given, is
    the price the buyer agreed to: another price is a Conflict."""
    with transaction.atomic(durable=True):
        token = _locked(token)
        price = token.sale_price
        if token.owner_id == buyer.pk:
            raise Conflict("you own this token already")
        if price is None or not user_is_active(user_id=token.owner_id):  # a deactivated owner sells nothing
            raise Conflict("the token is not for sale")
        if expected_price is not None and expected_price != price:
            raise Conflict(
                f"the price is now {ledger.format_amount(price)}, not {ledger.format_amount(expected_price)}"
            )
        parts = sale_split(token=token, price=price)
        seller, creator = ledger.account_name(user=token.owner_id), ledger.account_name(user=token.creator_id)
        buyer_account = ledger.account_name(user=buyer)
        postings = [{"account": buyer_account, "amount": -price}]
        for account, amount in (
            (seller, parts["seller"]),
            (creator, parts["royalty"]),
            (ledger.TREASURY, parts["fee"]),
        ):
            if amount:
                postings.append({"account": account, "amount": amount})
        payees_open(postings)
        try:
            ledger.postings_post(
                kind="models_market.token.sold", actor=buyer_account, postings=postings,
                payload={"token": token.pk, "version": token.version_id, "price": price, "seller": seller,
                         "buyer": buyer_account, "royalty": parts["royalty"], "fee": parts["fee"]},
            )  # fmt: skip
        except ledger.InsufficientFunds as exc:  # only the buyer pays: say it to them, without account names
            raise exc.to_owner(what="the token costs") from exc
        token.owner, token.approved, token.sale_price = buyer, None, None
        token.save(update_fields=["owner", "approved", "sale_price", "updated_at"])
    return token
