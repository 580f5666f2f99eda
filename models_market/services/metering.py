"""Metered inference: a licensed call runs the model and is counted at once, against funds it cannot overdraw.

The money of metered calls lives on the ledger, in the caller's call deposit `deposit:<user id>`: a call is
admitted only while the deposit less what unsettled calls have reserved (`CallMeter.reserved`) covers its
price; when it does not, the deposit is topped up from the caller's own account, by a ledgered entry, in
chunks of at least MODELS_DEPOSIT_CHUNK, larger for a caller whose unsettled calls hold more. Settlements pay
from the deposit, and only settlements and the owner's withdrawal of the unreserved part take tokens out of it,
so neither concurrent calls nor the caller's other spending can ever make a settlement fail. Every change to a
deposit happens under its meter's row lock and updates the meter's mirror of it (`CallMeter.deposit`), so that
most calls are admitted by one UPDATE.
"""

import functools
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, F, IntegerField, Q, Value, When
from django.utils import timezone

from ledger import selectors as ledger_selectors
from ledger import services as ledger
from ml.features import FeatureError, FeatureSchema
from models_market import runtime
from models_market.models import CallMeter, ModelLicense, ModelVersion, Receipt
from models_market.selectors import version_get_for_call
from models_market.services.admission import Call, call_admit
from models_market.services.receipts import canonical_json_fast, receipt_issue, receipt_new, sha256_hex
from models_market.verify_receipt import FORMAT_BODY, FORMAT_ROWS, canonical_json
from platform_site.accounts.models import User
from platform_site.errors import (
    Conflict,
    DomainError,
    NotFound,
    PaymentRequired,
    PermissionDenied,
    Unauthenticated,
)

logger = logging.getLogger(__name__)
_SAFE_INT = 2**53 - 1


def _check_rows(rows: Any) -> None:
    """What the feature schema's check cannot say well: integers beyond exact JSON (the receipt hashes the rows
    as RFC 8785 JSON), named by row and column."""
    if not isinstance(rows, list):
        return  # the schema's check says what rows must be
    values = itertools.chain.from_iterable(row.values() for row in rows if isinstance(row, dict))
    if int not in set(map(type, values)):  # JSON numbers with a fraction or an exponent are floats
        return
    for i, row in enumerate(rows):
        if isinstance(row, dict):
            for column, value in row.items():
                if type(value) is int and not -_SAFE_INT <= value <= _SAFE_INT:
                    raise DomainError(
                        f'row {i}, column "{column}": the integer is beyond ±2**53-1; send it as a decimal '
                        "number (1e30)"
                    )


def _license_for_call(user: User, version: ModelVersion, now: datetime) -> ModelLicense:
    """The licence a call is made under: a quota licence with calls left first (they are paid), then the valid
    perpetual or timed licence with the lowest per-call price. PermissionDenied says why there is none."""
    license = (
        ModelLicense.objects.filter(holder=user, version=version)
        .filter(
            Q(kind=ModelLicense.Kind.PERPETUAL)
            | Q(kind=ModelLicense.Kind.TIMED, expires_at__gt=now)
            | Q(kind=ModelLicense.Kind.QUOTA, calls_left__gt=0)
        )
        .order_by(
            Case(
                When(kind=ModelLicense.Kind.QUOTA, then=Value(0)),
                default=Value(1),
                output_field=IntegerField(),
            ),
            "price_per_call",
            "pk",
        )
        .first()
    )
    if license is not None:
        return license
    held = ModelLicense.objects.filter(holder=user, version=version)
    if held.filter(kind=ModelLicense.Kind.TIMED).exists():
        raise PermissionDenied("your timed licence for this model has expired; buy another to call it")
    if held.filter(kind=ModelLicense.Kind.QUOTA).exists():
        raise PermissionDenied("your licence's calls are used up; buy another quota to call this model")
    raise PermissionDenied("calling this model needs a licence: buy one on its token's page")


