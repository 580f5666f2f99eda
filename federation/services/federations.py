"""Creating a federation (its reward pool escrowed) and its membership: joins, admissions, removals. Each write
is one durable transaction with its ledger entry."""

import hashlib
import io
import math
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from federation.models import Federation, Party
from federation.services.common import (
    HEADER_SLACK,
    METRICS,
    STRATEGY_NAMES,
    SUM_BASED,
    content_hash,
    federation_changed,
    figure,
    float_check,
    int_check,
)
from ledger import services as ledger
from platform_site.accounts import selectors as accounts_selectors
from platform_site.accounts.models import User
from platform_site.errors import Conflict, DomainError, NotFound, PermissionDenied, TooManyRequests

MAX_ROUNDS = 1_000
MAX_PARTIES = 1_000
DEADLINE_RANGE = (10, 30 * 24 * 3600)  # seconds a round may stay open
NORM_BOUND_MAX = 1e6


def _json_object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise DomainError(f"{what} must be a JSON object")
    return value


def _check_schema(schema: Any):
    from ml.features import FeatureError, FeatureSchema

    try:
        return FeatureSchema.from_json(schema)
    except FeatureError as exc:
        raise DomainError(f"schema: {exc}") from None


def _check_spec(spec: Any, schema) -> dict:
    """The MLP spec, its input and output widths and task filled from the schema when left out, and checked."""
    from ml.architecture import SpecError, validate_spec

    spec = dict(_json_object(spec, "spec"))
    outputs = len(schema.classes) if schema.task == "classification" else 1
    spec.setdefault("input_width", schema.n_features)
    spec.setdefault("output_width", outputs)
    spec.setdefault("task", schema.task)
    try:
        spec = validate_spec(spec)
    except SpecError as exc:
        raise DomainError(f"spec: {exc}") from None
    if spec["input_width"] != schema.n_features:
        raise DomainError(f"spec: input_width must be {schema.n_features}, the schema's number of features")
    if spec["task"] != schema.task or spec["output_width"] != outputs:
        raise DomainError(f"spec: a {schema.task} model of this schema has task {schema.task!r} and "
                          f"output_width {outputs}")  # fmt: skip
    return spec


def _check_recipe(recipe: Any) -> dict:
    from ml.federated import local

    recipe = _json_object(recipe, "recipe")
    try:
        checked = local.recipe_check(recipe)
    except ValueError as exc:
        raise DomainError(f"recipe: {exc}") from None
    return dict(checked) if isinstance(checked, dict) else dict(recipe)


def _check_strategy(strategy: Any, options: Any, secure_aggregation: bool, min_parties: int) -> dict:
    from ml.federated import aggregate

    if strategy not in STRATEGY_NAMES:
        raise DomainError(f"strategy must be one of {', '.join(STRATEGY_NAMES)}, not {strategy!r}"[:300])
    if secure_aggregation and strategy not in SUM_BASED:
        raise DomainError(
            f"secure aggregation hides each update behind masks that cancel only in the sum, so the server "
            f"never sees an update alone; {strategy} must look at every update one by one (to rank or trim "
            f"them), so it works only without secure aggregation. Use {', '.join(SUM_BASED)} with it."
        )
    options = _json_object(options if options is not None else {}, "options")
    try:
        checked = aggregate.strategy_check(strategy, options, min_parties=min_parties)
    except ValueError as exc:
        raise DomainError(f"options: {exc}") from None
    return dict(checked) if isinstance(checked, dict) else dict(options)


def _check_privacy(privacy: Any) -> dict | None:
    if privacy in (None, {}):
        return None
    from ml.federated import privacy as fl_privacy

    privacy = _json_object(privacy, "privacy")
    try:
        checked = fl_privacy.privacy_check(privacy)
    except ValueError as exc:
        raise DomainError(f"privacy: {exc}") from None
    return dict(checked) if isinstance(checked, dict) else dict(privacy)


def _check_noisy_bound(privacy: dict | None, spec: dict, bound: float) -> None:
    """Parties add Gaussian noise after clipping: the bound must leave room for it, or honest updates fail."""
    if privacy is None:
        return
    from ml.architecture import parameter_count
    from ml.federated import privacy as fl_privacy

    needed = fl_privacy.noisy_norm_bound(
        clip_norm=privacy["clip_norm"],
        noise_multiplier=privacy["noise_multiplier"],
        n_params=parameter_count(spec),
    )
    if bound < needed:
        raise DomainError(
            f"update_norm_bound {bound:g} is below {needed:.6g}, the norm a clipped and noised update of this model "
            "can reach (clip_norm plus the noise); raise the bound or lower clip_norm or noise_multiplier"
        )


