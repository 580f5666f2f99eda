"""Secure aggregation by pairwise masks (Bonawitz et al. 2017, without its secret-sharing recovery): the
platform sees each party's update only masked, and the masks cancel exactly in the sum.

Each round every party makes a fresh X25519 key pair and publishes the public half (signed, through the API).
Parties i < j derive the same 32-byte seed by X25519 and HKDF-SHA256 (salted with the round, bound to the pair)
and expand it with ChaCha20 into one uint64 mask per coordinate. A party pre-multiplies its delta by its example
count, writes it in fixed point (FRACTION_BITS fractional bits, two's complement), adds the masks of its
higher-numbered peers and subtracts those of its lower-numbered ones, all mod 2^64: in the sum over the roster
every mask appears once with each sign, so the sum is exactly the fixed-point sum of the weighted deltas.

Dropouts: a party that does not submit leaves its masks in the others' updates, and the sum is noise. There is
no recovery by secret shares; the round restarts with a new roster (and new keys) without the dropped party.
"""

import base64
import binascii

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ml.federated import tensors as T
from ml.federated.tensors import Tensors, UpdateError

FRACTION_BITS = 24
MAX_PARTIES = 1024
# |num_examples * delta| below this keeps the sum of MAX_PARTIES fixed-point values inside int64.
MAX_WEIGHTED = float(2 ** (63 - FRACTION_BITS - 10))
MASK_INFO = b"fl-secagg-mask/v1"
MASKED_CONTEXT = b"fl-masked/v1\n"


def keypair() -> tuple[X25519PrivateKey, str]:
    """A fresh X25519 key pair for one round: the private key and the public key as base64 of its raw bytes."""
    private = X25519PrivateKey.generate()
    return private, base64.b64encode(private.public_key().public_bytes_raw()).decode()


def _public(value: str, party: int) -> X25519PublicKey:
    try:
        raw = base64.b64decode(value, validate=True)
        return X25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError, TypeError):
        raise ValueError(f"party {party}'s X25519 public key is not 32 bytes of base64") from None


def pair_seed(private: X25519PrivateKey, peer_public: str, *, me: int, peer: int, round_salt: bytes) -> bytes:
    """The 32-byte seed parties `me` and `peer` share this round (the same from either side)."""
    shared = private.exchange(_public(peer_public, peer))
    low, high = sorted((me, peer))
    info = MASK_INFO + low.to_bytes(8, "big") + high.to_bytes(8, "big")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=round_salt, info=info).derive(shared)


def _stream(seed: bytes, count: int) -> np.ndarray:
    """`count` pseudo-random uint64 from ChaCha20 keyed by `seed` (each seed is used for one round only)."""
    encryptor = Cipher(algorithms.ChaCha20(seed, b"\0" * 16), mode=None).encryptor()
    return np.frombuffer(encryptor.update(b"\0" * (8 * count)), dtype="<u8")


def to_fixed(values: np.ndarray) -> np.ndarray:
    """Float values as fixed-point uint64 (two's complement of round(v · 2^FRACTION_BITS))."""
    return np.rint(np.asarray(values, dtype=np.float64) * 2.0**FRACTION_BITS).astype(np.int64).view(np.uint64)


def from_fixed(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.uint64).view(np.int64).astype(np.float64) / 2.0**FRACTION_BITS


def mask(
    tensors: Tensors, *, num_examples: int, me: int, private: X25519PrivateKey, peers: dict[int, str],
    round_salt: bytes, norm_bound: float | None = None,
) -> Tensors:  # fmt: skip
    """The party's masked update: num_examples · delta in fixed point plus its pairwise masks, as uint64.
    `peers` maps every other party of the round's roster to its public key (`me` is skipped if present);
    `norm_bound`, when given, is enforced on the delta first, since the platform cannot check it."""
    if isinstance(num_examples, bool) or not isinstance(num_examples, int) or num_examples < 1:
        raise UpdateError("num_examples must be a positive whole number")
    if not round_salt:
        raise ValueError("the round salt must not be empty")
    if len(peers) >= MAX_PARTIES:
        raise ValueError(f"secure aggregation takes at most {MAX_PARTIES} parties")
    flat = np.concatenate([a.astype(np.float64).ravel() for a in T.canonical(tensors).values()])
    if not np.isfinite(flat).all():
        raise UpdateError("the update holds NaN or infinite values")
    if norm_bound is not None and T.l2_norm(tensors) > norm_bound:
        raise UpdateError(f"the update's L2 norm is {T.l2_norm(tensors):.4g}; the bound is {norm_bound:g}")
    weighted = flat * num_examples
    if weighted.size and np.abs(weighted).max() >= MAX_WEIGHTED:
        raise UpdateError("the update times its examples is too large for secure aggregation's fixed point")
    total = to_fixed(weighted)
    for peer in sorted(peers):
        if peer == me:
            continue
        stream = _stream(pair_seed(private, peers[peer], me=me, peer=peer, round_salt=round_salt), flat.size)
        # uint64 arithmetic wraps mod 2^64, which is what makes the masks cancel exactly.
        total = total + stream if me < peer else total - stream
    out, start = {}, 0
    for name, array in T.canonical(tensors).items():
        out[name] = total[start : start + array.size].reshape(array.shape)
        start += array.size
    return out


def masked_digest(masked: Tensors) -> str:
    """SHA-256 (hex) of masked tensors: names, shapes and uint64 bytes in name order (what the party signs)."""
    return T.digest(masked, dtype="U64", context=MASKED_CONTEXT)


def encode_masked(masked: Tensors) -> bytes:
    """Safetensors bytes (dtype U64) of masked tensors."""
    return T.encode(masked, "U64")


def decode_masked(data: bytes, *, shapes: dict[str, tuple[int, ...]], max_bytes: int) -> Tensors:
    """Masked tensors from safetensors bytes, or UpdateError: too big, not safetensors, names or shapes other
    than `shapes`, or a dtype other than U64. The header is checked before any tensor is read."""
    return T.decode(data, shapes=shapes, max_bytes=max_bytes, dtype="U64")


def unmask_sum(masked: list[Tensors], total_examples: int) -> Tensors:
    """The example-weighted mean delta from every roster party's masked update (the masks cancel only when all
    are present): the mod-2^64 sum, read as fixed point, divided by the total examples. Passed to `aggregate` as
    one Update (fedavg, fedprox or fedadam), it gives the round's new global model."""
    if not masked:
        raise ValueError("no masked updates to sum")
    if total_examples < 1:
        raise ValueError("the total number of examples must be positive")
    names = sorted(masked[0])
    out = {}
    for name in names:
        total = np.zeros(masked[0][name].shape, dtype=np.uint64)
        for m in masked:
            total = total + np.asarray(m[name], dtype=np.uint64)
        out[name] = (from_fixed(total) / total_examples).astype(np.float32)
    return out
