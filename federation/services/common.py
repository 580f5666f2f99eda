"""What every federation service shares: checked numbers, ledger-safe figures, the model's tensor shapes and
files of tensors in storage."""

import base64
import io
import json
import math
import uuid
from typing import Any

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from ledger import services as ledger
from platform_site.errors import DomainError

# The metrics the validation data gives per task, and which way is better.
METRICS = {
    "classification": {"accuracy": "max", "loss": "min"},
    "regression": {"loss": "min", "rmse": "min", "mae": "min", "r2": "max"},
}
STRATEGY_NAMES = ("fedavg", "fedprox", "fedadam", "median", "trimmed_mean", "krum", "multi_krum", "bulyan")
SUM_BASED = ("fedavg", "fedprox", "fedadam")
# Safetensors header room beyond the raw numbers of an update.
HEADER_SLACK = 64 * 1024

SYSTEM = "system"  # the ledger actor of the platform's own steps (deadlines, aggregation, payouts)


def int_check(value: Any, what: str, low: int, high: int) -> int:
    """`value` when it is a whole number from low to high; a DomainError (400) naming `what` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DomainError(f"{what} must be a whole number from {low:,} to {high:,}, not {value!r}"[:300])
    return value


def float_check(value: Any, what: str, low: float, high: float, *, low_open: bool = False) -> float:
    """`value` as a float when it is a finite number in [low, high] ((low, high] with low_open)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DomainError(f"{what} must be a number, not {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        raise DomainError(f"{what} is too large") from None
    if not math.isfinite(number):
        raise DomainError(f"{what} must be a finite number (not NaN or infinity)")
    if number < low or number > high or (low_open and number == low):
        bracket = "(" if low_open else "["
        raise DomainError(f"{what} must be in {bracket}{low:g}, {high:g}], not {number:g}")
    return number


def figure(value: Any) -> Any:
    """A number as the ledger holds it (its payloads take no floats): ints as they are, floats as the shortest
    exact decimal text; None stays None; dicts and lists recursively."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float | np.floating):
        return repr(float(value))
    if isinstance(value, dict):
        return {str(k): figure(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [figure(v) for v in value]
    return str(value)


def finite_metrics(metrics: Any, *, what: str = "metrics") -> dict[str, float]:
    """A party's or the server's metrics: a JSON object of at most 20 names, each a finite number (or null)."""
    if metrics in (None, ""):
        return {}
    if not isinstance(metrics, dict) or len(metrics) > 20:
        raise DomainError(f"{what} must be a JSON object of at most 20 names, each a number")
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not 0 < len(name) <= 40:
            raise DomainError(f"{what}: names are text of 1 to 40 characters")
        if value is None:
            continue
        out[name] = float_check(value, f"{what}.{name}", -1e12, 1e12)
    return out


def shapes(spec: dict) -> dict[str, tuple[int, ...]]:
    from ml.architecture import parameter_shapes

    return parameter_shapes(spec)


def tensors_save(folder: str, data: bytes) -> str:
    """Bytes under a fresh name in `folder` (federation/...), returned as the storage name."""
    return default_storage.save(f"federation/{folder}/{uuid.uuid4().hex}.safetensors", ContentFile(data))


def file_bytes(field: Any) -> bytes:
    with field.open("rb") as fh:
        return fh.read()


def tensors_load(field: Any, spec: dict) -> dict[str, np.ndarray]:
    """The float32 tensors of a stored model or update file (checked against the spec's shapes)."""
    from ml.federated import tensors

    return tensors.decode(file_bytes(field), shapes=shapes(spec), max_bytes=2**40)


# A server state (FedAdam's moments) may hold arrays: stored as JSON with each array as dtype, shape and
# base64 bytes (never pickle).
def state_dump(state: Any) -> bytes:
    def walk(item: Any) -> Any:
        if isinstance(item, np.ndarray):
            array = np.ascontiguousarray(item)
            return {"__array__": base64.b64encode(array.tobytes()).decode(), "dtype": array.dtype.str,
                    "shape": list(array.shape)}  # fmt: skip
        if isinstance(item, dict):
            return {str(k): walk(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [walk(v) for v in item]
        if isinstance(item, np.generic):
            return item.item()
        return item

    return json.dumps(walk(state), sort_keys=True).encode()


def state_load(data: bytes) -> Any:
    allowed = {"<f4", "<f8", "<i8", "<u8", "<i4"}

    def walk(item: Any) -> Any:
        if isinstance(item, dict) and "__array__" in item:
            if item["dtype"] not in allowed:
                raise DomainError(f"unexpected array type {item['dtype']} in the server state")
            raw = base64.b64decode(item["__array__"])
            return np.frombuffer(raw, dtype=np.dtype(item["dtype"])).reshape(item["shape"]).copy()
        if isinstance(item, dict):
            return {k: walk(v) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v) for v in item]
        return item

    return walk(json.loads(io.BytesIO(data).read()))


def content_hash(value: Any) -> str:
    return ledger.content_hash(value)


def federation_group(federation_id: int) -> str:
    """The channel-layer group of a federation's live page."""
    return f"federation.{federation_id}"


def federation_changed(federation_id: int, *, wakes_parties: bool = True) -> None:
    """Once the caller's transaction commits, tell the federation's live page (best effort, never fails), and,
    unless `wakes_parties` is False (an update accepted, a round gone to aggregation: nothing a party acts on),
    the parties' clients waiting for the next round (`federation.waiting`)."""
    from functools import partial

    from django.db import transaction

    from platform_site import realtime

    message = {"type": "federation.changed", "parties": wakes_parties}
    transaction.on_commit(partial(realtime.group_send, federation_group(federation_id), message))
