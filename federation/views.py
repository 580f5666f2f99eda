"""Federated learning's pages: federations to browse and join, the coordinator's creation form and admission
queue, and a federation's page (parties, rounds with accuracy and loss charts, excluded updates with the reason,
ε spent, contributions and payouts, each linked to its ledger entry, and the caller's own submissions). Thin:
every rule is in services and selectors."""

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from federation import selectors, services
from federation.forms import FederationForm, JoinForm
from federation.models import Federation, Party
from federation.services.common import METRICS
from ledger.services import format_amount
from ml import charts
from platform_site.accounts import selectors as accounts_selectors
from platform_site.errors import DomainError


def index(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    if status not in Federation.Status.values:
        status = ""
    rows = list(selectors.federation_list(status=status or None)[:100])
    context = {
        "federations": [{"f": f, "pool": format_amount(f.reward_pool)} for f in rows],
        "status": status,
        "statuses": Federation.Status.choices,
    }
    return render(request, "federation/index.html", context)


@login_required
def create(request: HttpRequest) -> HttpResponse:
    form = FederationForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            federation = services.federation_create(coordinator=request.user, **form.arguments())
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Federation “{federation.name}” created; its reward pool is escrowed.")
            return redirect("federation:detail", federation_id=federation.pk)
    return render(request, "federation/create.html", {"form": form})


def _charts(federation: Federation, rounds: list) -> list[dict[str, Any]]:
    closed = [r for r in rounds if r.status == "closed" and r.metrics]
    if not closed:
        return []
    rows = [{"round": r.number, **r.metrics} for r in closed]
    names = [m for m in METRICS[federation.spec["task"]] if m != "loss"]
    out = [
        charts.line_chart(
            "round-metrics", "The global model on the validation data, per round", rows, x="round",
            series=[m for m in names if any(m in r for r in rows)], x_title="Round", y_title="Value", x_integer=True,
        ),
        charts.line_chart(
            "round-loss", "Validation loss per round", rows, x="round", series=["loss"], x_title="Round",
            y_title="Loss", x_integer=True,
        ),
    ]  # fmt: skip
    return out


def detail(request: HttpRequest, federation_id: int) -> HttpResponse:
    federation = selectors.federation_detail(federation_id=federation_id)
    user = request.user
    parties = list(federation.parties.all())
    rounds = list(federation.round_set.all())
    by_digest = {}
    for rnd in rounds:
        for update in rnd.updates.all():
            by_digest[update.sha256] = update
    excluded = [
        {
            "round": r,
            "sha256": digest,
            "reason": reason,
            "party": getattr(by_digest.get(digest), "party", None),
        }
        for r in rounds
        for digest, reason in (r.excluded or {}).items()
    ]
    outliers: dict[int, int] = {}
    for e in excluded:
        if e["party"] is not None:
            outliers[e["party"].pk] = outliers.get(e["party"].pk, 0) + 1
    for party in parties:
        party.excluded_rounds = outliers.get(party.pk, 0)
    mine = selectors.party_for_user(federation=federation, user=user) if user.is_authenticated else None
    is_coordinator = selectors.is_coordinator(federation=federation, user=user)
    join_form = None
    if user.is_authenticated and mine is None and federation.is_active and not is_coordinator:
        keys = [k for k in accounts_selectors.public_key_list_for_user(user=user) if k.revoked_at is None]
        join_form = JoinForm(keys=keys) if keys else None
    submissions = (
        selectors.submissions_for_user(federation=federation, user=user) if user.is_authenticated else None
    )
    context = {
        "federation": federation,
        "pool": format_amount(federation.reward_pool),
        "parties": parties,
        "pending": [p for p in parties if p.status == Party.Status.PENDING],
        "rounds": rounds,
        "charts": _charts(federation, rounds),
        "excluded": excluded,
        "payouts": [{"p": p, "amount": format_amount(p.amount)} for p in federation.payouts.all()],
        "epsilon": max((p.epsilon_spent for p in parties), default=0.0),
        "mine": mine,
        "is_coordinator": is_coordinator,
        "join_form": join_form,
        "submissions": submissions,
        "live": federation.is_active,
        "fingerprint": selectors.federation_snapshot(federation_id=federation.pk)["fingerprint"],
    }
    return render(request, "federation/detail.html", context)


@login_required
@require_POST
def join(request: HttpRequest, federation_id: int) -> HttpResponse:
    federation = selectors.federation_get(federation_id=federation_id)
    try:
        services.party_join(federation=federation, user=request.user, key_id=request.POST.get("key_id", ""))
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Asked to join: the coordinator admits parties.")
    return redirect("federation:detail", federation_id=federation.pk)


@login_required
@require_POST
def party_action(request: HttpRequest, federation_id: int, party_id: int, action: str) -> HttpResponse:
    federation = selectors.federation_get(federation_id=federation_id)
    service = services.party_admit if action == "admit" else services.party_remove
    try:
        service(federation=federation, party_id=party_id, actor=request.user)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Party {party_id} {'admitted' if action == 'admit' else 'removed'}.")
    return redirect("federation:detail", federation_id=federation.pk)
