"""Training on the platform: a model from a dataset version the trainer may use, by a job on the `ml` queue.

Rights come from `marketplace.selectors.train_rights`: the owner and download licensees train exactly; a
compute-only licensee trains with differential privacy, the ε charged to the licence's budget when the job is
queued (as analyses are). The job reads the version's saved parsed columns (never the upload), builds features,
trains with a live learning curve, measures the model on the held-out rows, and records the version, its ledger
entry and its token in one transaction.

Under a compute-only licence the held-out rows are rows the trainer has no right to see, and metrics measured
on them are releases too: they are kept for the data's owner only (who holds the rows) and withheld from
everyone else; the card says so. Buyers measure such a model on their own sealed holdout instead.
"""

import logging
from decimal import Decimal
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from ledger import services as ledger
from marketplace import selectors as data_selectors
from marketplace import services as data_services
from models_market.jobkinds import TRAIN_KIND, TrainOptions
from models_market.models import ModelAsset, ModelVersion
from models_market.services.minting import royalty_check, token_mint
from platform_site.accounts.models import User
from platform_site.errors import Conflict, DomainError, NotFound, PermissionDenied
from platform_site.jobs.models import Job
from platform_site.jobs.services import JobCancelled, job_submit, job_succeed

logger = logging.getLogger(__name__)

LINEAGE_MAX_BP = 5_000
# The figures kept as the version's metrics (each marked measured); the rest of an evaluation (confusion
# matrix, calibration bins) goes to `ModelVersion.evaluation`.
SCALAR_METRICS = ("accuracy", "f1", "f1_macro", "roc_auc", "pr_auc", "log_loss", "rmse", "mae", "r2")
ARTIFACT_EXTENSIONS = {"safetensors": ".safetensors", "skops": ".skops"}


def serializer_errors(errors: dict) -> str:
    return "; ".join(f"{field}: {' '.join(map(str, errs))}" for field, errs in errors.items())


def lineage_check(lineage_bp: Any, *, lineage: bool, others: bool) -> int:
    """The share of every per-call payment that flows up a model's lineage (its training data, its parents), in
    basis points: MODELS_LINEAGE_BP unless set, and 0 for a model without lineage; at least MODELS_LINEAGE_BP
    when the lineage holds what others own, whose share is not the maker's to waive."""
    default = settings.MODELS_LINEAGE_BP
    if lineage_bp is None:
        return default if lineage else 0
    if (
        isinstance(lineage_bp, bool)
        or not isinstance(lineage_bp, int)
        or not 0 <= lineage_bp <= LINEAGE_MAX_BP
    ):
        raise DomainError(f"the lineage share is a whole number of basis points from 0 to {LINEAGE_MAX_BP}")
    if not lineage and lineage_bp:
        raise DomainError("a model with no training data and no parents has no lineage to pay")
    if others and lineage_bp < default:
        raise DomainError(
            f"a model built on what others own gives at least {default} basis points of every call to its "
            "lineage; that share is not the maker's to waive"
        )
    return lineage_bp


def ml_options(params: dict[str, Any]) -> dict[str, Any]:
    """The options of `ml.supervised.train` from a training's parameters."""
    options = dict(params.get("options") or {})
    for key in ("hidden", "activation", "dropout", "epochs", "lr", "batch_size"):
        if params.get(key) is not None:
            options[key] = params[key]
    options["seed"] = params["seed"]
    return options


def _check_target(version, target: str, task: str) -> None:
    columns = {c["name"]: c["type"] for c in (version.stats or {}).get("columns", [])}
    if target not in columns:
        shown = ", ".join(list(columns)[:20])
        raise DomainError(f'there is no column "{target}" to predict; the columns are {shown}')
    if task == "regression" and columns[target] != "numeric":
        raise DomainError(f'the target "{target}" holds text; regression needs a numeric column')


