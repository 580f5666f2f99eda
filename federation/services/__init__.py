"""Every write of federated learning. Views, APIs, tasks and other apps import this package
(`from federation import services`); the modules behind it may move."""

from federation.services.deadlines import round_due, rounds_due
from federation.services.endings import federation_fail, federation_finish, reward_split
from federation.services.federations import (
    federation_create,
    party_admit,
    party_join,
    party_remove,
    schema_from_rows,
)
from federation.services.rounds import (
    federation_start,
    round_aggregate_run,
    round_aggregation_failed,
    round_open,
    round_recompute,
    target_reached,
)
from federation.services.updates import secagg_key_submit, update_submit

__all__ = [
    "federation_create",
    "federation_fail",
    "federation_finish",
    "federation_start",
    "party_admit",
    "party_join",
    "party_remove",
    "reward_split",
    "round_aggregate_run",
    "round_aggregation_failed",
    "round_due",
    "round_open",
    "round_recompute",
    "rounds_due",
    "schema_from_rows",
    "secagg_key_submit",
    "target_reached",
    "update_submit",
]
