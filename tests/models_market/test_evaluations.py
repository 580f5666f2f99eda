"""Evaluation and selection as a paid service: models ranked on a sealed holdout with bootstrap intervals, the
fee and the evaluation prices paid exactly, each owner seeing only their own model's row."""

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command

from ledger.models import Entry
from models_market import services
from models_market.models import EvaluationScore
from platform_site.errors import DomainError
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
    assert (balance(bob), balance(alice), balance(carol), balance("treasury")) == (200, 300, 0, 500)
    stored = ev.holdout.name
    with django_capture_on_commit_callbacks(execute=True):
        job_execute(job_id=ev.job_id, worker="test")
    ev.refresh_from_db()
    assert ev.status == "done" and not ev.holdout and not default_storage.exists(stored)
    rows = list(EvaluationScore.objects.filter(evaluation=ev).order_by("rank"))
    assert [r.rank for r in rows] == [1, 2]
    assert rows[0].estimate >= rows[1].estimate
    assert all(r.low <= r.estimate <= r.high for r in rows)
    entry = Entry.objects.get(kind="models_market.evaluation.ranked")
    assert entry.payload["holdout_sha256"] == ev.holdout_sha256
    assert [r["version"] for r in entry.payload["ranking"]] == [r.version_id for r in rows]
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
