"""An outside audit of the models market's jobs: non-finite numbers in training, uploads, predictions and
holdouts; huge integers in parameters; holdouts shaped to exhaust the web process; holdouts that single out a
row; and the per-user cap on queued jobs where money is held."""

import hashlib
import json

import numpy as np
import pytest
import torch
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from ledger.models import Entry
from marketplace import services as data
from ml.architecture import build
from ml.artifacts import save_sklearn, save_torch
from models_market import services
from models_market.models import (
    Evaluation,
    EvaluationScore,
    GuaranteedPurchase,
    ModelAsset,
    ModelToken,
    ModelVersion,
)
from platform_site.errors import DomainError
from platform_site.jobs.models import Job
from platform_site.jobs.services import job_execute
from tests.conftest import api_as
from tests.ledger.helpers import fund
from tests.models_market.helpers import balance, listed, mint
from tests.models_market.helpers import schema as helpers_schema
from tests.models_market.models_in import run, train_body
from tests.models_market.test_guarantees import holdout_csv
from tests.models_market.test_guarantees import upload as holdout_upload
from tests.models_market.test_uploads import SCHEMA, SPEC, upload, weights

pytestmark = pytest.mark.django_db


def publish(owner, csv: bytes):
    """A published dataset of `csv`, its statistics job run here."""
    dataset = data.dataset_create(owner=owner, title="Far out", terms_preset="commercial", price_download=2_000,
                                  price_compute=1_000, privacy_budget=None, terms_overrides={})  # fmt: skip
    version = data.dataset_version_upload(
        dataset=dataset, actor=owner, upload=SimpleUploadedFile("d.csv", csv)
    )
    job_execute(job_id=version.stats_job_id, worker="test")
    data.dataset_publish(dataset=dataset, actor=owner)
    version.refresh_from_db()
    assert version.status == "ready", version.error
    return version


def far_out_csv(rows: int = 120) -> bytes:
    """x1, x2 and a target `amount` in the 1e200s: finite, but past what float32 weights can hold."""
    rng = np.random.default_rng(0)
    lines = ["x1,x2,amount"]
    for x1, x2 in rng.normal(size=(rows, 2)).tolist():
        lines.append(f"{x1},{x2},{(3 * x1 - x2) * 1e200}")
    return ("\n".join(lines) + "\n").encode()


# ---- non-finite numbers


def test_a_training_whose_weights_diverge_to_infinity_fails_with_the_reason_and_records_nothing(alice):
    version = publish(alice, far_out_csv())
    body = train_body(version, algorithm="mlp", task="regression", target="amount", hidden=[8], epochs=3)
    submitted = api_as(alice).post("/api/models/train/", body, format="json")
    assert submitted.status_code == 201, submitted.content
    job = run(submitted.json()["id"])
    assert job.status == "failed", "a model no call could load must never be recorded as ready"
    assert "diverged" in job.error and "NaN or infinite" in job.error
    assert not ModelVersion.objects.exists() and not ModelToken.objects.exists()
    assert not Entry.objects.filter(kind__startswith="models_market.").exists()
    assert not default_storage.exists(f"models/trained/job-{job.pk}.safetensors")


def test_huge_integers_in_training_options_are_a_400_naming_the_limit(alice):
    version = published = publish(alice, far_out_csv(40))
    body = train_body(published, task="regression", target="amount", algorithm="linear_regression",
                      options={"alpha": 10**400})  # fmt: skip
    response = api_as(alice).post("/api/models/train/", body, format="json")
    assert response.status_code == 400, response.content
    assert "alpha must be between 0 and 1e+06" in response.json()["detail"]
    assert not Job.objects.filter(kind="models_market.train").exists() and version


def test_a_huge_integer_in_an_uploaded_feature_schema_is_a_400(alice):
    schema = json.loads(json.dumps(SCHEMA))
    schema["columns"][0]["impute"] = 10**400
    response = upload(alice, weights(), "net.safetensors", schema=json.dumps(schema))
    assert response.status_code == 400, response.content
    assert "impute must be a finite number" in response.json()["detail"]
    assert not ModelVersion.objects.exists()


def test_float64_weights_beyond_float32_fail_validation_and_the_model_is_never_served(alice):
    torch.manual_seed(0)
    tensors = {n: t.detach().double().contiguous() for n, t in build(SPEC).state_dict().items()}
    tensors["hidden.0.weight"][0, 0] = 1e300  # finite as float64, infinite as the module's float32
    from safetensors.torch import save

    response = upload(alice, save(tensors), "net.safetensors", spec=json.dumps(SPEC))
    assert response.status_code == 201, response.content
    job = run(response.json()["job"])
    assert job.status == "failed" and "hidden.0.weight holds NaN or infinite values" in job.error
    version = ModelVersion.objects.get(pk=response.json()["version"])
    assert version.status == "failed" and not ModelToken.objects.exists()


