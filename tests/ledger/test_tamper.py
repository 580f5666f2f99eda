"""Tampering made directly in the database is caught by verify_ledger and by the offline verifier, at its seq."""

import json
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.db.models import F

from ledger import chain, services
from ledger.models import Account, Entry
from ledger.services import Share
from platform_site.accounts.services import public_key_register
from tests.platform_site.accounts.keys import ed25519_keypair
from tests.processes import ROOT

pytestmark = pytest.mark.django_db
TARGET = 123


@pytest.fixture
def ledger(alice, bob, mallory, settings, tmp_path):
    """About 300 entries of several kinds: mints, transfers, splits, escrows, an actor-signed transfer, a key
    rotation, and checkpoints along the way."""
    key_file = tmp_path / "ledger.pem"
    key_file.write_bytes(settings.LEDGER_KEY_FILE.read_bytes())
    settings.LEDGER_KEY_FILE = key_file
    a, b, m = (f"user:{u.pk}" for u in (alice, bob, mallory))
    private, public_pem = ed25519_keypair()
    key = public_key_register(actor=alice, name="laptop", key_text=public_pem)
    with transaction.atomic():
        for name in (a, b, m):
            services.mint(destination=name, amount=1_000_000, actor="system", reason="start")
    for i in range(290):
        with transaction.atomic():
            step = i % 6
            if step == 0:
                services.transfer(source=a, destination=b, amount=100 + i, actor=a, memo=f"n{i}")
            elif step == 1:
                services.transfer(source=b, destination=m, amount=50 + i, actor=b)
            elif step == 2:
                services.split_pay(
                    source=m, amount=1_001 + i, shares=[Share(a, 6_000), Share("treasury", 4_000)], actor=m
                )
            elif step == 3:
                escrow = services.escrow_open(payer=a, payee=m, amount=500, actor=a, condition="delivery")
                services.escrow_release(escrow=escrow, actor="system") if i % 4 else services.escrow_refund(
                    escrow=escrow, actor="system"
                )
            elif step == 4:
                postings = [{"account": a, "amount": -7}, {"account": b, "amount": 7}]
                statement = chain.actor_statement(
                    actor=a, kind="ledger.transfer", payload={"postings": postings}
                )
                services.postings_post(
                    kind="ledger.transfer", actor=a, postings=postings, actor_key_id=key.key_id,
                    actor_signature=private.sign(statement),
                )  # fmt: skip
            else:
                services.mint(destination=b, amount=3, actor="system", reason="drip")
        if i == 150:
            services.signing_key_rotate()
        if i % 50 == 49:
            services.checkpoint_create()
    services.checkpoint_create()
    return {"a": a, "b": b, "size": Entry.objects.count()}


def verify_ledger_says() -> str:
    try:
        call_command("verify_ledger", "--quiet")
    except CommandError as exc:
        return str(exc)
    return "OK"


