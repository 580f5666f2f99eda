"""Licences guaranteed by contract: the price held in escrow, the model scored on the buyer's sealed holdout, the
seller paid (exactly as a licence payment) and the licence granted if it meets the standard, the buyer refunded
otherwise; the seller never receives a row."""

import re

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from ledger.models import Entry
from models_market import services
from models_market.models import GuaranteedPurchase, ModelLicense
from platform_site.errors import Conflict, DomainError, PermissionDenied
from platform_site.jobs.models import Job
from platform_site.jobs.services import job_execute
from tests.conftest import api_as
from tests.ledger.helpers import fund
from tests.models_market.helpers import balance, dataset_version, listed, make_version, mint

pytestmark = pytest.mark.django_db


def holdout_csv(
    n: int = 60, *, seed: int = 1, flip: bool = False, columns=("age", "income", "visits")
) -> bytes:
    """Labelled rows drawn like the helpers' model's training data (flipped labels: a model that misses)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (X @ np.array([1.0, -2.0, 0.5]) > 0).astype(int)
    if flip:
        y = 1 - y
    lines = [",".join([*columns, "churned"])]
    lines += [f"{a:.6f},{b:.6f},{c:.6f},{t}" for (a, b, c), t in zip(X, y, strict=True)]
    return ("\n".join(lines) + "\n").encode()


def upload(data: bytes, name: str = "holdout.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="text/csv")


@pytest.fixture
def token(alice, carol, dora, settings):
    """alice's model, fine-tuned from carol's and trained on dora's data, guaranteed at accuracy ≥ 0.8."""
    settings.MODELS_EVALUATION_RESAMPLES = 50
    parent = make_version(carol, name="Parent")
    mint(parent)
    token = listed(alice, lineage_bp=2_000, parents=(parent,), trained_on=dataset_version(dora),
                   price_perpetual=10_000)  # fmt: skip
    return services.guarantee_set(token=token, actor=alice, metric="accuracy", threshold=0.8)


@pytest.fixture
def run_job(django_capture_on_commit_callbacks):
    """Run the purchase's job in-process, with what its transactions do after commit (deleting the holdout)."""

    def run(purchase: GuaranteedPurchase) -> GuaranteedPurchase:
        with django_capture_on_commit_callbacks(execute=True):
            job_execute(job_id=purchase.job_id, worker="test")
        purchase.refresh_from_db()
        return purchase

    return run


def test_a_model_that_meets_the_standard_pays_the_seller_as_a_licence_and_grants_it(
    run_job, token, alice, bob, carol, dora
):
    fund(f"user:{bob.pk}", 10_000)
    purchase = services.license_purchase_guaranteed(buyer=bob, token=token, kind="perpetual",
                                                    holdout_file=upload(holdout_csv()))  # fmt: skip
    stored = purchase.holdout.name
    assert default_storage.exists(stored)
    assert balance(bob) == 0 and balance(alice) == 0  # held in escrow
    purchase = run_job(purchase)
    assert (purchase.status, purchase.outcome) == ("done", "met")
    assert purchase.measured >= 0.8
    # Exactly the split of a normal licence: fee 250; 20% of 9,750 up the lineage, halves to carol and dora.
    assert [balance(u) for u in (bob, alice, carol, dora)] + [balance("treasury")] == [
        0,
        7_800,
        975,
        975,
        250,
    ]
    license = ModelLicense.objects.get(holder=bob)
    assert (license.kind, license.price, purchase.license_id) == ("perpetual", 10_000, license.pk)
    entry = Entry.objects.get(kind="models_market.guarantee.evaluated")
    assert entry.payload["holdout_sha256"] == purchase.holdout_sha256
    assert float(entry.payload["measured"]) == purchase.measured and entry.payload["outcome"] == "met"
    assert license.entry_seq == entry.seq
    assert not default_storage.exists(stored) and not purchase.holdout
    call_command("verify_ledger", "--quiet")


def test_a_model_that_misses_refunds_the_buyer_exactly_and_grants_nothing(run_job, token, alice, bob):
    fund(f"user:{bob.pk}", 12_345)
    purchase = services.license_purchase_guaranteed(buyer=bob, token=token, kind="perpetual",
                                                    holdout_file=upload(holdout_csv(flip=True)))  # fmt: skip
    purchase = run_job(purchase)
    assert (purchase.status, purchase.outcome, purchase.license_id) == ("done", "missed", None)
    assert purchase.measured < 0.8
    assert (balance(bob), balance(alice), balance("treasury")) == (12_345, 0, 0)
    assert not ModelLicense.objects.filter(holder=bob).exists()
    assert Entry.objects.filter(kind="ledger.escrow.refunded").count() == 1
    call_command("verify_ledger", "--quiet")


