import hashlib
import json
import re
from dataclasses import dataclass, fields
from typing import Any

from django.conf import settings
from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.core.paginator import Page, Paginator
from django.db import connection
from django.db.models import (
    BigIntegerField,
    Case,
    Count,
    F,
    FloatField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    TextField,
    Value,
    When,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce, Least
from django.utils import timezone

from ledger import services as ledger
from marketplace.models import Dataset, DatasetVersion, License
from platform_site.accounts.models import User
from platform_site.errors import Conflict, NotFound, PermissionDenied
from platform_site.jobs.models import Job

ANALYSIS_KIND = "marketplace.analysis"
# How long a browse page and its count are kept. Every change through the services moves the key of what they
# cache at once (see `_browse_stamp`); this bounds only what bypasses them, such as a renamed seller.
BROWSE_CACHE_SECONDS = 60

# Sort keys of the browse page and the API; "relevance" is the default when there is a search query. The last
# key breaks ties in the direction of the one before it, so that each order reads one index of
# `Dataset.Meta.indexes` forwards or backwards.
SORTS: dict[str, tuple[str, ...]] = {
    "relevance": ("-rank", "-created_at", "-pk"),
    "newest": ("-created_at", "-pk"),
    "oldest": ("created_at", "pk"),
    "price": ("price_from", "pk"),
    "-price": ("-price_from", "-pk"),
    "title": ("title", "pk"),
    "most_sold": ("-sales", "-created_at", "-pk"),
    "rows": ("-rows", "-current_version_id"),  # a version belongs to one listing: read in the versions' index
}
_TERM = re.compile(r'(-?)(?:"([^"]*)"|(\S+))')
_SEARCH_CONFIG = "english"


def _search_terms(q: str) -> tuple[list[str], list[str]]:
    """Words and "quoted phrases" of a websearch-style query; those starting with '-' are exclusions."""
    include: list[str] = []
    exclude: list[str] = []
    for minus, phrase, word in _TERM.findall(q):
        term = (phrase or word or "").strip()
        if not term or (not phrase and term.lower() == "or"):
            continue
        (exclude if minus else include).append(term)
    return include, exclude


def _text_match(term: str) -> Q:
    return Q(title__icontains=term) | Q(description__icontains=term) | Q(tags__icontains=term)


def dataset_search_vector() -> SearchVector:
    """What PostgreSQL searches: title and tags weigh more than the description; stemming makes "surveys" find
    "survey". Migration 0003 indexes this very expression (GIN); a test checks that searches use the index."""
    return (
        SearchVector("title", weight="A", config=_SEARCH_CONFIG)
        + SearchVector(Cast("tags", TextField()), weight="A", config=_SEARCH_CONFIG)
        + SearchVector("description", weight="B", config=_SEARCH_CONFIG)
    )


def _search(datasets: QuerySet[Dataset], q: str) -> QuerySet[Dataset]:
    """Full-text search annotated with `rank`: PostgreSQL's own, or a word-match score elsewhere (SQLite)."""
    if connection.vendor == "postgresql":
        vector = dataset_search_vector()
        query = SearchQuery(q, search_type="websearch", config=_SEARCH_CONFIG)
        return datasets.alias(search=vector).filter(search=query).annotate(rank=SearchRank(vector, query))
    include, exclude = _search_terms(q)
    for term in include:
        datasets = datasets.filter(_text_match(term))
    for term in exclude:
        datasets = datasets.exclude(_text_match(term))
    score = Value(0)
    for term in include:
        score = (
            score
            + Case(When(title__icontains=term, then=Value(3)), default=Value(0))
            + Case(When(tags__icontains=term, then=Value(3)), default=Value(0))
            + Case(When(description__icontains=term, then=Value(1)), default=Value(0))
        )
    return datasets.annotate(rank=score)


def dataset_list_public(
    *,
    q: str = "",
    tier: str = "",
    tag: str = "",
    owner: str = "",
    price_min: int | None = None,
    price_max: int | None = None,
    rows_min: int | None = None,
    rows_max: int | None = None,
    sort: str = "",
) -> QuerySet[Dataset]:
    """Published listings matching a search and filters, with owner and version loaded (constant queries per page).

    Prices are in minor units and apply to the chosen tier's price, or to any offered tier; `tag` takes
    several tags separated by commas, all required; rows are those of the version on sale.
    """
    datasets = Dataset.objects.filter(status=Dataset.Status.PUBLISHED).select_related(
        "owner", "current_version"
    )
    q = q.strip()
    if q:
        datasets = _search(datasets, q)
    if tier == "download":
        datasets = datasets.filter(price_download__isnull=False)
    elif tier == "compute":
        datasets = datasets.filter(price_compute__isnull=False)
    for name in {t.strip().lower() for t in tag.split(",") if t.strip()}:
        # Tags are stored lower-cased as a JSON list: match the element, not a substring of another tag. On
        # PostgreSQL by containment, through the GIN index of migration 0005; elsewhere the quoted element.
        if connection.vendor == "postgresql":
            datasets = datasets.filter(tags__contains=[name])
        else:
            datasets = datasets.filter(tags__icontains=f'"{name}"')
    if owner:
        datasets = datasets.filter(owner__username=owner)
    if price_min is not None or price_max is not None:
        tiers = {"download": ["price_download"], "compute": ["price_compute"]}.get(
            tier, ["price_download", "price_compute"]
        )
        in_range = Q()
        for field in tiers:
            bounds = Q(**{f"{field}__isnull": False})
            if price_min is not None:
                bounds &= Q(**{f"{field}__gte": price_min})
            if price_max is not None:
                bounds &= Q(**{f"{field}__lte": price_max})
            in_range |= bounds
        datasets = datasets.filter(in_range)
    sort = sort if sort in SORTS else ""
    if not sort or (sort == "relevance" and not q):
        sort = "relevance" if q else "newest"
    if rows_min is not None or rows_max is not None or sort == "rows":
        # A published listing always has a version on sale; saying so makes its join an inner one, which the
        # planner may then walk from the versions' index of rows.
        datasets = datasets.filter(current_version__isnull=False).annotate(
            rows=Cast(KeyTextTransform("rows", "current_version__stats"), FloatField())
        )
        if rows_min is not None:
            datasets = datasets.filter(rows__gte=rows_min)
        if rows_max is not None:
            datasets = datasets.filter(rows__lte=rows_max)
    if sort in ("price", "-price"):
        if tier in ("download", "compute"):
            datasets = datasets.annotate(price_from=F(f"price_{tier}"))
        else:
            # The cheapest tier offered (either price may be null; Least of a null is null on SQLite).
            datasets = datasets.annotate(
                price_from=Least(
                    Coalesce("price_download", "price_compute"), Coalesce("price_compute", "price_download")
                )
            )
    if sort == "most_sold":
        # Counted per listing through the licences' dataset index: a join and GROUP BY over every listing's
        # columns took 0.3 s at 10,000 listings.
        sold = License.objects.filter(dataset_id=OuterRef("pk")).order_by().values("dataset_id")
        datasets = datasets.annotate(
            sales=Coalesce(Subquery(sold.annotate(n=Count("pk")).values("n")), Value(0))
        )
    return datasets.order_by(*SORTS[sort])


def _browse_stamp(*, sort: str) -> list[str | None]:
    """What moves whenever a page of listings may change: the newest change to a listing (every service that
    changes one sets `updated_at`), and for the most-sold order the newest licence. One query reading the ends
    of two indexes, written out because browsing runs it on every request.

    A change that commits after a newer one was cached keeps the older page up to `BROWSE_CACHE_SECONDS`."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT MAX(updated_at) FROM {Dataset._meta.db_table}),"  # noqa: S608 - table names only
            f" (SELECT MAX(id) FROM {License._meta.db_table})"
        )
        last, sold = cursor.fetchone()
    return [str(last), str(sold) if sort == "most_sold" else None]


def dataset_browse_key(*, filters: dict[str, Any], per_page: int) -> str:
    """The cache key prefix of what browsing with these filters shows now; it moves when a listing changes."""
    stamp = _browse_stamp(sort=filters.get("sort", ""))
    blob = json.dumps([filters, stamp, per_page], sort_keys=True, default=str).encode()
    return "marketplace:browse:" + hashlib.sha256(blob).hexdigest()


def dataset_page_public(*, number: Any, per_page: int, key: str, **filters: Any) -> Page:
    """One page of `dataset_list_public(**filters)` holding only what a listing card shows, and its paginator's
    count, both cached under `key` (from `dataset_browse_key`), so that browsing neither sorts nor counts every
    listing on each request. `page.cache_key` names the page's cache entry, for what a view derives from it."""
    datasets = (
        dataset_list_public(**filters)
        .select_related(None)
        .select_related("owner")
        .only("title", "description", "tags", "price_download", "price_compute", "owner__username")
        .annotate(
            card_rows=Cast(KeyTextTransform("rows", "current_version__stats"), BigIntegerField()),
            card_columns=Cast(KeyTextTransform("n_columns", "current_version__stats"), BigIntegerField()),
        )
    )
    paginator = Paginator(datasets, per_page)
    count = cache.get(f"{key}:count")
    if count is None:
        cache.set(f"{key}:count", paginator.count, BROWSE_CACHE_SECONDS)
    else:
        paginator.count = count  # the count is a cached property: set, it is not queried
    page = paginator.get_page(number)
    page.cache_key = f"{key}:{page.number}"
    items = cache.get(page.cache_key)
    if items is None:
        items = list(page.object_list)
        cache.set(page.cache_key, items, BROWSE_CACHE_SECONDS)
    page.object_list = items
    return page


def dataset_get_for_user(*, dataset_id: int, user: User) -> Dataset:
    """A published or withdrawn listing, or the user's own draft; NotFound otherwise."""
    dataset = Dataset.objects.select_related("owner", "current_version").filter(pk=dataset_id).first()
    if dataset is None or (dataset.status == Dataset.Status.DRAFT and dataset.owner_id != user.pk):
        raise NotFound("no such dataset")
    return dataset


# The stored preview is capped so that one huge cell cannot swell every page and response that shows it.
PREVIEW_CELL_CHARS = 200
PREVIEW_ROW_CHARS = 4_000
PREVIEW_COLUMNS = 50
_CUT = "\u2026"


def _cut(value: str | None, room: int) -> str | None:
    if value is None or len(value) <= room:
        return value
    return value[: max(room - 1, 0)] + _CUT


def preview_capped(columns: list[str], rows: list[list[str | None]]) -> dict[str, Any]:
    """The first rows as the preview keeps them: at most PREVIEW_COLUMNS columns, each cell and name cut to
    PREVIEW_CELL_CHARS (ending in an ellipsis), and each row to PREVIEW_ROW_CHARS in all."""
    names = [_cut(str(name), PREVIEW_CELL_CHARS) for name in columns[:PREVIEW_COLUMNS]]
    capped = []
    for row in rows:
        room, cells, kept = PREVIEW_ROW_CHARS, [], row[:PREVIEW_COLUMNS]
        for i, value in enumerate(kept):
            later = len(kept) - i - 1  # each later cell keeps room for at least its ellipsis
            cell = _cut(None if value is None else str(value), max(min(PREVIEW_CELL_CHARS, room - later), 1))
            room -= len(cell or "")
            cells.append(cell)
        capped.append(cells)
    return {"columns": names, "rows": capped}


def dataset_preview(*, dataset: Dataset, version: DatasetVersion | None) -> dict | None:
    """The version's first rows when the owner opted in and they are well formed, capped; None otherwise."""
    if not dataset.preview_enabled or version is None or not isinstance(version.preview, dict):
        return None
    columns, rows = version.preview.get("columns"), version.preview.get("rows")
    if not isinstance(columns, list) or not isinstance(rows, list):
        return None
    if not all(isinstance(row, list) and len(row) == len(columns) for row in rows):
        return None
    return preview_capped(columns, rows)  # a preview stored before the caps is capped when shown


def license_list_for_user(*, user: User) -> QuerySet[License]:
    return License.objects.filter(buyer=user).select_related("dataset", "version")


def license_list_valid(*, user: User, dataset: Dataset) -> QuerySet[License]:
    """The user's unexpired licenses for one dataset."""
    return (
        License.objects.filter(buyer=user, dataset=dataset)
        .exclude(expires_at__lt=timezone.now())
        .select_related("version")
    )


def privacy_budget_licenses(*, user: User, dataset: Dataset) -> QuerySet[License]:
    """The compute-only licences whose privacy budget the user may see: every one for the owner, else their own
    (unexpired); PermissionDenied for anyone holding none."""
    licenses = License.objects.filter(dataset=dataset, tier=License.Tier.COMPUTE).select_related(
        "buyer", "version"
    )
    if dataset.owner_id != user.pk:
        licenses = licenses.filter(buyer_id=user.pk).exclude(expires_at__lt=timezone.now())
        if not licenses.exists():
            raise PermissionDenied("only the owner and compute-only licensees see the privacy budget")
    return licenses.order_by("-created_at", "-pk")


def sale_shares(*, owner_id: int) -> list[ledger.Share]:
    """Who is paid what share of a sale: the owner, less the platform fee that goes to the treasury."""
    fee = settings.MARKETPLACE_FEE_BP
    return [ledger.Share(ledger.account_name(user=owner_id), 10_000 - fee)] + (
        [ledger.Share(ledger.TREASURY, fee)] if fee else []
    )


def sale_split(*, owner_id: int, price: int) -> tuple[int, int]:
    """(the owner's part, the fee) of one sale at `price`, exactly as the ledger splits it."""
    parts = dict(ledger.split_amounts(price, sale_shares(owner_id=owner_id)))
    return parts[ledger.account_name(user=owner_id)], parts.get(ledger.TREASURY, 0)


def dataset_list_for_owner(*, owner: User) -> list[Dataset]:
    """The owner's listings with their sales count, gross and net (the owner's part of each sale, as the ledger
    splits it), in two grouped queries."""
    datasets = list(
        Dataset.objects.filter(owner=owner)
        .select_related("current_version")
        .annotate(sales=Count("licenses"), gross=Sum("licenses__price"))
        .order_by("-created_at", "-pk")
    )
    net: dict[int, int] = {}
    sales = License.objects.filter(dataset__owner=owner).values("dataset_id", "price").annotate(n=Count("pk"))
    for row in sales.order_by():
        part, _fee = sale_split(owner_id=owner.pk, price=row["price"])
        net[row["dataset_id"]] = net.get(row["dataset_id"], 0) + part * row["n"]
    for dataset in datasets:
        dataset.gross = dataset.gross or 0
        dataset.net = net.get(dataset.pk, 0)
    return datasets


def version_list_for_owner(*, user: User, dataset: Dataset) -> QuerySet[DatasetVersion]:
    """Every version of the dataset, drafts and failures included, newest first: for its owner only."""
    if dataset.owner_id != user.pk:
        raise PermissionDenied("only the owner sees every version of a dataset")
    return dataset.versions.order_by("-number")


def version_to_publish(*, dataset: Dataset) -> tuple[DatasetVersion | None, str]:
    """The version that publishing would put on sale (the latest ready one), or None and why not."""
    if dataset.status == Dataset.Status.WITHDRAWN:
        return None, "a withdrawn listing stays withdrawn; create a new one"
    version = dataset.versions.filter(status=DatasetVersion.Status.READY).order_by("-number").first()
    if version is None:
        return None, "upload a file and wait for its statistics before publishing"
    if version.published_seq is not None and dataset.status == Dataset.Status.PUBLISHED:
        return None, f"version {version.number} is published already"
    return version, ""


@dataclass(frozen=True)
class DatasetActions:
    """What one user may do with one dataset now; the pages and the API both show it, the services enforce it."""

    is_owner: bool
    licenses: tuple[License, ...]  # the user's unexpired licences
    buy_download: bool
    buy_compute: bool
    download: bool
    analyse: bool
    # A compute-only licensee without a download licence: analyses are differentially private and spend ε.
    analyse_private: bool
    publish: bool
    withdraw: bool
    upload: bool
    edit: bool  # preview, privacy budget
    see_versions: bool

    @property
    def compute_license(self) -> License | None:
        return next((lic for lic in self.licenses if lic.tier == License.Tier.COMPUTE), None)

    def as_dict(self) -> dict[str, bool]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "licenses"}