def offline_verifier_says(tmp_path) -> str:
    path = tmp_path / "export.jsonl"
    call_command("export_ledger", str(path))
    done = subprocess.run(
        [sys.executable, "-m", "ledger.verify", str(path), "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return "OK" if done.returncode == 0 else done.stdout.strip()


def change_payload(entry: Entry, change) -> None:
    payload = json.loads(json.dumps(entry.payload))
    change(payload)
    Entry.objects.filter(pk=entry.pk).update(payload=payload)


def flip(data) -> bytes:
    data = bytearray(bytes(data))
    data[5] ^= 0x01
    return bytes(data)


def tamper_payload_byte(ledger):
    entry = Entry.objects.get(seq=TARGET)
    change_payload(entry, lambda p: p.update(postings=p["postings"], tampered="x"))


def tamper_amount(ledger):
    entry = Entry.objects.get(seq=TARGET)
    change_payload(entry, lambda p: p["postings"][0].update(amount=p["postings"][0]["amount"] - 1)
                   or p["postings"][1].update(amount=p["postings"][1]["amount"] + 1))  # fmt: skip


def tamper_actor(ledger):
    Entry.objects.filter(seq=TARGET).update(actor="user:999")


def tamper_kind(ledger):
    Entry.objects.filter(seq=TARGET).update(kind="ledger.gift")


def tamper_timestamp(ledger):
    Entry.objects.filter(seq=TARGET).update(created_at=F("created_at") + timedelta(seconds=1))


def tamper_prev_hash(ledger):
    entry = Entry.objects.get(seq=TARGET)
    Entry.objects.filter(pk=entry.pk).update(prev_hash=flip(entry.prev_hash))


def tamper_entry_hash(ledger):
    entry = Entry.objects.get(seq=TARGET)
    Entry.objects.filter(pk=entry.pk).update(entry_hash=flip(entry.entry_hash))


def tamper_signature(ledger):
    entry = Entry.objects.get(seq=TARGET)
    Entry.objects.filter(pk=entry.pk).update(signature=flip(entry.signature))


def tamper_delete(ledger):
    Entry.objects.filter(seq=TARGET).delete()


def tamper_swap(ledger):
    first, second = Entry.objects.get(seq=TARGET), Entry.objects.get(seq=TARGET + 1)
    Entry.objects.filter(pk=first.pk).update(seq=-1)
    Entry.objects.filter(pk=second.pk).update(seq=TARGET)
    Entry.objects.filter(pk=first.pk).update(seq=TARGET + 1)


def tamper_insert(ledger):
    for entry in Entry.objects.filter(seq__gte=TARGET).order_by("-seq"):
        Entry.objects.filter(pk=entry.pk).update(seq=entry.seq + 1)
    model = Entry.objects.get(seq=TARGET + 1)
    model.pk = None
    model.seq = TARGET
    model.idempotency_key = None
    model.payload = {
        "postings": [{"account": ledger["b"], "amount": -1}, {"account": ledger["a"], "amount": 1}]
    }
    model.save()


def tamper_balance(ledger):
    Account.objects.filter(name=ledger["a"]).update(balance=F("balance") + 1)


def tamper_cut_tail(ledger):
    Entry.objects.filter(seq__gte=ledger["size"] - 5).delete()


def tamper_actor_signature(ledger):
    entry = Entry.objects.filter(actor_key_id__isnull=False, seq__gte=TARGET).order_by("seq").first()
    Entry.objects.filter(pk=entry.pk).update(actor_signature=flip(entry.actor_signature))
    return entry.seq


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (tamper_payload_byte, f"seq={TARGET}"),
        (tamper_amount, f"seq={TARGET}"),
        (tamper_actor, f"seq={TARGET}"),
        (tamper_kind, f"seq={TARGET}"),
        (tamper_timestamp, f"seq={TARGET}"),
        (tamper_prev_hash, f"seq={TARGET}"),
        (tamper_entry_hash, f"seq={TARGET}"),
        (tamper_signature, f"seq={TARGET}"),
        (tamper_delete, f"seq={TARGET}"),
        (tamper_swap, f"seq={TARGET}"),
        (tamper_insert, f"seq={TARGET}"),
        (tamper_balance, "account=user:"),
        (tamper_cut_tail, "checkpoint"),
        (tamper_actor_signature, None),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_each_tampering_is_caught_with_the_right_seq(ledger, tamper, expected, tmp_path):
    assert verify_ledger_says().startswith("OK")
    seq = tamper(ledger)
    expected = expected or f"seq={seq}"
    said = verify_ledger_says()
    assert said.startswith("FAIL ") and expected in said, said
    offline = offline_verifier_says(tmp_path)
    assert offline.startswith("FAIL ") and expected in offline, offline


def test_a_sound_ledger_verifies_in_the_database_and_offline(ledger, tmp_path):
    assert verify_ledger_says() == "OK"
    assert offline_verifier_says(tmp_path) == "OK"


def test_a_changed_stored_merkle_node_or_leaf_hash_is_caught_by_verify_ledger(ledger):
    from ledger.models import MerkleNode

    node = MerkleNode.objects.get(level=3, index=2)
    MerkleNode.objects.filter(pk=node.pk).update(hash=flip(node.hash))
    assert "stored Merkle node 3/2 is wrong" in verify_ledger_says()
    MerkleNode.objects.filter(pk=node.pk).update(hash=node.hash)
    entry = Entry.objects.get(seq=TARGET)
    Entry.objects.filter(pk=entry.pk).update(leaf_hash=flip(entry.leaf_hash))
    said = verify_ledger_says()
    assert f"seq={TARGET}" in said and "leaf hash" in said


def test_since_skips_only_the_old_signatures_and_still_catches_changed_content(ledger):
    entry = Entry.objects.get(seq=20)
    Entry.objects.filter(pk=entry.pk).update(signature=flip(entry.signature))
    assert "seq=20" in verify_ledger_says()
    call_command("verify_ledger", "--quiet", "--since", "21")  # the signature before 21 is not re-checked
    Entry.objects.filter(seq=TARGET).update(actor="user:999")
    with pytest.raises(CommandError, match=f"seq={TARGET}"):
        call_command(
            "verify_ledger", "--quiet", "--since", "200"
        )  # content before `since` is still re-hashed


def _burn(source: str, amount: int) -> Entry:
    """A signed entry that credits issuance, written below the services' rules (as a bug or an insider would)."""
    with transaction.atomic():
        accounts = {
            a.name: a for a in Account.objects.select_for_update().filter(name__in=[source, "issuance"])
        }
        return services.entry_append(
            kind="ledger.transfer", actor=source,
            payload={"postings": [{"account": source, "amount": -amount}, {"account": "issuance", "amount": amount}]},
            balances={accounts[source].pk: accounts[source].balance - amount,
                      accounts["issuance"].pk: accounts["issuance"].balance + amount},
        )  # fmt: skip


def test_tokens_burned_into_issuance_break_the_supply_invariant_in_the_database_and_offline(alice, tmp_path):
    a = services.account_name(user=alice)
    with transaction.atomic():
        services.mint(destination=a, amount=1_000, actor="system", reason="test")
    burned = _burn(a, 300)
    # Every balance still replays and the postings sum to zero: only the supply invariant sees the loss.
    said = verify_ledger_says()
    assert said.startswith(f"FAIL seq={burned.seq}") and "credits issuance" in said, said
    offline = offline_verifier_says(tmp_path)
    assert offline.startswith(f"FAIL seq={burned.seq}") and "credits issuance" in offline, offline


def test_verify_ledger_states_the_total_minted_and_checks_the_stored_accounts_against_it(alice, bob):
    from ledger.audit import _supply_problem, audit

    a, b = services.account_name(user=alice), services.account_name(user=bob)
    with transaction.atomic():
        services.mint(destination=a, amount=1_000, actor="system", reason="test")
        services.mint(destination=b, amount=500, actor="system", reason="test")
    finding = audit()
    assert finding.ok and "1500 minted" in finding.line, finding.line
    assert _supply_problem(1_500) is None
    Account.objects.filter(name=a).update(balance=F("balance") + 7)  # tokens from nowhere
    assert "outside issuance hold 1507" in _supply_problem(1_500)
    assert verify_ledger_says().startswith(f"FAIL account={a}")  # the replay names the account first
