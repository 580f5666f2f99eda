"""A party's client waiting for the next round: the state look held by `federation.waiting` until a round after the
one it is done with opens, over the live server (uvicorn) and the real channel layer; and the layer itself,
in-process, where there is no shared layer to push (the embedded default asks again every poll interval)."""

import asyncio
import json
import threading
import urllib.error
import urllib.request

import pytest

from federation.waiting import FederationStateWait
from platform_site.accounts.services import api_token_create
from platform_site.jobs.services import job_execute
from tests.factories import UserFactory
from tests.federation.helpers import admitted, create, keyed, small_delta, submit

from .test_api import api_as


def look(url: str, token: str, *, timeout: float = 30) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310  (loopback)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.django_db(transaction=True)
def test_a_held_look_is_answered_when_the_next_round_opens_and_the_server_answers_others_meanwhile(
    asgi_server, alice, bob, carol
):
    federation = create(alice, rounds=3)
    b, c = admitted(federation, [keyed(bob), keyed(carol)])
    _, token = api_token_create(user=bob, name="fl")
    _, other = api_token_create(user=carol, name="fl")
    url = f"{asgi_server}/api/federations/{federation.pk}/state/"
    held: dict = {}
    # Held up to 60 s, read with a 30 s timeout: only the round's opening can answer it in time.
    waiter = threading.Thread(target=lambda: held.update(answer=look(f"{url}?after=1&wait=60", token)))
    waiter.start()
    submit(federation, 1, b, small_delta(federation, seed=1))  # pushes that wake no party
    status, state = look(url, other, timeout=10)  # Django's thread is free while bob's look is held
    assert status == 200 and state["current_round"]["number"] == 1
    submit(
        federation, 1, c, small_delta(federation, seed=2)
    )  # the last update: the round goes to aggregation
    rnd = federation.round_set.get(number=1)
    assert rnd.status == "aggregating"
    job_execute(job_id=rnd.job_id, worker="test")  # opens round 2
    waiter.join(35)
    status, state = held["answer"]
    assert status == 200
    assert state["current_round"]["number"] == 2 and state["current_round"]["status"] == "open"
    assert state["closed_round"]["number"] == 1 and "accuracy" in state["closed_round"]["metrics"]
    assert state["me"]["status"] == "admitted"


@pytest.mark.django_db(transaction=True)
def test_a_held_look_with_nothing_new_is_answered_as_it_is_and_refusals_are_not_held(asgi_server, alice, bob):
    federation = create(alice, min_parties=1)
    admitted(federation, [keyed(bob)])
    _, token = api_token_create(user=bob, name="fl")
    url = f"{asgi_server}/api/federations/{federation.pk}/state/"
    status, state = look(f"{url}?after=0&wait=60", token, timeout=10)  # round 1 is after 0: at once
    assert status == 200 and state["current_round"]["number"] == 1
    status, state = look(f"{url}?after=1&wait=1", token)  # nothing new within the second
    assert status == 200 and state["current_round"] == {
        **state["current_round"],
        "number": 1,
        "status": "open",
    }
    status, _ = look(f"{url}?after=1&wait=60", "not-a-token", timeout=10)
    assert status == 401
    status, _ = look(f"{asgi_server}/api/federations/999999/state/?after=1&wait=60", token, timeout=10)
    assert status == 404


@pytest.mark.django_db
def test_the_wait_and_after_are_checked(alice, bob):
    federation = create(alice, min_parties=1)
    admitted(federation, [keyed(bob)])
    url = f"/api/federations/{federation.pk}/state/"
    for query in (
        "wait=61&after=1",
        "wait=-1&after=1",
        "after=-1&wait=5",
        "wait=soon&after=1",
        "after=2147483648",
        "wait=nan&after=1",
        "wait=inf&after=1",
    ):
        response = api_as(bob).get(f"{url}?{query}")
        assert response.status_code == 400, query
        assert set(response.json()) & {"wait", "after"}
    assert api_as(bob).get(f"{url}?after=1&wait=60").status_code == 200  # Django alone answers at once


# ---- the layer in-process, without a shared channel layer (asked again every poll interval)


def _scope(query: str) -> dict:
    return {
        "type": "http",
        "method": "GET",
        "path": "/api/federations/7/state/",
        "query_string": query.encode(),
    }


