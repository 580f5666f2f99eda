"""A model trained together by a federation's parties, published as a model version with its token: the parties
become its lineage by contribution, so each keeps earning its share of every paid call."""

from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from ledger import services as ledger
from models_market.models import ModelAsset, ModelContributor, ModelVersion
from models_market.services.minting import royalty_check, token_mint
from models_market.services.training import lineage_check
from platform_site.accounts.models import User
from platform_site.errors import DomainError

MAX_CONTRIBUTORS = 1_000


def _contributors(contributors: Any) -> list[tuple[str, int, float | None]]:
    """(account, weight, score) per party: distinct user/org accounts, whole positive weights."""
    if not isinstance(contributors, list) or not 0 < len(contributors) <= MAX_CONTRIBUTORS:
        raise DomainError(f"a federated model has 1 to {MAX_CONTRIBUTORS} contributors")
    out, seen = [], set()
    for item in contributors:
        account, weight, score = (*item, None) if len(item) == 2 else item
        kind, _ = ledger.account_parse(account)
        if kind not in ("user", "org") or account in seen:
            raise DomainError(f"contributor {account!r} must be a distinct user or organization account")
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 < weight <= 10**9:
            raise DomainError(f"contributor {account}'s weight must be a whole number from 1 to 10^9")
        seen.add(account)
        out.append((account, weight, None if score is None else float(score)))
    return out


def federated_model_publish(
    *, owner: User, name: str, description: str, spec: dict, weights: bytes, schema: dict,
    metrics: dict[str, float], curve: list[dict], contributors: list[tuple], source: dict[str, Any],
    lineage_bp: int | None = None, royalty_bp: int = 0,
) -> ModelVersion:  # fmt: skip
    """Inside the caller's durable transaction: the asset, its version (origin federated; metrics measured by
    the platform on the coordinator's validation data), a `models_market.version.created` entry naming the
    contributors, and the token minted to `owner`. `contributors` are (account, weight[, score]); the version's
    lineage share of every payment (MODELS_LINEAGE_BP unless given) is split among them by weight."""
    from ml.artifacts import ArtifactError, load_torch, sha256_hex
    from ml.features import FeatureError, FeatureSchema

    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("a federated model is published inside the caller's transaction.atomic()")
    parties = _contributors(contributors)
    lineage_bp = lineage_check(lineage_bp, lineage=True, others=True)
    royalty_bp = royalty_check(royalty_bp)
    try:
        feature_schema = FeatureSchema.from_json(schema)
        _, spec = load_torch(weights, spec)
    except (FeatureError, ArtifactError) as exc:
        raise DomainError(f"the federated model cannot be published: {exc}") from exc
    if spec["input_width"] != feature_schema.n_features:
        raise DomainError("the model's input width does not match its feature schema")
    sha256 = sha256_hex(weights)
    # Content-addressed: a retried publish rewrites the same file rather than leaving a second one.
    stored = f"models/federated/{sha256}.safetensors"
    default_storage.delete(stored)
    stored = default_storage.save(stored, ContentFile(weights))
    asset = ModelAsset.objects.create(
        creator=owner, name=name, description=description, task=feature_schema.task, tags=["federated"]
    )
    version = ModelVersion.objects.create(
        asset=asset, number=1, status=ModelVersion.Status.READY, origin=ModelVersion.Origin.FEDERATED,
        format=ModelVersion.Format.TORCH, algorithm="mlp", artifact=stored, artifact_sha256=sha256,
        size=len(weights), spec=spec, schema=feature_schema.to_json(),
        metrics={k: {"value": v, "source": "measured"} for k, v in metrics.items() if v is not None},
        curve=curve, card={"intended_use": description, "limitations": "", "federation": source},
        lineage_bp=lineage_bp, created_by=owner,
    )  # fmt: skip
    ModelContributor.objects.bulk_create(
        ModelContributor(version=version, account=a, weight=w, score=s) for a, w, s in parties
    )
    entry = ledger.entry_append(
        kind="models_market.version.created",
        actor=ledger.account_name(user=owner),
        payload={
            "version": version.pk, "asset": asset.pk, "origin": "federated", "artifact_sha256": sha256,
            "algorithm": "mlp", "lineage_bp": lineage_bp, "source": source,
            "contributors": [{"account": a, "weight": w} for a, w, _ in parties],
        },
        idempotency_key=f"models_market.version.created:federated:{ledger.content_hash(source)[:40]}",
    )  # fmt: skip
    version.entry_seq = entry.seq
    version.save(update_fields=["entry_seq"])
    token_mint(
        version=version, owner=owner, royalty_bp=royalty_bp,
        metadata={"name": asset.name, "task": asset.task, "algorithm": "mlp", "origin": "federated"},
    )  # fmt: skip
    return version
