"""Compute-only licences keep the marketplace's promise: private results, a privacy budget per licence, and
every ε spent on the ledger. Owners and download licensees, who hold the rows, keep exact results."""

import json
import threading
from decimal import Decimal

import pytest
from django.db import connection

from ledger.models import Entry
from marketplace import services
from marketplace.models import License
from platform_site.errors import DomainError
from platform_site.jobs.models import Job
from tests.conftest import api_as
from tests.ledger.helpers import fund
from tests.marketplace.test_analyses import blobs_csv, listing_with, run

pytestmark = pytest.mark.django_db


def rare_and_identifying_csv(rows: int = 600) -> bytes:
    """Blobs with a column of unique e-mails and a segment in which "vip" holds 4 rows and "staff" 5."""
    lines = blobs_csv(rows).decode().strip().split("\n")
    out = [lines[0] + ",email,tier"]
    for i, line in enumerate(lines[1:]):
        tier = "vip" if i < 4 else "staff" if i < 9 else "basic"
        out.append(f"{line},person{i}@example.org,{tier}")
    return ("\n".join(out) + "\n").encode()


@pytest.fixture
def compute_listing(alice, bob):
    dataset, _version = listing_with(alice, rare_and_identifying_csv())
    fund(f"user:{bob.pk}", 10_000)
    services.license_purchase(buyer=bob, dataset=dataset, tier="compute")
    return dataset


def submit(user, dataset, **params) -> Job:
    return services.analysis_submit(user=user, dataset=dataset, params=params)


@pytest.mark.parametrize("max_categories", [2, 100])
@pytest.mark.parametrize("analysis", ["kmeans", "pca", "isolation_forest"])
def test_a_compute_only_result_never_names_a_rare_level_or_an_identifier(compute_listing, bob, analysis,
                                                                        max_categories):  # fmt: skip
    job = run(submit(bob, compute_listing, analysis=analysis, k=3, max_categories=max_categories))
    assert job.status == "succeeded", job.error
    text = json.dumps(job.result)
    assert "vip" not in text, "a level of 4 rows is folded into (other)"
    assert "example.org" not in text and "person1" not in text, "identifier values are never named"
    if analysis != "isolation_forest" and max_categories > 2:  # the forest's result names no feature
        assert "tier=staff" in text, "a level of 5 rows is named"
    assert job.result["result"]["privacy"]["epsilon"] == 1.0


def test_dbscan_and_k_means_without_k_are_refused_to_compute_only_licensees(compute_listing, bob):
    with pytest.raises(DomainError, match="no differentially private version"):
        submit(bob, compute_listing, analysis="dbscan")
    response = api_as(bob).post(f"/api/data/datasets/{compute_listing.pk}/analyses/", {"analysis": "kmeans"},
                                format="json")  # fmt: skip
    assert response.status_code == 400 and "choose the number of clusters" in response.json()["detail"]
    assert not Job.objects.filter(kind="marketplace.analysis").exists()
    assert License.objects.get(buyer=bob).epsilon_spent == 0


def test_owners_and_download_licensees_get_exact_results(alice, bob):
    dataset, _version = listing_with(alice, blobs_csv())
    fund(f"user:{bob.pk}", 10_000)
    services.license_purchase(buyer=bob, dataset=dataset, tier="download")
    for user in (alice, bob):
        job = run(submit(user, dataset, analysis="kmeans", k=3))
        assert job.status == "succeeded", job.error
        assert "privacy" not in job.result["result"]
        sizes = sorted(c["size"] for c in job.result["result"]["clusters"] if not c["suppressed"])
        assert sizes == [100, 100, 101], "exact sizes (the planted outlier joins a blob)"
    assert not Entry.objects.filter(kind="marketplace.privacy.spent").exists()


