"""A receipt verifies offline against a real export of the ledger, and a tampered one does not."""

import copy
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import rfc8785
from django.core.management import call_command
from django.db import connection

from ledger import merkle
from ledger.models import Entry
from models_market import services
from models_market.services import admission, metering
from models_market.verify_receipt import ReceiptError, verify_receipt
from tests.conftest import api_as
from tests.ledger.helpers import fund
from tests.models_market.helpers import ROW, dataset_version, group_call, listed, make_version, mint

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run(
        [sys.executable, "-m", "models_market.verify_receipt", *map(str, args)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def settled(alice, bob, carol, dora, tmp_path):
    """bob's call, settled with two others, its receipt fetched with its proof, and the ledger exported."""
    parent = make_version(carol, name="Parent")
    mint(parent)
    token = listed(alice, lineage_bp=1_500, parents=(parent,), trained_on=dataset_version(dora),
                   price_perpetual=1_000, price_per_call=25)  # fmt: skip
    fund(f"user:{bob.pk}", 5_000)
    services.license_purchase(buyer=bob, token=token, kind="perpetual")
    client = api_as(bob)
    request = json.dumps({"rows": [ROW, {**ROW, "age": 0.1}]}, indent=1).encode()  # the bytes sent
    answers = [client.post(f"/api/models/versions/{token.version_id}/predict/", request,
                           content_type="application/json").json() for _ in range(3)]  # fmt: skip
    services.settle_pending(limit=10)
    receipt = client.get(f"/api/models/receipts/{answers[1]['receipt']['id']}/").json()
    paths = {name: tmp_path / f"{name}.json" for name in ("receipt", "request", "answer")}
    paths["receipt"].write_text(json.dumps(receipt))
    paths["request"].write_bytes(request)
    paths["answer"].write_text(json.dumps(answers[1]))
    paths["export"] = tmp_path / "export.jsonl"
    call_command("export_ledger", str(paths["export"]))
    return receipt, paths


def test_a_settled_receipt_verifies_offline_with_its_request_body_and_predictions(settled):
    receipt, paths = settled
    assert receipt["body"]["format"] == 2
    assert receipt["body"]["input_sha256"] == hashlib.sha256(paths["request"].read_bytes()).hexdigest()
    done = run(paths["receipt"], paths["export"], "--input", paths["request"], "--output", paths["answer"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(
        f"OK receipt {receipt['id']}: version {receipt['body']['version']}, 2 rows, price 25"
    )
    assert "leaf 1 of 3" in done.stdout


def test_a_format_2_receipt_names_the_bytes_sent_not_just_the_rows(settled, tmp_path):
    receipt, paths = settled
    same_rows = tmp_path / "compact.json"  # the very rows, written otherwise
    same_rows.write_text(json.dumps(json.loads(paths["request"].read_bytes())))
    with pytest.raises(ReceiptError, match="request body does not hash"):
        verify_receipt(receipt, str(paths["export"]), input_path=str(same_rows))
    with pytest.raises(ReceiptError, match="format 1 is not one this verifier knows"):
        verify_receipt(tampered(receipt, lambda r: r["body"].update(format=1)), str(paths["export"]))
    with pytest.raises(ReceiptError, match="signature does not verify"):  # read as format 1
        verify_receipt(tampered(receipt, lambda r: r["body"].pop("format")), str(paths["export"]))


def test_a_call_without_a_body_has_a_format_1_receipt_that_still_verifies_with_its_rows(alice, bob, tmp_path):
    token = listed(alice, price_perpetual=1_000, price_per_call=25)
    fund(f"user:{bob.pk}", 5_000)
    services.license_purchase(buyer=bob, token=token, kind="perpetual")
    rows = [ROW, {**ROW, "age": 0.1}]
    outputs, issued = services.predict_call(user=bob, version=token.version, rows=rows)  # as the model's page
    assert "format" not in issued.body  # as every receipt before format 2
    assert issued.body["input_sha256"] == hashlib.sha256(rfc8785.dumps(rows)).hexdigest()
    services.settle_pending(limit=10)
    receipt = api_as(bob).get(f"/api/models/receipts/{issued.pk}/").json()
    paths = {name: tmp_path / f"{name}.json" for name in ("receipt", "request", "answer", "export")}
    paths["receipt"].write_text(json.dumps(receipt))
    paths["request"].write_text(json.dumps({"rows": rows}, indent=2))  # any spelling of the rows
    paths["answer"].write_text(json.dumps({"predictions": outputs}))
    call_command("export_ledger", str(paths["export"]))
    done = run(paths["receipt"], paths["export"], "--input", paths["request"], "--output", paths["answer"])
    assert done.returncode == 0, done.stdout + done.stderr
    paths["request"].write_text(json.dumps({"rows": rows[:1]}))
    done = run(paths["receipt"], paths["export"], "--input", paths["request"])
    assert (done.returncode, done.stdout.strip()) == (1, "FAIL the rows do not hash to input_sha256")


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="calls are written in groups on PostgreSQL only"
)
def test_receipts_written_together_are_signed_once_and_each_verifies_offline_alone(
    alice, bob, carol, tmp_path
):
    token = listed(alice, price_perpetual=1_000, price_per_call=25)
    licences = {}
    for user in (bob, carol):
        fund(f"user:{user.pk}", 5_000)
        licences[user] = services.license_purchase(buyer=user, token=token, kind="perpetual")
    callers = [bob, carol, bob]
    group = [group_call(u, token, licences[u], price=25, signed=False) for u in callers]
    for user in (bob, carol):
        metering._top_up(user, 25, want=50)
    admission._write(group)
    assert [c.written for c in group] == [True] * 3
    assert len({c.receipt.signature for c in group}) == 1, "one signature for the group"
    assert [c.receipt.signing_group["index"] for c in group] == [0, 1, 2]
    services.settle_pending(limit=10)
    export = tmp_path / "export.jsonl"
    call_command("export_ledger", str(export))
    receipts = [
        api_as(u).get(f"/api/models/receipts/{c.receipt.pk}/").json()
        for u, c in zip(callers, group, strict=True)
    ]
    assert receipts[1]["group"]["size"] == 3 and receipts[1]["group"] == group[1].receipt.signing_group
    for receipt in receipts:
        line = verify_receipt(receipt, str(export))
        assert f"OK receipt {receipt['id']}:" in line and "signed in a group of 3 by" in line
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(receipts[2]))
    done = run(path, export)
    assert done.returncode == 0 and "signed in a group of 3" in done.stdout, done.stdout + done.stderr

    # A path says nothing about the group-mates' calls: each leaf mixes in a salt that only its holder is given.
    mate = receipts[1]
    salted = merkle.hash_leaf(rfc8785.dumps({"body": mate["body"], "salt": mate["group"]["salt"]}))
    assert receipts[0]["group"]["path"][0] == salted.hex()
    assert merkle.hash_leaf(rfc8785.dumps(mate["body"])).hex() not in receipts[0]["group"]["path"]
    assert len({r["group"]["salt"] for r in receipts}) == 3

    first, second = receipts[0], receipts[1]
    for change, says in [
        (lambda r: r["body"].update(price=0), "signature does not verify"),
        (lambda r: r.update(body=second["body"]), "signature does not verify"),  # another's body, this path
        (lambda r: r["group"].update(index=1), "signature does not verify"),
        (lambda r: r["group"].update(size=4), "signature does not verify"),
        (lambda r: r["group"].update(salt=second["group"]["salt"]), "signature does not verify"),
        (lambda r: r["group"].update(salt="00"), "salt is not 16 bytes"),
        (lambda r: r["group"]["path"].reverse(), "signature does not verify"),
        (lambda r: r["group"].update(path=r["group"]["path"][:1]), "does not fit its place"),
        (lambda r: r["group"].update(index=3), "place in its group"),
        (lambda r: r.update(group=None), "signature does not verify"),  # read as signed alone
        (lambda r: r.update(group=[]), "group is malformed"),
    ]:
        with pytest.raises(ReceiptError, match=says):
            verify_receipt(tampered(first, change), str(export))


def tampered(receipt: dict, change) -> dict:
    receipt = copy.deepcopy(receipt)
    change(receipt)
    return receipt


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda r: r["body"].update(price=1), "signature does not verify"),
        (lambda r: r["body"].update(caller="user:1"), "signature does not verify"),
        (lambda r: r.update(signature=r["signature"][:-2] + ("00" if r["signature"][-2:] != "00" else "11")),
         "signature does not verify"),
        (lambda r: r.update(key_id="abcd1234"), "does not list"),
        (lambda r: r["proof"].update(leaf_index=0), "not included"),
        (lambda r: r["proof"]["path"].reverse(), "not included"),
        (lambda r: r["proof"].update(entry_seq=0), "not a settlement"),
        (lambda r: r.update(proof=None), "not settled yet"),
        (lambda r: r["body"].pop("rows"), "body must hold"),
    ],
)  # fmt: skip
def test_a_tampered_receipt_fails(settled, change, says):
    receipt, paths = settled
    with pytest.raises(ReceiptError, match=says):
        verify_receipt(tampered(receipt, change), str(paths["export"]))


