"""The federation API as the party's client and the pages use it: creation, joining, admission, the global model,
signed submissions and their refusals, the rounds and a party's own submissions."""

import base64
import json

import pytest
from django.core.management import call_command

from federation import services
from federation.models import Federation, Rejection, Update
from ml.federated import tensors
from tests.conftest import api_as
from tests.factories import UserFactory
from tests.federation.helpers import (
    SPEC,
    admitted,
    create,
    keyed,
    multipart,
    schema,
    signed,
    small_delta,
    validation_file,
)
from tests.ledger.helpers import fund

pytestmark = pytest.mark.django_db


def create_body(**fields) -> dict:
    return {
        "name": "Digits", "schema": json.dumps(schema()), "spec": json.dumps(SPEC),
        "recipe": json.dumps({"optimizer": "sgd", "lr": 0.05}), "strategy": "fedavg", "update_norm_bound": "50",
        "rounds": "3", "min_parties": "2", "round_deadline": "600", "target_metric": "accuracy",
        "target_value": "0.9", "reward_pool": "10000", "validation": validation_file(), **fields,
    }  # fmt: skip


def test_a_coordinator_creates_a_federation_and_parties_join_and_are_admitted(alice, bob, carol, mallory):
    fund(f"user:{alice.pk}", 10_000)
    created = api_as(alice).post("/api/federations/", create_body(), format="multipart")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["status"] == "recruiting" and body["current_round"] is None and body["me"] is None
    assert body["spec"]["input_width"] == 64 and body["privacy"] is None and body["max_update_bytes"] > 0
    fid = body["id"]
    listed = api_as(mallory).get("/api/federations/").json()
    assert [f["id"] for f in listed["results"]] == [fid]
    parties = []
    for user in (bob, carol):
        member = keyed(user)
        joined = api_as(user).post(f"/api/federations/{fid}/join/", {"key_id": member.key_id}, format="json")
        assert joined.status_code == 201, joined.content
        assert joined.json()["status"] == "pending"
        parties.append(joined.json()["party"])
    assert api_as(mallory).post(f"/api/federations/{fid}/parties/{parties[0]}/admit/").status_code == 403
    for party in parties:
        admitted_ = api_as(alice).post(f"/api/federations/{fid}/parties/{party}/admit/")
        assert admitted_.status_code == 200 and admitted_.json()["status"] == "admitted"
    again = api_as(alice).post(f"/api/federations/{fid}/parties/{parties[0]}/admit/")
    assert again.status_code == 409
    detail = api_as(bob).get(f"/api/federations/{fid}/").json()
    assert detail["status"] == "running" and detail["me"]["party"] == parties[0]
    assert detail["me"]["status"] == "admitted"
    assert detail["current_round"]["number"] == 1 and detail["current_round"]["status"] == "open"
    call_command("verify_ledger", "--quiet")


def test_bad_creation_input_is_a_400_with_a_message_and_nothing_is_written(alice):
    fund(f"user:{alice.pk}", 10_000)
    cases = [
        {"strategy": "median", "secure_aggregation": "true"},
        {"rounds": str(10**40)},
        {"update_norm_bound": "nan"},
        {"schema": "{not json"},
        {"reward_pool": "-5"},
    ]
    for fields in cases:
        response = api_as(alice).post("/api/federations/", create_body(**fields), format="multipart")
        assert response.status_code == 400, (fields, response.content)
    refused = api_as(alice).post(
        "/api/federations/", create_body(strategy="median", secure_aggregation="true"), format="multipart"
    )
    assert "secure aggregation" in refused.json()["detail"]
    assert not Federation.objects.exists()


@pytest.fixture
def running(alice, bob, carol):
    federation = create(alice)
    return federation, admitted(federation, [keyed(bob), keyed(carol)])


def test_the_global_model_is_for_admitted_parties_and_the_coordinator_with_its_digest(
    running, alice, mallory
):
    federation, (b, _c) = running
    url = f"/api/federations/{federation.pk}/rounds/1/model/"
    for user in (alice, b.user):
        response = api_as(user).get(url)
        assert response.status_code == 200
        data = b"".join(response.streaming_content)
        assert response["X-Content-Digest"] == federation.global_sha256
        decoded = tensors.decode(
            data, shapes={k: v.shape for k, v in small_delta(federation).items()}, max_bytes=10**8
        )
        assert tensors.digest(decoded) == federation.global_sha256
    assert api_as(mallory).get(url).status_code == 403
    assert api_as(alice).get(f"/api/federations/{federation.pk}/rounds/9/model/").status_code == 404


def test_a_signed_submission_is_a_201_a_second_one_a_409_and_a_forgery_a_400_all_ledgered(running):
    federation, (b, c) = running
    url = f"/api/federations/{federation.pk}/rounds/1/updates/"
    delta = small_delta(federation)
    data = tensors.encode(delta)
    forged = api_as(b.user).post(
        url, multipart(b, data, 50, signed(federation, 1, c, delta, 50)), format="multipart"
    )
    assert forged.status_code == 400 and "signature" in forged.json()["detail"]
    ok = api_as(b.user).post(
        url, multipart(b, data, 50, signed(federation, 1, b, delta, 50)), format="multipart"
    )
    assert ok.status_code == 201, ok.content
    assert ok.json()["sha256"] == tensors.digest(delta) and ok.json()["entry_seq"] is not None
    again = api_as(b.user).post(
        url, multipart(b, data, 50, signed(federation, 1, b, delta, 50)), format="multipart"
    )
    assert again.status_code == 409
    mine = api_as(b.user).get(f"/api/federations/{federation.pk}/me/submissions/").json()
    assert [u["sha256"] for u in mine["updates"]] == [tensors.digest(delta)]
    assert len(mine["rejections"]) == 2 and all(r["entry_seq"] is not None for r in mine["rejections"])
    assert Rejection.objects.count() == 2 and Update.objects.count() == 1
    rounds = api_as(c.user).get(f"/api/federations/{federation.pk}/rounds/").json()
    assert rounds[0]["number"] == 1 and rounds[0]["submitted"] == 1
    call_command("verify_ledger", "--quiet")