def _check_target(schema, target_metric: Any, target_value: Any) -> tuple[str, float | None]:
    allowed = METRICS[schema.task]
    if target_metric not in allowed:
        raise DomainError(
            f"target_metric for {schema.task} is one of {', '.join(allowed)}, not {target_metric!r}"[:300]
        )
    if target_value is None:
        return target_metric, None
    return target_metric, float_check(target_value, "target_value", -1e12, 1e12)


def _read_validation(file: Any, schema) -> tuple[bytes, int]:
    """The coordinator's validation rows (CSV), size-limited, read here so that junk is a 400: every input
    column and the target must be there, and the rows must turn into features."""
    from ml.federated import local
    from ml.tabular import TabularError, read_table

    if file is None:
        raise DomainError("upload the validation data: a CSV with the schema's columns and its target")
    limit = settings.FEDERATION_VALIDATION_MAX_BYTES
    if getattr(file, "size", 0) and file.size > limit:
        raise DomainError(f"the validation file is larger than {limit:,} bytes")
    data = file.read(limit + 1)
    if len(data) > limit:
        raise DomainError(f"the validation file is larger than {limit:,} bytes")
    if not data:
        raise DomainError("the validation file is empty")
    max_rows = settings.FEDERATION_VALIDATION_MAX_ROWS
    try:
        table = read_table(io.BytesIO(data), fmt="csv", max_rows=max_rows)
    except (TabularError, UnicodeDecodeError, ValueError, OverflowError) as exc:
        raise DomainError(f"the validation file cannot be read: {exc}") from None
    if table.truncated:
        raise DomainError(f"the validation file has more than {max_rows:,} rows")
    if table.n_rows < 2:
        raise DomainError("the validation file needs at least 2 rows")
    missing = [c for c in [*schema.input_columns, schema.target["name"]] if c not in table.columns]
    if missing:
        raise DomainError(f"the validation file lacks the column(s) {', '.join(missing[:10])}"[:300])
    try:
        X, _y = local.task_xy(schema, table)
    except (ValueError, OverflowError) as exc:
        raise DomainError(f"the validation rows do not fit the schema: {exc}") from None
    if X.size and not all(math.isfinite(float(v)) for v in (X.min(), X.max())):
        raise DomainError("the validation rows hold numbers too large to compute with")
    return data, table.n_rows