def test_a_skops_forest_with_nan_leaves_fails_validation(alice):
    from sklearn.ensemble import RandomForestClassifier

    X = np.random.default_rng(0).normal(size=(40, 4))
    forest = RandomForestClassifier(n_estimators=2, random_state=0).fit(X, (X[:, 0] > 0).astype(int))
    forest.estimators_[1].tree_.value[:] = np.nan
    response = upload(alice, save_sklearn(forest), "forest.skops")
    assert response.status_code == 201, response.content
    job = run(response.json()["job"])
    assert job.status == "failed" and "leaf values holds NaN or infinite values" in job.error
    assert ModelVersion.objects.get(pk=response.json()["version"]).status == "failed"


def overflowing_weights() -> bytes:
    """Finite float32 weights whose outputs are NaN once the first input is far above its center (the example
    row, at the centers, comes out finite, so the upload validates)."""
    torch.manual_seed(0)
    module = build(SPEC)
    with torch.no_grad():
        module.hidden[0].weight[:, 0] = 1e38
        module.output.weight.copy_(torch.tensor([[1.0] * 8, [-1.0] * 8]))
        module.output.weight[:, 4:] *= -1
    return save_torch(module, SPEC)


def test_a_model_whose_outputs_overflow_answers_400_not_500(alice):
    response = upload(alice, overflowing_weights(), "net.safetensors")
    assert run(response.json()["job"]).status == "succeeded"
    url = f"/api/models/versions/{response.json()['version']}/predict/"
    ok = api_as(alice).post(url, {"rows": [{"age": 40, "income": 3e4, "city": "Oslo"}]}, format="json")
    assert ok.status_code == 200, ok.content
    far = api_as(alice).post(url, {"rows": [{"age": 1e6, "income": 3e4, "city": "Oslo"}]}, format="json")
    assert far.status_code == 400, far.content
    assert "NaN or infinite" in far.json()["detail"]


def nan_model_token(owner, *, price_evaluation: int = 0, **offers) -> ModelToken:
    """A listed torch model of the helpers' schema (age, income, visits -> churned 0/1) that answers NaN
    probabilities for every row with age > 1.2 (its hidden units overflow to infinity, then cancel)."""
    spec = {"input_width": 3, "hidden": [8], "task": "classification", "output_width": 2}
    torch.manual_seed(0)
    module = build(spec)
    with torch.no_grad():
        module.hidden[0].weight[:, 0] = 3e38
        module.hidden[0].bias.zero_()
        module.output.weight.copy_(torch.tensor([[1.0] * 4 + [-1.0] * 4, [-1.0] * 4 + [1.0] * 4]))
    content = save_torch(module, spec)
    asset = ModelAsset.objects.create(creator=owner, name="NaN net", task=ModelAsset.Task.CLASSIFICATION)
    version = ModelVersion(
        asset=asset, number=1, status=ModelVersion.Status.READY, origin=ModelVersion.Origin.UPLOADED,
        format=ModelVersion.Format.TORCH, algorithm="mlp", artifact_sha256=hashlib.sha256(content).hexdigest(),
        size=len(content), schema=helpers_schema().to_json(), spec=spec, created_by=owner,
    )  # fmt: skip
    version.artifact.save(f"{asset.pk}.safetensors", ContentFile(content), save=False)
    version.save()
    token = services.token_offer_set(token=mint(version), actor=owner, listed=True, **offers)
    if price_evaluation:
        token = services.guarantee_set(token=token, actor=owner, metric="", price_evaluation=price_evaluation)
    return token


def positive_ages_all_class_0(n: int = 40) -> bytes:
    rng = np.random.default_rng(2)
    rows = [f"{abs(a) + 2:.4f},{b:.4f},{c:.4f},0" for a, b, c in rng.normal(size=(n, 3)).tolist()]
    return ("age,income,visits,churned\n" + "\n".join(rows) + "\n").encode()


def test_nan_outputs_on_the_holdout_never_meet_a_guarantee_and_the_buyer_is_refunded(
    alice, bob, settings, django_capture_on_commit_callbacks
):
    settings.MODELS_EVALUATION_RESAMPLES = 20
    token = nan_model_token(alice, price_perpetual=1_000)
    token = services.guarantee_set(token=token, actor=alice, metric="accuracy", threshold=0.8)
    fund(f"user:{bob.pk}", 1_000)
    purchase = services.license_purchase_guaranteed(
        buyer=bob, token=token, kind="perpetual", holdout_file=holdout_upload(positive_ages_all_class_0())
    )
    with django_capture_on_commit_callbacks(execute=True):
        job_execute(job_id=purchase.job_id, worker="test")
    purchase.refresh_from_db()
    job = Job.objects.get(pk=purchase.job_id)
    # NaN probabilities read as the first class (argmax): scored so, this model "met" 100% accuracy.
    assert purchase.outcome != "met" and purchase.license_id is None
    assert (job.status, purchase.status) == ("failed", "failed")
    assert "NaN or infinite outputs" in job.error
    assert (balance(bob), balance(alice)) == (1_000, 0)


