import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import chain, notes

SHARED = Path(__file__).resolve().parent / "vectors"  # copies of ../shared/vectors, so a clone stands alone
NOTES = json.loads((SHARED / "signed_notes.json").read_text())
TREES = json.loads((SHARED / "rfc6962_vectors.json").read_text())
SPEC = NOTES["spec_example"]
CHECKPOINT = NOTES["checkpoint_example"]


def spec_note_verifies(note: str) -> bool:
    return notes.verify_note(note, SPEC["verifier_key"])


def checkpoint_note_verifies(note: str) -> bool:
    return (
        notes.verify_note(note, CHECKPOINT["log_verifier_key"])
        and notes.verify_cosignature(note, CHECKPOINT["witness_verifier_key"]) is not None
    )


def test_the_spec_example_note_verifies():
    assert spec_note_verifies(SPEC["note"])
    body, signatures = notes.parse_note(SPEC["note"])
    assert body == SPEC["text"]
    assert [(s.name, s.key_id.hex(), len(s.blob)) for s in signatures] == [
        ("example.com/foo", "530d903a", 64)
    ]


def test_the_checkpoint_example_verifies_with_its_log_key_and_witness_cosignature():
    note = CHECKPOINT["note"]
    assert notes.verify_note(note, CHECKPOINT["log_verifier_key"])
    assert notes.verify_cosignature(note, CHECKPOINT["witness_verifier_key"]) == 1_700_000_000
    body, _ = notes.parse_note(note)
    origin, size, root = notes.parse_checkpoint(body)
    assert (origin, size, root.hex()) == (
        CHECKPOINT["origin"],
        CHECKPOINT["tree_size"],
        CHECKPOINT["root_hash_hex"],
    )
    assert root.hex() == TREES["roots"]["8"]
    assert notes.checkpoint_body(origin, size, root) == body


def test_keys_do_not_verify_each_others_notes():
    assert not notes.verify_note(CHECKPOINT["note"], SPEC["verifier_key"])
    assert not notes.verify_note(SPEC["note"], CHECKPOINT["log_verifier_key"])
    assert notes.verify_cosignature(SPEC["note"], CHECKPOINT["witness_verifier_key"]) is None


def _mutations(note: str):
    raw = note.encode("utf-8")
    for i in range(len(raw)):
        for mask in (0x01, 0x20, 0x80):
            yield i, raw[:i] + bytes([raw[i] ^ mask]) + raw[i + 1 :]


def _accepted(raw: bytes, verifies) -> bool:
    try:
        text = raw.decode("utf-8")
        notes.parse_note(text)
        return verifies(text)
    except ValueError:  # UnicodeDecodeError included
        return False


@pytest.mark.parametrize(
    ("name", "verifies"), [("spec", spec_note_verifies), ("checkpoint", checkpoint_note_verifies)]
)
def test_changing_any_byte_of_a_note_makes_it_fail(name, verifies):
    note = SPEC["note"] if name == "spec" else CHECKPOINT["note"]
    assert verifies(note)
    accepted = [i for i, raw in _mutations(note) if _accepted(raw, verifies)]
    assert accepted == []


def test_changing_any_byte_of_the_checkpoint_body_changes_or_breaks_its_parse():
    body, _ = notes.parse_note(CHECKPOINT["note"])
    original = notes.parse_checkpoint(body)
    for _i, raw in _mutations(body):
        try:
            parsed = notes.parse_checkpoint(raw.decode("utf-8"))
        except ValueError:
            continue
        assert parsed != original


