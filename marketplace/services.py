"""Every write of the data marketplace: listings, versions, publishing, purchases, downloads and analyses."""

import contextlib
import hashlib
import logging
import os
import secrets
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from django.utils.text import get_valid_filename

from ledger import services as ledger
from marketplace import analyses, selectors
from marketplace.models import Analysis, Dataset, DatasetVersion, Download, License
from platform_site.accounts.models import User
from platform_site.accounts.selectors import user_is_active
from platform_site.errors import Conflict, DomainError, NotFound, PermissionDenied
from platform_site.jobs.models import Job
from platform_site.jobs.services import JobCancelled, job_submit, job_succeed, json_finite

logger = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
# A licence's term in days: a timedelta holds less than 1,000,000,000 days, a datetime ends in the year 9999.
MAX_TERM_DAYS = 36_500
# The range of the total ε that the owner lets each compute-only licence spend (10 by default); one analysis's
# default ε. Which analyses have a differentially private version is in the table of marketplace.analyses.
PRIVACY_BUDGET_RANGE = (Decimal("0.10"), Decimal("1000.00"))
DEFAULT_EPSILON = Decimal("1.00")
# `derived_models`: whether models may be trained from the data (models_market). Every model trained on the
# platform becomes a token whose access can be sold, a commercial use of the data: so the research preset, which
# forbids commercial use, forbids derived models too. Terms without the key (listings made before it existed)
# count as not allowing them until the owner says otherwise.
TERM_PRESETS: dict[str, dict[str, Any]] = {
    "research": {"commercial_use": False, "redistribution": False, "attribution": True, "term_days": 365,
                 "derived_models": False},
    "commercial": {"commercial_use": True, "redistribution": False, "attribution": True, "term_days": None,
                   "derived_models": True},
    "open": {"commercial_use": True, "redistribution": True, "attribution": True, "term_days": None,
             "derived_models": True},
}  # fmt: skip


def terms_build(*, preset: str, free_text: str = "", **overrides: Any) -> dict[str, Any]:
    """License terms from a preset, with the fields a lawyer asks about; overrides must be known fields."""
    if preset not in TERM_PRESETS:
        raise DomainError(f"unknown terms preset {preset!r}; choose one of {', '.join(TERM_PRESETS)}")
    terms = {**TERM_PRESETS[preset], "preset": preset, "free_text": free_text.strip()}
    for key, value in overrides.items():
        if key not in TERM_PRESETS[preset]:
            raise DomainError(f"unknown terms field {key!r}")
        terms[key] = value
    if not isinstance(terms["derived_models"], bool):
        raise DomainError("derived_models is true or false: whether models may be trained from the data")
    days = terms["term_days"]
    if days is not None and (
        isinstance(days, bool) or not isinstance(days, int) or not 0 < days <= MAX_TERM_DAYS
    ):
        raise DomainError(f"the term is a number of days from 1 to {MAX_TERM_DAYS:,}, or none for perpetual")
    return terms


# Amounts go into the ledger's canonical JSON, whose integers are exact up to 2**53-1 (and a BigIntegerField
# holds less than 2**63): a price is bounded by the smaller.
MAX_PRICE = 2**53 - 1
TITLE_MAX, DESCRIPTION_MAX, TERMS_TEXT_MAX, TAGS_MAX, TAG_MAX = 200, 5_000, 5_000, 20, 40


def _check_prices(price_download: int | None, price_compute: int | None) -> None:
    if price_download is None and price_compute is None:
        raise DomainError("offer at least one tier: download or compute-only")
    for name, price in (("download", price_download), ("compute-only", price_compute)):
        if price is not None and (isinstance(price, bool) or not isinstance(price, int) or price <= 0):
            raise DomainError(f"the {name} price must be a positive whole number of minor units")
        if price is not None and price > MAX_PRICE:
            raise DomainError(f"the {name} price is at most {MAX_PRICE:,} minor units")


def _check_listing_text(title: str, description: str, tags: list[str]) -> list[str]:
    if not title.strip():
        raise DomainError("give the dataset a title")
    if len(title.strip()) > TITLE_MAX:
        raise DomainError(f"the title is at most {TITLE_MAX} characters")
    if len(description) > DESCRIPTION_MAX:
        raise DomainError(f"the description is at most {DESCRIPTION_MAX:,} characters")
    tags = sorted({t.strip().lower() for t in tags if t.strip()})
    if len(tags) > TAGS_MAX or any(len(t) > TAG_MAX for t in tags):
        raise DomainError(f"at most {TAGS_MAX} tags of at most {TAG_MAX} characters each")
    return tags