def dataset_is_owner(*, user: User, dataset: Dataset) -> bool:
    return bool(user.is_authenticated) and dataset.owner_id == user.pk


def dataset_actions(*, user: User, dataset: Dataset) -> DatasetActions:
    """What `user` (maybe anonymous) may do with `dataset`, by the rules the services apply."""
    authenticated = bool(user.is_authenticated)
    is_owner = dataset_is_owner(user=user, dataset=dataset)
    licenses: list[License] = []
    owned_tiers: set[str] = set()  # every licence ever bought, expired too: one per tier (a constraint)
    if authenticated and not is_owner:
        all_licenses = list(
            License.objects.filter(buyer_id=user.pk, dataset=dataset).select_related("version")
        )
        now = timezone.now()
        licenses = [lic for lic in all_licenses if lic.expires_at is None or lic.expires_at >= now]
        owned_tiers = {lic.tier for lic in all_licenses}
    held = {lic.tier for lic in licenses}
    on_sale = dataset.status == Dataset.Status.PUBLISHED and dataset.current_version_id is not None
    may_buy = authenticated and not is_owner and on_sale
    return DatasetActions(
        is_owner=is_owner,
        licenses=tuple(licenses),
        buy_download=may_buy and dataset.price_download is not None and "download" not in owned_tiers,
        buy_compute=may_buy and dataset.price_compute is not None and "compute" not in owned_tiers,
        download=is_owner or License.Tier.DOWNLOAD in held,
        analyse=is_owner or bool(held),
        analyse_private=License.Tier.COMPUTE in held and License.Tier.DOWNLOAD not in held,
        publish=is_owner and version_to_publish(dataset=dataset)[0] is not None,
        withdraw=is_owner and dataset.status == Dataset.Status.PUBLISHED,
        upload=is_owner and dataset.status != Dataset.Status.WITHDRAWN,
        edit=is_owner,
        see_versions=is_owner,
    )


