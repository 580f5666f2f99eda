"""One transaction per job result: an analysis's ledger entry and its job's result commit together, once; a
statistics job that fails, for whatever reason, fails its version with the reason, never leaves it processing."""

import json
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError
from django.utils import timezone

from ledger.models import Entry
from marketplace import services
from marketplace.models import DatasetVersion
from platform_site.jobs.models import Job
from platform_site.jobs.services import JobCancelled, JobReporter, job_cancel, job_start, job_sweep_stale
from platform_site.jobs.tasks import job_run
from tests.marketplace.test_analyses import blobs_csv, listing_with, run

pytestmark = pytest.mark.django_db

COMPLETED = "marketplace.analysis.completed"


def kmeans(owner) -> Job:
    dataset, _version = listing_with(owner, blobs_csv())
    return services.analysis_submit(user=owner, dataset=dataset, params={"analysis": "kmeans", "k": 3})


def test_an_analysis_redelivered_while_it_runs_leaves_one_completed_entry(alice):
    job = kmeans(alice)
    first = job_start(job_id=job.pk, worker="first@host", task_id=job.celery_task_id)
    job_run.apply(args=[job.pk], task_id=job.celery_task_id)  # the same message, delivered to another worker
    services.analysis_run(job=first, reporter=JobReporter(first))  # the first runner finishes
    job_run.apply(args=[job.pk], task_id=job.celery_task_id)  # and once more after it finished

    entries = Entry.objects.filter(kind=COMPLETED)
    assert entries.count() == 1
    job.refresh_from_db()
    assert (job.status, job.worker, job.attempts) == ("succeeded", "first@host", 1)
    assert entries.get().idempotency_key == f"{COMPLETED}:{job.pk}"
    assert job.result["entry_seq"] == entries.get().seq


def test_a_runner_that_lost_its_claim_writes_no_entry(alice):
    job = kmeans(alice)
    stale = job_start(job_id=job.pk, worker="lost@host", task_id=job.celery_task_id)
    Job.objects.filter(pk=job.pk).update(status="queued", celery_task_id="requeued-task")  # the sweep
    run(job)  # another worker runs it to the end
    # Its entry is refused by the job's idempotency key, or its result by the lost claim: rolled back together.
    with pytest.raises((JobCancelled, IntegrityError)):
        services.analysis_run(job=stale, reporter=lambda *args, **kwargs: None)
    assert Entry.objects.filter(kind=COMPLETED).count() == 1


def test_a_failure_while_recording_the_result_leaves_neither_the_result_nor_the_entry(alice, monkeypatch):
    job = kmeans(alice)

    def refused(*, job, result):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(services, "job_succeed", refused)
    job = run(job)
    assert job.status == "failed"
    assert "the database went away" in job.error
    assert job.result is None
    assert not Entry.objects.filter(kind=COMPLETED).exists()


def test_a_failure_while_writing_the_entry_leaves_no_result(alice, monkeypatch):
    job = kmeans(alice)

    def refused(**kwargs):
        raise RuntimeError("the ledger is locked")

    monkeypatch.setattr(services.ledger, "entry_append", refused)
    job = run(job)
    assert (job.status, job.result) == ("failed", None)
    assert not Entry.objects.filter(kind=COMPLETED).exists()


def upload(owner, content: bytes, name: str) -> DatasetVersion:
    _dataset, version = listing_with(owner, content, name)
    return version


def assert_ended_readably(version: DatasetVersion) -> None:
    """The version is not processing; its job and it agree; a failure says why in words, not a DB error."""
    job = version.stats_job
    assert version.status != "processing"
    assert job.status in ("succeeded", "failed")
    assert (job.status == "succeeded") == (version.status == "ready"), (job.status, version.status)
    if version.status == "failed":
        assert version.error == job.error
        assert version.error
        for technical in ("Error", "Traceback", "jsonb", "Token", "DETAIL"):
            assert technical not in version.error, version.error
    else:  # finite statistics are JSON-safe (another fix computes them); they must be stored as such
        json.dumps(version.stats, allow_nan=False)


@pytest.mark.parametrize(
    ("content", "name"),
    [
        ("x,y\n" + "".join(f"{s}1e200,{i}\n" for i in range(50) for s in ("", "-")), "huge.csv"),
        ("".join(json.dumps({"x": 10**400 if i == 7 else i, "y": i}) + "\n" for i in range(30)), "big.jsonl"),
        ("".join(f'{{"x": {v}, "y": {i}}}\n' for i, v in enumerate(["NaN", "1e308"] * 15)), "nan.jsonl"),
        ("".join(f'{{"x": {v}, "y": {i}}}\n' for i, v in enumerate(["1e308", "-1e308"] * 15)), "max.jsonl"),
    ],
    ids=["csv-1e200", "jsonl-400-digits", "jsonl-nan-1e308", "jsonl-1e308"],
)
def test_a_statistics_job_on_extreme_numbers_never_leaves_its_version_processing(alice, content, name):
    version = upload(alice, content.encode(), name)
    version.refresh_from_db()
    assert_ended_readably(version)


def test_non_finite_statistics_fail_the_job_and_the_version_with_the_reason(alice, monkeypatch):
    import ml.tabular

    real = ml.tabular.column_stats

    def overflowing(table, **kwargs):
        stats = real(table, **kwargs)
        stats["columns"][0]["std"] = float("inf")
        return stats

    monkeypatch.setattr(ml.tabular, "column_stats", overflowing)
    version = upload(alice, blobs_csv(), "data.csv")
    version.refresh_from_db()
    assert version.status == "failed"
    assert version.error == "the statistics contained a non-finite number (Infinity at columns[0].std)"
    assert version.stats_job.status == "failed" and version.stats_job.error == version.error


def test_an_unexpected_exception_in_the_statistics_job_fails_the_version(alice, monkeypatch):
    import ml.tabular

    def crash(table, **kwargs):
        raise OverflowError("int too large to convert to float")

    monkeypatch.setattr(ml.tabular, "column_stats", crash)
    version = upload(alice, blobs_csv(), "data.csv")
    version.refresh_from_db()
    assert version.status == "failed"
    assert (
        version.error
        == "a number in the data is too large to compute with (int too large to convert to float)"
    )


def queued_version(owner) -> DatasetVersion:
    dataset = services.dataset_create(
        owner=owner, title="Blobs", terms_preset="research", price_download=5_000,
    )  # fmt: skip
    return services.dataset_version_upload(
        dataset=dataset, actor=owner, upload=SimpleUploadedFile("data.csv", blobs_csv())
    )


def test_a_cancelled_statistics_job_fails_its_version(alice):
    version = queued_version(alice)
    job_cancel(job=version.stats_job, actor=alice)
    version.refresh_from_db()
    assert (version.status, version.error) == ("failed", "the job was cancelled by alice")


def test_a_statistics_job_failed_by_the_sweep_fails_its_version(alice, settings):
    version = queued_version(alice)
    long_ago = timezone.now() - timedelta(minutes=10)
    Job.objects.filter(pk=version.stats_job_id).update(
        status="running", worker="gone@host", attempts=settings.JOB_MAX_ATTEMPTS, heartbeat_at=long_ago
    )
    assert job_sweep_stale() == {"requeued": 0, "failed": 1}
    version.refresh_from_db()
    assert version.status == "failed"
    assert "stopped responding" in version.error
