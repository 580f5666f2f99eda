"""Parallel requests through a live server on PostgreSQL: metered calls never overdraw, whatever else the caller
spends meanwhile, and every successful call is one receipt, settled once; lost races on tokens are 409s."""

import http.client
import json
import threading
from urllib.parse import urlparse

import pytest
from django.core.management import call_command
from django.db import connection

from ledger.models import Account, Entry
from models_market import services
from models_market.models import CallMeter, ModelLicense, ModelToken, Receipt, Settlement
from platform_site.accounts.services import api_token_create
from tests.factories import UserFactory
from tests.ledger.helpers import fund
from tests.models_market.helpers import (
    ROW,
    balance,
    dataset_version,
    listed,
    make_version,
    meter_mirrors_the_ledger,
    mint,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL (CI runs it)"),
]
JSON = {"Content-Type": "application/json"}


def token_for(user) -> str:
    return api_token_create(user=user, name="race")[1]


def in_parallel(live_server, requests: list[tuple[str, str, str, dict]]) -> list[tuple[int, dict]]:
    """(method, path, API token, JSON body) requests released together; their statuses and answers, in order."""
    url = urlparse(live_server.url)
    barrier = threading.Barrier(len(requests))
    results: list[tuple[int, dict] | None] = [None] * len(requests)

    def one(i: int, method: str, path: str, token: str, body: dict) -> None:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
        conn.connect()  # before the barrier: the live server's listen backlog is short
        barrier.wait()
        conn.request(method, path, body=json.dumps(body), headers={"Authorization": f"Token {token}", **JSON})
        response = conn.getresponse()
        results[i] = (response.status, json.loads(response.read() or b"{}"))
        conn.close()

    threads = [threading.Thread(target=one, args=(i, *r)) for i, r in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r is not None for r in results), "every request was answered"
    return results


def settle_in_parallel(workers: int, limit: int) -> None:
    """Settlement by several workers at once, each until nothing is left."""

    def work() -> None:
        try:
            while services.settle_pending(limit=limit) is not None:
                pass
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.mark.parametrize("chunk", [1, 250])
def test_parallel_calls_with_funds_for_some_never_overdraw_and_all_settle_once(
    live_server, alice, bob, carol, dora, settings, chunk
):
    settings.MODELS_DEPOSIT_CHUNK = chunk
    parent = make_version(carol, name="Parent")
    mint(parent)
    token = listed(alice, lineage_bp=2_000, parents=(parent,), trained_on=dataset_version(dora),
                   price_perpetual=1_000, price_per_call=100)  # fmt: skip
    fund(f"user:{bob.pk}", 1_000 + 1_000)  # the licence, then ten calls' worth
    services.license_purchase(buyer=bob, token=token, kind="perpetual")
    key = token_for(bob)
    predict = ("POST", f"/api/models/versions/{token.version_id}/predict/", key, {"rows": [ROW]})
    # Twenty calls and, among them, three transfers of 100 elsewhere: bob's other spending.
    spend = ("POST", "/api/ledger/transfers/", key, {"destination": f"user:{carol.pk}", "amount": 100})
    results = in_parallel(live_server, [predict] * 20 + [spend] * 3)
    calls, transfers = results[:20], results[20:]
    assert {s for s, _ in calls} <= {200, 402}, calls
    assert {s for s, _ in transfers} <= {201, 400}, transfers
    ok = [answer for status, answer in calls if status == 200]
    sent = sum(1 for status, _ in transfers if status == 201)
    assert len(ok) + sent == 10, "every minor unit bob had was spent, and no more"
    assert all(a["detail"].startswith("your balance is") for s, a in calls if s == 402)
    assert Receipt.objects.count() == len(ok)
    assert sorted(a["receipt"]["id"] for a in ok) == sorted(Receipt.objects.values_list("pk", flat=True))
    assert not Account.objects.filter(balance__lt=0).exclude(name="issuance").exists()
    assert balance(bob) + balance(f"deposit:{bob.pk}") == 1_000 - 100 * sent
    assert CallMeter.objects.get(user=bob).reserved == 100 * len(ok)
    assert meter_mirrors_the_ledger(bob)

    settle_in_parallel(workers=3, limit=3)
    assert sum(Settlement.objects.values_list("calls", flat=True)) == len(ok)
    assert not Receipt.objects.filter(settlement__isnull=True).exists()
    assert CallMeter.objects.get(user=bob).reserved == 0
    assert balance(bob) + balance(f"deposit:{bob.pk}") == 0
    assert meter_mirrors_the_ledger(bob)
    # Each call of 100: fee 2; lineage 20% of 98 = 19 (10 to carol's model, 9 to dora's data); alice 79.
    n = len(ok)
    assert (balance("treasury"), balance(dora)) == (25 + 2 * n, 97 + 9 * n)  # licence shares, then calls
    assert balance(carol) == 98 + 10 * n + 100 * sent
    assert ModelLicense.objects.get(holder=bob).calls_made == n
    call_command("verify_ledger", "--quiet")


def test_parallel_calls_on_the_last_quota_calls_get_exactly_as_many(live_server, alice, bob):
    token = listed(alice, price_quota=500, quota_calls=7)
    fund(f"user:{bob.pk}", 500)
    services.license_purchase(buyer=bob, token=token, kind="quota")
    predict = ("POST", f"/api/models/versions/{token.version_id}/predict/", token_for(bob), {"rows": [ROW]})
    statuses = sorted(s for s, _ in in_parallel(live_server, [predict] * 20))
    assert statuses == [200] * 7 + [403] * 13
    assert ModelLicense.objects.get(holder=bob).calls_left == 0
    assert Receipt.objects.count() == 7


def test_parallel_buyers_of_one_token_get_one_sale_and_409s(live_server, alice):
    token = mint(make_version(alice), royalty_bp=1_000)
    services.token_offer_set(token=token, actor=alice, sale_price=5_000)
    buyers = [UserFactory(username=f"buyer{i}") for i in range(10)]
    for buyer in buyers:
        fund(f"user:{buyer.pk}", 5_000)
    buy = [("POST", f"/api/models/tokens/{token.pk}/buy/", token_for(b), {"price": 5_000}) for b in buyers]
    statuses = sorted(s for s, _ in in_parallel(live_server, buy))
    assert statuses == [200] + [409] * 9, statuses
    assert Entry.objects.filter(kind="models_market.token.sold").count() == 1
    assert ModelToken.objects.get(pk=token.pk).owner in buyers
    assert balance(alice) == 5_000 - 125
    call_command("verify_ledger", "--quiet")


def test_parallel_transfers_by_owner_and_operator_move_the_token_once(live_server, alice, bob, carol):
    token = mint(make_version(alice))
    services.token_approve(token=token, actor=alice, operator=bob)
    moves = [("POST", f"/api/models/tokens/{token.pk}/transfer/", token_for(who), {"to": "carol"})
             for who in (alice, bob) * 5]  # fmt: skip
    statuses = [s for s, _ in in_parallel(live_server, moves)]
    assert statuses.count(200) == 1 and set(statuses) <= {200, 403, 409}, statuses
    assert Entry.objects.filter(kind="models_market.token.transferred").count() == 1
    assert ModelToken.objects.get(pk=token.pk).owner == carol
