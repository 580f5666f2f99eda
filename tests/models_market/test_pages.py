"""The model marketplace's pages: browse, a model's page, the buy confirmation, trying a model, a user's models,
and the training form; each refuses whom it must."""

import json

import pytest
from django.core.management import call_command
from django.test import Client

from models_market.models import ModelLicense, ModelVersion, Receipt
from platform_site.jobs.models import Job
from tests.factories import UserFactory
from tests.ledger.helpers import fund
from tests.models_market.helpers import ROW, balance, listed, make_version
from tests.models_market.models_in import published_version

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def owner():
    return UserFactory(username="olga")


@pytest.fixture
def buyer():
    user = UserFactory(username="ben")
    fund(f"user:{user.pk}", 100_000)
    return user


def test_browse_lists_listed_models_with_their_offers_and_filters(owner, client):
    token = listed(owner, price_per_call=25, price_quota=1_500, quota_calls=100)
    make_version(owner, name="Unlisted draft")  # ready, but its owner offers nothing: not listed
    page = client.get("/models/").content.decode()
    assert page.count('data-testid="model-card"') == 1
    assert "Churn" in page and "Perpetual: 50.00 tokens" in page and "100 calls: 15.00 tokens" in page
    assert "0.25 tokens a call" in page
    assert f'href="/models/{token.version_id}/"' in page
    assert 'data-testid="no-models"' in client.get("/models/?q=nothing-like-this").content.decode()
    assert (
        'data-testid="model-card"'
        in client.get("/models/?license=quota&task=classification").content.decode()
    )
    assert 'data-testid="no-models"' in client.get("/models/?license=timed").content.decode()


def test_a_models_page_shows_its_card_token_offers_and_history_to_anyone(owner, client):
    token = listed(owner)
    page = client.get(f"/models/{token.version_id}/").content.decode()
    for testid in (
        "model-card",
        "model-offers",
        "model-token",
        "model-usage",
        "token-history",
        "model-inputs",
    ):
        assert f'data-testid="{testid}"' in page, testid
    assert f"Token #{token.pk}" in page and token.artifact_sha256 in page
    assert "Log in to buy" in page, "an anonymous visitor is asked to log in, not shown a buy button"
    assert 'data-testid="try-model"' not in page, "only licensees and the owner may call it"


def test_a_pending_or_failed_model_is_seen_by_its_maker_only(owner, client):
    version = make_version(owner)
    ModelVersion.objects.filter(pk=version.pk).update(
        status=ModelVersion.Status.FAILED, error="schema mismatch"
    )
    assert client.get(f"/models/{version.pk}/").status_code == 404
    assert client_for(UserFactory()).get(f"/models/{version.pk}/").status_code == 404
    page = client_for(owner).get(f"/models/{version.pk}/").content.decode()
    assert 'data-testid="model-error"' in page and "schema mismatch" in page
    assert client.get("/models/999999/").status_code == 404


def test_buying_a_licence_goes_through_a_confirmation_with_the_balance(owner, buyer):
    token = listed(owner, price_perpetual=2_500, price_per_call=10)
    client = client_for(buyer)
    confirm = client.get(f"/models/{token.version_id}/buy/?kind=perpetual").content.decode()
    assert "25.00 tokens" in confirm and "1,000.00 tokens" in confirm and "975.00 tokens" in confirm
    assert "0.10 tokens" in confirm, "the per-call price is stated before buying"
    assert ModelLicense.objects.count() == 0, "the confirmation buys nothing"
    response = client.post(f"/models/{token.version_id}/buy/", {"kind": "perpetual"})
    assert response.status_code == 302
    licence = ModelLicense.objects.get(holder=buyer)
    assert licence.kind == "perpetual" and licence.price == 2_500
    assert balance(buyer) == 100_000 - 2_500
    page = client.get(f"/models/{token.version_id}/").content.decode()
    assert 'data-testid="my-licence"' in page and 'data-testid="try-model"' in page
    call_command("verify_ledger", "--quiet")


def test_a_buyer_short_of_funds_is_told_so_and_nothing_moves(owner):
    token = listed(owner, price_perpetual=2_500)
    poor = UserFactory()
    client = client_for(poor)
    confirm = client.get(f"/models/{token.version_id}/buy/?kind=perpetual").content.decode()
    assert 'data-testid="buy-short"' in confirm and "buy-confirm-button" not in confirm
    response = client.post(f"/models/{token.version_id}/buy/", {"kind": "perpetual"}, follow=True)
    assert "Not bought" in response.content.decode()
    assert ModelLicense.objects.count() == 0


