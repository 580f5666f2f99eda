"""Parties' submissions: signed updates (checked, stored and ledgered, or refused with a ledgered rejection) and,
under secure aggregation, the signed X25519 keys they mask with."""

import base64
import binascii
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from federation import protocol
from federation.models import Federation, Party, Rejection, Round, SecaggKey, Update
from federation.services.common import (
    federation_changed,
    figure,
    finite_metrics,
    float_check,
    int_check,
    shapes,
    tensors_save,
)
from federation.services.rounds import round_complete, round_start_aggregation
from ledger import services as ledger
from platform_site.accounts import selectors as accounts_selectors
from platform_site.accounts.models import User
from platform_site.errors import Conflict, DomainError, PermissionDenied, TooManyRequests

MAX_EXAMPLES = 10**12


@dataclass
class _Refused(Exception):
    error: DomainError
    round: Round | None = None
    party: Party | None = None
    sha256: str = ""


def _refuse(error: DomainError, **where: Any) -> _Refused:
    return _Refused(error, **where)


def _rejections_cap(user: User) -> None:
    """A user whose updates keep being refused is answered 429 without more ledger entries."""
    limit = settings.FEDERATION_MAX_REJECTIONS_PER_HOUR
    since = timezone.now() - timedelta(hours=1)
    if limit and Rejection.objects.filter(submitted_by=user, created_at__gte=since).count() >= limit:
        raise TooManyRequests(
            f"{limit} of your updates were refused in the last hour; fix your client and try again later",
            retry_after=600,
        )


def _record_rejection(*, federation: Federation, user: User, key_id: str, refused: _Refused) -> Rejection:
    error = refused.error
    with transaction.atomic(durable=True):  # the rejection and its entry
        rejection = Rejection.objects.create(
            federation=federation, round=refused.round, party=refused.party, submitted_by=user,
            key_id=str(key_id or "")[:100], sha256=refused.sha256, reason=error.message[:2000],
            status_code=error.status_code,
        )  # fmt: skip
        entry = ledger.entry_append(
            kind="federation.update.rejected",
            actor=ledger.account_name(user=user),
            payload={
                "federation": federation.pk, "round": refused.round.number if refused.round else None,
                "party": refused.party.pk if refused.party else None, "key_id": rejection.key_id,
                "sha256": refused.sha256 or None, "reason": rejection.reason, "status": error.status_code,
            },
        )  # fmt: skip
        rejection.entry_seq = entry.seq
        rejection.save(update_fields=["entry_seq"])
    return rejection


def _party_of_key(federation: Federation, user: User, key_id: Any):
    """(key, admitted party) for a signing key the caller may use; refused otherwise."""
    if not isinstance(key_id, str) or not key_id:
        raise _refuse(DomainError("the update names no key_id: sign it with your registered Ed25519 key"))
    key = accounts_selectors.public_key_get_by_key_id(key_id=key_id, active_only=True)
    if key is None:
        raise _refuse(DomainError(f"no active key {key_id[:16]!r}: the key is unknown or revoked"))
    mine = key.user_id == user.pk or (
        key.organization_id is not None
        and key.organization_id in accounts_selectors.organization_ids_for_user(user=user)
    )
    if not mine:
        raise _refuse(PermissionDenied("that key is neither yours nor an organization's you belong to"))
    owner = {"user_id": key.user_id} if key.user_id else {"organization_id": key.organization_id}
    party = Party.objects.filter(federation=federation, **owner).first()
    if party is None or party.status != Party.Status.ADMITTED:
        state = "not a party" if party is None else f"a {party.status} party"
        raise _refuse(PermissionDenied(f"the key's owner is {state} of this federation, not an admitted one"),
                      party=party)  # fmt: skip
    return key, party


def _open_round(federation: Federation, number: Any, party: Party) -> Round:
    if isinstance(number, bool) or not isinstance(number, int) or not 0 < number <= 2**31 - 1:
        raise _refuse(DomainError("the round is a positive whole number"), party=party)
    rnd = Round.objects.filter(federation=federation, number=number).first()
    if rnd is None or rnd.status != Round.Status.OPEN or federation.status != Federation.Status.RUNNING:
        current = Round.objects.filter(federation=federation).order_by("-number").first()
        where = f"round {number} is {rnd.status}" if rnd else f"there is no round {number}"
        now = (
            f"; the open round is {current.number}"
            if current is not None and current.status == Round.Status.OPEN
            else "; no round is open"
        )
        raise _refuse(Conflict(f"{where}{now}: updates go to the open round only"), round=rnd, party=party)
    return rnd


