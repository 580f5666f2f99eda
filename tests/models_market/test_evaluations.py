"""Evaluation and selection as a paid service: models ranked on a sealed holdout with bootstrap intervals, the
payment held in escrow, then the fee and the prices of scored models paid exactly and the rest refunded; each
owner seeing only their own model's row."""

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command

from ledger.models import Entry
from models_market import services
from models_market.models import EvaluationScore
from platform_site.errors import DomainError
from platform_site.jobs.models import Job
from platform_site.jobs.services import job_execute
from tests.ledger.helpers import fund
from tests.models_market.helpers import balance, listed
from tests.models_market.test_guarantees import holdout_csv, upload

pytestmark = pytest.mark.django_db


def test_models_are_ranked_with_intervals_and_the_fees_are_paid_exactly(
    alice, bob, carol, settings, django_capture_on_commit_callbacks
):
    settings.MODELS_EVALUATION_RESAMPLES, settings.MODELS_EVALUATION_FEE = 50, 500
    good = services.guarantee_set(token=listed(alice), actor=alice, metric="", price_evaluation=300)
    other = listed(carol, seed=3)  # no evaluation price
    fund(f"user:{bob.pk}", 1_000)
    ev = services.evaluation_submit(user=bob, versions=[other.version, good.version],
                                    holdout_file=upload(holdout_csv(80)), metric="accuracy")  # fmt: skip
    # Held in escrow until the models are ranked.
    assert (balance(bob), balance(alice), balance(carol), balance("treasury")) == (200, 0, 0, 0)
    assert balance(f"escrow:{ev.escrow_id}") == 800
    stored = ev.holdout.name
    with django_capture_on_commit_callbacks(execute=True):
        job_execute(job_id=ev.job_id, worker="test")
    ev.refresh_from_db()
    assert ev.status == "done" and not ev.holdout and not default_storage.exists(stored)
    assert (balance(bob), balance(alice), balance(carol), balance("treasury")) == (200, 300, 0, 500)
    assert balance(f"escrow:{ev.escrow_id}") == 0
    rows = list(EvaluationScore.objects.filter(evaluation=ev).order_by("rank"))
    assert [r.rank for r in rows] == [1, 2]
    assert rows[0].estimate >= rows[1].estimate
    assert all(r.low <= r.estimate <= r.high for r in rows)
    entry = Entry.objects.get(kind="models_market.evaluation.ranked")
    assert entry.payload["holdout_sha256"] == ev.holdout_sha256
    # The public ledger holds the order, not the figures: no owner reads another's metric there.
    assert entry.payload["ranking"] == [{"version": r.version_id, "rank": r.rank} for r in rows]
    # Each owner's own row only.
    from models_market import selectors

    mine = selectors.evaluation_scores_for_owner(user=alice)
    assert [(s.version_id, s.evaluation_id) for s in mine] == [(good.version_id, ev.pk)]
    call_command("verify_ledger", "--quiet")


def test_bad_requests_pay_nothing(alice, bob, settings):
    good = listed(alice)
    fund(f"user:{bob.pk}", 1_000)
    with pytest.raises(DomainError, match="not a classification metric"):
        services.evaluation_submit(user=bob, versions=[good.version], holdout_file=upload(holdout_csv()),
                                   metric="rmse")  # fmt: skip
    with pytest.raises(DomainError, match="no column"):
        services.evaluation_submit(user=bob, versions=[good.version], metric="accuracy",
                                   holdout_file=upload(b"age,income,visits\n1,2,3\n"))  # fmt: skip
    assert balance(bob) == 1_000