def analysis_list_for_user(*, user: User, dataset: Dataset) -> QuerySet[Job]:
    """The user's analysis jobs on any version of the dataset, most recent first, each with its Analysis record
    and version loaded (`job.analysis`, `job.analysis.version`)."""
    return (
        Job.objects.filter(kind=ANALYSIS_KIND, owner_id=user.pk, analysis__version__dataset_id=dataset.pk)
        .select_related("analysis__version")
        .order_by("-created_at", "-pk")
    )


def analysis_get_for_user(*, user: User, dataset: Dataset, job_id: int) -> Job:
    """One of the user's analysis jobs on a version of this dataset; NotFound for anyone else's."""
    job = analysis_list_for_user(user=user, dataset=dataset).filter(pk=job_id).first()
    if job is None:
        raise NotFound("no such analysis")
    return job


def dataset_version_get_for_user(*, user: User, dataset_id: int, number: int | None = None) -> DatasetVersion:
    """A version of a dataset the user may see (see `dataset_get_for_user`): by its number, or else the one a
    user would use: the owner's latest ready version, a licensee's licensed version, or the one on sale."""
    dataset = dataset_get_for_user(dataset_id=dataset_id, user=user)
    versions = dataset.versions.all()
    if number is not None:
        version = versions.filter(number=number).first()
    elif dataset.owner_id == user.pk:
        version = versions.filter(status=DatasetVersion.Status.READY).order_by("-number").first()
    else:
        licence = license_list_valid(user=user, dataset=dataset).order_by("-version__number").first()
        version = licence.version if licence else dataset.current_version
    if version is None:
        raise NotFound("no such version of this dataset")
    version.dataset = dataset
    return version


