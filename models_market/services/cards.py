"""Model cards, and what people may see and take of a model version: the pages and the API read them here.

A card says what a model is for and not for, what goes in and comes out (from its feature schema), its metrics
each marked as measured by the platform or self-reported by its maker, where its training data came from (the
dataset version, its SHA-256 and the ledger entry that published it), its parents, and what its licence and
privacy allow.
"""

from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.urls import reverse

from ledger import services as ledger
from models_market.models import ModelVersion
from models_market.services.uploads import CARD_TEXT_MAX
from platform_site.accounts.models import Organization, User
from platform_site.errors import Conflict, DomainError, NotFound, PermissionDenied

METRIC_LABELS = {
    "accuracy": "Accuracy",
    "f1": "F1",
    "f1_macro": "F1 (macro)",
    "roc_auc": "ROC-AUC",
    "pr_auc": "PR-AUC",
    "log_loss": "Log loss",
    "rmse": "RMSE",
    "mae": "MAE",
    "r2": "R²",
}
SOURCES = {"measured": "measured by the platform", "self_reported": "self-reported by its maker"}
WITHHELD = (
    "Measured by the platform on held-out rows of data that the trainer licensed for compute only: those "
    "figures are releases about rows nobody else may see, so they are shown to the data's owner only. Measure "
    "the model on your own sealed holdout with the evaluation service."
)


def _base() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.select_related(
        "asset", "created_by", "token", "token__owner", "token__creator", "trained_on__dataset"
    )


def version_list_ready(*, task: str = "", q: str = "") -> QuerySet[ModelVersion]:
    """Ready model versions, newest first, by task and words of their name or description (all required)."""
    versions = _base().filter(status=ModelVersion.Status.READY).order_by("-created_at", "-pk")
    if task:
        versions = versions.filter(asset__task=task)
    for word in q.split():
        versions = versions.filter(Q(asset__name__icontains=word) | Q(asset__description__icontains=word))
    return versions


def version_get_visible(*, version_id: int, user: User) -> ModelVersion:
    """A ready version for anyone; a pending or failed one for its maker (and staff); NotFound otherwise."""
    version = (
        _base().prefetch_related("parent_links__parent__asset", "contributors").filter(pk=version_id).first()
    )
    if version is None or (
        version.status != ModelVersion.Status.READY and version.created_by_id != user.pk and not user.is_staff
    ):
        raise NotFound("no such model version")
    return version


