"""Calls admitted and written in groups (PostgreSQL): the calls that a process's threads have ready at the same
moment are judged and written by one statement, one transaction, so that they share one commit and one update
of each caller's meter row. One at a time, every metered call of a caller would wait for the previous one's
commit to reach the disk, since each holds that caller's meter row until then.

The statement checks again, for each call, what its thread read before (perhaps a few seconds ago): the caller
is active and their API token, if any, neither revoked nor expired; the version is ready and unchanged, owned
by the caller for a free call and by someone else for a licensed one; the licence is the one the caller would
be given now. Then, for the calls that hold, each caller's prices are reserved together when their deposit
covers all of them, each quota licence spends its calls together when it has them all left, and the signed
receipts are written. A call that does not fit as part of its group is not written: its thread tops the
caller's deposit up (or says 402) and makes it again in another group when the deposit fell short, and else
makes it again alone (services.metering), which picks another licence or says why there is none.

With MODELS_CALLS_ASYNC_COMMIT (the default) the statement's transaction, and only it, commits without waiting
for its WAL flush: the meter rows are free again at once, and a crash of the database can lose the last calls
written (never billed, never paid to the owner), never a ledger entry. See README "Metered calls and crashes".
"""

import functools
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import orjson
import psycopg
from django.conf import settings
from django.db import connection, transaction

from models_market.models import CallMeter, ModelLicense, ModelToken, ModelVersion, Receipt
from models_market.services.receipts import receipts_sign_together
from models_market.verify_receipt import FORMAT_ROWS
from platform_site.accounts.models import ApiToken, User

GROUP_MAX = 64  # calls in one statement
DEADLOCK_ATTEMPTS = 3


@dataclass
class Call:
    """One call as its thread read it, and what the statement found: `caller_ok` (the caller and their token
    are valid), `admitted` (the version and the licence are as read) and `written` (its receipt, if it has one,
    is stored and its price reserved or its quota call spent)."""

    user_id: int
    api_token_id: int | None
    version_id: int
    sha256: str
    license_id: int | None  # None: the owner's free call
    now: datetime
    receipt: Receipt | None = None  # None: not metered; else numbered, and signed when it is written
    receipt_format: int = FORMAT_ROWS
    quota: bool = False
    # What the caller's priced calls in its group cost together: a deposit that falls short is topped up by that.
    group_price: int = 0
    caller_ok: bool = False
    admitted: bool = False
    written: bool = False


def call_admit(call: Call) -> None:
    """Judge and write `call` with whatever other calls of this process are ready with it (the first thread to
    come leads and writes the group on its connection; the others wait for it)."""
    if connection.in_atomic_block:
        # Inside a transaction (a test's): refused as any durable transaction would be, else written alone.
        with transaction.atomic(durable=True):
            _write([call])
        return
    _group.join(call)


class _Group:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[Call, threading.Event, list]] = []
        self._leading = False

    def join(self, call: Call) -> None:
        done, outcome = threading.Event(), []  # outcome: [None] when written, [exception] when it failed
        with self._lock:
            self._pending.append((call, done, outcome))
            lead = not self._leading
            self._leading = True
        if not lead:
            done.wait()
            lead = outcome[0] == "lead"  # the leader left this thread the next group
        if lead:
            self._lead()
        if outcome[-1] is not None:
            raise outcome[-1]

    def _lead(self) -> None:
        """Write one group that holds this thread's own call, then hand the lead to a waiting thread, if any."""
        with self._lock:
            group, self._pending = self._pending[:GROUP_MAX], self._pending[GROUP_MAX:]
        error: BaseException | None = None
        try:
            _write([call for call, _, _ in group])
        except BaseException as exc:
            error = exc
        with self._lock:
            if self._pending:
                _, next_done, next_outcome = self._pending[0]
                next_outcome.append("lead")
                next_done.set()
            else:
                self._leading = False
        for _, done, outcome in group:
            outcome[:] = [error]
            done.set()


_group = _Group()


def _write(calls: list[Call]) -> None:
    # The group's receipts are signed together, by the thread that writes them: one signature of their Merkle
    # root (an Ed25519 signature costs more than the rest of a receipt). A call made again in a later group
    # keeps what it was signed with.
    unsigned = [
        (c.receipt, c.receipt_format) for c in calls if c.receipt is not None and not c.receipt.signature
    ]
    if unsigned:
        receipts_sign_together(unsigned)
    group_price: dict[int, int] = defaultdict(int)
    for call in calls:
        if call.receipt is not None and not call.quota:
            group_price[call.user_id] += call.receipt.price
    for call in calls:
        call.group_price = group_price[call.user_id]
    # The group travels as one JSON parameter: binding fifteen arrays cost psycopg more than the statement's run
    # (orjson writes the times as RFC 3339 with their offset).
    group = orjson.dumps([_row(i, c) for i, c in enumerate(calls, 1)]).decode()
    connection.ensure_connection()
    # On the connections of Django's pool the statement is prepared once per connection, since planning it costs
    # more than running it (an external pooler may not keep prepared statements). Django binds on the client,
    # which psycopg never prepares, and turns psycopg's preparing off: so this is psycopg's own cursor, bound by
    # the server, and preparing is back on for what asks for it by name (prepare=True) and nothing else.
    prepare = bool(connection.settings_dict.get("OPTIONS", {}).get("pool"))
    if prepare and connection.connection.prepare_threshold is None:
        connection.connection.prepare_threshold = 2**31  # never reached: only prepare=True prepares
        # Its generic plan, every time: PostgreSQL would plan it for each group it is given (about as long as it
        # runs), the custom plans looking cheaper. It is the connection's only prepared statement.
        connection.connection.execute("SET plan_cache_mode TO force_generic_plan")
    with psycopg.Cursor(connection.connection) as cursor:
        # It locks its callers' meter rows in an order of its own, and another transaction (a settlement, another
        # process's group) may hold one and wait for another: PostgreSQL then aborts one of the two. The
        # statement is its own transaction, so nothing of it was written: it is run again (the other is through).
        for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
            try:
                cursor.execute(_sql(settings.MODELS_CALLS_ASYNC_COMMIT), (group,), prepare=prepare)
                break
            except psycopg.errors.DeadlockDetected:
                if attempt == DEADLOCK_ATTEMPTS:
                    raise
        for i, caller_ok, admitted, written in cursor.fetchall():
            calls[i - 1].caller_ok, calls[i - 1].admitted, calls[i - 1].written = caller_ok, admitted, written


