import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import chain

SPEC_KEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
LOG_KEY = "example.com/django-ledger+044e6b25+AUPLdVF2ZylS/tg5BGUIeYiNG/m0twwsYwzUCh2qVDP7"
WITNESS_KEY = "witness.example.com/w1+ba179b7d+BIdQPcIzyVchemIbb7iku0zM1/0DgWmPTFmQmS3NjgNq"

ENTRY = {
    "seq": 7,
    "kind": "ledger.transfer",
    "actor": "user:12",
    "payload": {
        "postings": [{"account": "user:12", "amount": -5}, {"account": "org:3", "amount": 5}],
        "memo": "é",
    },
    "created_at": "2025-01-02T03:04:05.000006Z",
    "key_id": "0a1b2c3d",
    "actor_key_id": None,
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.text(alphabet=st.characters(exclude_categories=("Cs",))),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=4), children, max_size=4
        )
    ),
    max_leaves=20,
)


def test_canonical_bytes_are_the_rfc8785_form_of_the_seven_members():
    canonical = chain.canonical_bytes(**ENTRY)
    assert canonical == rfc8785.dumps(ENTRY)
    assert canonical == (
        b'{"actor":"user:12","actor_key_id":null,"created_at":"2025-01-02T03:04:05.000006Z","key_id":"0a1b2c3d",'
        b'"kind":"ledger.transfer","payload":{"memo":"\xc3\xa9","postings":[{"account":"user:12","amount":-5},'
        b'{"account":"org:3","amount":5}]},"seq":7}'
    )


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_jcs_agrees_with_the_rfc8785_package_on_any_float_free_json(value):
    assert chain.jcs(value) == rfc8785.dumps(value)
    # What a JSON parser gives back is encoded the same way on the verifier's unchecked-walk path.
    assert chain.jcs(json.loads(json.dumps(value)), checked=True) == rfc8785.dumps(value)


def test_jcs_sorts_keys_by_utf16_code_units_like_rfc8785():
    value = {"\U0001f600": 1, "\ufb01": 2, "a": 3}
    assert chain.jcs(value) == rfc8785.dumps(value)
    assert chain.jcs(value).index("\ufb01".encode()) > chain.jcs(value).index("\U0001f600".encode())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"amount": 1.5}, "floats are not allowed"),
        ({"amount": 2**53}, "outside the exact JSON range"),
        ({1: "x"}, "not a string"),
        ({"when": datetime(2025, 1, 1, tzinfo=UTC)}, "not a JSON value"),
        ({"text": "\ud800"}, "surrogate"),
    ],
)
def test_jcs_refuses_what_rfc8785_cannot_carry_exactly(value, message):
    with pytest.raises(ValueError, match=message):
        chain.jcs(value)


