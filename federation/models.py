"""Federated learning's tables: federations, their parties, rounds, the signed updates parties submit, the
refusals (each ledgered), the secure-aggregation keys of a round and the payouts at the end."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from ledger.names import account_name

# How pages name each aggregation strategy.
STRATEGY_LABELS = {
    "fedavg": "FedAvg (weighted by examples)",
    "fedprox": "FedProx (proximal term on the parties' side)",
    "fedadam": "FedAdam (server optimizer)",
    "median": "Coordinate-wise median",
    "trimmed_mean": "Trimmed mean",
    "krum": "Krum",
    "multi_krum": "Multi-Krum",
    "bulyan": "Bulyan",
}


class Federation(models.Model):
    """One federated training: the task, the model, the recipe every party trains with, how updates are
    aggregated, its privacy, rounds and reward pool (escrowed on the ledger at creation)."""

    class Status(models.TextChoices):
        RECRUITING = "recruiting", "Recruiting"
        RUNNING = "running", "Running"
        FINISHED = "finished", "Finished"
        FAILED = "failed", "Failed"

    ACTIVE = (Status.RECRUITING, Status.RUNNING)

    coordinator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="coordinated_federations"
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RECRUITING, db_index=True)
    schema = models.JSONField(help_text="ml.features.FeatureSchema JSON: the task's columns and target")
    spec = models.JSONField(help_text="the validated ml.architecture MLP spec")
    recipe = models.JSONField(
        help_text="local training: optimizer, lr, batch_size, local_epochs, proximal_mu"
    )
    strategy = models.CharField(max_length=20)
    options = models.JSONField(default=dict, blank=True)
    privacy = models.JSONField(
        null=True, blank=True, help_text="{clip_norm, noise_multiplier, delta} or null"
    )
    secure_aggregation = models.BooleanField(default=False)
    update_norm_bound = models.FloatField()
    max_update_bytes = models.PositiveBigIntegerField()
    rounds = models.PositiveIntegerField(help_text="the most rounds aggregated")
    min_parties = models.PositiveIntegerField()
    round_deadline = models.PositiveIntegerField(help_text="seconds a round stays open")
    target_metric = models.CharField(max_length=16)
    target_value = models.FloatField(null=True, blank=True)
    contribution_method = models.CharField(max_length=10, default="loo")
    seed = models.PositiveIntegerField(default=0)
    reward_pool = models.PositiveBigIntegerField(default=0, help_text="minor units, escrowed at creation")
    fee_bp = models.PositiveIntegerField(help_text="the platform's fee on the pool, in basis points")
    escrow_id = models.BigIntegerField(null=True, blank=True)
    validation = models.FileField(upload_to="federation/validation/", max_length=300)
    validation_sha256 = models.CharField(max_length=64)
    validation_rows = models.PositiveIntegerField(default=0)
    global_sha256 = models.CharField(max_length=64, blank=True, help_text="the current global model's digest")
    model_version_id = models.BigIntegerField(null=True, blank=True, help_text="the minted final model")
    error = models.TextField(blank=True)
    created_seq = models.BigIntegerField(null=True, blank=True)
    finished_seq = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["coordinator", "status"])]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def strategy_label(self) -> str:
        return STRATEGY_LABELS.get(self.strategy, self.strategy)


class Party(models.Model):
    """A user or an organization taking part in a federation, identified by its registered Ed25519 keys."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ADMITTED = "admitted", "Admitted"
        REMOVED = "removed", "Removed"

    federation = models.ForeignKey(Federation, on_delete=models.CASCADE, related_name="parties")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="federation_parties",
    )
    organization = models.ForeignKey(
        "accounts.Organization",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="federation_parties",
    )
    key_id = models.CharField(max_length=16, help_text="the key it joined with")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="federation_join_requests"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    contribution = models.FloatField(null=True, blank=True, help_text="its measured contribution score")
    weight = models.PositiveBigIntegerField(null=True, blank=True, help_text="its integer reward weight")
    epsilon_spent = models.FloatField(default=0.0)
    joined_seq = models.BigIntegerField(null=True, blank=True)
    admitted_seq = models.BigIntegerField(null=True, blank=True)
    removed_seq = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["federation_id", "id"]
        verbose_name_plural = "parties"
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(user__isnull=False, organization__isnull=True)
                    | Q(user__isnull=True, organization__isnull=False)
                ),
                name="federation_party_one_owner",
            ),
            models.UniqueConstraint(
                fields=["federation", "user"], condition=Q(user__isnull=False), name="federation_party_user"
            ),
            models.UniqueConstraint(
                fields=["federation", "organization"],
                condition=Q(organization__isnull=False),
                name="federation_party_org",
            ),
        ]

    def __str__(self) -> str:
        return f"party {self.pk} of {self.federation_id} ({self.owner_label})"

    @property
    def name(self) -> str:
        """Who the party is, as pages show it: the organization's name or the user's."""
        return self.organization.name if self.organization_id else self.user.username

    @property
    def owner_label(self) -> str:
        """The party's ledger account (and actor) name."""
        return (
            account_name(org=self.organization_id)
            if self.organization_id
            else account_name(user=self.user_id)
        )


