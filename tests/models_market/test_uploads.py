"""Uploads in safe formats only: safetensors with a spec, or skops with an allow-list; validated by a worker."""

import io
import json
import pickle

import numpy as np
import pytest
import torch
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from ledger.models import Entry
from ml.architecture import build
from ml.artifacts import save_sklearn, save_torch
from models_market.models import ModelAsset, ModelLicense, ModelParent, ModelVersion
from tests.conftest import api_as
from tests.models_market.models_in import run

pytestmark = pytest.mark.django_db

SCHEMA = {
    "columns": [
        {"name": "age", "type": "numeric", "impute": 40.0, "center": 40.0, "scale": 10.0},
        {"name": "income", "type": "numeric", "impute": 3e4, "center": 3e4, "scale": 5e3},
        {"name": "city", "type": "categorical", "levels": ["Oslo", "Bergen"]},
    ],
    "target": {"name": "churn", "task": "classification", "classes": ["no", "yes"]},
}
SPEC = {"input_width": 4, "hidden": [8], "task": "classification", "output_width": 2}


def weights(spec: dict = SPEC, *, embed: bool = True) -> bytes:
    torch.manual_seed(0)
    module = build(spec)
    if embed:
        return save_torch(module, spec)
    from safetensors.torch import save

    return save({name: t.detach().contiguous() for name, t in module.state_dict().items()})


def skops_logistic(features: int = 4) -> bytes:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, features))
    return save_sklearn(LogisticRegression().fit(X, (X[:, 0] > 0).astype(int)))


def upload(user, content: bytes, filename: str, **fields):
    body = {
        "artifact": SimpleUploadedFile(filename, content), "name": "Churn net", "task": "classification",
        "schema": json.dumps(SCHEMA), **fields,
    }  # fmt: skip
    return api_as(user).post("/api/models/upload/", body, format="multipart")


def test_safetensors_weights_with_their_spec_are_validated_and_minted(alice):
    response = upload(
        alice, weights(embed=False), "net.safetensors", spec=json.dumps(SPEC),
        metrics=json.dumps({"accuracy": 0.91}), intended_use="Churn triage", limitations="Norway only",
        royalty_bp=250,
    )  # fmt: skip
    assert response.status_code == 201, response.content
    card = response.json()
    assert (card["status"], card["origin"], card["format"]) == ("pending", "uploaded", "torch")
    assert card["token"] is None and card["entry_seq"] is None

    job = run(card["job"])
    assert job.status == "succeeded", job.error
    version = ModelVersion.objects.get(pk=card["version"])
    assert (version.status, version.algorithm) == ("ready", "mlp")
    assert version.token.owner == alice and version.token.royalty_bp == 250
    assert version.token.artifact_sha256 == version.artifact_sha256 == card["artifact_sha256"]
    created = Entry.objects.get(kind="models_market.version.created")
    assert created.payload["origin"] == "uploaded" and created.seq == version.entry_seq
    assert Entry.objects.get(kind="models_market.token.minted").seq == version.token.minted_seq

    shown = api_as(alice).get(f"/api/models/versions/{version.pk}/").json()
    assert shown["metrics"] == [
        {"name": "accuracy", "label": "Accuracy", "value": 0.91, "source": "self_reported",
         "source_label": "self-reported by its maker"}
    ]  # fmt: skip
    assert (shown["intended_use"], shown["limitations"]) == ("Churn triage", "Norway only")
    assert [c["name"] for c in shown["inputs"]] == ["age", "income", "city"]
    assert shown["inputs"][2] == {"name": "city", "type": "text", "levels": ["Oslo", "Bergen"]}
    assert shown["training_data"] is None and shown["downloadable"]
    call_command("verify_ledger", "--quiet")


def test_a_skops_model_is_validated_with_the_allow_list_and_minted(alice):
    response = upload(alice, skops_logistic(), "model.skops")
    assert response.status_code == 201, response.content
    job = run(response.json()["job"])
    assert job.status == "succeeded", job.error
    version = ModelVersion.objects.get(pk=response.json()["version"])
    assert (version.format, version.algorithm, version.status) == ("sklearn", "logistic_regression", "ready")


def pickled() -> bytes:
    return pickle.dumps({"weights": [1.0, 2.0]})


def joblib_dump() -> bytes:
    import joblib

    buffer = io.BytesIO()
    joblib.dump({"weights": [1.0, 2.0]}, buffer, compress=3)
    return buffer.getvalue()


def torch_saved() -> bytes:
    buffer = io.BytesIO()
    torch.save(build(SPEC).state_dict(), buffer)
    return buffer.getvalue()


