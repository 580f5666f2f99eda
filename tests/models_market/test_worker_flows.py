"""Models coming in through the API, on the real Celery worker: training (exact and private) and an upload."""

import hashlib
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from ledger.models import Entry
from marketplace.models import License
from models_market.models import ModelVersion
from tests.conftest import api_as
from tests.models_market.models_in import buy, published_version, train_body, wait
from tests.models_market.test_uploads import SCHEMA, SPEC, weights

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_the_owner_trains_an_mlp_on_the_worker_with_a_live_curve_and_downloads_it(
    alice, mallory, celery_worker
):
    from ml.supervised import model_from_bytes

    version = published_version(alice)
    body = train_body(version, algorithm="mlp", hidden=[16], epochs=6, lr=0.01, royalty_bp=100)
    submitted = api_as(alice).post("/api/models/train/", body, format="json")
    assert submitted.status_code == 201, submitted.content
    job = wait(submitted.json()["id"])
    assert job.status == "succeeded", job.error
    assert job.worker == celery_worker
    assert [p["step"] for p in job.metrics] == [1, 2, 3, 4, 5, 6]  # reported epoch by epoch
    shown = api_as(alice).get(f"/api/jobs/{job.pk}/").json()
    assert shown["result"]["token"] and shown["metrics"] == job.metrics

    model = ModelVersion.objects.get(pk=job.result["version"])
    download = api_as(alice).get(f"/api/models/versions/{model.pk}/download/")
    assert download.status_code == 200
    content = b"".join(download.streaming_content)
    assert hashlib.sha256(content).hexdigest() == model.artifact_sha256
    assert model_from_bytes(content).spec == model.spec  # the spec travels inside the safetensors file
    assert api_as(mallory).get(f"/api/models/versions/{model.pk}/download/").status_code == 403
    call_command("verify_ledger", "--quiet")


def test_a_compute_only_licensee_trains_privately_on_the_worker(alice, bob, celery_worker):
    version = published_version(alice, rows=1200)
    buy(bob, version, "compute")
    submitted = api_as(bob).post(
        "/api/models/train/", train_body(version, epsilon="2.00", epochs=4), format="json"
    )
    assert submitted.status_code == 201, submitted.content
    job = wait(submitted.json()["id"])
    assert job.status == "succeeded", job.error
    assert License.objects.get(buyer=bob).epsilon_spent == 2
    model = ModelVersion.objects.get(pk=job.result["version"])
    assert model.private and model.token.owner == bob and model.metrics == {}
    refused = api_as(bob).get(f"/api/models/versions/{model.pk}/download/")
    assert refused.status_code == 403 and "never leave the platform" in refused.json()["detail"]
    trees = api_as(bob).post(
        "/api/models/train/", train_body(version, algorithm="random_forest"), format="json"
    )
    assert trees.status_code == 403
    call_command("verify_ledger", "--quiet")


def test_an_upload_is_validated_on_the_worker_and_minted(alice, celery_worker):
    body = {
        "artifact": SimpleUploadedFile("net.safetensors", weights()), "name": "Churn net",
        "task": "classification", "schema": json.dumps(SCHEMA), "spec": json.dumps(SPEC),
    }  # fmt: skip
    response = api_as(alice).post("/api/models/upload/", body, format="multipart")
    assert response.status_code == 201, response.content
    job = wait(response.json()["job"])
    assert job.status == "succeeded", job.error
    card = api_as(alice).get(f"/api/models/versions/{response.json()['version']}/").json()
    assert card["status"] == "ready" and card["token"]["owner"] == "alice"
    assert Entry.objects.filter(kind="models_market.token.minted").count() == 1
    call_command("verify_ledger", "--quiet")
