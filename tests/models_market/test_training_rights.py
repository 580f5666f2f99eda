"""Who may train from which data: owners and licensees whose terms allow derived models; a compute-only licensee
privately, paying ε, with no trees, no download and no metrics measured on rows they may not see."""

import json

import pytest
from django.core.management import call_command

from ledger.models import Entry
from marketplace import services as data
from marketplace.models import License
from models_market.models import ModelVersion
from platform_site.jobs.models import Job
from tests.conftest import api_as
from tests.models_market.models_in import RARE_INCOME, buy, published_version, run, train_body

pytestmark = pytest.mark.django_db


def no_training_queued() -> bool:
    return not Job.objects.filter(kind="models_market.train").exists()


def test_a_compute_only_licensee_trains_privately_paying_epsilon_and_cannot_download(alice, bob):
    version = published_version(alice, rows=1200)
    licence = buy(bob, version, "compute")
    body = train_body(version, epsilon="2.00", epochs=5, royalty_bp=300)
    submitted = api_as(bob).post("/api/models/train/", body, format="json")
    assert submitted.status_code == 201, submitted.content
    licence.refresh_from_db()
    assert (licence.epsilon_spent, licence.epsilon_left) == (2, 8)  # charged when queued, as analyses are
    spent = Entry.objects.get(kind="marketplace.privacy.spent")
    assert spent.payload["training"] == "logistic_regression" and spent.payload["epsilon"] == "2.00"
    assert spent.payload["job"] == submitted.json()["id"]

    job = run(submitted.json()["id"])
    assert job.status == "succeeded", job.error
    model = ModelVersion.objects.get(pk=job.result["version"])
    assert model.private and not model.downloadable
    assert model.privacy["epsilon_charged"] == "2.00" and model.privacy["epsilon_spent"] <= 2.0
    assert model.privacy["license"] == licence.pk
    created = Entry.objects.get(kind="models_market.version.created")
    assert (created.payload["private"], created.payload["epsilon"]) == (True, "2.00")
    # The learning curve shows only the privacy spent; metrics on held-out private rows are not released.
    assert all(set(point) == {"step", "epsilon"} for point in job.metrics)
    assert model.metrics == {} and job.result["metrics"] == {}
    assert str(RARE_INCOME) not in json.dumps(job.result) + json.dumps(job.metrics)

    card = api_as(bob).get(f"/api/models/versions/{model.pk}/").json()
    assert card["metrics"] == [] and "shown to the data's owner only" in card["metrics_note"]
    assert card["evaluation"] == {"split": model.evaluation["split"]}
    assert card["privacy"]["private"] and "never downloaded" in card["privacy"]["statement"]
    assert card["token"]["owner"] == "bob" and card["downloadable"] is False
    # The data's owner holds the rows: the measured figures are hers to see.
    owners = api_as(alice).get(f"/api/models/versions/{model.pk}/").json()
    assert {m["name"] for m in owners["metrics"]} >= {"accuracy", "roc_auc"}
    assert "confusion_matrix" in owners["evaluation"]

    refused = api_as(bob).get(f"/api/models/versions/{model.pk}/download/")
    assert refused.status_code == 403 and "weights never leave the platform" in refused.json()["detail"]
    call_command("verify_ledger", "--quiet")


@pytest.mark.parametrize("algorithm", ["random_forest", "hist_gradient_boosting"])
def test_a_compute_only_licensee_may_not_train_trees_and_is_told_why(alice, bob, algorithm):
    version = published_version(alice)
    buy(bob, version, "compute")
    response = api_as(bob).post("/api/models/train/", train_body(version, algorithm=algorithm), format="json")
    assert response.status_code == 403
    assert "memorise single rows" in response.json()["detail"]
    assert no_training_queued()
    assert License.objects.get(buyer=bob).epsilon_spent == 0


def test_a_training_that_would_spend_more_epsilon_than_is_left_is_refused(alice, bob):
    version = published_version(alice, privacy_budget=None)
    buy(bob, version, "compute")
    response = api_as(bob).post("/api/models/train/", train_body(version, epsilon="10.01"), format="json")
    assert response.status_code == 400
    assert "only ε = 10.00 is left" in response.json()["detail"]
    assert no_training_queued() and not Entry.objects.filter(kind="marketplace.privacy.spent").exists()


def test_a_user_without_rights_is_refused_and_a_draft_is_not_found(alice, mallory):
    version = published_version(alice)
    response = api_as(mallory).post("/api/models/train/", train_body(version), format="json")
    assert response.status_code == 403
    assert "needs ownership or a valid licence" in response.json()["detail"]
    draft = data.dataset_create(owner=alice, title="Draft", terms_preset="open", price_download=100)
    response = api_as(mallory).post(
        "/api/models/train/", {**train_body(version), "dataset": draft.pk}, format="json"
    )
    assert response.status_code == 404
    assert no_training_queued()


def test_a_licence_whose_terms_forbid_derived_models_is_refused(alice, bob):
    version = published_version(alice, preset="research")
    buy(bob, version, "download")
    response = api_as(bob).post("/api/models/train/", train_body(version), format="json")
    assert response.status_code == 403
    assert "do not allow training models from this data" in response.json()["detail"]
    assert no_training_queued()


def test_a_download_licensee_trains_exactly_owns_the_token_and_downloads_the_weights(alice, bob, mallory):
    version = published_version(alice)
    buy(bob, version, "download")
    low = api_as(bob).post("/api/models/train/", train_body(version, lineage_bp=10), format="json")
    assert low.status_code == 400 and "not the maker's to waive" in low.json()["detail"]
    job = run(api_as(bob).post("/api/models/train/", train_body(version), format="json").json()["id"])
    assert job.status == "succeeded", job.error
    model = ModelVersion.objects.get(pk=job.result["version"])
    assert not model.private and model.metrics["accuracy"]["source"] == "measured"
    assert model.lineage_bp == 1000 and model.token.owner == bob
    download = api_as(bob).get(f"/api/models/versions/{model.pk}/download/")
    assert download.status_code == 200
    assert b"".join(download.streaming_content)[:2] == b"PK"  # a skops archive
    refused = api_as(mallory).get(f"/api/models/versions/{model.pk}/download/")
    assert refused.status_code == 403 and "only the owner of the model's token" in refused.json()["detail"]


def test_the_wallet_says_the_epsilon_went_to_training_a_model(alice, bob):
    from platform_site.home.selectors import activity_list_for_user

    version = published_version(alice, rows=1200)
    buy(bob, version, "compute")
    job_id = api_as(bob).post("/api/models/train/", train_body(version), format="json").json()["id"]
    said = [row for row in activity_list_for_user(user=bob) if row.kind == "marketplace.privacy.spent"]
    assert len(said) == 1
    assert (
        said[0].text == "Privacy budget spent on “Scores”: ε 1.00 for training a model (1.00 of 10.00 used)"
    )
    assert said[0].url == f"/jobs/{job_id}/"
