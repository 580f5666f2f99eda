from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce, Least
from django.utils import timezone

_PUBLISHED = Q(status="published")


class Dataset(models.Model):
    """A listing: what is sold, its terms and prices; the data itself lives in its versions."""

    class Status(models.TextChoices):
        DRAFT = "draft"
        PUBLISHED = "published"
        WITHDRAWN = "withdrawn"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="datasets")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT, db_index=True)
    # Minor units (1 token = 100); None when the tier is not offered.
    price_download = models.BigIntegerField(null=True, blank=True)
    price_compute = models.BigIntegerField(null=True, blank=True)
    terms = models.JSONField(default=dict)
    preview_enabled = models.BooleanField(default=False)
    # The total ε that each compute-only licence may spend on differentially private analyses.
    privacy_budget = models.DecimalField(max_digits=6, decimal_places=2, default=Decimal("10.00"))
    current_version = models.ForeignKey(
        "DatasetVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        # Browsing reads published listings a page at a time in each offered order (selectors.SORTS): each
        # order has an index over the published rows, so a page is read in order, not sorted from them all.
        # A descending order scans its index backwards. The price expression must stay the one the browse
        # selector sorts by (the cheapest tier offered), or the planner cannot use it.
        indexes = [
            models.Index(F("created_at"), F("id"), name="dataset_published_created", condition=_PUBLISHED),
            models.Index(F("title"), F("id"), name="dataset_published_title", condition=_PUBLISHED),
            models.Index(
                Least(
                    Coalesce("price_download", "price_compute"), Coalesce("price_compute", "price_download")
                ),
                F("id"),
                name="dataset_published_price",
                condition=_PUBLISHED,
            ),
            models.Index(
                F("price_download"), F("id"), name="dataset_published_download", condition=_PUBLISHED
            ),
            models.Index(F("price_compute"), F("id"), name="dataset_published_compute", condition=_PUBLISHED),
            # The newest change to any listing, read on every browse request to key its cache.
            models.Index(F("updated_at"), name="dataset_updated"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(Q(price_download__isnull=True) | Q(price_download__gt=0))
                & (Q(price_compute__isnull=True) | Q(price_compute__gt=0)),
                name="dataset_prices_positive",
            ),
            models.CheckConstraint(condition=Q(privacy_budget__gt=0), name="dataset_privacy_budget_positive"),
        ]

    def __str__(self) -> str:
        return self.title


class DatasetVersion(models.Model):
    """One upload of a dataset's file, with the SHA-256 that the ledger records as its provenance."""

    class Status(models.TextChoices):
        PROCESSING = "processing"
        READY = "ready"
        FAILED = "failed"

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    file = models.FileField(upload_to="datasets/%Y/%m/")
    format = models.CharField(max_length=8, choices=[("csv", "CSV"), ("jsonl", "JSON Lines")])
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PROCESSING)
    stats = models.JSONField(null=True, blank=True)
    # The first rows as uploaded (strings), shown only when the owner opts in with `Dataset.preview_enabled`.
    preview = models.JSONField(null=True, blank=True)
    # The parsed columns (.npz, written by the statistics job) so that analyses never re-read the upload.
    columns_file = models.FileField(upload_to="datasets/columns/", blank=True)
    # The standardized feature matrix (.npy) for the default preprocessing, loaded by analyses without a copy,
    # and `{"options": ..., "metadata": ...}` to rebuild it (ml.unsupervised.Prepared).
    features_file = models.FileField(upload_to="datasets/features/", blank=True)
    features = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    stats_job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    published_seq = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-number"]
        constraints = [models.UniqueConstraint(fields=["dataset", "number"], name="dataset_version_number")]
        # Browsing by size ("most rows") walks versions by their row count and joins each to its listing.
        indexes = [models.Index(Cast(KT("stats__rows"), models.FloatField()), F("id"), name="version_rows")]

    def __str__(self) -> str:
        return f"{self.dataset} v{self.number}"


class License(models.Model):
    """A buyer's right to one tier of a dataset version, granted by a ledgered purchase."""

    class Tier(models.TextChoices):
        DOWNLOAD = "download"
        COMPUTE = "compute"

    buyer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="data_licenses"
    )
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="licenses")
    version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="licenses")
    tier = models.CharField(max_length=10, choices=Tier.choices)
    price = models.BigIntegerField()
    terms = models.JSONField()
    terms_hash = models.CharField(max_length=64)
    expires_at = models.DateTimeField(null=True, blank=True)
    entry_seq = models.BigIntegerField()
    # Compute-only licences: the listing's privacy budget when bought, and the ε that analyses have spent of it.
    epsilon_budget = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    epsilon_spent = models.DecimalField(max_digits=6, decimal_places=2, default=Decimal("0.00"))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["buyer", "dataset", "tier"], name="one_license_per_tier"),
            # The last guard against overspending; the analysis service checks under a row lock first.
            models.CheckConstraint(
                condition=Q(epsilon_budget__isnull=True) | Q(epsilon_spent__lte=F("epsilon_budget")),
                name="license_epsilon_within_budget",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.buyer} {self.tier} {self.dataset}"

    @property
    def epsilon_left(self) -> Decimal | None:
        return None if self.epsilon_budget is None else self.epsilon_budget - self.epsilon_spent


class Download(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="downloads")
    version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="downloads")
    license = models.ForeignKey(
        License, null=True, blank=True, on_delete=models.PROTECT, related_name="downloads"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.user} downloaded {self.version}"


class Analysis(models.Model):
    """One unsupervised analysis of a version: who asked, which kind with which options, whether it was private
    and the ε charged, and, once it ran, the hash of its result and the ledger entry that records it. Its status
    and result are its job's."""

    job = models.OneToOneField("jobs.Job", on_delete=models.PROTECT, related_name="analysis")
    version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="analyses")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="data_analyses")
    # The compute-only licence whose privacy budget paid for it; None for exact results (owner, download).
    license = models.ForeignKey(
        License, null=True, blank=True, on_delete=models.PROTECT, related_name="analyses"
    )
    kind = models.CharField(max_length=40)  # a name in marketplace.analyses.KINDS
    options = models.JSONField(default=dict)  # the validated options of jobkinds.AnalysisOptions, less ε
    private = models.BooleanField(default=False)
    epsilon = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    result_sha256 = models.CharField(max_length=64, blank=True)
    entry_seq = models.BigIntegerField(null=True, blank=True)
    # Not auto_now_add: the data migration keeps the time of the jobs it records.
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "analyses"
        constraints = [
            models.CheckConstraint(
                condition=Q(private=False, epsilon__isnull=True) | Q(private=True, epsilon__gt=0),
                name="analysis_epsilon_iff_private",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} of {self.version_id} (job {self.job_id})"
