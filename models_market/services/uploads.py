"""Uploads: a model file in a safe format, checked by its bytes in the web process and loaded only by a worker.

PyTorch weights come as safetensors with an architecture spec (JSON) that our own code turns into a module;
scikit-learn models as skops, loaded with an allow-list of types. `ml.artifacts.sniff` reads the bytes before
anything is stored: pickles, joblib dumps and `torch.save` files are refused with the reason, never loaded. The
`models_market.validate` job then loads the model, checks that its inputs match the declared feature schema and
runs a smoke prediction; it succeeds by recording the version, its ledger entry and its token together, or fails
with the reason, leaving the version failed.
"""

import json
import math
import secrets
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ledger import services as ledger
from models_market.jobkinds import VALIDATE_KIND
from models_market.models import ModelAsset, ModelLicense, ModelParent, ModelVersion
from models_market.services.minting import royalty_check, token_mint
from models_market.services.training import ARTIFACT_EXTENSIONS, lineage_check
from platform_site.accounts.models import User
from platform_site.errors import DomainError, NotFound, PermissionDenied
from platform_site.jobs.models import Job
from platform_site.jobs.services import job_submit, job_succeed

NAME_MAX, DESCRIPTION_MAX, CARD_TEXT_MAX, PARENTS_MAX = 200, 5_000, 5_000, 10
CARD_FIELDS = ("intended_use", "limitations")
# What an uploaded scikit-learn estimator is called among the platform's algorithms.
ESTIMATOR_ALGORITHMS = {
    "LogisticRegression": "logistic_regression",
    "LinearRegression": "linear_regression",
    "Ridge": "linear_regression",
    "RandomForestClassifier": "random_forest",
    "RandomForestRegressor": "random_forest",
    "HistGradientBoostingClassifier": "hist_gradient_boosting",
    "HistGradientBoostingRegressor": "hist_gradient_boosting",
}


def _read_limited(artifact: Any, limit: int) -> bytes:
    """The file's bytes, refused once past `limit` (before reading it all when its size is known)."""
    if isinstance(artifact, bytes | bytearray | memoryview):
        data = bytes(artifact)
    else:
        size = getattr(artifact, "size", None)
        if isinstance(size, int) and size > limit:
            raise DomainError(f"the model file is {size:,} bytes; at most {limit:,} are accepted")
        parts, total = [], 0
        for chunk in (
            artifact.chunks() if hasattr(artifact, "chunks") else iter(lambda: artifact.read(1 << 20), b"")
        ):
            total += len(chunk)
            if total > limit:
                raise DomainError(f"the model file is larger than the limit of {limit:,} bytes")
            parts.append(chunk)
        data = b"".join(parts)
    if len(data) > limit:
        raise DomainError(f"the model file is {len(data):,} bytes; at most {limit:,} are accepted")
    return data


def _json(value: Any, what: str) -> Any:
    if isinstance(value, str | bytes):
        try:
            return json.loads(value)
        except ValueError:
            raise DomainError(f"the {what} is not valid JSON") from None
    return value


def card_check(card: Any) -> dict[str, str]:
    """The card's text fields (intended use, limitations): text of at most CARD_TEXT_MAX characters each."""
    card = _json(card, "model card") or {}
    if not isinstance(card, dict):
        raise DomainError("the model card is an object of intended_use and limitations")
    unknown = sorted(set(card) - set(CARD_FIELDS))
    if unknown:
        raise DomainError(
            f"unknown model card field(s) {', '.join(unknown)}; the card takes {', '.join(CARD_FIELDS)}"
        )
    out = {}
    for key in CARD_FIELDS:
        value = card.get(key) or ""
        if not isinstance(value, str) or len(value) > CARD_TEXT_MAX:
            raise DomainError(f"{key} is text of at most {CARD_TEXT_MAX:,} characters")
        out[key] = value.strip()
    return out


