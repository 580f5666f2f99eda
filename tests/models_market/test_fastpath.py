"""Predict calls by API token answered ahead of Django (models_market/fastpath.py), on PostgreSQL: the API's own
answers, every right checked again on every call even when this process read the rows a moment ago (a token
revoked, a licence expired, a model transferred, a better licence bought, all elsewhere), and parallel calls
that never overdraw."""

import asyncio
import hashlib
import json
import threading
import time
from datetime import timedelta

import pytest
import rfc8785
from django.core.cache import cache
from django.db import connection, connections, transaction
from django.test import Client
from django.utils import timezone

from ledger import chain
from ledger import services as ledger_services
from ledger.models import Account, Entry, SigningKey
from models_market import selectors, services, tasks
from models_market.fastpath import PredictFastPath, _parse
from models_market.models import CallMeter, ModelLicense, ModelToken, Receipt, Settlement
from models_market.services import admission, metering
from platform_site.accounts import services as accounts
from platform_site.accounts.models import ApiToken
from platform_site.streaming import StreamingASGIHandler
from tests.factories import UserFactory
from tests.ledger.helpers import fund
from tests.models_market.helpers import ROW, balance, group_call, listed, meter_mirrors_the_ledger

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the fast path serves PostgreSQL only"),
]
PRICE = 40


@pytest.fixture(autouse=True)
def _cold_caches():
    selectors._recent_versions.clear()
    metering._license_hints.clear()
    accounts._recent_tokens.clear()
    cache.clear()  # the throttles' history
    yield
    selectors._recent_versions.clear()
    metering._license_hints.clear()
    accounts._recent_tokens.clear()


class Spy:
    """Django's ASGI handler, counting the requests that reach it."""

    def __init__(self) -> None:
        self.django, self.calls = StreamingASGIHandler(), 0

    async def __call__(self, scope, receive, send):
        self.calls += 1
        return await self.django(scope, receive, send)


@pytest.fixture
def app(settings):
    settings.MODELS_PREDICT_THREADS = 4
    fast = PredictFastPath(Spy())
    assert fast.enabled
    yield fast
    fast.close()


async def _request(app, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-length", str(len(body)).encode()),
                    *((k.lower().encode(), v.encode()) for k, v in headers.items())],
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }  # fmt: skip
    answered, sent_body, messages = asyncio.Event(), False, []

    async def receive():
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            answered.set()

    await app(scope, receive, send)
    headers_out = {k.decode().lower(): v.decode() for k, v in messages[0]["headers"]}
    return messages[0]["status"], headers_out, b"".join(m.get("body", b"") for m in messages[1:])


