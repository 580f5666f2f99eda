"""Reads of federations: lists, one federation with the caller's part in it, rounds, a party's submissions."""

import base64

from django.conf import settings
from django.db.models import Count, Prefetch, Q, QuerySet

from federation.models import Federation, Party, Payout, Rejection, Round, SecaggKey, Update
from platform_site.accounts import selectors as accounts_selectors
from platform_site.accounts.models import User
from platform_site.errors import NotFound, PermissionDenied

ID_MAX = 2**63 - 1


def federation_list(*, status: str | None = None, mine: User | None = None) -> QuerySet[Federation]:
    """Federations newest first, with their coordinator and how many parties are admitted."""
    rows = Federation.objects.select_related("coordinator").annotate(
        admitted=Count("parties", filter=Q(parties__status=Party.Status.ADMITTED))
    )
    if status:
        rows = rows.filter(status=status)
    if mine is not None:
        rows = rows.filter(Q(coordinator=mine) | Q(pk__in=party_federation_ids(user=mine)))
    return rows


def federation_get(*, federation_id: int) -> Federation:
    federation = (
        Federation.objects.select_related("coordinator").filter(pk=federation_id).first()
        if 0 < federation_id <= ID_MAX
        else None
    )
    if federation is None:
        raise NotFound(f"no federation {federation_id}")
    return federation


def _owner_q(user: User) -> Q:
    return Q(user=user) | Q(organization_id__in=accounts_selectors.organization_ids_query(user=user))


def party_federation_ids(*, user: User) -> QuerySet:
    return Party.objects.filter(_owner_q(user)).values("federation_id")


def party_for_user(*, federation: Federation, user: User) -> Party | None:
    """The caller's party in the federation: their own, else one of an organization they belong to (an admitted
    one first)."""
    if not user.is_authenticated:
        return None
    parties = list(Party.objects.filter(_owner_q(user), federation=federation))
    order = {Party.Status.ADMITTED: 0, Party.Status.PENDING: 1, Party.Status.REMOVED: 2}
    parties.sort(key=lambda p: (p.user_id is None, order[p.status], p.pk))
    return parties[0] if parties else None


def party_get(*, federation: Federation, party_id: int) -> Party:
    party = (
        Party.objects.filter(federation=federation, pk=party_id).first() if 0 < party_id <= ID_MAX else None
    )
    if party is None:
        raise NotFound(f"no party {party_id} in this federation")
    return party


def party_list(*, federation: Federation) -> QuerySet[Party]:
    return Party.objects.filter(federation=federation).select_related("user", "organization")


def is_coordinator(*, federation: Federation, user: User) -> bool:
    return user.is_authenticated and federation.coordinator_id == user.pk


def may_download(*, federation: Federation, user: User) -> bool:
    """The coordinator and admitted parties read the global weights; nobody else."""
    if is_coordinator(federation=federation, user=user):
        return True
    party = party_for_user(federation=federation, user=user)
    return party is not None and party.status == Party.Status.ADMITTED


def federation_state_get(*, federation_id: int) -> Federation:
    """The federation with only what changes while it runs (status, error), for the look a party's client polls."""
    federation = (
        Federation.objects.only("id", "status", "rounds", "error").filter(pk=federation_id).first()
        if 0 < federation_id <= ID_MAX
        else None
    )
    if federation is None:
        raise NotFound(f"no federation {federation_id}")
    return federation


def rounds_latest_state(*, federation: Federation) -> tuple[Round | None, Round | None]:
    """The current round and the last one aggregated (its metrics), with only what a party's look shows, in
    one query: the aggregated one is the current one (a finished federation) or the one before."""
    fields = (
        "id",
        "federation_id",
        "number",
        "status",
        "global_sha256",
        "deadline",
        "secagg_roster",
        "metrics",
        "weights",
    )
    latest = list(federation.round_set.only(*fields).order_by("-number")[:2])
    closed = next((r for r in latest if r.status == Round.Status.CLOSED), None)
    return (latest[0] if latest else None), closed


