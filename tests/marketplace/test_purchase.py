"""Listings, publishing, purchases and downloads, through the services."""

import hashlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from ledger.models import Account, Entry
from marketplace import services
from marketplace.models import Dataset, DatasetVersion, Download, License
from platform_site.errors import Conflict, DomainError, NotFound, PermissionDenied
from tests.ledger.helpers import fund

pytestmark = pytest.mark.django_db

CSV = b"age,income,city\n34,52000,Oslo\n51,61000,Bergen\n29,38000,Oslo\n"


def balance(name: str) -> int:
    return Account.objects.filter(name=name).values_list("balance", flat=True).first() or 0


@pytest.fixture
def listing(alice, django_capture_on_commit_callbacks):
    dataset = services.dataset_create(
        owner=alice, title="Household incomes", description="Synthetic survey", tags=["Finance", "survey"],
        terms_preset="research", price_download=10_000, price_compute=4_000,
    )  # fmt: skip
    version = services.dataset_version_upload(
        dataset=dataset, actor=alice, upload=SimpleUploadedFile("incomes.csv", CSV)
    )
    # The statistics job runs on the worker elsewhere; here the version is marked analysed.
    DatasetVersion.objects.filter(pk=version.pk).update(status="ready", stats={"rows": 3, "columns": 3})
    return services.dataset_publish(dataset=dataset, actor=alice)


def test_an_upload_is_hashed_while_streaming_and_published_on_the_ledger(listing):
    version = listing.current_version
    assert version.sha256 == hashlib.sha256(CSV).hexdigest()
    assert version.size == len(CSV)
    assert version.stats_job.kind == "marketplace.stats"
    entry = Entry.objects.get(kind="marketplace.dataset.published")
    assert entry.payload["sha256"] == version.sha256 and entry.payload["dataset"] == listing.pk
    assert listing.tags == ["finance", "survey"]


def test_a_purchase_pays_the_owner_less_the_fee_and_grants_a_license_in_one_entry(listing, alice, bob):
    fund(f"user:{bob.pk}", 50_000)
    license = services.license_purchase(buyer=bob, dataset=listing, tier="download")
    assert balance(f"user:{bob.pk}") == 40_000
    assert balance(f"user:{alice.pk}") == 9_750
    assert balance("treasury") == 250
    entry = Entry.objects.get(seq=license.entry_seq)
    assert entry.kind == "marketplace.license.granted"
    # What was sold is in the payload's own fields, so readers need not parse the memo.
    assert (entry.payload["dataset"], entry.payload["version"], entry.payload["tier"]) == (
        listing.pk,
        1,
        "download",
    )
    assert entry.payload["terms_hash"] == license.terms_hash
    assert license.terms_hash in entry.payload["memo"]
    assert license.expires_at is not None  # the research preset runs for 365 days
    call_command("verify_ledger", "--quiet")


@pytest.mark.parametrize("case", ["poor", "own", "twice", "withdrawn", "tier"])
def test_a_refused_purchase_moves_nothing_and_grants_nothing(listing, alice, bob, case):
    fund(f"user:{bob.pk}", 50_000)
    buyer, tier, error = bob, "download", Conflict
    if case == "poor":
        Account.objects.filter(name=f"user:{bob.pk}").update(balance=0)
        fund(f"user:{bob.pk}", 100)
        error = DomainError
    elif case == "own":
        buyer = alice
    elif case == "twice":
        services.license_purchase(buyer=bob, dataset=listing, tier="download")
    elif case == "withdrawn":
        services.dataset_withdraw(dataset=listing, actor=alice)
    elif case == "tier":
        tier, error = "premium", DomainError
    before = (
        Entry.objects.count(),
        License.objects.count(),
        balance(f"user:{bob.pk}"),
        balance(f"user:{alice.pk}"),
    )
    with pytest.raises(error):
        services.license_purchase(buyer=buyer, dataset=listing, tier=tier)
    after = (
        Entry.objects.count(),
        License.objects.count(),
        balance(f"user:{bob.pk}"),
        balance(f"user:{alice.pk}"),
    )
    assert after == before


