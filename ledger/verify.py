"""Verify a ledger export offline: `python -m ledger.verify EXPORT [--key VERIFIER_KEY] [--quiet] [--jobs N]`.

Uses only the standard library, `cryptography` and `rfc8785` (through ledger.chain, ledger.merkle and
ledger.notes, which import nothing else), so an outside party can run it without Django. Exit 0 and one `OK`
line, or exit 1 and one `FAIL <where>: <what>` line naming the first problem in seq order.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import multiprocessing
import os
import re
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ledger import chain, merkle, notes

EXPORT_FORMAT = "platform-ledger-export/1"
ROTATION_KIND = "ledger.key.rotated"
MINT_KIND = "ledger.mint"
ISSUANCE = "issuance"

_JSON_INT_MAX = 2**53 - 1
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_SECTIONS = {"header": 0, "key": 1, "actor_key": 2, "entry": 3, "checkpoint": 4, "balance": 5}

# Where, inside one entry, a check happens: with --jobs the signatures are checked out of order, and these ranks
# put every failure back into the order a sequential run would meet it.
_STAGE_FIELDS, _STAGE_SIGNATURE, _STAGE_ACTOR, _STAGE_MONEY, _STAGE_CHECKPOINT = range(5)
_BATCH = 512


def _json_int(text: str) -> int:
    value = int(text)
    if not -_JSON_INT_MAX <= value <= _JSON_INT_MAX:
        raise ValueError(f"integer {text} is outside the exact JSON range")
    return value


def _no_float(text: str) -> Any:
    raise ValueError(f"number {text} is not an integer (floats are not allowed)")


# Refusing floats and unsafe integers while parsing lets chain.jcs skip its own walk over every payload.
_decode = json.JSONDecoder(parse_int=_json_int, parse_float=_no_float, parse_constant=_no_float).decode


@dataclass(frozen=True)
class Report:
    ok: bool
    entries: int = 0
    checkpoints: int = 0
    accounts: int = 0
    minted: int = 0  # minor units: the total supply, which the balances outside issuance sum to
    head: str = chain.ZERO_HASH.hex()
    where: str | None = None  # "seq=5", "checkpoint tree_size=8", "account=user:3", "supply" or "line=2"
    what: str | None = None
    pinned: bool = False  # the anchor key was checked against a key given by the caller
    # The Merkle tree rebuilt from the entries (when they verified), for callers that compare it with their own.
    tree: merkle.InMemoryTree | None = field(default=None, repr=False, compare=False)

    @property
    def seq(self) -> int | None:
        if self.where and self.where.startswith("seq="):
            return int(self.where[4:])
        return None

    def line(self) -> str:
        if self.ok:
            return (
                f"OK {self.entries} entries, {self.checkpoints} checkpoints, {self.accounts} accounts, "
                f"{self.minted} minted, head {self.head}"
            )
        return f"FAIL {self.where}: {self.what}"


class _Fail(Exception):
    def __init__(self, where: str, what: str, order: tuple[int, int] | None = None) -> None:
        super().__init__(f"{where}: {what}")
        self.where = where
        self.what = what
        self.order = order  # (seq, stage) for problems inside the entry pass


@dataclass(frozen=True)
class _Key:
    key_id: str
    public_key: bytes
    verifier_key: str
    first_seq: int


@dataclass(frozen=True)
class _BadLine:
    lineno: int
    problem: str


@dataclass
class _Export:
    origin: str
    tree_size: int
    keys: list[_Key]
    actor_keys: dict[str, tuple[bytes, str]]
    entries: list[dict[str, Any] | _BadLine]
    checkpoints: list[tuple[int, int, str]]  # (line number, tree size, note)
    balances: dict[str, int]


def _lines(
    path_or_lines: str | os.PathLike[str] | Iterable[str | bytes | dict[str, Any]],
) -> Iterator[str | bytes | dict[str, Any]]:
    if isinstance(path_or_lines, str | os.PathLike):
        # Binary, so that a line of bad UTF-8 is that line's problem rather than the end of the run.
        with open(path_or_lines, "rb") as f:
            yield from f
    else:
        yield from path_or_lines


def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise _Fail(where, what)


def _parse_header(obj: dict[str, Any], where: str) -> tuple[str, int]:
    _need(obj.get("format") == EXPORT_FORMAT, where, f"format is not {EXPORT_FORMAT}")
    origin, size = obj.get("origin"), obj.get("tree_size")
    _need(isinstance(origin, str) and bool(origin), where, "header has no origin")
    _need(
        "+" not in origin and not any(ch.isspace() for ch in origin),
        where,
        "origin must not contain spaces or '+' (it names the log's keys)",
    )
    _need(type(size) is int and size >= 0, where, "header tree_size is not a non-negative integer")
    return origin, size


def _parse_key(obj: dict[str, Any], origin: str, where: str) -> _Key:
    key_id, encoded, vkey, first_seq = (
        obj.get(k) for k in ("key_id", "public_key", "verifier_key", "first_seq")
    )
    _need(isinstance(encoded, str), where, "key has no public_key")
    try:
        raw = chain.b64decode_strict(encoded)
    except ValueError as exc:
        raise _Fail(where, f"public_key: {exc}") from None
    _need(len(raw) == 32, where, "public_key is not 32 bytes")
    _need(
        key_id == chain.key_id_for(origin, raw), where, f"key_id {key_id!r} is not the key hash of this key"
    )
    _need(vkey == chain.verifier_key(origin, raw), where, "verifier_key does not match origin and public_key")
    _need(type(first_seq) is int and first_seq >= 0, where, "first_seq is not a non-negative integer")
    return _Key(key_id, raw, vkey, first_seq)


def _load(path_or_lines: str | os.PathLike[str] | Iterable[str | bytes | dict[str, Any]]) -> _Export:
    export: _Export | None = None
    section = -1
    for lineno, line in enumerate(_lines(path_or_lines), start=1):
        where = f"line={lineno}"
        try:
            if isinstance(line, dict):  # a record straight from an in-process producer (verify_ledger)
                obj = line
            else:
                text = line.decode("utf-8") if isinstance(line, bytes) else line
                if not text.strip():
                    continue
                obj = _decode(text)
        except ValueError as exc:  # UnicodeDecodeError included
            # A broken line among the entries is that entry's problem, reported in seq order.
            if export is not None and section <= _SECTIONS["entry"]:
                export.entries.append(_BadLine(lineno, f"line {lineno} is not valid JSON: {exc}"))
                section = _SECTIONS["entry"]
                continue
            raise _Fail(where, f"not valid JSON: {exc}") from None
        kind = obj.get("type") if isinstance(obj, dict) else None
        rank = _SECTIONS.get(kind, -1) if isinstance(kind, str) else -1
        _need(rank >= 0, where, "not an export record (unknown or missing type)")
        _need(rank >= section, where, f"{kind} record out of order (header, keys, actor keys, entries, ...)")
        section = rank
        if export is None:
            _need(kind == "header", where, "the export does not start with a header")
            origin, size = _parse_header(obj, where)
            export = _Export(origin, size, [], {}, [], [], {})
            continue
        _need(kind != "header", where, "a second header")
        if kind == "entry":
            export.entries.append(obj)
        elif kind == "key":
            export.keys.append(_parse_key(obj, export.origin, where))
        elif kind == "actor_key":
            key_id, encoded, owner = obj.get("key_id"), obj.get("public_key"), obj.get("owner")
            _need(isinstance(key_id, str) and bool(key_id), where, "actor key has no key_id")
            _need(key_id not in export.actor_keys, where, f"actor key {key_id} listed twice")
            _need(isinstance(owner, str) and bool(owner), where, "actor key has no owner")
            try:
                raw = chain.b64decode_strict(encoded) if isinstance(encoded, str) else b""
            except ValueError:
                raw = b""
            _need(len(raw) == 32, where, "actor key public_key is not 32 bytes of base64")
            export.actor_keys[key_id] = (raw, owner)
        elif kind == "checkpoint":
            size, note = obj.get("tree_size"), obj.get("note")
            _need(
                type(size) is int and size >= 0, where, "checkpoint tree_size is not a non-negative integer"
            )
            _need(isinstance(note, str), where, "checkpoint has no note")
            export.checkpoints.append((lineno, size, note))
        else:
            account, balance = obj.get("account"), obj.get("balance")
            _need(isinstance(account, str) and bool(account), where, "balance line has no account")
            _need(type(balance) is int, where, "balance is not an integer")
            if account in export.balances:
                raise _Fail(f"account={account}", "listed twice in the balance lines")
            export.balances[account] = balance
    if export is None:
        raise _Fail("line=1", "empty export: no header")
    return export


def read_export(path_or_lines: str | os.PathLike[str] | Iterable[str | bytes | dict[str, Any]]) -> _Export:
    """An export's records as parsed, checked for form only (`verify_export` checks the rest): for tools that
    look up entries and keys in an export they have verified (models_market.verify_receipt). ValueError names
    the first malformed line."""
    try:
        return _load(path_or_lines)
    except _Fail as fail:
        raise ValueError(f"{fail.where}: {fail.what}") from None


def _entry_fields(e: dict[str, Any]) -> str | None:
    """What is wrong with an entry's field types, if anything."""
    if type(e.get("kind")) is not str or not e["kind"]:
        return "kind is not a non-empty string"
    if type(e.get("actor")) is not str or not e["actor"]:
        return "actor is not a non-empty string"
    if type(e.get("payload")) is not dict:
        return "payload is not an object"
    if type(e.get("created_at")) is not str or not _TIMESTAMP.fullmatch(e["created_at"]):
        return "created_at is not YYYY-MM-DDTHH:MM:SS.ffffffZ"
    if type(e.get("key_id")) is not str:
        return "key_id is not a string"
    if "actor_key_id" not in e or "actor_signature" not in e:
        return "actor_key_id and actor_signature must be present (null when unused)"
    if e["actor_key_id"] is not None and (type(e["actor_key_id"]) is not str or not e["actor_key_id"]):
        return "actor_key_id is neither null nor a non-empty string"
    if type(e.get("entry_hash")) is not str:
        return "entry_hash is not a hex string"
    if type(e.get("signature")) is not str:
        return "signature is not base64"
    if e["actor_signature"] is not None and type(e["actor_signature"]) is not str:
        return "actor_signature is neither null nor base64"
    return None


