import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from ml.federated import aggregate as agg
from ml.federated.aggregate import Update, aggregate, strategy_check
from ml.federated.tensors import digest

VECTORS = json.loads((Path(__file__).resolve().parent / "vectors/fl_aggregation_vectors.json").read_text())
CASES = [
    (i, name)
    for i, case in enumerate(VECTORS["cases"])
    for name in ("fedavg", "median", "trimmed_mean_0.2", "krum", "multi_krum_keep_3", "bulyan")
    if name in case
]


def _flower(case: dict, name: str) -> list[np.ndarray]:
    layers = [[np.array(layer) for layer in c["layers"]] for c in case["clients"]]
    counts = [c["num_examples"] for c in case["clients"]]
    f = case["num_malicious"]
    return {
        "fedavg": lambda: agg.fedavg(layers, counts),
        "median": lambda: agg.median(layers),
        "trimmed_mean_0.2": lambda: agg.trimmed_mean(layers, 0.2),
        "krum": lambda: agg.krum(layers, f),
        "multi_krum_keep_3": lambda: agg.multi_krum(layers, counts, f, 3),
        "bulyan": lambda: agg.bulyan(layers, f),
    }[name]()


@pytest.mark.parametrize(("case", "name"), CASES, ids=[f"case{i}-{n}" for i, n in CASES])
def test_each_function_reproduces_flowers_own_output(case, name):
    ours = _flower(VECTORS["cases"][case], name)
    expected = VECTORS["cases"][case][name]
    assert len(ours) == len(expected)
    for got, want in zip(ours, expected, strict=True):
        np.testing.assert_allclose(got, np.array(want), rtol=0, atol=1e-9)


def test_every_vector_case_is_covered():
    assert len(CASES) == sum(len(c) - 2 for c in VECTORS["cases"])


def _updates(case: dict) -> tuple[dict, list[Update]]:
    """The vector clients as deltas from a global model, with the global and tensor names of our MLPs."""
    names = ["a.weight", "a.bias", "b.weight"]
    rng = np.random.default_rng(0)
    glob = {n: rng.normal(size=np.shape(case["clients"][0]["layers"][k])).astype(np.float32)
            for k, n in enumerate(names)}  # fmt: skip
    updates = []
    for i, c in enumerate(case["clients"]):
        t = {n: np.array(layer, dtype=np.float32) for n, layer in zip(names, c["layers"], strict=True)}
        # Ids in the vectors' order: Krum's exact ties (mutual nearest neighbours) go to the first id, as
        # Flower's go to the first client.
        updates.append(Update(id=f"{i:02d}-{digest(t)}", tensors=t, num_examples=c["num_examples"]))
    return glob, updates


@pytest.mark.parametrize(
    ("strategy", "options", "key"),
    [
        ("fedavg", {}, "fedavg"),
        ("fedprox", {}, "fedavg"),
        ("median", {}, "median"),
        ("trimmed_mean", {"trim_beta": 0.2}, "trimmed_mean_0.2"),
        ("krum", None, "krum"),
        ("multi_krum", {"keep": 3}, "multi_krum_keep_3"),
    ],
)
def test_the_server_step_adds_flowers_aggregate_of_the_deltas_to_the_global_model(strategy, options, key):
    case = VECTORS["cases"][1]
    if options is None or strategy == "multi_krum":
        options = {**(options or {}), "num_malicious": case["num_malicious"]}
    glob, updates = _updates(case)
    out = aggregate(strategy=strategy, options=options, global_tensors=glob, updates=updates)
    for k, name in enumerate(["a.weight", "a.bias", "b.weight"]):
        want = glob[name].astype(np.float64) + np.array(case[key][k])
        np.testing.assert_allclose(out.new_global[name], want, rtol=1e-6, atol=1e-6)
        assert out.new_global[name].dtype == np.float32


def test_krum_names_the_updates_it_leaves_out_as_outliers_with_their_scores():
    case = VECTORS["cases"][1]
    glob, updates = _updates(case)
    out = aggregate(strategy="multi_krum", options={"num_malicious": 3, "keep": 3}, global_tensors=glob,
                    updates=updates)  # fmt: skip
    assert len(out.included) == 3 and len(out.excluded) == 7
    assert set(out.included) | set(out.excluded) == {u.id for u in updates}
    assert all(reason.startswith("outlier: krum score ") for reason in out.excluded.values())


def test_bulyan_excludes_the_updates_its_krum_rounds_did_not_pick():
    case = VECTORS["cases"][2]
    glob, updates = _updates(case)
    out = aggregate(strategy="bulyan", options={"num_malicious": 2}, global_tensors=glob, updates=updates)
    assert len(out.included) == 7 and len(out.excluded) == 4
    np.testing.assert_allclose(
        out.new_global["a.bias"], glob["a.bias"] + np.array(case["bulyan"][1]), atol=1e-6
    )


