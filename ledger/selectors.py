from dataclasses import dataclass

from django.db import connection
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL

from ledger import chain, merkle
from ledger.models import Account, Checkpoint, Entry, Escrow, LedgerHead, MerkleNode, SigningKey
from ledger.names import ISSUANCE, account_name
from platform_site.accounts import selectors as accounts_selectors
from platform_site.errors import DomainError, NotFound


class DbNodes:
    """The stored Merkle tree as a merkle.NodeSource, reading each complete-subtree hash once."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int], bytes] = {}

    def node(self, level: int, index: int) -> bytes:
        key = (level, index)
        if key not in self._cache:
            if level == 0:
                row = Entry.objects.filter(seq=index).values_list("leaf_hash", flat=True).first()
            else:
                row = (
                    MerkleNode.objects.filter(level=level, index=index).values_list("hash", flat=True).first()
                )
            if row is None:
                raise RuntimeError(f"the Merkle node {level}/{index} is missing")
            self._cache[key] = bytes(row)
        return self._cache[key]


def ledger_size() -> int:
    return LedgerHead.objects.values_list("size", flat=True).filter(pk=1).first() or 0


def entry_list(
    *, kind: str = "", actor: str = "", seq_min: int | None = None, seq_max: int | None = None
) -> QuerySet[Entry]:
    entries = Entry.objects.all()
    if kind:
        entries = (
            entries.filter(kind=kind) if not kind.endswith(".") else entries.filter(kind__startswith=kind)
        )
    if actor:
        entries = entries.filter(actor=actor)
    if seq_min is not None:
        entries = entries.filter(seq__gte=seq_min)
    if seq_max is not None:
        entries = entries.filter(seq__lte=seq_max)
    return entries.order_by("-seq")


def entry_get(*, seq: int) -> Entry:
    # A seq past any bigint is no entry (and must not reach the database, where it overflows).
    entry = Entry.objects.filter(seq=seq).first() if 0 <= seq <= chain.JSON_INT_MAX else None
    if entry is None:
        raise NotFound(f"no entry {seq}")
    return entry


def entry_list_for_account(*, name: str, limit: int) -> list[Entry]:
    """The newest entries whose payload.postings name `account`, exactly, on either database."""
    entries = Entry.objects.only("seq", "kind", "created_at", "payload").order_by("-seq")
    if connection.vendor == "sqlite":
        # SQLite has no JSON containment (Django refuses `contains` there); json_each over the postings is just
        # as exact. Filtering by actor instead would miss what others pay you, and scanning only the newest N
        # entries in Python would lose older ones.
        table = connection.ops.quote_name(Entry._meta.db_table)
        touches = RawSQL(  # noqa: S611 (the account travels as a parameter)
            f"EXISTS (SELECT 1 FROM json_each({table}.payload, '$.postings') AS p "  # noqa: S608 (a model's table)
            "WHERE json_extract(p.value, '$.account') = %s)",
            [name],
            output_field=BooleanField(),
        )
        entries = entries.filter(touches)
    else:
        # PostgreSQL: jsonb containment (`@>`) of one posting in the postings array.
        entries = entries.filter(payload__postings__contains=[{"account": name}])
    return list(entries[:limit])


def entries_mentioning(*, key: str, value) -> QuerySet[Entry]:
    """Entries whose payload has `key` equal to `value` (e.g. every entry of escrow 7): for links from objects."""
    return Entry.objects.filter(**{f"payload__{key}": value}).order_by("seq")


def escrow_get(*, escrow_id: int) -> Escrow:
    """The escrow with this id (read, not locked: escrow_release/escrow_refund lock it themselves); NotFound
    otherwise."""
    escrow = Escrow.objects.filter(pk=escrow_id).first() if 0 < escrow_id <= chain.JSON_INT_MAX else None
    if escrow is None:
        raise NotFound(f"no escrow {escrow_id}")
    return escrow


def checkpoint_latest() -> Checkpoint | None:
    return Checkpoint.objects.order_by("-tree_size").first()


def checkpoint_get(*, tree_size: int | None = None) -> Checkpoint:
    checkpoint = (
        checkpoint_latest() if tree_size is None else Checkpoint.objects.filter(tree_size=tree_size).first()
    )
    if checkpoint is None:
        raise NotFound(
            "no checkpoint yet" if tree_size is None else f"no checkpoint at tree size {tree_size}"
        )
    return checkpoint


def checkpoint_note_with_cosignatures(checkpoint: Checkpoint) -> str:
    lines = "".join(c.line for c in checkpoint.cosignatures.order_by("pk"))
    return checkpoint.note + lines


@dataclass(frozen=True)
class InclusionProof:
    seq: int
    tree_size: int
    leaf_hash: bytes
    proof: list[bytes]
    root_hash: bytes


def inclusion_proof(*, seq: int, tree_size: int) -> InclusionProof:
    size = ledger_size()
    if seq < 0 or tree_size <= 0:
        raise DomainError("seq must be ≥ 0 and tree_size ≥ 1")
    if tree_size > size:
        raise DomainError(f"tree_size {tree_size} is past the head ({size} entries)")
    if seq >= tree_size:
        raise DomainError(f"entry {seq} is not in a tree of {tree_size} entries")
    nodes = DbNodes()
    return InclusionProof(
        seq=seq,
        tree_size=tree_size,
        leaf_hash=nodes.node(0, seq),
        proof=merkle.inclusion_proof(seq, tree_size, nodes),
        root_hash=merkle.root(tree_size, nodes),
    )


@dataclass(frozen=True)
class ConsistencyProof:
    first: int
    second: int
    first_root: bytes
    second_root: bytes
    proof: list[bytes]


def consistency_proof(*, first: int, second: int) -> ConsistencyProof:
    size = ledger_size()
    if first <= 0:
        raise DomainError("first must be ≥ 1: every tree is consistent with the empty one")
    if first > second:
        raise DomainError(f"first ({first}) must not be larger than second ({second})")
    if second > size:
        raise DomainError(f"second {second} is past the head ({size} entries)")
    nodes = DbNodes()
    return ConsistencyProof(
        first=first,
        second=second,
        first_root=merkle.root(first, nodes),
        second_root=merkle.root(second, nodes),
        proof=merkle.consistency_proof(first, second, nodes),
    )


def signing_key_list() -> QuerySet[SigningKey]:
    return SigningKey.objects.order_by("first_seq")


def account_balance(*, name: str) -> int:
    return Account.objects.filter(name=name).values_list("balance", flat=True).first() or 0


def account_count() -> int:
    return Account.objects.count()


def total_supply() -> int:
    """Every token ever minted: minus the balance of issuance, the account every mint debits."""
    return -account_balance(name=ISSUANCE)


def account_list_for_user(*, user) -> QuerySet[Account]:
    """The user's own account and those of the organizations they belong to."""
    org_names = [account_name(org=pk) for pk in accounts_selectors.organization_ids_for_user(user=user)]
    return Account.objects.filter(name__in=[account_name(user=user), *org_names]).order_by("name")
