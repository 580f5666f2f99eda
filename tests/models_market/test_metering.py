"""Metered calls through the services: licence checks, quotas, the call deposit, receipts and settlement."""

import hashlib
import math
from datetime import timedelta

import pytest
import rfc8785
from django.core.management import call_command
from django.db import transaction
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import chain, merkle
from ledger.models import Entry, SigningKey
from ledger.services import transfer_request
from models_market import runtime, services
from models_market.models import CallMeter, ModelLicense, Receipt, Settlement
from models_market.services.receipts import canonical_json_fast, leaf_bytes
from platform_site.errors import Conflict, DomainError, PaymentRequired, PermissionDenied
from tests.factories import UserFactory
from tests.ledger.helpers import fund
from tests.models_market.helpers import (
    ROW,
    balance,
    dataset_version,
    listed,
    make_version,
    meter_mirrors_the_ledger,
    mint,
)

pytestmark = pytest.mark.django_db
PRICE = 40  # per call


@pytest.fixture
def token(alice, carol, dora):
    parent = make_version(carol, name="Parent")
    mint(parent)
    return listed(
        alice, lineage_bp=2_000, parents=(parent,), trained_on=dataset_version(dora), price_perpetual=1_000,
        price_timed=500, timed_days=1, price_quota=300, quota_calls=2, price_per_call=PRICE,
    )  # fmt: skip


@pytest.fixture
def licensed(token, bob):
    fund(f"user:{bob.pk}", 1_000 + 2_000)
    services.license_purchase(buyer=bob, token=token, kind="perpetual")
    return token


def call(user, token, rows=None):
    return services.predict_call(user=user, version=token.version, rows=rows or [ROW])


def test_the_owner_calls_free_without_a_receipt(token, alice):
    outputs, receipt = call(alice, token, [ROW, {**ROW, "age": None}])
    assert receipt is None
    assert [set(o) for o in outputs] == [{"prediction", "probabilities"}] * 2
    assert math.isclose(sum(outputs[0]["probabilities"].values()), 1.0)
    assert not Receipt.objects.exists()


def test_rows_are_checked_first_naming_the_columns_even_for_the_unlicensed(token, mallory):
    with pytest.raises(DomainError, match=r"missing column.*'visits'.*unknown column.*'height'"):
        call(mallory, token, [{"age": 1, "income": 2, "height": 3}])
    with pytest.raises(DomainError, match='column "income": expected a number'):
        call(mallory, token, [{**ROW, "income": math.inf}])
    with pytest.raises(DomainError, match=r'column "age".*2\*\*53'):
        call(mallory, token, [{**ROW, "age": 10**400}])
    with pytest.raises(DomainError, match="non-empty list"):
        call(mallory, token, {"age": 1})
    with pytest.raises(PermissionDenied, match="needs a licence"):
        call(mallory, token)


def test_a_licensed_call_reserves_its_price_from_a_topped_up_deposit_and_returns_a_signed_receipt(
    licensed, bob, settings
):
    settings.MODELS_DEPOSIT_CHUNK = 120
    outputs, receipt = call(bob, licensed, [ROW, ROW])
    assert (receipt.price, receipt.rows, receipt.caller, receipt.settlement) == (PRICE, 2, bob, None)
    # The deposit took a chunk of bob's balance in one entry; the call reserved its price of it.
    assert (balance(bob), balance(f"deposit:{bob.pk}")) == (2_000 - 120, 120)
    assert services.deposit_status(user=bob) == {"deposit": 120, "reserved": PRICE, "available": 120 - PRICE}
    [top_up] = Entry.objects.filter(kind="models_market.deposit.topped_up")
    assert top_up.payload["amount"] == 120
    body = receipt.body
    assert body == {
        "seq": receipt.pk, "version": licensed.version_id, "model_sha256": licensed.version.artifact_sha256,
        "input_sha256": hashlib.sha256(rfc8785.dumps([ROW, ROW])).hexdigest(),
        "output_sha256": hashlib.sha256(rfc8785.dumps(outputs)).hexdigest(),
        "price": PRICE, "caller": f"user:{bob.pk}", "issued_at": body["issued_at"], "rows": 2,
    }  # fmt: skip
    key = SigningKey.objects.get(key_id=receipt.key_id)
    assert chain.verify_signature(bytes(key.public_key), bytes.fromhex(receipt.signature), chain.jcs(body))
    # Two more calls fit the deposit; the fourth tops it up again.
    call(bob, licensed)
    call(bob, licensed)
    assert Entry.objects.filter(kind="models_market.deposit.topped_up").count() == 1
    call(bob, licensed)
    assert Entry.objects.filter(kind="models_market.deposit.topped_up").count() == 2
    assert CallMeter.objects.get(user=bob).reserved == 4 * PRICE
    assert meter_mirrors_the_ledger(bob)
    call_command("verify_ledger", "--quiet")


