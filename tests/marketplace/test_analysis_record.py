"""Analyses have one home: the table of kinds drives the form, the API and the job, and each analysis has an
Analysis record, written with its job and completed with its ledger entry in the job result's transaction."""

import importlib
from decimal import Decimal

import pytest
from django.apps import apps

from ledger.models import Entry
from marketplace import analyses, services
from marketplace.forms import AnalysisForm
from marketplace.jobkinds import AnalysisOptions
from marketplace.models import Analysis, License
from ml import charts
from platform_site.errors import DomainError, PermissionDenied
from platform_site.jobs.models import Job
from platform_site.jobs.services import job_submit
from tests.conftest import api_as
from tests.factories import UserFactory
from tests.ledger.helpers import fund
from tests.marketplace.test_analyses import blobs_csv, listing_with, run
from tests.marketplace.test_pages import client_for

pytestmark = pytest.mark.django_db

COMPLETED = "marketplace.analysis.completed"


def _count_columns(prepared, options, progress) -> dict:
    progress(1.0, "counted")
    return {"columns": len(prepared.numeric_columns), "rows": prepared.rows_used, "input": {}}


TOY = analyses.AnalysisKind(
    name="column_count",
    label="Column count (toy)",
    short="the column count",
    exact=_count_columns,
    charts=lambda result: [
        charts.histogram("columns", f"{result['columns']} columns", [0, 1], [result["columns"]], x_title="x")
    ],
)


@pytest.fixture
def toy(monkeypatch):
    """A kind registered in the table and nowhere else, for this test only."""
    monkeypatch.setitem(analyses.KINDS, TOY.name, TOY)
    return TOY


@pytest.fixture
def blobs(alice, bob):
    """alice's listing of blobs; bob holds compute-only access (private analyses, ε 10 in all)."""
    dataset, _version = listing_with(alice, blobs_csv())
    fund(f"user:{bob.pk}", 10_000)
    services.license_purchase(buyer=bob, dataset=dataset, tier="compute")
    return dataset


# ---------------------------------------------------------------------------------------------------- the table


