"""Tokenized models: a model's versions (artifact, schema, card, provenance), one token per version with
ERC-721 semantics, access licences, metered calls with signed receipts, and their settlement batches.

Amounts are integers in minor units (1 token = 100), as everywhere on the ledger.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


class ModelAsset(models.Model):
    """A model as people name it ("Churn predictor"): its versions are what is trained, tokenized and sold."""

    class Task(models.TextChoices):
        CLASSIFICATION = "classification"
        REGRESSION = "regression"

    creator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="model_assets"
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    task = models.CharField(max_length=16, choices=Task.choices)
    tags = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.name


class ModelVersion(models.Model):
    """One trained or uploaded model: its artifact (safetensors + spec, or skops), the feature schema its
    inputs must match, its metrics and card, and where it came from."""

    class Status(models.TextChoices):
        PENDING = "pending"  # training or validating in a worker
        READY = "ready"
        FAILED = "failed"

    class Format(models.TextChoices):
        TORCH = "torch"  # safetensors weights + an ml.architecture spec
        SKLEARN = "sklearn"  # skops, loaded with ml.artifacts' allow-list

    class Origin(models.TextChoices):
        TRAINED = "trained"  # on the platform, from a dataset version
        UPLOADED = "uploaded"
        FEDERATED = "federated"  # trained together by a federation's parties

    asset = models.ForeignKey(ModelAsset, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING, db_index=True)
    error = models.TextField(blank=True)
    origin = models.CharField(max_length=10, choices=Origin.choices)
    format = models.CharField(max_length=8, choices=Format.choices, blank=True)
    algorithm = models.CharField(max_length=40, blank=True)
    artifact = models.FileField(upload_to="models/", blank=True)
    artifact_sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    size = models.BigIntegerField(default=0)
    spec = models.JSONField(null=True, blank=True)  # the architecture spec of a torch model
    schema = models.JSONField(null=True, blank=True)  # ml.features.FeatureSchema.to_json()
    # {"accuracy": {"value": 0.93, "source": "measured" | "self_reported"}, ...}
    metrics = models.JSONField(default=dict, blank=True)
    curve = models.JSONField(default=list, blank=True)  # the learning curve, [{"step": 1, "loss": ...}, ...]
    evaluation = models.JSONField(default=dict, blank=True)  # confusion matrix, calibration bins, split
    # The model card: intended use, limitations (and whatever the maker adds); inputs/outputs come from schema.
    card = models.JSONField(default=dict, blank=True)
    # Provenance of a model trained on the platform: the dataset version, its SHA-256 and ledger entry.
    trained_on = models.ForeignKey(
        "marketplace.DatasetVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    trained_on_sha256 = models.CharField(max_length=64, blank=True)
    # Differentially private training under a compute-only licence: the weights never leave the platform.
    private = models.BooleanField(default=False)
    privacy = models.JSONField(null=True, blank=True)  # ε, δ spent, noise, the licence charged
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The share of every per-call payment that flows up the lineage (parents and training data), in basis points.
    lineage_bp = models.PositiveIntegerField(default=0)
    entry_seq = models.BigIntegerField(null=True, blank=True)  # the ledger entry that recorded it
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["asset_id", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["asset", "number"], name="model_version_number_unique"),
            models.CheckConstraint(condition=Q(lineage_bp__lte=10_000), name="model_version_lineage_bp_max"),
        ]

    def __str__(self) -> str:
        return f"{self.asset.name} v{self.number}"

    @property
    def downloadable(self) -> bool:
        """Whether the token's owner may download the weights: never for a model trained under a compute-only
        licence, whose artifact stays on the platform."""
        return self.status == self.Status.READY and not self.private


class ModelParent(models.Model):
    """Lineage: a model version built on another (fine-tuned, distilled, federated)."""

    class Relation(models.TextChoices):
        FINE_TUNED = "fine_tuned"
        DISTILLED = "distilled"
        FEDERATED = "federated"

    child = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="parent_links")
    parent = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="child_links")
    relation = models.CharField(max_length=12, choices=Relation.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["child", "parent"], name="model_parent_unique"),
            models.CheckConstraint(condition=~Q(child=models.F("parent")), name="model_parent_not_self"),
        ]

    def __str__(self) -> str:
        return f"{self.child_id} {self.relation} from {self.parent_id}"


class ModelContributor(models.Model):
    """Lineage by contribution: a party that trained a federated version with others, and its weight (its
    measured contribution); the version's lineage share of every payment is split among them by weight."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="contributors")
    account = models.CharField(max_length=64)  # the ledger account paid: user:<id> or org:<id>
    weight = models.PositiveIntegerField()
    score = models.FloatField(null=True, blank=True)  # the contribution score the weight came from

    class Meta:
        ordering = ["version_id", "-weight", "account"]
        constraints = [
            models.UniqueConstraint(fields=["version", "account"], name="model_contributor_unique"),
            models.CheckConstraint(condition=Q(weight__gt=0), name="model_contributor_weight_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.account} ({self.weight}) on {self.version_id}"


class ModelToken(models.Model):
    """The one token of a model version (ERC-721 semantics): an id never reused, an owner, one approved
    operator cleared on every transfer, the artifact's SHA-256, and an enforced royalty (ERC-2981 semantics) to
    its creator on every resale. The owner sets the access offers."""

    # The primary key is the token id: a database sequence (AUTOINCREMENT on SQLite), never reused.
    version = models.OneToOneField(ModelVersion, on_delete=models.PROTECT, related_name="token")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="model_tokens")
    creator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    approved = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    artifact_sha256 = models.CharField(max_length=64)
    metadata = models.JSONField(default=dict, blank=True)
    royalty_bp = models.PositiveIntegerField(default=0)  # to the creator on every resale
    sale_price = models.BigIntegerField(
        null=True, blank=True
    )  # the token itself for sale; None: not for sale
    # Access offers (None: not offered): a perpetual licence, a licence for `timed_days`, a prepaid quota of
    # `quota_calls` calls; and the price of each call made under a perpetual or timed licence.
    price_perpetual = models.BigIntegerField(null=True, blank=True)
    price_timed = models.BigIntegerField(null=True, blank=True)
    timed_days = models.PositiveIntegerField(null=True, blank=True)
    price_quota = models.BigIntegerField(null=True, blank=True)
    quota_calls = models.PositiveIntegerField(null=True, blank=True)
    price_per_call = models.BigIntegerField(default=0)
    listed = models.BooleanField(default=False, db_index=True)  # access offered to buyers
    # A performance guarantee (blank metric: none): a guaranteed licence's price is held in escrow until the
    # model scores at least ("min") or at most ("max") the threshold on the buyer's sealed holdout.
    guarantee_metric = models.CharField(max_length=16, blank=True)
    guarantee_threshold = models.FloatField(null=True, blank=True)
    guarantee_direction = models.CharField(max_length=3, blank=True)
    # What the owner charges for scoring the model in a paid evaluation (None or 0: nothing).
    price_evaluation = models.BigIntegerField(null=True, blank=True)
    minted_seq = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-pk"]
        constraints = [
            models.CheckConstraint(condition=Q(royalty_bp__lte=10_000), name="model_token_royalty_bp_max"),
            models.CheckConstraint(
                condition=(Q(sale_price__isnull=True) | Q(sale_price__gt=0))
                & (Q(price_perpetual__isnull=True) | Q(price_perpetual__gt=0))
                & (Q(price_timed__isnull=True) | Q(price_timed__gt=0))
                & (Q(price_quota__isnull=True) | Q(price_quota__gt=0))
                & Q(price_per_call__gte=0)
                & (Q(price_evaluation__isnull=True) | Q(price_evaluation__gte=0)),
                name="model_token_prices_positive",
            ),
            models.CheckConstraint(
                condition=Q(price_timed__isnull=True) | Q(timed_days__gt=0), name="model_token_timed_days"
            ),
            models.CheckConstraint(
                condition=Q(price_quota__isnull=True) | Q(quota_calls__gt=0), name="model_token_quota_calls"
            ),
        ]

    def __str__(self) -> str:
        return f"token #{self.pk}"


class ModelLicense(models.Model):
    """The right to call a model version: perpetual, until `expires_at` (like ERC-4907's user and expires), or
    for `calls_left` prepaid calls."""

    class Kind(models.TextChoices):
        PERPETUAL = "perpetual"
        TIMED = "timed"
        QUOTA = "quota"

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="licenses")
    holder = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="model_licenses"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    price = models.BigIntegerField()
    price_per_call = models.BigIntegerField(default=0)  # fixed at purchase; 0 for a quota licence
    expires_at = models.DateTimeField(null=True, blank=True)
    calls_left = models.PositiveIntegerField(null=True, blank=True)  # quota licences only
    calls_made = models.PositiveIntegerField(default=0)
    entry_seq = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["holder", "version"], name="model_license_holder_version")]
        constraints = [
            models.CheckConstraint(
                condition=Q(price__gte=0) & Q(price_per_call__gte=0), name="model_license_price"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} licence #{self.pk}"


class CallMeter(models.Model):
    """What a caller's unsettled calls have reserved of their balance: a call is admitted only while the
    ledger balance less `reserved` covers its price, so concurrent calls can never overdraw.

    The balance is that of the caller's call deposit (`deposit:<user id>` on the ledger), which `deposit`
    mirrors: every change to the deposit is made under this row's lock and sets it, so that admitting a call is
    one conditional UPDATE of this row."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="call_meter")
    reserved = models.BigIntegerField(default=0)
    deposit = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(reserved__gte=0), name="call_meter_reserved_positive"),
            models.CheckConstraint(condition=Q(reserved__lte=models.F("deposit")), name="call_meter_covered"),
        ]

    def __str__(self) -> str:
        return f"meter of user {self.user_id}"


class Settlement(models.Model):
    """A batch of calls settled to the ledger in one entry that carries the Merkle root of their receipts."""

    entry_seq = models.BigIntegerField(unique=True)
    merkle_root = models.CharField(max_length=64)
    calls = models.PositiveIntegerField()
    total = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"settlement #{self.pk} ({self.calls} calls)"


class Receipt(models.Model):
    """One metered call, signed by the platform: model version hash, SHA-256 of the input and of the output,
    price, caller, time and sequence number (the primary key), alone or in a group of calls written together.
    `leaf_index` is its place in its settlement's Merkle tree once settled."""

    license = models.ForeignKey(ModelLicense, on_delete=models.PROTECT, related_name="receipts")
    # The version and the caller are the licence's (the call's statement checks l.version_id and l.holder_id),
    # whose own foreign keys hold them: the database does not check them again on every call's insert.
    version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="receipts", db_constraint=False
    )
    # Looked up by the indexes below (their first column): a call writes five index entries, not seven.
    caller = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="model_receipts", db_index=False,
        db_constraint=False,
    )  # fmt: skip
    price = models.BigIntegerField()
    model_sha256 = models.CharField(max_length=64)
    input_sha256 = models.CharField(max_length=64)
    output_sha256 = models.CharField(max_length=64)
    rows = models.PositiveIntegerField()
    issued_at = models.DateTimeField()
    body = models.JSONField()  # exactly what was signed (canonical JSON, RFC 8785)
    key_id = models.CharField(max_length=16)
    signature = models.CharField(max_length=128)  # Ed25519, hex
    # Signed with the calls written together with it: its place among them, its salt and its audit path to their
    # Merkle root, which the signature is of ({"index", "size", "salt", "path"}); None when signed alone.
    signing_group = models.JSONField(null=True, blank=True)
    settlement = models.ForeignKey(
        Settlement, null=True, blank=True, on_delete=models.PROTECT, related_name="receipts", db_index=False
    )
    leaf_index = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-pk"]
        indexes = [
            models.Index(fields=["settlement", "id"], name="receipt_settlement"),
            models.Index(fields=["caller", "-id"], name="receipt_caller"),
        ]

    def __str__(self) -> str:
        return f"receipt #{self.pk}"


