"""The ledger's REST API, with the shapes outside verifiers rely on."""

import json
import urllib.parse

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.cache import cache
from django.test import Client

from ledger import chain, merkle, notes, services, witness
from ledger.models import Cosignature, Entry
from platform_site.accounts.services import organization_create
from tests.conftest import api_as
from tests.ledger.helpers import fund, pay

pytestmark = pytest.mark.django_db


@pytest.fixture
def grown(alice, bob):
    a, b = f"user:{alice.pk}", f"user:{bob.pk}"
    fund(a, 100_000)
    for i in range(20):
        pay(a, b, 10 + i)
    services.checkpoint_create()
    return a, b


def test_an_entry_has_its_fields_hashes_and_signatures(grown, alice):
    body = api_as(alice).get("/api/ledger/entries/5/").json()
    assert set(body) >= {"seq", "kind", "actor", "payload", "created_at", "entry_hash", "leaf_hash", "prev_hash",
                         "signature", "key_id", "actor_key_id", "actor_signature"}  # fmt: skip
    canonical = chain.canonical_bytes(
        seq=5, kind=body["kind"], actor=body["actor"], payload=body["payload"], created_at=body["created_at"],
        key_id=body["key_id"], actor_key_id=body["actor_key_id"],
    )  # fmt: skip
    assert chain.entry_hash(bytes.fromhex(body["prev_hash"]), canonical).hex() == body["entry_hash"]
    assert chain.leaf_hash(canonical).hex() == body["leaf_hash"]


def test_entries_filter_by_kind_actor_and_seq_range(grown, alice):
    client = api_as(alice)
    assert client.get("/api/ledger/entries/?kind=ledger.mint").json()["count"] == 1
    assert client.get("/api/ledger/entries/?kind=ledger.").json()["count"] == 21
    assert client.get(f"/api/ledger/entries/?actor={grown[0]}").json()["count"] == 20
    page = client.get("/api/ledger/entries/?seq_min=3&seq_max=7").json()
    assert [e["seq"] for e in page["results"]] == [7, 6, 5, 4, 3]
    assert client.get("/api/ledger/entries/?seq_min=-1").status_code == 400


