"""The offline verifier against exports built by tests/ledger/exports.py: one good, then one tampering at a time."""

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import chain, notes
from ledger.verify import verify_export
from tests.ledger import exports

ROOT = Path(__file__).resolve().parents[2]
N = 60
ROTATION = 30  # build_export rotates at n // 2
SIGNED_BY_ALICE = 5
NON_ASCII = 6


@pytest.fixture(scope="module")
def built() -> exports.ExportBuilder:
    return exports.build_export(N, checkpoint_every=16)


@pytest.fixture
def records(built) -> list[dict]:
    return built.records()


@pytest.fixture(scope="module")
def small_export() -> bytes:
    built = exports.build_export(12, checkpoint_every=5)
    return "".join(exports.to_lines(built.records())).encode()


def entry(records: list[dict], seq: int) -> dict:
    return exports.entries_of(records)[seq]


def index_of(records: list[dict], seq: int) -> int:
    return next(i for i, r in enumerate(records) if r["type"] == "entry" and r["seq"] == seq)


def check(records: list[dict], *, trusted_key: str | None = None, jobs: int = 1):
    return verify_export(exports.to_lines(records), trusted_key=trusted_key, jobs=jobs)


def assert_fails(records: list[dict], where: str, what: str, **kwargs) -> None:
    report = check(records, **kwargs)
    assert not report.ok
    assert (report.where, what in (report.what or "")) == (where, True), report.line()
    assert report.line() == f"FAIL {report.where}: {report.what}"