def model_train_submit(*, user: User, dataset_version, params: dict[str, Any]) -> Job:
    """Queue the training of a model on `dataset_version` (a marketplace DatasetVersion). Refused, before
    anything is queued, without the right to train from it (its terms must allow derived models), with options
    that would not train, or with a tree under a compute-only licence; a compute-only licensee's training is
    differentially private and its ε is charged to the licence, with a ledger entry, in the transaction that
    queues the job."""
    from ml.privacy import PrivacyError
    from ml.supervised import options_check

    options = TrainOptions(data=params)
    if not options.is_valid():
        raise DomainError(serializer_errors(options.errors))
    data = dict(options.validated_data)
    rights = data_selectors.train_rights(user=user, version=dataset_version)
    if not rights.allowed:
        raise (NotFound if rights.reason == "no such dataset" else PermissionDenied)(rights.reason)
    if dataset_version.status != "ready" or not dataset_version.columns_file:
        raise Conflict("this dataset version has no parsed columns yet: wait for its statistics job")
    _check_target(dataset_version, data["target"], data["task"])
    royalty_check(data["royalty_bp"])
    is_owner = dataset_version.dataset.owner_id == user.pk
    lineage_bp = lineage_check(data["lineage_bp"], lineage=True, others=not is_owner)
    try:
        options_check(data["algorithm"], data["task"], ml_options(data), private=rights.private)
    except PrivacyError as exc:
        raise PermissionDenied(str(exc)) from None
    except ValueError as exc:
        raise DomainError(str(exc)) from None
    epsilon: Decimal = data.pop("epsilon")
    job_params = {
        **data, "dataset_version": dataset_version.pk, "lineage_bp": lineage_bp, "private": rights.private,
        "epsilon": str(epsilon) if rights.private else None,
        "license": rights.license.pk if rights.private else None,
    }  # fmt: skip
    if not rights.private:
        with transaction.atomic(durable=True):  # the job is queued once this commits
            return job_submit(owner=user, kind=TRAIN_KIND, params=job_params)
    with transaction.atomic(durable=True):  # the ε spent, its ledger entry and the job that spends it
        data_services.license_privacy_check(license=rights.license, epsilon=epsilon, what="training")
        job = job_submit(owner=user, kind=TRAIN_KIND, params=job_params)
        data_services.license_privacy_charge(
            user=user, license=rights.license, epsilon=epsilon, job=job, about={"training": data["algorithm"]}
        )
    return job