def predict_call(
    *,
    user: User,
    version: ModelVersion,
    rows: Any,
    api_token_id: int | None = None,
    body: bytes | None = None,
) -> tuple[list[dict], Receipt | None]:
    """Run the model on `rows` for `user`: the rows are checked against the version's schema first (a 400 naming
    wrong and missing columns), then the caller's right: the token's owner calls for free, without a receipt;
    anyone else needs a valid licence (403). A metered call is counted and its price reserved in one durable
    transaction that writes its signed receipt (402 when the caller cannot pay). With MODELS_METERING off
    licences are still checked but nothing is counted, reserved or signed.

    On PostgreSQL the common call is one statement (shared with parallel calls) that checks again everything
    `version` (perhaps read a few seconds ago), the licence and `api_token_id` (the API token the caller came
    with, if any) said, and writes the call; when any of it changed, the call is made again from rows read
    afresh. Unauthenticated when the token or the user is no longer valid.

    `body`: the request body that `rows` were read from, exactly as received; the receipt (format 2) then hashes
    these bytes as its input, which costs far less than the rows' RFC 8785 JSON (format 1, without a body)."""
    if connection.vendor == "postgresql":
        try:
            called = _call_in_one_statement(user, version, rows, api_token_id, body)
        except (NotFound, PermissionDenied):  # judged on rows read earlier: judged again below
            called = None
        if called is not None:
            return called
        _license_hints.pop((user.pk, version.pk), None)
        version = version_get_for_call(version_id=version.pk)
    return _call(user, version, rows, body)


def _checked_matrix(version: ModelVersion, rows: Any) -> tuple[FeatureSchema, Any]:
    if version.status != ModelVersion.Status.READY:
        raise NotFound("no such model version ready to call")
    schema = runtime.schema_for(version)
    _check_rows(rows)
    try:
        return schema, schema.rows_matrix(rows)
    except FeatureError as exc:
        raise DomainError(str(exc)) from None


class Predictions(list):
    """A metered call's predictions, with their RFC 8785 bytes (`json`) and those bytes' SHA-256, which its receipt
    names: an answer can carry the bytes as they are instead of writing the predictions again."""

    def __init__(self, outputs: list[dict], *, json: bytes) -> None:
        super().__init__(outputs)
        self.json = json

    @functools.cached_property
    def sha256(self) -> str:
        return sha256_hex(self.json)


def _hashes(
    schema: FeatureSchema, rows: Any, outputs: list[dict], body: bytes | None
) -> tuple[str, Predictions, int]:
    """(input_sha256, the outputs with their RFC 8785 bytes, the receipt's format): the input is the body as
    received when there is one (format 2), else the rows' RFC 8785 JSON (format 1)."""
    # The rows' keys are the schema's column names and their integers exact (_checked_matrix accepted them);
    # the outputs' keys are ours, their integers the classes'.
    exact = all(type(c) is not int or -_SAFE_INT <= c <= _SAFE_INT for c in schema.classes)
    try:
        if body is not None:
            input_sha256, receipt_format = sha256_hex(body), FORMAT_BODY
        else:
            input_sha256, receipt_format = sha256_hex(canonical_json_fast(rows)), FORMAT_ROWS
        outputs_json = canonical_json_fast(outputs) if exact else canonical_json(outputs)
        return input_sha256, Predictions(outputs, json=outputs_json), receipt_format
    except ValueError as exc:
        raise DomainError(f"the rows cannot be written as JSON: {exc}") from None


def _predicted(
    user: User, version: ModelVersion, rows: Any, pick: Callable[[User, ModelVersion, datetime], ModelLicense]
) -> tuple[FeatureSchema, list[dict], ModelLicense | None, datetime]:
    """The rows checked, the licence `pick` finds the caller calling under (None for the token's owner, who
    calls free) and the model's outputs: what either way of making a call starts with."""
    schema, X = _checked_matrix(version, rows)
    token = getattr(version, "token", None)
    if token is None:
        raise NotFound("this model version has no token yet")
    now = timezone.now()
    license = None if token.owner_id == user.pk else pick(user, version, now)
    return schema, runtime.predict(runtime.model_for(version), schema, X), license, now