@pytest.fixture
def nothing_unpickles(monkeypatch):
    """Every way these files could be loaded fails the test if it is called."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a user's file was unpickled")

    import joblib

    for target, name in ((pickle, "loads"), (pickle, "load"), (pickle, "Unpickler"), (joblib, "load"),
                         (torch, "load")):  # fmt: skip
        monkeypatch.setattr(target, name, forbidden)


@pytest.mark.parametrize(
    ("make", "filename", "why"),
    [
        (pickled, "model.pkl", "this is a Python pickle"),
        (joblib_dump, "model.joblib", "as joblib writes its pickles"),
        (torch_saved, "model.pt", "this is a torch.save file"),
    ],
)
def test_pickle_joblib_and_torch_save_files_are_refused_unloaded(
    alice, nothing_unpickles, make, filename, why
):
    content = make()
    response = upload(alice, content, filename)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert why in detail and "upload safetensors + spec or skops" in detail
    assert not ModelVersion.objects.exists() and not ModelAsset.objects.exists()


def test_a_skops_file_with_a_type_off_the_allow_list_fails_its_job_with_the_reason(alice):
    import skops.io
    from sklearn.neighbors import KNeighborsClassifier

    X = np.random.default_rng(0).normal(size=(20, 4))
    content = skops.io.dumps(KNeighborsClassifier(n_neighbors=3).fit(X, (X[:, 0] > 0).astype(int)))
    response = upload(alice, content, "knn.skops")
    assert response.status_code == 201, response.content  # a skops file: the worker reads its types
    job = run(response.json()["job"])
    assert job.status == "failed"
    assert "KNeighborsClassifier" in job.error and "does not load" in job.error
    version = ModelVersion.objects.get(pk=response.json()["version"])
    assert (version.status, version.error) == ("failed", job.error)
    assert not hasattr(version, "token") or version.token is None
    assert not Entry.objects.filter(kind__startswith="models_market.").exists()


def test_weights_whose_inputs_do_not_match_the_schema_fail_their_job_with_the_reason(alice):
    spec = {**SPEC, "input_width": 5}
    response = upload(alice, weights(spec), "net.safetensors")
    assert response.status_code == 201, response.content
    job = run(response.json()["job"])
    assert job.status == "failed"
    assert job.error == "the model takes 5 features but the schema makes 4"
    shown = api_as(alice).get(f"/api/models/versions/{response.json()['version']}/").json()
    assert (shown["status"], shown["error"]) == ("failed", job.error)


def test_a_failed_or_pending_upload_is_seen_by_its_maker_only(alice, mallory):
    response = upload(alice, weights({**SPEC, "input_width": 5}), "net.safetensors")
    version_id = response.json()["version"]
    assert api_as(mallory).get(f"/api/models/versions/{version_id}/").status_code == 404
    run(response.json()["job"])
    assert api_as(mallory).get(f"/api/models/versions/{version_id}/").status_code == 404
    assert api_as(mallory).get("/api/models/").json()["results"] == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"schema": "{not json"}, "JSON"),
        (
            {"schema": json.dumps({**SCHEMA, "target": {"name": "y", "task": "regression"}})},
            "is for regression",
        ),
        ({"spec": json.dumps({**SPEC, "activation": "softmax"})}, "activation must be one of"),
        ({"metrics": json.dumps({"rmse": 1.0})}, "unknown classification metric"),
        ({"royalty_bp": 9000}, "royalty"),
        ({"lineage_bp": 500}, "no lineage to pay"),
    ],
)
def test_what_does_not_check_is_refused_before_the_file_is_kept(alice, fields, message, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    response = upload(alice, weights(), "net.safetensors", **fields)
    assert response.status_code == 400, response.content
    assert message in str(response.json())
    assert not ModelVersion.objects.exists() and not any(p.is_file() for p in tmp_path.rglob("*"))


def test_a_file_over_the_size_limit_is_refused(alice, settings):
    settings.MODELS_UPLOAD_MAX_BYTES = 100
    response = upload(alice, weights(), "net.safetensors")
    assert response.status_code == 400 and "at most 100 are accepted" in response.json()["detail"]


def ready_model(user) -> ModelVersion:
    response = upload(user, weights(), "net.safetensors")
    assert run(response.json()["job"]).status == "succeeded"
    return ModelVersion.objects.get(pk=response.json()["version"])


def test_parents_are_models_the_uploader_owns_or_licenses(alice, bob, mallory):
    base = ready_model(alice)
    parents = json.dumps([{"version": base.pk, "relation": "fine_tuned"}])
    refused = upload(mallory, weights(), "child.safetensors", parents=parents)
    assert (
        refused.status_code == 403
        and "token's owner or a holder of a valid licence" in refused.json()["detail"]
    )

    own = upload(alice, weights(), "child.safetensors", parents=parents)
    assert own.status_code == 201, own.content
    assert own.json()["lineage_bp"] == 1000  # a model with parents: the platform's default share to them
    ModelLicense.objects.create(
        version=base, holder=bob, kind=ModelLicense.Kind.PERPETUAL, price=100, entry_seq=0
    )  # bought through the other services: here only its existence matters
    licensed = upload(bob, weights(), "child.safetensors", parents=parents, lineage_bp=1500)
    assert licensed.status_code == 201, licensed.content
    child = ModelVersion.objects.get(pk=licensed.json()["version"])
    assert list(ModelParent.objects.filter(child=child).values_list("parent_id", "relation")) == [
        (base.pk, "fine_tuned")
    ]
    job = run(licensed.json()["job"])
    assert job.status == "succeeded", job.error
    card = api_as(bob).get(f"/api/models/versions/{child.pk}/").json()
    assert card["parents"] == [
        {"version": base.pk, "name": "Churn net", "number": 1, "relation": "fine_tuned",
         "artifact_sha256": base.artifact_sha256}
    ]  # fmt: skip
    assert card["lineage_bp"] == 1500
    created = Entry.objects.filter(kind="models_market.version.created").order_by("-seq").first()
    assert created.payload["parents"] == [[base.pk, "fine_tuned"]]
    unknown = upload(
        bob, weights(), "x.safetensors", parents=json.dumps([{"version": 99999, "relation": "distilled"}])
    )
    assert unknown.status_code == 404
    call_command("verify_ledger", "--quiet")


def test_the_token_owner_edits_the_card_and_no_one_else(alice, mallory):
    version = ready_model(alice)
    url = f"/api/models/versions/{version.pk}/"
    assert api_as(mallory).patch(url, {"intended_use": "anything"}, format="json").status_code == 403
    edited = api_as(alice).patch(url, {"limitations": "Trained on 2025 data only."}, format="json")
    assert edited.status_code == 200, edited.content
    assert edited.json()["limitations"] == "Trained on 2025 data only."
    assert api_as(alice).patch(url, {"intended_use": "x" * 5001}, format="json").status_code == 400