def post(app, version_id: int, key: str | None, body, content_type: str = "application/json", **headers):
    """POST a predict call through `app`: (status, answer as JSON, headers)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": content_type, **headers}
    if key:
        headers["Authorization"] = f"Token {key}"
    status, headers_out, content = asyncio.run(
        _request(app, f"/api/models/versions/{version_id}/predict/", raw, headers)
    )
    return status, json.loads(content or b"{}"), headers_out


def key_for(user) -> str:
    return accounts.api_token_create(user=user, name="script")[1]


@pytest.fixture
def token(alice):
    return listed(alice, price_perpetual=1_000, price_timed=500, timed_days=1, price_quota=300, quota_calls=2,
                  price_per_call=PRICE)  # fmt: skip


@pytest.fixture
def licensed(token, bob):
    fund(f"user:{bob.pk}", 1_000 + 2_000)
    services.license_purchase(buyer=bob, token=token, kind="perpetual")
    return token


def test_a_licensed_call_is_answered_ahead_of_django_with_a_stored_signed_receipt(app, licensed, bob):
    key = key_for(bob)
    status, answer, headers = post(app, licensed.version_id, key, {"rows": [ROW, ROW]})
    assert status == 200 and app.app.calls == 0
    receipt = Receipt.objects.get()
    assert answer["receipt"] == {"id": receipt.pk, "body": receipt.body, "key_id": receipt.key_id,
                                 "signature": receipt.signature, "group": None, "settled": False,
                                 "proof": None}  # fmt: skip
    assert (receipt.price, receipt.rows, receipt.caller_id) == (PRICE, 2, bob.pk)
    # Format 2: the input is the body as sent.
    sent = json.dumps({"rows": [ROW, ROW]}).encode()
    assert (receipt.body["format"], receipt.input_sha256) == (2, hashlib.sha256(sent).hexdigest())
    assert receipt.output_sha256 == hashlib.sha256(rfc8785.dumps(answer["predictions"])).hexdigest()
    key_row = SigningKey.objects.get(key_id=receipt.key_id)
    assert chain.verify_signature(
        bytes(key_row.public_key), bytes.fromhex(receipt.signature), chain.jcs(receipt.body)
    )
    # The same predictions, and the same headers, as the API through Django answers with.
    status, through_django, django_headers = post(app.app, licensed.version_id, key, {"rows": [ROW, ROW]})
    assert status == 200 and through_django["predictions"] == answer["predictions"], through_django
    assert set(through_django["receipt"]) == set(answer["receipt"])
    assert {k: v for k, v in headers.items() if k != "content-length"} == {
        k: v for k, v in django_headers.items() if k != "content-length"
    }
    assert CallMeter.objects.get(user=bob).reserved == 2 * PRICE
    assert meter_mirrors_the_ledger(bob)


def test_refusals_are_the_apis_own_answers(app, token, bob, mallory, settings):
    fund(f"user:{bob.pk}", 1_000)  # the licence, and nothing for calls
    services.license_purchase(buyer=bob, token=token, kind="perpetual")
    bob_key, mallory_key = key_for(bob), key_for(mallory)
    cases = [
        (token.version_id, bob_key, {"rows": [{"age": 1, "income": 2, "height": 3}]}, 400, "missing column"),
        (token.version_id, bob_key, {"rows": [{**ROW, "age": 2**60}]}, 400, "2**53"),
        (token.version_id, bob_key, {"rows": [{**ROW, "age": -(10**30)}]}, 400, "2**53"),  # beyond 64 bits
        (token.version_id, bob_key, {"row": [ROW]}, 400, 'send {"rows"'),
        (token.version_id, mallory_key, {"rows": [ROW]}, 403, "needs a licence"),
        (token.version_id, bob_key, {"rows": [ROW]}, 402, "your balance is 0.00 tokens"),
        (token.version_id + 1000, bob_key, {"rows": [ROW]}, 404, "no such model version"),
    ]
    for version_id, key, body, status, words in cases:
        fast = post(app, version_id, key, body)
        assert fast[:2] == post(app.app, version_id, key, body)[:2], body
        assert fast[0] == status and words in fast[1]["detail"], fast
    assert app.app.calls == len(cases)  # only the comparisons reached Django
    assert not Receipt.objects.exists()


def test_what_it_does_not_answer_goes_to_django_unchanged(app, licensed, bob, settings):
    key = key_for(bob)
    # A CSV body, a bad key, JSON that does not parse: Django's answers.
    csv_body = ("age,income,visits\n" + ",".join(str(ROW[c]) for c in ("age", "income", "visits"))).encode()
    assert post(app, licensed.version_id, key, csv_body, content_type="text/csv")[0] == 200
    assert post(app, licensed.version_id, "0123456789ab.wrong", {"rows": [ROW]})[:2] == (
        401, {"detail": "invalid, revoked or expired token"},
    )  # fmt: skip
    assert post(app, licensed.version_id, key, b'{"rows": [NaN]}')[0] == 400
    assert app.app.calls == 3
    # A session's POST still needs its CSRF token.
    browser = Client()
    browser.force_login(bob)
    status, answer, _ = post(app, licensed.version_id, None, {"rows": [ROW]},
                             Cookie=f"sessionid={browser.cookies['sessionid'].value}")  # fmt: skip
    assert status == 403 and "CSRF" in answer["detail"]
    # Over the predict limit: Django says 429, as before.
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "models_predict": "2/minute"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    cache.clear()
    answers = [post(app, licensed.version_id, key, {"rows": [ROW]}) for _ in range(3)]
    assert [a[0] for a in answers] == [200, 200, 429]
    assert "throttled" in answers[2][1]["detail"] and answers[2][2]["retry-after"]
    assert Receipt.objects.count() == 1 + 2  # the CSV call's and the two admitted


def test_a_token_revoked_elsewhere_is_refused_at_once(app, licensed, bob):
    key = key_for(bob)
    assert post(app, licensed.version_id, key, {"rows": [ROW]})[0] == 200
    # Revoked by another process: this one accepted the key a moment ago and was not told.
    ApiToken.objects.filter(user=bob).update(revoked_at=timezone.now())
    assert post(app, licensed.version_id, key, {"rows": [ROW]})[:2] == (
        401, {"detail": "invalid, revoked or expired token"},
    )  # fmt: skip
    assert Receipt.objects.count() == 1
    # Revoked here: forgotten at once too.
    other, other_key = accounts.api_token_create(user=bob, name="other")
    assert post(app, licensed.version_id, other_key, {"rows": [ROW]})[0] == 200
    accounts.api_token_revoke(token=other, actor=bob)
    assert post(app, licensed.version_id, other_key, {"rows": [ROW]})[0] == 401
    assert Receipt.objects.count() == 2


def test_a_deactivated_caller_is_refused_at_once(app, licensed, bob):
    key = key_for(bob)
    assert post(app, licensed.version_id, key, {"rows": [ROW]})[0] == 200
    type(bob).objects.filter(pk=bob.pk).update(is_active=False)
    assert post(app, licensed.version_id, key, {"rows": [ROW]})[0] == 401
    assert Receipt.objects.count() == 1


def test_a_licence_expired_since_is_refused_at_once(app, token, bob):
    fund(f"user:{bob.pk}", 500 + 1_000)
    services.license_purchase(buyer=bob, token=token, kind="timed")
    key = key_for(bob)
    assert post(app, token.version_id, key, {"rows": [ROW]})[0] == 200
    ModelLicense.objects.filter(holder=bob).update(expires_at=timezone.now() - timedelta(seconds=1))
    status, answer, _ = post(app, token.version_id, key, {"rows": [ROW]})
    assert (status, answer["code"]) == (403, "permission_denied") and "expired" in answer["detail"]
    assert Receipt.objects.count() == 1


def test_a_model_transferred_elsewhere_is_no_longer_free_for_its_former_owner(app, token, alice):
    frank = UserFactory(username="frank")
    alice_key, frank_key = key_for(alice), key_for(frank)
    status, answer, _ = post(app, token.version_id, alice_key, {"rows": [ROW]})
    assert (status, answer["receipt"]) == (200, None)
    ModelToken.objects.filter(pk=token.pk).update(owner=frank)  # by another process
    status, answer, _ = post(app, token.version_id, alice_key, {"rows": [ROW]})
    assert status == 403 and "needs a licence" in answer["detail"]
    status, answer, _ = post(app, token.version_id, frank_key, {"rows": [ROW]})
    assert (status, answer["receipt"]) == (200, None)
    assert not Receipt.objects.exists()


def test_a_quota_licence_bought_elsewhere_is_spent_first_and_then_the_perpetual_one_again(app, licensed, bob):
    key = key_for(bob)
    assert post(app, licensed.version_id, key, {"rows": [ROW]})[1]["receipt"]["body"]["price"] == PRICE
    # A quota licence written by another process: this one's memory of bob's licence is not told.
    quota = ModelLicense.objects.create(version=licensed.version, holder=bob, kind="quota", price=300,
                                        calls_left=1, entry_seq=0)  # fmt: skip
    assert post(app, licensed.version_id, key, {"rows": [ROW]})[1]["receipt"]["body"]["price"] == 0
    quota.refresh_from_db()
    assert (quota.calls_left, quota.calls_made) == (0, 1)
    assert post(app, licensed.version_id, key, {"rows": [ROW]})[1]["receipt"]["body"]["price"] == PRICE
    assert list(Receipt.objects.order_by("pk").values_list("license_id", flat=True)) == [
        quota.pk - 1, quota.pk, quota.pk - 1,
    ]  # fmt: skip


def test_metering_off_checks_the_licence_and_writes_nothing(app, licensed, bob, mallory, settings):
    rows = {"rows": [ROW, {**ROW, "age": 0.1}]}
    metered = post(app, licensed.version_id, key_for(bob), rows)[1]
    reserved = CallMeter.objects.get(user=bob).reserved
    settings.MODELS_METERING = False
    status, answer, _ = post(app, licensed.version_id, key_for(bob), rows)
    assert (status, answer["receipt"]) == (200, None)
    assert answer["predictions"] == metered["predictions"]  # the same answer, without its receipt
    assert post(app, licensed.version_id, key_for(mallory), {"rows": [ROW]})[0] == 403
    assert Receipt.objects.count() == 1  # the metered call's
    assert CallMeter.objects.get(user=bob).reserved == reserved


@pytest.mark.parametrize("chunk", [1, 250])
def test_parallel_calls_with_funds_for_some_never_overdraw_and_settle_as_receipted(
    app, token, bob, settings, chunk
):
    settings.MODELS_DEPOSIT_CHUNK = chunk
    services.token_offer_set(token=token, actor=token.owner, price_per_call=100)
    fund(f"user:{bob.pk}", 1_000 + 1_000)  # the licence, then ten calls' worth
    services.license_purchase(buyer=bob, token=token, kind="perpetual")
    key = key_for(bob)
    body = json.dumps({"rows": [ROW]}).encode()
    path = f"/api/models/versions/{token.version_id}/predict/"
    headers = {"Content-Type": "application/json", "Authorization": f"Token {key}"}

    async def together():
        return await asyncio.gather(*(_request(app, path, body, headers) for _ in range(24)))

    results = asyncio.run(together())
    statuses = [status for status, _, _ in results]
    assert set(statuses) <= {200, 402} and statuses.count(200) == 10, statuses
    assert app.app.calls == 0
    ids = sorted(json.loads(content)["receipt"]["id"] for status, _, content in results if status == 200)
    assert ids == sorted(Receipt.objects.values_list("pk", flat=True))
    assert not Account.objects.filter(balance__lt=0).exclude(name="issuance").exists()
    assert CallMeter.objects.get(user=bob).reserved == 1_000
    assert meter_mirrors_the_ledger(bob)
    while services.settle_pending(limit=4) is not None:
        pass
    assert sum(Settlement.objects.values_list("calls", flat=True)) == 10 == Receipt.objects.count()
    assert balance(bob) + balance(f"deposit:{bob.pk}") == 0


def outcome(call) -> tuple[bool, bool, bool]:
    return call.caller_ok, call.admitted, call.written


def test_calls_that_find_the_deposit_short_are_written_by_their_statement_once_it_is_topped_up(
    app, token, bob, settings, monkeypatch
):
    settings.MODELS_DEPOSIT_CHUNK = 3 * PRICE
    fund(f"user:{bob.pk}", 1_000 + 7 * PRICE)  # the licence, then seven calls' worth
    services.license_purchase(buyer=bob, token=token, kind="perpetual")
    one_by_one, made_alone = [], metering._call
    monkeypatch.setattr(metering, "_call", lambda *args: one_by_one.append(args) or made_alone(*args))
    key = key_for(bob)
    statuses = [post(app, token.version_id, key, {"rows": [ROW]})[0] for _ in range(7)]
    assert statuses == [200] * 7
    status, answer, _ = post(app, token.version_id, key, {"rows": [ROW]})
    assert (status, answer["detail"]) == (402, "your balance is 0.00 tokens; this call costs 0.40 tokens")
    assert one_by_one == []  # not one call was made again alone
    top_ups = Entry.objects.filter(kind="models_market.deposit.topped_up").order_by("seq")
    assert [entry.payload["amount"] for entry in top_ups] == [3 * PRICE, 3 * PRICE, PRICE]
    assert Receipt.objects.count() == 7 and CallMeter.objects.get(user=bob).reserved == 7 * PRICE
    assert meter_mirrors_the_ledger(bob) and balance(bob) == 0


def _deposit(user, amount: int) -> None:
    """The user's call deposit as a top-up leaves it, holding `amount`."""
    with transaction.atomic():
        ledger_services.postings_post(
            kind="models_market.deposit.topped_up", actor=f"user:{user.pk}", payload={"amount": amount},
            postings=[{"account": f"user:{user.pk}", "amount": -amount},
                      {"account": f"deposit:{user.pk}", "amount": amount}],
        )  # fmt: skip
        CallMeter.objects.create(user=user, deposit=amount)