def test_the_seller_never_receives_a_holdout_row(run_job, token, alice, bob):
    fund(f"user:{bob.pk}", 10_000)
    data = holdout_csv()
    purchase = run_job(services.license_purchase_guaranteed(buyer=bob, token=token, kind="perpetual",
                                                            holdout_file=upload(data)))  # fmt: skip
    cells = {cell for line in data.decode().splitlines()[1:] for cell in line.split(",")[:3]}
    job = Job.objects.get(pk=purchase.job_id)
    texts = [str(e.payload) for e in Entry.objects.all()] + [str(job.result), job.message, job.error]
    assert not any(cell in text for cell in cells for text in texts)
    assert not default_storage.listdir("holdouts")[1]


def test_a_holdout_missing_a_column_fails_the_job_with_the_reason_and_refunds(run_job, token, alice, bob):
    fund(f"user:{bob.pk}", 10_000)
    data = holdout_csv(columns=("age", "income", "visitz"))
    purchase = run_job(services.license_purchase_guaranteed(buyer=bob, token=token, kind="perpetual",
                                                            holdout_file=upload(data)))  # fmt: skip
    job = Job.objects.get(pk=purchase.job_id)
    assert (job.status, purchase.status) == ("failed", "failed")
    assert '"visits"' in job.error and '"visitz"' in job.error
    assert (balance(bob), balance(alice)) == (10_000, 0)
    assert not purchase.holdout and not default_storage.listdir("holdouts")[1]
    call_command("verify_ledger", "--quiet")


def test_an_evaluation_that_never_finishes_is_refunded_at_the_deadline(
    run_job, django_capture_on_commit_callbacks, token, alice, bob, settings
):
    settings.MODELS_GUARANTEE_DEADLINE_HOURS = -1  # already past
    fund(f"user:{bob.pk}", 10_000)
    services.license_purchase_guaranteed(buyer=bob, token=token, kind="perpetual",
                                         holdout_file=upload(holdout_csv()))  # fmt: skip
    from ledger.services import escrow_refund_expired

    assert escrow_refund_expired() == 1  # the ledger's beat task
    with django_capture_on_commit_callbacks(execute=True):
        assert services.guarantees_expire() == 1
    purchase = GuaranteedPurchase.objects.get()
    assert purchase.status == "expired" and not purchase.holdout
    assert (balance(bob), balance(alice)) == (10_000, 0)
    purchase = run_job(purchase)  # a late worker changes nothing
    assert not ModelLicense.objects.exists() and balance(bob) == 10_000
    call_command("verify_ledger", "--quiet")


def test_refusals(token, alice, bob, mallory):
    fund(f"user:{bob.pk}", 10_000)
    with pytest.raises(PermissionDenied):
        services.guarantee_set(token=token, actor=mallory, metric="accuracy", threshold=0.1)
    with pytest.raises(DomainError, match="not a metric"):
        services.guarantee_set(token=token, actor=alice, metric="rmse", threshold=0.1)
    with pytest.raises(DomainError, match="finite"):
        services.guarantee_set(token=token, actor=alice, metric="accuracy", threshold=float("nan"))
    for data, message in [
        (b"", "empty"),
        (b"age,income,visits\n1,2,3\n", 'no column "churned"'),
        (b"age,income,visits,churned\n", "no data rows|no rows"),
        (b"\xff\xfe\x00junk", "cannot be read"),
        (b"age,income,visits,churned\n1,2,3,7\n", "not one of the model's classes"),
        (b"age,income,visits,churned\n1e400,2,3,1\n", "cannot be read|too large"),
    ]:
        with pytest.raises(DomainError, match=message):
            services.license_purchase_guaranteed(
                buyer=bob, token=token, kind="perpetual", holdout_file=upload(data)
            )
    with pytest.raises(Conflict, match="you own"):
        services.license_purchase_guaranteed(buyer=alice, token=token, kind="perpetual",
                                             holdout_file=upload(holdout_csv()))  # fmt: skip
    services.guarantee_set(token=token, actor=alice, metric="")
    with pytest.raises(Conflict, match="no performance guarantee"):
        services.license_purchase_guaranteed(buyer=bob, token=token, kind="perpetual",
                                             holdout_file=upload(holdout_csv()))  # fmt: skip
    assert balance(bob) == 10_000 and not GuaranteedPurchase.objects.exists()
    assert not default_storage.exists("holdouts") or not default_storage.listdir("holdouts")[1]


