"""Health and operations figures for /healthz and the staff dashboard; the home page's listings; a user's
ledger activity in words."""

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db import connection
from django.urls import reverse

from ledger import names
from ledger import selectors as ledger_selectors
from ledger import services as ledger_services
from marketplace import analyses
from marketplace import selectors as marketplace_selectors
from platform_site.accounts import selectors as accounts_selectors
from platform_site.jobs.selectors import worker_list_online

REQUIRED_QUEUES = ("default", "ml")


def _check(fn) -> dict[str, Any]:
    try:
        return {"ok": True, **(fn() or {})}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


def _database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"vendor": connection.vendor}


def _broker() -> dict[str, Any]:
    from platform_site.celery_app import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=3)
        return {
            "transport": conn.transport_cls
            if isinstance(conn.transport_cls, str)
            else str(conn.transport_cls)
        }


def _workers() -> dict[str, Any]:
    workers = worker_list_online()
    queues = sorted({q for w in workers for q in w.queues})
    missing = [q for q in REQUIRED_QUEUES if q not in queues]
    if not workers:
        raise RuntimeError("no Celery worker has sent a heartbeat recently")
    if missing:
        raise RuntimeError(f"no worker consumes the queue(s): {', '.join(missing)}")
    return {"count": len(workers), "queues": queues}


def _ledger() -> dict[str, Any]:
    from django.utils import timezone

    from ledger import chain, selectors
    from platform_site.keys import platform_signing_key

    file_key_id = chain.key_id_for(
        settings.LEDGER_ORIGIN, platform_signing_key().public_key().public_bytes_raw()
    )
    active = selectors.signing_key_list().filter(active=True).values_list("key_id", flat=True).first()
    if active is not None and active != file_key_id:
        raise RuntimeError(f"LEDGER_KEY_FILE holds key {file_key_id} but the ledger signs with {active}")
    checkpoint = selectors.checkpoint_latest()
    size = selectors.ledger_size()
    return {
        "signing_key_id": file_key_id,
        "size": size,
        "head": bytes(selectors.entry_get(seq=size - 1).entry_hash).hex() if size else None,
        "checkpoint_size": checkpoint.tree_size if checkpoint else None,
        "checkpoint_age_s": round((timezone.now() - checkpoint.created_at).total_seconds())
        if checkpoint
        else None,
    }


def health_checks() -> dict[str, dict[str, Any]]:
    return {
        "database": _check(_database),
        "broker": _check(_broker),
        "worker": _check(_workers),
        "ledger": _check(_ledger),
    }


def ops_mode() -> dict[str, str]:
    return {
        "database": connection.vendor,
        "broker": "redis" if settings.REDIS_URL else "filesystem",
        "channel_layer": "redis" if settings.REDIS_URL else "in-memory (websocket reads job rows)",
    }


# ---------------------------------------------------------------------------------------------------- listings

FEATURED = 6


@dataclass(frozen=True)
class Featured:
    dataset: Any  # a marketplace Dataset: title, description, tags, prices and owner's username loaded
    rows: int | None
    columns: int | None
    price_download: str  # in tokens; empty when the tier is not offered
    price_compute: str


def featured_listings(*, limit: int = FEATURED) -> tuple[list[Featured], int]:
    """The best-selling listings on sale (newest first among equals), and how many are on sale: what the home
    page shows everyone. Read through the browse page's cache, so a busy home page costs one query."""
    filters = {"sort": "most_sold"}
    key = marketplace_selectors.dataset_browse_key(filters=filters, per_page=limit)
    page = marketplace_selectors.dataset_page_public(number=1, per_page=limit, key=key, **filters)
    cards = [
        Featured(
            dataset=dataset,
            rows=dataset.card_rows,
            columns=dataset.card_columns,
            price_download=_tokens(dataset.price_download),
            price_compute=_tokens(dataset.price_compute),
        )
        for dataset in page.object_list
    ]
    return cards, page.paginator.count


def _tokens(minor: int | None) -> str:
    return ledger_services.format_amount(minor) if minor is not None else ""


# ---------------------------------------------------------------------------------------------------- activity
# A user's ledger entries told in words: "Bought “Retail customer segments” (compute-only)", "Faucet", "To carol".
# Each kind has a describer; the objects that entries name (people, organizations, datasets) are loaded in bulk
# first, so a page of activity costs the same few queries however many entries it shows.


@dataclass(frozen=True)
class Activity:
    seq: int
    kind: str
    created_at: datetime
    text: str  # one sentence, plain text
    url: str | None  # the page of the object it names; None when the entry itself is the object
    delta: int  # what the entry moved on the user's account, in minor units (0: nothing)

    @property
    def amount(self) -> str:
        """The delta in tokens with its sign (a true minus sign for debits); empty when nothing moved."""
        if not self.delta:
            return ""
        shown = ledger_services.format_amount(abs(self.delta))
        return ("+" if self.delta > 0 else "\u2212") + shown