def dataset_create(
    *,
    owner: User,
    title: str,
    description: str = "",
    tags: list[str] | None = None,
    terms_preset: str,
    terms_text: str = "",
    terms_overrides: dict[str, Any] | None = None,
    price_download: int | None = None,
    price_compute: int | None = None,
    preview_enabled: bool = False,
    privacy_budget: Decimal | None = None,
) -> Dataset:
    """A draft listing with its licence terms built from a preset; it is sold once a version is uploaded,
    analysed and published."""
    tags = _check_listing_text(title, description, tags or [])
    if len(terms_text) > TERMS_TEXT_MAX:
        raise DomainError(f"the additional terms are at most {TERMS_TEXT_MAX:,} characters")
    terms = terms_build(preset=terms_preset, free_text=terms_text, **(terms_overrides or {}))
    _check_prices(price_download, price_compute)
    privacy_budget = _check_privacy_budget(privacy_budget)
    return Dataset.objects.create(
        owner=owner, title=title.strip(), description=description, tags=tags, terms=terms,
        price_download=price_download, price_compute=price_compute, preview_enabled=preview_enabled,
        privacy_budget=privacy_budget,
    )  # fmt: skip


def _check_privacy_budget(budget: Decimal | None) -> Decimal:
    if budget is None:
        return Dataset._meta.get_field("privacy_budget").default
    low, high = PRIVACY_BUDGET_RANGE
    if not isinstance(budget, Decimal) or not budget.is_finite() or not low <= budget <= high:
        raise DomainError(f"the privacy budget per compute-only licence is an ε from {low} to {high}")
    return budget.quantize(Decimal("0.01"))


def dataset_privacy_budget_set(*, dataset: Dataset, actor: User, budget: Decimal) -> Dataset:
    """The ε that each compute-only licence sold from now on may spend; licences already sold keep theirs."""
    if dataset.owner_id != actor.pk:
        raise PermissionDenied("only the owner sets the privacy budget")
    dataset.privacy_budget = _check_privacy_budget(budget)
    dataset.save(update_fields=["privacy_budget", "updated_at"])
    return dataset


def dataset_derived_models_set(*, dataset: Dataset, actor: User, allowed: bool) -> Dataset:
    """Whether models may be trained from the data, for licences sold from now on (and, when allowing, for the
    licences already sold: an owner may widen what was sold, never narrow it). The new terms' hash goes on the
    ledger."""
    if dataset.owner_id != actor.pk:
        raise PermissionDenied("only the owner changes the terms")
    if not isinstance(allowed, bool):
        raise DomainError("derived_models is true or false")
    with transaction.atomic(durable=True):
        # Locked: the terms change is read and written whole, and a sale in between sees the old or new terms.
        dataset.refresh_from_db(from_queryset=Dataset.objects.select_for_update())
        if dataset.terms.get("derived_models") is allowed:
            return dataset
        dataset.terms = {**dataset.terms, "derived_models": allowed}
        ledger.entry_append(
            kind="marketplace.terms.changed",
            actor=ledger.account_name(user=actor),
            payload={"dataset": dataset.pk, "terms_hash": ledger.content_hash(dataset.terms),
                     "derived_models": allowed},
        )  # fmt: skip
        dataset.save(update_fields=["terms", "updated_at"])
    return dataset


class _HashingFile(File):
    """Streams an upload into storage chunk by chunk, hashing and counting as it goes, never whole in memory.
    Each chunk is hashed on a second thread while storage writes it (both release the GIL), so an upload costs
    about the slower of the two rather than their sum."""

    def __init__(self, upload, limit: int) -> None:
        super().__init__(upload, name=upload.name)
        self.upload, self.limit = upload, limit
        self.sha256, self.bytes = hashlib.sha256(), 0

    def chunks(self, chunk_size=None):
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload-sha256") as hasher:
            hashing = None
            for chunk in self.upload.chunks(chunk_size or UPLOAD_CHUNK):
                self.bytes += len(chunk)
                if self.bytes > self.limit:
                    raise DomainError(f"the file is larger than the limit of {self.limit:,} bytes")
                if hashing is not None:
                    hashing.result()  # in order, and at most two chunks held
                hashing = hasher.submit(self.sha256.update, chunk)
                yield chunk
            if hashing is not None:
                hashing.result()

    def __iter__(self):
        return self.chunks()