def _split_metrics(measured: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(scalar metrics marked measured, the rest of the evaluation)."""
    metrics = {
        name: {"value": measured[name], "source": "measured"}
        for name in SCALAR_METRICS
        if name in measured and measured[name] is not None
    }
    rest = {k: v for k, v in measured.items() if k not in SCALAR_METRICS}
    return metrics, rest


def _save_artifact(job: Job, kind: str, data: bytes) -> str:
    """The artifact in storage under the job's own name (a file left by an earlier run of it is replaced)."""
    name = f"models/trained/job-{job.pk}{ARTIFACT_EXTENSIONS[kind]}"
    default_storage.delete(name)
    return default_storage.save(name, ContentFile(data))


def model_train_run(*, job: Job, reporter) -> dict[str, Any]:
    """The training job (see the module's docstring): one durable transaction records the model version, its
    `models_market.version.created` entry, its token (minted to the trainer) and the job's result."""
    from ml.artifacts import ArtifactError, sha256_hex
    from ml.dp import PrivacyBudget
    from ml.features import FeatureError, features
    from ml.privacy import PrivacyError
    from ml.supervised import TorchModel, evaluate, model_from_bytes, model_to_bytes, train

    p = job.params
    private = bool(p["private"])
    version = data_selectors.dataset_version_get(version_id=p["dataset_version"])
    reporter(0.02, message="reading the parsed columns")
    table = data_selectors.version_columns(version=version)

    def progress(fraction: float, *, message: str = "", metrics: dict | None = None) -> None:
        reporter(0.1 + 0.75 * fraction, message=message, metrics=metrics)

    try:
        budget = PrivacyBudget(float(Decimal(p["epsilon"]))) if private else None
        reporter(0.05, message="building the features" + (" with differential privacy" if private else ""))
        feats = features(
            table, p["target"], p["task"], test_size=p["test_size"], seed=p["seed"], max_levels=p["max_levels"],
            budget=budget,
        )  # fmt: skip
        trained = train(
            feats.X_train, feats.y_train, p["task"], p["algorithm"], ml_options(p), progress,
            schema=feats.schema, budget=budget, device=settings.ML_DEVICE,
        )  # fmt: skip
        kind, artifact = model_to_bytes(trained)
        try:
            # Loaded back as every call will load it: weights that diverged to NaN or infinity fail here, not
            # in a ready version that no call or evaluation could load.
            model_from_bytes(artifact, device="cpu")
        except ArtifactError as exc:
            raise ArtifactError(
                f"the training diverged: {exc}; try a smaller learning rate, fewer epochs or scaled columns"
            ) from None
        reporter(0.87, message=f"measuring the model on {feats.split['test_rows']:,} held-out rows")
        measured = evaluate(trained, feats.X_test, feats.y_test, feats.schema)
    except (DomainError, JobCancelled, SoftTimeLimitExceeded):
        raise
    except (FeatureError, PrivacyError, ArtifactError) as exc:  # meant for the user; they name no row
        raise DomainError(str(exc)) from exc
    except Exception as exc:
        if private:
            # An error's text may quote a value of the data, which a compute-only licensee must never read.
            logger.exception("private training job %s failed", job.pk)
            raise DomainError(
                "the training failed on the data; compute-only results never quote the data, so the details "
                f"are in the platform's log under job {job.pk}"
            ) from exc
        if isinstance(exc, ValueError):
            raise DomainError(str(exc)) from exc
        raise
    metrics, rest = _split_metrics(measured)
    evaluation: dict[str, Any] = {"split": feats.split, "classes": feats.schema.classes, **rest}
    if private:
        # Measured on rows the trainer may not see: kept for the data's owner, withheld from everyone else.
        evaluation = {"split": feats.split, "withheld": {"metrics": metrics, **rest}}
        metrics = {}
    reporter(0.92, message="saving the model")
    sha256 = sha256_hex(artifact)
    stored = _save_artifact(job, kind, artifact)
    privacy = None
    if private:
        privacy = {**trained.privacy, "epsilon_charged": p["epsilon"], "license": p["license"]}
    try:
        with transaction.atomic(durable=True):
            outcome = _record_trained(
                job, version, p, kind=kind, stored=stored, sha256=sha256, size=len(artifact), metrics=metrics,
                evaluation=evaluation, curve=trained.curve, schema=feats.schema.to_json(), privacy=privacy,
                spec=trained.model.spec if isinstance(trained.model, TorchModel) else None,
            )  # fmt: skip
    except BaseException:
        default_storage.delete(stored)  # no version keeps it
        raise
    return outcome


def _record_trained(job: Job, data_version, p: dict, **made: Any) -> dict[str, Any]:
    """Inside the runner's durable transaction: the asset, its version, the ledger entry, the token, the job."""
    owner = job.owner
    asset = ModelAsset.objects.create(
        creator=owner, name=p["name"], description=p["description"], task=p["task"]
    )
    version = ModelVersion.objects.create(
        asset=asset, number=1, status=ModelVersion.Status.READY, origin=ModelVersion.Origin.TRAINED,
        format=ModelVersion.Format.TORCH if made["kind"] == "safetensors" else ModelVersion.Format.SKLEARN,
        algorithm=p["algorithm"], artifact=made["stored"], artifact_sha256=made["sha256"], size=made["size"],
        spec=made["spec"], schema=made["schema"], metrics=made["metrics"], curve=made["curve"],
        evaluation=made["evaluation"], card={"intended_use": "", "limitations": ""}, trained_on=data_version,
        trained_on_sha256=data_version.sha256, private=p["private"], privacy=made["privacy"], job=job,
        lineage_bp=p["lineage_bp"], created_by=owner,
    )  # fmt: skip
    entry = ledger.entry_append(
        kind="models_market.version.created",
        actor=ledger.account_name(user=owner),
        payload={
            "version": version.pk, "asset": asset.pk, "origin": "trained", "artifact_sha256": made["sha256"],
            "algorithm": p["algorithm"], "dataset": data_version.dataset_id,
            "dataset_version": data_version.number, "trained_on_sha256": data_version.sha256,
            "dataset_published_seq": data_version.published_seq, "private": p["private"],
            "epsilon": p["epsilon"], "lineage_bp": p["lineage_bp"], "job": job.pk,
        },
        idempotency_key=f"models_market.version.created:job:{job.pk}",
    )  # fmt: skip
    version.entry_seq = entry.seq
    version.save(update_fields=["entry_seq"])
    token = token_mint(
        version=version, owner=owner, royalty_bp=p["royalty_bp"],
        metadata={"name": asset.name, "task": asset.task, "algorithm": p["algorithm"], "origin": "trained",
                  "private": p["private"]},
    )  # fmt: skip
    outcome = {
        "version": version.pk, "asset": asset.pk, "token": token.pk, "artifact_sha256": made["sha256"],
        "entry_seq": entry.seq, "minted_seq": token.minted_seq, "private": p["private"],
        "metrics": {name: m["value"] for name, m in made["metrics"].items()},
        "split": made["evaluation"]["split"],
    }  # fmt: skip
    job_succeed(job=job, result=outcome)
    return outcome