def _call(
    user: User, version: ModelVersion, rows: Any, body: bytes | None
) -> tuple[list[dict], Receipt | None]:
    schema, outputs, license, now = _predicted(user, version, rows, _license_for_call)
    if license is None or not settings.MODELS_METERING:
        return outputs, None
    input_sha256, outputs, receipt_format = _hashes(schema, rows, outputs, body)
    return outputs, _meter(
        user, version, license, len(rows), input_sha256, outputs.sha256, now, receipt_format
    )


# The licence each (caller, version) was last called under in this process, and until when (time.monotonic())
# it is taken without a query: the call's statement checks it is still the one _license_for_call would pick.
LICENSE_HINT_SECONDS = 5.0
_LICENSE_HINTS_MAX = 10_000
_license_hints: dict[tuple[int, int], tuple[float, ModelLicense]] = {}


def _license_hint(user: User, version: ModelVersion, now: datetime) -> ModelLicense:
    key = (user.pk, version.pk)
    hit = _license_hints.get(key)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    license = _license_for_call(user, version, now)
    if len(_license_hints) >= _LICENSE_HINTS_MAX:
        _license_hints.clear()
    _license_hints[key] = (time.monotonic() + LICENSE_HINT_SECONDS, license)
    return license


def license_hints_forget(*, user: User) -> None:
    """Forget which licence the user calls under (they bought one): the next call picks again."""
    for key in [k for k in _license_hints if k[0] == user.pk]:
        _license_hints.pop(key, None)


def _call_in_one_statement(
    user: User, version: ModelVersion, rows: Any, api_token_id: int | None, body: bytes | None
) -> tuple[list[dict], Receipt | None] | None:
    """The call, admitted and written by one statement (admission.call_admit, with the calls that other threads
    have ready at the same moment) that checks again the token, the user, the version, its owner and the
    licence; None when any of them changed or the call did not fit in its group (nothing of it was written)."""
    schema, outputs, license, now = _predicted(user, version, rows, _license_hint)
    call = Call(
        user_id=user.pk, api_token_id=api_token_id, version_id=version.pk, sha256=version.artifact_sha256,
        license_id=license.pk if license is not None else None, now=now,
    )  # fmt: skip
    if license is not None and settings.MODELS_METERING:
        input_sha256, outputs, call.receipt_format = _hashes(schema, rows, outputs, body)
        call.quota = license.kind == ModelLicense.Kind.QUOTA
        # Signed with the other calls of its group, by the thread that writes them (admission).
        call.receipt = receipt_new(
            id=_receipt_number(), license_id=license.pk, version_id=version.pk, caller_id=user.pk,
            price=0 if call.quota else license.price_per_call, model_sha256=version.artifact_sha256,
            input_sha256=input_sha256, output_sha256=outputs.sha256, rows=len(rows), issued_at=now,
        )  # fmt: skip
    call_admit(call)
    if call.admitted and call.receipt is not None and not call.written and not call.quota:
        # The caller's deposit fell short of their calls in its group (the statement found the licence right):
        # topped up to cover them all, once for all of them, or a 402, it is made again the same way (its
        # number unused).
        _top_up(user, call.receipt.price, want=call.group_price)
        call_admit(call)
    if not call.caller_ok:
        raise Unauthenticated("invalid, revoked or expired token")
    if not call.admitted or (call.receipt is not None and not call.written):
        return None
    if call.receipt is not None:
        _settle_when_due(call.receipt.pk)
    return outputs, call.receipt


# Receipt numbers drawn from the table's sequence ahead, a few at a time, so that a call needs no query for its
# number before it is signed: they rise call after call within a process; processes draw blocks of their own.
# The draw takes a transaction id, so that its commit waits for the disk: the sequence's advance is durable
# before any of its numbers is signed, and a call whose own commit a crash loses (MODELS_CALLS_ASYNC_COMMIT)
# never sees its number given again.
RECEIPT_NUMBERS_AHEAD = 1024
_receipt_numbers: deque[int] = deque()
_receipt_numbers_lock = threading.Lock()


