from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from platform_site.errors import DomainError
from platform_site.jobs.selectors import job_get_for_user, job_list_for_user
from platform_site.jobs.services import job_cancel, job_snapshot, job_submit


@login_required
def job_list(request):
    jobs = job_list_for_user(user=request.user)[:100]
    return render(request, "jobs/list.html", {"jobs": jobs})


@login_required
def job_detail(request, job_id: int):
    job = job_get_for_user(job_id=job_id, user=request.user)
    return render(request, "jobs/detail.html", {"job": job, "snapshot": job_snapshot(job)})


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
