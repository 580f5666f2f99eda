"""Who is paid what of a payment for a model's use: the platform fee, the lineage (parent models' owners, the
training data's owner, recursively) and the token's owner, in exact integer parts."""

from django.conf import settings

from ledger import services as ledger
from marketplace import selectors as marketplace_selectors
from models_market.models import ModelContributor, ModelParent, ModelVersion


def _add(parts: dict[str, int], account: str, amount: int) -> None:
    if amount:
        parts[account] = parts.get(account, 0) + amount


def _owner_account(version: ModelVersion) -> str:
    """The token's owner; a version never tokenized (a parent trained before tokens) pays its maker."""
    token = getattr(version, "token", None)
    return ledger.account_name(user=token.owner_id if token is not None else version.created_by_id)


def _upstream(version: ModelVersion) -> list[tuple[ModelVersion | str, int]]:
    """Where a version's lineage share goes, with each receiver's weight, in a fixed order: the parties that
    trained it together (by their contribution weights), its parent versions (by id), then the owner of the
    dataset version it was trained on (weight 1 each)."""
    upstream: list[tuple[ModelVersion | str, int]] = [
        (c.account, c.weight) for c in ModelContributor.objects.filter(version=version).order_by("pk")
    ]
    links = ModelParent.objects.filter(child=version).select_related("parent__token").order_by("parent_id")
    upstream += [(link.parent, 1) for link in links]
    if version.trained_on_id is not None:
        owner_id = marketplace_selectors.dataset_version_owner_id(version_id=version.trained_on_id)
        if owner_id is not None:
            upstream.append((ledger.account_name(user=owner_id), 1))
    return upstream


def _flow(version: ModelVersion, amount: int, parts: dict[str, int], depth: int) -> None:
    """`amount` paid for `version`: its lineage share split upstream by weight, rounding down (the first takes
    the remainder), each parent passing on its own share in turn, the rest to its owner. Below
    MODELS_LINEAGE_DEPTH generations nothing flows further up; the first generation is capped by
    MODELS_LINEAGE_CAP_BP, which so bounds the whole lineage's take (every later share comes out of it)."""
    upstream = _upstream(version) if depth < settings.MODELS_LINEAGE_DEPTH and version.lineage_bp else []
    bp = version.lineage_bp if depth else min(version.lineage_bp, settings.MODELS_LINEAGE_CAP_BP)
    pool = amount * bp // 10_000 if upstream else 0
    if upstream:
        total = sum(weight for _, weight in upstream)
        shares = [pool * weight // total for _, weight in upstream]
        shares[0] += pool - sum(shares)
        for (node, _), share in zip(upstream, shares, strict=True):
            if isinstance(node, str):
                _add(parts, node, share)
            else:
                _flow(node, share, parts, depth + 1)
    _add(parts, _owner_account(version), amount - pool)


def payment_shares(*, version: ModelVersion, amount: int, payer: str) -> list[tuple[str, int]]:
    """Who receives what of `amount` paid by `payer` (an account name) for the use of `version`: the platform fee
    (MODELS_FEE_BP) to the treasury, `version.lineage_bp` of the rest up its lineage, the remainder to the
    token's owner. Exact non-negative integers summing to `amount`, one per account, none zero; the payer may
    be among them (the owner of a parent model calling its child earns the parent's share back)."""
    ledger.check_amount(amount)
    fee = amount * settings.MODELS_FEE_BP // 10_000
    parts: dict[str, int] = {}
    _add(parts, ledger.TREASURY, fee)
    _flow(version, amount - fee, parts, depth=0)
    return list(parts.items())


def payment_postings(*, source: str, shares: list[tuple[str, int]]) -> list[dict]:
    """The ledger postings of paying `shares` from `source`."""
    total = sum(amount for _, amount in shares)
    return [{"account": source, "amount": -total}, *({"account": a, "amount": p} for a, p in shares)]


def payees_open(postings: list[dict]) -> None:
    """Open the account of each user the postings pay: a royalty or lineage share is owed even to a user
    deactivated since (as settlements pay them), rather than one such user stopping every sale of the model."""
    for posting in postings:
        if posting["amount"] > 0 and posting["account"].startswith("user:"):
            ledger.account_open_for_app(name=posting["account"], kind="user")
