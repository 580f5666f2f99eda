"""Reads of the models market that pages and the API share: browsing, one model's lineage and usage, tokens,
licences and receipts, and a user's models."""

import time
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.urls import reverse
from django.utils import timezone

from ledger import selectors as ledger_selectors
from marketplace import selectors as data_selectors
from models_market.models import (
    Evaluation,
    EvaluationScore,
    GuaranteedPurchase,
    ModelAsset,
    ModelLicense,
    ModelParent,
    ModelToken,
    ModelVersion,
    Receipt,
)
from platform_site.accounts.models import User
from platform_site.errors import NotFound

SORTS = {
    "newest": ("-created_at", "-pk"),
    "price": ("price_per_call", "pk"),
    "name": ("version__asset__name", "pk"),
}
LINEAGE_DEPTH = 6  # generations shown (and paid: models_market.services.lineage has its own cap)


def token_list_listed(
    *, q: str = "", task: str = "", sort: str = "newest", license_kind: str = ""
) -> QuerySet[ModelToken]:
    """Tokens whose owner offers access to a ready version, filtered and sorted as the browse page asks."""
    tokens = ModelToken.objects.filter(listed=True, version__status=ModelVersion.Status.READY).select_related(
        "version__asset", "owner"
    )
    if q.strip():
        for word in q.split()[:8]:
            tokens = tokens.filter(
                Q(version__asset__name__icontains=word)
                | Q(version__asset__description__icontains=word)
                | Q(version__asset__tags__icontains=word)
            )
    if task in ModelAsset.Task.values:
        tokens = tokens.filter(version__asset__task=task)
    offered = {"perpetual": "price_perpetual", "timed": "price_timed", "quota": "price_quota"}.get(
        license_kind
    )
    if offered:
        tokens = tokens.filter(**{f"{offered}__isnull": False})
    return tokens.order_by(*SORTS.get(sort, SORTS["newest"]))


def token_for(version: ModelVersion) -> ModelToken | None:
    """The version's token, None before it is minted (read through the version, which pages load with it)."""
    try:
        return version.token
    except ModelToken.DoesNotExist:
        return None


def license_list_valid(*, user: User, version: ModelVersion) -> list[ModelLicense]:
    """The user's licences for this version that still allow a call: not expired, quota not used up."""
    if not getattr(user, "is_authenticated", False):
        return []
    now = timezone.now()
    return list(
        ModelLicense.objects.filter(holder=user, version=version)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .filter(Q(calls_left__isnull=True) | Q(calls_left__gt=0))
    )


@dataclass(frozen=True)
class Node:
    id: str
    label: str
    kind: str  # "model" | "dataset"
    depth: int
    url: str


def lineage(
    version: ModelVersion, *, depth: int = LINEAGE_DEPTH
) -> tuple[list[Node], list[tuple[str, str, str]]]:
    """The version, its ancestors (parent models, recursively) and the dataset versions each was trained on, as
    nodes and (child, parent, relation) edges; each ancestor appears once, at its nearest generation."""
    nodes: dict[str, Node] = {}
    edges: list[tuple[str, str, str]] = []
    frontier = [version]
    seen_models = {version.pk}
    nodes[f"m{version.pk}"] = _model_node(version, 0)
    for generation in range(1, depth + 1):
        if not frontier:
            break
        ids = [v.pk for v in frontier]
        for v in frontier:
            if v.trained_on_id:
                key = f"d{v.trained_on_id}"
                if key not in nodes:
                    dataset_version = v.trained_on
                    nodes[key] = Node(
                        key, f"{dataset_version.dataset.title} v{dataset_version.number}", "dataset", generation,
                        reverse("marketplace:detail", args=[dataset_version.dataset_id]),
                    )  # fmt: skip
                edges.append((f"m{v.pk}", key, "trained on"))
        links = ModelParent.objects.filter(child_id__in=ids).select_related(
            "parent__asset", "parent__trained_on__dataset"
        )
        nxt = []
        for link in links:
            key = f"m{link.parent_id}"
            if link.parent_id not in seen_models:
                seen_models.add(link.parent_id)
                nodes[key] = _model_node(link.parent, generation)
                nxt.append(link.parent)
            edges.append((f"m{link.child_id}", key, link.relation))
        frontier = nxt
    return list(nodes.values()), edges


def _model_node(version: ModelVersion, depth: int) -> Node:
    return Node(
        f"m{version.pk}", f"{version.asset.name} v{version.number}", "model", depth,
        reverse("models_market:detail", args=[version.pk]),
    )  # fmt: skip


def token_history(token: ModelToken) -> list[Any]:
    """The ledger entries about this token (mint, transfers, approvals, offers, sales, licences), oldest first."""
    return list(ledger_selectors.entries_mentioning(key="token", value=token.pk)[:200])


def usage_for_version(version: ModelVersion) -> dict[str, Any]:
    """Calls made to this version and what they were charged, settled or not yet."""
    figures = Receipt.objects.filter(version=version).aggregate(
        calls=Count("pk"), charged=Sum("price"), settled=Count("pk", filter=Q(settlement__isnull=False))
    )
    licences = ModelLicense.objects.filter(version=version).aggregate(sold=Count("pk"), gross=Sum("price"))
    return {**figures, **licences}