def _receipt_number() -> int:
    with _receipt_numbers_lock:
        if connection.in_atomic_block:
            # A call made in the services' transaction, which may roll back and leave a block's advance of
            # the sequence unwritten: one number, committed (waiting for the disk) with the call's receipt or
            # never used; the block drawn before is dropped, so that numbers still rise.
            _receipt_numbers.clear()
            return _draw_receipt_numbers(1)[0]
        if not _receipt_numbers:
            _receipt_numbers.extend(_draw_receipt_numbers(RECEIPT_NUMBERS_AHEAD))
        return _receipt_numbers.popleft()


def _draw_receipt_numbers(count: int) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s) "
            "CROSS JOIN pg_current_xact_id()",
            [Receipt._meta.db_table, count],
        )
        return sorted(n for (n,) in cursor.fetchall())


def _meter(
    user: User, version: ModelVersion, license: ModelLicense, rows: int, input_sha256: str, output_sha256: str,
    now: datetime, receipt_format: int,
) -> Receipt:  # fmt: skip
    # Durable: the call's count or reservation, any top-up of the deposit, and its receipt commit together.
    with transaction.atomic(durable=True):
        if license.kind == ModelLicense.Kind.QUOTA:
            # One statement: of parallel calls on the last calls left, only as many as are left get one.
            spent = ModelLicense.objects.filter(pk=license.pk, calls_left__gt=0).update(
                calls_left=F("calls_left") - 1, calls_made=F("calls_made") + 1
            )
            if not spent:
                raise PermissionDenied(
                    "your licence's calls are used up; buy another quota to call this model"
                )
            price = 0
        else:
            price = license.price_per_call
        receipt_id, reserved = _number_and_reserve(user, price)
        if price and not reserved:
            _reserve(user, price)  # the deposit falls short: top it up, or 402
        receipt = receipt_issue(
            license=license, version=version, caller_id=user.pk, price=price, rows=rows,
            input_sha256=input_sha256, output_sha256=output_sha256, issued_at=now, receipt_id=receipt_id,
            receipt_format=receipt_format,
        )  # fmt: skip
        _settle_when_due(receipt.pk)
    return receipt


def _settle_when_due(receipt_id: int) -> None:
    batch = settings.MODELS_SETTLE_BATCH
    if batch and receipt_id % batch == 0:  # about every `batch` calls, across all processes
        transaction.on_commit(_kick_settlement)


def _kick_settlement() -> None:
    from models_market.tasks import settle_calls

    try:
        settle_calls.apply_async(queue="default")
    except Exception:  # the broker is down: beat settles them later
        logger.warning("could not queue a settlement; beat will settle", exc_info=True)


def _meter_locked(user: User) -> CallMeter:
    """The user's call meter, locked, its mirror of the deposit read again from the ledger: every change to
    the deposit holds this lock."""
    meter = CallMeter.objects.select_for_update().filter(user=user).first()
    if meter is None:
        try:
            with transaction.atomic():  # a savepoint: a parallel first call may create it first
                CallMeter.objects.create(user=user)
        except IntegrityError:
            _receipt_numbers.clear()
        meter = CallMeter.objects.select_for_update().get(user=user)
    meter.deposit = ledger_selectors.account_balance(name=ledger.account_name(deposit=user))
    return meter


def _number_and_reserve(user: User, price: int) -> tuple[int | None, bool]:
    """(the receipt's number, or None where the database numbers it on insert; whether `price` is reserved when
    the deposit covers it: the meter row's own columns decide, so a parallel call's reservation is seen)."""
    reserved = price > 0 and bool(
        CallMeter.objects.filter(user=user, deposit__gte=F("reserved") + price).update(
            reserved=F("reserved") + price
        )
    )
    return (_receipt_number() if connection.vendor == "postgresql" else None), reserved


def _reserve(user: User, price: int) -> None:
    """Reserve `price` of the caller's deposit under its meter's lock, topping the deposit up from their account
    when it falls short; PaymentRequired, with their balance in words, when even that cannot cover it."""
    meter = _meter_locked(user)
    _cover(user, meter, price)
    meter.reserved += price
    meter.save(update_fields=["reserved", "deposit"])


