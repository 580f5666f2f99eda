"""`POST /api/models/versions/<id>/predict/` for API-token callers, answered ahead of Django's middleware and DRF.

Django runs a sync view under ASGI one request at a time on one thread, behind a dozen middleware and DRF's
request machinery: about ten milliseconds a call. This ASGI layer, in front of Django's handler, takes a JSON
predict request with `Authorization: Token|Bearer <key>`, and runs the very same steps on a small pool of
threads (MODELS_PREDICT_THREADS), each with its own database connection, so that parallel calls overlap on
the database: the key (api_token_authenticate_recent), PredictApi's throttles, the version (read a few seconds
ago at most) and `services.predict_call`, whose one statement checks the token, the version and the licence
again as it writes the call. Whatever it does not answer itself goes to Django unchanged, body included: other
requests, CSV bodies, JSON that does not parse, a key that does not authenticate, a throttled caller (so 401
and 429 are Django's own). Domain errors are answered as the API's exception handler answers them.

Only on PostgreSQL (MODELS_FAST_PREDICT, on by default): the embedded SQLite default serves every request
through Django.
"""

import asyncio
import contextlib
import itertools
import json
import logging
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import orjson
from django.conf import settings
from django.db import DatabaseError, connection
from django.http.request import split_domain_port, validate_host
from rest_framework.renderers import JSONRenderer

from models_market import selectors, services
from models_market.apis import PREDICT_MAX_BYTES, ROWS_EXPECTED, PredictApi, fresh_receipt
from models_market.services.metering import Predictions
from models_market.services.receipts import canonical_json_fast
from platform_site.accounts.services import api_token_authenticate_recent
from platform_site.errors import DomainError, Unauthenticated
from platform_site.throttling import throttles_allow

logger = logging.getLogger(__name__)
PATH = re.compile(r"/api/models/versions/([0-9]{1,18})/predict/")
Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]
GIL_SWITCH_SECONDS = 0.001


class PredictFastPath:
    """ASGI middleware: predict calls by API token answered here, everything else by `app` (Django)."""

    def __init__(self, app) -> None:
        self.app = app
        self.enabled = settings.MODELS_FAST_PREDICT and settings.DATABASES["default"]["ENGINE"].endswith(
            "postgresql"
        )
        # Each thread holds a connection of the process's pool: some are left for Django's own requests.
        pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool") or {}
        self._threads = max(1, min(settings.MODELS_PREDICT_THREADS, pool.get("max_size", 10**6) - 2))
        self._executor: ThreadPoolExecutor | None = None

    async def __call__(self, scope, receive, send) -> None:
        key = self._key(scope) if self.enabled else None
        if key is None:
            return await self.app(scope, receive, send)
        body, complete = await _read_body(receive)
        if complete:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="predict")
                # The thread that writes a group (services.admission) comes back from the database wanting the
                # GIL while the others run models, and would wait up to CPython's default switch interval (5 ms)
                # for it: every call of the next group waits with it. 1 ms: measured under
                # bench/models_market.py, 35-45% more calls a second, metered or not.
                sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_SECONDS))
            version_id = int(PATH.fullmatch(scope["path"]).group(1))
            loop = asyncio.get_running_loop()
            answer = await loop.run_in_executor(self._executor, answer_call, key, version_id, body)
            if answer is not None:
                return await _send(send, *answer, secure=scope.get("scheme") == "https")
        await self.app(scope, _replay(body, complete, receive), send)

    def _key(self, scope) -> str | None:
        """The API key of a request this layer may answer; None for every other request."""
        if scope["type"] != "http" or scope["method"] != "POST" or not PATH.fullmatch(scope["path"]):
            return None
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization", b"").split()
        if len(auth) != 2 or auth[0].lower() not in (b"token", b"bearer"):
            return None
        kind, _, params = headers.get(b"content-type", b"").partition(b";")
        if kind.strip().lower() != b"application/json" or params.strip() not in (b"", b"charset=utf-8"):
            return None
        if settings.SECURE_SSL_REDIRECT and scope.get("scheme") != "https":
            return None  # Django redirects it
        if not _host_allowed(headers.get(b"host", b"").decode("latin-1")):
            return None  # Django says 400
        return auth[1].decode("latin-1")

    def close(self) -> None:
        """Close the threads' database connections and stop them (tests; a server shutting down)."""
        if self._executor is None:
            return
        barrier = threading.Barrier(self._threads)

        def close_one() -> None:
            connection.close()
            barrier.wait(timeout=30)  # each thread takes exactly one of these

        for future in [self._executor.submit(close_one) for _ in range(self._threads)]:
            future.result()
        self._executor.shutdown()
        self._executor = None