def token_list_owned(*, user: User) -> QuerySet[ModelToken]:
    return ModelToken.objects.filter(owner=user).select_related("version__asset").order_by("-pk")


def version_list_created(*, user: User) -> QuerySet[ModelVersion]:
    """Everything the user trained or uploaded, including what is still training or failed."""
    return ModelVersion.objects.filter(created_by=user).select_related("asset", "job").order_by("-created_at")


def trainable_datasets(*, user: User) -> list[dict[str, Any]]:
    """The datasets the user may train models from, with how: their own (exact), and those licensed under terms
    that allow derived models (exact with a download licence, differentially private with compute-only)."""
    out: dict[int, dict[str, Any]] = {}
    for dataset in data_selectors.dataset_list_for_owner(owner=user):
        if dataset.current_version_id or dataset.versions.filter(status="ready").exists():
            out[dataset.pk] = {"dataset": dataset, "how": "yours"}
    for licence in data_selectors.license_list_for_user(user=user).select_related("dataset", "version"):
        if licence.dataset_id in out:
            continue
        rights = data_selectors.train_rights(user=user, version=licence.version)
        if rights.allowed:
            how = "compute-only licence: differentially private" if rights.private else "download licence"
            out[licence.dataset_id] = {"dataset": licence.dataset, "how": how}
    return list(out.values())


# ---- money (tokens, licences, metered calls)


def token_get(*, token_id: int) -> ModelToken:
    """A token by its id, with its version and the people it names. Tokens are public, as on a chain."""
    token = (
        ModelToken.objects.select_related("version__asset", "owner", "creator", "approved")
        .filter(pk=token_id)
        .first()
    )
    if token is None:
        raise NotFound("no such token")
    return token


def version_get_for_call(*, version_id: int) -> ModelVersion:
    """A ready model version with its token, for the predict endpoint; NotFound otherwise."""
    version = (
        ModelVersion.objects.select_related("token")
        .filter(pk=version_id, status=ModelVersion.Status.READY)
        .first()
    )
    if version is None:
        raise NotFound("no such model version ready to call")
    return version


# Versions read for calls lately, by id: (until when, time.monotonic(); the version with its token).
RECENT_VERSION_SECONDS = 5.0
_RECENT_VERSIONS_MAX = 4096
_recent_versions: dict[int, tuple[float, ModelVersion]] = {}


def version_get_for_call_recent(*, version_id: int) -> ModelVersion:
    """version_get_for_call, without a query when this process read the version within RECENT_VERSION_SECONDS:
    for callers that check its status, artifact and owner again where they write (services.predict_call)."""
    hit = _recent_versions.get(version_id)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    version = version_get_for_call(version_id=version_id)
    if len(_recent_versions) >= _RECENT_VERSIONS_MAX:
        _recent_versions.clear()
    _recent_versions[version_id] = (time.monotonic() + RECENT_VERSION_SECONDS, version)
    return version


def license_list_for_user(*, user: User) -> QuerySet[ModelLicense]:
    """The user's model licences, newest first, with the model they are for and their usage (calls receipted,
    what those calls cost)."""
    return (
        ModelLicense.objects.filter(holder=user)
        .select_related("version__asset", "version__token")
        .annotate(receipts_count=Count("receipts"), spent=Sum("receipts__price"))
        .order_by("-created_at", "-pk")
    )


def receipt_get_for_user(*, receipt_id: int, user: User) -> Receipt:
    """A receipt its caller or the model's token owner may read; NotFound for anyone else (whether it exists is
    theirs to know)."""
    receipt = (
        Receipt.objects.select_related("settlement")
        .filter(Q(caller=user) | Q(version__token__owner=user), pk=receipt_id)
        .first()
    )
    if receipt is None:
        raise NotFound("no such receipt")
    return receipt


def receipt_list_for_user(*, user: User) -> QuerySet[Receipt]:
    """The receipts of the user's own calls, newest first."""
    return Receipt.objects.filter(caller=user).select_related("settlement").order_by("-pk")


def evaluation_get_for_user(*, evaluation_id: int, user) -> Evaluation:
    """An evaluation with its ranking, for the user who paid for it; NotFound for anyone else."""
    ev = (
        Evaluation.objects.filter(pk=evaluation_id, user=user)
        .prefetch_related("scores__version__asset")
        .first()
    )
    if ev is None:
        raise NotFound("no such evaluation")
    return ev


def evaluation_scores_for_owner(*, user) -> QuerySet[EvaluationScore]:
    """The rows of evaluations that scored the user's models: only their own rows, never the others'."""
    return (
        EvaluationScore.objects.filter(owner=user, evaluation__status="done")
        .select_related("evaluation", "version__asset")
        .order_by("-evaluation__created_at", "-pk")
    )


def guaranteed_purchases_for_user(*, user) -> QuerySet[GuaranteedPurchase]:
    """Guaranteed purchases the user bought or sold (a seller reads the measured metric, never the holdout)."""
    return GuaranteedPurchase.objects.filter(Q(buyer=user) | Q(seller=user)).select_related("version__asset")
