"""The whole life of a model through the API, on the real worker: trained from licensed data, minted, offered,
licensed, called with a receipt that verifies offline against an export, settled with exact shares to the owner,
the data's owner and the treasury, then sold and resold with the creator's royalty."""

import json

import pytest
from django.core.management import call_command

from models_market import services
from models_market.models import ModelVersion
from tests.conftest import api_as
from tests.ledger.helpers import fund
from tests.models_market.helpers import balance
from tests.models_market.models_in import buy, published_version, train_body, wait
from tests.models_market.test_verify_receipt import run

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_train_mint_offer_license_predict_verify_settle_and_resell(alice, bob, carol, dora, mallory, celery_worker,
                                                                   tmp_path):  # fmt: skip
    data = published_version(dora)  # dora's data, licensed to alice for download: derived models allowed
    buy(alice, data, "download")
    trained = api_as(alice).post("/api/models/train/", train_body(data, royalty_bp=500), format="json")
    assert trained.status_code == 201, trained.json()
    job = wait(trained.json()["id"])
    assert job.status == "succeeded" and job.worker == celery_worker, job.error
    version = ModelVersion.objects.get(pk=job.result["version"])
    token = version.token
    assert (token.owner, token.creator, token.royalty_bp) == (alice, alice, 500)
    assert version.trained_on_id == data.pk and version.trained_on_sha256 == data.sha256

    offers = {"price_perpetual": 3_000, "price_per_call": 100, "listed": True}
    assert api_as(alice).patch(f"/api/models/tokens/{token.pk}/", offers, format="json").status_code == 200
    fund(f"user:{bob.pk}", 10_000)
    licence = api_as(bob).post(
        f"/api/models/tokens/{token.pk}/licenses/", {"kind": "perpetual"}, format="json"
    )
    assert licence.status_code == 201, licence.json()
    before = {who: balance(who) for who in ("treasury", alice, dora)}

    row = {"x1": 0.3, "x2": -1.2, "colour": "red", "income": 31_000, "amount": 2.5}
    request = json.dumps({"rows": [row, {**row, "colour": "blue"}]}).encode()  # kept as sent, for the receipt
    answer = api_as(bob).post(
        f"/api/models/versions/{version.pk}/predict/", request, content_type="application/json"
    )
    assert answer.status_code == 200, answer.json()
    assert [p["prediction"] for p in answer.json()["predictions"]] in (["yes", "yes"], ["yes", "no"], ["no", "yes"],
                                                                        ["no", "no"])  # fmt: skip
    assert services.settle_pending(limit=10) is not None
    # One call of 100: fee 2 (2.5%), then the version's lineage share (10% of 98 = 9) to dora's data, 89 to alice.
    assert {who: balance(who) - before[who] for who in before} == {"treasury": 2, alice: 89, dora: 9}

    receipt = api_as(bob).get(f"/api/models/receipts/{answer.json()['receipt']['id']}/").json()
    paths = {name: tmp_path / f"{name}.json" for name in ("receipt", "request", "answer")}
    paths["receipt"].write_text(json.dumps(receipt))
    paths["request"].write_bytes(request)
    paths["answer"].write_text(json.dumps(answer.json()))
    call_command("export_ledger", str(tmp_path / "export.jsonl"))
    checked = run(paths["receipt"], tmp_path / "export.jsonl", "--input", paths["request"], "--output",
                  paths["answer"])  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # alice sells the token to carol; carol resells it to mallory, and alice (its creator) gets 5% of the rest.
    assert (
        api_as(alice)
        .patch(f"/api/models/tokens/{token.pk}/", {"sale_price": 4_000}, format="json")
        .status_code
        == 200
    )
    fund(f"user:{carol.pk}", 4_000)
    assert api_as(carol).post(f"/api/models/tokens/{token.pk}/buy/", {}, format="json").status_code == 200
    api_as(carol).patch(f"/api/models/tokens/{token.pk}/", {"sale_price": 6_000}, format="json")
    fund(f"user:{mallory.pk}", 6_000)
    royalty_before = balance(alice)
    assert api_as(mallory).post(f"/api/models/tokens/{token.pk}/buy/", {}, format="json").status_code == 200
    assert balance(alice) - royalty_before == (6_000 - 150) * 500 // 10_000
    call_command("verify_ledger", "--quiet")