UPLOAD_CHUNK = 1 << 20


class StreamUpload:
    """A file sent as a request's raw body: read in chunks from `stream` (at most `size` bytes), as an uploaded
    file is, so that `dataset_version_upload` treats both alike."""

    def __init__(self, stream, *, name: str, size: int) -> None:
        self.stream, self.name, self.size = stream, name, size

    def chunks(self, chunk_size: int = UPLOAD_CHUNK):
        left = self.size
        while left > 0:
            chunk = self.stream.read(min(chunk_size, left))
            if not chunk:
                raise DomainError(f"the body ended {left:,} bytes before its Content-Length")
            left -= len(chunk)
            yield chunk


def _upload_name(dataset: Dataset, filename: str) -> tuple[str, str]:
    """The version's format and a storage name of its own (a fresh folder, so that a failed upload deletes only
    its own file): the file's base name made safe and shortened, keeping its extension, to fit the column."""
    base = os.path.basename((filename or "").replace("\\", "/"))
    stem, ext = os.path.splitext(base)
    fmt = FORMATS.get(ext.lower())
    if fmt is None:
        raise DomainError("upload a .csv or .jsonl file")
    folder = f"datasets/{dataset.pk}/{secrets.token_hex(6)}/"
    room = DatasetVersion._meta.get_field("file").max_length - len(folder) - len(ext)
    try:
        stem = get_valid_filename(stem or "data")[: min(room, 80)].rstrip(". ") or "data"
    except SuspiciousFileOperation:
        stem = "data"
    return fmt, f"{folder}{stem}{ext.lower()}"


def dataset_version_upload(*, dataset: Dataset, actor: User, upload) -> DatasetVersion:
    """Store a new version of the dataset's file, hashing it while streaming, and queue its statistics job.
    `upload` is an uploaded file or a StreamUpload: anything with a `name` and `chunks()`."""
    if dataset.owner_id != actor.pk:
        raise PermissionDenied("only the owner uploads new versions")
    if dataset.status == Dataset.Status.WITHDRAWN:
        raise Conflict("the listing is withdrawn")
    fmt, name = _upload_name(dataset, upload.name)
    stream = _HashingFile(upload, settings.UPLOAD_MAX_BYTES)
    try:
        name = default_storage.save(name, stream)
        if stream.bytes == 0:
            raise DomainError("the file is empty")
        # Locked: parallel uploads to one listing take its version numbers one after another, and one that
        # ends after a withdrawal is refused rather than added to a withdrawn listing.
        with transaction.atomic(durable=True):
            locked = Dataset.objects.select_for_update().get(pk=dataset.pk)
            if locked.status == Dataset.Status.WITHDRAWN:
                raise Conflict("the listing was withdrawn during the upload")
            number = (locked.versions.order_by("-number").values_list("number", flat=True).first() or 0) + 1
            version = DatasetVersion.objects.create(
                dataset=locked, number=number, file=name, format=fmt, size=stream.bytes,
                sha256=stream.sha256.hexdigest(),
            )  # fmt: skip
            version.stats_job = job_submit(
                owner=actor, kind="marketplace.stats", params={"version": version.pk}
            )
            version.save(update_fields=["stats_job"])
    except BaseException:
        _delete_upload(name)  # what this upload wrote, whole or in part: no version keeps it
        raise
    return version


def _delete_upload(name: str) -> None:
    default_storage.delete(name)
    # The upload's own folder, now empty (storage without local folders has none).
    with contextlib.suppress(NotImplementedError, OSError):
        os.rmdir(os.path.dirname(default_storage.path(name)))


# The preprocessing whose feature matrix the statistics job saves: analyses with these options skip it.
DEFAULT_PREPARE = {"max_categories": 20, "missing": "impute"}