def test_the_budget_refuses_the_analysis_that_would_exceed_it_and_the_ledger_adds_up(compute_listing, bob):
    url = f"/api/data/datasets/{compute_listing.pk}/analyses/"
    client = api_as(bob)
    assert client.post(url, {"analysis": "pca", "epsilon": "6"}, format="json").status_code == 201
    assert client.post(url, {"analysis": "pca", "epsilon": "3.5"}, format="json").status_code == 201
    over = client.post(url, {"analysis": "pca", "epsilon": "0.51"}, format="json")
    assert over.status_code == 400
    assert "only ε = 0.50 is left" in over.json()["detail"]
    assert Job.objects.filter(kind="marketplace.analysis").count() == 2
    license = License.objects.get(buyer=bob)
    assert (license.epsilon_budget, license.epsilon_spent, license.epsilon_left) == (
        10,
        Decimal("9.5"),
        Decimal("0.5"),
    )
    spent = Entry.objects.filter(kind="marketplace.privacy.spent").order_by("seq")
    assert sum(Decimal(e.payload["epsilon"]) for e in spent) == license.epsilon_spent
    assert [e.payload["spent"] for e in spent] == ["6.00", "9.50"]
    # The remaining budget, in the API, for the buyer; mallory sees none of it.
    privacy = client.get(f"/api/data/datasets/{compute_listing.pk}/privacy/").json()
    assert privacy["licenses"][0]["epsilon_left"] == "0.50"


def test_a_bad_epsilon_is_a_400_and_spends_nothing(compute_listing, bob):
    url = f"/api/data/datasets/{compute_listing.pk}/analyses/"
    for epsilon in ("0", "-1", "0.001", "1e400", "nan", "lots"):
        response = api_as(bob).post(url, {"analysis": "pca", "epsilon": epsilon}, format="json")
        assert response.status_code == 400, epsilon
        assert "epsilon" in response.json()
    assert License.objects.get(buyer=bob).epsilon_spent == 0


def test_the_owner_sets_the_budget_for_licences_sold_from_then_on_and_sees_each_licences_spend(
    compute_listing, alice, bob, mallory
):
    url = f"/api/data/datasets/{compute_listing.pk}/"
    assert api_as(mallory).patch(url, {"privacy_budget": "500"}, format="json").status_code == 403
    assert api_as(alice).patch(url, {"privacy_budget": "0"}, format="json").status_code == 400
    changed = api_as(alice).patch(url, {"privacy_budget": "4.5"}, format="json")
    assert changed.status_code == 200 and changed.json()["privacy_budget"] == "4.50"
    assert License.objects.get(buyer=bob).epsilon_budget == 10, "a licence sold keeps its budget"
    fund(f"user:{mallory.pk}", 10_000)
    compute_listing.refresh_from_db()
    services.license_purchase(buyer=mallory, dataset=compute_listing, tier="compute")
    assert License.objects.get(buyer=mallory).epsilon_budget == Decimal("4.5")
    run(submit(bob, compute_listing, analysis="pca", epsilon=Decimal("2")))
    owner_view = api_as(alice).get(f"/api/data/datasets/{compute_listing.pk}/privacy/").json()
    spent = dict(zip(owner_view["buyers"], (x["epsilon_spent"] for x in owner_view["licenses"]), strict=True))
    assert spent == {"bob": "2.00", "mallory": "0.00"}
    mallory_view = api_as(mallory).get(f"/api/data/datasets/{compute_listing.pk}/privacy/").json()
    assert mallory_view["buyers"] == ["mallory"], "a licensee sees their own budget only"


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL (CI runs it)")
def test_concurrent_analyses_cannot_overspend_the_budget(alice, bob):
    dataset, _version = listing_with(alice, blobs_csv())
    fund(f"user:{bob.pk}", 10_000)
    services.license_purchase(buyer=bob, dataset=dataset, tier="compute")
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def analyse() -> None:
        barrier.wait()
        try:
            submit(bob, dataset, analysis="pca", epsilon=Decimal("3"))
            outcomes.append("queued")
        except DomainError as exc:
            outcomes.append(exc.message)
        finally:
            connection.close()

    threads = [threading.Thread(target=analyse) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("queued") == 3, outcomes
    assert all("is left" in o for o in outcomes if o != "queued")
    license = License.objects.get(buyer=bob)
    assert license.epsilon_spent == 9
    entries = Entry.objects.filter(kind="marketplace.privacy.spent")
    assert sum(Decimal(e.payload["epsilon"]) for e in entries) == 9 and entries.count() == 3


def test_a_holder_of_both_licences_gets_exact_results_and_spends_nothing(compute_listing, bob):
    services.license_purchase(buyer=bob, dataset=compute_listing, tier="download")
    job = submit(bob, compute_listing, analysis="kmeans", k=3)
    assert job.params["private"] is False and job.params["epsilon"] is None
    assert License.objects.get(buyer=bob, tier="compute").epsilon_spent == 0
