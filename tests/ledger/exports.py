"""Build valid ledger exports (FORMAT.md) from the pure modules alone, so the verifier is tested without Django."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import chain, merkle, notes

ORIGIN = "test.example/ledger"
WITNESS = "witness.example/w1"
START = datetime(2025, 1, 1, tzinfo=UTC)


def key_from(label: str) -> Ed25519PrivateKey:
    """A deterministic key, so exports and their failures are the same on every run."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(label.encode()).digest())


@dataclass
class PlatformKey:
    private: Ed25519PrivateKey
    first_seq: int
    origin: str = ORIGIN

    @property
    def raw(self) -> bytes:
        return chain.public_key_raw(self.private)

    @property
    def key_id(self) -> str:
        return chain.key_id_for(self.origin, self.raw)

    @property
    def verifier_key(self) -> str:
        return chain.verifier_key(self.origin, self.raw)


@dataclass
class ExportBuilder:
    origin: str = ORIGIN
    seed: int = 0
    keys: list[PlatformKey] = field(default_factory=list)
    actor_keys: dict[str, tuple[Ed25519PrivateKey, str]] = field(default_factory=dict)
    entries: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    balances: dict[str, int] = field(default_factory=dict)
    tree: merkle.InMemoryTree = field(default_factory=merkle.InMemoryTree)

    def __post_init__(self) -> None:
        if not self.keys:
            self.keys.append(PlatformKey(key_from(f"{self.seed}/platform/0"), 0, self.origin))
        self.witness = key_from(f"{self.seed}/witness")

    @property
    def active(self) -> PlatformKey:
        return self.keys[-1]

    @property
    def minted(self) -> int:
        return -self.balances.get("issuance", 0)

    @property
    def head(self) -> bytes:
        return bytes.fromhex(self.entries[-1]["entry_hash"]) if self.entries else chain.ZERO_HASH

    @property
    def witness_verifier_key(self) -> str:
        return notes.cosignature_verifier_key(WITNESS, chain.public_key_raw(self.witness))

    def append(
        self, kind: str, actor: str, payload: dict[str, Any], *, actor_key_id: str | None = None
    ) -> dict[str, Any]:
        seq = len(self.entries)
        fields = {
            "seq": seq,
            "kind": kind,
            "actor": actor,
            "payload": payload,
            "created_at": chain.format_timestamp(START + timedelta(seconds=seq, microseconds=seq)),
            "key_id": self.active.key_id,
            "actor_key_id": actor_key_id,
        }
        canonical = chain.canonical_bytes(**fields)
        digest = chain.entry_hash(self.head, canonical)
        actor_signature = None
        if actor_key_id is not None:
            private, _owner = self.actor_keys[actor_key_id]
            statement = chain.actor_statement(actor=actor, kind=kind, payload=payload)
            actor_signature = chain.b64encode(chain.sign(private, statement))
        entry = {
            "type": "entry",
            **fields,
            "prev_hash": self.head.hex(),
            "entry_hash": digest.hex(),
            "signature": chain.b64encode(chain.sign(self.active.private, digest)),
            "actor_signature": actor_signature,
        }
        for posting in payload.get("postings", []):
            self.balances[posting["account"]] = self.balances.get(posting["account"], 0) + posting["amount"]
        self.entries.append(entry)
        self.tree.append(chain.leaf_hash(canonical))
        return entry

    def mint(self, account: str, amount: int) -> dict[str, Any]:
        postings = [{"account": "issuance", "amount": -amount}, {"account": account, "amount": amount}]
        return self.append("ledger.mint", "system", {"postings": postings, "memo": "grant"})

    def transfer(
        self, source: str, target: str, amount: int, *, actor_key_id: str | None = None, memo: str = ""
    ) -> dict[str, Any]:
        postings = [{"account": source, "amount": -amount}, {"account": target, "amount": amount}]
        return self.append(
            "ledger.transfer", source, {"postings": postings, "memo": memo}, actor_key_id=actor_key_id
        )

    def register_actor_key(self, owner: str, label: str | None = None) -> str:
        key_id = f"ak-{len(self.actor_keys) + 1}"
        self.actor_keys[key_id] = (key_from(f"{self.seed}/actor/{label or key_id}"), owner)
        return key_id

    def rotate(self) -> dict[str, Any]:
        new = PlatformKey(
            key_from(f"{self.seed}/platform/{len(self.keys)}"), len(self.entries) + 1, self.origin
        )
        entry = self.append(
            "ledger.key.rotated",
            "system",
            {
                "new_key_id": new.key_id,
                "new_public_key": chain.b64encode(new.raw),
                "new_verifier_key": new.verifier_key,
            },
        )
        self.keys.append(new)
        return entry

    def checkpoint(self, *, cosign: bool = True) -> dict[str, Any]:
        size = len(self.entries)
        signer = self.key_at(size - 1) if size else self.keys[0]
        body = notes.checkpoint_body(self.origin, size, self.tree.root(size))
        note = notes.sign_note(body, self.origin, signer.private)
        if cosign:
            note = notes.add_signature_line(
                note, notes.cosign(body, WITNESS, self.witness, 1_700_000_000 + size)
            )
        record = {"type": "checkpoint", "tree_size": size, "note": note}
        self.checkpoints.append(record)
        return record

    def key_at(self, seq: int) -> PlatformKey:
        return [k for k in self.keys if k.first_seq <= seq][-1]

    def records(self) -> list[dict[str, Any]]:
        header = {
            "type": "header",
            "format": "platform-ledger-export/1",
            "origin": self.origin,
            "tree_size": len(self.entries),
            "exported_at": chain.format_timestamp(START + timedelta(days=1)),
        }
        keys = [
            {
                "type": "key",
                "key_id": k.key_id,
                "public_key": chain.b64encode(k.raw),
                "verifier_key": k.verifier_key,
                "first_seq": k.first_seq,
            }
            for k in self.keys
        ]
        actor_keys = [
            {
                "type": "actor_key",
                "key_id": key_id,
                "public_key": chain.b64encode(chain.public_key_raw(private)),
                "owner": owner,
            }
            for key_id, (private, owner) in self.actor_keys.items()
        ]
        balances = [
            {"type": "balance", "account": account, "balance": amount}
            for account, amount in sorted(self.balances.items())
        ]
        records = [header, *keys, *actor_keys, *self.entries, *self.checkpoints, *balances]
        return json.loads(json.dumps(records))  # deep copy: tests tamper with it freely


