"""The ledger's pages: the live explorer, one entry with its server-side verification, and the demo faucet.

The explorer and the entry pages are public, like a block explorer: the journal is what anyone may verify from
an export. Accounts appear under their ledger names (user:<id>); no page here names a user or shows a balance.
"""

import json
from functools import cached_property
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from ledger import chain, selectors, services
from ledger.audit import verify_entry
from ledger.forms import EntryFilterForm
from ledger.models import Entry
from platform_site.errors import DomainError

PAGE_SIZE = 50
# The columns a list row needs: signatures and the leaf hash stay in the database.
LIST_FIELDS = ("seq", "kind", "actor", "created_at", "entry_hash", "payload")


# ---------------------------------------------------------------------------------------------------- summaries


def _account_names(names: list[str]) -> str:
    return ", ".join(names[:2]) + (f" +{len(names) - 2}" if len(names) > 2 else "")


def amount_summary(payload: Any) -> str:
    """One line for an entry's postings: '1,000.00 tokens: issuance → user:3' ('' when it moves no tokens)."""
    postings = payload.get("postings") if isinstance(payload, dict) else None
    if not postings:
        return ""
    try:
        moved = sum(p["amount"] for p in postings if p["amount"] > 0)
        debits = [p["account"] for p in postings if p["amount"] < 0]
        credits = [p["account"] for p in postings if p["amount"] > 0]
    except (KeyError, TypeError):
        # A payload changed behind the ledger's back may hold anything; its entry page says what is wrong.
        return "malformed postings"
    return f"{services.format_amount(moved)}: {_account_names(debits)} → {_account_names(credits)}"


def entry_summary(entry: Entry) -> dict[str, Any]:
    """A list row, for the explorer's table and its websocket (the same keys in both)."""
    entry_hash = bytes(entry.entry_hash).hex()
    return {
        "seq": entry.seq,
        "kind": entry.kind,
        "actor": entry.actor,
        "created_at": chain.format_timestamp(entry.created_at),
        "created": entry.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        "entry_hash": entry_hash,
        "short_hash": entry_hash[:12],
        "amount": amount_summary(entry.payload),
        "url": reverse("ledger:entry", args=[entry.seq]),
    }


# ---------------------------------------------------------------------------------------------------- explorer


class _LedgerPaginator(Paginator):
    """Counts with the head's size when the list is unfiltered: entries are never deleted, and COUNT(*) over a
    long journal is a full scan on PostgreSQL."""

    def __init__(self, *args, known_count: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._known_count = known_count

    @cached_property
    def count(self) -> int:
        return self._known_count if self._known_count is not None else super().count


def _header() -> dict[str, Any]:
    return {"size": selectors.ledger_size(), "checkpoint": selectors.checkpoint_latest()}


def index(request: HttpRequest) -> HttpResponse:
    form = EntryFilterForm(request.GET)
    filters: dict[str, Any] = {}
    if form.is_valid():
        filters = form.filters()
    else:
        for error in [e for errors in form.errors.values() for e in errors]:
            messages.error(request, f"{error} The filter was ignored.")
    header = _header()
    entries = selectors.entry_list(**filters).only(*LIST_FIELDS)
    paginator = _LedgerPaginator(entries, PAGE_SIZE, known_count=None if filters else header["size"])
    page = paginator.get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        **header,
        "form": form,
        "filters": filters,
        "page": page,
        "rows": [entry_summary(entry) for entry in page],
        "query": query.urlencode(),
        # New entries go on top: only the first page shows them as they come.
        "live": page.number == 1,
        "top_seq": page[0].seq if page.object_list else -1,
    }
    return render(request, "ledger/index.html", context)


# ---------------------------------------------------------------------------------------------------- one entry


def _b64(data: bytes | memoryview | None) -> str:
    return chain.b64encode(bytes(data)) if data is not None else ""


def _postings(payload: Any) -> list[dict[str, Any]]:
    postings = payload.get("postings") if isinstance(payload, dict) else None
    if not isinstance(postings, list):
        return []
    rows = []
    for posting in postings:
        amount = posting.get("amount") if isinstance(posting, dict) else None
        ok = isinstance(amount, int) and not isinstance(amount, bool)
        rows.append(
            {
                "account": posting.get("account", "?") if isinstance(posting, dict) else "?",
                "amount": services.format_amount(amount) if ok else repr(amount),
                "credit": ok and amount > 0,
            }
        )
    return rows


def entry_detail(request: HttpRequest, seq: int) -> HttpResponse:
    entry = selectors.entry_get(seq=seq)
    verification = verify_entry(entry)
    context = {
        "entry": entry,
        "summary": entry_summary(entry),
        "payload_json": json.dumps(entry.payload, indent=2, ensure_ascii=False, sort_keys=True),
        "postings": _postings(entry.payload),
        "hashes": {
            "prev_hash": bytes(entry.prev_hash).hex(),
            "entry_hash": bytes(entry.entry_hash).hex(),
            "leaf_hash": bytes(entry.leaf_hash).hex(),
        },
        "signature": _b64(entry.signature),
        "actor_signature": _b64(entry.actor_signature),
        "verification": verification,
        "proof_hex": [h.hex() for h in verification.proof],
        "checkpoint_root": bytes(verification.checkpoint.root_hash).hex() if verification.checkpoint else "",
        "previous_seq": seq - 1 if seq > 0 else None,
        "next_seq": seq + 1 if seq + 1 < selectors.ledger_size() else None,
    }
    return render(request, "ledger/entry.html", context)


# ---------------------------------------------------------------------------------------------------- faucet


@login_required
@require_POST
def faucet(request: HttpRequest) -> HttpResponse:
    try:
        entry = services.faucet_request(user=request.user)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        amount = sum(p["amount"] for p in entry.payload["postings"] if p["amount"] > 0)
        messages.success(
            request, f"{services.format_amount(amount)} added to your wallet (entry #{entry.seq})."
        )
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("accounts:profile")
    return redirect(target)