class _App:
    """Django's stand-in: the state it answers, how often it was asked."""

    def __init__(self, state: dict, status: int = 200) -> None:
        self.state, self.status, self.asked = state, status, 0

    async def __call__(self, scope, receive, send) -> None:
        self.asked += 1
        assert (await receive())["type"] == "http.request"
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": json.dumps(self.state).encode()})


def _state(number: int, status: str = "running", me: str = "admitted", round_status: str = "open") -> dict:
    return {
        "status": status,
        "current_round": {"number": number, "status": round_status},
        "me": {"status": me},
    }


def _run(
    app, scope, *, disconnect_after: float | None = None, changes: list[tuple[float, dict]] = ()
) -> list[dict]:
    """What the layer sends for one request, while `changes` (after each pause, Django's stand-in answers that
    state) play out; the client disconnects after `disconnect_after` seconds, or never."""
    sent: list[dict] = []
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        if messages:
            return messages.pop()
        if disconnect_after is None:
            await asyncio.Event().wait()
        await asyncio.sleep(disconnect_after)
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    async def play() -> None:
        for pause, state in changes:
            await asyncio.sleep(pause)
            app.state = state

    async def both() -> None:
        await asyncio.gather(FederationStateWait(app)(scope, receive, send), play())

    asyncio.run(both())
    return sent


@pytest.fixture
def polling(settings):
    settings.REALTIME_POLL = True
    settings.REALTIME_POLL_SECONDS = 0.02


def test_without_a_shared_layer_the_look_is_asked_again_until_the_round_opens(polling):
    app = _App(_state(3, round_status="aggregating"))
    # The round closing is not news (the same round, the same party); the next one is.
    changes = [(0.1, _state(3, round_status="closed")), (0.1, _state(4))]
    sent = _run(app, _scope("after=3&wait=30"), changes=changes)
    assert json.loads(sent[1]["body"])["current_round"]["number"] == 4
    assert app.asked > 2


@pytest.mark.parametrize(
    "changed",
    [_state(3, me="removed"), _state(3, status="finished"), _state(3, status="failed")],
    ids=["party removed", "finished", "failed"],
)
def test_the_end_or_a_party_change_answers_a_held_look(polling, changed):
    sent = _run(_App(_state(3)), _scope("after=3&wait=30"), changes=[(0.05, changed)])
    assert json.loads(sent[1]["body"]) == changed


def test_errors_and_unheld_looks_pass_through_and_a_gone_client_gets_nothing(polling):
    refused = _App({"detail": "no"}, status=404)
    assert _run(refused, _scope("after=3&wait=30"))[0]["status"] == 404 and refused.asked == 1
    plain = _App(_state(3))
    for query in ("", "after=3", "wait=30", "after=3&wait=0", "after=3&wait=61", "after=x&wait=5"):
        plain.asked = 0
        sent = _run(plain, _scope(query))  # answered by Django (the stand-in) once, whatever it says
        assert plain.asked == 1 and sent[0]["status"] == 200, query
    waiting = _App(_state(3))
    assert _run(waiting, _scope("after=3&wait=30"), disconnect_after=0.1) == []


@pytest.mark.django_db
def test_the_state_look_has_the_last_aggregated_round(alice):
    federation = create(alice, min_parties=1, rounds=3)
    bob = UserFactory(username="bobby")
    (b,) = admitted(federation, [keyed(bob)])
    url = f"/api/federations/{federation.pk}/state/"
    assert api_as(bob).get(url).json()["closed_round"] is None
    submit(federation, 1, b, small_delta(federation))
    job_execute(job_id=federation.round_set.get(number=1).job_id, worker="test")
    state = api_as(bob).get(url).json()
    closed = federation.round_set.get(number=1)
    assert state["current_round"]["number"] == 2
    assert state["closed_round"] == {"number": 1, "metrics": closed.metrics}


def test_a_held_look_polls_when_the_channel_layer_is_down(settings, monkeypatch):
    settings.REALTIME_POLL = False
    settings.REALTIME_POLL_SECONDS = 0.02

    class Down:
        async def new_channel(self):
            raise ConnectionError("redis is down")

    monkeypatch.setattr("channels.layers.get_channel_layer", lambda: Down())
    sent = _run(_App(_state(3)), _scope("after=3&wait=30"), changes=[(0.05, _state(4))])
    assert json.loads(sent[1]["body"])["current_round"]["number"] == 4