def test_the_cli_fails_a_tampered_receipt_and_wrong_rows(settled, tmp_path):
    receipt, paths = settled
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(tampered(receipt, lambda r: r["body"].update(price=0))))
    done = run(bad, paths["export"])
    assert (done.returncode, done.stdout.strip()) == (1, "FAIL the platform's signature does not verify")
    paths["request"].write_text(json.dumps({"rows": [ROW]}))
    done = run(paths["receipt"], paths["export"], "--input", paths["request"])
    assert (done.returncode, done.stdout.strip()) == (
        1, "FAIL the request body does not hash to input_sha256 (format 2: give the body exactly as sent)",
    )  # fmt: skip


def test_a_tampered_export_fails_even_with_a_good_receipt(settled):
    receipt, paths = settled
    lines = paths["export"].read_text().splitlines()
    settlement = Entry.objects.get(kind="models_market.calls.settled")
    for i, line in enumerate(lines):
        record = json.loads(line)
        if record.get("type") == "entry" and record["seq"] == settlement.seq:
            record["payload"]["merkle_root"] = "00" * 32  # a forged root for a forged batch
            lines[i] = json.dumps(record)
    paths["export"].write_text("\n".join(lines) + "\n")
    with pytest.raises(ReceiptError, match=f"export does not verify: FAIL seq={settlement.seq}"):
        verify_receipt(receipt, str(paths["export"]))


def test_the_verifier_imports_no_django():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = "import sys, models_market.verify_receipt; print(sorted(m for m in sys.modules if m.startswith('django')))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stderr
