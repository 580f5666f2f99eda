"""C2SP signed notes, tlog checkpoints and cosignature/v1 witness lines.

Pure: no Django, no I/O. Parsing is strict: every byte of a note is either checked or signed, so no two texts
mean the same note.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from typing import NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import chain

COSIGNATURE_KEY_TYPE = 0x04
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
MAX_SIGNATURES = 100

_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
# Control characters other than LF are refused anywhere in a note, as golang.org/x/mod/sumdb/note does.
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
_U64 = struct.Struct(">Q")


class SignatureLine(NamedTuple):
    name: str
    key_id: bytes
    blob: bytes  # the signature bytes after the 4-byte key id


def _check_name(name: str) -> None:
    if not name or "+" in name or any(ch.isspace() for ch in name):
        raise ValueError(f"bad signer name {name!r}")


def checkpoint_body(origin: str, tree_size: int, root_hash: bytes, extensions: Iterable[str] = ()) -> str:
    """The tlog-checkpoint text: origin, decimal size and base64 root, each on its own line."""
    if not origin or "\n" in origin or _CONTROL.search(origin):
        raise ValueError("origin must be one non-empty line")
    if type(tree_size) is not int or not 0 <= tree_size < 2**64:
        raise ValueError("tree size must be an integer in [0, 2**64)")
    if len(root_hash) != 32:
        raise ValueError("root hash must be 32 bytes")
    lines = [origin, str(tree_size), chain.b64encode(root_hash)]
    for ext in extensions:
        if not ext or "\n" in ext or _CONTROL.search(ext):
            raise ValueError("extension lines must be non-empty single lines")
        lines.append(ext)
    return "\n".join(lines) + "\n"


def parse_checkpoint(body: str) -> tuple[str, int, bytes]:
    """(origin, tree size, root hash) of a checkpoint text; ValueError on anything malformed."""
    if not body.endswith("\n"):
        raise ValueError("checkpoint must end with a newline")
    if _CONTROL.search(body):
        raise ValueError("checkpoint contains a control character")
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise ValueError("checkpoint needs origin, tree size and root hash lines")
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise ValueError("empty origin")
    if not _DECIMAL.fullmatch(size_text) or int(size_text) >= 2**64:
        raise ValueError(f"bad tree size {size_text!r}")
    root_hash = chain.b64decode_strict(root_text)
    if len(root_hash) != 32:
        raise ValueError(f"root hash is {len(root_hash)} bytes, not 32")
    if any(not ext for ext in extensions):
        raise ValueError("empty extension line")
    return origin, int(size_text), root_hash


def parse_note(note: str) -> tuple[str, list[SignatureLine]]:
    """(body, signature lines) of a signed note; ValueError unless it is exactly one well-formed note."""
    if _CONTROL.search(note):
        raise ValueError("note contains a control character")
    try:
        note.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("note is not valid Unicode") from None
    split = note.rfind("\n\n")
    if split < 0:
        raise ValueError("note has no blank line before its signatures")
    body, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise ValueError("note has no signatures, or the last one does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise ValueError("too many signatures")
    signatures: list[SignatureLine] = []
    for line in lines:
        if not line.startswith(SIGNATURE_PREFIX):
            raise ValueError(f"signature line does not start with an em dash and a space: {line!r}")
        name, sep, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
        _check_name(name)
        if not sep or not encoded:
            raise ValueError("signature line has no signature")
        raw = chain.b64decode_strict(encoded)
        if len(raw) < 5:
            raise ValueError("signature too short")
        signatures.append(SignatureLine(name, raw[:4], raw[4:]))
    return body, signatures


def signature_line(name: str, key_id: bytes, signature: bytes) -> str:
    _check_name(name)
    return f"{SIGNATURE_PREFIX}{name} {chain.b64encode(key_id + signature)}\n"


def sign_note(body: str, name: str, private_key: Ed25519PrivateKey | bytes) -> str:
    """The full note: body, blank line, one Ed25519 signature line by `name`'s key."""
    if not body.endswith("\n") or _CONTROL.search(body):
        raise ValueError("note text must end with a newline and hold no control characters")
    key_id = chain.key_hash(name, chain.ED25519_KEY_TYPE, chain.public_key_raw(private_key))
    return body + "\n" + signature_line(name, key_id, chain.sign(private_key, body.encode("utf-8")))


def add_signature_line(note: str, line: str) -> str:
    """Append one more signature line (from a witness or a second key) to a signed note."""
    parse_note(note)
    if not line.endswith("\n") or "\n" in line[:-1]:
        raise ValueError("a signature line is one line ending with a newline")
    out = note + line
    parse_note(out)
    return out


def _find(signatures: list[SignatureLine], name: str, key_id: bytes) -> SignatureLine | None:
    # The first line by a known key decides; later duplicates are ignored, as in the Go implementation.
    return next((s for s in signatures if s.name == name and s.key_id == key_id), None)


def verify_note(note: str, verifier_key: str) -> bool:
    """True when the note carries a valid Ed25519 signature by `verifier_key` (ValueError if that key is bad)."""
    name, key_id_hex, public_key = chain.parse_verifier_key(verifier_key)
    try:
        body, signatures = parse_note(note)
    except ValueError:
        return False
    line = _find(signatures, name, bytes.fromhex(key_id_hex))
    if line is None or len(line.blob) != 64:
        return False
    return chain.verify_signature(public_key, line.blob, body.encode("utf-8"))


def cosignature_verifier_key(name: str, public_key_raw: bytes) -> str:
    return chain.verifier_key(name, public_key_raw, key_type=COSIGNATURE_KEY_TYPE)


def _cosigned_message(body: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


def cosign(body: str, name: str, private_key: Ed25519PrivateKey | bytes, timestamp: int) -> str:
    """A witness's cosignature/v1 line over a checkpoint body at `timestamp` (seconds since the epoch)."""
    if type(timestamp) is not int or not 0 <= timestamp < 2**64:
        raise ValueError("timestamp must be an integer in [0, 2**64)")
    key_id = chain.key_hash(name, COSIGNATURE_KEY_TYPE, chain.public_key_raw(private_key))
    signature = chain.sign(private_key, _cosigned_message(body, timestamp))
    return signature_line(name, key_id, _U64.pack(timestamp) + signature)


def verify_cosignature(note: str, witness_verifier_key: str) -> int | None:
    """The witness's timestamp when the note carries its valid cosignature/v1, else None."""
    name, key_id_hex, public_key = chain.parse_verifier_key(
        witness_verifier_key, key_type=COSIGNATURE_KEY_TYPE
    )
    try:
        body, signatures = parse_note(note)
    except ValueError:
        return None
    line = _find(signatures, name, bytes.fromhex(key_id_hex))
    if line is None or len(line.blob) != 8 + 64:
        return None
    (timestamp,) = _U64.unpack(line.blob[:8])
    if not chain.verify_signature(public_key, line.blob[8:], _cosigned_message(body, timestamp)):
        return None
    return timestamp