def test_malformed_submission_fields_are_400s(running):
    federation, (b, _c) = running
    url = f"/api/federations/{federation.pk}/rounds/1/updates/"
    delta = small_delta(federation)
    body = multipart(b, tensors.encode(delta), 50, "sig")
    body["num_examples"] = str(10**40)
    assert api_as(b.user).post(url, body, format="multipart").status_code == 400
    body = multipart(b, tensors.encode(delta), 50, "sig")
    body["metrics"] = "{oops"
    assert api_as(b.user).post(url, body, format="multipart").status_code == 400
    body = multipart(b, tensors.encode(delta), 50, "sig")
    body["metrics"] = '{"loss": NaN}'
    response = api_as(b.user).post(url, body, format="multipart")
    assert response.status_code == 400 and "metrics" in str(response.json()), response.content
    assert not Update.objects.exists()


def test_secagg_keys_are_refused_when_the_federation_does_not_mask(running):
    federation, (b, _c) = running
    url = f"/api/federations/{federation.pk}/rounds/1/secagg/"
    body = {"key_id": b.key_id, "public_key": "A" * 44, "signature": "x"}
    assert api_as(b.user).post(url, body, format="json").status_code == 409
    assert api_as(b.user).get(url).json() == {"roster": [], "keys": {}, "ready": False}


def test_the_state_is_the_lean_look_a_party_polls_and_shows_me_only_to_a_party(running, alice, mallory):
    federation, (b, _c) = running
    url = f"/api/federations/{federation.pk}/state/"
    state = api_as(b.user).get(url).json()
    assert set(state) == {"id", "status", "rounds", "error", "current_round", "closed_round", "me"}
    assert state["status"] == "running" and state["me"] == {
        "party": b.party.pk,
        "status": "admitted",
        "epsilon_spent": 0.0,
    }
    detail = api_as(b.user).get(f"/api/federations/{federation.pk}/").json()
    assert state["current_round"] == detail["current_round"]
    assert state["current_round"]["number"] == 1 and state["current_round"]["status"] == "open"
    assert state["current_round"]["global_sha256"] == federation.global_sha256
    for outsider in (alice, mallory):  # the coordinator and a stranger have no party here
        seen = api_as(outsider).get(url)
        assert seen.status_code == 200 and seen.json()["me"] is None
    assert api_as(b.user).get("/api/federations/999999/state/").status_code == 404
    assert api_as(b.user).get(f"/api/federations/{2**63}/state/").status_code == 404


def test_a_look_asked_with_weights_brings_the_open_round_s_model_to_an_admitted_party_only(
    running, alice, mallory, settings
):
    federation, (b, _c) = running
    url = f"/api/federations/{federation.pk}/state/?weights=true"
    current = api_as(b.user).get(url).json()["current_round"]
    shapes = {k: v.shape for k, v in small_delta(federation).items()}
    weights = tensors.decode(base64.b64decode(current["global_weights"]), shapes=shapes, max_bytes=10**8)
    assert tensors.digest(weights) == current["global_sha256"] == federation.global_sha256
    assert "global_weights" not in api_as(b.user).get(url + "&after=1").json()["current_round"]
    assert "global_weights" not in api_as(b.user).get(url.partition("?")[0]).json()["current_round"]
    pending = UserFactory(username="dave")
    services.party_join(federation=federation, user=pending, key_id=keyed(pending).key_id)
    for outsider in (alice, mallory, pending):  # the coordinator, a stranger, a party not admitted
        assert "global_weights" not in api_as(outsider).get(url).json()["current_round"]
    settings.FEDERATION_STATE_WEIGHTS_MAX_BYTES = 100  # larger files are downloaded
    assert "global_weights" not in api_as(b.user).get(url).json()["current_round"]
    refused = api_as(b.user).get(url.replace("true", "perhaps"))
    assert refused.status_code == 400 and "weights" in refused.json()


def test_a_look_and_a_submission_take_a_bounded_number_of_queries(running, django_assert_max_num_queries):
    federation, (b, _c) = running
    with django_assert_max_num_queries(3):
        assert api_as(b.user).get(f"/api/federations/{federation.pk}/state/").status_code == 200
    with django_assert_max_num_queries(3):
        assert api_as(b.user).get(f"/api/federations/{federation.pk}/").status_code == 200
    delta = small_delta(federation)
    body = multipart(b, tensors.encode(delta), 50, signed(federation, 1, b, delta, 50))
    with django_assert_max_num_queries(15):
        response = api_as(b.user).post(
            f"/api/federations/{federation.pk}/rounds/1/updates/", body, format="multipart"
        )
    assert response.status_code == 201, response.content
