"""Aggregation strategies: Flower 1.42's functions (FedAvg, median, trimmed mean, Krum, Multi-Krum, Bulyan) and
the server step that turns one round's updates into the next global model.

The functions on lists of layer lists reproduce `flwr.server.strategy.aggregate` (checked against Flower's own
outputs in `tests/ml/federated/test_aggregate.py`). `aggregate(...)` applies them to weight deltas: every party
starts from the same global weights, so the median (or trimmed mean, or Krum choice) of `global + delta_i` is
`global + ` that of the deltas. As in Flower, FedAvg and Multi-Krum's average weigh updates by their examples;
median, trimmed mean, Krum and Bulyan ignore them. Where we differ from Flower by design: updates are sorted by
id and summed in float64 so that anyone re-running a round gets the same digest, Krum's exact ties (mutual
nearest neighbours) go to the lowest id by a stable sort, and the new global weights are float32.
"""

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml.federated.tensors import Tensors

Layers = list[np.ndarray]

STRATEGIES = ("fedavg", "fedprox", "fedadam", "median", "trimmed_mean", "krum", "multi_krum", "bulyan")
# Masked updates (secure aggregation) can only be summed, so only these combine with it.
SUM_BASED = frozenset({"fedavg", "fedprox", "fedadam"})
STATEFUL = frozenset({"fedadam"})  # keeps a server state from round to round (Adam's moments)
MAX_COUNT = 10_000  # num_malicious / keep: far above any federation's parties

# Each strategy's options and defaults (Flower's: FedTrimmedAvg beta 0.2, FedAdam eta 0.1, beta_1 0.9,
# beta_2 0.99, tau 1e-9). Multi-Krum's keep defaults to n - num_malicious at aggregation (the paper's m).
_OPTIONS: dict[str, dict[str, Any]] = {
    "fedavg": {},
    "fedprox": {},
    "fedadam": {"server_lr": 0.1, "beta1": 0.9, "beta2": 0.99, "tau": 1e-9},
    "median": {},
    "trimmed_mean": {"trim_beta": 0.2},
    "krum": {"num_malicious": 0},
    "multi_krum": {"num_malicious": 0, "keep": None},
    "bulyan": {"num_malicious": 0},
}


class StrategyError(ValueError):
    """A strategy or options that cannot be used, or updates it cannot aggregate; the message says why."""


# --- Flower's functions, on lists of layer lists -------------------------------------------------------------


def fedavg(layers: list[Layers], num_examples: list[int]) -> Layers:
    """The average of the clients' layers weighted by their example counts (float64)."""
    total = float(sum(num_examples))
    return [
        sum(np.asarray(c[k], dtype=np.float64) * n for c, n in zip(layers, num_examples, strict=True)) / total
        for k in range(len(layers[0]))
    ]


def median(layers: list[Layers]) -> Layers:
    """The coordinate-wise median (example counts ignored, as Flower's FedMedian does)."""
    return [np.median(np.asarray(layer, dtype=np.float64), axis=0) for layer in zip(*layers, strict=True)]


def trimmed_mean(layers: list[Layers], beta: float) -> Layers:
    """The coordinate-wise mean after cutting int(beta * n) values from each end (scipy's trim_mean)."""
    n = len(layers)
    low = int(beta * n)
    high = n - low
    if low >= high:
        raise StrategyError(f"a trimmed mean with beta {beta} of {n} updates leaves nothing")
    out = []
    for layer in zip(*layers, strict=True):
        stacked = np.sort(np.asarray(layer, dtype=np.float64), axis=0)
        out.append(stacked[low:high].mean(axis=0))
    return out


def _flat(layers: list[Layers]) -> np.ndarray:
    return np.array([np.concatenate([np.ravel(a) for a in c]).astype(np.float64) for c in layers])


