"""The platform's private signing keys: loaded from LEDGER_KEY_FILE (and `<file>.<id>.retired`), cached per process."""

import os
import threading
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings

from ledger import chain
from ledger.models import SigningKey
from platform_site.keys import load_or_create_ed25519

_private_keys: dict[str, Ed25519PrivateKey] = {}
_keys_lock = threading.Lock()


def public_raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def retired_key_path(key_id: str) -> Path:
    path = Path(settings.LEDGER_KEY_FILE)
    return path.with_name(f"{path.name}.{key_id}.retired")


def private_key_for(key_id: str) -> Ed25519PrivateKey:
    """The private key with this id: LEDGER_KEY_FILE holds the active one, `<file>.<id>.retired` older ones."""
    with _keys_lock:
        key = _private_keys.get(key_id)
        if key is None:
            retired = retired_key_path(key_id)
            key = load_or_create_ed25519(retired if retired.exists() else settings.LEDGER_KEY_FILE)
            loaded_id = chain.key_id_for(settings.LEDGER_ORIGIN, public_raw(key))
            _private_keys[loaded_id] = key
            if loaded_id != key_id:
                raise RuntimeError(
                    f"the ledger's active key is {key_id} but LEDGER_KEY_FILE holds {loaded_id}; "
                    "restore the key file or rotate keys with `manage.py rotate_ledger_key`"
                )
        return key


def register_key(key: Ed25519PrivateKey, *, first_seq: int) -> SigningKey:
    """Make `key` the active platform key from `first_seq` on (the caller holds the head lock)."""
    raw = public_raw(key)
    key_id = chain.key_id_for(settings.LEDGER_ORIGIN, raw)
    SigningKey.objects.filter(active=True).update(active=False)
    signing_key = SigningKey.objects.create(
        key_id=key_id,
        public_key=raw,
        verifier_key=chain.verifier_key(settings.LEDGER_ORIGIN, raw),
        first_seq=first_seq,
        active=True,
    )
    with _keys_lock:
        _private_keys[key_id] = key
    from ledger.services.journal import active_key_forget  # journal imports this module

    active_key_forget()
    return signing_key


def write_private_key(target: Path, key: Ed25519PrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
