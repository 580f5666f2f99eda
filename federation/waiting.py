"""`GET /api/federations/<id>/state/?after=N&wait=S`: a party's client waiting for the next round, held open.

A client that has sent its update for round N has nothing to do until round N+1 opens, the federation ends or
its party changes. Asked with `after=N` and `wait=S` (at most STATE_WAIT_MAX seconds), the look is answered as
soon as that happens, or with the state as it is once S seconds pass. This ASGI layer, ahead of Django, does the
waiting without holding Django's thread: it asks Django for the look (authentication, permissions and throttles
are the API's own), and while the answer is still "round N, the same party status", it waits for the federation's
channel-layer group to say the parties have something new (`federation_changed(wakes_parties=True)`: a round
opened, the federation ended, a membership change), then asks again. Where the channel layer is not shared with
the workers (the embedded default) it asks again every REALTIME_POLL_SECONDS instead. Everything else, and any
answer that is not a 200 state, goes through unchanged.
"""

import asyncio
import contextlib
import json
import logging
import re
import time
from urllib.parse import parse_qs

from django.conf import settings

logger = logging.getLogger(__name__)
PATH = re.compile(r"/api/federations/([0-9]{1,18})/state/")
STATE_WAIT_MAX = 60  # seconds; the API refuses more (FederationStateApi)


def waits(query: bytes) -> tuple[int, float] | None:
    """(after, wait) of a look that asks to be held, None for one answered at once (Django checks the values)."""
    params = parse_qs(query.decode("latin-1"))
    try:
        after, wait = int(params["after"][-1]), float(params["wait"][-1])
    except (KeyError, ValueError):
        return None
    if not (0 <= after <= 2**31 - 1 and 0 < wait <= STATE_WAIT_MAX):
        return None
    return after, wait


def moment(state: dict) -> tuple:
    """What a waiting party's client acts on: the federation's status, the current round and its party's status."""
    current = state.get("current_round") or {}
    return state.get("status"), current.get("number"), (state.get("me") or {}).get("status")


def news(state: dict, after: int) -> bool:
    """Whether the look already has something for a client that is done with round `after`."""
    current = state.get("current_round") or {}
    return state.get("status") not in ("recruiting", "running") or (current.get("number") or 0) > after


class FederationStateWait:
    """ASGI middleware: held state looks answered here (by asking `app` until there is news), the rest by `app`."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        match = PATH.fullmatch(scope.get("path", "")) if scope["type"] == "http" else None
        held = waits(scope.get("query_string", b"")) if match and scope["method"] == "GET" else None
        if held is None:
            return await self.app(scope, receive, send)
        after, wait = held
        from federation.services.common import federation_group

        deadline = time.monotonic() + wait
        async with _Subscription(federation_group(int(match.group(1)))) as wakes:
            disconnected = asyncio.ensure_future(_disconnect(receive))
            try:
                first = None
                while True:
                    answer = await _ask(self.app, scope)
                    state = answer.state()
                    if state is None or news(state, after) or time.monotonic() >= deadline:
                        return await answer.replay(send)
                    if first is None:
                        first = moment(state)
                    elif moment(state) != first:
                        return await answer.replay(send)
                    waited = asyncio.ensure_future(wakes.next(deadline - time.monotonic()))
                    await asyncio.wait({waited, disconnected}, return_when=asyncio.FIRST_COMPLETED)
                    if disconnected.done():
                        waited.cancel()
                        return  # the client is gone: nobody to answer
            finally:
                disconnected.cancel()


async def _disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class _Answer:
    def __init__(self) -> None:
        self.start: dict = {}
        self.body: list[bytes] = []

    def state(self) -> dict | None:
        """The look's JSON when Django answered 200, else None (an error: answered as it is)."""
        if self.start.get("status") != 200:
            return None
        try:
            state = json.loads(b"".join(self.body))
        except ValueError:
            return None
        return state if isinstance(state, dict) else None

    async def replay(self, send) -> None:
        await send(self.start)
        await send({"type": "http.response.body", "body": b"".join(self.body)})


async def _ask(app, scope) -> _Answer:
    """Django's answer to the look, kept whole (a small JSON body)."""
    answer = _Answer()
    asked = asyncio.Event()

    async def receive():
        if not asked.is_set():
            asked.set()
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # Django listens for a disconnect that this inner request never has

    async def send(message):
        if message["type"] == "http.response.start":
            answer.start = message
        elif message["type"] == "http.response.body":
            answer.body.append(message.get("body", b""))

    await app(dict(scope), receive, send)
    return answer


class _Subscription:
    """The federation group's pushes to this one waiting look, or a pause of REALTIME_POLL_SECONDS where there are
    none to be had (no shared channel layer)."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.layer = None  # pushes come from it; None: poll
        self.joined = None  # the layer the channel joined the group on, left on the way out
        self.channel = ""

    async def __aenter__(self) -> "_Subscription":
        if not settings.REALTIME_POLL:
            from channels.layers import get_channel_layer

            self.layer = get_channel_layer()
        if self.layer is not None:
            try:
                self.channel = await self.layer.new_channel()
                await self.layer.group_add(self.group, self.channel)
                self.joined = self.layer
            except Exception:  # the layer is down: ask again every poll interval instead
                logger.warning("a held look could not subscribe to %s; polling", self.group, exc_info=True)
                self.layer = None
        return self

    async def __aexit__(self, *exc) -> None:
        if self.joined is not None:
            with contextlib.suppress(Exception):
                await self.joined.group_discard(self.group, self.channel)

    async def next(self, timeout: float) -> None:
        """Until a push that concerns the parties, or `timeout` seconds (the poll interval without a layer)."""
        timeout = max(0.0, timeout)
        if self.layer is None:
            await asyncio.sleep(min(timeout, settings.REALTIME_POLL_SECONDS))
            return
        end = time.monotonic() + timeout
        try:
            while True:
                message = await asyncio.wait_for(
                    self.layer.receive(self.channel), max(0.0, end - time.monotonic())
                )
                if message.get("parties"):
                    return
        except TimeoutError:
            return
        except Exception:  # the layer failed meanwhile: ask again every poll interval from now on
            logger.warning("a held look lost %s; polling", self.group, exc_info=True)
            self.layer = None