def test_a_buyer_short_of_tokens_is_told_balance_and_price_in_words_through_the_api(listing, bob):
    from tests.conftest import api_as

    fund(f"user:{bob.pk}", 2_500)
    refused = api_as(bob).post(f"/api/data/datasets/{listing.pk}/buy/", {"tier": "download"}, format="json")
    assert refused.status_code == 400
    assert refused.json() == {
        "detail": "your balance is 25.00 tokens; this costs 100.00 tokens",
        "code": "insufficient_funds",
    }
    assert f"user:{bob.pk}" not in refused.content.decode() and not License.objects.exists()


def test_only_the_owner_and_download_licensees_may_download(listing, alice, bob, mallory):
    fund(f"user:{bob.pk}", 50_000)
    fund(f"user:{mallory.pk}", 50_000)
    with pytest.raises(PermissionDenied):
        services.download_authorize(user=bob, dataset=listing)
    services.license_purchase(buyer=bob, dataset=listing, tier="download")
    services.license_purchase(buyer=mallory, dataset=listing, tier="compute")
    assert services.download_authorize(user=bob, dataset=listing) == listing.current_version
    assert services.download_authorize(user=alice, dataset=listing) == listing.current_version
    with pytest.raises(PermissionDenied):
        services.download_authorize(user=mallory, dataset=listing)  # compute-only never sees rows
    assert Download.objects.count() == 2


def test_a_draft_is_invisible_to_everyone_but_its_owner(alice, bob):
    draft = services.dataset_create(owner=alice, title="Draft", terms_preset="open", price_download=1)
    with pytest.raises(NotFound):
        services.download_authorize(user=bob, dataset=draft)


def test_withdrawn_listings_keep_serving_existing_licenses(listing, alice, bob):
    fund(f"user:{bob.pk}", 50_000)
    services.license_purchase(buyer=bob, dataset=listing, tier="download")
    services.dataset_withdraw(dataset=listing, actor=alice)
    assert services.download_authorize(user=bob, dataset=listing).pk == listing.current_version_id
    assert Dataset.objects.get(pk=listing.pk).status == "withdrawn"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"title": " "}, "title"),
        ({"price_download": None, "price_compute": None}, "at least one tier"),
        ({"price_download": -5}, "positive"),
    ],
)
def test_a_listing_with_bad_fields_is_refused(alice, kwargs, message):
    fields = {"title": "T", "terms_preset": "open", "price_download": 100, **kwargs}
    with pytest.raises(DomainError, match=message):
        services.dataset_create(owner=alice, **fields)
    assert not Dataset.objects.exists()


def test_uploads_of_other_formats_or_by_others_are_refused(listing, alice, bob, settings):
    with pytest.raises(DomainError, match="csv"):
        services.dataset_version_upload(
            dataset=listing, actor=alice, upload=SimpleUploadedFile("x.xlsx", b"PK")
        )
    with pytest.raises(PermissionDenied):
        services.dataset_version_upload(dataset=listing, actor=bob, upload=SimpleUploadedFile("x.csv", CSV))
    settings.UPLOAD_MAX_BYTES = 10
    with pytest.raises(DomainError, match="larger than the limit"):
        services.dataset_version_upload(
            dataset=listing, actor=alice, upload=SimpleUploadedFile("big.csv", CSV)
        )
    assert listing.versions.count() == 1
    from django.core.files.storage import default_storage

    assert not default_storage.exists(f"datasets/{listing.pk}/big.csv"), "no partial file is left behind"


def test_browsing_costs_the_same_queries_for_many_listings(alice, client, django_assert_max_num_queries):
    from tests.conftest import api_as

    for i in range(30):
        dataset = services.dataset_create(
            owner=alice, title=f"Set {i}", terms_preset="open", price_download=100 + i
        )
        Dataset.objects.filter(pk=dataset.pk).update(status="published")
    api = api_as(alice)
    with django_assert_max_num_queries(4):
        page = api.get("/api/data/datasets/?limit=25").json()
    assert page["count"] == 30 and len(page["results"]) == 25
    assert api.get("/api/data/datasets/?q=Set 2&price_max=110").json()["count"] == 1
    assert api.get("/api/data/datasets/?price_max=-1").status_code == 400


def test_a_deactivated_owner_sells_nothing(listing, alice, bob):
    fund(f"user:{bob.pk}", 50_000)
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    entries = Entry.objects.count()
    with pytest.raises(Conflict, match="not on sale"):
        services.license_purchase(buyer=bob, dataset=listing, tier="download")
    assert Entry.objects.count() == entries and balance(f"user:{bob.pk}") == 50_000