def round_weights_inline(*, round: Round) -> str | None:
    """The round's global weights as base64, for a look that brings them along; None when the file is larger
    than FEDERATION_STATE_WEIGHTS_MAX_BYTES (the client then downloads it)."""
    limit = settings.FEDERATION_STATE_WEIGHTS_MAX_BYTES
    with round.weights.open("rb") as fh:
        data = fh.read(limit + 1)
    return base64.b64encode(data).decode("ascii") if len(data) <= limit else None


def round_list(*, federation: Federation) -> QuerySet[Round]:
    return federation.round_set.annotate(submitted=Count("updates")).order_by("number")


def round_get(*, federation: Federation, number: int, submitted: bool = True) -> Round:
    """Round `number`, with how many updates it holds (`submitted`) unless asked without."""
    rounds = federation.round_set.annotate(submitted=Count("updates")) if submitted else federation.round_set
    rnd = rounds.filter(number=number).first() if 0 < number <= 2**31 - 1 else None
    if rnd is None:
        raise NotFound(f"no round {number} in this federation")
    return rnd


def round_require_download(*, federation: Federation, user: User) -> None:
    if not may_download(federation=federation, user=user):
        raise PermissionDenied("only the coordinator and admitted parties may download the global model")


def secagg_state(*, round: Round) -> dict:
    """The round's roster, the X25519 keys published so far, and whether every party of the roster has one."""
    roster = list(round.secagg_roster or [])
    keys = {str(k.party_id): k.public_key for k in SecaggKey.objects.filter(round=round)}
    return {"roster": roster, "keys": keys, "ready": bool(roster) and all(str(p) in keys for p in roster)}


def submissions_for_user(*, federation: Federation, user: User) -> dict:
    """The caller's parties' accepted updates and the refusals of what they sent, newest first."""
    parties = Party.objects.filter(_owner_q(user), federation=federation)
    updates = (
        Update.objects.filter(party__in=parties).select_related("round").order_by("-created_at", "-id")[:500]
    )
    rejections = (
        Rejection.objects.filter(federation=federation)
        .filter(Q(submitted_by=user) | Q(party__in=parties))
        .select_related("round")
        .order_by("-created_at", "-id")[:500]
    )
    return {"updates": list(updates), "rejections": list(rejections)}


def federation_detail(*, federation_id: int) -> Federation:
    """One federation with its parties, rounds (with their updates) and payouts, for its page."""
    federation = federation_get(federation_id=federation_id)
    rounds = (
        Round.objects.annotate(submitted=Count("updates"))
        .order_by("number")
        .prefetch_related(
            Prefetch("updates", queryset=Update.objects.select_related("party__user", "party__organization"))
        )
    )
    return (
        Federation.objects.select_related("coordinator")
        .prefetch_related(
            Prefetch("parties", queryset=Party.objects.select_related("user", "organization")),
            Prefetch("round_set", queryset=rounds),
            Prefetch("payouts", queryset=Payout.objects.select_related("party__user", "party__organization")),
        )
        .get(pk=federation.pk)
    )


def federation_snapshot(*, federation_id: int) -> dict:
    """What the federation's page follows live: its status and each round's status, updates and metrics; the
    `fingerprint` changes whenever any of them does."""
    federation = federation_get(federation_id=federation_id)
    rounds = [
        {"number": r.number, "status": r.status, "submitted": r.submitted, "metrics": r.metrics or {}}
        for r in round_list(federation=federation)
    ]
    parties = list(Party.objects.filter(federation=federation).values_list("pk", "status").order_by("pk"))
    fingerprint = f"{federation.status}|{rounds}|{parties}"
    import hashlib

    return {
        "status": federation.status,
        "rounds": rounds,
        "fingerprint": hashlib.sha256(fingerprint.encode()).hexdigest()[:16],
    }
