"""Every paginated list answers absurd `limit`/`offset` values with a page, never a 500."""

import pytest
from django.db import transaction
from drf_spectacular.generators import SchemaGenerator

from ledger.services import mint
from platform_site.accounts.services import api_token_create, organization_create
from platform_site.jobs.services import job_submit
from platform_site.pagination import Pagination
from tests.conftest import api_as

ABSURD = [
    {"limit": str(10**20)},
    {"limit": "9" * 5000},  # longer than Python's int() accepts from a string
    {"limit": "-5"},
    {"limit": "0"},
    {"limit": "ten"},
    {"limit": "1e9"},
    {"offset": str(10**20)},
    {"offset": str(2**63)},
    {"offset": "-1"},
    {"offset": "x"},
    {"limit": str(2**64), "offset": str(2**64)},
]


def paginated_list_paths() -> list[str]:
    """Every GET operation without path parameters that takes `limit` (the schema lists each list endpoint)."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    paths = []
    for path, operations in schema["paths"].items():
        names = {p["name"] for p in operations.get("get", {}).get("parameters", [])}
        if "limit" in names and "{" not in path:
            paths.append(path)
    return sorted(paths)


def test_the_schema_offers_several_paginated_lists():
    expected = {"/api/jobs/", "/api/ledger/entries/", "/api/data/datasets/", "/api/accounts/tokens/"}
    assert expected <= set(paginated_list_paths())


@pytest.fixture
def alice_with_rows(alice):
    """A row in several lists: an empty list answers before any query reads `limit`."""
    api_token_create(user=alice, name="cli")
    organization_create(owner=alice, name="Alice's lab")
    job_submit(owner=alice, kind="ml.selftest", params={})
    with transaction.atomic():  # mint requires the caller's transaction
        mint(destination=f"user:{alice.pk}", amount=100, actor="system", reason="test")
    return alice


@pytest.mark.django_db
@pytest.mark.parametrize("params", ABSURD, ids=lambda p: ",".join(f"{k}={v[:12]}" for k, v in p.items()))
def test_absurd_limits_and_offsets_get_a_page_on_every_list(alice_with_rows, params):
    client = api_as(alice_with_rows)
    for path in paginated_list_paths():
        response = client.get(path, params)
        assert response.status_code == 200, (path, params, response.status_code)
        body = response.json()
        assert set(body) >= {"count", "results"}, path
        assert len(body["results"]) <= Pagination.max_limit


@pytest.mark.django_db
def test_a_limit_above_the_maximum_is_clamped_to_it(alice):
    for index in range(Pagination.max_limit + 5):
        api_token_create(user=alice, name=f"t{index}")
    client = api_as(alice)
    body = client.get("/api/accounts/tokens/", {"limit": str(10**20)}).json()
    assert body["count"] == Pagination.max_limit + 5
    assert len(body["results"]) == Pagination.max_limit
    assert "offset=200" in body["next"]
    body = client.get("/api/accounts/tokens/", {"limit": "3", "offset": "2"}).json()
    assert len(body["results"]) == 3