def test_what_is_not_on_sale_cannot_be_bought_and_the_owner_does_not_buy_their_own(owner, buyer):
    token = listed(owner)  # perpetual only
    for kind in ("quota", "timed", "token", "junk", ""):
        response = client_for(buyer).get(f"/models/{token.version_id}/buy/?kind={kind}", follow=True)
        assert "That is not on sale." in response.content.decode(), kind
    response = client_for(owner).get(f"/models/{token.version_id}/buy/?kind=perpetual", follow=True)
    assert "You own this model" in response.content.decode()
    anonymous = Client().get(f"/models/{token.version_id}/buy/?kind=perpetual")
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]


def test_a_licensee_tries_the_model_and_gets_predictions_and_a_receipt(owner, buyer):
    token = listed(owner, price_per_call=10)
    client = client_for(buyer)
    client.post(f"/models/{token.version_id}/buy/", {"kind": "perpetual"})
    page = client.post(f"/models/{token.version_id}/try/", {"rows": json.dumps([ROW, ROW])}).content.decode()
    assert 'data-testid="try-predictions"' in page and 'data-testid="try-receipt"' in page
    receipt = Receipt.objects.get(caller=buyer)
    assert receipt.rows == 2 and receipt.signature in page and "0.10 tokens" in page
    bad = client.post(f"/models/{token.version_id}/try/", {"rows": json.dumps([{"age": 1}])}).content.decode()
    assert 'data-testid="try-error"' in bad and "income" in bad, "the missing column is named"
    junk = client.post(f"/models/{token.version_id}/try/", {"rows": "{not json"}).content.decode()
    assert "JSON object" in junk
    assert Receipt.objects.count() == 1, "refused rows are not charged"


def test_someone_without_a_licence_is_refused_by_the_try_form(owner, buyer):
    token = listed(owner)
    page = (
        client_for(buyer).post(f"/models/{token.version_id}/try/", {"rows": json.dumps(ROW)}).content.decode()
    )
    assert 'data-testid="try-error"' in page and "licen" in page
    assert Receipt.objects.count() == 0


def test_my_models_lists_tokens_made_models_licences_and_receipts(owner, buyer):
    token = listed(owner, price_per_call=10)
    client = client_for(buyer)
    client.post(f"/models/{token.version_id}/buy/", {"kind": "perpetual"})
    client.post(f"/models/{token.version_id}/try/", {"rows": json.dumps(ROW)})
    mine = client.get("/models/mine/").content.decode()
    assert 'data-testid="my-licences"' in mine and 'data-testid="my-receipts"' in mine
    assert "0.10 tokens" in mine, "the licence's spend on calls"
    theirs = client_for(owner).get("/models/mine/").content.decode()
    assert 'data-testid="my-tokens"' in theirs and 'data-testid="my-versions"' in theirs
    assert Client().get("/models/mine/").status_code == 302


def test_the_training_form_for_the_datas_owner_queues_a_job_and_refuses_others(settings, owner):
    settings.JOB_MAX_ACTIVE_PER_USER = 0
    version = published_version(owner)
    client = client_for(owner)
    pick = client.get("/models/train/").content.decode()
    assert 'data-testid="trainable"' in pick and "Scores" in pick
    form = client.get(f"/models/train/?dataset={version.dataset_id}").content.decode()
    assert 'data-testid="train-form"' in form and '<option value="label">' in form
    response = client.post(
        "/models/train/",
        {"dataset": version.dataset_id, "name": "Scorer", "target": "label", "task": "classification",
         "algorithm": "logistic_regression", "test_size": 0.2, "seed": 0, "max_levels": 20, "royalty_bp": 100},
    )  # fmt: skip
    job = Job.objects.get(kind="models_market.train")
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert job.params["target"] == "label"
    bad = client.post(
        "/models/train/",
        {"dataset": version.dataset_id, "name": "x", "target": "label", "task": "classification",
         "algorithm": "linear_regression", "test_size": 0.2, "seed": 0, "max_levels": 20, "royalty_bp": 0},
    )  # fmt: skip
    assert bad.status_code == 200 and "regression" in bad.content.decode()
    assert Job.objects.filter(kind="models_market.train").count() == 1, "a refused form queues nothing"
    stranger = client_for(UserFactory()).get(f"/models/train/?dataset={version.dataset_id}").content.decode()
    assert 'data-testid="train-refused"' in stranger and 'data-testid="train-form"' not in stranger


def test_the_admin_lists_every_table_in_tokens_to_staff_only(owner, buyer):
    token = listed(owner, price_per_call=25)
    client_for(buyer).post(f"/models/{token.version_id}/buy/", {"kind": "perpetual"})
    staff = UserFactory(username="root-staff", is_staff=True, is_superuser=True)
    for table in ("modelasset", "modelversion", "modelparent", "modeltoken", "modellicense", "receipt",
                  "settlement", "callmeter", "guaranteedpurchase", "evaluation", "evaluationscore"):  # fmt: skip
        assert client_for(staff).get(f"/admin/models_market/{table}/").status_code == 200, table
        assert client_for(buyer).get(f"/admin/models_market/{table}/").status_code == 302, table
    tokens = client_for(staff).get("/admin/models_market/modeltoken/").content.decode()
    assert "0.25 tokens" in tokens and "50.00 tokens" in tokens
    assert client_for(staff).get(f"/admin/models_market/modeltoken/{token.pk}/change/").status_code == 200