class _Refs:
    """What the entries name, loaded in bulk: usernames, organization names and dataset titles."""

    def __init__(self, *, user, entries: list) -> None:
        kinds: dict[str, set[int]] = {names.USER: set(), names.ORG: set()}
        dataset_ids: set[int] = set()
        for entry in entries:
            for name in (p.get("account") for p in _postings(entry)):
                kind, ident = _parse(name)
                if kind in kinds and ident is not None:
                    kinds[kind].add(ident)
            dataset_id = _dataset_id(entry)
            if dataset_id is not None:
                dataset_ids.add(dataset_id)
        self.usernames = accounts_selectors.username_map(ids=kinds[names.USER])
        self.organizations = accounts_selectors.organization_name_map(ids=kinds[names.ORG])
        self.titles: dict[int, str] = {}
        if dataset_ids:
            # The datasets a user's entries name are ones they bought (licences) or own.
            for license in marketplace_selectors.license_list_for_user(user=user).filter(
                dataset_id__in=dataset_ids
            ):
                self.titles[license.dataset_id] = license.dataset.title
            if dataset_ids - self.titles.keys():
                for dataset in marketplace_selectors.dataset_list_for_owner(owner=user):
                    self.titles[dataset.pk] = dataset.title

    def account(self, name: object) -> tuple[str, str | None]:
        """Who an account belongs to, in words, and the explorer's page of what they signed."""
        kind, ident = _parse(name)
        explorer = f"{reverse('ledger:index')}?{urlencode({'actor': name})}"
        if kind == names.USER:
            return self.usernames.get(ident, f"user {ident}"), explorer
        if kind == names.ORG:
            return self.organizations.get(ident, f"organization {ident}"), explorer
        if kind == names.DAO:
            return f"DAO {ident}", explorer
        if kind == names.ESCROW:
            return f"escrow {ident}", None
        if kind == names.DEPOSIT:
            return "a call deposit", None
        if kind in (names.TREASURY, names.ISSUANCE):
            return "the platform", None
        return str(name), None

    def dataset(self, dataset_id: int | None) -> tuple[str, str | None]:
        """“Title” of a dataset and its page."""
        if dataset_id is None:
            return "a dataset", None
        title = self.titles.get(dataset_id)
        shown = f"“{title}”" if title else f"dataset {dataset_id}"
        return shown, reverse("marketplace:detail", args=[dataset_id])


def _parse(name: object) -> tuple[str | None, int | None]:
    try:
        return names.parse_account_name(name)
    except ValueError:
        return None, None


def _postings(entry) -> list[dict]:
    postings = entry.payload.get("postings") if isinstance(entry.payload, dict) else None
    return [p for p in postings if isinstance(p, dict)] if isinstance(postings, list) else []


# A sale names its dataset and tier in the payload's fields; entries written before those fields say them in
# the memo only, as marketplace.services.license_purchase wrote it: "dataset 7 v2 compute; terms …".
_SALE_MEMO = re.compile(r"dataset (\d+) v\d+ (download|compute)\b")
TIER_WORDS = {"download": "download", "compute": "compute-only"}


def _sale(entry) -> tuple[int | None, str]:
    dataset, tier = _id(entry.payload.get("dataset")), entry.payload.get("tier")
    if dataset is not None and isinstance(tier, str) and tier in TIER_WORDS:
        return dataset, tier
    match = _SALE_MEMO.match(str(entry.payload.get("memo", "")))
    return (int(match.group(1)), match.group(2)) if match else (None, "")