def test_the_checkpoint_is_served_as_a_signed_note_byte_for_byte(grown):
    response = Client().get("/api/ledger/checkpoint/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    key = Client().get("/api/ledger/public-keys/").json()[0]
    assert notes.verify_note(response.content.decode(), key["verifier_key"])
    origin, size, _root = notes.parse_checkpoint(notes.parse_note(response.content.decode())[0])
    assert (origin, size) == ("platform.example/ledger", 21)
    assert Client().get("/api/ledger/checkpoint/?tree_size=21").content == response.content
    assert Client().get("/api/ledger/checkpoint/?tree_size=3").status_code == 404
    assert Client().get("/api/ledger/checkpoint/?tree_size=zero").status_code == 400


def test_inclusion_proofs_verify_against_the_signed_root(grown):
    note = Client().get("/api/ledger/checkpoint/").content.decode()
    _origin, size, root = notes.parse_checkpoint(notes.parse_note(note)[0])
    for seq in (0, 7, 20):
        proof = Client().get(f"/api/ledger/proof/inclusion/?seq={seq}&tree_size={size}").json()
        assert set(proof) == {"seq", "tree_size", "leaf_hash", "proof", "root_hash"}
        assert proof["root_hash"] == root.hex()
        hashes = [bytes.fromhex(h) for h in proof["proof"]]
        assert merkle.verify_inclusion(seq, size, bytes.fromhex(proof["leaf_hash"]), hashes, root)


def test_consistency_proofs_link_earlier_trees_to_later_ones(grown):
    proof = Client().get("/api/ledger/proof/consistency/?first=6&second=21").json()
    assert set(proof) == {"first", "second", "first_root", "second_root", "proof"}
    assert merkle.verify_consistency(
        6, 21, bytes.fromhex(proof["first_root"]), bytes.fromhex(proof["second_root"]),
        [bytes.fromhex(h) for h in proof["proof"]],
    )  # fmt: skip


@pytest.mark.parametrize(
    "query",
    [
        "proof/inclusion/?seq=21&tree_size=21",
        "proof/inclusion/?seq=0&tree_size=99",
        "proof/inclusion/?seq=x&tree_size=2",
        "proof/inclusion/?tree_size=2",
        "proof/consistency/?first=0&second=5",
        "proof/consistency/?first=9&second=5",
        "proof/consistency/?first=1&second=99",
    ],
)
def test_out_of_range_or_malformed_proof_requests_get_a_400_with_a_message(grown, query):
    response = Client().get(f"/api/ledger/{query}")
    assert response.status_code == 400
    assert response.json()


def test_public_keys_have_the_c2sp_shapes(grown):
    (key,) = Client().get("/api/ledger/public-keys/").json()
    name, key_id, _raw = chain.parse_verifier_key(key["verifier_key"])
    assert (name, key_id) == (key["name"], key["key_id"])
    assert key["public_key"] and key["active"] is True


def test_a_transfer_through_the_api_is_idempotent_and_refuses_overdrafts(grown, alice, bob):
    client = api_as(alice)
    body = {"destination": f"user:{bob.pk}", "amount": 500, "idempotency_key": "order-17"}
    first = client.post("/api/ledger/transfers/", body, format="json")
    again = client.post("/api/ledger/transfers/", body, format="json")
    assert first.status_code == again.status_code == 201
    assert first.json()["seq"] == again.json()["seq"]
    entries = Entry.objects.count()
    refused = client.post(
        "/api/ledger/transfers/", {"destination": f"user:{bob.pk}", "amount": 10**9}, format="json"
    )
    assert refused.status_code == 400 and refused.json()["code"] == "insufficient_funds"
    # In words, as the sender reads it: no internal account name.
    assert refused.json()["detail"].startswith("your balance is ")
    assert refused.json()["detail"].endswith("; this transfer needs 10,000,000.00 tokens")
    assert f"user:{alice.pk}" not in refused.json()["detail"]
    unknown = client.post(
        "/api/ledger/transfers/", {"destination": "user:424242", "amount": 1}, format="json"
    )
    assert unknown.status_code == 400
    assert Entry.objects.count() == entries
    assert Client().post("/api/ledger/transfers/", body).status_code in (401, 403)


def test_a_witness_checks_consistency_and_cosigns(grown, alice, monkeypatch):
    org = organization_create(owner=alice, name="Watchers")
    key = Ed25519PrivateKey.generate()
    verifier = notes.cosignature_verifier_key("w.example/1", key.public_key().public_bytes_raw())
    registered = api_as(alice).post(
        "/api/ledger/witnesses/", {"organization": org.pk, "name": "w.example/1", "verifier_key": verifier},
        format="json",
    )  # fmt: skip
    assert registered.status_code == 201, registered.content
    client = Client()

    def get(url: str) -> bytes:
        parsed = urllib.parse.urlsplit(url)
        response = client.get(f"{parsed.path}?{parsed.query}")
        assert response.status_code == 200, response.content
        return response.content

    def post(url: str, body: dict) -> dict:
        response = client.post(
            urllib.parse.urlsplit(url).path, json.dumps(body), content_type="application/json"
        )
        if response.status_code != 201:
            raise witness.WitnessError(response.content.decode())
        return response.json()

    monkeypatch.setattr(witness, "_get", get)
    monkeypatch.setattr(witness, "_post_json", post)
    log_key = client.get("/api/ledger/public-keys/").json()[0]["verifier_key"]
    kwargs = {"base_url": "http://testserver", "log_key": log_key, "name": "w.example/1", "key": key}
    state = witness.check_and_cosign(**kwargs, state={})
    assert state["tree_size"] == 21
    pay(*grown, 1)
    services.checkpoint_create()
    state = witness.check_and_cosign(**kwargs, state=state)
    assert state["tree_size"] == 22
    assert Cosignature.objects.count() == 2
    served = client.get("/api/ledger/checkpoint/").content.decode()
    assert notes.verify_cosignature(served, verifier) is not None

    forged = {**state, "root_hash": "00" * 32}
    with pytest.raises(witness.WitnessError, match="SPLIT VIEW"):
        witness.check_and_cosign(**kwargs, state=forged)


def test_a_cosignature_from_an_unregistered_witness_is_refused(grown):
    key = Ed25519PrivateKey.generate()
    note = Client().get("/api/ledger/checkpoint/").content.decode()
    line = notes.cosign(notes.parse_note(note)[0], "stranger.example", key, 1_700_000_000)
    response = Client().post(
        "/api/ledger/witness/cosign/", {"tree_size": 21, "cosignature": line}, content_type="application/json"
    )
    assert response.status_code == 403


def test_only_staff_grant_new_tokens(alice, staff):
    body = {"destination": f"user:{alice.pk}", "amount": 5_000, "reason": "grant for the pilot"}
    assert api_as(alice).post("/api/ledger/mints/", body, format="json").status_code == 403
    assert not Entry.objects.filter(kind="ledger.mint").exists()
    response = api_as(staff).post("/api/ledger/mints/", body, format="json")
    assert response.status_code == 201
    assert response.json()["payload"]["reason"] == "grant for the pilot"
    assert api_as(staff).post("/api/ledger/mints/", {**body, "reason": " "}, format="json").status_code == 400


def test_anonymous_callers_read_the_whole_journal_and_its_proofs(grown):
    anonymous = Client()
    reads = [
        "/api/ledger/entries/",
        "/api/ledger/entries/?kind=ledger.transfer",
        "/api/ledger/entries/5/",
        "/api/ledger/checkpoint/",
        "/api/ledger/proof/inclusion/?seq=3&tree_size=21",
        "/api/ledger/proof/consistency/?first=5&second=21",
        "/api/ledger/public-keys/",
    ]

    for path in reads:
        assert anonymous.get(path).status_code == 200, path
    assert anonymous.get("/api/ledger/entries/").json()["count"] == 21
    assert anonymous.get("/api/ledger/entries/999/").status_code == 404


def test_anonymous_callers_still_cannot_write_or_see_accounts(grown, bob):
    anonymous = Client()
    entries = Entry.objects.count()
    writes = {
        "/api/ledger/transfers/": {"destination": f"user:{bob.pk}", "amount": 1},
        "/api/ledger/faucet/": {},
        "/api/ledger/mints/": {"destination": f"user:{bob.pk}", "amount": 1, "reason": "free money"},
        "/api/ledger/witnesses/": {"organization": 1, "name": "w", "verifier_key": "x"},
    }

    for path, body in writes.items():
        assert anonymous.post(path, body, content_type="application/json").status_code == 401, path
    assert anonymous.post("/api/ledger/entries/", {}, content_type="application/json").status_code == 405
    assert anonymous.get("/api/ledger/accounts/").status_code == 401
    assert Entry.objects.count() == entries


def test_anonymous_reads_are_rate_limited(grown, settings):
    cache.clear()  # the throttle's history of earlier runs (Redis outlives a test)
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "anon": "2/minute"},
    }
    anonymous = Client()

    codes = [anonymous.get("/api/ledger/entries/").status_code for _ in range(3)]

    assert codes == [200, 200, 429]
    cache.clear()