def federation_create(
    *,
    coordinator: User,
    name: str,
    description: str = "",
    schema: Any,
    spec: Any,
    recipe: Any,
    strategy: str,
    options: Any = None,
    privacy: Any = None,
    secure_aggregation: bool = False,
    update_norm_bound: Any,
    rounds: Any,
    min_parties: Any,
    round_deadline: Any,
    target_metric: str,
    target_value: Any = None,
    reward_pool: Any = 0,
    seed: Any = 0,
    contribution_method: str = "loo",
    validation: Any,
) -> Federation:
    """A federation in recruitment, its reward pool escrowed from the coordinator's account and a
    `federation.created` entry, in one transaction. Every setting is checked first (a 400 naming it); secure
    aggregation is refused with the strategies that need to see each update alone."""
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise DomainError("name the federation (1 to 200 characters)")
    checked_schema = _check_schema(schema)
    checked_spec = _check_spec(spec, checked_schema)
    checked_recipe = _check_recipe(recipe)
    rounds = int_check(rounds, "rounds", 1, MAX_ROUNDS)
    min_parties = int_check(min_parties, "min_parties", 1, MAX_PARTIES)
    checked_options = _check_strategy(strategy, options, bool(secure_aggregation), min_parties)
    checked_privacy = _check_privacy(privacy)
    bound = float_check(update_norm_bound, "update_norm_bound", 0.0, NORM_BOUND_MAX, low_open=True)
    _check_noisy_bound(checked_privacy, checked_spec, bound)
    round_deadline = int_check(round_deadline, "round_deadline (seconds)", *DEADLINE_RANGE)
    target_metric, target_value = _check_target(checked_schema, target_metric, target_value)
    reward_pool = int_check(reward_pool, "reward_pool (minor units)", 0, ledger.AMOUNT_MAX)
    seed = int_check(seed, "seed", 0, 2**31 - 1)
    if contribution_method not in ("loo", "shapley"):
        raise DomainError('contribution_method is "loo" (leave-one-out) or "shapley" (Monte-Carlo Shapley)')
    from ml.architecture import parameter_count

    per_number = 8 if secure_aggregation else 4  # masked updates are uint64 fixed point
    max_update_bytes = parameter_count(checked_spec) * per_number + HEADER_SLACK
    if max_update_bytes > settings.FEDERATION_UPDATE_MAX_BYTES:
        raise DomainError(f"the model's updates would be {max_update_bytes:,} bytes; the platform takes at most "
                          f"{settings.FEDERATION_UPDATE_MAX_BYTES:,}")  # fmt: skip
    data, n_rows = _read_validation(validation, checked_schema)
    account = ledger.account_name(user=coordinator)
    limit = settings.FEDERATION_MAX_ACTIVE_PER_USER
    with transaction.atomic(durable=True):  # the federation, its escrowed pool and its entry
        # The coordinator's row locked: parallel creations by one user are counted one after the other.
        User.objects.select_for_update().filter(pk=coordinator.pk).first()
        active = Federation.objects.filter(coordinator=coordinator, status__in=Federation.ACTIVE).count()
        if limit and active >= limit:
            raise TooManyRequests(f"you already coordinate {limit} active federations, the most one user may")
        federation = Federation(
            coordinator=coordinator, name=name.strip(), description=description or "",
            schema=checked_schema.to_json(), spec=checked_spec, recipe=checked_recipe, strategy=strategy,
            options=checked_options, privacy=checked_privacy, secure_aggregation=bool(secure_aggregation),
            update_norm_bound=bound, max_update_bytes=max_update_bytes, rounds=rounds, min_parties=min_parties,
            round_deadline=round_deadline, target_metric=target_metric, target_value=target_value,
            contribution_method=contribution_method, seed=seed, reward_pool=reward_pool,
            fee_bp=settings.FEDERATION_FEE_BP, validation_sha256=hashlib.sha256(data).hexdigest(),
            validation_rows=n_rows,
        )  # fmt: skip
        federation.validation.save("validation.csv", ContentFile(data), save=False)
        federation.save()
        if reward_pool:
            try:
                escrow = ledger.escrow_open(
                    payer=account, payee=account, amount=reward_pool, actor=account,
                    condition=f"federation {federation.pk} pays its parties by contribution when it finishes",
                )  # fmt: skip
            except ledger.InsufficientFunds as exc:
                raise exc.to_owner(what="the reward pool is") from exc
            federation.escrow_id = escrow.pk
        entry = ledger.entry_append(
            kind="federation.created",
            actor=account,
            payload={
                "federation": federation.pk, "name": federation.name, "coordinator": account,
                "schema_hash": content_hash(federation.schema), "spec": figure(checked_spec),
                "recipe": figure(checked_recipe), "strategy": strategy, "options": figure(checked_options),
                "privacy": figure(checked_privacy), "secure_aggregation": federation.secure_aggregation,
                "update_norm_bound": figure(bound), "rounds": rounds, "min_parties": min_parties,
                "round_deadline": round_deadline, "target_metric": target_metric,
                "target_value": figure(target_value), "reward_pool": reward_pool, "fee_bp": federation.fee_bp,
                "escrow": federation.escrow_id, "validation_sha256": federation.validation_sha256,
                "contribution_method": contribution_method, "seed": seed,
            },
        )  # fmt: skip
        federation.created_seq = entry.seq
        federation.save(update_fields=["escrow_id", "created_seq"])
    return federation


def _key_owner(*, user: User, key_id: Any):
    """The caller's active key `key_id` (theirs, or an organization's they belong to); a 400/403 otherwise."""
    if not isinstance(key_id, str) or not key_id:
        raise DomainError("give the key_id of your registered Ed25519 key")
    key = accounts_selectors.public_key_get_by_key_id(key_id=key_id, active_only=True)
    if key is None:
        raise DomainError(f"no active key {key_id!r}: register your Ed25519 public key first"[:300])
    if key.user_id is not None and key.user_id != user.pk:
        raise PermissionDenied("that key is not yours")
    if (
        key.organization_id is not None
        and key.organization_id not in accounts_selectors.organization_ids_for_user(user=user)
    ):
        raise PermissionDenied("that key belongs to an organization you are not a member of")
    return key


