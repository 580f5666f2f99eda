"""The platform's Ed25519 signing key: loaded from LEDGER_KEY_FILE, created there (mode 0600) when absent."""

import hashlib
import os
from functools import cache
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def load_or_create_ed25519(path: Path) -> Ed25519PrivateKey:
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            # O_EXCL: two processes starting at once must not each write a different key.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return key


@cache
def platform_signing_key() -> Ed25519PrivateKey:
    from django.conf import settings

    return load_or_create_ed25519(settings.LEDGER_KEY_FILE)


def public_key_fingerprint(raw: bytes) -> str:
    """Short hex id of a raw 32-byte public key: the first 8 bytes of its SHA-256."""
    return hashlib.sha256(raw).hexdigest()[:16]