def _signature(text: str) -> bytes | None:
    try:
        raw = chain.b64decode_strict(text)
    except ValueError:
        return None
    return raw if len(raw) == 64 else None


def _verify_batch(tasks: list[tuple[int, int, bytes, bytes, bytes]]) -> tuple[int, int] | None:
    """(seq, stage) of the first bad signature in a batch, for the --jobs pool."""
    for seq, stage, public_key, signature, message in tasks:
        if not chain.verify_signature(public_key, signature, message):
            return seq, stage
    return None


class _Signatures:
    """Ed25519 checks: inline (the default), or batched to a process pool with their (seq, stage) kept."""

    def __init__(self, jobs: int, since: int = 0) -> None:
        self.since = since
        self.pool: ProcessPoolExecutor | None = None
        if jobs > 1:
            methods = multiprocessing.get_all_start_methods()
            # fork keeps `python -m ledger.verify` picklable (its functions live in __main__) and starts fast.
            context = multiprocessing.get_context("fork" if "fork" in methods else None)
            self.pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context)
        self.batch: list[tuple[int, int, bytes, bytes, bytes]] = []
        self.futures: list[Future[tuple[int, int] | None]] = []

    def check(
        self, seq: int, stage: int, public_key: bytes, signature: bytes, message: bytes, what: str
    ) -> None:
        if seq < self.since:
            return  # still hashed and linked: a change before `since` breaks every later entry's chain
        if self.pool is None:
            if not chain.verify_signature(public_key, signature, message):
                raise _Fail(f"seq={seq}", what, (seq, stage))
            return
        self.batch.append((seq, stage, public_key, signature, message))
        if len(self.batch) >= _BATCH:
            self.futures.append(self.pool.submit(_verify_batch, self.batch))
            self.batch = []

    def first_failure(self) -> tuple[int, int] | None:
        if self.pool is None:
            return None
        if self.batch:
            self.futures.append(self.pool.submit(_verify_batch, self.batch))
            self.batch = []
        failures = [f for f in (future.result() for future in self.futures) if f is not None]
        return min(failures) if failures else None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