def test_format_timestamp_writes_utc_with_six_fraction_digits():
    assert chain.format_timestamp(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2025-01-02T03:04:05.000000Z"
    plus_two = timezone(timedelta(hours=2))
    assert (
        chain.format_timestamp(datetime(2025, 1, 1, 1, 0, 0, 42, tzinfo=plus_two))
        == "2024-12-31T23:00:00.000042Z"
    )
    assert (
        chain.format_timestamp(datetime(999, 5, 6, 7, 8, 9, 123456, tzinfo=UTC))
        == "0999-05-06T07:08:09.123456Z"
    )


def test_format_timestamp_refuses_naive_datetimes():
    with pytest.raises(ValueError, match="naive"):
        chain.format_timestamp(datetime(2025, 1, 1))  # noqa: DTZ001


def test_entry_and_leaf_hashes_follow_the_format():
    canonical = chain.canonical_bytes(**ENTRY)
    prev = bytes(range(32))
    assert chain.entry_hash(prev, canonical) == hashlib.sha256(prev + canonical).digest()
    assert chain.leaf_hash(canonical) == hashlib.sha256(b"\x00" + canonical).digest()
    assert bytes(32) == chain.ZERO_HASH


def test_actor_statement_is_the_canonical_actor_kind_payload():
    statement = chain.actor_statement(actor="user:1", kind="k.n.v", payload={"b": 1, "a": [True, None]})
    assert statement == b'{"actor":"user:1","kind":"k.n.v","payload":{"a":[true,null],"b":1}}'


@pytest.mark.parametrize("verifier_key", [SPEC_KEY, LOG_KEY])
def test_key_ids_and_verifier_keys_match_the_c2sp_examples(verifier_key):
    name, key_id, raw = chain.parse_verifier_key(verifier_key)
    assert chain.key_id_for(name, raw) == key_id
    assert chain.verifier_key(name, raw) == verifier_key


def test_a_cosignature_key_parses_only_as_type_4():
    name, key_id, raw = chain.parse_verifier_key(WITNESS_KEY, key_type=0x04)
    assert (name, key_id) == ("witness.example.com/w1", "ba179b7d")
    assert chain.verifier_key(name, raw, key_type=0x04) == WITNESS_KEY
    with pytest.raises(ValueError, match="key type"):
        chain.parse_verifier_key(WITNESS_KEY)


def _spec_key_with(**change: str) -> str:
    name, key_id, encoded = SPEC_KEY.split("+", 2)
    parts = {"name": name, "key_id": key_id, "encoded": encoded, **change}
    return f"{parts['name']}+{parts['key_id']}+{parts['encoded']}"


@pytest.mark.parametrize(
    "bad",
    [
        _spec_key_with(key_id="530d903b"),
        _spec_key_with(key_id="530D903A"),
        _spec_key_with(key_id="530d903"),
        _spec_key_with(name="example.com/bar"),
        _spec_key_with(name=""),
        _spec_key_with(name="example com"),
        _spec_key_with(encoded=chain.b64encode(b"\x02" + bytes(32))),
        _spec_key_with(encoded=chain.b64encode(b"\x01" + bytes(31))),
        _spec_key_with(encoded=chain.b64encode(b"\x01" + bytes(33))),
        _spec_key_with(encoded="AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2l"),  # unused low bits set
        _spec_key_with(encoded="AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k="),
        "example.com/foo+530d903a",
        "",
    ],
)
def test_parse_verifier_key_refuses_anything_but_the_exact_form(bad):
    with pytest.raises(ValueError):
        chain.parse_verifier_key(bad)


def test_sign_and_verify_round_trip_with_a_key_object_or_its_seed():
    seed = hashlib.sha256(b"alice").digest()
    raw = chain.public_key_raw(seed)
    signature = chain.sign(seed, b"message")
    assert chain.verify_signature(raw, signature, b"message")
    assert not chain.verify_signature(raw, signature, b"messagf")
    assert not chain.verify_signature(raw, signature[:-1] + bytes([signature[-1] ^ 1]), b"message")
    assert not chain.verify_signature(raw, signature[:63], b"message")
    assert not chain.verify_signature(raw[:31], signature, b"message")
    other = chain.public_key_raw(hashlib.sha256(b"mallory").digest())
    assert not chain.verify_signature(other, signature, b"message")


def test_check_postings_accepts_balanced_integer_postings():
    chain.check_postings([{"account": "issuance", "amount": -10}, {"account": "user:1", "amount": 10}])
    chain.check_postings(
        [
            {"account": "user:1", "amount": -3},
            {"account": "user:2", "amount": 1},
            {"account": "org:1", "amount": 2},
        ]
    )


@pytest.mark.parametrize(
    ("postings", "message"),
    [
        (None, "non-empty list"),
        ([], "non-empty list"),
        ({"account": "user:1", "amount": 1}, "non-empty list"),
        ([{"account": "user:1", "amount": 1}], "sum to 1"),
        ([{"account": "user:1", "amount": 1}, {"account": "user:2", "amount": -2}], "sum to -1"),
        ([{"account": "user:1", "amount": 0}, {"account": "user:2", "amount": 0}], "must not be zero"),
        ([{"account": "user:1", "amount": True}, {"account": "user:2", "amount": -1}], "integer"),
        ([{"account": "user:1", "amount": 1.0}, {"account": "user:2", "amount": -1}], "integer"),
        ([{"account": "user:1", "amount": "1"}, {"account": "user:2", "amount": -1}], "integer"),
        ([{"account": 1, "amount": 1}, {"account": "user:2", "amount": -1}], "account"),
        ([{"account": "", "amount": 1}, {"account": "user:2", "amount": -1}], "account"),
        ([{"account": "user:1"}, {"account": "user:2", "amount": -1}], "exactly"),
        ([{"account": "user:1", "amount": 1, "memo": "x"}, {"account": "user:2", "amount": -1}], "exactly"),
        (["user:1"], "exactly"),
    ],
)
def test_check_postings_refuses_anything_that_is_not_double_entry(postings, message):
    with pytest.raises(ValueError, match=message):
        chain.check_postings(postings)