def _save_temp(name: str, write) -> str:
    """Save what `write(fileobj)` writes under `name` in storage, through a temporary file; a file left
    there by an earlier run of the same job (its worker died) is replaced, not kept beside it."""
    default_storage.delete(name)
    with tempfile.TemporaryFile() as tmp:
        write(tmp)
        tmp.seek(0)
        return default_storage.save(name, File(tmp))


def version_stats_compute(*, version_id: int, reporter, job=None) -> dict[str, Any]:
    """The statistics job: column types and per-column statistics (no rows) stored on the version, the first
    rows kept for an opt-in preview, and the parsed columns and default features saved for analyses. With its
    `job`, the version's statistics and the job's result commit together."""
    import numpy as np

    from ml import unsupervised
    from ml.tabular import TabularError, column_stats, read_table, table_save

    version = DatasetVersion.objects.get(pk=version_id)

    def reading(fraction: float, message: str) -> None:
        reporter(0.7 * fraction, message=message)

    reporter(0.0, message="reading the file")
    try:
        with default_storage.open(version.file.name, "rb") as fh:
            # Cells bounded by the file's bytes (at least DATASET_MIN_CELLS): a JSON line without a key still holds
            # a cell in every column, so 3 bytes of `{}` after a line of 10,000 keys would cost 10,000 cells.
            table = read_table(fh, fmt=version.format, progress=reading,
                               max_cells=max(version.size, DATASET_MIN_CELLS))  # fmt: skip
        stats = column_stats(table)
    except TabularError as exc:  # the job ends failed, and its on_failure marks the version failed
        raise DomainError(str(exc)) from exc
    reporter(0.75, message="saving the parsed columns")
    stem = f"datasets/{version.dataset_id}/v{version.number}"
    fields: dict[str, Any] = {
        "columns_file": _save_temp(f"{stem}-columns.npz", lambda fh: table_save(table, fh)),
        "features_file": "",
        "features": None,
    }
    reporter(0.85, message="standardizing the features")
    try:
        prepared = unsupervised.prepare(table, **DEFAULT_PREPARE)
    except TabularError:
        pass  # nothing to analyse: analyses will say why
    else:
        fields["features_file"] = _save_temp(
            f"{stem}-features.npy", lambda fh: np.save(fh, prepared.X, allow_pickle=False)
        )
        fields["features"] = {"options": DEFAULT_PREPARE, "metadata": prepared.metadata()}
    # Non-finite numbers (an overflowed mean) never reach a JSON field: the job fails saying where they were.
    json_finite({"columns": stats["columns"], "features": fields["features"]}, what="the statistics")
    result = {"rows": stats["rows"], "columns": stats["n_columns"]}
    # One transaction: the version turns ready with its statistics only together with the job's result.
    with transaction.atomic(durable=job is not None):
        DatasetVersion.objects.filter(pk=version.pk).update(
            status=DatasetVersion.Status.READY,
            stats=stats,
            preview=selectors.preview_capped(table.columns, table.head),
            **fields,
        )
        if job is not None:
            job_succeed(job=job, result=result)
    return result


def version_stats_failed(*, version_id: int, error: str) -> None:
    """Its statistics job ended without success: the version is failed with the reason, never left processing."""
    DatasetVersion.objects.filter(pk=version_id, status=DatasetVersion.Status.PROCESSING).update(
        status=DatasetVersion.Status.FAILED, error=error
    )


def _version_prepared(version: DatasetVersion, *, max_categories: int, missing: str, private: bool = False):
    """The version's feature matrix for these options: the statistics job's own when they are its defaults
    (memory-mapped where storage is local, so not copied), else prepared from the parsed columns. `private`
    features (a compute-only licensee's) follow the rules of `ml.unsupervised.prepare(private=True)`."""
    import numpy as np

    from ml import unsupervised
    from ml.tabular import read_table, table_load

    options = {"max_categories": max_categories, "missing": missing}
    if not private and version.features_file and version.features and version.features["options"] == options:
        try:
            X = np.load(default_storage.path(version.features_file.name), mmap_mode="r", allow_pickle=False)
        except NotImplementedError:  # storage without local paths
            with default_storage.open(version.features_file.name, "rb") as fh:
                X = np.load(fh, allow_pickle=False)
        return unsupervised.Prepared.restore(X, version.features["metadata"])
    if version.columns_file:
        with default_storage.open(version.columns_file.name, "rb") as fh:
            table = table_load(fh)
    else:  # uploaded before columns were saved
        with default_storage.open(version.file.name, "rb") as fh:
            table = read_table(fh, fmt=version.format)
    return unsupervised.prepare(table, **options, private=private)