def test_a_group_writes_each_callers_calls_only_when_all_of_them_fit(token, alice, bob, carol, mallory):
    for user in (bob, carol):
        fund(f"user:{user.pk}", 1_000 + 2 * PRICE)
        services.license_purchase(buyer=user, token=token, kind="perpetual")
    _deposit(bob, 2 * PRICE)  # two calls' prices
    _deposit(carol, PRICE)  # one
    bob_licence, carol_licence = (ModelLicense.objects.get(holder=u) for u in (bob, carol))
    revoked, _ = accounts.api_token_create(user=bob, name="old")
    ApiToken.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    call = group_call
    group = [
        call(bob, token, bob_licence, price=PRICE), call(alice, token), call(bob, token, bob_licence, price=PRICE),
        call(carol, token, carol_licence, price=PRICE), call(carol, token, carol_licence, price=PRICE),
        call(mallory, token, bob_licence, price=PRICE), call(bob, token, api_token=revoked.pk),
    ]  # fmt: skip
    admission._write(group)
    assert [outcome(c) for c in group] == [
        (True, True, True),
        (True, True, False),
        (True, True, True),  # bob's two fit; alice's is free
        (True, True, False),
        (True, True, False),  # carol's deposit covers one of her two: neither is written
        (True, False, False),  # not mallory's licence
        (False, False, False),  # a revoked token
    ]
    assert sorted(Receipt.objects.values_list("pk", flat=True)) == sorted(
        [group[0].receipt.pk, group[2].receipt.pk]
    )
    assert (CallMeter.objects.get(user=bob).reserved, CallMeter.objects.get(user=carol).reserved) == (
        2 * PRICE,
        0,
    )