class _Replay:
    def __init__(self, export: _Export, signatures: _Signatures) -> None:
        self.x = export
        self.sigs = signatures
        self.tree = merkle.InMemoryTree()
        self.balances: dict[str, int] = {}
        self.minted = 0  # what the mints took out of issuance: the total supply
        self.head = chain.ZERO_HASH
        self.announced = {k.first_seq - 1: k for k in export.keys[1:]}
        self.checkpoint_at = 0  # index of the next checkpoint to check
        self.last_checkpoint: tuple[int, bytes] | None = None

    def run(self) -> None:
        x = self.x
        active = x.keys[0]
        prev_hex, prev = chain.ZERO_HASH.hex(), chain.ZERO_HASH
        sha256, jcs, check_sig = hashlib.sha256, chain.jcs, self.sigs.check
        tree_append = self.tree.append
        checkpoints = x.checkpoints
        self._checkpoints_up_to(0, active)
        for seq, e in enumerate(x.entries):
            where, order = f"seq={seq}", (seq, _STAGE_FIELDS)
            if type(e) is _BadLine:
                raise _Fail(where, e.problem, order)
            found = e.get("seq")
            if found != seq or type(found) is not int:
                raise _Fail(
                    where, f"expected seq {seq}, found {found!r} (entry missing, moved or inserted)", order
                )
            problem = _entry_fields(e)
            if problem:
                raise _Fail(where, problem, order)
            if e.get("prev_hash") != prev_hex:
                raise _Fail(where, "prev_hash is not the entry_hash of the entry before", order)
            kind, actor, payload, actor_key_id = e["kind"], e["actor"], e["payload"], e["actor_key_id"]
            try:
                canonical = jcs(
                    {
                        "seq": seq,
                        "kind": kind,
                        "actor": actor,
                        "payload": payload,
                        "created_at": e["created_at"],
                        "key_id": e["key_id"],
                        "actor_key_id": actor_key_id,
                    },
                    checked=True,
                )
            except ValueError as exc:  # a lone surrogate from a \ud800 escape has no canonical form
                raise _Fail(where, f"no canonical bytes: {exc}", order) from None
            digest = sha256(prev + canonical).digest()
            if digest.hex() != e["entry_hash"]:
                raise _Fail(where, "entry_hash does not match the entry's canonical bytes", order)
            if e["key_id"] != active.key_id:
                raise _Fail(
                    where, f"signed by key {e['key_id']}, but key {active.key_id} is active here", order
                )
            signature = _signature(e["signature"])
            if signature is None:
                raise _Fail(where, "signature is not 64 bytes of canonical base64", order)
            check_sig(
                seq,
                _STAGE_SIGNATURE,
                active.public_key,
                signature,
                digest,
                "platform signature does not verify",
            )
            if actor_key_id is not None or e["actor_signature"] is not None:
                self._actor(seq, e)
            if "postings" in payload or kind == MINT_KIND:
                self._money(seq, kind, payload)
            rotated = self.announced.get(seq)
            if kind == ROTATION_KIND or rotated is not None:
                self._rotation(seq, kind, payload, rotated)
            tree_append(sha256(b"\x00" + canonical).digest())
            prev, prev_hex = digest, e["entry_hash"]
            self.head = prev
            if self.checkpoint_at < len(checkpoints) and checkpoints[self.checkpoint_at][1] == seq + 1:
                # A checkpoint is signed by the key that signed its last entry, before any rotation takes effect.
                self._checkpoints_up_to(seq + 1, active)
            if rotated is not None:
                active = rotated

    def _actor(self, seq: int, e: dict[str, Any]) -> None:
        where, order = f"seq={seq}", (seq, _STAGE_ACTOR)
        key_id = e["actor_key_id"]
        if key_id is None:
            raise _Fail(where, "actor_signature without actor_key_id", order)
        if e["actor_signature"] is None:
            raise _Fail(where, f"actor_key_id {key_id} is set but actor_signature is missing", order)
        listed = self.x.actor_keys.get(key_id)
        if listed is None:
            raise _Fail(where, f"actor key {key_id} is not listed in the export", order)
        public_key, owner = listed
        if owner != e["actor"]:
            raise _Fail(where, f"actor key {key_id} belongs to {owner}, not to the actor {e['actor']}", order)
        signature = _signature(e["actor_signature"])
        if signature is None:
            raise _Fail(where, "actor_signature is not 64 bytes of canonical base64", order)
        statement = chain.jcs({"actor": e["actor"], "kind": e["kind"], "payload": e["payload"]}, checked=True)
        self.sigs.check(
            seq, _STAGE_ACTOR, public_key, signature, statement, "actor signature does not verify"
        )

    def _money(self, seq: int, kind: str, payload: dict[str, Any]) -> None:
        where, order = f"seq={seq}", (seq, _STAGE_MONEY)
        postings = payload.get("postings")
        if postings is None:
            raise _Fail(where, f"{kind} entry has no postings", order)
        try:
            chain.check_postings(postings)
        except ValueError as exc:
            raise _Fail(where, str(exc), order) from None
        balances = self.balances
        for p in postings:
            account, amount = p["account"], p["amount"]
            if account == ISSUANCE and amount < 0 and kind != MINT_KIND:
                raise _Fail(where, f"only {MINT_KIND} may debit {ISSUANCE}", order)
            if account == ISSUANCE and amount > 0:
                raise _Fail(
                    where,
                    f"credits {ISSUANCE} with {amount}: tokens sent there are destroyed, and the balances "
                    "outside it no longer sum to the total minted",
                    order,
                )
            if account == ISSUANCE:
                self.minted -= amount
            balances[account] = balances.get(account, 0) + amount
        for p in postings:
            account = p["account"]
            if account != ISSUANCE and balances[account] < 0:
                raise _Fail(where, f"account {account} goes negative ({balances[account]})", order)

    def _rotation(self, seq: int, kind: str, payload: dict[str, Any], listed: _Key | None) -> None:
        where, order = f"seq={seq}", (seq, _STAGE_MONEY)
        if kind != ROTATION_KIND and listed is not None:
            raise _Fail(
                where,
                f"key {listed.key_id} is listed from seq {seq + 1}, but this entry is no rotation",
                order,
            )
        new_id, encoded, vkey = (payload.get(k) for k in ("new_key_id", "new_public_key", "new_verifier_key"))
        try:
            raw = chain.b64decode_strict(encoded) if isinstance(encoded, str) else b""
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise _Fail(where, "rotation: new_public_key is not 32 bytes of base64", order)
        if new_id != chain.key_id_for(self.x.origin, raw) or vkey != chain.verifier_key(self.x.origin, raw):
            raise _Fail(
                where, "rotation: new_key_id or new_verifier_key does not match new_public_key", order
            )
        if listed is None or listed.public_key != raw:
            raise _Fail(
                where,
                f"rotation to key {new_id}, but the export lists no such key with first_seq {seq + 1}",
                order,
            )

    def _checkpoints_up_to(self, size: int, signer: _Key) -> None:
        checkpoints = self.x.checkpoints
        while self.checkpoint_at < len(checkpoints) and checkpoints[self.checkpoint_at][1] <= size:
            _lineno, n, note = checkpoints[self.checkpoint_at]
            self._checkpoint(n, note, signer)
            self.checkpoint_at += 1

    def _checkpoint(self, n: int, note: str, signer: _Key) -> None:
        where, order = f"checkpoint tree_size={n}", (n - 1, _STAGE_CHECKPOINT)
        if self.last_checkpoint is not None and n <= self.last_checkpoint[0]:
            raise _Fail(
                where, f"checkpoints are not in increasing order (after {self.last_checkpoint[0]})", order
            )
        try:
            body, _ = notes.parse_note(note)
            origin, size, root = notes.parse_checkpoint(body)
        except ValueError as exc:
            raise _Fail(where, f"malformed note: {exc}", order) from None
        if origin != self.x.origin:
            raise _Fail(where, f"origin {origin!r} is not the log's {self.x.origin!r}", order)
        if size != n:
            raise _Fail(where, f"the note says tree_size {size}", order)
        expected = self.tree.root(n)
        if root != expected:
            raise _Fail(where, f"root {root.hex()} is not the entries' root {expected.hex()}", order)
        if not notes.verify_note(note, signer.verifier_key):
            raise _Fail(where, f"no valid signature by key {signer.key_id} (active at seq {n - 1})", order)
        if self.last_checkpoint is not None and self.last_checkpoint[0] > 0:
            first, first_root = self.last_checkpoint
            proof = self.tree.consistency_proof(first, n)
            if not merkle.verify_consistency(first, n, first_root, root, proof):
                raise _Fail(where, f"not consistent with checkpoint tree_size={first}", order)
        self.last_checkpoint = (n, root)

    def finish(self) -> None:
        x, count = self.x, len(self.x.entries)
        if self.checkpoint_at < len(x.checkpoints):
            n = x.checkpoints[self.checkpoint_at][1]
            raise _Fail(f"checkpoint tree_size={n}", f"export has only {count} entries")
        if x.tree_size != count:
            raise _Fail(
                f"seq={min(x.tree_size, count)}", f"header says tree_size {x.tree_size}, export has {count}"
            )
        unannounced = [k.first_seq for k in x.keys[1:] if k.first_seq - 1 >= count]
        if unannounced:
            first_seq = min(unannounced)
            raise _Fail(
                f"seq={first_seq - 1}", f"no rotation entry announces the key listed from seq {first_seq}"
            )
        for account in sorted(self.balances.keys() | x.balances.keys()):
            replayed, stated = self.balances.get(account, 0), x.balances.get(account)
            if stated is None and replayed != 0:
                raise _Fail(
                    f"account={account}", f"replayed balance {replayed} is missing from the balance lines"
                )
            if stated is not None and stated != replayed:
                raise _Fail(f"account={account}", f"stated balance {stated}, replayed {replayed}")
        self._supply()

    def _supply(self) -> None:
        """The invariant: the balances outside issuance sum to the total minted, and issuance holds minus it."""
        outside = sum(balance for account, balance in self.balances.items() if account != ISSUANCE)
        issuance = self.balances.get(ISSUANCE, 0)
        if outside != self.minted or issuance != -self.minted:
            raise _Fail(
                "supply",
                f"the balances outside {ISSUANCE} sum to {outside} and {ISSUANCE} holds {issuance}, "
                f"but {self.minted} were minted",
            )