def dataset_publish(*, dataset: Dataset, actor: User) -> Dataset:
    """Put the latest ready version on sale; its SHA-256 goes on the ledger as the dataset's provenance."""
    if dataset.owner_id != actor.pk:
        raise PermissionDenied("only the owner publishes")
    with transaction.atomic(durable=True):
        # Locked: of parallel publishes (or a publish and a withdrawal), each sees what the one before did, so
        # one version is published once, with one entry.
        dataset.refresh_from_db(from_queryset=Dataset.objects.select_for_update())
        version, why_not = selectors.version_to_publish(dataset=dataset)
        if version is None:
            raise Conflict(why_not)
        entry = ledger.entry_append(
            kind="marketplace.dataset.published",
            actor=ledger.account_name(user=actor),
            payload={
                "dataset": dataset.pk, "version": version.number, "sha256": version.sha256, "size": version.size,
                "format": version.format, "price_download": dataset.price_download,
                "price_compute": dataset.price_compute, "terms_hash": ledger.content_hash(dataset.terms),
            },
        )  # fmt: skip
        version.published_seq = entry.seq
        version.save(update_fields=["published_seq"])
        dataset.status = Dataset.Status.PUBLISHED
        dataset.current_version = version
        dataset.save(update_fields=["status", "current_version", "updated_at"])
    return dataset


def dataset_withdraw(*, dataset: Dataset, actor: User) -> Dataset:
    """No new sales; licenses already sold keep working until they expire."""
    if dataset.owner_id != actor.pk:
        raise PermissionDenied("only the owner withdraws")
    with transaction.atomic(durable=True):
        # Locked: parallel withdrawals see each other, so one entry is written and the others are refused.
        dataset.refresh_from_db(from_queryset=Dataset.objects.select_for_update())
        if dataset.status != Dataset.Status.PUBLISHED:
            raise Conflict(f"the listing is {dataset.status}, not on sale")
        ledger.entry_append(
            kind="marketplace.dataset.withdrawn",
            actor=ledger.account_name(user=actor),
            payload={"dataset": dataset.pk},
        )
        dataset.status = Dataset.Status.WITHDRAWN
        dataset.save(update_fields=["status", "updated_at"])
    return dataset


def dataset_preview_set(*, dataset: Dataset, actor: User, enabled: bool) -> Dataset:
    """Show (or hide) the current version's first rows on the listing; only the owner decides."""
    if dataset.owner_id != actor.pk:
        raise PermissionDenied("only the owner turns the preview on or off")
    dataset.preview_enabled = bool(enabled)
    dataset.save(update_fields=["preview_enabled", "updated_at"])
    return dataset


# The cells (rows times columns) any upload may hold, however small its file.
DATASET_MIN_CELLS = 10_000_000


def license_offer(*, dataset: Dataset, tier: str) -> dict[str, Any]:
    """What a tier costs and grants now: its price, the SHA-256 of the terms of use (`terms_hash`, as the licence
    records it) and, for compute-only access, the privacy budget (ε, as text: "10.00")."""
    offer: dict[str, Any] = {
        "price": dataset.price_download if tier == License.Tier.DOWNLOAD else dataset.price_compute,
        "terms_hash": ledger.content_hash(dataset.terms),
    }
    if tier == License.Tier.COMPUTE:
        offer["privacy_budget"] = str(dataset.privacy_budget)
    return offer


def _offer_changes(offer: dict[str, Any], expected: dict[str, Any], tier: str) -> str:
    """How the offer differs from what the buyer agreed to, in words ("" when it does not)."""
    said = {
        "price": lambda v: (
            f"the price is now {ledger.format_amount(offer['price'])}, not {ledger.format_amount(v)}"
        ),
        "terms_hash": lambda v: "the terms of use were changed",
        "privacy_budget": lambda v: f"the privacy budget is now ε {offer['privacy_budget']}, not ε {v}",
    }
    for name in expected:
        if name not in offer:
            raise DomainError(f"{tier} access has no {name}; its terms are {', '.join(offer)}")
    return "; ".join(said[name](value) for name, value in expected.items() if offer[name] != value)