def answer_call(key: str, version_id: int, body: bytes) -> Answer | None:
    """PredictApi's answer to the call, or None to let Django answer it (a thread of the pool runs this)."""
    try:
        data = _parse(body)
    except (ValueError, RecursionError):
        return None  # DRF says what is wrong with it
    try:
        token = api_token_authenticate_recent(key=key)
        if token is None or not throttles_allow(user=token.user, view=PredictApi):
            return None
        try:
            version = selectors.version_get_for_call_recent(version_id=version_id)
            if not isinstance(data, dict) or "rows" not in data:
                raise DomainError(ROWS_EXPECTED)
            outputs, receipt = services.predict_call(
                user=token.user, version=version, rows=data["rows"], api_token_id=token.pk, body=body
            )
        except Unauthenticated:
            return None  # revoked since: DRF's authentication says 401
        except DomainError as exc:
            retry_after = getattr(exc, "retry_after", None)
            extra = [(b"retry-after", str(retry_after).encode())] if retry_after else []
            return exc.status_code, _render({"detail": exc.message, "code": exc.code}), extra
        if not isinstance(outputs, Predictions):  # unmetered: written as a metered call's are, without a hash
            with contextlib.suppress(ValueError):  # not JSON (NaN): DRF's renderer says so, as below
                outputs = Predictions(outputs, json=canonical_json_fast(outputs))
        if isinstance(outputs, Predictions):  # their RFC 8785 bytes, which the receipt hashed, as they are
            # The receipt's values are numbers and ASCII strings, which orjson writes as DRF's renderer does.
            answer = (
                b'{"predictions":'
                + outputs.json
                + b',"receipt":'
                + orjson.dumps(fresh_receipt(receipt))
                + b"}"
            )
            return 200, answer, []
        return 200, _render({"predictions": outputs, "receipt": fresh_receipt(receipt)}), []
    except DatabaseError:
        connection.close()  # a broken connection goes back to the pool; the next call draws another
        raise


def _parse(body: bytes):
    """The body's JSON: by orjson (on 100 rows of 20 numbers, 0.3 ms where the json module takes 1.7), unless a
    row holds a value it may have read otherwise: orjson reads an integer beyond 64 bits as a float (of at least
    2**63), where the json module gives the integer that the API refuses (metering._check_rows). Rows of anything
    but numbers are read again by the json module too, which costs what it cost before, and so is what orjson
    refuses (the json module takes a lone surrogate's escape, and says what else is wrong)."""
    try:
        data = orjson.loads(body)
        if max(map(abs, itertools.chain.from_iterable(map(dict.values, data["rows"]))), default=0) < 2**63:
            return data
    except (orjson.JSONDecodeError, TypeError, KeyError):
        pass
    return json.loads(body, parse_constant=_refuse)


def _refuse(constant: str):
    raise ValueError(f"{constant} is not JSON")


def _render(data: dict) -> bytes:
    return JSONRenderer().render(data)


def _host_allowed(host: str) -> bool:
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]  # as Django's HttpRequest.get_host
    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, allowed)


async def _read_body(receive) -> tuple[bytes, bool]:
    """The request's body, and whether it was read whole: a body over PREDICT_MAX_BYTES or a disconnect stops
    reading, and Django gets what was read followed by the rest."""
    parts, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(parts), False
        parts.append(message.get("body", b""))
        size += len(parts[-1])
        more = message.get("more_body", False)
        if size > PREDICT_MAX_BYTES and more:
            return b"".join(parts), False
    return b"".join(parts), True


def _replay(body: bytes, complete: bool, receive):
    """`receive` for Django: the body read so far first, then whatever is still to come."""
    pending = [{"type": "http.request", "body": body, "more_body": not complete}]

    async def replayed():
        return pending.pop() if pending else await receive()

    return replayed


def _headers(secure: bool) -> list[tuple[bytes, bytes]]:
    """What Django's middleware and DRF add to the API's JSON answers."""
    headers = [(b"content-type", b"application/json"), (b"vary", b"Accept"), (b"allow", b"POST, OPTIONS")]
    if secure and settings.SECURE_HSTS_SECONDS:
        hsts = f"max-age={settings.SECURE_HSTS_SECONDS}"
        hsts += "; includeSubDomains" if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS else ""
        hsts += "; preload" if settings.SECURE_HSTS_PRELOAD else ""
        headers.append((b"strict-transport-security", hsts.encode()))
    if settings.X_FRAME_OPTIONS:
        headers.append((b"x-frame-options", settings.X_FRAME_OPTIONS.encode()))
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append((b"x-content-type-options", b"nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        headers.append((b"referrer-policy", str(settings.SECURE_REFERRER_POLICY).encode()))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append((b"cross-origin-opener-policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode()))
    return headers


async def _send(send, status: int, body: bytes, extra: list[tuple[bytes, bytes]], *, secure: bool) -> None:
    headers = [*_headers(secure), *extra, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
