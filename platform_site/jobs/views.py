from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from ml import charts
from platform_site.errors import DomainError
from platform_site.jobs.registry import find_kind
from platform_site.jobs.selectors import job_get_for_user, job_list_for_user, job_presentations
from platform_site.jobs.services import job_cancel, job_snapshot, job_submit


@login_required
def job_list(request):
    jobs = list(job_list_for_user(user=request.user)[:100])
    shown = job_presentations(jobs)
    rows = [{"job": job, "kind": _kind_label(job.kind), "shown": shown[job.pk]} for job in jobs]
    return render(request, "jobs/list.html", {"rows": rows})


@login_required
def job_detail(request, job_id: int):
    job = job_get_for_user(job_id=job_id, user=request.user)
    snapshot = job_snapshot(job)
    # The page shows the kind's summary; the browser's live updates need the progress and metrics, not the
    # result, which stays behind the "raw" link.
    snapshot["result"] = None
    context = {
        "job": job,
        "kind": _kind_label(job.kind),
        "shown": job_presentations([job])[job.pk],
        "snapshot": snapshot,
        # Drawn now from the metrics so far; job.js replaces its data as new steps arrive.
        "metrics_chart": charts.learning_curve(job.metrics if isinstance(job.metrics, list) else []),
    }
    return render(request, "jobs/detail.html", context)


@login_required
def job_raw(request, job_id: int):
    """The job as stored (parameters, metrics, result), as JSON: what the page summarises."""
    job = job_get_for_user(job_id=job_id, user=request.user)
    return JsonResponse(job_snapshot(job) | {"params": job.params}, json_dumps_params={"indent": 2})


def _kind_label(name: str) -> str:
    kind = find_kind(name)
    return kind.label if kind else name


@login_required
@require_POST
def job_selftest(request):
    try:
        job = job_submit(owner=request.user, kind="ml.selftest", params={})
    except DomainError as exc:  # over the per-user limit of active jobs
        messages.error(request, exc.message)
        return redirect("jobs:list")
    return redirect("jobs:detail", job_id=job.pk)


@login_required
@require_POST
def job_cancel_view(request, job_id: int):
    job = job_get_for_user(job_id=job_id, user=request.user)
    try:
        job_cancel(job=job, actor=request.user)
    except DomainError as exc:
        messages.error(request, exc.message)
    return redirect("jobs:detail", job_id=job_id)