def license_purchase(
    *, buyer: User, dataset: Dataset, tier: str, expected: dict[str, Any] | None = None
) -> License:
    """Buy a tier: the price goes to the owner less the platform fee, and the license is granted, in one entry.
    `expected`, when given, holds what the buyer agreed to (license_offer's names): an offer changed in any of
    them since is a Conflict that says how."""
    if tier not in License.Tier.values:
        raise DomainError(f"unknown tier {tier!r}; choose download or compute")
    if dataset.owner_id == buyer.pk:
        raise Conflict("you own this dataset")
    with transaction.atomic(durable=True):
        # Locked: a buyer's parallel purchases of one tier see each other's licence (one is sold, the others
        # refused), and no sale lands after a withdrawal or on a changed price.
        dataset.refresh_from_db(from_queryset=Dataset.objects.select_for_update())
        # A deactivated owner sells nothing (their listing stays, for the licences already sold).
        on_sale = dataset.status == Dataset.Status.PUBLISHED and dataset.current_version_id is not None
        if not (on_sale and user_is_active(user_id=dataset.owner_id)):
            raise Conflict("this dataset is not on sale")
        price = dataset.price_download if tier == License.Tier.DOWNLOAD else dataset.price_compute
        if price is None:
            raise DomainError(f"this dataset is not sold with {tier} access")
        changed = _offer_changes(license_offer(dataset=dataset, tier=tier), expected or {}, tier)
        if changed:
            raise Conflict(f"the offer changed: {changed}")
        if License.objects.filter(buyer=buyer, dataset=dataset, tier=tier).exists():
            raise Conflict(f"you hold a {tier} license for this dataset already")
        version = dataset.current_version
        term_days = dataset.terms.get("term_days")
        expires_at = timezone.now() + timedelta(days=term_days) if term_days else None
        terms_hash = ledger.content_hash(dataset.terms)
        budget = dataset.privacy_budget if tier == License.Tier.COMPUTE else None
        # What was sold is in the payload's fields, for readers such as the wallet; the memo says it to people.
        try:
            entry = ledger.split_pay(
                source=ledger.account_name(user=buyer), amount=price,
                shares=selectors.sale_shares(owner_id=dataset.owner_id),
                actor=ledger.account_name(user=buyer), kind="marketplace.license.granted",
                memo=f"dataset {dataset.pk} v{version.number} {tier}; terms {terms_hash}"
                     + (f"; privacy budget ε {budget}" if budget is not None else ""),
                extra={"dataset": dataset.pk, "version": version.number, "tier": tier, "terms_hash": terms_hash},
            )  # fmt: skip
        except ledger.InsufficientFunds as exc:  # only the buyer pays: say it to them, without account names
            raise exc.to_owner() from exc
        return License.objects.create(
            buyer=buyer, dataset=dataset, version=version, tier=tier, price=price,
            terms=dataset.terms, terms_hash=terms_hash, expires_at=expires_at, entry_seq=entry.seq,
            epsilon_budget=budget,
        )  # fmt: skip


def _valid_license(user: User, dataset: Dataset, tier: str) -> License | None:
    return selectors.license_list_valid(user=user, dataset=dataset).filter(tier=tier).first()


def download_authorize(
    *, user: User, dataset: Dataset, version: DatasetVersion | None = None
) -> DatasetVersion:
    """The version the user may download (the owner, or a holder of a valid download license); recorded."""
    if dataset.status == Dataset.Status.DRAFT and dataset.owner_id != user.pk:
        raise NotFound("no such dataset")
    license = None
    if dataset.owner_id != user.pk:
        license = _valid_license(user, dataset, License.Tier.DOWNLOAD)
        if license is None:
            raise PermissionDenied("downloading needs a valid download license")
    version = version or (license.version if license else dataset.current_version or dataset.versions.first())
    if version is None or version.dataset_id != dataset.pk:
        raise NotFound("no such version")
    if license is not None and version.number > license.version.number:
        raise PermissionDenied("your license covers an earlier version")
    Download.objects.create(user=user, version=version, license=license)
    return version