def test_a_kind_added_to_the_table_alone_is_offered_by_the_form_and_the_api_and_run_by_the_job(
    toy, alice, blobs
):
    form = AnalysisForm()
    assert (toy.name, toy.label) in form.fields["analysis"].choices
    assert toy.name in AnalysisOptions().fields["analysis"].choices
    response = api_as(alice).post(
        f"/api/data/datasets/{blobs.pk}/analyses/", {"analysis": toy.name}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["analysis"]["kind"] == toy.name

    job = run(Job.objects.get(pk=response.json()["id"]))
    assert job.status == "succeeded", job.error
    assert job.result["result"] == {"columns": 3, "rows": 301, "input": {}}
    assert set(job.result) == {"analysis", "result", "result_sha256", "entry_seq"}, "numbers, never markup"
    entry = Entry.objects.get(kind=COMPLETED)
    assert (
        entry.payload["analysis"] == toy.name
        and entry.payload["result_sha256"] == job.result["result_sha256"]
    )
    html = client_for(alice).get(f"/data/{blobs.pk}/analyses/{job.pk}/").content.decode()
    assert "Column count (toy)" in html and "3 columns" in html


def test_a_kind_not_in_the_table_is_refused_by_the_form_and_the_api(alice, blobs):
    assert TOY.name not in dict(AnalysisForm().fields["analysis"].choices)
    response = api_as(alice).post(
        f"/api/data/datasets/{blobs.pk}/analyses/", {"analysis": TOY.name}, format="json"
    )
    assert response.status_code == 400
    assert not Job.objects.filter(kind="marketplace.analysis").exists() and not Analysis.objects.exists()


def test_a_kind_without_a_private_version_is_refused_to_compute_licensees_and_named_in_the_form(
    toy, bob, blobs
):
    with pytest.raises(DomainError, match="no differentially private version") as refused:
        services.analysis_submit(user=bob, dataset=blobs, params={"analysis": toy.name})
    assert "a compute-only licence offers k-means, PCA and the isolation forest" in str(refused.value)
    help_text = AnalysisForm(private=True).fields["analysis"].help_text
    assert "DBSCAN and the column count have no private version" in help_text
    assert analyses.private_limits().startswith("DBSCAN and the column count are not offered")
    assert not Analysis.objects.exists()


def test_the_form_groups_each_kinds_own_options_under_its_legend_and_drops_unread_ones_when_private():
    groups = dict(AnalysisForm().groups())
    assert [field.name for field in groups["k-means"]] == ["k", "algorithm"]
    assert [field.name for field in groups["DBSCAN"]] == ["eps", "min_samples"]
    private = AnalysisForm(private=True)
    assert {"algorithm", "eps", "min_samples"}.isdisjoint(private.fields)
    assert "required with compute-only access" in private.fields["k"].help_text
    assert private.fields["analysis"].help_text == (
        "compute-only access offers k-means, PCA and the isolation forest; DBSCAN has no private version and is "
        "for owners and download licensees"
    )
    assert analyses.private_limits() == "DBSCAN is not offered, and k-means needs the number of clusters k."


# ---------------------------------------------------------------------------------------------------- the record


def test_an_exact_analysis_is_recorded_with_its_job_and_completed_with_its_entry_and_hash(alice, blobs):
    job = services.analysis_submit(user=alice, dataset=blobs, params={"analysis": "kmeans", "k": 3})
    record = Analysis.objects.get(job=job)
    assert (record.user, record.version, record.kind, record.private) == (
        alice,
        blobs.current_version,
        "kmeans",
        False,
    )
    assert record.epsilon is None and record.license is None
    assert record.options == {k: v for k, v in job.params.items() if k not in services.NOT_OPTIONS}
    assert record.options["k"] == 3 and record.options["missing"] == "impute"
    assert (record.result_sha256, record.entry_seq) == ("", None)

    job = run(job)
    assert job.status == "succeeded", job.error
    record.refresh_from_db()
    entry = Entry.objects.get(kind=COMPLETED)
    assert record.entry_seq == entry.seq == job.result["entry_seq"]
    assert record.result_sha256 == entry.payload["result_sha256"] == job.result["result_sha256"]


def test_a_private_analysis_records_the_licence_and_the_epsilon_it_was_charged(bob, blobs):
    job = services.analysis_submit(
        user=bob, dataset=blobs, params={"analysis": "pca", "epsilon": Decimal("2.50")}
    )
    record = Analysis.objects.get(job=job)
    license = License.objects.get(buyer=bob, tier="compute")
    assert (record.private, record.epsilon, record.license) == (True, Decimal("2.50"), license)
    job = run(job)
    assert job.status == "succeeded", job.error
    record.refresh_from_db()
    assert Entry.objects.get(kind=COMPLETED).payload["epsilon"] == "2.50"
    assert record.entry_seq == job.result["entry_seq"]
    body = api_as(bob).get(f"/api/data/datasets/{blobs.pk}/analyses/").json()
    assert body["results"][0]["analysis"] == {
        "kind": "pca", "version": 1, "options": record.options, "private": True, "epsilon": "2.50",
        "license": license.pk, "result_sha256": record.result_sha256, "entry_seq": record.entry_seq,
    }  # fmt: skip


def test_a_refused_submit_writes_neither_job_nor_record_nor_spend(bob, mallory, blobs):
    with pytest.raises(DomainError, match=r"only ε = 10\.00 is left"):
        services.analysis_submit(user=bob, dataset=blobs, params={"analysis": "pca", "epsilon": "11"})
    with pytest.raises(PermissionDenied):
        services.analysis_submit(user=mallory, dataset=blobs, params={"analysis": "pca"})
    with pytest.raises(DomainError, match="choose the number of clusters"):
        services.analysis_submit(user=bob, dataset=blobs, params={"analysis": "kmeans"})
    assert not Job.objects.filter(kind="marketplace.analysis").exists()
    assert not Analysis.objects.exists()
    assert not Entry.objects.filter(kind="marketplace.privacy.spent").exists()
    assert License.objects.get(buyer=bob).epsilon_spent == 0


def test_a_failed_result_transaction_leaves_the_record_uncompleted(alice, blobs, monkeypatch):
    job = services.analysis_submit(user=alice, dataset=blobs, params={"analysis": "pca"})

    def refused(*, job, result):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(services, "job_succeed", refused)
    assert run(job).status == "failed"
    record = Analysis.objects.get(job=job)
    assert (record.result_sha256, record.entry_seq) == ("", None)
    assert not Entry.objects.filter(kind=COMPLETED).exists()


def test_an_analysis_job_without_a_record_fails_with_a_reason_and_writes_no_entry(alice, blobs):
    job = job_submit(
        owner=alice,
        kind="marketplace.analysis",
        params={"analysis": "pca", "version": blobs.current_version_id},
    )
    job = run(job)
    assert job.status == "failed" and "no analysis record" in job.error
    assert not Entry.objects.filter(kind=COMPLETED).exists()


def test_the_api_lists_analyses_with_their_records_in_constant_queries(
    alice, blobs, settings, django_assert_max_num_queries
):
    settings.JOB_MAX_ACTIVE_PER_USER = 0  # no limit: no worker runs these
    for _ in range(3):
        services.analysis_submit(user=alice, dataset=blobs, params={"analysis": "pca"})
    client = api_as(alice)
    url = f"/api/data/datasets/{blobs.pk}/analyses/"
    with django_assert_max_num_queries(6) as few:
        client.get(url)
    for _ in range(12):
        services.analysis_submit(user=alice, dataset=blobs, params={"analysis": "pca"})
    with django_assert_max_num_queries(len(few.captured_queries)):
        body = client.get(url).json()
    assert body["count"] == 15 and all(row["analysis"]["version"] == 1 for row in body["results"])


# ---------------------------------------------------------------------------------------------------- migration 0006


def test_the_data_migration_records_old_analysis_jobs_and_skips_those_it_cannot_read(alice, bob, blobs):
    migration = importlib.import_module("marketplace.migrations.0006_analysis")
    version = blobs.current_version
    license = License.objects.get(buyer=bob, tier="compute")
    base = {"max_categories": 20, "missing": "impute"}

    def old_job(owner, params, result=None) -> Job:
        return Job.objects.create(
            owner=owner, kind="marketplace.analysis", params=params, status="succeeded", result=result
        )

    exact = old_job(
        alice, {**base, "analysis": "kmeans", "k": 3, "version": version.pk, "private": False, "epsilon": None},
        {"analysis": "kmeans", "result_sha256": "ab" * 32, "entry_seq": 41},
    )  # fmt: skip
    private = old_job(
        bob, {**base, "analysis": "pca", "version": version.pk, "private": True, "epsilon": "1.50"}
    )
    oldest = old_job(
        alice, {"analysis": "pca", "version": version.pk}, result="not a dict"
    )  # before ε existed
    odd = [
        old_job(alice, ["not", "a", "dict"]),
        old_job(alice, {"analysis": "pca"}),  # no version
        old_job(alice, {"analysis": "pca", "version": 10**30}),
        old_job(alice, {"analysis": "pca", "version": str(version.pk)}),
        old_job(alice, {"analysis": 7, "version": version.pk}),
        old_job(bob, {"analysis": "pca", "version": version.pk, "private": True, "epsilon": None}),
        old_job(bob, {"analysis": "pca", "version": version.pk, "private": True, "epsilon": "NaN"}),
    ]
    Job.objects.create(owner=alice, kind="ml.selftest", params={"analysis": "pca", "version": version.pk})

    migration.record_analyses(apps, None)
    migration.record_analyses(apps, None)  # run again: nothing twice

    records = {record.job_id: record for record in Analysis.objects.all()}
    assert set(records) == {exact.pk, private.pk, oldest.pk}
    assert not set(records) & {job.pk for job in odd}
    first = records[exact.pk]
    assert (first.user_id, first.version_id, first.kind, first.private, first.epsilon) == (
        alice.pk, version.pk, "kmeans", False, None
    )  # fmt: skip
    assert first.options == {**base, "k": 3} and first.license_id is None
    assert (first.result_sha256, first.entry_seq, first.created_at) == ("ab" * 32, 41, exact.created_at)
    second = records[private.pk]
    assert (second.private, second.epsilon, second.license_id) == (True, Decimal("1.50"), license.pk)
    assert (second.result_sha256, second.entry_seq) == ("", None)
    assert records[oldest.pk].options == {} and records[oldest.pk].private is False
    # The pages find the recorded jobs again.
    assert client_for(alice).get(f"/data/{blobs.pk}/analyses/{exact.pk}/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_migrating_to_0006_records_an_old_analysis_job(alice, blobs):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    version = blobs.current_version
    before, after = [("marketplace", "0005_browse_indexes")], [("marketplace", "0006_analysis")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)  # the Analysis table is gone: the jobs are as main left them
    try:
        old = executor.loader.project_state(before).apps
        job = old.get_model("jobs", "Job").objects.create(
            owner_id=alice.pk, kind="marketplace.analysis", status="succeeded",
            params={"analysis": "dbscan", "version": version.pk, "eps": 0.5, "min_samples": 5,
                    "max_categories": 20, "missing": "impute", "private": False, "epsilon": None},
            result={"analysis": "dbscan", "result_sha256": "cd" * 32, "entry_seq": 12},
        )  # fmt: skip
        executor = MigrationExecutor(connection)
        executor.migrate(after)
    finally:
        MigrationExecutor(connection).migrate(executor.loader.graph.leaf_nodes())
    record = Analysis.objects.get(job_id=job.pk)
    assert (record.kind, record.version_id, record.user_id, record.entry_seq) == (
        "dbscan",
        version.pk,
        alice.pk,
        12,
    )
    assert record.options == {"eps": 0.5, "min_samples": 5, "max_categories": 20, "missing": "impute"}


def test_the_admin_lists_analyses_read_only(alice, blobs):
    job = services.analysis_submit(user=alice, dataset=blobs, params={"analysis": "pca"})
    staff = UserFactory(username="staff", is_staff=True, is_superuser=True)
    client = client_for(staff)
    listing = client.get("/admin/marketplace/analysis/")
    assert listing.status_code == 200 and f">{job.analysis.pk}<" in listing.content.decode()
    assert client.get("/admin/marketplace/analysis/add/").status_code == 403
    record = job.analysis
    client.post(f"/admin/marketplace/analysis/{record.pk}/change/", {"kind": "dbscan"})
    client.post(f"/admin/marketplace/analysis/{record.pk}/delete/", {"post": "yes"})
    assert Analysis.objects.get(pk=record.pk).kind == "pca"


# ---------------------------------------------------------------------------------------------------- errors


def _fails_quoting_a_value(prepared, options, *rest) -> dict:
    raise ValueError("could not convert string to float: 'Zebra-Row-17'")


QUOTING = analyses.AnalysisKind(
    name="quoting", label="Quoting (toy)", short="the quoting", exact=_fails_quoting_a_value,
    private=_fails_quoting_a_value, charts=lambda result: [],
)  # fmt: skip


def test_a_private_analysis_that_fails_never_quotes_the_data_but_an_exact_one_says_why(
    monkeypatch, alice, bob, blobs
):
    monkeypatch.setitem(analyses.KINDS, QUOTING.name, QUOTING)
    private = run(services.analysis_submit(user=bob, dataset=blobs, params={"analysis": "quoting"}))
    assert private.status == "failed"
    assert "Zebra" not in private.error and "compute-only results never quote the data" in private.error
    exact = run(services.analysis_submit(user=alice, dataset=blobs, params={"analysis": "quoting"}))
    assert exact.status == "failed" and "Zebra-Row-17" in exact.error
    assert not Entry.objects.filter(kind=COMPLETED).exists()