@pytest.mark.parametrize("strategy", ["fedavg", "fedadam", "median", "trimmed_mean", "multi_krum", "bulyan"])
def test_the_same_updates_in_any_order_give_the_same_digest(strategy):
    glob, updates = _updates(VECTORS["cases"][2])
    options = {"num_malicious": 2} if strategy in ("multi_krum", "bulyan") else {}
    first = aggregate(strategy=strategy, options=options, global_tensors=glob, updates=updates)
    shuffled = list(updates)
    random.Random(7).shuffle(shuffled)
    second = aggregate(strategy=strategy, options=options, global_tensors=glob, updates=shuffled)
    assert digest(first.new_global) == digest(second.new_global)
    assert first.included == second.included and first.excluded == second.excluded


def test_fedadam_follows_flowers_server_optimizer_over_two_rounds():
    rng = np.random.default_rng(1)
    glob = {"w": rng.normal(size=(3, 2)).astype(np.float32)}
    opts = {"server_lr": 0.05, "beta1": 0.9, "beta2": 0.99, "tau": 1e-3}
    state, current, m, v = None, glob["w"].astype(np.float64), 0.0, 0.0
    for server_round in (1, 2):
        deltas = [rng.normal(size=(3, 2)).astype(np.float32) for _ in range(3)]
        counts = [10, 20, 30]
        updates = [Update(id=f"u{i}", tensors={"w": d}, num_examples=n) for i, (d, n) in
                   enumerate(zip(deltas, counts, strict=True))]  # fmt: skip
        out = aggregate(
            strategy="fedadam", options=opts, global_tensors=glob, updates=updates, server_state=state
        )
        # Flower's FedAdam.aggregate_fit, written out
        delta = sum(d.astype(np.float64) * n for d, n in zip(deltas, counts, strict=True)) / 60
        m = 0.9 * m + 0.1 * delta
        v = 0.99 * v + 0.01 * delta * delta
        eta = 0.05 * math.sqrt(1 - 0.99 ** (server_round + 1)) / (1 - 0.9 ** (server_round + 1))
        current = current + eta * m / (np.sqrt(v) + 1e-3)
        np.testing.assert_allclose(out.new_global["w"], current, rtol=1e-5, atol=1e-6)
        glob, state = out.new_global, out.server_state
        current = glob["w"].astype(np.float64)
    assert int(state["step"][0]) == 2 and state["m.w"].dtype == np.float32


def test_the_defaults_are_filled_in():
    assert strategy_check("trimmed_mean", {}) == {"trim_beta": 0.2}
    assert strategy_check("fedadam", None)["server_lr"] == 0.1
    assert strategy_check("krum", {"num_malicious": 2}) == {"num_malicious": 2}
    assert set(agg.SUM_BASED) == {"fedavg", "fedprox", "fedadam"}
    assert set(agg.SUM_BASED) <= set(agg.STRATEGIES)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("fedsgd", {}, "unknown strategy"),
        ("trimmed_mean", {"trim_beta": 0.5}, "trim_beta must be in (0, 0.5)"),
        ("trimmed_mean", {"trim_beta": 0}, "trim_beta must be in (0, 0.5)"),
        ("trimmed_mean", {"trim_beta": math.nan}, "trim_beta must be a finite number"),
        ("trimmed_mean", {"trim_beta": 10**400}, "trim_beta must be a finite number"),
        ("trimmed_mean", {"trim_beta": "0.2"}, "trim_beta must be a number"),
        ("krum", {"num_malicious": -1}, "num_malicious must be between 0"),
        ("krum", {"num_malicious": 10**30}, "num_malicious must be between 0"),
        ("krum", {"num_malicious": True}, "num_malicious must be a whole number"),
        ("multi_krum", {"keep": 0}, "keep must be between 1"),
        ("multi_krum", {"keep": 2.0}, "keep must be a whole number"),
        ("fedadam", {"server_lr": math.inf}, "server_lr must be a finite number"),
        ("fedadam", {"beta1": 1.0}, "beta1 must be in [0, 1)"),
        ("fedadam", {"beta2": -0.1}, "beta2 must be in [0, 1)"),
        ("fedadam", {"tau": 0}, "tau must be in (0, 1]"),
        ("median", {"trim_beta": 0.1}, "unknown option(s) for median: trim_beta"),
        ("fedavg", [], "must be an object"),
    ],
)
def test_bad_options_are_refused_with_a_message(name, options, message):
    with pytest.raises(agg.StrategyError) as err:
        strategy_check(name, options)
    assert message in str(err.value)


def test_a_strategy_that_cannot_work_with_the_minimum_parties_is_refused():
    with pytest.raises(agg.StrategyError, match="at least 11 parties"):
        strategy_check("bulyan", {"num_malicious": 2}, min_parties=10)
    with pytest.raises(agg.StrategyError, match="keeps 5 updates"):
        strategy_check("multi_krum", {"keep": 5}, min_parties=4)
    assert strategy_check("bulyan", {"num_malicious": 2}, min_parties=11)["num_malicious"] == 2


def test_updates_that_do_not_match_the_model_are_refused():
    glob = {"w": np.zeros((2, 2), np.float32)}
    bad = Update(id="x", tensors={"w": np.zeros((2, 3), np.float32)}, num_examples=5)
    with pytest.raises(agg.StrategyError, match="does not match"):
        aggregate(strategy="fedavg", options={}, global_tensors=glob, updates=[bad])
    with pytest.raises(agg.StrategyError, match="no updates"):
        aggregate(strategy="fedavg", options={}, global_tensors=glob, updates=[])