def _id(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dataset_id(entry) -> int | None:
    if not isinstance(entry.payload, dict):
        return None
    if entry.kind == "marketplace.license.granted":
        return _sale(entry)[0]
    return _id(entry.payload.get("dataset"))


def _analysis_url(entry) -> str | None:
    dataset, job = entry.payload.get("dataset"), entry.payload.get("job")
    if isinstance(dataset, int) and isinstance(job, int):
        return reverse("marketplace:analysis-detail", args=[dataset, job])
    return None


def _analysis_name(entry) -> str:
    kind = analyses.get(entry.payload.get("analysis"))
    return kind.label if kind else "an analysis"


def _others(entry, account: str) -> list[str]:
    return [p["account"] for p in _postings(entry) if p.get("account") != account]


def _payer(entry) -> str | None:
    """The account an entry debits (who paid), read from its postings: the entry's actor is not loaded."""
    return next((p.get("account") for p in _postings(entry) if _amount(p) < 0), None)


def _amount(posting: dict) -> int:
    amount = posting.get("amount")
    return amount if isinstance(amount, int) and not isinstance(amount, bool) else 0


Sentence = tuple[str, str | None]


def _mint(entry, account: str, delta: int, refs: _Refs) -> Sentence:
    reason = str(entry.payload.get("reason", ""))
    return ("Faucet" if reason == "demo faucet" else f"Minted by the platform: {reason}"), None


def _transfer(entry, account: str, delta: int, refs: _Refs) -> Sentence:
    others = _others(entry, account)
    who, url = refs.account(others[0]) if others else ("someone", None)
    memo = str(entry.payload.get("memo", "")).strip()
    text = f"To {who}" if delta < 0 else f"From {who}"
    return (f"{text}: “{memo}”" if memo else text), url


def _license(entry, account: str, delta: int, refs: _Refs) -> Sentence:
    dataset_id, tier = _sale(entry)
    title, url = refs.dataset(dataset_id)
    tier_words = f" ({TIER_WORDS[tier]})" if tier else ""
    if delta <= 0:
        return f"Bought {title}{tier_words}", url
    buyer, _ = refs.account(_payer(entry))
    return f"Sold {title}{tier_words} to {buyer}", url


def _privacy(entry, account: str, delta: int, refs: _Refs) -> Sentence:
    title, url = refs.dataset(_dataset_id(entry))
    p = entry.payload
    training = "training" in p  # a model trained under the licence (models_market), not an analysis
    text = f"Privacy budget spent on {title}: ε {p['epsilon']} for " + (
        "training a model" if training else _analysis_name(entry)
    )
    if p.get("spent") and p.get("budget"):
        text += f" ({p['spent']} of {p['budget']} used)"
    if training:
        job = p.get("job")
        return text, reverse("jobs:detail", args=[job]) if isinstance(job, int) else url
    return text, _analysis_url(entry) or url


def _analysis(entry, account: str, delta: int, refs: _Refs) -> Sentence:
    title, url = refs.dataset(_dataset_id(entry))
    return f"Analysis of {title} finished: {_analysis_name(entry)}", _analysis_url(entry) or url


def _published(entry, account: str, delta: int, refs: _Refs) -> Sentence:
    title, url = refs.dataset(_dataset_id(entry))
    version = entry.payload.get("version")
    return f"Published {title}" + (f" (version {version})" if version else ""), url


def _withdrawn(entry, account: str, delta: int, refs: _Refs) -> Sentence:
    title, url = refs.dataset(_dataset_id(entry))
    return f"Withdrew {title} from sale", url


def _escrow(entry, account: str, delta: int, refs: _Refs) -> Sentence:
    escrow = int(entry.payload["escrow"])
    if entry.kind == "ledger.escrow.opened":
        payee, url = refs.account(entry.payload["payee"])
        return f"Held in escrow {escrow} for {payee}", url
    verb = "Released" if entry.kind == "ledger.escrow.released" else "Refunded"
    reason = str(entry.payload.get("reason", "")).strip()
    return f"{verb} from escrow {escrow}" + (f": {reason}" if reason else ""), None


def _split(entry, account: str, delta: int, refs: _Refs) -> Sentence:
    memo = str(entry.payload.get("memo", "")).strip()
    memo = f": “{memo}”" if memo else ""
    if delta < 0:
        return f"Paid in shares{memo}", None
    payer, url = refs.account(_payer(entry))
    return f"Share of a payment from {payer}{memo}", url


def _unknown(entry, account: str, delta: int, refs: _Refs) -> Sentence:
    """Any kind without a describer yet: "models_market.token.minted" reads "Models market: token minted"."""
    app, _, rest = entry.kind.partition(".")
    app = app.replace("_", " ").capitalize() or "Ledger"
    return (f"{app}: {rest.replace('.', ' ').replace('_', ' ')}" if rest else app), None


# Each app adds its kinds here as it is built (models_market, dao, federation, finance).
DESCRIBERS: dict[str, Callable[..., Sentence]] = {
    "ledger.mint": _mint,
    "ledger.transfer": _transfer,
    "ledger.escrow.opened": _escrow,
    "ledger.escrow.released": _escrow,
    "ledger.escrow.refunded": _escrow,
    "ledger.split.paid": _split,
    "marketplace.license.granted": _license,
    "marketplace.privacy.spent": _privacy,
    "marketplace.analysis.completed": _analysis,
    "marketplace.dataset.published": _published,
    "marketplace.dataset.withdrawn": _withdrawn,
}


def activity_list_for_user(*, user, limit: int = 10) -> list[Activity]:
    """The newest `limit` entries that move the user's tokens or that the user signed, each in words, with
    what it moved on the user's account."""
    account = ledger_services.account_name(user=user)
    moved = ledger_selectors.entry_list_for_account(name=account, limit=limit)
    # Both lists load the same fields (not the actor): describers read who paid from the postings.
    signed = ledger_selectors.entry_list(actor=account).only("seq", "kind", "created_at", "payload")
    entries = sorted({e.seq: e for e in [*moved, *signed[:limit]]}.values(), key=lambda e: -e.seq)[:limit]
    refs = _Refs(user=user, entries=entries)
    rows = []
    for entry in entries:
        delta = sum(_amount(p) for p in _postings(entry) if p.get("account") == account)
        describe = DESCRIBERS.get(entry.kind, _unknown)
        try:
            text, url = describe(entry, account, delta, refs)
        except (AttributeError, KeyError, TypeError, ValueError):  # a payload of an older shape: say the kind
            text, url = _unknown(entry, account, delta, refs)
        rows.append(Activity(entry.seq, entry.kind, entry.created_at, text, url, delta))
    return rows
