"""A model's weights or an update as named float32 arrays: the canonical digest that parties sign and the ledger
records, safetensors bytes, and the checks an incoming update must pass before anything uses it."""

import hashlib
import json
import math

import numpy as np
import torch

from ml.artifacts import _safetensors_header

Tensors = dict[str, np.ndarray]
DIGEST_CONTEXT = b"fl-tensors/v1\n"


class UpdateError(ValueError):
    """An update that cannot be accepted; the message says which tensor and why."""


# The safetensors dtypes an update may travel in: float32 weights and deltas, and uint64 for the fixed-point
# masked updates of secure aggregation (ml.federated.secagg); each with its numpy dtype and how errors name it.
DTYPES = {"F32": ("<f4", "updates are float32"), "U64": ("<u8", "masked updates are uint64")}


def canonical(tensors: Tensors, dtype: str = "F32") -> Tensors:
    """The same tensors as contiguous little-endian arrays of `dtype` (float32 unless told), in name order."""
    return {name: np.ascontiguousarray(tensors[name], dtype=DTYPES[dtype][0]) for name in sorted(tensors)}


def digest(tensors: Tensors, *, dtype: str = "F32", context: bytes = DIGEST_CONTEXT) -> str:
    """SHA-256 (hex) over `context` then each tensor's name, shape and bytes in name order: the same numbers give
    the same digest whatever file carried them."""
    h = hashlib.sha256(context)
    for name, array in canonical(tensors, dtype).items():
        h.update(json.dumps([name, list(array.shape)], separators=(",", ":")).encode() + b"\n")
        h.update(array.tobytes())
    return h.hexdigest()


def encode(tensors: Tensors, dtype: str = "F32") -> bytes:
    """Safetensors bytes of the tensors (float32 unless told, no metadata): deterministic for the same numbers."""
    from safetensors.numpy import save

    return save(canonical(tensors, dtype))


def l2_norm(tensors: Tensors) -> float:
    """The L2 norm of all tensors taken as one vector (float64 sums)."""
    return math.sqrt(sum(float(np.square(a, dtype=np.float64).sum()) for a in tensors.values()))


def decode(
    data: bytes, *, shapes: dict[str, tuple[int, ...]], max_bytes: int, norm_bound: float | None = None,
    dtype: str = "F32",
) -> Tensors:  # fmt: skip
    """The tensors of an update file, or UpdateError: not safetensors, too big, names or shapes other than
    `shapes`, a dtype other than `dtype` (float32 unless told), NaN or infinite values, or an L2 norm above
    `norm_bound`. The header is checked before any tensor is read."""
    if len(data) > max_bytes:
        raise UpdateError(f"the update is {len(data):,} bytes; the limit is {max_bytes:,}")
    header = _safetensors_header(data)
    if header is None:
        raise UpdateError("the update is not a safetensors file")
    found = {n: info for n, info in header.items() if n != "__metadata__"}
    missing, extra = sorted(set(shapes) - set(found)), sorted(set(found) - set(shapes))
    if missing or extra:
        parts = ([f"missing {', '.join(missing[:10])}"] if missing else []) + (
            [f"unexpected {', '.join(extra[:10])}"] if extra else []
        )
        raise UpdateError(f"the update's tensor names do not match the model's: {'; '.join(parts)}")
    for name, shape in shapes.items():
        if tuple(found[name]["shape"]) != tuple(shape):
            raise UpdateError(f"tensor {name} has shape {found[name]['shape']}; the model's is {list(shape)}")
        if found[name]["dtype"] != dtype:
            raise UpdateError(f"tensor {name} has dtype {found[name]['dtype']}; {DTYPES[dtype][1]} ({dtype})")
    from safetensors.numpy import load

    try:
        tensors = load(data)
    except Exception as exc:  # the library's own checks (offsets, sizes) failed
        raise UpdateError(f"the safetensors file is broken: {exc}") from None
    for name in sorted(tensors):
        if not np.isfinite(tensors[name]).all():
            raise UpdateError(f"tensor {name} holds NaN or infinite values")
    if norm_bound is not None:
        norm = l2_norm(tensors)
        if norm > norm_bound:
            raise UpdateError(f"the update's L2 norm is {norm:.4g}; the federation's bound is {norm_bound:g}")
    return canonical(tensors, dtype)


def from_module(module: torch.nn.Module) -> Tensors:
    """A module's state as float32 arrays on the CPU."""
    return {n: t.detach().to("cpu", torch.float32).numpy().copy() for n, t in module.state_dict().items()}


def load_into(module: torch.nn.Module, tensors: Tensors) -> torch.nn.Module:
    """Copy the tensors into the module's parameters (same names and shapes), on the module's device."""
    device = next(module.parameters()).device
    module.load_state_dict(
        {n: torch.from_numpy(np.array(a, dtype=np.float32)).to(device) for n, a in tensors.items()}
    )
    return module


def add(base: Tensors, delta: Tensors, scale: float = 1.0) -> Tensors:
    """base + scale * delta, per tensor, as float32."""
    return {
        n: (base[n].astype(np.float64) + scale * delta[n].astype(np.float64)).astype(np.float32) for n in base
    }


def subtract(a: Tensors, b: Tensors) -> Tensors:
    """a - b, per tensor, as float32: the update that moves b to a."""
    return {n: (a[n].astype(np.float64) - b[n].astype(np.float64)).astype(np.float32) for n in a}
