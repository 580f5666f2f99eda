"""Sealed holdouts: labelled rows a buyer or evaluator uploads to score models on. Read once in the web process
(size-limited) so that junk is a 400, stored under an unguessable name, never shown to a model's owner, and
deleted once scored; only the SHA-256 stays."""

import contextlib
import hashlib
import io
import math
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from ledger import selectors as ledger_selectors
from ledger import services as ledger
from ml.features import FeatureError, FeatureSchema
from ml.privacy import MIN_COUNT
from ml.tabular import Table, TabularError, read_table
from platform_site.errors import Conflict, DomainError

FORMATS = ("csv", "jsonl")
# A holdout has exactly a model's input columns and its target, and a feature schema has at most 10,000 inputs.
HOLDOUT_MAX_COLUMNS = 10_001
# Fewer rows and the holdout's SHA-256 (ledgered, shown to the seller) and the measured metric single out rows.
HOLDOUT_MIN_ROWS = MIN_COUNT


@dataclass
class Sealed:
    data: bytes
    sha256: str
    fmt: str
    table: Table


def holdout_format(name: str, fmt: str | None = None) -> str:
    """csv or jsonl: as given, or from the file's name."""
    if fmt:
        if fmt not in FORMATS:
            raise DomainError("the holdout's format must be csv or jsonl")
        return fmt
    lowered = (name or "").lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    raise DomainError("name the holdout file .csv or .jsonl (or give its format)")


def holdout_read(data: bytes, fmt: str) -> Table:
    """The holdout's table; DomainError (a 400) for an empty, oversized, unreadable or non-finite one."""
    if not data:
        raise DomainError("the holdout file is empty")
    if len(data) > settings.MODELS_HOLDOUT_MAX_BYTES:
        raise DomainError(f"the holdout is larger than {settings.MODELS_HOLDOUT_MAX_BYTES:,} bytes")
    try:
        # Cells bounded by the bytes too: a JSON line without a key is a cell in every column, for 3 bytes.
        table = read_table(
            io.BytesIO(data), fmt=fmt, max_rows=settings.MODELS_HOLDOUT_MAX_ROWS,
            max_columns=HOLDOUT_MAX_COLUMNS, max_cells=settings.MODELS_HOLDOUT_MAX_BYTES,
        )  # fmt: skip
    except (TabularError, UnicodeDecodeError, ValueError, OverflowError) as exc:
        raise DomainError(f"the holdout cannot be read: {exc}") from None
    if table.truncated:
        raise DomainError(f"the holdout has more than {settings.MODELS_HOLDOUT_MAX_ROWS:,} rows")
    if table.n_rows == 0:
        raise DomainError("the holdout has no rows")
    for name, values in table.numeric.items():
        finite = values[~_nan(values)]
        if finite.size and not all(math.isfinite(float(v)) for v in (finite.min(), finite.max())):
            raise DomainError(f'column "{name}" holds a number too large to compute with')
    return table


def _nan(values: Any) -> Any:
    import numpy as np

    return np.isnan(values)


def holdout_seal(*, file: Any, fmt: str | None = None, schemas: list[FeatureSchema]) -> Sealed:
    """Read an uploaded holdout and check it has every model's target, labelled; a DomainError says why not."""
    if file is None:
        raise DomainError("upload the holdout file (labelled rows, CSV or JSON Lines)")
    fmt = holdout_format(getattr(file, "name", ""), fmt)
    if getattr(file, "size", 0) and file.size > settings.MODELS_HOLDOUT_MAX_BYTES:
        raise DomainError(f"the holdout is larger than {settings.MODELS_HOLDOUT_MAX_BYTES:,} bytes")
    data = file.read(settings.MODELS_HOLDOUT_MAX_BYTES + 1)
    table = holdout_read(data, fmt)
    from ml import evaluation

    for schema in schemas:
        target = schema.target["name"]
        if target not in table.columns:
            raise DomainError(f'the holdout has no column "{target}", the target the model predicts')
        try:
            evaluation.labels(table, schema)
        except FeatureError as exc:
            raise DomainError(f"the holdout's labels do not fit the model: {exc}") from None
    if table.n_rows < HOLDOUT_MIN_ROWS:
        raise DomainError(
            f"the holdout has {table.n_rows} row(s); at least {HOLDOUT_MIN_ROWS} are needed, so that neither its "
            "SHA-256 nor the measured figure tells the model's owner a single row"
        )
    return Sealed(data=data, sha256=hashlib.sha256(data).hexdigest(), fmt=fmt, table=table)


def holdout_store(sealed: Sealed) -> str:
    """Save the holdout under a random name; the name is kept on the row only (never shown)."""
    return default_storage.save(f"holdouts/{uuid.uuid4().hex}.{sealed.fmt}", ContentFile(sealed.data))


def holdout_load(name: str, fmt: str) -> Table:
    with default_storage.open(name, "rb") as fh:
        data = fh.read()
    return holdout_read(data, fmt)


def holdout_discard(row: Any) -> None:
    """Forget the row's holdout file now and delete it once the transaction commits (a rollback keeps it)."""
    name = row.holdout.name if row.holdout else ""
    row.holdout = ""
    if name:
        transaction.on_commit(partial(_delete, name))


def holdout_close_expired(row: Any, *, who: str) -> None:
    """Close a pending guaranteed purchase or evaluation whose deadline passed: its escrow refunded (by the
    ledger's beat task already, or here), the row marked expired and its holdout discarded. The caller holds the
    row's lock; `who` is the payer in words ("the buyer")."""
    if row.escrow_id is not None:
        with contextlib.suppress(Conflict):  # the escrow's own beat task refunded it first
            ledger.escrow_refund(escrow=ledger_selectors.escrow_get(escrow_id=row.escrow_id), actor="system",
                                 reason="deadline passed")  # fmt: skip
    row.status = row.Status.EXPIRED
    row.error = f"the evaluation did not finish before the deadline; {who} was refunded"
    row.finished_at = timezone.now()
    holdout_discard(row)
    row.save()


def holdouts_expire(model: Any, *, who: str) -> int:
    """Close every pending row of `model` (a Holdout: GuaranteedPurchase or Evaluation) past its deadline, as
    `holdout_close_expired`; returns how many."""
    closed = 0
    overdue = model.objects.filter(status=model.Status.PENDING, deadline__lt=timezone.now())
    for pk in overdue.values_list("pk", flat=True):
        # One durable transaction per row: one failure must not undo the others.
        with transaction.atomic(durable=True):
            # Locked: the worker's result and a failure settle it at most once.
            row = model.objects.select_for_update().get(pk=pk)
            if row.status != model.Status.PENDING:
                continue
            holdout_close_expired(row, who=who)
            closed += 1
    return closed


def _delete(name: str) -> None:
    default_storage.delete(name)


def number_text(value: float | None) -> str | None:
    """A measured number as the ledger holds it (its payloads take no floats): the shortest exact decimal."""
    return None if value is None else repr(float(value))