def krum_scores(layers: list[Layers], num_malicious: int) -> np.ndarray:
    """Each client's Krum score: the sum of squared distances to its n - f - 2 nearest others (at least 1)."""
    flat = _flat(layers)
    # Direct differences, not the Gram-matrix shortcut, which loses digits for near-equal vectors.
    distances = np.array([np.square(flat - row).sum(axis=1) for row in flat])
    closest = max(1, len(layers) - num_malicious - 2)
    scores = np.empty(len(layers))
    for i, row in enumerate(distances):
        others = np.delete(row, i)
        scores[i] = np.sort(others)[:closest].sum()
    return scores


def krum_order(scores: np.ndarray) -> list[int]:
    """Client indices from the lowest score up; ties keep input order (stable), unlike Flower's quicksort."""
    return [int(i) for i in np.argsort(scores, kind="stable")]


def krum(layers: list[Layers], num_malicious: int) -> Layers:
    """The one client's layers with the lowest Krum score."""
    best = krum_order(krum_scores(layers, num_malicious))[0]
    return [np.asarray(a, dtype=np.float64) for a in layers[best]]


def multi_krum(layers: list[Layers], num_examples: list[int], num_malicious: int, keep: int) -> Layers:
    """The example-weighted average of the `keep` lowest-scoring clients (Flower's aggregate_krum, to_keep>0)."""
    best = sorted(krum_order(krum_scores(layers, num_malicious))[:keep])
    return fedavg([layers[i] for i in best], [num_examples[i] for i in best])


def bulyan_select(layers: list[Layers], num_malicious: int) -> list[int]:
    """The n - 2f clients Bulyan keeps: Krum applied repeatedly, each pick removed before the next."""
    n, f = len(layers), num_malicious
    if n < 4 * f + 3:
        raise StrategyError(f"Bulyan with {f} malicious parties needs at least {4 * f + 3} updates, not {n}")
    left = list(range(n))
    chosen = []
    for _ in range(n - 2 * f):
        pick = left[krum_order(krum_scores([layers[i] for i in left], f))[0]]
        chosen.append(pick)
        left.remove(pick)
    return chosen


def bulyan(layers: list[Layers], num_malicious: int) -> Layers:
    """Bulyan (El Mhamdi et al. 2018): per coordinate, the mean of the n - 4f values of the Krum-selected
    clients closest to their median."""
    return bulyan_combine([layers[i] for i in bulyan_select(layers, num_malicious)], num_malicious)


def bulyan_combine(chosen: list[Layers], num_malicious: int) -> Layers:
    """Bulyan's second step over the clients `bulyan_select` kept."""
    beta = len(chosen) - 2 * num_malicious
    out = []
    for k, mid in enumerate(median(chosen)):
        stacked = np.array([np.asarray(c[k], dtype=np.float64) for c in chosen])
        # Which beta values are closest does not depend on the order among them, so a stable sort gives the
        # same set as Flower's argpartition (up to exact ties in distance).
        nearest = np.argsort(np.abs(stacked - mid), axis=0, kind="stable")[:beta]
        out.append(np.take_along_axis(stacked, nearest, axis=0).mean(axis=0))
    return out


# --- Options -------------------------------------------------------------------------------------------------