def update_submit(
    *,
    federation: Federation,
    number: int,
    user: User,
    file: Any,
    num_examples: Any,
    metrics: Any,
    key_id: str,
    signature: str | None,
    norm_bound: Any = None,
) -> Update:
    """Accept a party's update to the open round `number`: the file's tensors checked against the model (names,
    shapes, float32, finite, norm within the bound, size within the limit), its digest recomputed here and the
    Ed25519 signature checked over it, then stored and ledgered (`federation.update.accepted`) under the round's
    lock; a second update or a closed round is a 409. Every refusal is kept and ledgered
    (`federation.update.rejected`) before it is raised. When every expected party is in, the aggregation job
    is queued. Past FEDERATION_MAX_REJECTIONS_PER_HOUR refusals, a refusal is a 429 and no more are ledgered."""
    try:
        return _update_accept(
            federation=federation, number=number, user=user, file=file, num_examples=num_examples,
            metrics=metrics, key_id=key_id, signature=signature, norm_bound=norm_bound,
        )  # fmt: skip
    except _Refused as refused:
        _rejections_cap(user)
        _record_rejection(federation=federation, user=user, key_id=key_id, refused=refused)
        raise refused.error from None


def _read_file(file: Any, limit: int, where: dict) -> bytes:
    if file is None:
        raise _refuse(DomainError("attach the update file (safetensors)"), **where)
    if getattr(file, "size", 0) and file.size > limit:
        raise _refuse(DomainError(f"the update is {file.size:,} bytes; the limit is {limit:,}"), **where)
    data = file.read(limit + 1)
    if len(data) > limit:
        raise _refuse(DomainError(f"the update is larger than the limit of {limit:,} bytes"), **where)
    return data


def _update_accept(
    *, federation: Federation, number: Any, user: User, file: Any, num_examples: Any, metrics: Any, key_id: Any,
    signature: Any, norm_bound: Any,
) -> Update:  # fmt: skip
    from ml.federated import tensors

    key, party = _party_of_key(federation, user, key_id)
    rnd = _open_round(federation, number, party)
    where: dict[str, Any] = {"round": rnd, "party": party}
    try:
        num_examples = int_check(num_examples, "num_examples", 1, MAX_EXAMPLES)
        metrics = finite_metrics(metrics)
    except DomainError as exc:
        raise _refuse(exc, **where) from None
    masked = federation.secure_aggregation
    attested = None
    if masked:
        if norm_bound in (None, ""):
            raise _refuse(
                DomainError("a masked update attests the norm bound it enforced (norm_bound)"), **where
            )
        try:
            attested = float_check(norm_bound, "norm_bound", 0.0, federation.update_norm_bound, low_open=True)
        except DomainError as exc:
            raise _refuse(DomainError(f"{exc.message} (the federation's bound)"), **where) from None
        if party.pk not in (rnd.secagg_roster or []):
            raise _refuse(
                Conflict(f"this party is not in round {rnd.number}'s secure-aggregation roster"), **where
            )
    data = _read_file(file, federation.max_update_bytes, where)
    try:
        if masked:
            from ml.federated import secagg

            decoded = secagg.decode_masked(
                data, shapes=shapes(federation.spec), max_bytes=federation.max_update_bytes
            )
            digest = secagg.masked_digest(decoded)
        else:
            decoded = tensors.decode(
                data, shapes=shapes(federation.spec), max_bytes=federation.max_update_bytes,
                norm_bound=federation.update_norm_bound,
            )  # fmt: skip
            digest = tensors.digest(decoded)
    except ValueError as exc:  # tensors.UpdateError (and secagg's) say which tensor and why
        raise _refuse(DomainError(str(exc)), **where) from None
    where["sha256"] = digest
    if not isinstance(signature, str) or not signature:
        raise _refuse(DomainError("the update carries no signature"), **where)
    message = protocol.update_message(
        federation=federation.pk, round=rnd.number, sha256=digest, num_examples=num_examples, masked=masked,
        norm_bound=attested,
    )  # fmt: skip
    if not protocol.verify(bytes(key.raw), message, signature):
        raise _refuse(
            DomainError(
                f"the signature does not match this update (digest {digest}, {num_examples} examples, round "
                f"{rnd.number}) under key {key.key_id}"
            ),
            **where,
        )
    stored = tensors_save("updates", data)
    try:
        with transaction.atomic(durable=True):  # the update, its entry, and the aggregation it completes
            # Locked: parallel submissions to one round are taken one at a time, so each sees the others; in
            # the order every writer takes (the federation, then the round): locking both in one joined query
            # deadlocked against a rejection's insert, whose foreign keys lock the federation, then the round.
            locked = Federation.objects.select_for_update().get(pk=federation.pk)
            rnd = Round.objects.select_for_update().get(pk=rnd.pk)
            rnd.federation = locked
            if rnd.status != Round.Status.OPEN:
                raise _refuse(Conflict(f"round {rnd.number} closed while the update was checked"), **where)
            if Update.objects.filter(round=rnd, party=party).exists():  # before the ledger's lock is taken
                raise _refuse(
                    Conflict(f"this party has already submitted its update to round {rnd.number}"), **where
                )
            entry = ledger.entry_append(
                kind="federation.update.accepted",
                actor=party.owner_label,
                payload={
                    "federation": federation.pk, "round": rnd.number, "party": party.pk, "sha256": digest,
                    "num_examples": num_examples, "masked": masked, "norm_bound": figure(attested),
                    "metrics": figure(metrics), "key_id": key.key_id, "signature": signature,
                },
            )  # fmt: skip
            # The entry first, so that the update is written once, with its entry's seq (one transaction).
            update = Update.objects.create(
                round=rnd, party=party, sha256=digest, num_examples=num_examples, metrics=metrics, masked=masked,
                norm_bound=attested, file=stored, size=len(data), key_id=key.key_id, signature=signature,
                entry_seq=entry.seq,
            )  # fmt: skip
            federation_changed(federation.pk, wakes_parties=False)
            _charge_privacy(federation, party)
            if round_complete(rnd):
                round_start_aggregation(rnd=rnd)
    except IntegrityError:  # the unique (round, party) constraint: a twin submission won
        from django.core.files.storage import default_storage

        default_storage.delete(stored)
        raise _refuse(
            Conflict(f"this party has already submitted its update to round {rnd.number}"), **where
        ) from None
    except BaseException:
        from django.core.files.storage import default_storage

        default_storage.delete(stored)
        raise
    return update