@dataclass(frozen=True)
class TrainRights:
    """Whether a user may train models from a dataset version, whether that training must be differentially
    private (a compute-only licensee, whose rows never leave), the licence that gives the right (and, if private,
    pays the ε), and why not."""

    allowed: bool
    private: bool
    license: License | None
    reason: str = ""


def _derived_allowed(license: License) -> bool:
    # The licence's own terms (what was bought) or the listing's current ones (an owner may widen, never narrow,
    # what was sold). Terms without the key (listings older than it) do not allow derived models.
    return license.terms.get("derived_models") is True or license.dataset.terms.get("derived_models") is True


def train_rights(*, user: User, version: DatasetVersion) -> TrainRights:
    """Who may train models from `version`: its owner always; the holder of a valid download licence, or of a
    compute-only licence (then privately), only if the terms allow derived models and the licence covers the
    version."""
    dataset = version.dataset
    if dataset.owner_id == user.pk:
        return TrainRights(True, False, None)
    if dataset.status == Dataset.Status.DRAFT:
        return TrainRights(False, False, None, "no such dataset")
    licences = list(license_list_valid(user=user, dataset=dataset).select_related("dataset"))
    if not licences:
        return TrainRights(
            False, False, None, "training a model needs ownership or a valid licence for this dataset"
        )
    covering = [lic for lic in licences if lic.version.number >= version.number]
    if not covering:
        return TrainRights(False, False, None, "your licence covers an earlier version of this dataset")
    allowed = [lic for lic in covering if _derived_allowed(lic)]
    if not allowed:
        return TrainRights(
            False, False, None,
            "the terms of your licence do not allow training models from this data (derived models: not "
            "allowed); the owner may allow them",
        )  # fmt: skip
    # A download licence first: its holder has the rows, so nothing is private and no ε is charged.
    download = next((lic for lic in allowed if lic.tier == License.Tier.DOWNLOAD), None)
    if download is not None:
        return TrainRights(True, False, download)
    return TrainRights(True, True, allowed[0])