def analysis_submit(*, user: User, dataset: Dataset, params: dict[str, Any]) -> Job:
    """Queue an unsupervised analysis of the version the user may use, with its Analysis record. The owner and
    download licensees, who hold the rows, get exact results; a compute-only licensee's analysis is
    differentially private, and its ε is charged to the licence's budget with a ledger entry, in the
    transaction that queues the job."""
    requested = params.get("epsilon") or DEFAULT_EPSILON
    params = {**params, "private": False, "epsilon": None}
    if dataset.owner_id == user.pk:
        version = (
            dataset.current_version or dataset.versions.filter(status=DatasetVersion.Status.READY).first()
        )
        # One transaction: the job and its record.
        with transaction.atomic(durable=True):
            return _analysis_queue(user, version, params)
    # A download licence first: its holder has the rows, so exact results and nothing charged.
    license = _valid_license(user, dataset, License.Tier.DOWNLOAD) or _valid_license(
        user, dataset, License.Tier.COMPUTE
    )
    if license is None:
        raise PermissionDenied("analyses need ownership or a valid license for this dataset")
    if license.tier == License.Tier.DOWNLOAD:
        with transaction.atomic(durable=True):  # the job and its record
            return _analysis_queue(user, license.version, params)
    name = params.get("analysis")
    kind = analyses.get(name)
    if kind is None or kind.private is None:
        raise DomainError(
            f"{name} is offered to owners and download licensees only: it has no differentially private "
            f"version; a compute-only licence offers {analyses.private_offer()}"
        )
    needs = kind.private_needs(params)
    if needs:
        raise DomainError(needs)
    epsilon = _epsilon(requested)
    with transaction.atomic(durable=True):  # the job, its record, the spend and its entry
        license_privacy_check(license=license, epsilon=epsilon, what="analysis")
        job = _analysis_queue(
            user, license.version, {**params, "private": True, "epsilon": str(epsilon)}, license=license
        )
        license_privacy_charge(user=user, license=license, epsilon=epsilon, job=job, about={"analysis": name})
    return job


def license_privacy_check(*, license: License, epsilon: Decimal, what: str) -> License:
    """Lock the compute-only licence's row and check that `epsilon` is left of its privacy budget (DomainError
    saying how much is left otherwise); inside the caller's transaction, which then charges it."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("a privacy budget is charged inside the caller's transaction.atomic()")
    # The licence row is locked so that concurrent releases cannot together spend more than its budget.
    locked = License.objects.select_for_update().select_related("version").get(pk=license.pk)
    if locked.tier != License.Tier.COMPUTE or locked.epsilon_budget is None:
        raise DomainError("only a compute-only licence has a privacy budget to charge")
    left = locked.epsilon_left or Decimal(0)
    if epsilon > left:
        raise DomainError(
            f"this {what} would spend ε = {epsilon}, but only ε = {left} is left of this licence's "
            f"privacy budget of {locked.epsilon_budget}"
        )
    return locked


def license_privacy_charge(
    *, user: User, license: License, epsilon: Decimal, job: Job, about: dict[str, Any]
) -> License:
    """Charge `epsilon` to a compute-only licence's privacy budget for the release that `job` makes, with a
    `marketplace.privacy.spent` ledger entry (`about` says what the release is: {"analysis": name}, {"training":
    algorithm}); inside the caller's durable transaction, which queues the job. Checked again under the lock."""
    from ml.privacy import DELTA

    license = license_privacy_check(license=license, epsilon=epsilon, what=next(iter(about), "release"))
    license.epsilon_spent += epsilon
    license.save(update_fields=["epsilon_spent"])
    ledger.entry_append(
        kind="marketplace.privacy.spent",
        actor=ledger.account_name(user=user),
        payload={"license": license.pk, "dataset": license.dataset_id, "version": license.version.number,
                 "job": job.pk, **about, "epsilon": str(epsilon), "delta": str(DELTA),
                 "spent": str(license.epsilon_spent), "budget": str(license.epsilon_budget)},
        idempotency_key=f"marketplace.privacy.spent:{job.pk}",
    )  # fmt: skip
    return license


def _epsilon(value: Any) -> Decimal:
    try:
        epsilon = Decimal(str(value)).quantize(Decimal("0.01"))
    except ArithmeticError:
        raise DomainError("ε must be a number with at most two decimals") from None
    if not epsilon.is_finite() or epsilon <= 0 or epsilon != Decimal(str(value)):
        raise DomainError("ε must be a positive number with at most two decimals")
    return epsilon