def test_sign_verify_and_cosign_round_trip_with_fresh_keys():
    log_key, witness_key, other = (Ed25519PrivateKey.generate() for _ in range(3))
    origin = "platform.example/ledger"
    vkey = chain.verifier_key(origin, chain.public_key_raw(log_key))
    wkey = notes.cosignature_verifier_key("witness.example/w", chain.public_key_raw(witness_key))
    body = notes.checkpoint_body(origin, 42, hashlib.sha256(b"root").digest())
    note = notes.sign_note(body, origin, log_key)
    assert notes.verify_note(note, vkey)
    assert not notes.verify_note(note, chain.verifier_key(origin, chain.public_key_raw(other)))
    assert notes.verify_cosignature(note, wkey) is None

    cosigned = notes.add_signature_line(
        note, notes.cosign(body, "witness.example/w", witness_key, 1_750_000_000)
    )
    assert notes.verify_note(cosigned, vkey)
    assert notes.verify_cosignature(cosigned, wkey) == 1_750_000_000
    forged = notes.add_signature_line(note, notes.cosign(body, "witness.example/w", other, 1_750_000_000))
    assert notes.verify_cosignature(forged, wkey) is None
    assert notes.parse_checkpoint(notes.parse_note(cosigned)[0]) == (
        origin,
        42,
        hashlib.sha256(b"root").digest(),
    )


def test_signatures_by_unknown_keys_are_ignored():
    key = Ed25519PrivateKey.generate()
    vkey = chain.verifier_key("a.example/log", chain.public_key_raw(key))
    note = notes.sign_note("hello\n", "a.example/log", key)
    stranger = notes.signature_line("b.example/log", b"\x00\x01\x02\x03", bytes(64))
    assert notes.verify_note(notes.add_signature_line(note, stranger), vkey)


@pytest.mark.parametrize(
    "bad",
    [
        "text\n\n\u2014 name AAAAAAA=",  # no final newline
        "text\n\u2014 name AAAAAAA=\n",  # no blank line
        "text\n\n",  # no signatures
        "text\n\n- name AAAAAAA=\n",  # hyphen, not em dash
        "text\n\n\u2014  name AAAAAAA=\n",  # empty name
        "text\n\n\u2014 name\n",  # no signature
        "text\n\n\u2014 name \n",
        "text\n\n\u2014 na+me AAAAAAA=\n",
        "text\n\n\u2014 name AAAAAAA\n",  # missing padding
        "text\n\n\u2014 name AAAAAAB=\n",  # unused bits set
        "text\n\n\u2014 name AAAA\n",  # shorter than a key id and one byte
        "text\n\n\u2014 name AAAAAAA= \n",
        "te\rxt\n\n\u2014 name AAAAAAA=\n",
        "text\n\n\u2014 name AAAAAAA=\n\n",
        "text\n\n" + "\u2014 name AAAAAAA=\n" * 101,
    ],
)
def test_parse_note_refuses_malformed_notes(bad):
    with pytest.raises(ValueError):
        notes.parse_note(bad)


ROOT = chain.b64encode(bytes(range(32)))


@pytest.mark.parametrize(
    "bad",
    [
        f"log\n08\n{ROOT}\n",
        f"log\n+8\n{ROOT}\n",
        f"log\n 8\n{ROOT}\n",
        f"log\n\u0668\n{ROOT}\n",  # an Arabic-Indic digit eight
        f"log\n18446744073709551616\n{ROOT}\n",
        f"log\n8\n{ROOT}",
        f"\n8\n{ROOT}\n",
        "log\n8\n",
        f"log\n8\n{chain.b64encode(bytes(31))}\n",
        f"log\n8\n{ROOT[:-1]}\n",
        f"log\n8\n{ROOT}\n\n",
        f"log\n8\n{ROOT}\next\n\n",
        f"log\n8\n{ROOT} \n",
        "log\n8\n!!!!\n",
    ],
)
def test_parse_checkpoint_refuses_malformed_bodies(bad):
    with pytest.raises(ValueError):
        notes.parse_checkpoint(bad)


def test_parse_checkpoint_accepts_extension_lines_and_size_zero():
    assert notes.parse_checkpoint(f"log\n0\n{ROOT}\nextension one\n") == ("log", 0, bytes(range(32)))
    assert (
        notes.checkpoint_body("log", 0, bytes(range(32)), ["extension one"])
        == f"log\n0\n{ROOT}\nextension one\n"
    )


def test_checkpoint_body_refuses_what_it_could_not_parse_back():
    for args in (("", 1, bytes(32)), ("a\nb", 1, bytes(32)), ("log", -1, bytes(32)), ("log", 1, bytes(31))):
        with pytest.raises(ValueError):
            notes.checkpoint_body(*args)
    with pytest.raises(ValueError):
        notes.checkpoint_body("log", 1, bytes(32), [""])