def test_a_busy_callers_deposit_is_topped_up_by_what_their_unsettled_calls_hold_up_to_a_cap(
    licensed, bob, settings
):
    settings.MODELS_DEPOSIT_CHUNK, settings.MODELS_DEPOSIT_CHUNK_MAX = 120, 200

    def top_ups() -> list[int]:
        entries = Entry.objects.filter(kind="models_market.deposit.topped_up").order_by("seq")
        return [entry.payload["amount"] for entry in entries]

    for _ in range(12):
        call(bob, licensed)
    # A chunk while nothing is reserved; then what the unsettled calls hold (120), then at most the cap.
    assert top_ups() == [120, 120, 200, 200]
    services.settle_pending(limit=100)  # 480 paid out of the 640 deposited: 160 left, nothing reserved
    for _ in range(5):
        call(bob, licensed)
    assert top_ups() == [120, 120, 200, 200, 160]  # the four calls since the settlement hold 160
    assert services.deposit_status(user=bob) == {"deposit": 320, "reserved": 5 * PRICE, "available": 120}
    assert meter_mirrors_the_ledger(bob)


def test_a_call_that_cannot_be_covered_is_402_with_the_balance_in_words(licensed, bob, settings):
    settings.MODELS_DEPOSIT_CHUNK = 1
    transfer_request(user=bob, destination=f"user:{licensed.owner_id}", amount=1_960)
    call(bob, licensed)  # the 40 left go into the deposit, and this call reserves them
    assert (balance(bob), balance(f"deposit:{bob.pk}")) == (0, 40)
    with pytest.raises(PaymentRequired, match=r"your balance is 0\.00 tokens; this call costs 0\.40 tokens"):
        call(bob, licensed)
    assert Receipt.objects.count() == 1


def test_other_spending_never_breaks_a_later_settlement(licensed, alice, bob, carol, dora, settings):
    settings.MODELS_DEPOSIT_CHUNK = 1_000
    call(bob, licensed)
    call(bob, licensed)
    # bob spends all he has left elsewhere; his calls' money is in the deposit.
    transfer_request(user=bob, destination=f"user:{carol.pk}", amount=balance(bob))
    before = {u: balance(u) for u in ("treasury", alice, carol, dora)}
    settlement = services.settle_pending(limit=100)
    assert (settlement.calls, settlement.total) == (2, 2 * PRICE)
    # Each call of 40: fee 1, lineage 20% of 39 = 7 (4 to carol's parent model, 3 to dora's data), alice 32.
    assert {u: balance(u) - before[u] for u in before} == {"treasury": 2, alice: 64, carol: 8, dora: 6}
    assert balance(f"deposit:{bob.pk}") == 1_000 - 2 * PRICE
    assert CallMeter.objects.get(user=bob).reserved == 0
    assert meter_mirrors_the_ledger(bob)
    call_command("verify_ledger", "--quiet")


