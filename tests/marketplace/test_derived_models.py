"""The derived-models term: who may train models from a dataset, and whether privately."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from ledger.models import Entry
from marketplace import selectors, services
from marketplace.models import Dataset, DatasetVersion
from platform_site.errors import PermissionDenied
from platform_site.jobs.services import job_execute
from tests.conftest import api_as
from tests.factories import UserFactory
from tests.ledger.helpers import fund

pytestmark = pytest.mark.django_db

CSV = b"x,y\n" + b"".join(f"{i},{i % 2}\n".encode() for i in range(40))


def published(owner, preset: str, **overrides) -> DatasetVersion:
    dataset = services.dataset_create(
        owner=owner, title="Points", terms_preset=preset, price_download=1_000, price_compute=500,
        terms_overrides=overrides,
    )  # fmt: skip
    version = services.dataset_version_upload(
        dataset=dataset, actor=owner, upload=SimpleUploadedFile("p.csv", CSV)
    )
    job_execute(job_id=version.stats_job_id, worker="test")
    services.dataset_publish(dataset=dataset, actor=owner)
    version.refresh_from_db()
    return version


def buy(user, version: DatasetVersion, tier: str) -> None:
    fund(f"user:{user.pk}", 5_000)
    services.license_purchase(buyer=user, dataset=version.dataset, tier=tier)


def test_the_presets_say_whether_models_may_be_trained_and_research_forbids_it():
    assert {name: terms["derived_models"] for name, terms in services.TERM_PRESETS.items()} == {
        "research": False,
        "commercial": True,
        "open": True,
    }


def test_the_owner_may_always_train_exactly(alice):
    version = published(alice, "research")
    assert selectors.may_train(alice, version) == (True, False, None)


def test_a_download_licensee_trains_exactly_a_compute_licensee_privately(alice, bob):
    version = published(alice, "commercial")
    carol = UserFactory(username="carol")
    buy(bob, version, "download")
    buy(carol, version, "compute")
    allowed, private, licence = selectors.may_train(bob, version)
    assert (allowed, private, licence.tier) == (True, False, "download")
    allowed, private, licence = selectors.may_train(carol, version)
    assert (allowed, private, licence.tier) == (True, True, "compute")


def test_terms_that_forbid_derived_models_or_lack_the_key_refuse_licensees(alice, bob, mallory):
    research = published(alice, "research")
    buy(bob, research, "download")
    rights = selectors.train_rights(user=bob, version=research)
    assert not rights.allowed and "do not allow training models" in rights.reason
    assert not selectors.may_train(mallory, research)[0]
    assert (
        "needs ownership or a valid licence" in selectors.train_rights(user=mallory, version=research).reason
    )

    old = published(alice, "open")
    # A listing (and licence) from before the term existed: its terms lack the key.
    terms = {k: v for k, v in old.dataset.terms.items() if k != "derived_models"}
    Dataset.objects.filter(pk=old.dataset_id).update(terms=terms)
    old.dataset.refresh_from_db()
    buy(mallory, old, "download")
    assert selectors.may_train(mallory, old)[0] is False


def test_the_owner_may_allow_derived_models_later_and_it_is_ledgered(alice, bob):
    version = published(alice, "research")
    buy(bob, version, "compute")
    assert selectors.may_train(bob, version)[0] is False
    with pytest.raises(PermissionDenied):
        services.dataset_derived_models_set(dataset=version.dataset, actor=bob, allowed=True)
    response = api_as(alice).patch(
        f"/api/data/datasets/{version.dataset_id}/", {"derived_models": True}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["terms"]["derived_models"] is True
    version.dataset.refresh_from_db()
    assert selectors.may_train(bob, version)[:2] == (True, True)
    entry = Entry.objects.get(kind="marketplace.terms.changed")
    assert entry.payload["derived_models"] is True
    # Bob's licence was sold under terms that forbid derived models: only the listing's permission allowed
    # them, so narrowing the listing again withdraws it (a licence sold with them keeps them, below).
    services.dataset_derived_models_set(dataset=version.dataset, actor=alice, allowed=False)
    version.dataset.refresh_from_db()
    assert selectors.may_train(bob, version)[0] is False
    call_command("verify_ledger", "--quiet")


def test_a_licence_sold_with_derived_models_keeps_them_when_the_listing_narrows(alice, bob):
    version = published(alice, "commercial")
    buy(bob, version, "download")
    services.dataset_derived_models_set(dataset=version.dataset, actor=alice, allowed=False)
    version.dataset.refresh_from_db()
    assert selectors.may_train(bob, version)[:2] == (True, False)


def test_a_listing_can_be_created_with_the_term_overridden_through_the_api(alice):
    created = api_as(alice).post(
        "/api/data/datasets/",
        {"title": "T", "terms_preset": "research", "price_download": 100, "derived_models": True},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["terms"]["derived_models"] is True
    bad = api_as(alice).post(
        "/api/data/datasets/",
        {"title": "T", "terms_preset": "research", "price_download": 100, "derived_models": "perhaps"},
        format="json",
    )
    assert bad.status_code == 400


def test_the_listing_page_says_whether_models_may_be_trained_from_the_data(alice, bob, client):
    research, commercial = published(alice, "research"), published(alice, "commercial")
    client.force_login(bob)
    page = client.get(f"/data/{research.dataset_id}/").content.decode()
    assert "<dt>Models trained from it</dt><dd>not allowed</dd>" in page
    page = client.get(f"/data/{commercial.dataset_id}/").content.decode()
    assert "<dt>Models trained from it</dt><dd>allowed</dd>" in page