def test_a_group_of_one_callers_calls_that_falls_short_is_topped_up_for_all_of_them(token, bob, settings):
    settings.MODELS_DEPOSIT_CHUNK = 1  # less than the group's calls cost together: the group's total decides
    fund(f"user:{bob.pk}", 1_000 + 5 * PRICE)
    licence = services.license_purchase(buyer=bob, token=token, kind="perpetual")
    group = [group_call(bob, token, licence, price=PRICE) for _ in range(3)]
    admission._write(group)  # no deposit yet
    assert [c.written for c in group] == [False] * 3 and {c.group_price for c in group} == {3 * PRICE}
    for call in group:  # each of its threads, as metering does: the first tops up, the others find it covered
        metering._top_up(bob, PRICE, want=call.group_price)
    admission._write(group)  # made again together: every call written, none made again alone
    assert [c.written for c in group] == [True] * 3

    def top_ups() -> list[int]:
        entries = Entry.objects.filter(kind="models_market.deposit.topped_up").order_by("seq")
        return [entry.payload["amount"] for entry in entries]

    assert top_ups() == [3 * PRICE]
    # Four calls more where the balance holds two: topped up by what it holds, and no 402 while a call fits.
    group = [group_call(bob, token, licence, price=PRICE) for _ in range(4)]
    admission._write(group)
    metering._top_up(bob, PRICE, want=group[0].group_price)
    assert top_ups() == [3 * PRICE, 2 * PRICE]
    assert balance(bob) == 0 and meter_mirrors_the_ledger(bob)
    metering._top_up(bob, PRICE, want=group[0].group_price)  # covered: nothing more to move, no error
    assert top_ups() == [3 * PRICE, 2 * PRICE]