def party_join(*, federation: Federation, user: User, key_id: str) -> Party:
    """Ask to join with a registered key: the party is the key's owner (the caller, or an organization of
    theirs), pending until the coordinator admits it; a `federation.party.joined` entry."""
    key = _key_owner(user=user, key_id=key_id)
    if not federation.is_active:
        raise Conflict(f"the federation is {federation.status}; it takes no new parties")
    if key.user_id is not None and key.user_id == federation.coordinator_id:
        raise DomainError("the coordinator does not join its own federation as a party")
    limit = settings.FEDERATION_MAX_PENDING_JOINS
    try:
        with transaction.atomic(durable=True):  # the party and its entry
            # The caller's row locked: parallel joins by one user are counted one after the other.
            User.objects.select_for_update().filter(pk=user.pk).first()
            if (
                limit
                and Party.objects.filter(requested_by=user, status=Party.Status.PENDING).count() >= limit
            ):
                raise TooManyRequests(
                    f"you already have {limit} join requests waiting, the most one user may"
                )
            owner = {"user_id": key.user_id} if key.user_id else {"organization_id": key.organization_id}
            if Party.objects.filter(federation=federation, **owner).exists():
                raise Conflict("this owner has already asked to join this federation")
            party = Party.objects.create(federation=federation, key_id=key.key_id, requested_by=user, **owner)
            entry = ledger.entry_append(
                kind="federation.party.joined",
                actor=party.owner_label,
                payload={"federation": federation.pk, "party": party.pk, "owner": party.owner_label,
                         "key_id": key.key_id},
            )  # fmt: skip
            party.joined_seq = entry.seq
            party.save(update_fields=["joined_seq"])
            federation_changed(federation.pk)
    except IntegrityError:  # a twin request won the unique constraint
        raise Conflict("this owner has already asked to join this federation") from None
    return party


def _require_coordinator(federation: Federation, actor: User) -> None:
    if federation.coordinator_id != actor.pk:
        raise PermissionDenied("only the federation's coordinator may do this")


def party_admit(*, federation: Federation, party_id: int, actor: User) -> Party:
    """The coordinator admits a pending party (`federation.party.admitted`); when the admitted parties reach the
    minimum, the federation starts: round 1 opens with the initial model, in the same transaction."""
    from federation.services.rounds import federation_start

    _require_coordinator(federation, actor)
    with transaction.atomic(durable=True):  # the admission, its entry, and the first round when it starts
        # Locked: admissions racing each other start the federation once.
        federation = Federation.objects.select_for_update().get(pk=federation.pk)
        party = Party.objects.select_for_update().filter(federation=federation, pk=party_id).first()
        if party is None:
            raise NotFound(f"no party {party_id} in this federation")
        if not federation.is_active:
            raise Conflict(f"the federation is {federation.status}")
        if party.status != Party.Status.PENDING:
            raise Conflict(f"the party is {party.status}, not pending")
        party.status = Party.Status.ADMITTED
        entry = ledger.entry_append(
            kind="federation.party.admitted",
            actor=ledger.account_name(user=actor),
            payload={"federation": federation.pk, "party": party.pk, "owner": party.owner_label},
        )
        party.admitted_seq = entry.seq
        party.save(update_fields=["status", "admitted_seq"])
        federation_changed(federation.pk)
        admitted = Party.objects.filter(federation=federation, status=Party.Status.ADMITTED).count()
        if federation.status == Federation.Status.RECRUITING and admitted >= federation.min_parties:
            federation_start(federation=federation, actor=ledger.account_name(user=actor))
    return party


def party_remove(*, federation: Federation, party_id: int, actor: User) -> Party:
    """The coordinator removes a party (pending or admitted): `federation.party.removed`. Its accepted updates
    stay in their rounds; it submits no more."""
    _require_coordinator(federation, actor)
    with transaction.atomic(durable=True):  # the removal and its entry
        party = Party.objects.select_for_update().filter(federation=federation, pk=party_id).first()
        if party is None:
            raise NotFound(f"no party {party_id} in this federation")
        if party.status == Party.Status.REMOVED:
            raise Conflict("the party is removed already")
        party.status = Party.Status.REMOVED
        entry = ledger.entry_append(
            kind="federation.party.removed",
            actor=ledger.account_name(user=actor),
            payload={"federation": federation.pk, "party": party.pk, "owner": party.owner_label},
        )
        party.removed_seq = entry.seq
        party.save(update_fields=["status", "removed_seq"])
        federation_changed(federation.pk)
    return party