def test_the_evaluation_api_ranks_for_the_payer_and_shows_each_owner_only_their_row(
    alice, bob, carol, mallory, settings, django_capture_on_commit_callbacks
):
    from models_market.models import Evaluation
    from tests.conftest import api_as

    settings.MODELS_EVALUATION_RESAMPLES, settings.MODELS_EVALUATION_FEE = 50, 500
    first, second = listed(alice), listed(carol, seed=3)
    fund(f"user:{bob.pk}", 1_000)
    body = {"versions": [first.version_id, second.version_id], "metric": "accuracy",
            "holdout": upload(holdout_csv(80))}  # fmt: skip
    response = api_as(bob).post("/api/models/evaluations/", body, format="multipart")
    assert response.status_code == 202, response.json()
    ev = Evaluation.objects.get(pk=response.json()["id"])
    with django_capture_on_commit_callbacks(execute=True):
        job_execute(job_id=ev.job_id, worker="test")
    ranking = api_as(bob).get(f"/api/models/evaluations/{ev.pk}/")
    assert ranking.status_code == 200
    assert api_as(mallory).get(f"/api/models/evaluations/{ev.pk}/").status_code == 404
    assert api_as(alice).get(f"/api/models/evaluations/{ev.pk}/").status_code == 404, (
        "an owner is not the payer"
    )
    for owner, token in ((alice, first), (carol, second)):
        rows = api_as(owner).get("/api/models/evaluations/mine/").json()
        rows = rows.get("results", rows) if isinstance(rows, dict) else rows
        assert [r["version"] for r in rows] == [token.version_id], "each owner sees their own model only"
        assert all("rank" not in r for r in rows), "a rank would tell how the others scored"
    junk = api_as(bob).post("/api/models/evaluations/", {**body, "holdout": upload(b"\x00\xff garbage")},
                            format="multipart")  # fmt: skip
    assert junk.status_code == 400
    call_command("verify_ledger", "--quiet")


@pytest.fixture
def two_models(alice, carol, settings):
    """alice's model (evaluation price 300) and carol's (200); the fee is 500."""
    settings.MODELS_EVALUATION_RESAMPLES, settings.MODELS_EVALUATION_FEE = 50, 500
    first = services.guarantee_set(token=listed(alice), actor=alice, metric="", price_evaluation=300)
    second = services.guarantee_set(token=listed(carol, seed=3), actor=carol, metric="", price_evaluation=200)
    return first, second


def run_job(ev, capture):
    with capture(execute=True):
        job_execute(job_id=ev.job_id, worker="test")
    ev.refresh_from_db()
    return ev


def test_a_failed_evaluation_job_refunds_the_user_exactly_and_pays_no_owner(
    two_models, alice, bob, carol, monkeypatch, django_capture_on_commit_callbacks
):
    from models_market.services import evaluations

    fund(f"user:{bob.pk}", 1_234)
    first, second = two_models
    ev = services.evaluation_submit(user=bob, versions=[first.version, second.version],
                                    holdout_file=upload(holdout_csv(80)), metric="accuracy")  # fmt: skip
    assert balance(bob) == 234 and ev.total == 1_000
    stored = ev.holdout.name

    def broken(*args, **kwargs):
        raise DomainError("the worker could not read the holdout")

    monkeypatch.setattr(evaluations, "holdout_load", broken)
    ev = run_job(ev, django_capture_on_commit_callbacks)
    job = Job.objects.get(pk=ev.job_id)
    assert (job.status, ev.status) == ("failed", "failed")
    assert (balance(bob), balance(alice), balance(carol), balance("treasury")) == (1_234, 0, 0, 0)
    assert not ev.holdout and not default_storage.exists(stored)
    assert Entry.objects.get(kind="models_market.evaluation.failed").seq == ev.result_seq
    assert not Entry.objects.filter(kind="ledger.escrow.released").exists()
    call_command("verify_ledger", "--quiet")


def test_a_cancelled_evaluation_refunds_everything(
    two_models, alice, bob, carol, django_capture_on_commit_callbacks
):
    from platform_site.jobs.services import job_cancel

    fund(f"user:{bob.pk}", 1_000)
    first, second = two_models
    ev = services.evaluation_submit(user=bob, versions=[first.version, second.version],
                                    holdout_file=upload(holdout_csv(80)), metric="accuracy")  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        job_cancel(job=Job.objects.get(pk=ev.job_id), actor=bob)
    ev = run_job(ev, django_capture_on_commit_callbacks)  # a late worker changes nothing
    assert ev.status == "failed"
    assert (balance(bob), balance(alice), balance(carol), balance("treasury")) == (1_000, 0, 0, 0)
    call_command("verify_ledger", "--quiet")