def test_a_quota_licence_counts_down_and_then_refuses(token, bob):
    fund(f"user:{bob.pk}", 300)
    license = services.license_purchase(buyer=bob, token=token, kind="quota")
    _, first = call(bob, token)
    _, second = call(bob, token)
    assert (first.price, second.price) == (0, 0)
    license.refresh_from_db()
    assert (license.calls_left, license.calls_made) == (0, 2)
    with pytest.raises(PermissionDenied, match="used up"):
        call(bob, token)
    assert balance(bob) == 0 and not CallMeter.objects.filter(user=bob, reserved__gt=0).exists()
    settlement = services.settle_pending(limit=10)  # recorded with their root, nothing to pay
    assert (settlement.calls, settlement.total) == (2, 0)
    assert "postings" not in Entry.objects.get(seq=settlement.entry_seq).payload


def test_an_expired_timed_licence_is_refused(token, bob):
    fund(f"user:{bob.pk}", 500)
    license = services.license_purchase(buyer=bob, token=token, kind="timed")
    ModelLicense.objects.filter(pk=license.pk).update(expires_at=license.expires_at - timedelta(days=2))
    with pytest.raises(PermissionDenied, match="expired"):
        call(bob, token)


def test_metering_off_checks_the_licence_but_counts_nothing(licensed, bob, mallory, settings):
    settings.MODELS_METERING = False
    outputs, receipt = call(bob, licensed)
    assert receipt is None and len(outputs) == 1
    assert not Receipt.objects.exists() and balance(f"deposit:{bob.pk}") == 0
    with pytest.raises(PermissionDenied):
        call(mallory, licensed)


def test_settlement_roots_prove_each_receipt_and_calls_made_are_counted(licensed, bob):
    receipts = [call(bob, licensed)[1] for _ in range(5)]
    first = services.settle_pending(limit=3)
    second = services.settle_pending(limit=3)
    assert services.settle_pending(limit=3) is None
    assert (first.calls, second.calls) == (3, 2)
    for receipt in receipts:
        receipt.refresh_from_db()
        proof = services.receipt_proof(receipt=receipt)
        leaf = merkle.hash_leaf(leaf_bytes(receipt))
        hashes = [bytes.fromhex(h) for h in proof["path"]]
        assert merkle.verify_inclusion(proof["leaf_index"], proof["tree_size"], leaf, hashes,
                                       bytes.fromhex(proof["root"]))  # fmt: skip
        entry = Entry.objects.get(seq=proof["entry_seq"])
        assert entry.payload["merkle_root"] == proof["root"]
    assert Entry.objects.get(seq=first.entry_seq).payload | {"postings": None} == {
        "merkle_root": first.merkle_root, "count": 3, "first_receipt": receipts[0].pk,
        "last_receipt": receipts[2].pk, "total": 3 * PRICE, "postings": None,
    }  # fmt: skip
    assert ModelLicense.objects.get(holder=bob).calls_made == 5
    assert services.receipt_proof(receipt=call(bob, licensed)[1]) is None  # not settled yet


def test_the_unreserved_deposit_goes_back_on_request_and_the_reserved_part_stays(licensed, bob, settings):
    settings.MODELS_DEPOSIT_CHUNK = 500
    call(bob, licensed)
    with pytest.raises(Conflict, match="reserved"):
        services.deposit_withdraw(user=bob, amount=500)
    state = services.deposit_withdraw(user=bob)
    assert state == {"deposit": PRICE, "reserved": PRICE, "available": 0}
    assert balance(bob) == 2_000 - PRICE
    with pytest.raises(Conflict, match="nothing"):
        services.deposit_withdraw(user=bob)
    assert meter_mirrors_the_ledger(bob)
    services.settle_pending(limit=10)
    assert services.deposit_status(user=bob) == {"deposit": 0, "reserved": 0, "available": 0}
    assert meter_mirrors_the_ledger(bob)
    call_command("verify_ledger", "--quiet")


def test_a_call_that_completes_a_batch_queues_a_settlement(licensed, bob, settings, monkeypatch,
                                                           django_capture_on_commit_callbacks):  # fmt: skip
    from models_market import tasks

    queued = []
    monkeypatch.setattr(tasks.settle_calls, "apply_async", lambda **kw: queued.append(kw))
    settings.MODELS_SETTLE_BATCH = 1
    with django_capture_on_commit_callbacks(execute=True):
        call(bob, licensed)
    assert queued == [{"queue": "default"}]
    assert tasks.settle_calls() == 1
    assert Settlement.objects.count() == 1