def _row(i: int, call: Call) -> dict:
    r = call.receipt
    row = {"i": i, "user_id": call.user_id, "api_token": call.api_token_id, "version_id": call.version_id,
           "sha256": call.sha256, "license_id": call.license_id, "now": call.now, "quota": call.quota}  # fmt: skip
    if r is not None:
        row.update(price=r.price, receipt_id=r.pk, input_sha256=r.input_sha256, output_sha256=r.output_sha256,
                   rows=r.rows, body=r.body, key_id=r.key_id, signature=r.signature,
                   signing_group=r.signing_group)  # fmt: skip
    return row


@functools.cache
def _sql(async_commit: bool) -> str:
    return _ADMIT.format(
        commit=_ASYNC_COMMIT if async_commit else "", user=User._meta.db_table, api_token=ApiToken._meta.db_table, version=ModelVersion._meta.db_table,
        token=ModelToken._meta.db_table, license=ModelLicense._meta.db_table, meter=CallMeter._meta.db_table,
        receipt=Receipt._meta.db_table,
    )  # fmt: skip


# The statement is its own transaction (autocommit): a transaction-local setting lasts until its commit, and
# the connection's next transaction (perhaps a ledger entry's) has the server's setting again.
_ASYNC_COMMIT = " CROSS JOIN (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit"

_ADMIT = """
WITH calls AS (
    SELECT * FROM json_to_recordset(%s::json) AS c(
        i integer, user_id bigint, api_token bigint, version_id bigint, sha256 text, license_id bigint,
        now timestamptz, quota bool, price bigint, receipt_id bigint, input_sha256 text, output_sha256 text,
        rows integer, body jsonb, key_id text, signature text, signing_group jsonb)
), judged AS (
    SELECT c.*, EXISTS (
        SELECT 1 FROM {user} u WHERE u.id = c.user_id AND u.is_active AND (c.api_token IS NULL OR EXISTS (
            SELECT 1 FROM {api_token} t WHERE t.id = c.api_token AND t.user_id = u.id AND t.revoked_at IS NULL
            AND (t.expires_at IS NULL OR t.expires_at > c.now)))
    ) AS caller_ok, EXISTS (
        SELECT 1 FROM {version} v JOIN {token} k ON k.version_id = v.id
        WHERE v.id = c.version_id AND v.status = 'ready' AND v.artifact_sha256 = c.sha256 AND CASE
            WHEN c.license_id IS NULL THEN k.owner_id = c.user_id
            ELSE k.owner_id <> c.user_id AND c.license_id = (
                SELECT l.id FROM {license} l WHERE l.holder_id = c.user_id AND l.version_id = c.version_id
                AND (l.kind = 'perpetual' OR (l.kind = 'timed' AND l.expires_at > c.now)
                     OR (l.kind = 'quota' AND l.calls_left > 0))
                ORDER BY CASE WHEN l.kind = 'quota' THEN 0 ELSE 1 END, l.price_per_call, l.id LIMIT 1) END
    ) AS admitted FROM calls c
), due AS (
    SELECT * FROM judged WHERE caller_ok AND admitted AND receipt_id IS NOT NULL
), reserved AS (
    UPDATE {meter} m SET reserved = m.reserved + d.total
    FROM (SELECT user_id, sum(price) AS total FROM due WHERE price > 0 GROUP BY user_id) d
    WHERE m.user_id = d.user_id AND m.deposit >= m.reserved + d.total RETURNING m.user_id
), spent AS (
    UPDATE {license} l SET calls_left = l.calls_left - d.n, calls_made = l.calls_made + d.n
    FROM (SELECT license_id, count(*) AS n FROM due WHERE quota GROUP BY license_id) d
    WHERE l.id = d.license_id AND l.calls_left >= d.n RETURNING l.id
), written AS (
    INSERT INTO {receipt} (id, license_id, version_id, caller_id, price, model_sha256, input_sha256,
                           output_sha256, rows, issued_at, body, key_id, signature, signing_group)
    SELECT receipt_id, license_id, version_id, user_id, price, sha256, input_sha256, output_sha256, rows, now,
           body, key_id, signature, signing_group
    FROM due WHERE (price = 0 OR user_id IN (SELECT user_id FROM reserved))
    AND (NOT quota OR license_id IN (SELECT id FROM spent))
    RETURNING id
)
SELECT i, caller_ok, caller_ok AND admitted, COALESCE(receipt_id IN (SELECT id FROM written), false)
FROM judged{commit}
"""