def _real(options: dict, key: str, low: float, high: float, *, open_low: bool, open_high: bool) -> float:
    value = options[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StrategyError(f"{key} must be a number, not {type(value).__name__}")
    value = float(value) if abs(value) < 1e300 else math.inf
    if not math.isfinite(value):
        raise StrategyError(f"{key} must be a finite number")
    above = value > low if open_low else value >= low
    below = value < high if open_high else value <= high
    if not (above and below):
        bounds = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        raise StrategyError(f"{key} must be in {bounds}, not {value:g}")
    return value


def _count(options: dict, key: str, low: int) -> int:
    value = options[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise StrategyError(f"{key} must be a whole number, not {type(value).__name__}")
    if not low <= value <= MAX_COUNT:
        raise StrategyError(f"{key} must be between {low} and {MAX_COUNT}, not {value}")
    return value


def strategy_check(name: Any, options: Any = None, *, min_parties: int | None = None) -> dict:
    """The strategy's options with defaults filled in, or StrategyError naming what is wrong. With
    `min_parties`, also that the strategy can aggregate that few updates (Bulyan's 4f + 3, Multi-Krum's keep)."""
    if name not in _OPTIONS:
        raise StrategyError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    options = {} if options is None else options
    if not isinstance(options, dict):
        raise StrategyError("the strategy's options must be an object")
    unknown = sorted(str(k) for k in options if k not in _OPTIONS[name])
    if unknown:
        allowed = ", ".join(_OPTIONS[name]) or "none"
        raise StrategyError(f"unknown option(s) for {name}: {', '.join(unknown)} (allowed: {allowed})")
    out = {**_OPTIONS[name], **options}
    if name == "fedadam":
        out["server_lr"] = _real(out, "server_lr", 0, 10, open_low=True, open_high=False)
        out["beta1"] = _real(out, "beta1", 0, 1, open_low=False, open_high=True)
        out["beta2"] = _real(out, "beta2", 0, 1, open_low=False, open_high=True)
        out["tau"] = _real(out, "tau", 0, 1, open_low=True, open_high=False)
    if name == "trimmed_mean":
        out["trim_beta"] = _real(out, "trim_beta", 0, 0.5, open_low=True, open_high=True)
    if "num_malicious" in out:
        out["num_malicious"] = _count(out, "num_malicious", 0)
    if name == "multi_krum" and out["keep"] is not None:
        out["keep"] = _count(out, "keep", 1)
    if min_parties is not None:
        _check_feasible(name, out, min_parties)
    return out


def _check_feasible(name: str, options: dict, n: int) -> None:
    f = options.get("num_malicious", 0)
    if name == "bulyan" and n < 4 * f + 3:
        raise StrategyError(
            f"Bulyan with num_malicious {f} needs at least {4 * f + 3} parties per round, not {n}"
        )
    if name == "multi_krum":
        keep = options["keep"] if options["keep"] is not None else n - f
        if not 1 <= keep <= n:
            raise StrategyError(f"Multi-Krum keeps {keep} updates; a round may have only {n} (min_parties)")
    if name in ("krum", "multi_krum") and f >= n:
        raise StrategyError(f"num_malicious ({f}) must be below the parties per round ({n})")


# --- The server step -----------------------------------------------------------------------------------------


@dataclass
class Update:
    """One party's accepted update: its digest (`tensors.digest`), the weight delta and its example count."""

    id: str
    tensors: Tensors
    num_examples: int


@dataclass
class Aggregated:
    """The new global weights, the update ids used and those left out (id -> reason), and the server's state
    (FedAdam's moments as Tensors, else None)."""

    new_global: Tensors
    included: list[str]
    excluded: dict[str, str]
    server_state: Tensors | None


def _f32(names: list[str], layers: Layers) -> Tensors:
    return {n: np.asarray(a, dtype=np.float64).astype(np.float32) for n, a in zip(names, layers, strict=True)}


def aggregate(
    *, strategy: str, options: dict | None, global_tensors: Tensors, updates: list[Update],
    server_state: Tensors | None = None,
) -> Aggregated:  # fmt: skip
    """The next global model from one round's updates (deltas from `global_tensors`), deterministic: updates
    are taken in id order and summed in float64, so the same inputs give the same `tensors.digest`."""
    options = strategy_check(strategy, options)
    if not updates:
        raise StrategyError("no updates to aggregate")
    names = sorted(global_tensors)
    for u in updates:
        if sorted(u.tensors) != names or any(u.tensors[n].shape != global_tensors[n].shape for n in names):
            raise StrategyError(f"update {u.id[:12]} does not match the global model's tensors")
        if isinstance(u.num_examples, bool) or not isinstance(u.num_examples, int) or u.num_examples < 1:
            raise StrategyError(f"update {u.id[:12]} needs a positive whole number of examples")
    ordered = sorted(updates, key=lambda u: (u.id, u.num_examples))
    layers = [[np.asarray(u.tensors[n], dtype=np.float64) for n in names] for u in ordered]
    counts = [u.num_examples for u in ordered]
    ids = [u.id for u in ordered]
    f = options.get("num_malicious", 0)
    keep_idx = list(range(len(ordered)))
    reasons: dict[int, str] = {}
    if strategy in SUM_BASED:
        delta = fedavg(layers, counts)
    elif strategy == "median":
        delta = median(layers)
    elif strategy == "trimmed_mean":
        delta = trimmed_mean(layers, options["trim_beta"])
    elif strategy in ("krum", "multi_krum"):
        keep = 1 if strategy == "krum" else (options["keep"] or len(layers) - f)
        if not 1 <= keep <= len(layers):
            raise StrategyError(f"Multi-Krum keeps {keep} updates but the round has {len(layers)}")
        scores = krum_scores(layers, f)
        keep_idx = sorted(krum_order(scores)[:keep])
        if strategy == "krum":
            delta = layers[keep_idx[0]]
        else:
            delta = fedavg([layers[i] for i in keep_idx], [counts[i] for i in keep_idx])
        cutoff = max(scores[i] for i in keep_idx)
        for i in set(range(len(layers))) - set(keep_idx):
            reasons[i] = f"outlier: krum score {scores[i]:.6g} above the {keep} kept (at most {cutoff:.6g})"
    else:  # bulyan
        keep_idx = sorted(bulyan_select(layers, f))
        delta = bulyan_combine([layers[i] for i in keep_idx], f)
        scores = krum_scores(layers, f)
        for i in set(range(len(layers))) - set(keep_idx):
            reasons[i] = f"outlier: krum score {scores[i]:.6g}, not among the {len(keep_idx)} Bulyan kept"
    state = None
    if strategy == "fedadam":
        delta, state = _adam(names, delta, server_state, options)
    new = [np.asarray(global_tensors[n], dtype=np.float64) + d for n, d in zip(names, delta, strict=True)]
    return Aggregated(
        new_global=_f32(names, new),
        included=[ids[i] for i in keep_idx],
        excluded={ids[i]: reasons[i] for i in sorted(reasons)},
        server_state=state,
    )


def _f64(state: Tensors, key: str) -> np.ndarray | float:
    return np.asarray(state[key], dtype=np.float64) if key in state else 0.0


def _adam(names: list[str], delta: Layers, state: Tensors | None, options: dict) -> tuple[Layers, Tensors]:
    """Flower's FedAdam server step on the weighted mean delta; returns the step and the new moments."""
    b1, b2 = options["beta1"], options["beta2"]
    state = state or {}
    if state and any(
        state.get(f"{k}.{n}", np.empty(0)).shape != d.shape
        for n, d in zip(names, delta, strict=True)
        for k in "mv"
    ):
        raise StrategyError("the FedAdam server state does not match the model's tensors")
    step = int(state["step"][0]) + 1 if "step" in state else 1
    m = [b1 * _f64(state, f"m.{n}") + (1 - b1) * d for n, d in zip(names, delta, strict=True)]
    v = [b2 * _f64(state, f"v.{n}") + (1 - b2) * d * d for n, d in zip(names, delta, strict=True)]
    # Flower's bias correction counts from server_round + 1, with rounds numbered from 1.
    eta = options["server_lr"] * math.sqrt(1 - b2 ** (step + 1)) / (1 - b1 ** (step + 1))
    # The moments are stored as float32 and read back from that, so a re-run from stored state is exact.
    m32 = [np.asarray(a, dtype=np.float64).astype(np.float32) for a in m]
    v32 = [np.asarray(a, dtype=np.float64).astype(np.float32) for a in v]
    moved = [eta * a.astype(np.float64) / (np.sqrt(b.astype(np.float64)) + options["tau"]) for a, b in
             zip(m32, v32, strict=True)]  # fmt: skip
    new_state = {"step": np.array([step], dtype=np.float32)}
    new_state.update({f"m.{n}": a for n, a in zip(names, m32, strict=True)})
    new_state.update({f"v.{n}": a for n, a in zip(names, v32, strict=True)})
    return moved, new_state