def test_a_group_that_postgresql_aborts_for_a_deadlock_is_written_again(token, bob, carol):
    """Another transaction (a settlement, another process's group) locks two callers' meters in one order while
    the group's statement takes them in the other: PostgreSQL aborts one of the two, and when it is the group's,
    the group is written again once the other is through, not answered with a 500."""
    licences = {}
    for user in (bob, carol):
        fund(f"user:{user.pk}", 1_000 + 4 * PRICE)
        licences[user] = services.license_purchase(buyer=user, token=token, kind="perpetual")
        _deposit(user, 4 * PRICE)
    meters = [CallMeter.objects.get(user=user).pk for user in (bob, carol)]
    deadlocks = 0
    for first, second in (meters, meters[::-1]):  # one of the two orders is the statement's own
        group = [group_call(user, token, licences[user], price=PRICE) for user in (bob, carol)]
        outcome, waited = _crossing_locks(first, second, lambda group=group: admission._write(group))
        assert outcome == [None] and [c.written for c in group] == [True, True]
        deadlocks += waited > 0.5  # the statement's deadlock_timeout is 1 s
    assert Receipt.objects.count() == 4
    assert {CallMeter.objects.get(user=u).reserved for u in (bob, carol)} == {2 * PRICE}
    assert deadlocks == 1  # in one order, PostgreSQL aborted the statement, which was made again