def build_export(
    n: int = 60, *, checkpoint_every: int = 16, rotate_at: int | None = None, seed: int = 0
) -> ExportBuilder:
    """A valid export of `n` entries: mints, transfers, an actor-signed transfer, one rotation, checkpoints."""
    rng = random.Random(seed)
    b = ExportBuilder(seed=seed)
    users = ["user:1", "user:2", "org:1", "dao:1"]
    alice_key = b.register_actor_key("user:1")
    rotate_at = n // 2 if rotate_at is None else rotate_at
    while len(b.entries) < n:
        seq = len(b.entries)
        if seq < len(users):
            b.mint(users[seq], 10_000)
        elif seq == rotate_at:
            b.rotate()
        elif seq == 5:
            b.transfer("user:1", "user:2", 250, actor_key_id=alice_key, memo="signed by alice")
        elif seq == 6:
            b.append("marketplace.dataset.published", "org:1", {"dataset": 7, "title": "Crème brûlée ✓ 🍮"})
        elif seq % 7 == 0:
            b.mint(rng.choice(users), rng.randint(1, 500))
        else:
            source = rng.choice([u for u in users if b.balances.get(u, 0) >= 2])
            target = rng.choice([u for u in users if u != source])
            amount = rng.randint(1, b.balances[source] // 2)
            b.transfer(source, target, amount, memo=f"payment {seq}")
        if (seq + 1) % checkpoint_every == 0 and seq + 1 < n:
            b.checkpoint()
    b.checkpoint()
    return b


def to_lines(records: Iterable[dict[str, Any]]) -> list[str]:
    return [json.dumps(r, ensure_ascii=False) + "\n" for r in records]


def write(path: Path, records: Iterable[dict[str, Any]]) -> Path:
    path.write_text("".join(to_lines(records)), encoding="utf-8")
    return path


def write_bytes(path: Path, lines: Iterable[bytes]) -> Path:
    path.write_bytes(b"".join(lines))
    return path


def reseal(
    records: list[dict[str, Any]], builder: ExportBuilder, *, private: Ed25519PrivateKey | None = None
) -> None:
    """Recompute every entry's prev_hash, entry_hash and signature after a tamper, as a forger without the
    platform's key would (signing with `private`, or with the key the builder had at that seq)."""
    prev = chain.ZERO_HASH
    for r in records:
        if r["type"] != "entry":
            continue
        canonical = chain.canonical_bytes(**{k: r[k] for k in _SIGNED})
        digest = chain.entry_hash(prev, canonical)
        key = private or builder.key_at(r["seq"]).private
        r["prev_hash"], r["entry_hash"] = prev.hex(), digest.hex()
        r["signature"] = chain.b64encode(chain.sign(key, digest))
        prev = digest


_SIGNED = ("seq", "kind", "actor", "payload", "created_at", "key_id", "actor_key_id")


def entries_of(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] == "entry"]