def test_a_model_with_nan_outputs_is_left_unscored_and_its_price_refunded_while_the_others_are_ranked(
    alice, bob, carol, settings, django_capture_on_commit_callbacks
):
    settings.MODELS_EVALUATION_RESAMPLES, settings.MODELS_EVALUATION_FEE = 20, 100
    nan = nan_model_token(alice, price_perpetual=1_000, price_evaluation=200)
    good = services.guarantee_set(token=listed(carol), actor=carol, metric="", price_evaluation=300)
    fund(f"user:{bob.pk}", 1_000)
    ev = services.evaluation_submit(user=bob, versions=[nan.version, good.version], metric="accuracy",
                                    holdout_file=holdout_upload(holdout_csv(80)))  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        job_execute(job_id=ev.job_id, worker="test")
    ev.refresh_from_db()
    assert ev.status == "done"
    scores = {s.version_id: s for s in EvaluationScore.objects.filter(evaluation=ev)}
    assert scores[good.version_id].rank == 1
    assert scores[nan.version_id].rank is None and "NaN or infinite outputs" in scores[nan.version_id].error
    assert (balance(bob), balance(alice), balance(carol)) == (1_000 - 100 - 300, 0, 300)


# ---- holdouts shaped to exhaust the web process, or to single out a row


@pytest.fixture
def guaranteed(alice, settings):
    settings.MODELS_EVALUATION_RESAMPLES = 20
    return services.guarantee_set(token=listed(alice), actor=alice, metric="accuracy", threshold=0.5)


def test_a_holdout_with_more_columns_than_any_model_takes_is_refused_naming_the_limit(guaranteed, bob):
    fund(f"user:{bob.pk}", 10_000)
    junk = [f"c{i}" for i in range(10_000)]
    content = (",".join(["age", "income", "visits", "churned", *junk]) + "\n"
               + ",".join(["1", "2", "3", "1"] + ["0"] * len(junk)) + "\n").encode()  # fmt: skip
    with pytest.raises(DomainError, match="more than 10,001 columns"):
        services.license_purchase_guaranteed(buyer=bob, token=guaranteed, kind="perpetual",
                                             holdout_file=holdout_upload(content))  # fmt: skip
    assert balance(bob) == 10_000 and not GuaranteedPurchase.objects.exists()


def test_a_json_lines_holdout_whose_missing_keys_multiply_into_too_many_values_is_refused(
    guaranteed, bob, settings
):
    settings.MODELS_HOLDOUT_MAX_BYTES = 50_000
    fund(f"user:{bob.pk}", 10_000)
    first = {"age": 1, "income": 1, "visits": 1, "churned": 1, **{f"k{i}": 1 for i in range(300)}}
    lines = [json.dumps(first)] + [json.dumps({"age": 1, "income": 2, "visits": 3, "churned": 0})] * 200
    content = ("\n".join(lines) + "\n").encode()
    assert len(content) < 50_000  # 14 kB: but 201 rows times 304 columns = 61,104 values
    with pytest.raises(DomainError, match="more than 50,000 values"):
        services.license_purchase_guaranteed(buyer=bob, token=guaranteed, kind="perpetual",
                                             holdout_file=holdout_upload(content, "rows.jsonl"))  # fmt: skip
    assert balance(bob) == 10_000 and not GuaranteedPurchase.objects.exists()


def test_a_holdout_of_a_single_row_is_refused_before_its_hash_reaches_the_seller(guaranteed, bob):
    fund(f"user:{bob.pk}", 10_000)
    with pytest.raises(DomainError, match="at least 5 are needed"):
        services.license_purchase_guaranteed(buyer=bob, token=guaranteed, kind="perpetual",
                                             holdout_file=holdout_upload(holdout_csv(1)))  # fmt: skip
    assert balance(bob) == 10_000 and not GuaranteedPurchase.objects.exists()
    assert not Entry.objects.filter(kind="ledger.escrow.opened").exists()


# ---- one user flooding the queue


def test_guaranteed_purchases_past_the_per_user_job_cap_are_a_429_and_hold_no_money(
    guaranteed, bob, settings
):
    settings.JOB_MAX_ACTIVE_PER_USER = 1
    services.token_offer_set(token=guaranteed, actor=guaranteed.owner, price_perpetual=1_000, listed=True)
    fund(f"user:{bob.pk}", 10_000)
    url = f"/api/models/tokens/{guaranteed.pk}/licenses/guaranteed/"
    first = api_as(bob).post(
        url, {"kind": "perpetual", "holdout": holdout_upload(holdout_csv())}, format="multipart"
    )
    assert first.status_code == 202, first.content
    second = api_as(bob).post(
        url, {"kind": "perpetual", "holdout": holdout_upload(holdout_csv())}, format="multipart"
    )
    assert second.status_code == 429, second.content
    assert "jobs queued or running" in second.json()["detail"]
    assert balance(bob) == 9_000 and GuaranteedPurchase.objects.count() == 1
    assert Evaluation.objects.count() == 0 and len(default_storage.listdir("holdouts")[1]) == 1