def run_cli(*args: str, importtime: bool = False) -> subprocess.CompletedProcess:
    flags = ["-X", "importtime"] if importtime else []
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run(
        [sys.executable, *flags, "-m", "ledger.verify", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_built_export_covers_every_kind_of_record(built, records):
    kinds = {r["kind"] for r in exports.entries_of(records)}
    assert {"ledger.mint", "ledger.transfer", "ledger.key.rotated", "marketplace.dataset.published"} <= kinds
    assert entry(records, SIGNED_BY_ALICE)["actor_signature"] is not None
    assert entry(records, ROTATION)["kind"] == "ledger.key.rotated"
    assert [c["tree_size"] for c in built.checkpoints] == [16, 32, 48, 60]
    assert len(built.keys) == 2


def test_a_good_export_passes(built, records):
    report = check(records, trusted_key=built.keys[0].verifier_key)
    assert report.ok, report.line()
    assert (
        report.line()
        == f"OK {N} entries, 4 checkpoints, 5 accounts, {built.minted} minted, head {built.head.hex()}"
    )
    assert report.pinned


def test_a_good_export_passes_with_a_signature_pool(records):
    assert check(records, jobs=2).ok


def test_an_empty_ledger_passes():
    b = exports.ExportBuilder()
    b.checkpoint(cosign=False)
    report = check(b.records(), trusted_key=b.keys[0].verifier_key)
    assert report.line() == f"OK 0 entries, 1 checkpoints, 0 accounts, 0 minted, head {chain.ZERO_HASH.hex()}"


def test_the_cli_passes_a_good_export_without_importing_django(built, records, tmp_path):
    path = exports.write(tmp_path / "export.jsonl", records)
    done = run_cli(str(path), "--key", built.keys[0].verifier_key, importtime=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        done.stdout
        == f"OK {N} entries, 4 checkpoints, 5 accounts, {built.minted} minted, head {built.head.hex()}\n"
    )
    imported = re.findall(r"\|\s+([\w.]+)\s*$", done.stderr, re.MULTILINE)
    assert "ledger.verify" in imported or "ledger.chain" in imported
    assert not [m for m in imported if m == "django" or m.startswith("django.")]


def test_the_cli_never_has_django_in_sys_modules(tmp_path, records):
    path = exports.write(tmp_path / "export.jsonl", records)
    script = (
        "import runpy, sys\n"
        f"sys.argv = ['ledger.verify', {str(path)!r}, '--quiet']\n"
        "try:\n    runpy.run_module('ledger.verify', run_name='__main__')\n"
        "except SystemExit as exc:\n    code = exc.code\n"
        "print(code, sorted(m for m in sys.modules if m.split('.')[0] == 'django'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip() == "0 []", done.stdout + done.stderr


def test_the_cli_fails_with_exit_1_and_names_the_first_bad_seq(tmp_path, records):
    entry(records, 12)["payload"]["memo"] = "changed"
    entry(records, 20)["signature"] = entry(records, 21)["signature"]
    done = run_cli(str(exports.write(tmp_path / "bad.jsonl", records)), "--quiet")
    assert done.returncode == 1
    assert done.stdout == "FAIL seq=12: entry_hash does not match the entry's canonical bytes\n"


def test_the_cli_refuses_a_malformed_key_as_a_usage_error(tmp_path, records):
    done = run_cli(str(exports.write(tmp_path / "export.jsonl", records)), "--key", "nonsense")
    assert done.returncode == 2


def test_a_different_trusted_key_is_refused(built, records):
    stranger = chain.verifier_key(exports.ORIGIN, chain.public_key_raw(exports.key_from("mallory")))
    assert_fails(records, "seq=0", "is not the trusted key", trusted_key=stranger)
    assert_fails(records, "seq=0", "is not the trusted key", trusted_key=built.keys[1].verifier_key)


def _edit_payload_byte(e: dict) -> None:
    e["payload"]["memo"] = e["payload"]["memo"][:-1] + chr(ord(e["payload"]["memo"][-1]) ^ 1)


def _edit_amount(e: dict) -> None:
    for posting in e["payload"]["postings"]:
        posting["amount"] += 1 if posting["amount"] > 0 else -1


def _flip_hex(text: str) -> str:
    return text[:-1] + ("0" if text[-1] != "0" else "1")


def _flip_signature(e: dict) -> None:
    raw = bytearray(chain.b64decode_strict(e["signature"]))
    raw[10] ^= 0x04
    e["signature"] = chain.b64encode(bytes(raw))


TAMPERINGS = {
    "payload byte": (_edit_payload_byte, "entry_hash does not match"),
    "amount": (_edit_amount, "entry_hash does not match"),
    "actor": (lambda e: e.update(actor=e["actor"] + "9"), "entry_hash does not match"),
    "kind": (lambda e: e.update(kind="ledger.refund"), "entry_hash does not match"),
    "timestamp": (lambda e: e.update(created_at="2025-01-01T00:00:11.000012Z"), "entry_hash does not match"),
    "malformed timestamp": (lambda e: e.update(created_at="2025-01-01 00:00:10Z"), "created_at"),
    "prev_hash": (lambda e: e.update(prev_hash=_flip_hex(e["prev_hash"])), "prev_hash"),
    "entry_hash": (lambda e: e.update(entry_hash=_flip_hex(e["entry_hash"])), "entry_hash does not match"),
    "signature": (_flip_signature, "platform signature does not verify"),
    "signature encoding": (lambda e: e.update(signature=e["signature"][:-3] + "B=="), "canonical base64"),
    "seq": (lambda e: e.update(seq=11), "expected seq 10"),
    "float amount": (lambda e: e["payload"].update(extra=1.5), "floats are not allowed"),
}


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("name", TAMPERINGS)
def test_each_change_to_an_entry_is_caught_at_its_seq(records, name, jobs):
    tamper, what = TAMPERINGS[name]
    assert entry(records, 10)["kind"] == "ledger.transfer"
    tamper(entry(records, 10))
    _edit_payload_byte(entry(records, 40))  # a later problem must not hide the first one
    assert_fails(records, "seq=10", what, jobs=jobs)


def test_a_deleted_entry_is_caught(records):
    del records[index_of(records, 10)]
    assert_fails(records, "seq=10", "expected seq 10, found 11")


def test_a_swapped_pair_is_caught(records):
    i = index_of(records, 10)
    records[i], records[i + 1] = records[i + 1], records[i]
    assert_fails(records, "seq=10", "expected seq 10, found 11")


def test_an_inserted_entry_is_caught_even_when_it_links_and_hashes_correctly(records):
    forged = copy.deepcopy(entry(records, 10))
    forged["payload"]["memo"] = "inserted"
    canonical = chain.canonical_bytes(**{k: forged[k] for k in exports._SIGNED})
    digest = chain.entry_hash(bytes.fromhex(forged["prev_hash"]), canonical)
    forged["entry_hash"] = digest.hex()
    forged["signature"] = chain.b64encode(chain.sign(exports.key_from("mallory"), digest))
    records.insert(index_of(records, 10), forged)
    assert_fails(records, "seq=10", "platform signature does not verify")


def test_an_unparseable_entry_line_is_reported_at_its_seq(records):
    lines = exports.to_lines(records)
    lines[index_of(records, 10)] = '{"type": "entry", "seq": 10,\n'
    report = verify_export(lines)
    assert (report.where, "not valid JSON" in report.what) == ("seq=10", True)


def test_a_changed_balance_line_is_caught(records):
    line = next(r for r in records if r["type"] == "balance" and r["account"] == "user:2")
    line["balance"] += 1
    assert_fails(records, "account=user:2", "stated balance")


def test_a_missing_or_invented_balance_line_is_caught(records):
    missing = [r for r in records if not (r["type"] == "balance" and r["account"] == "org:1")]
    assert_fails(missing, "account=org:1", "missing from the balance lines")
    invented = [*records, {"type": "balance", "account": "user:99", "balance": 5}]
    assert_fails(invented, "account=user:99", "stated balance 5, replayed 0")
    harmless = [*records, {"type": "balance", "account": "user:98", "balance": 0}]
    assert check(harmless).ok


def test_entries_cut_from_the_tail_below_the_last_checkpoint_are_caught(records):
    cut = [r for r in records if not (r["type"] == "entry" and r["seq"] >= 55)]
    assert_fails(cut, f"checkpoint tree_size={N}", "export has only 55 entries")
    cut[0]["tree_size"] = 55  # a header that agrees with the cut hides nothing
    assert_fails(cut, f"checkpoint tree_size={N}", "export has only 55 entries")


def test_entries_cut_after_the_last_checkpoint_disagree_with_the_header():
    built = exports.build_export(20, checkpoint_every=8)
    records = [r for r in built.records() if not (r["type"] == "entry" and r["seq"] == 19)]
    records = [r for r in records if not (r["type"] == "checkpoint" and r["tree_size"] == 20)]
    assert_fails(records, "seq=19", "header says tree_size 20")


def test_a_checkpoint_with_a_changed_root_is_caught(built, records):
    cp = next(r for r in records if r["type"] == "checkpoint" and r["tree_size"] == 32)
    body, _ = notes.parse_note(cp["note"])
    forged_body = notes.checkpoint_body(exports.ORIGIN, 32, built.tree.root(31))
    cp["note"] = cp["note"].replace(body, forged_body)
    assert_fails(records, "checkpoint tree_size=32", "is not the entries' root")


def test_a_checkpoint_signed_by_a_retired_key_is_caught(built, records):
    cp = next(r for r in records if r["type"] == "checkpoint" and r["tree_size"] == 32)
    body, _ = notes.parse_note(cp["note"])
    cp["note"] = notes.sign_note(body, exports.ORIGIN, built.keys[0].private)
    assert_fails(records, "checkpoint tree_size=32", f"no valid signature by key {built.keys[1].key_id}")


def test_a_malformed_checkpoint_note_is_caught(records):
    cp = next(r for r in records if r["type"] == "checkpoint" and r["tree_size"] == 48)
    cp["note"] = cp["note"].replace("\n\n", "\n")
    assert_fails(records, "checkpoint tree_size=48", "malformed note")


def test_a_removed_rotation_entry_is_caught(records):
    del records[index_of(records, ROTATION)]
    assert_fails(records, f"seq={ROTATION}", f"expected seq {ROTATION}")


def test_a_rotation_to_a_forged_key_is_caught(built, records):
    mallory = exports.PlatformKey(exports.key_from("mallory"), ROTATION + 1)
    rotation = entry(records, ROTATION)
    rotation["payload"] = {
        "new_key_id": mallory.key_id,
        "new_public_key": chain.b64encode(mallory.raw),
        "new_verifier_key": mallory.verifier_key,
    }
    key_line = next(r for r in records if r["type"] == "key" and r["first_seq"] == ROTATION + 1)
    key_line.update(
        key_id=mallory.key_id, public_key=chain.b64encode(mallory.raw), verifier_key=mallory.verifier_key
    )
    for e in exports.entries_of(records)[ROTATION + 1 :]:
        e["key_id"] = mallory.key_id
    # Mallory reseals everything from the rotation on with her key, but cannot sign the rotation as the old key.
    exports.reseal(records, built)
    for e in exports.entries_of(records)[ROTATION:]:
        e["signature"] = chain.b64encode(chain.sign(mallory.private, bytes.fromhex(e["entry_hash"])))
    assert_fails(records, f"seq={ROTATION}", "platform signature does not verify")


def test_a_rotation_missing_from_the_key_list_is_caught(records):
    records = [r for r in records if not (r["type"] == "key" and r["first_seq"] == ROTATION + 1)]
    assert_fails(records, f"seq={ROTATION}", "lists no such key")


def test_a_listed_key_without_its_rotation_is_caught(records):
    key_line = next(r for r in records if r["type"] == "key" and r["first_seq"] == ROTATION + 1)
    key_line["first_seq"] = ROTATION + 5
    assert_fails(records, f"seq={ROTATION}", "lists no such key")


def test_an_entry_signed_by_the_retired_key_after_rotation_is_caught(built, records):
    e = entry(records, ROTATION + 3)
    e["key_id"] = built.keys[0].key_id
    exports.reseal(records, built)
    e["signature"] = chain.b64encode(chain.sign(built.keys[0].private, bytes.fromhex(e["entry_hash"])))
    assert_fails(records, f"seq={ROTATION + 3}", f"but key {built.keys[1].key_id} is active")


def test_an_actor_signature_by_the_wrong_key_is_caught(records):
    e = entry(records, SIGNED_BY_ALICE)
    statement = chain.actor_statement(actor=e["actor"], kind=e["kind"], payload=e["payload"])
    e["actor_signature"] = chain.b64encode(chain.sign(exports.key_from("mallory"), statement))
    assert_fails(records, f"seq={SIGNED_BY_ALICE}", "actor signature does not verify")
    assert_fails(records, f"seq={SIGNED_BY_ALICE}", "actor signature does not verify", jobs=2)


def test_an_actor_key_of_someone_else_is_caught(records):
    next(r for r in records if r["type"] == "actor_key")["owner"] = "user:2"
    assert_fails(records, f"seq={SIGNED_BY_ALICE}", "belongs to user:2, not to the actor user:1")


def test_a_dropped_actor_signature_is_caught(records):
    entry(records, SIGNED_BY_ALICE)["actor_signature"] = None
    assert_fails(records, f"seq={SIGNED_BY_ALICE}", "actor_signature is missing")


def test_a_signed_entry_that_breaks_the_money_rules_is_caught():
    b = exports.build_export(12, checkpoint_every=100)
    b.append(
        "ledger.transfer",
        "user:1",
        {"postings": [{"account": "issuance", "amount": -5}, {"account": "user:1", "amount": 5}]},
    )
    assert_fails(b.records(), "seq=12", "only ledger.mint may debit issuance")

    b = exports.build_export(12, checkpoint_every=100)
    b.transfer("user:2", "user:1", b.balances["user:2"] + 1)
    assert_fails(b.records(), "seq=12", "account user:2 goes negative")

    b = exports.build_export(12, checkpoint_every=100)
    b.append("ledger.transfer", "user:1", {"postings": [{"account": "user:1", "amount": -5}]})
    assert_fails(b.records(), "seq=12", "postings sum to -5")


def test_a_signed_burn_into_issuance_breaks_the_supply_invariant_and_is_caught():
    b = exports.build_export(12, checkpoint_every=100)
    minted = b.minted
    b.transfer("user:2", "issuance", 5)
    # The postings sum to zero and the balance lines replay: only the invariant is broken.
    assert sum(b.balances[a] for a in b.balances if a != "issuance") == minted - 5
    assert_fails(b.records(), "seq=12", "credits issuance with 5")


def test_a_transfer_tampered_into_a_burn_and_resealed_is_caught(built, records):
    target = next(e for e in exports.entries_of(records) if e["kind"] == "ledger.transfer" and e["seq"] > 20)
    destination = target["payload"]["postings"][1]["account"]
    target["payload"]["postings"][1]["account"] = "issuance"
    exports.reseal(records, built)  # as if the forger held the platform's key
    amount = target["payload"]["postings"][1]["amount"]
    for record in records:  # and stated balances that agree with the forged journal
        if record["type"] == "balance" and record["account"] == destination:
            record["balance"] -= amount
        if record["type"] == "balance" and record["account"] == "issuance":
            record["balance"] += amount
    report = check(records)
    assert not report.ok
    # The resealed checkpoints no longer match; the first problem in seq order is the burn itself.
    assert report.where == f"seq={target['seq']}" and "credits issuance" in report.what, report.line()


def test_a_non_ascii_payload_verifies_through_the_rfc8785_path(records):
    assert "🍮" in entry(records, NON_ASCII)["payload"]["title"]
    entry(records, NON_ASCII)["payload"]["title"] = entry(records, NON_ASCII)["payload"]["title"].replace(
        "é", "e"
    )
    assert_fails(records, f"seq={NON_ASCII}", "entry_hash does not match")


def test_the_first_problem_wins_across_entries_checkpoints_and_balances(records):
    cp = next(r for r in records if r["type"] == "checkpoint" and r["tree_size"] == 16)
    cp["note"] = cp["note"].replace(cp["note"].split("\n")[2], chain.b64encode(bytes(32)))
    _edit_payload_byte(entry(records, 20))
    next(r for r in records if r["type"] == "balance")["balance"] += 1
    assert_fails(records, "checkpoint tree_size=16", "")
    assert_fails(records, "checkpoint tree_size=16", "", jobs=2)


def test_bad_utf8_and_lone_surrogates_are_reported_not_raised(records, tmp_path):
    lines = [line.encode() for line in exports.to_lines(records)]
    lines[index_of(records, 10)] = lines[index_of(records, 10)].replace(b'"memo": "', b'"memo": "\xff')
    report = verify_export(exports.write_bytes(tmp_path / "bad.jsonl", lines))
    assert (report.where, "not valid JSON" in report.what) == ("seq=10", True)

    text = exports.to_lines(records)
    text[index_of(records, 10)] = text[index_of(records, 10)].replace('"memo": "', '"memo": "\\ud800')
    report = verify_export(text)
    assert (report.where, "surrogate" in report.what) == ("seq=10", True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_changed_byte_gives_a_report_never_an_exception(small_export, data):
    raw = small_export
    at = data.draw(st.integers(0, len(raw) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != raw[at]))
    changed = raw[:at] + bytes([value]) + raw[at + 1 :]
    report = verify_export(changed.splitlines(keepends=True))
    assert report.line().startswith("OK " if report.ok else "FAIL ")