def test_a_settlement_that_postgresql_aborts_for_a_deadlock_settles_again(token, bob, carol):
    """The settlement locks the callers' meters in key order while another transaction (a group of calls) holds
    the later one and waits for the first: when PostgreSQL aborts the settlement, the task settles again."""
    for user in (bob, carol):
        fund(f"user:{user.pk}", 1_000 + PRICE)
        licence = services.license_purchase(buyer=user, token=token, kind="perpetual")
        _deposit(user, PRICE)
        admission._write([group_call(user, token, licence, price=PRICE)])
    low, high = sorted(CallMeter.objects.filter(user__in=(bob, carol)).values_list("pk", flat=True))
    outcome, waited = _crossing_locks(high, low, tasks.settle_calls, waiting="%models_market_callmeter%")
    assert waited > 0.5  # the settlement held `low`: PostgreSQL aborted it after its deadlock_timeout (1 s)
    assert outcome == [2]
    assert Settlement.objects.get().calls == 2 and not CallMeter.objects.filter(reserved__gt=0).exists()


def _crossing_locks(
    first: int, second: int, run, *, waiting: str = "%json_to_recordset%"
) -> tuple[list, float]:
    """Lock the meter row `first` in a transaction of another connection, start `run` on a thread and wait until
    its statement (`waiting`, a LIKE pattern) waits for a lock, then lock `second`: a deadlock when `run` holds
    it, in which PostgreSQL aborts `run`'s statement (this transaction waits 30 s before it would look). What
    `run` returned or raised, and how long locking `second` took."""
    outcome: list = []

    def target():
        try:
            outcome.append(run())
        except BaseException as exc:
            outcome.append(exc)
        finally:
            connection.close()

    other = connections.create_connection("default")
    other.set_autocommit(False)
    try:
        with other.cursor() as cursor:
            cursor.execute("SET deadlock_timeout = '30s'")
            locking = "SELECT 1 FROM models_market_callmeter WHERE id = %s FOR UPDATE"
            cursor.execute(locking, [first])
            thread = threading.Thread(target=target)
            thread.start()
            _wait_for_a_lock_wait(waiting)
            began = time.monotonic()
            cursor.execute(locking, [second])
            waited = time.monotonic() - began
            other.rollback()
        thread.join(timeout=30)
    finally:
        other.close()
    return outcome, waited


