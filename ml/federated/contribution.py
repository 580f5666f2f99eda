"""Each party's contribution to the validation metric, measured over the rounds' stored updates, and the
integer weights its reward and royalty shares follow.

A round's value for a coalition S of its parties is the validation metric of the model aggregated from S's
updates alone, starting from that round's global model (the empty coalition leaves it unchanged); a party's
contribution is the sum over rounds of its leave-one-out difference, or of its Monte-Carlo Shapley value
(seeded random permutations, marginal gains averaged) — the per-round reconstruction of Song et al. 2019 and
GTG-Shapley, which needs no retraining. Coalitions are aggregated with the federation's strategy; FedAdam's
server step is left out (its state belongs to the whole history), and a robust strategy that cannot take so
few updates (Bulyan's 4f + 3, Multi-Krum's keep) falls back to FedAvg for that coalition.
"""

import math
from collections.abc import Callable, Hashable, Iterable
from fractions import Fraction

import numpy as np

from ml.federated.aggregate import SUM_BASED, StrategyError, Update, aggregate
from ml.federated.tensors import Tensors

METHODS = ("loo", "shapley")
WEIGHT_TOTAL = 10_000

Round = tuple[Tensors, list[tuple[Hashable, Update]]]


def _value(
    glob: Tensors, members: list[Update], evaluate: Callable[[Tensors], float], strategy: str, options: dict
) -> float:
    if not members:
        return float(evaluate(glob))
    name = "fedavg" if strategy in SUM_BASED else strategy
    try:
        out = aggregate(strategy=name, options=options if name == strategy else {}, global_tensors=glob,
                        updates=members)  # fmt: skip
    except StrategyError:
        out = aggregate(strategy="fedavg", options={}, global_tensors=glob, updates=members)
    return float(evaluate(out.new_global))


def contributions(
    *, rounds: list[Round], evaluate: Callable[[Tensors], float], strategy: str, options: dict | None = None,
    method: str = "loo", permutations: int = 20, seed: int = 0,
) -> dict[Hashable, float]:  # fmt: skip
    """Each party's contribution summed over the rounds (higher is better: `evaluate` returns a metric to
    maximise, e.g. accuracy or -loss). Deterministic for a seed."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if isinstance(permutations, bool) or not isinstance(permutations, int) or not 1 <= permutations <= 10_000:
        raise ValueError("permutations must be a whole number from 1 to 10000")
    options = dict(options or {})
    rng = np.random.default_rng(seed)
    scores: dict[Hashable, float] = {}
    for glob, members in rounds:
        by_key = dict(members)
        keys = sorted(by_key, key=str)
        cache: dict[frozenset, float] = {}

        def value(coalition: frozenset, glob=glob, by_key=by_key, cache=cache) -> float:
            if coalition not in cache:
                chosen = [by_key[k] for k in sorted(coalition, key=str)]
                cache[coalition] = _value(glob, chosen, evaluate, strategy, options)
            return cache[coalition]

        everyone = frozenset(keys)
        for k in keys:
            scores.setdefault(k, 0.0)
        if method == "loo":
            full = value(everyone)
            for k in keys:
                scores[k] += full - value(everyone - {k})
            continue
        gains = dict.fromkeys(keys, 0.0)
        for _ in range(permutations):
            coalition: frozenset = frozenset()
            before = value(coalition)
            for i in rng.permutation(len(keys)):
                coalition = coalition | {keys[i]}
                after = value(coalition)
                gains[keys[i]] += after - before
                before = after
        for k in keys:
            scores[k] += gains[k] / permutations
    return scores


def weights(
    scores: dict[Hashable, float], *, excluded: Iterable[Hashable] = (), total: int = WEIGHT_TOTAL
) -> dict[Hashable, int]:
    """Non-negative integer weights adding up to exactly `total` in proportion to the positive scores (largest
    remainders, ties to the first key); excluded parties and scores <= 0 or not finite get 0. All zero when no
    score is positive."""
    out_of = set(excluded)

    def usable(k: Hashable, s: float) -> bool:
        return k not in out_of and isinstance(s, int | float) and math.isfinite(s) and s > 0

    positive = {k: Fraction(s) if usable(k, s) else Fraction(0) for k, s in scores.items()}
    whole = sum(positive.values(), Fraction(0))
    if whole == 0:
        return dict.fromkeys(scores, 0)
    exact = {k: p * total / whole for k, p in positive.items()}
    out = {k: math.floor(e) for k, e in exact.items()}
    keys = sorted(scores, key=str)
    order = sorted(keys, key=lambda k: -(exact[k] - out[k]))  # stable: ties keep key order
    for k in order[: total - sum(out.values())]:
        out[k] += 1
    return out
