"""Training on the platform: from data the trainer may use, each algorithm, measured on held-out rows, minted."""

import hashlib

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command

from ledger.models import Entry
from models_market.models import ModelToken, ModelVersion
from platform_site.jobs.models import Job
from tests.conftest import api_as
from tests.models_market.models_in import published_version, run, train_body

pytestmark = pytest.mark.django_db

FAST = {
    "logistic_regression": {},
    "linear_regression": {},
    "random_forest": {"options": {"n_estimators": 10, "max_depth": 4}},
    "hist_gradient_boosting": {"options": {"max_iter": 10}},
    "mlp": {"hidden": [16], "epochs": 10, "lr": 0.01, "batch_size": 32},
}
CASES = [
    ("logistic_regression", "classification"),
    ("linear_regression", "regression"),
    ("random_forest", "classification"),
    ("random_forest", "regression"),
    ("hist_gradient_boosting", "classification"),
    ("hist_gradient_boosting", "regression"),
    ("mlp", "classification"),
    ("mlp", "regression"),
]


@pytest.mark.parametrize(("algorithm", "task"), CASES)
def test_the_owner_trains_each_algorithm_and_gets_a_measured_model_and_its_token(alice, algorithm, task):
    version = published_version(alice)
    target = "label" if task == "classification" else "amount"
    body = train_body(
        version, algorithm=algorithm, task=task, target=target, royalty_bp=500, **FAST[algorithm]
    )
    submitted = api_as(alice).post("/api/models/train/", body, format="json")
    assert submitted.status_code == 201, submitted.content
    job = run(submitted.json()["id"])
    assert job.status == "succeeded", job.error

    model = ModelVersion.objects.select_related("token").get(pk=job.result["version"])
    assert (model.status, model.origin, model.algorithm, model.private) == (
        "ready",
        "trained",
        algorithm,
        False,
    )
    assert model.format == ("torch" if algorithm == "mlp" else "sklearn")
    with default_storage.open(model.artifact.name, "rb") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == model.artifact_sha256
    expected = {"accuracy", "f1", "roc_auc", "pr_auc"} if task == "classification" else {"rmse", "mae", "r2"}
    assert expected <= set(model.metrics)
    assert {m["source"] for m in model.metrics.values()} == {"measured"}
    if task == "classification":
        assert model.metrics["accuracy"]["value"] > 0.7  # the label follows x1 and x2 closely
        assert len(model.evaluation["confusion_matrix"]) == 2 and model.evaluation["classes"] == ["no", "yes"]
        assert len(model.evaluation["calibration"]["bins"]) == 10
    else:
        assert model.metrics["r2"]["value"] > 0.5
    split = model.evaluation["split"]
    assert split["test_rows"] + split["train_rows"] == 240 and split["test_size"] == 0.2

    # Provenance: the dataset version, its SHA-256 and the entry that published it.
    assert model.trained_on_id == version.pk and model.trained_on_sha256 == version.sha256
    created = Entry.objects.get(kind="models_market.version.created")
    assert created.seq == model.entry_seq
    assert created.payload["trained_on_sha256"] == version.sha256
    assert created.payload["dataset_published_seq"] == version.published_seq
    assert created.payload["artifact_sha256"] == model.artifact_sha256
    # One token, to the trainer, with the artifact's hash and the royalty.
    token = model.token
    assert (token.owner, token.creator, token.royalty_bp) == (alice, alice, 500)
    assert token.artifact_sha256 == model.artifact_sha256
    minted = Entry.objects.get(kind="models_market.token.minted")
    assert minted.seq == token.minted_seq and minted.payload["token"] == token.pk
    assert model.lineage_bp == 1000  # trained on data: the platform's default share to it
    assert job.result["token"] == token.pk and job.result["entry_seq"] == model.entry_seq
    call_command("verify_ledger", "--quiet")