def _metrics(stored: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, metric in (stored or {}).items():
        if not isinstance(metric, dict) or metric.get("source") not in SOURCES:
            continue
        out.append({
            "name": name, "label": METRIC_LABELS.get(name, name), "value": metric.get("value"),
            "source": metric["source"], "source_label": SOURCES[metric["source"]],
        })  # fmt: skip
    order = list(METRIC_LABELS)
    return sorted(out, key=lambda m: order.index(m["name"]) if m["name"] in order else len(order))


def _data_owner(version: ModelVersion, viewer: User | None) -> bool:
    return bool(
        viewer is not None
        and viewer.is_authenticated
        and version.trained_on is not None
        and version.trained_on.dataset.owner_id == viewer.pk
    )


def _privacy(version: ModelVersion) -> dict[str, Any]:
    if version.private:
        privacy = version.privacy or {}
        epsilon, delta = privacy.get("epsilon_charged") or privacy.get("epsilon"), privacy.get("delta")
        return {
            "private": True, "epsilon": epsilon, "delta": delta,
            "epsilon_spent": privacy.get("epsilon_spent"),
            "statement": f"Trained with differential privacy (ε = {epsilon}, δ = {delta}) under a compute-only "
            "licence of its data, whose rows never leave the platform: nor do this model's weights. It can be "
            "called, and access to it sold, but never downloaded.",
        }  # fmt: skip
    if version.origin == ModelVersion.Origin.TRAINED:
        statement = "Trained on the platform by a holder of its data (the owner or a download licensee)."
    elif version.origin == ModelVersion.Origin.FEDERATED:
        statement = (
            "Trained together by federated learning: each party trained on its own rows at its own site and sent "
            "only signed weight updates; the platform never held their data."
        )
    else:
        statement = "Uploaded by its maker in a safe format and validated by the platform."
    return {"private": False, "epsilon": None, "delta": None, "epsilon_spent": None, "statement": statement}


def _licence(version: ModelVersion) -> str:
    token = getattr(version, "token", None)
    parts = [
        "Access is sold by the token's owner as licences: perpetual, for a time, or a prepaid number of calls; "
        "every call pays its price through the ledger."
    ]
    if version.lineage_bp:
        parts.append(
            f"{version.lineage_bp / 100:g}% of every call's payment flows up its lineage "
            + (
                "(the parties that trained it, by contribution)."
                if version.origin == ModelVersion.Origin.FEDERATED
                else "(training data, parents)."
            )
        )
    if token is not None and token.royalty_bp:
        parts.append(f"Its creator receives {token.royalty_bp / 100:g}% of every resale of the token.")
    parts.append(
        "The weights never leave the platform."
        if version.private
        else "The token's owner may download the weights."
    )
    return " ".join(parts)


def _input(column: dict[str, Any]) -> dict[str, Any]:
    if column["type"] == "categorical":
        return {"name": column["name"], "type": "text", "levels": column["levels"]}
    return {"name": column["name"], "type": "number"}


def _contributors(version: ModelVersion) -> list[dict[str, Any]]:
    """A federated version's parties by name, with their share of its lineage payments."""
    parties = list(version.contributors.all())
    total = sum(c.weight for c in parties) or 1
    ids = {kind: [ledger.account_parse(c.account)[1] for c in parties if c.account.startswith(kind)]
           for kind in ("user:", "org:")}  # fmt: skip
    names = {f"user:{u.pk}": u.username for u in User.objects.filter(pk__in=ids["user:"])}
    names |= {f"org:{o.pk}": o.name for o in Organization.objects.filter(pk__in=ids["org:"])}
    return [{"account": c.account, "name": names.get(c.account, c.account), "weight": c.weight,
             "share": c.weight / total, "score": c.score} for c in parties]  # fmt: skip


def _parent(link) -> dict[str, Any]:
    parent = link.parent
    return {"version": parent.pk, "name": parent.asset.name, "number": parent.number, "relation": link.relation,
            "artifact_sha256": parent.artifact_sha256}  # fmt: skip


def _token(token) -> dict[str, Any] | None:
    if token is None:
        return None
    return {"id": token.pk, "owner": token.owner.username, "creator": token.creator.username,
            "royalty_bp": token.royalty_bp, "minted_seq": token.minted_seq}  # fmt: skip


def version_card(version: ModelVersion, *, viewer: User | None = None) -> dict[str, Any]:
    """The model card of a version (see the module's docstring), as data for pages and the API. Metrics
    measured on compute-only data are included only when `viewer` owns that data."""
    asset, schema = version.asset, version.schema or {}
    evaluation: dict[str, Any] | None = dict(version.evaluation or {}) or None
    metrics = _metrics(version.metrics)
    note = ""
    withheld = (evaluation or {}).pop("withheld", None)
    if withheld is not None:
        if _data_owner(version, viewer):
            metrics += _metrics(withheld.get("metrics") or {})
            evaluation = {**(evaluation or {}), **{k: v for k, v in withheld.items() if k != "metrics"}}
            note = "Shown to you as the owner of its training data. " + WITHHELD
        else:
            note = WITHHELD
    training_data = None
    if version.trained_on is not None:
        data = version.trained_on
        training_data = {
            "dataset": data.dataset_id, "title": data.dataset.title, "version": data.number,
            "sha256": version.trained_on_sha256, "published_seq": data.published_seq,
            "url": reverse("marketplace:detail", args=[data.dataset_id]),
        }  # fmt: skip
    federation = None
    source = (version.card or {}).get("federation") or {}
    if version.origin == ModelVersion.Origin.FEDERATED and isinstance(source.get("federation"), int):
        federation = {"id": source["federation"], "rounds": source.get("rounds"),
                      "url": reverse("federation:detail", args=[source["federation"]])}  # fmt: skip
    token = getattr(version, "token", None)
    target = schema.get("target") or {}
    return {
        "version": version.pk,
        "number": version.number,
        "name": asset.name,
        "description": asset.description,
        "task": asset.task,
        "status": version.status,
        "error": version.error,
        "origin": version.origin,
        "format": version.format,
        "algorithm": version.algorithm,
        "artifact_sha256": version.artifact_sha256,
        "size": version.size,
        "created_by": version.created_by.username,
        "created_at": version.created_at.isoformat(),
        "entry_seq": version.entry_seq,
        "intended_use": (version.card or {}).get("intended_use", ""),
        "limitations": (version.card or {}).get("limitations", ""),
        "inputs": [_input(c) for c in schema.get("columns", [])],
        "output": {
            "target": target.get("name"),
            "task": target.get("task"),
            **({"classes": target.get("classes", [])} if target.get("task") == "classification" else {}),
        },
        "metrics": metrics,
        "metrics_note": note,
        "evaluation": evaluation,
        "learning_curve": version.curve or [],
        "training_data": training_data,
        "federation": federation,
        "parents": [_parent(link) for link in version.parent_links.all()],
        # A federated model's parties, paid its lineage share by their measured contribution.
        "contributors": _contributors(version),
        "lineage_bp": version.lineage_bp,
        "token": _token(token),
        "privacy": _privacy(version),
        "licence": _licence(version),
        "downloadable": version.downloadable,
    }


def _token_owner(version: ModelVersion, user: User, what: str) -> None:
    token = getattr(version, "token", None)
    if token is None or token.owner_id != user.pk:
        raise PermissionDenied(f"only the owner of the model's token {what}")


def version_card_update(
    *, version: ModelVersion, actor: User, intended_use: str | None = None, limitations: str | None = None
) -> ModelVersion:
    """Change the card's intended use and limitations: the token's owner only."""
    _token_owner(version, actor, "edits its card")
    changes = {
        k: v for k, v in (("intended_use", intended_use), ("limitations", limitations)) if v is not None
    }
    for key, value in changes.items():
        if not isinstance(value, str) or len(value) > CARD_TEXT_MAX:
            raise DomainError(f"{key} is text of at most {CARD_TEXT_MAX:,} characters")
    # Locked: two edits of different fields both land, neither overwriting the other's.
    with transaction.atomic(durable=True):
        locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
        locked.card = {**(locked.card or {}), **{k: v.strip() for k, v in changes.items()}}
        locked.save(update_fields=["card"])
    version.card = locked.card
    return version


def version_download_authorize(*, version: ModelVersion, user: User) -> ModelVersion:
    """The version whose weights `user` may download: its token's owner only, and never a model trained under a
    compute-only licence."""
    if version.status != ModelVersion.Status.READY:
        raise Conflict(f"the model version is {version.status}, not ready")
    if version.private:
        raise PermissionDenied(
            "this model was trained with differential privacy under a compute-only licence of its data: its "
            "weights never leave the platform. Call it through the prediction API instead"
        )
    _token_owner(version, user, "downloads its weights")
    return version
