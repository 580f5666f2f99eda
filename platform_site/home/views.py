from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache

from ledger import selectors as ledger_selectors
from ledger import services as ledger_services
from ml import charts
from platform_site.accounts.selectors import membership_list_for_user
from platform_site.home.areas import AREAS
from platform_site.home.selectors import activity_list_for_user, featured_listings, health_checks, ops_mode
from platform_site.jobs.models import Job
from platform_site.jobs.selectors import (
    job_counts_by_hour,
    job_failed_recent,
    job_list_for_user,
    job_status_totals,
    worker_list_online,
)


def _wallet(user) -> dict:
    name = ledger_services.account_name(user=user)
    balances = {a.name: a.balance for a in ledger_selectors.account_list_for_user(user=user)}
    return {
        "account": name,
        "balance": ledger_services.format_amount(balances.get(name, 0)),
        "faucet": ledger_services.format_amount(settings.LEDGER_FAUCET_AMOUNT)
        if settings.LEDGER_FAUCET_AMOUNT
        else "",
        "organizations": [
            (
                m.organization.name,
                ledger_services.format_amount(
                    balances.get(ledger_services.account_name(org=m.organization_id), 0)
                ),
            )
            for m in membership_list_for_user(user=user)
        ],
    }


DASHBOARD_JOBS = 5
DASHBOARD_ACTIVITY = 5


def dashboard(request):
    featured, on_sale = featured_listings()
    context = {"areas": AREAS, "featured": featured, "on_sale": on_sale}
    if request.user.is_authenticated:
        jobs = job_list_for_user(user=request.user)
        recent = list(jobs[:DASHBOARD_JOBS])
        activity = activity_list_for_user(user=request.user, limit=DASHBOARD_ACTIVITY)
        context.update(
            jobs=recent,
            job_count=jobs.count() if len(recent) == DASHBOARD_JOBS else len(recent),
            wallet=_wallet(request.user),
            activity=activity,
            # Nothing on the ledger and no job yet: greet them as new and show where to start.
            newcomer=not recent and not activity,
        )
    return render(request, "home/dashboard.html", context)


@never_cache
def healthz(request):
    checks = health_checks()
    ok = all(check["ok"] for check in checks.values())
    return JsonResponse({"status": "ok" if ok else "down", "checks": checks}, status=200 if ok else 503)


def staff_required(view):
    """Anonymous users go to the log-in page; logged-in users who are not staff get a 403."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not request.user.is_staff:
            raise PermissionDenied("staff only")
        return view(request, *args, **kwargs)

    return wrapped


def _ledger_figures() -> dict:
    size = ledger_selectors.ledger_size()
    head = ledger_selectors.entry_get(seq=size - 1) if size else None
    active_key = ledger_selectors.signing_key_list().filter(active=True).first()
    checkpoint = ledger_selectors.checkpoint_latest()
    age = timezone.now() - checkpoint.created_at if checkpoint else None
    covered = checkpoint.tree_size if checkpoint else 0
    # How long the oldest entry that no checkpoint covers has waited for one.
    waiting_since = ledger_selectors.entry_get(seq=covered).created_at if size > covered else None
    waiting = timezone.now() - waiting_since if waiting_since else None
    return {
        "size": size,
        "head_hash": bytes(head.entry_hash).hex() if head else "",
        "active_key_id": active_key.key_id if active_key else "",
        "checkpoint": checkpoint,
        "checkpoint_age": age,
        "uncovered": size - covered,
        "waiting_since": waiting_since,
        # Beat signs one every LEDGER_CHECKPOINT_SECONDS while entries come in: twice that means it has stopped.
        "stale": bool(waiting and waiting.total_seconds() > 2 * settings.LEDGER_CHECKPOINT_SECONDS),
        "accounts": ledger_selectors.account_count(),
        "supply": ledger_services.format_amount(ledger_selectors.total_supply()),
    }


@staff_required
def ops(request):
    hours = job_counts_by_hour(hours=24)
    series = [(status, [row[status] for row in hours]) for status in Job.Status.values]
    labels = [row["hour"].strftime("%H:00") for row in hours]
    return render(
        request,
        "home/ops.html",
        {
            "health": health_checks(),
            "mode": ops_mode(),
            "workers": worker_list_online(),
            "totals": job_status_totals(),
            "hours_chart": charts.stacked_bars(
                "jobs-per-hour",
                "Jobs created per hour, last 24 hours (UTC), by current status",
                labels,
                series,
                x_title="Hour (UTC)",
                y_title="Jobs",
                colours=charts.STATUS_COLOURS,
            ),
            "failed": job_failed_recent(),
            "ledger": _ledger_figures(),
        },
    )