class Holdout(models.Model):
    """Abstract: a sealed holdout, labelled rows uploaded to score models on, never shown to a model's owner
    and deleted once scored; its SHA-256 stays (and is ledgered)."""

    class Status(models.TextChoices):
        PENDING = "pending"  # queued or running
        DONE = "done"
        FAILED = "failed"  # the holdout did not fit, or the job failed: refunded
        EXPIRED = "expired"  # the escrow's deadline passed first: refunded by the ledger's beat task

    holdout = models.FileField(upload_to="holdouts/", blank=True)  # emptied once scored
    holdout_sha256 = models.CharField(max_length=64)
    holdout_format = models.CharField(max_length=5)  # csv | jsonl
    holdout_rows = models.PositiveIntegerField(default=0)
    metric = models.CharField(max_length=16)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING, db_index=True)
    error = models.TextField(blank=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    entry_seq = models.BigIntegerField(null=True, blank=True)  # the entry that opened it (paid, escrowed)
    result_seq = models.BigIntegerField(null=True, blank=True)  # the entry that ledgered the result
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


class GuaranteedPurchase(Holdout):
    """A licence bought under the token's performance guarantee: its price is held in a ledger escrow (payee:
    the token's owner at purchase) until a worker scores the model on the buyer's holdout."""

    class Outcome(models.TextChoices):
        MET = "met"  # paid to the seller, licence granted
        MISSED = "missed"  # refunded, no licence

    token = models.ForeignKey(ModelToken, on_delete=models.PROTECT, related_name="guaranteed_purchases")
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    buyer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    seller = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=10, choices=ModelLicense.Kind.choices)
    price = models.BigIntegerField()
    threshold = models.FloatField()
    direction = models.CharField(max_length=3)  # min | max
    escrow_id = models.BigIntegerField()
    deadline = models.DateTimeField()
    measured = models.FloatField(null=True, blank=True)
    outcome = models.CharField(max_length=8, choices=Outcome.choices, blank=True)
    license = models.OneToOneField(
        ModelLicense, null=True, blank=True, on_delete=models.PROTECT, related_name="guarantee"
    )

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [models.CheckConstraint(condition=Q(price__gt=0), name="guaranteed_purchase_price")]

    def __str__(self) -> str:
        return f"guaranteed purchase #{self.pk}"


class Evaluation(Holdout):
    """A paid evaluation: several listed model versions of one task scored on the user's holdout and ranked."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    task = models.CharField(max_length=16, choices=ModelAsset.Task.choices)
    fee = models.BigIntegerField()  # to the treasury
    total = models.BigIntegerField()  # the fee and every owner's evaluation price
    # The ledger escrow holding `total` (payee: the treasury) until the ranking pays it out; none when free.
    escrow_id = models.BigIntegerField(null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)  # the escrow's: refunded in full after it

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"evaluation #{self.pk}"


class EvaluationScore(models.Model):
    """One model's row of an evaluation: what its owner was paid, its measured metric, interval and rank. The
    owner sees this row only."""

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="scores")
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    price = models.BigIntegerField(default=0)
    estimate = models.FloatField(null=True, blank=True)
    low = models.FloatField(null=True, blank=True)
    high = models.FloatField(null=True, blank=True)
    rank = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["evaluation_id", "rank", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["evaluation", "version"], name="evaluation_score_unique"),
        ]

    def __str__(self) -> str:
        return f"score of version {self.version_id} in evaluation {self.evaluation_id}"