class Round(models.Model):
    """One round: the global model published for it (file and digest), the updates it takes until its deadline,
    and once aggregated the new global model, its metrics and which updates were included or excluded."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        AGGREGATING = "aggregating", "Aggregating"
        CLOSED = "closed", "Closed"
        FAILED = "failed", "Failed"

    federation = models.ForeignKey(Federation, on_delete=models.CASCADE, related_name="round_set")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN, db_index=True)
    global_sha256 = models.CharField(max_length=64, help_text="the global model the parties train from")
    weights = models.FileField(upload_to="federation/rounds/", max_length=300)
    deadline = models.DateTimeField(db_index=True)
    extensions = models.PositiveSmallIntegerField(default=0)
    secagg_roster = models.JSONField(null=True, blank=True, help_text="party ids that mask together")
    result_sha256 = models.CharField(max_length=64, blank=True, help_text="the aggregated global model")
    result = models.FileField(upload_to="federation/rounds/", max_length=300, blank=True)
    server_state = models.FileField(upload_to="federation/rounds/", max_length=300, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    included = models.JSONField(default=list, blank=True, help_text="digests of the updates aggregated")
    excluded = models.JSONField(default=dict, blank=True, help_text="digest -> why it was left out")
    error = models.TextField(blank=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    opened_seq = models.BigIntegerField(null=True, blank=True)
    aggregated_seq = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["federation_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["federation", "number"], name="federation_round_number")
        ]

    def __str__(self) -> str:
        return f"round {self.number} of federation {self.federation_id}"


class Update(models.Model):
    """A party's accepted, signed update to one round: the file as sent and the digest the server recomputed."""

    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="updates")
    party = models.ForeignKey(Party, on_delete=models.PROTECT, related_name="updates")
    sha256 = models.CharField(max_length=64)
    num_examples = models.PositiveBigIntegerField()
    metrics = models.JSONField(default=dict, blank=True)
    masked = models.BooleanField(default=False)
    norm_bound = models.FloatField(null=True, blank=True, help_text="masked: the bound the party attests")
    file = models.FileField(upload_to="federation/updates/", max_length=300)
    size = models.PositiveBigIntegerField()
    key_id = models.CharField(max_length=16)
    signature = models.CharField(max_length=100)
    entry_seq = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["round_id", "id"]
        constraints = [models.UniqueConstraint(fields=["round", "party"], name="federation_update_once")]

    def __str__(self) -> str:
        return f"update {self.sha256[:12]} to {self.round}"


class Rejection(models.Model):
    """An update refused, with why: kept (and ledgered) so that forgeries and replays leave a trace."""

    federation = models.ForeignKey(Federation, on_delete=models.CASCADE, related_name="rejections")
    round = models.ForeignKey(
        Round, null=True, blank=True, on_delete=models.CASCADE, related_name="rejections"
    )
    party = models.ForeignKey(
        Party, null=True, blank=True, on_delete=models.SET_NULL, related_name="rejections"
    )
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="federation_rejections"
    )
    key_id = models.CharField(max_length=100, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    reason = models.TextField()
    status_code = models.PositiveSmallIntegerField(default=400)
    entry_seq = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"rejection {self.pk}: {self.reason[:60]}"


class SecaggKey(models.Model):
    """A party's X25519 public key for masking in one round, signed with its Ed25519 key."""

    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="secagg_keys")
    party = models.ForeignKey(Party, on_delete=models.PROTECT, related_name="secagg_keys")
    public_key = models.CharField(max_length=64)
    key_id = models.CharField(max_length=16)
    signature = models.CharField(max_length=100)
    entry_seq = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["round_id", "party_id"]
        constraints = [models.UniqueConstraint(fields=["round", "party"], name="federation_secagg_key_once")]

    def __str__(self) -> str:
        return f"secagg key of party {self.party_id} for {self.round}"


class Payout(models.Model):
    """A party's share of the reward pool, by its contribution score; `entry_seq` is its ledger entry."""

    federation = models.ForeignKey(Federation, on_delete=models.CASCADE, related_name="payouts")
    party = models.ForeignKey(Party, on_delete=models.PROTECT, related_name="payouts")
    account = models.CharField(max_length=64)
    amount = models.PositiveBigIntegerField()
    score = models.FloatField()
    weight = models.PositiveBigIntegerField()
    entry_seq = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["federation_id", "-amount", "party_id"]
        constraints = [models.UniqueConstraint(fields=["federation", "party"], name="federation_payout_once")]

    def __str__(self) -> str:
        return f"payout of {self.amount} to party {self.party_id}"