def test_the_model_cache_stays_within_its_bound(alice, settings):
    tokens = [mint(make_version(alice, seed=seed)) for seed in range(4)]
    size = tokens[0].version.size
    settings.MODELS_CACHE_BYTES = 2 * size + size // 2
    for token in tokens:
        call(alice, token)
    info = runtime.cache_info()
    assert info["models"] == 2 and info["bytes"] <= settings.MODELS_CACHE_BYTES


def test_a_changed_artifact_is_never_served(token, alice):
    with token.version.artifact.open("wb") as fh:
        fh.write(b"not the model")
    with pytest.raises(Conflict, match="SHA-256"):
        call(alice, token)


# Text that holds what a respelt number looks like in the encoder's text, and quotes around it.
NUMBER_LIKE_TEXT = st.sampled_from(
    ["1e-05", ",1e-05,", ":5.0}", '"', '",2.0]"', "\\", 'a":1e+16,"b', "-0.0", ":1.5e-6,", '"e-6"']
)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
        | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1) | st.text() | NUMBER_LIKE_TEXT,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text() | NUMBER_LIKE_TEXT, inner, max_size=4),
        max_leaves=20,
    )
)  # fmt: skip
def test_canonical_json_is_rfc_8785(value):
    assert services.canonical_json(value) == rfc8785.dumps(value)
    # Keys here are all text and integers exact: the encoder's own text, respelled where it must be, agrees,
    # and so does orjson's.
    assert services.canonical_json(value, checked=True) == rfc8785.dumps(value)
    assert canonical_json_fast(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    "x",
    [
        0.0,
        -0.0,
        5.0,
        1e-4,
        9.9e-5,
        1e-6,
        1.5e-6,
        9.99e-6,
        1e-5,
        1.5e-7,
        1e-7,
        5e-324,
        2.0**53,
        2.0**60,
        1e16,
        1.5e16,
        1e20,
        1e21,
        1.7e308,
        0.1,
    ],
)
def test_canonical_json_spells_numbers_as_ecmascript_does(x):
    for value in (
        x,
        -x,
        [x, "\ue000"],
        {"k": x},
        [{"k": x, "e+": "a:5.0,"}],
        [x, f",{x!r},", {f'"{x!r}': x}],
    ):
        assert services.canonical_json(value) == rfc8785.dumps(value)
        assert services.canonical_json(value, checked=True) == rfc8785.dumps(value)
        assert canonical_json_fast(value) == rfc8785.dumps(value)


def test_canonical_json_refuses_what_json_cannot_say():
    for bad in (math.nan, [math.inf], {"a": 2**60}, {"\ud800": 1}, {1: 2}, object()):
        with pytest.raises(ValueError):
            services.canonical_json(bad)
    for bad in (math.nan, [math.inf], {"\ud800": 1}, [{"a": object()}]):
        with pytest.raises(ValueError):
            services.canonical_json(bad, checked=True)
        with pytest.raises(ValueError):  # orjson writes NaN and the infinities as null: refused all the same
            canonical_json_fast(bad)


def test_one_durable_transaction_per_call(licensed, bob):
    with pytest.raises(RuntimeError), transaction.atomic():  # nested in another: refused, nothing written
        call(bob, licensed)
    assert not Receipt.objects.exists()


def test_an_owner_deactivated_before_settlement_is_still_paid_and_settlement_goes_on(licensed, alice, bob):
    frank = UserFactory(username="frank")  # the new owner, who never had a ledger account
    services.token_transfer(token=licensed, actor=alice, to=frank)
    call(bob, licensed)
    type(frank).objects.filter(pk=frank.pk).update(is_active=False)
    settlement = services.settle_pending(limit=10)
    assert settlement.calls == 1 and balance(frank) > 0
    call_command("verify_ledger", "--quiet")