def test_a_model_the_holdout_does_not_fit_is_refunded_and_the_others_paid(
    two_models, alice, bob, carol, monkeypatch, django_capture_on_commit_callbacks
):
    from models_market.services import evaluations

    fund(f"user:{bob.pk}", 1_000)
    first, second = two_models
    ev = services.evaluation_submit(user=bob, versions=[first.version, second.version],
                                    holdout_file=upload(holdout_csv(80)), metric="accuracy")  # fmt: skip
    model_for = evaluations.runtime.model_for

    def unfit(version):
        if version.pk == second.version_id:
            raise DomainError("this model's classes are not the holdout's")
        return model_for(version)

    monkeypatch.setattr(evaluations.runtime, "model_for", unfit)
    ev = run_job(ev, django_capture_on_commit_callbacks)
    assert ev.status == "done"
    rows = {r.version_id: r for r in EvaluationScore.objects.filter(evaluation=ev)}
    assert rows[first.version_id].rank == 1
    assert rows[second.version_id].rank is None and "classes" in rows[second.version_id].error
    # carol's 200 back to bob; alice's 300 to alice; the fee to the treasury.
    assert (balance(bob), balance(alice), balance(carol), balance("treasury")) == (200, 300, 0, 500)
    entry = Entry.objects.get(kind="models_market.evaluation.ranked")
    assert entry.payload["refunded"] == 200 and entry.seq == ev.result_seq
    assert Job.objects.get(pk=ev.job_id).result["refunded"] == 200
    call_command("verify_ledger", "--quiet")


def test_an_evaluation_past_its_deadline_is_refunded_and_marked_expired(
    two_models, alice, bob, carol, settings, django_capture_on_commit_callbacks
):
    from ledger.services import escrow_refund_expired

    settings.MODELS_GUARANTEE_DEADLINE_HOURS = -1  # already past
    fund(f"user:{bob.pk}", 1_000)
    first, second = two_models
    ev = services.evaluation_submit(user=bob, versions=[first.version, second.version],
                                    holdout_file=upload(holdout_csv(80)), metric="accuracy")  # fmt: skip
    stored = ev.holdout.name
    assert escrow_refund_expired() == 1  # the ledger's beat task
    with django_capture_on_commit_callbacks(execute=True):
        assert services.evaluations_expire() == 1
    ev.refresh_from_db()
    assert ev.status == "expired" and not ev.holdout and not default_storage.exists(stored)
    assert (balance(bob), balance(alice), balance(carol), balance("treasury")) == (1_000, 0, 0, 0)
    ev = run_job(ev, django_capture_on_commit_callbacks)  # a late worker pays nobody
    assert ev.status == "expired" and balance(bob) == 1_000 and balance("treasury") == 0
    call_command("verify_ledger", "--quiet")


def test_a_worker_that_finishes_after_the_deadline_refund_pays_nobody(
    two_models, alice, bob, carol, settings, django_capture_on_commit_callbacks
):
    from ledger.services import escrow_refund_expired

    settings.MODELS_GUARANTEE_DEADLINE_HOURS = -1
    fund(f"user:{bob.pk}", 1_000)
    first, second = two_models
    ev = services.evaluation_submit(user=bob, versions=[first.version, second.version],
                                    holdout_file=upload(holdout_csv(80)), metric="accuracy")  # fmt: skip
    assert escrow_refund_expired() == 1  # the escrow refunded, the evaluation not yet closed
    ev = run_job(ev, django_capture_on_commit_callbacks)
    assert ev.status == "expired" and not ev.holdout
    assert (balance(bob), balance(alice), balance(carol), balance("treasury")) == (1_000, 0, 0, 0)
    assert Entry.objects.filter(kind="ledger.escrow.refunded").count() == 1
    assert not Entry.objects.filter(kind="ledger.escrow.released").exists()
    call_command("verify_ledger", "--quiet")


def test_the_job_page_shows_the_evaluation_summary_to_its_owner(
    two_models, bob, mallory, client, django_capture_on_commit_callbacks
):
    fund(f"user:{bob.pk}", 1_000)
    first, second = two_models
    ev = services.evaluation_submit(user=bob, versions=[first.version, second.version],
                                    holdout_file=upload(holdout_csv(80)), metric="accuracy")  # fmt: skip
    ev = run_job(ev, django_capture_on_commit_callbacks)
    client.force_login(bob)
    page = client.get(f"/jobs/{ev.job_id}/").content.decode()
    assert "Model evaluation" in page and "accuracy" in page
    assert "2 of 2 models" in page and "10.00 tokens" in page
    assert f'href="/api/models/evaluations/{ev.pk}/"' in page
    assert "Model evaluation" in client.get("/jobs/").content.decode()
    client.force_login(mallory)
    assert client.get(f"/jobs/{ev.job_id}/").status_code == 404