def _wait_for_a_lock_wait(query: str = "%json_to_recordset%") -> None:
    for _ in range(300):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                [query],
            )
            if cursor.fetchone()[0]:
                return
        time.sleep(0.01)
    raise AssertionError("the group's statement never waited for the meter's lock")


def test_a_group_spends_a_quota_only_when_it_has_every_call_left(token, bob):
    fund(f"user:{bob.pk}", 300)
    quota = services.license_purchase(buyer=bob, token=token, kind="quota")  # two calls
    group = [group_call(bob, token, quota) for _ in range(3)]
    admission._write(group)
    assert [c.written for c in group] == [False] * 3
    group = group[:2]
    admission._write(group)
    assert [c.written for c in group] == [True, True]
    quota.refresh_from_db()
    assert (quota.calls_left, quota.calls_made, Receipt.objects.count()) == (0, 2, 2)


def _synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


@pytest.mark.parametrize("async_commit", [True, False])
def test_only_the_calls_statement_commits_without_waiting_for_the_disk(
    licensed, bob, settings, monkeypatch, async_commit
):
    settings.MODELS_CALLS_ASYNC_COMMIT = async_commit
    server = _synchronous_commit()
    assert server != "off"  # else there is nothing to tell apart
    # What each ledger entry's transaction commits with, read inside it (a deposit top-up, a settlement).
    seen, post = [], ledger_services.postings_post

    def postings_post(**kwargs):
        seen.append((kwargs["kind"], _synchronous_commit()))
        return post(**kwargs)

    monkeypatch.setattr(ledger_services, "postings_post", postings_post)
    # bob's first call finds no deposit: the statement writes nothing and the call is made again in the
    # services' transaction, which tops the deposit up by a ledger entry.
    services.predict_call(user=bob, version=licensed.version, rows=[ROW])
    # A call that the deposit covers: written by the statement alone, read inside its transaction.
    call = group_call(bob, licensed, ModelLicense.objects.get(holder=bob), price=PRICE)
    with transaction.atomic():
        admission._write([call])
        in_statement = _synchronous_commit()
    assert call.written
    assert in_statement == ("off" if async_commit else server)
    assert _synchronous_commit() == server  # the connection's next transaction waits for the disk again
    services.settle_pending(limit=10)
    assert seen == [("models_market.deposit.topped_up", server), ("models_market.calls.settled", server)]
    assert Receipt.objects.filter(settlement__isnull=False).count() == 2


def test_receipt_numbers_rise_across_a_call_made_again_in_the_services_transaction(licensed, bob):
    before = metering._receipt_number()  # a block drawn ahead
    # bob has no deposit yet: the statement writes nothing, and the call is made again in the services' own
    # transaction (with a top-up), which takes a number of its own.
    _, receipt = services.predict_call(user=bob, version=licensed.version, rows=[ROW])
    after = metering._receipt_number()
    assert before < receipt.pk < after


@pytest.mark.parametrize(
    "body",
    [b'{"rows": [{"a": 0.00020164295512421895, "b": -3}]}', b'{"rows": [{"a": -100000000000000000000}]}',
     b'{"rows": [{"a": 18446744073709551615, "b": 1e30}]}', b'{"rows": [{"a": null, "b": "red"}]}',
     b'{"rows": [{"a": "\\ud800"}]}', b'{"rows": [3]}', b'{"row": []}', b'[1, 2]'],
)  # fmt: skip
def test_the_fast_path_reads_a_body_as_the_json_module_does(body):
    parsed = _parse(body)
    assert parsed == json.loads(body) and repr(parsed) == repr(json.loads(body))
