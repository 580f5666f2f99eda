"""A federation end to end through the API, aggregated by the real Celery worker: three parties (simulated here
with ml.federated.local and protocol.sign, not the client) train on their shares of scikit-learn's digits until
the target accuracy; every round re-aggregates to its ledgered digest and the rewards add up exactly."""

import json
import time

import pytest
from django.core.management import call_command

from federation import protocol, services
from federation.models import Federation, Payout, Round
from federation.services.common import shapes as model_shapes
from ledger.models import Account, Entry
from ml.features import FeatureSchema
from ml.federated import local, tensors
from tests.conftest import api_as
from tests.federation.helpers import csv_bytes, digits, keyed, multipart, party_table, schema, validation_file
from tests.ledger.helpers import fund

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

POOL = 90_001  # odd on purpose: the split has a remainder


def balance(name: str) -> int:
    account = Account.objects.filter(name=name).first()
    return account.balance if account else 0


def wait_for_round(fid: int, number: int, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rnd = Round.objects.get(federation_id=fid, number=number)
        if rnd.status in ("closed", "failed"):
            return {"status": rnd.status, "error": rnd.error or (rnd.job.error if rnd.job else "")}
        time.sleep(0.3)
    raise TimeoutError(f"round {number} did not finish")


def test_three_parties_reach_the_target_on_the_worker_and_are_paid_by_contribution(
    alice, bob, carol, dora, mallory, celery_worker
):
    fund(f"user:{alice.pk}", POOL)
    body = {
        "name": "Digits together", "schema": json.dumps(schema()), "spec": json.dumps({"hidden": [32]}),
        "recipe": json.dumps({"optimizer": "sgd", "lr": 0.1, "batch_size": 32, "local_epochs": 2}),
        "strategy": "fedavg", "update_norm_bound": "100", "rounds": "6", "min_parties": "3",
        "round_deadline": "600", "target_metric": "accuracy", "target_value": "0.9", "reward_pool": str(POOL),
        "validation": validation_file(),
    }  # fmt: skip
    created = api_as(alice).post("/api/federations/", body, format="multipart")
    assert created.status_code == 201, created.content
    fid = created.json()["id"]
    members = [keyed(u) for u in (bob, carol, dora)]
    for m in members:
        joined = api_as(m.user).post(f"/api/federations/{fid}/join/", {"key_id": m.key_id}, format="json")
        assert joined.status_code == 201, joined.content
        assert (
            api_as(alice).post(f"/api/federations/{fid}/parties/{joined.json()['party']}/admit/").status_code
            == 200
        )

    federation = Federation.objects.get(pk=fid)
    feature_schema = FeatureSchema.from_json(federation.schema)
    shares = [local.task_xy(feature_schema, party_table(i, 3)) for i in range(3)]
    shapes = model_shapes(federation.spec)
    number = 0
    for _ in range(6):
        detail = api_as(bob).get(f"/api/federations/{fid}/").json()
        if detail["status"] != "running":
            break
        current = detail["current_round"]
        assert current["status"] == "open"
        number = current["number"]
        for i, m in enumerate(members):
            download = api_as(m.user).get(f"/api/federations/{fid}/rounds/{number}/model/")
            data = b"".join(download.streaming_content)
            global_tensors = tensors.decode(data, shapes=shapes, max_bytes=10**8)
            assert tensors.digest(global_tensors) == download["X-Content-Digest"] == current["global_sha256"]
            X, y = shares[i]
            result = local.train_local(
                spec=detail["spec"], global_tensors=global_tensors, X=X, y=y, recipe=detail["recipe"], seed=i
            )
            message = protocol.update_message(
                federation=fid,
                round=number,
                sha256=tensors.digest(result.delta),
                num_examples=result.num_examples,
            )
            sent = api_as(m.user).post(
                f"/api/federations/{fid}/rounds/{number}/updates/",
                multipart(m, tensors.encode(result.delta), result.num_examples, protocol.sign(m.key, message),
                          metrics=result.metrics),
                format="multipart",
            )  # fmt: skip
            assert sent.status_code == 201, sent.content
        outcome = wait_for_round(fid, number)
        assert outcome["status"] == "closed", outcome
    federation.refresh_from_db()
    assert federation.status == "finished", federation.error
    rounds = api_as(bob).get(f"/api/federations/{fid}/rounds/").json()
    closed = [r for r in rounds if r["status"] == "closed"]
    assert (
        len(closed) == number and closed[-1]["metrics"]["accuracy"] >= 0.9
    )  # the target, on the validation rows
    assert len(closed) < 6  # reached before the round limit

    # Every round re-aggregates from its stored updates to the digest its ledger entry holds.
    aggregated = {
        e.payload["round"]: e.payload for e in Entry.objects.filter(kind="federation.round.aggregated")
    }
    for rnd in Round.objects.filter(federation=federation, status="closed"):
        assert (
            services.round_recompute(round=rnd) == aggregated[rnd.number]["new_sha256"] == rnd.result_sha256
        )
        assert sorted(aggregated[rnd.number]["included"]) == sorted(u.sha256 for u in rnd.updates.all())

    # The final model scores the same on the held-out digits the coordinator never uploaded.
    X_test, y_test = digits()[2:]
    from io import BytesIO

    from ml.tabular import read_table

    Xh, yh = local.task_xy(
        feature_schema, read_table(BytesIO(csv_bytes(X_test[300:], y_test[300:])), fmt="csv")
    )
    final = tensors.decode(
        Round.objects.get(federation=federation, number=number).result.open("rb").read(),
        shapes=shapes,
        max_bytes=10**8,
    )
    assert local.evaluate(spec=federation.spec, tensors=final, X=Xh, y=yh)["accuracy"] > 0.85

    # The pool minus the fee, exactly, to the parties; the minted model is the coordinator's.
    fee = POOL * federation.fee_bp // 10_000
    assert sum(p.amount for p in Payout.objects.filter(federation=federation)) == POOL - fee
    assert sum(balance(f"user:{u.pk}") for u in (bob, carol, dora)) == POOL - fee
    assert balance("treasury") == fee and balance(f"user:{alice.pk}") == 0
    card = api_as(alice).get(f"/api/models/versions/{federation.model_version_id}/")
    assert card.status_code == 200 and card.json()["token"]["owner"] == "alice"
    assert api_as(mallory).get(f"/api/federations/{fid}/rounds/1/model/").status_code == 403
    call_command("verify_ledger", "--quiet")