def _metrics_check(metrics: Any, task: str) -> dict[str, dict[str, Any]]:
    metrics = _json(metrics, "metrics") or {}
    if not isinstance(metrics, dict):
        raise DomainError("self-reported metrics are an object of metric name: number")
    fitting = ("rmse", "mae", "r2") if task == "regression" else ("accuracy", "f1", "f1_macro", "roc_auc",
                                                                   "pr_auc", "log_loss")  # fmt: skip
    out = {}
    for name, value in metrics.items():
        if name not in fitting:
            raise DomainError(f"unknown {task} metric {name!r}; report any of {', '.join(fitting)}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise DomainError(f"the metric {name} must be a finite number")
        out[name] = {"value": float(value), "source": "self_reported"}
    return out


def _license_valid(user: User, version: ModelVersion) -> bool:
    now = timezone.now()
    return (
        ModelLicense.objects.filter(holder=user, version=version)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .exclude(kind=ModelLicense.Kind.QUOTA, calls_left=0)
        .exists()
    )


def _parents_check(user: User, parents: Any) -> list[tuple[ModelVersion, str]]:
    """Each parent a ready, tokenized version whose token the uploader owns or which they hold a valid licence
    for; each once."""
    parents = list(parents or [])
    if len(parents) > PARENTS_MAX:
        raise DomainError(f"at most {PARENTS_MAX} parent models")
    seen, out = set(), []
    for parent, relation in parents:
        if relation not in ModelParent.Relation.values:
            raise DomainError(f"the relation to a parent is one of {', '.join(ModelParent.Relation.values)}")
        token = getattr(parent, "token", None) if parent.status == ModelVersion.Status.READY else None
        if token is None:
            raise NotFound(f"no ready model version {parent.pk} to build on")
        if parent.pk in seen:
            raise DomainError(f"model version {parent.pk} is named twice as a parent")
        if token.owner_id != user.pk and not _license_valid(user, parent):
            raise PermissionDenied(
                f"{parent} can be named as a parent only by its token's owner or a holder of a valid licence for it"
            )
        seen.add(parent.pk)
        out.append((parent, relation))
    return out


def model_upload(
    *,
    user: User,
    name: str,
    description: str = "",
    task: str,
    artifact: Any,
    spec: Any = None,
    schema: Any,
    card: Any = None,
    self_reported_metrics: Any = None,
    parents: Any = (),
    royalty_bp: int = 0,
    lineage_bp: int | None = None,
) -> ModelVersion:
    """A pending model version from an uploaded file (bytes, or an uploaded file), and its validation job.
    Refused at once, before the file is stored or loaded: a file over MODELS_UPLOAD_MAX_BYTES, a pickle,
    joblib or torch.save file (with why), or an unknown format; a schema, spec, card, metrics or parents that
    do not check. `parents` are (ModelVersion, relation) pairs."""
    from ml.architecture import SpecError, validate_spec
    from ml.artifacts import ArtifactError, sha256_hex, sniff
    from ml.features import FeatureError, FeatureSchema

    if task not in ModelAsset.Task.values:
        raise DomainError(f"the task is one of {', '.join(ModelAsset.Task.values)}")
    name = (name or "").strip()
    if not name or len(name) > NAME_MAX:
        raise DomainError(f"give the model a name of at most {NAME_MAX} characters")
    if len(description or "") > DESCRIPTION_MAX:
        raise DomainError(f"the description is at most {DESCRIPTION_MAX:,} characters")
    limit = settings.MODELS_UPLOAD_MAX_BYTES
    data = _read_limited(artifact, limit)
    try:
        kind = sniff(data, max_bytes=limit)  # reads bytes only: nothing is loaded
    except ArtifactError as exc:
        raise DomainError(str(exc)) from None
    spec = _json(spec, "architecture spec")
    if kind == "skops" and spec is not None:
        raise DomainError(
            "an architecture spec goes with safetensors weights; a skops file carries its model"
        )
    if spec is not None:
        try:
            spec = validate_spec(spec)
        except SpecError as exc:
            raise DomainError(f"architecture spec: {exc}") from None
    try:
        feature_schema = FeatureSchema.from_json(_json(schema, "feature schema"))
    except FeatureError as exc:
        raise DomainError(f"feature schema: {exc}") from None
    if feature_schema.task != task:
        raise DomainError(f"the feature schema's target is for {feature_schema.task}, not {task}")
    card = card_check(card)
    metrics = _metrics_check(self_reported_metrics, task)
    parents = _parents_check(user, parents)
    royalty_check(royalty_bp)
    lineage_bp = lineage_check(
        lineage_bp, lineage=bool(parents), others=any(p.token.owner_id != user.pk for p, _ in parents)
    )
    stored = default_storage.save(
        f"models/uploads/{secrets.token_hex(8)}/model{ARTIFACT_EXTENSIONS[kind]}", ContentFile(data)
    )
    try:
        with transaction.atomic(durable=True):  # the asset, its pending version, its lineage and its job
            asset = ModelAsset.objects.create(
                creator=user, name=name, description=description or "", task=task
            )
            version = ModelVersion.objects.create(
                asset=asset, number=1, origin=ModelVersion.Origin.UPLOADED,
                format=ModelVersion.Format.TORCH if kind == "safetensors" else ModelVersion.Format.SKLEARN,
                artifact=stored, artifact_sha256=sha256_hex(data), size=len(data), spec=spec,
                schema=feature_schema.to_json(), metrics=metrics, card=card, lineage_bp=lineage_bp, created_by=user,
            )  # fmt: skip
            ModelParent.objects.bulk_create(
                ModelParent(child=version, parent=parent, relation=relation) for parent, relation in parents
            )
            version.job = job_submit(
                owner=user, kind=VALIDATE_KIND, params={"version": version.pk, "royalty_bp": royalty_bp}
            )
            version.save(update_fields=["job"])
    except BaseException:
        default_storage.delete(stored)
        raise
    return version


def model_upload_failed(*, version_id: int, error: str) -> None:
    """Its validation job ended without success: the version is failed with the reason, never left pending."""
    ModelVersion.objects.filter(pk=version_id, status=ModelVersion.Status.PENDING).update(
        status=ModelVersion.Status.FAILED, error=error[:5_000]
    )


def model_validate_run(*, job: Job, reporter) -> dict[str, Any]:
    """The validation job: load the stored file with the safe loaders, check its input signature against the
    declared schema and run a smoke prediction; then, in one durable transaction, the version turns ready with
    its `models_market.version.created` entry and its token, minted to the uploader, and the job succeeds."""
    from ml.architecture import SpecError
    from ml.artifacts import ArtifactError, sha256_hex
    from ml.features import FeatureError, FeatureSchema
    from ml.supervised import TorchModel, check_signature, model_from_bytes

    version = ModelVersion.objects.select_related("asset").filter(pk=job.params["version"]).first()
    if version is None:
        raise DomainError("the uploaded version is gone")
    if version.status != ModelVersion.Status.PENDING:
        raise DomainError(f"the version is {version.status}, not waiting for validation")
    reporter(0.05, message="reading the model file")
    with default_storage.open(version.artifact.name, "rb") as fh:
        data = fh.read()
    if sha256_hex(data) != version.artifact_sha256:
        raise DomainError("the stored model file is not the one uploaded (its SHA-256 differs)")
    try:
        reporter(0.2, message="loading the model with the safe loaders")
        model = model_from_bytes(
            data, spec=version.spec, max_bytes=settings.MODELS_UPLOAD_MAX_BYTES, device=settings.ML_DEVICE
        )
        reporter(0.6, message="checking its inputs against the feature schema, then a smoke prediction")
        check_signature(model, FeatureSchema.from_json(version.schema))
    except (ArtifactError, FeatureError, SpecError) as exc:
        raise DomainError(str(exc)) from None
    if isinstance(model, TorchModel):
        spec, algorithm = model.spec, "mlp"
    else:
        spec, algorithm = None, ESTIMATOR_ALGORITHMS.get(type(model).__name__, type(model).__name__)
    # One transaction: the version is ready only with its ledger entry, its token and the job's result.
    with transaction.atomic(durable=True):
        # Locked: a cancellation (whose on_failure marks it failed) and this success cannot both land.
        version = ModelVersion.objects.select_for_update().select_related("asset").get(pk=version.pk)
        if version.status != ModelVersion.Status.PENDING:
            raise DomainError(f"the version is {version.status}, not waiting for validation")
        parents = list(version.parent_links.order_by("parent_id").values_list("parent_id", "relation"))
        owner = version.created_by
        entry = ledger.entry_append(
            kind="models_market.version.created",
            actor=ledger.account_name(user=owner),
            payload={
                "version": version.pk, "asset": version.asset_id, "origin": "uploaded",
                "artifact_sha256": version.artifact_sha256, "algorithm": algorithm, "format": version.format,
                "parents": [[parent, relation] for parent, relation in parents], "trained_on_sha256": None,
                "private": False, "epsilon": None, "lineage_bp": version.lineage_bp, "job": job.pk,
            },
            idempotency_key=f"models_market.version.created:job:{job.pk}",
        )  # fmt: skip
        version.status, version.entry_seq = ModelVersion.Status.READY, entry.seq
        version.spec, version.algorithm = spec, algorithm
        version.save(update_fields=["status", "entry_seq", "spec", "algorithm"])
        token = token_mint(
            version=version, owner=owner, royalty_bp=job.params["royalty_bp"],
            metadata={"name": version.asset.name, "task": version.asset.task, "algorithm": algorithm,
                      "origin": "uploaded", "private": False},
        )  # fmt: skip
        outcome = {
            "version": version.pk, "asset": version.asset_id, "token": token.pk,
            "artifact_sha256": version.artifact_sha256, "entry_seq": entry.seq, "minted_seq": token.minted_seq,
            "algorithm": algorithm,
        }  # fmt: skip
        job_succeed(job=job, result=outcome)
    return outcome
