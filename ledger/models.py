from django.db import models
from django.db.models import Q

from ledger.names import account_name


class LedgerHead(models.Model):
    """The single row every append locks: the next seq, the last hash, the Merkle frontier and the active key."""

    size = models.BigIntegerField(default=0)
    head_hash = models.BinaryField(max_length=32)
    # The roots of the complete subtrees along the right edge, as [[level, hex], ...], largest first: enough to
    # append a leaf and to compute the current root without reading the tree.
    frontier = models.JSONField(default=list)
    active_key_id = models.CharField(max_length=8, blank=True)

    def __str__(self) -> str:
        return f"ledger head at size {self.size}"


class SigningKey(models.Model):
    """A platform Ed25519 public key; its private half stays in LEDGER_KEY_FILE, never in the database."""

    key_id = models.CharField(max_length=8, unique=True)
    public_key = models.BinaryField(max_length=32)
    verifier_key = models.CharField(max_length=300)
    first_seq = models.BigIntegerField(help_text="the first entry this key signs")
    active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["first_seq"]
        constraints = [
            models.UniqueConstraint(fields=["active"], condition=Q(active=True), name="one_active_key")
        ]

    def __str__(self) -> str:
        return self.verifier_key


class Entry(models.Model):
    """One journal entry. Written only by ledger.services; never updated or deleted by the application."""

    seq = models.BigIntegerField(unique=True)
    kind = models.CharField(max_length=100, db_index=True)
    actor = models.CharField(max_length=64, db_index=True)
    payload = models.JSONField()
    created_at = models.DateTimeField()
    key_id = models.CharField(max_length=8)
    actor_key_id = models.CharField(max_length=16, null=True, blank=True)  # noqa: DJ001  (null is hashed as null)
    actor_signature = models.BinaryField(max_length=64, null=True, blank=True)
    prev_hash = models.BinaryField(max_length=32)
    entry_hash = models.BinaryField(max_length=32)
    leaf_hash = models.BinaryField(max_length=32)
    signature = models.BinaryField(max_length=64)
    idempotency_key = models.CharField(max_length=100, null=True, blank=True, unique=True)

    class Meta:
        ordering = ["-seq"]
        verbose_name_plural = "entries"

    def __str__(self) -> str:
        return f"#{self.seq} {self.kind}"


class MerkleNode(models.Model):
    """The hash of a complete subtree of 2**level leaves starting at leaf index * 2**level, for level ≥ 1
    (the leaves themselves are the entries' leaf_hash)."""

    level = models.PositiveSmallIntegerField()
    index = models.BigIntegerField()
    hash = models.BinaryField(max_length=32)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["level", "index"], name="merkle_node_position")]

    def __str__(self) -> str:
        return f"node {self.level}/{self.index}"


class Checkpoint(models.Model):
    """A signed note over the tree's root at `tree_size` (C2SP tlog-checkpoint)."""

    tree_size = models.BigIntegerField(unique=True)
    root_hash = models.BinaryField(max_length=32)
    note = models.TextField(help_text="the signed note as the platform signed it, without cosignatures")
    key_id = models.CharField(max_length=8)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-tree_size"]

    def __str__(self) -> str:
        return f"checkpoint at {self.tree_size}"


class Witness(models.Model):
    """An organization that checks our checkpoints' consistency and cosigns them (C2SP cosignature/v1)."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="witnesses"
    )
    name = models.CharField(max_length=200, unique=True)
    public_key = models.BinaryField(max_length=32)
    key_id = models.CharField(max_length=8)
    verifier_key = models.CharField(max_length=300)
    active = models.BooleanField(default=True)
    last_tree_size = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "witnesses"

    def __str__(self) -> str:
        return self.name


class Cosignature(models.Model):
    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="cosignatures")
    witness = models.ForeignKey(Witness, on_delete=models.PROTECT, related_name="cosignatures")
    timestamp = models.BigIntegerField()
    line = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["checkpoint", "witness"], name="one_cosignature_per_witness")
        ]

    def __str__(self) -> str:
        return f"{self.witness} on {self.checkpoint}"


class Account(models.Model):
    """A token account; its balance is the sum of the postings that name it, in integer minor units."""

    class Kind(models.TextChoices):
        USER = "user"
        ORG = "org"
        DAO = "dao"
        ESCROW = "escrow"
        DEPOSIT = "deposit"  # a user's call deposit (models_market's metered calls)
        TREASURY = "treasury"
        ISSUANCE = "issuance"

    name = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    balance = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            # The last guard against overdrafts: only issuance, the source of every mint, goes negative.
            models.CheckConstraint(
                condition=Q(balance__gte=0) | Q(kind="issuance"), name="account_no_overdraft"
            )
        ]

    def __str__(self) -> str:
        return self.name


class Escrow(models.Model):
    """Funds held for a payee until released, or refunded to the payer (on a condition or at a deadline)."""

    class Status(models.TextChoices):
        OPEN = "open"
        RELEASED = "released"
        REFUNDED = "refunded"

    payer = models.CharField(max_length=64)
    payee = models.CharField(max_length=64)
    amount = models.BigIntegerField()
    condition = models.CharField(max_length=300, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    opened_seq = models.BigIntegerField(null=True)
    closed_seq = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="escrow_positive_amount")]

    def __str__(self) -> str:
        return f"escrow {self.pk}: {self.payer} → {self.payee} {self.amount} ({self.status})"

    @property
    def account_name(self) -> str:
        return account_name(escrow=self.pk)
