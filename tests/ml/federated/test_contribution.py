import math

import numpy as np
import pytest

from ml.features import features
from ml.federated import tensors as T
from ml.federated.aggregate import Update, aggregate
from ml.federated.contribution import contributions, weights
from ml.federated.local import evaluate, initial_tensors, task_xy, train_local
from tests.ml.supervised_data import synthetic_table


@pytest.fixture(scope="module")
def history():
    """Three FedAvg rounds of four honest parties and one ("noisy") that sends random noise."""
    table = synthetic_table(600, seed=1)
    schema = features(table, "label", "classification").schema
    X, y = task_xy(schema, table)
    X_val, y_val, X, y = X[:150], y[:150], X[150:], y[150:]
    spec = {"input_width": schema.n_features, "hidden": [16], "task": "classification", "output_width": 2}
    parts = np.array_split(np.arange(len(y)), 4)
    glob = initial_tensors(spec, 0)
    rng = np.random.default_rng(0)
    rounds = []
    for r in range(3):
        members = []
        for p, idx in enumerate(parts):
            res = train_local(spec=spec, global_tensors=glob, X=X[idx], y=y[idx], seed=r * 10 + p,
                              recipe={"lr": 0.1, "batch_size": 16})  # fmt: skip
            members.append(
                (f"party{p}", Update(id=T.digest(res.delta), tensors=res.delta, num_examples=len(idx)))
            )
        noise = {k: rng.normal(0, 1.0, size=a.shape).astype(np.float32) for k, a in glob.items()}
        members.append(("noisy", Update(id=T.digest(noise), tensors=noise, num_examples=len(parts[0]))))
        rounds.append((glob, members))
        glob = aggregate(
            strategy="fedavg", options={}, global_tensors=glob, updates=[u for _, u in members]
        ).new_global

    def accuracy(tensors):
        return evaluate(spec=spec, tensors=tensors, X=X_val, y=y_val)["accuracy"]

    return rounds, accuracy


@pytest.mark.parametrize("method", ["loo", "shapley"])
def test_a_party_sending_noise_scores_below_every_honest_party(history, method):
    rounds, accuracy = history
    scores = contributions(
        rounds=rounds, evaluate=accuracy, strategy="fedavg", method=method, permutations=10
    )
    assert set(scores) == {"party0", "party1", "party2", "party3", "noisy"}
    assert all(scores["noisy"] < scores[f"party{p}"] for p in range(4))
    assert sum(scores[f"party{p}"] for p in range(4)) > 0


def test_shapley_is_deterministic_for_a_seed_and_adds_up_to_the_rounds_gain(history):
    rounds, accuracy = history
    kw = {
        "rounds": rounds,
        "evaluate": accuracy,
        "strategy": "fedavg",
        "method": "shapley",
        "permutations": 5,
    }
    first, again = contributions(**kw, seed=3), contributions(**kw, seed=3)
    assert first == again
    # Efficiency: every permutation's marginal gains add up to v(all) - v(none), in each round.
    gain = 0.0
    for glob, members in rounds:
        full = aggregate(strategy="fedavg", options={}, global_tensors=glob, updates=[u for _, u in members])
        gain += accuracy(full.new_global) - accuracy(glob)
    assert sum(first.values()) == pytest.approx(gain)


def test_robust_strategies_score_coalitions_too_small_for_them_by_fedavg(history):
    rounds, accuracy = history
    scores = contributions(rounds=rounds[:1], evaluate=accuracy, strategy="bulyan", options={"num_malicious": 1},
                           method="loo")  # fmt: skip
    assert all(math.isfinite(s) for s in scores.values())


def test_weights_add_up_exactly_and_give_nothing_to_negative_or_excluded_parties():
    scores = {"a": 0.3, "b": 0.1, "c": 0.1 / 3, "d": -0.2, "e": math.nan, "f": 0.05}
    w = weights(scores, excluded=["f"])
    assert sum(w.values()) == 10_000
    assert w["d"] == w["e"] == w["f"] == 0
    assert w["a"] > w["b"] > w["c"] > 0
    assert abs(w["a"] - 10_000 * 0.3 / (0.3 + 0.1 + 0.1 / 3)) < 1


def test_equal_scores_split_evenly_with_the_remainder_to_the_first_keys():
    assert weights({"x": 1.0, "y": 1.0, "z": 1.0}) == {"x": 3334, "y": 3333, "z": 3333}
    assert weights({"x": 1.0, "y": 1.0, "z": 1.0}, total=7) == {"x": 3, "y": 2, "z": 2}


def test_no_positive_score_gives_all_zero_weights():
    assert weights({"x": -1.0, "y": 0.0}) == {"x": 0, "y": 0}
    assert weights({}) == {}


def test_bad_methods_are_refused():
    with pytest.raises(ValueError, match="method must be one of"):
        contributions(rounds=[], evaluate=lambda t: 0.0, strategy="fedavg", method="banzhaf")
    with pytest.raises(ValueError, match="permutations"):
        contributions(rounds=[], evaluate=lambda t: 0.0, strategy="fedavg", method="shapley", permutations=0)