def _charge_privacy(federation: Federation, party: Party) -> None:
    """Under differential privacy, the party's ε after the rounds it has now trained in (RDP accountant)."""
    if not federation.privacy:
        return
    from ml.federated import privacy

    rounds = Update.objects.filter(round__federation=federation, party=party).count()
    party.epsilon_spent = float(
        privacy.epsilon_spent(
            noise_multiplier=federation.privacy["noise_multiplier"],
            rounds=rounds,
            delta=federation.privacy["delta"],
        )
    )
    party.save(update_fields=["epsilon_spent"])


def _x25519_check(public_key: Any) -> str:
    if not isinstance(public_key, str):
        raise DomainError("public_key is the X25519 public key, base64")
    try:
        raw = base64.b64decode(public_key, validate=True)
    except (binascii.Error, ValueError):
        raise DomainError("public_key is not base64") from None
    if len(raw) != 32:
        raise DomainError("an X25519 public key is 32 bytes")
    return public_key


def secagg_key_submit(
    *, federation: Federation, number: int, user: User, key_id: str, public_key: str, signature: str
) -> SecaggKey:
    """Publish a party's X25519 key for masking in round `number`, signed with its Ed25519 key over
    `protocol.secagg_key_message`; once every party of the roster has one, the round's masks can be made."""
    if not federation.secure_aggregation:
        raise Conflict("this federation does not use secure aggregation")
    public_key = _x25519_check(public_key)
    try:
        key, party = _party_of_key(federation, user, key_id)
        rnd = _open_round(federation, number, party)
    except _Refused as refused:
        raise refused.error from None
    if party.pk not in (rnd.secagg_roster or []):
        raise Conflict(f"this party is not in round {rnd.number}'s secure-aggregation roster")
    message = protocol.secagg_key_message(federation=federation.pk, round=rnd.number, public_key=public_key)
    if not isinstance(signature, str) or not protocol.verify(bytes(key.raw), message, signature):
        raise DomainError("the signature does not match this key publication")
    try:
        with transaction.atomic(durable=True):  # the key and its entry
            row = SecaggKey.objects.create(
                round=rnd, party=party, public_key=public_key, key_id=key.key_id, signature=signature
            )
            entry = ledger.entry_append(
                kind="federation.secagg.key_published",
                actor=party.owner_label,
                payload={"federation": federation.pk, "round": rnd.number, "party": party.pk,
                         "x25519": public_key, "key_id": key.key_id, "signature": signature},
            )  # fmt: skip
            row.entry_seq = entry.seq
            row.save(update_fields=["entry_seq"])
    except IntegrityError:
        raise Conflict(f"this party has already published its key for round {rnd.number}") from None
    return row
