"""Access licences: perpetual, timed (until an expiry, like ERC-4907's `expires`) or a prepaid quota of calls."""

import functools
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from ledger import services as ledger
from models_market.models import ModelLicense, ModelToken
from models_market.services.lineage import payment_postings, payment_shares
from models_market.services.metering import license_hints_forget
from platform_site.accounts.models import User
from platform_site.errors import Conflict, DomainError

PRICE_FIELD = {
    ModelLicense.Kind.PERPETUAL: "price_perpetual",
    ModelLicense.Kind.TIMED: "price_timed",
    ModelLicense.Kind.QUOTA: "price_quota",
}


def license_purchase(*, buyer: User, token: ModelToken, kind: str) -> ModelLicense:
    """Buy a licence to call the token's model version at the owner's offer: its price is split by
    payment_shares (fee, lineage, owner) in one `models_market.license.granted` entry. A perpetual or timed
    licence fixes the per-call price at today's offer; a quota licence's calls are prepaid."""
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
        if not token.listed or token.version.status != token.version.Status.READY:
            raise Conflict("this model is not on offer")
        if price is None:
            raise DomainError(f"this model is not offered with a {kind} licence")
        now = timezone.now()
        held = ModelLicense.objects.filter(holder=buyer, version=token.version, kind=kind)
        if kind == ModelLicense.Kind.PERPETUAL and held.exists():
            raise Conflict("you hold a perpetual licence for this model already")
        if kind == ModelLicense.Kind.TIMED and held.filter(expires_at__gt=now).exists():
            raise Conflict("you hold a timed licence for this model that has not expired yet")
        payer = ledger.account_name(user=buyer)
        shares = payment_shares(version=token.version, amount=price, payer=payer)
        try:
            entry = ledger.postings_post(
                kind="models_market.license.granted", actor=payer,
                postings=payment_postings(source=payer, shares=shares),
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