def _check_keys(export: _Export, trusted_key: str | None) -> None:
    keys = export.keys
    if not keys:
        raise _Fail("seq=0", "the export lists no platform key")
    if keys[0].first_seq != 0:
        raise _Fail("seq=0", f"the first key {keys[0].key_id} must have first_seq 0")
    for earlier, later in itertools.pairwise(keys):
        if later.first_seq <= earlier.first_seq:
            raise _Fail(f"seq={later.first_seq}", f"key {later.key_id}: keys are not listed oldest first")
    if trusted_key is not None:
        name, key_id, raw = chain.parse_verifier_key(trusted_key)
        if (name, key_id, raw) != (export.origin, keys[0].key_id, keys[0].public_key):
            raise _Fail("seq=0", f"the export's first key {keys[0].verifier_key} is not the trusted key")


def verify_export(
    path_or_lines: str | os.PathLike[str] | Iterable[str | bytes | dict[str, Any]],
    *,
    trusted_key: str | None = None,
    jobs: int = 1,
    since: int = 0,
) -> Report:
    """Check an export as FORMAT.md says; the Report names the first problem in seq order, if any.

    With `since`, entries before that seq are re-hashed, linked and replayed but their signatures are not checked
    again (the expensive part); the chain makes any change to them show at every later entry."""
    if trusted_key is not None:
        chain.parse_verifier_key(trusted_key)  # a malformed pin is the caller's error, not the export's
    pinned = trusted_key is not None
    try:
        export = _load(path_or_lines)
    except _Fail as fail:
        return Report(False, where=fail.where, what=fail.what, pinned=pinned)
    signatures = _Signatures(jobs, since)
    replay = _Replay(export, signatures)
    failure: _Fail | None = None
    failed_at = (len(export.entries), 0)  # problems found after the entry pass come after every signature
    try:
        _check_keys(export, trusted_key)
        replay.run()
        replay.finish()
    except _Fail as fail:
        failure = fail
        failed_at = fail.order or failed_at
    try:
        bad_signature = signatures.first_failure()
    finally:
        signatures.close()
    # A signature checked in the pool may precede the problem the sequential pass stopped at.
    if bad_signature is not None and bad_signature < failed_at:
        seq, stage = bad_signature
        what = (
            "platform signature does not verify"
            if stage == _STAGE_SIGNATURE
            else "actor signature does not verify"
        )
        failure = _Fail(f"seq={seq}", what)
    accounts = len(replay.balances.keys() | export.balances.keys())
    counts = {
        "entries": len(export.entries),
        "checkpoints": len(export.checkpoints),
        "accounts": accounts,
        "minted": replay.minted,
        "head": replay.head.hex(),
        "pinned": pinned,
    }
    if failure is not None:
        return Report(False, where=failure.where, what=failure.what, **counts)
    return Report(True, tree=replay.tree, **counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ledger.verify", description="Verify a ledger export.")
    parser.add_argument("file", help="the export (JSON lines)")
    parser.add_argument("--key", help="the trusted first platform key (verifier key), obtained out of band")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    parser.add_argument("--jobs", type=int, default=1, help="processes for signature checks (default 1)")
    parser.add_argument(
        "--since",
        type=int,
        default=0,
        help="check signatures from this seq on (all entries are still re-hashed)",
    )
    args = parser.parse_args(argv)
    if args.key is not None:
        try:
            chain.parse_verifier_key(args.key)
        except ValueError as exc:
            parser.error(f"--key: {exc}")
    try:
        report = verify_export(
            args.file, trusted_key=args.key, jobs=max(1, args.jobs), since=max(0, args.since)
        )
    except OSError as exc:
        print(f"cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    if not report.ok or not args.quiet:
        print(report.line())
    if report.ok and not report.pinned and not args.quiet:
        print(
            "note: the first key was not pinned; pass --key to check it against a trusted copy",
            file=sys.stderr,
        )
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
