"""Every write of federated learning. Views, APIs, tasks and other apps import this package
(`from federation import services`); the modules behind it may move."""

from federation.services.federations import federation_create, party_admit, party_join, party_remove
from federation.services.rounds import (
    federation_fail,
    federation_finish,
    federation_start,
    reward_split,
    round_aggregate_run,
    round_aggregation_failed,
    round_due,
    round_open,
    round_recompute,
    rounds_due,
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
    "secagg_key_submit",
    "target_reached",
    "update_submit",
]
