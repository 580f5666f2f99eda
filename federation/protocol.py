"""What a party signs, byte for byte: pure (stdlib + cryptography), shared by the platform and the party's client
(`federation.client`), so both build the same messages. Signatures are Ed25519, base64 on the wire."""

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

UPDATE_CONTEXT = "fl-update/v1"
SECAGG_CONTEXT = "fl-secagg-key/v1"


def update_message(
    *, federation: int, round: int, sha256: str, num_examples: int, masked: bool = False,
    norm_bound: float | None = None,
) -> bytes:  # fmt: skip
    """The bytes a party signs for its update to round `round` of `federation`: the update's digest
    (`ml.federated.tensors.digest`), its example count, whether it is masked (secure aggregation) and, when it
    is, the norm bound the party attests it enforced before masking."""
    bound = "" if norm_bound is None else repr(float(norm_bound))
    return (
        f"{UPDATE_CONTEXT}\nfederation={federation}\nround={round}\nsha256={sha256}\n"
        f"examples={num_examples}\nmasked={int(bool(masked))}\nnorm_bound={bound}\n"
    ).encode()


def secagg_key_message(*, federation: int, round: int, public_key: str) -> bytes:
    """The bytes a party signs to publish its X25519 public key (base64) for masking in one round."""
    return f"{SECAGG_CONTEXT}\nfederation={federation}\nround={round}\nx25519={public_key}\n".encode()


def sign(private_key: Ed25519PrivateKey, message: bytes) -> str:
    return base64.b64encode(private_key.sign(message)).decode()


def verify(public_raw: bytes, message: bytes, signature: str) -> bool:
    """True when `signature` (base64) is the Ed25519 signature of `message` by the key `public_raw`."""
    try:
        raw = base64.b64decode(signature, validate=True)
        Ed25519PublicKey.from_public_bytes(bytes(public_raw)).verify(raw, message)
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True