@pytest.mark.parametrize(
    "text",
    ['[{"age": 1e400, "income": 1, "visits": 2}]', '[{"age": NaN, "income": 1, "visits": 2}]', "[" * 5000,
     '{"age": 123456789012345678901234567890123456789, "income": 1, "visits": 2}', '"a string"', "[]"],
    ids=["huge-float", "nan", "deep", "huge-int", "string", "empty"],
)  # fmt: skip
def test_the_try_form_answers_junk_with_a_message_and_charges_nothing(owner, buyer, text):
    token = listed(owner, price_per_call=10)
    client = client_for(buyer)
    client.post(f"/models/{token.version_id}/buy/", {"kind": "perpetual"})
    response = client.post(f"/models/{token.version_id}/try/", {"rows": text})
    assert response.status_code == 200
    assert 'data-testid="try-error"' in response.content.decode()
    assert Receipt.objects.count() == 0


def test_the_owner_sets_a_guarantee_and_a_buyer_buys_under_it_from_the_page(owner, buyer, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from models_market.models import GuaranteedPurchase
    from tests.models_market.test_guarantees import holdout_csv

    settings.MODELS_EVALUATION_RESAMPLES = 50
    token = listed(owner, price_perpetual=2_000)
    url = f"/models/{token.version_id}/"
    assert 'data-testid="guarantee-form"' in client_for(owner).get(url).content.decode()
    assert 'data-testid="guarantee-form"' not in client_for(buyer).get(url).content.decode()
    refused = client_for(buyer).post(
        f"{url}guarantee/", {"metric": "accuracy", "threshold": "0.1"}, follow=True
    )
    assert "Not changed" in refused.content.decode(), "only the token's owner sets its guarantee"
    bad = client_for(owner).post(f"{url}guarantee/", {"metric": "accuracy", "threshold": "lots"}, follow=True)
    assert "must be a number" in bad.content.decode()
    client_for(owner).post(
        f"{url}guarantee/", {"metric": "accuracy", "threshold": "0.6", "price_evaluation": "1.50"}
    )
    token.refresh_from_db()
    assert (token.guarantee_metric, token.guarantee_threshold, token.price_evaluation) == (
        "accuracy",
        0.6,
        150,
    )

    page = client_for(buyer).get(url).content.decode()
    assert 'data-testid="model-guarantee"' in page and 'data-testid="buy-guaranteed"' in page
    missing = client_for(buyer).post(f"{url}buy-guaranteed/", {"kind": "perpetual"}, follow=True)
    assert "choose a file" in missing.content.decode() and not GuaranteedPurchase.objects.exists()
    holdout = SimpleUploadedFile("rows.csv", holdout_csv(60), content_type="text/csv")
    response = client_for(buyer).post(f"{url}buy-guaranteed/", {"kind": "perpetual", "holdout": holdout})
    purchase = GuaranteedPurchase.objects.get(buyer=buyer)
    assert response.status_code == 302 and response["Location"] == f"/jobs/{purchase.job_id}/"
    assert balance(buyer) == 100_000 - 2_000, "the price waits in escrow"
    assert 'data-testid="my-guaranteed"' in client_for(buyer).get("/models/mine/").content.decode()


def test_the_evaluation_page_takes_models_and_rows_and_shows_the_ranking_to_the_payer_only(
    owner, buyer, settings
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from models_market.models import Evaluation
    from tests.models_market.test_guarantees import holdout_csv

    settings.MODELS_EVALUATION_RESAMPLES = 50
    first, second = listed(owner), listed(UserFactory(), seed=3)
    page = client_for(buyer).get("/models/evaluate/").content.decode()
    assert 'data-testid="evaluate-form"' in page and page.count('name="versions"') == 2
    holdout = SimpleUploadedFile("rows.csv", holdout_csv(60), content_type="text/csv")
    response = client_for(buyer).post(
        "/models/evaluate/", {"versions": [first.version_id, second.version_id], "metric": "accuracy",
                              "holdout": holdout},
    )  # fmt: skip
    ev = Evaluation.objects.get(user=buyer)
    assert response.status_code == 302 and response["Location"] == f"/models/evaluations/{ev.pk}/"
    shown = client_for(buyer).get(f"/models/evaluations/{ev.pk}/").content.decode()
    assert 'data-testid="evaluation-ranking"' in shown and ev.holdout_sha256 in shown
    assert client_for(owner).get(f"/models/evaluations/{ev.pk}/").status_code == 404
    empty = client_for(buyer).post("/models/evaluate/", {"metric": "accuracy"}, follow=True)
    assert "Not started" in empty.content.decode() and Evaluation.objects.count() == 1