def test_the_mlp_reports_its_learning_curve_while_it_trains(alice):
    version = published_version(alice)
    body = train_body(version, algorithm="mlp", hidden=[8, 4], activation="tanh", dropout=0.1, epochs=4)
    job = run(api_as(alice).post("/api/models/train/", body, format="json").json()["id"])
    assert job.status == "succeeded", job.error
    assert [point["step"] for point in job.metrics] == [1, 2, 3, 4]
    assert all({"loss", "val_loss", "accuracy"} <= set(point) for point in job.metrics)
    model = ModelVersion.objects.get(pk=job.result["version"])
    assert model.curve == job.metrics
    assert model.spec["hidden"] == [8, 4] and model.spec["activation"] == "tanh"
    card = api_as(alice).get(f"/api/models/versions/{model.pk}/").json()
    assert [point["step"] for point in card["learning_curve"]] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"target": "nope"}, 'there is no column "nope"'),
        ({"task": "regression", "target": "colour", "algorithm": "linear_regression"}, "holds text"),
        ({"task": "regression", "target": "amount"}, "logistic_regression does not do regression"),
        ({"options": {"n_estimators": 5}}, "unknown option(s) for logistic_regression"),
        ({"algorithm": "mlp", "hidden": [0]}, "hidden"),
        ({"royalty_bp": 2501}, "royalty"),
        ({"options": {"hidden": [4]}}, "as fields of their own"),
    ],
)
def test_options_that_would_not_train_are_refused_before_anything_is_queued(alice, fields, message):
    version = published_version(alice)
    response = api_as(alice).post("/api/models/train/", train_body(version, **fields), format="json")
    assert response.status_code == 400, response.content
    assert message in str(response.json())
    assert not Job.objects.filter(kind="models_market.train").exists()


def test_the_card_says_where_the_model_came_from_and_the_list_finds_it(alice, bob):
    version = published_version(alice)
    job = run(
        api_as(alice)
        .post("/api/models/train/", train_body(version, name="Churn scorer"), format="json")
        .json()["id"]
    )
    model_id = job.result["version"]
    card = api_as(bob).get(f"/api/models/versions/{model_id}/").json()
    assert card["training_data"] == {
        "dataset": version.dataset_id, "title": "Scores", "version": 1, "sha256": version.sha256,
        "published_seq": version.published_seq, "url": f"/data/{version.dataset_id}/",
    }  # fmt: skip
    assert [c["name"] for c in card["inputs"]] == ["x1", "x2", "colour", "income", "amount"]
    assert card["output"] == {"target": "label", "task": "classification", "classes": ["no", "yes"]}
    assert {m["source_label"] for m in card["metrics"]} == {"measured by the platform"}
    assert card["token"]["owner"] == "alice" and card["downloadable"] is True
    assert not card["privacy"]["private"]

    listed = api_as(bob).get("/api/models/", {"task": "classification", "q": "churn"}).json()
    assert [m["id"] for m in listed["results"]] == [model_id]
    assert [m["name"] for m in card["metrics"]][:5] == ["accuracy", "f1", "f1_macro", "roc_auc", "pr_auc"]
    assert listed["results"][0]["metrics"]["accuracy"] == card["metrics"][0]["value"]
    assert api_as(bob).get("/api/models/", {"task": "regression"}).json()["results"] == []

    assert ModelToken.objects.count() == 1


def test_the_kinds_offer_the_algorithms_and_activations_of_ml():
    from ml.architecture import ACTIVATIONS
    from ml.supervised import ALGORITHMS
    from models_market import jobkinds

    assert tuple(ALGORITHMS) == jobkinds.ALGORITHMS
    assert tuple(sorted(ACTIVATIONS)) == jobkinds.ACTIVATIONS
    assert set(jobkinds.ALGORITHM_LABELS) == set(ALGORITHMS)


def test_the_job_pages_show_what_was_trained(alice, client):
    version = published_version(alice)
    body = train_body(version, name="Churn scorer", algorithm="mlp", hidden=[4], epochs=2)
    job = run(api_as(alice).post("/api/models/train/", body, format="json").json()["id"])
    client.force_login(alice)
    listing = client.get("/jobs/").content.decode()
    assert "Model training" in listing and "Churn scorer v1" in listing
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "MLP (neural network)" in page and f"#{job.result['token']}" in page
    assert "label (classification)" in page