def _top_up(user: User, price: int, *, want: int) -> None:
    """Make the caller's deposit cover `price`, and `want` where their balance allows, beyond what is reserved,
    as _cover does, in a transaction of its own: of the calls that find it short together, the first tops it up
    and the others find it covered."""
    with transaction.atomic(durable=True):
        meter = _meter_locked(user)
        _cover(user, meter, price, want=want)
        meter.save(update_fields=["deposit"])


def _cover(user: User, meter: CallMeter, price: int, *, want: int = 0) -> None:
    """Top the locked meter's deposit up from the caller's account when it does not cover `want` (the caller's
    calls that fell short together: as much of it as their balance allows) or at least `price` beyond what is
    reserved, by a ledgered entry of at least MODELS_DEPOSIT_CHUNK, or what the unsettled calls have reserved
    (up to MODELS_DEPOSIT_CHUNK_MAX) when that is more; PaymentRequired, with their balance in words, when even
    `price` cannot be covered."""
    available = meter.deposit - meter.reserved
    want = max(price, want)
    if available < want:
        own, deposit = ledger.account_name(user=user), ledger.account_name(deposit=user)
        balance = ledger_selectors.account_balance(name=own)
        if balance < price - available:
            raise _payment_required(balance, available, price)
        # At least a chunk, and as much as the unsettled calls hold (up to MODELS_DEPOSIT_CHUNK_MAX): a caller
        # who calls fast tops up once per settlement or so, not once per chunk.
        grown = min(meter.reserved, settings.MODELS_DEPOSIT_CHUNK_MAX)
        top_up = min(balance, max(want - available, settings.MODELS_DEPOSIT_CHUNK, grown))
        if top_up <= 0:  # `price` is covered and the balance holds nothing more
            return
        try:
            ledger.postings_post(
                kind="models_market.deposit.topped_up", actor=own, payload={"amount": top_up},
                postings=[{"account": own, "amount": -top_up}, {"account": deposit, "amount": top_up}],
            )  # fmt: skip
        except ledger.InsufficientFunds:  # the caller spent it meanwhile, elsewhere
            raise _payment_required(ledger_selectors.account_balance(name=own), available, price) from None
        meter.deposit += top_up


def _payment_required(balance: int, available: int, price: int) -> PaymentRequired:
    held = f" and {ledger.format_amount(available)} free in your call deposit" if available > 0 else ""
    return PaymentRequired(
        f"your balance is {ledger.format_amount(balance)}{held}; this call costs {ledger.format_amount(price)}"
    )


def deposit_status(*, user: User) -> dict[str, int]:
    """The user's call deposit: what it holds (read from the ledger), what unsettled calls have reserved of it,
    and the rest."""
    deposit = ledger_selectors.account_balance(name=ledger.account_name(deposit=user))
    reserved = CallMeter.objects.filter(user=user).values_list("reserved", flat=True).first() or 0
    return {"deposit": deposit, "reserved": reserved, "available": deposit - reserved}


def deposit_withdraw(*, user: User, amount: int | None = None) -> dict[str, int]:
    """Return the unreserved part of the user's call deposit (all of it, or `amount`) to their account."""
    if amount is not None:
        ledger.check_amount(amount)
    # Durable: the withdrawal's entry, under the meter's lock, so that no call reserves what leaves.
    with transaction.atomic(durable=True):
        meter = _meter_locked(user)
        deposit = ledger.account_name(deposit=user)
        available = meter.deposit - meter.reserved
        amount = available if amount is None else amount
        if amount <= 0:
            raise Conflict("your call deposit holds nothing that unsettled calls have not reserved")
        if amount > available:
            raise Conflict(
                f"only {ledger.format_amount(available)} of your call deposit is free; the rest is reserved by "
                "calls not yet settled"
            )
        own = ledger.account_name(user=user)
        ledger.postings_post(
            kind="models_market.deposit.withdrawn", actor=own, payload={"amount": amount},
            postings=[{"account": deposit, "amount": -amount}, {"account": own, "amount": amount}],
        )  # fmt: skip
        meter.deposit -= amount
        meter.save(update_fields=["deposit"])
    return deposit_status(user=user)