def _analysis_queue(
    user: User, version: DatasetVersion | None, params: dict[str, Any], *, license: License | None = None
) -> Job:
    """The job (its parameters validated by its kind) and its Analysis record; in the caller's transaction, so
    that no job is queued without its record."""
    if version is None or version.status != DatasetVersion.Status.READY:
        raise Conflict("the dataset has no analysed version yet")
    job = job_submit(owner=user, kind="marketplace.analysis", params={**params, "version": version.pk})
    Analysis.objects.create(
        job=job, version=version, user=user, license=license, kind=job.params["analysis"],
        options={k: v for k, v in job.params.items() if k not in NOT_OPTIONS},
        private=job.params["private"], epsilon=Decimal(job.params["epsilon"]) if job.params["private"] else None,
    )  # fmt: skip
    return job


# What an analysis job's parameters hold besides its options: each has a column of the Analysis record.
NOT_OPTIONS = ("analysis", "version", "private", "epsilon")


def analysis_run(*, job: Job, reporter) -> dict[str, Any]:
    """The analysis job: the kind's runner from the table of marketplace.analyses, aggregates only (no rows:
    data, never markup; pages chart it), and its result hash written to the ledger; for a compute-only licensee, differentially private
    with the ε charged when the job was submitted."""
    from ml.privacy import PrivacyError
    from ml.tabular import TabularError

    record = Analysis.objects.filter(job_id=job.pk).select_related("version").first()
    if record is None:
        raise DomainError("this analysis job has no analysis record; submit the analysis again")
    version, kind = record.version, analyses.get(record.kind)
    epsilon = float(record.epsilon) if record.private else None

    def progress(fraction: float, message: str = "") -> None:
        reporter(0.1 + 0.8 * fraction, message=message)

    if kind is None:
        raise DomainError(f"{record.kind} is no longer offered")
    if record.private and kind.private is None:
        raise DomainError(f"{record.kind} has no differentially private version")
    reporter(0.02, message="reading the data")
    options = {**DEFAULT_PREPARE, **record.options}
    try:
        prepared = _version_prepared(
            version,
            max_categories=options["max_categories"],
            missing=options["missing"],
            private=record.private,
        )
        if not prepared.numeric_columns:
            dropped = "; ".join(f"{c}: {why}" for c, why in prepared.dropped_columns.items())
            raise DomainError(
                "the data has no numeric columns to analyse" + (f" ({dropped})" if dropped else "")
            )
        if record.private:
            result = kind.private(prepared, options, epsilon, progress)
        else:
            result = kind.exact(prepared, options, progress)
    except (DomainError, JobCancelled, SoftTimeLimitExceeded):
        raise
    except Exception as exc:
        if record.private and not isinstance(exc, PrivacyError):
            # An error's text may quote a value of the data, which a compute-only licensee must never read.
            logger.exception("private analysis job %s failed", job.pk)
            raise DomainError(
                "the analysis failed on the data; compute-only results never quote the data, so the details "
                f"are in the platform's log under job {job.pk}"
            ) from exc
        if isinstance(exc, TabularError | ValueError):
            raise DomainError(str(exc)) from exc
        raise
    json_finite(result)  # before hashing: canonical JSON has no NaN either
    result_hash = ledger.content_hash(result)
    payload = {"dataset": version.dataset_id, "version": version.number, "analysis": record.kind, "job": job.pk,
               "result_sha256": result_hash}  # fmt: skip
    if record.private:
        payload["epsilon"] = f"{record.epsilon:.2f}"
    # One transaction: the ledger entry, the record's hash and entry, and the job's result commit together,
    # once per job (its key).
    with transaction.atomic(durable=True):
        entry = ledger.entry_append(
            kind="marketplace.analysis.completed", actor=ledger.account_name(user=job.owner_id), payload=payload,
            idempotency_key=f"marketplace.analysis.completed:{job.pk}",
        )  # fmt: skip
        Analysis.objects.filter(pk=record.pk).update(result_sha256=result_hash, entry_seq=entry.seq)
        outcome = {"analysis": record.kind, "result": result, "result_sha256": result_hash,
                   "entry_seq": entry.seq}  # fmt: skip
        job_succeed(job=job, result=outcome)
    return outcome
