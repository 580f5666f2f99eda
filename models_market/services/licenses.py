"""Access licences: perpetual, timed (until an expiry, like ERC-4907's `expires`) or a prepaid quota of calls."""

import functools
from collections.abc import Mapping
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from ledger import services as ledger
from models_market.models import ModelLicense, ModelToken
from models_market.services.lineage import payees_open, payment_postings, payment_shares
from models_market.services.metering import license_hints_forget
from platform_site.accounts.models import User
from platform_site.accounts.selectors import user_is_active
from platform_site.errors import Conflict, DomainError

PRICE_FIELD = {
    ModelLicense.Kind.PERPETUAL: "price_perpetual",
    ModelLicense.Kind.TIMED: "price_timed",
    ModelLicense.Kind.QUOTA: "price_quota",
}


def offer_terms(*, token: ModelToken, kind: str) -> dict[str, int | None]:
    """What a licence of `kind` costs and gives at the token's offer now: its price, and the per-call price
    (perpetual, timed), the days (timed) or the calls (quota)."""
    terms = {"price": getattr(token, PRICE_FIELD[kind])}
    if kind == ModelLicense.Kind.QUOTA:
        terms["calls"] = token.quota_calls
    else:
        terms["price_per_call"] = token.price_per_call
    if kind == ModelLicense.Kind.TIMED:
        terms["days"] = token.timed_days
    return terms


# Each term of an offer in words, and how its value is written.
_TERMS_SAID = {
    "price": ("the price is now", ledger.format_amount),
    "price_per_call": ("each call now costs", ledger.format_amount),
    "days": ("the licence now lasts", "{:,} days".format),
    "calls": ("the quota now holds", "{:,} calls".format),
}


def offer_changes(*, token: ModelToken, kind: str, expected: Mapping[str, int]) -> str:
    """How the token's offer of `kind` differs from the terms the buyer agreed to (offer_terms' names), in words;
    "" when it does not."""
    terms = offer_terms(token=token, kind=kind)
    for name in expected:
        if name not in terms:
            raise DomainError(f"a {kind} licence has no {name}; its terms are {', '.join(terms)}")
    changed = [(name, value) for name, value in expected.items() if terms[name] != value]
    return "; ".join(
        f"{_TERMS_SAID[name][0]} {_TERMS_SAID[name][1](terms[name])}, not {_TERMS_SAID[name][1](value)}"
        for name, value in changed
    )


def license_purchase(
    *, buyer: User, token: ModelToken, kind: str, expected: Mapping[str, int] | None = None
) -> ModelLicense:
    """Buy a licence to call the token's model version at the owner's offer: its price is split by
    payment_shares (fee, lineage, owner) in one `models_market.license.granted` entry. A perpetual or timed
    licence fixes the per-call price at today's offer; a quota licence's calls are prepaid. `expected`, when
    given, holds the terms the buyer agreed to (offer_terms' names): an offer changed in any of them since is a
    Conflict that says how."""
    if kind not in PRICE_FIELD:
        raise DomainError(f"unknown licence kind {kind!r}; choose perpetual, timed or quota")
    if token.owner_id == buyer.pk:
        raise Conflict("you own this model: calling it is free")
    with transaction.atomic(durable=True):
        # Locked: parallel purchases by one buyer see each other's licence, and no sale lands on an offer the
        # owner has just changed or withdrawn.
        token = ModelToken.objects.select_for_update().select_related("version").get(pk=token.pk)
        if token.owner_id == buyer.pk:
            raise Conflict("you own this model: calling it is free")
        price = getattr(token, PRICE_FIELD[kind])
        ready = token.version.status == token.version.Status.READY
        # A deactivated owner is paid nothing: their offers stay, but nobody buys from them.
        if not (token.listed and ready and user_is_active(user_id=token.owner_id)):
            raise Conflict("this model is not on offer")
        if price is None:
            raise DomainError(f"this model is not offered with a {kind} licence")
        changed = offer_changes(token=token, kind=kind, expected=expected or {})
        if changed:
            raise Conflict(f"the offer changed: {changed}")
        now = timezone.now()
        held = ModelLicense.objects.filter(holder=buyer, version=token.version, kind=kind)
        if kind == ModelLicense.Kind.PERPETUAL and held.exists():
            raise Conflict("you hold a perpetual licence for this model already")
        if kind == ModelLicense.Kind.TIMED and held.filter(expires_at__gt=now).exists():
            raise Conflict("you hold a timed licence for this model that has not expired yet")
        payer = ledger.account_name(user=buyer)
        postings = payment_postings(
            source=payer, shares=payment_shares(version=token.version, amount=price, payer=payer)
        )
        payees_open(postings)
        try:
            entry = ledger.postings_post(
                kind="models_market.license.granted", actor=payer, postings=postings,
                payload={"token": token.pk, "version": token.version_id, "kind": kind, "price": price,
                         "price_per_call": 0 if kind == ModelLicense.Kind.QUOTA else token.price_per_call},
            )  # fmt: skip
        except ledger.InsufficientFunds as exc:  # only the buyer pays: say it to them, without account names
            raise exc.to_owner(what="the licence costs") from exc
        # This process's calls pick their licence again (the statement of a call in another checks it).
        transaction.on_commit(functools.partial(license_hints_forget, user=buyer))
        return ModelLicense.objects.create(
            version=token.version, holder=buyer, kind=kind, price=price,
            price_per_call=0 if kind == ModelLicense.Kind.QUOTA else token.price_per_call,
            expires_at=now + timedelta(days=token.timed_days) if kind == ModelLicense.Kind.TIMED else None,
            calls_left=token.quota_calls if kind == ModelLicense.Kind.QUOTA else None,
            entry_seq=entry.seq,
        )  # fmt: skip