def may_train(user: User, dataset_version: DatasetVersion) -> tuple[bool, bool, License | None]:
    """(allowed, private, licence): `train_rights` without the reason."""
    rights = train_rights(user=user, version=dataset_version)
    return rights.allowed, rights.private, rights.license


def version_columns(*, version: DatasetVersion):
    """The version's parsed columns (`ml.tabular.Table`) as its statistics job saved them; the upload itself is
    never parsed again. Conflict for a version without them (not analysed yet, or from before they were kept)."""
    from ml.tabular import table_load

    if version.status != DatasetVersion.Status.READY or not version.columns_file:
        raise Conflict(
            f"version {version.number} of this dataset has no parsed columns yet; its statistics job saves them"
        )
    with default_storage.open(version.columns_file.name, "rb") as fh:
        return table_load(fh)


def dataset_version_get(*, version_id: int) -> DatasetVersion:
    """A dataset version by its id, with its listing; NotFound if there is none (for workers, which check no
    rights: the service that queued the job did)."""
    version = DatasetVersion.objects.select_related("dataset").filter(pk=version_id).first()
    if version is None:
        raise NotFound("no such dataset version")
    return version


def dataset_version_owner_id(*, version_id: int) -> int | None:
    """The user id of whoever owns the listing of a dataset version: who earns the royalty that models trained
    on it pay up their lineage. None for no such version."""
    return DatasetVersion.objects.filter(pk=version_id).values_list("dataset__owner_id", flat=True).first()