def test_through_the_api_junk_is_a_400_and_strangers_are_refused(token, alice, bob, mallory):
    fund(f"user:{bob.pk}", 10_000)
    url = f"/api/models/tokens/{token.pk}/"
    assert api_as(mallory).post(url + "guarantee/", {"metric": "accuracy", "threshold": 0.1},
                                format="json").status_code == 403  # fmt: skip
    for data in [b"", b"\x00\xff junk", b"age,income,visits\n1,2,3\n", b"age,income,visits,churned\n1e400,1,1,1\n",
                 b"age,income,visits,churned\nnan,1,1,nan\n"]:  # fmt: skip
        response = api_as(bob).post(url + "licenses/guaranteed/", {"kind": "perpetual", "holdout": upload(data)},
                                    format="multipart")  # fmt: skip
        assert response.status_code == 400, (data, response.content)
    response = api_as(bob).post(url + "licenses/guaranteed/", {"kind": "perpetual", "holdout": upload(holdout_csv())},
                                format="multipart")  # fmt: skip
    assert response.status_code == 202 and response.json()["status"] == "pending"
    seller_view = api_as(alice).get("/api/models/guaranteed/").json()
    assert len(seller_view) == 1 and "holdout" not in seller_view[0]
    assert balance(bob) == 0


def test_the_job_page_shows_the_guarantee_outcome_and_links_the_model(run_job, token, bob, mallory, client):
    fund(f"user:{bob.pk}", 10_000)
    purchase = run_job(services.license_purchase_guaranteed(buyer=bob, token=token, kind="perpetual",
                                                            holdout_file=upload(holdout_csv())))  # fmt: skip
    client.force_login(bob)
    page = client.get(f"/jobs/{purchase.job_id}/").content.decode()
    assert "Guaranteed licence evaluation" in page
    assert "accuracy at least 0.8" in page and "met: paid to the seller, licence granted" in page
    assert f"{purchase.measured:.3g}" in page and f"#{purchase.result_seq}" in page
    assert f'href="/models/{purchase.version_id}/"' in page
    client.force_login(mallory)
    assert client.get(f"/jobs/{purchase.job_id}/").status_code == 404


def test_a_guaranteed_purchase_is_made_only_on_the_standard_and_terms_its_page_showed(
    token, alice, bob, client
):
    """The page states the standard the right way round (accuracy at least 0.8) and sends it back with the
    licence's terms: an owner who lowers the threshold, or raises the price, meanwhile sells nothing on it."""
    fund(f"user:{bob.pk}", 50_000)
    client.force_login(bob)
    page = client.get(f"/models/{token.version_id}/").content.decode()
    assert "accuracy at least <strong>0.8</strong>" in page
    shown = dict(re.findall(r'<input type="hidden" name="([\w-]+)" value="([^"]*)">', page))
    assert {k: shown[k] for k in ("metric", "direction", "threshold", "perpetual-price")} == {
        "metric": "accuracy", "direction": "min", "threshold": "0.8", "perpetual-price": "10000",
    }  # fmt: skip
    services.guarantee_set(token=token, actor=alice, metric="accuracy", threshold=0.1)  # meanwhile, the owner
    url = f"/models/{token.version_id}/buy-guaranteed/"
    response = client.post(url, {**shown, "kind": "perpetual", "holdout": upload(holdout_csv())}, follow=True)
    assert "the guarantee changed: it is now accuracy at least 0.1, not accuracy at least 0.8" in (
        response.content.decode()
    )
    shown["threshold"] = "0.1"
    services.token_offer_set(token=token, actor=alice, price_perpetual=40_000)
    response = client.post(url, {**shown, "kind": "perpetual", "holdout": upload(holdout_csv())}, follow=True)
    assert "the offer changed: the price is now 400.00 tokens, not 100.00 tokens" in response.content.decode()
    response = client.post(
        url, {**shown, "threshold": "x", "kind": "perpetual", "holdout": upload(holdout_csv())}
    )
    assert not GuaranteedPurchase.objects.exists() and balance(bob) == 50_000

    api = f"/api/models/tokens/{token.pk}/licenses/guaranteed/"
    data = {"kind": "perpetual", "holdout": upload(holdout_csv()), "threshold": 0.8, "price": 40_000}
    response = api_as(bob).post(api, data, format="multipart")
    assert response.status_code == 409 and "accuracy at least 0.1" in response.json()["detail"]
    data = {"kind": "perpetual", "holdout": upload(holdout_csv()), "threshold": 0.1, "direction": "min"}
    assert api_as(bob).post(api, data, format="multipart").status_code == 202
    assert "≥ 0.1" in client.get("/models/mine/").content.decode()
