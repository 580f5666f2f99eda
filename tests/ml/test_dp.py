import math

import numpy as np
import pytest
import torch

from ml import dp
from ml.architecture import build
from ml.privacy import PrivacyError
from ml.supervised import evaluate, features, predict, train
from tests.ml.supervised_data import synthetic_table

OPACUS_ORDERS = np.array([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))


@pytest.mark.parametrize(
    ("q", "noise", "steps", "delta", "epsilon"),
    [
        # ε from Opacus 1.6.0's RDP accountant (compute_rdp + get_privacy_spent) over its default orders
        (0.01, 1.1, 10_000, 1e-5, 5.63199236854841),
        (256 / 60_000, 1.1, 14_062, 1e-5, 2.5965558689607486),
        (0.02, 2.0, 500, 1e-6, 1.1544682124473253),
        (0.05, 0.5, 50, 1e-5, 16.328898364169476),
        (1.0, 5.0, 20, 1e-8, 5.380318106365228),
    ],
)
def test_the_accountant_matches_opacus(q, noise, steps, delta, epsilon):
    rdp = dp.rdp_subsampled_gaussian(q, noise, steps, OPACUS_ORDERS)
    assert dp.epsilon_from_rdp(rdp, delta, OPACUS_ORDERS)[0] == pytest.approx(epsilon, rel=1e-9)


def test_the_accountant_matches_closed_forms():
    orders = np.array([2.0, 3.0, 8.0])
    # no subsampling: the Gaussian mechanism's alpha / (2 z^2)
    assert dp.rdp_subsampled_gaussian(1.0, 2.0, 3, orders) == pytest.approx(3 * orders / 8)
    # order 2 of the subsampled Gaussian: log(1 + q^2 (e^{1/z^2} - 1))
    q, z = 0.1, 1.5
    got = dp.rdp_subsampled_gaussian(q, z, 1, np.array([2.0]))[0]
    assert got == pytest.approx(math.log1p(q**2 * math.expm1(1 / z**2)), rel=1e-12)
    # fractional orders lie between their integer neighbours
    a, mid, b = dp.rdp_subsampled_gaussian(q, z, 1, np.array([2.0, 2.5, 3.0]))
    assert a < mid < b


def test_the_noise_is_the_least_that_fits_the_budget():
    budget = dp.PrivacyBudget(2.0, 1e-6)
    z = budget.sgd_noise_multiplier(0.02, 1000)
    spent = budget.spent(dp.rdp_subsampled_gaussian(0.02, z, 1000))
    assert 0.99 * 2.0 < spent <= 2.0
    assert budget.spent(dp.rdp_subsampled_gaussian(0.02, z * 0.99, 1000)) > 2.0


def test_a_release_past_the_budget_is_refused():
    budget = dp.PrivacyBudget(1.0)
    budget.spend_gaussian(20.0, what="a small release")
    with pytest.raises(PrivacyError, match="cannot pay for a large release"):
        budget.spend_gaussian(0.5, what="a large release")
    assert len(budget.releases) == 1


def test_dp_sgd_clips_each_row_before_averaging():
    torch.manual_seed(0)
    module = build({"input_width": 3, "task": "regression", "output_width": 1})
    x = torch.tensor([[10.0, 0, 0], [0, 0.01, 0], [0, 0, -5.0]])
    y = torch.tensor([50.0, 0.0, -1.0])
    loss = lambda out, t: torch.nn.functional.mse_loss(out[:, 0], t)  # noqa: E731
    expected = {name: torch.zeros_like(p) for name, p in module.named_parameters()}
    for i in range(3):
        module.zero_grad()
        loss(module(x[i : i + 1]), y[i : i + 1]).backward()
        grads = {name: p.grad.clone() for name, p in module.named_parameters()}
        norm = torch.sqrt(sum((g**2).sum() for g in grads.values()))
        for name, g in grads.items():
            expected[name] += g * min(1.0, 0.5 / float(norm)) / 3
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    optimizer = torch.optim.SGD(module.parameters(), lr=1.0)
    dp.dp_sgd(module, loss, x, y, sampling_rate=1.0, steps=1, noise_multiplier=0.0, clip=0.5, optimizer=optimizer,
              generator=torch.Generator().manual_seed(0))  # fmt: skip
    for name, p in module.named_parameters():
        assert torch.allclose(before[name] - p.detach(), expected[name], atol=1e-6)


@pytest.fixture(scope="module")
def table():
    table = synthetic_table(n=1500)
    # Under DP the schema's scales come from a half-octave histogram, coarse for numbers far from zero for their
    # spread (100 ± 3): the private tests predict a target centred near zero.
    table.numeric["amount"] = table.numeric["amount"] - 100.0
    return table


@pytest.mark.parametrize(("algorithm", "task", "target"), [("logistic_regression", "classification", "label"),
                                                            ("linear_regression", "regression", "amount"),
                                                            ("mlp", "classification", "label")])  # fmt: skip
def test_dp_training_spends_at_most_its_budget_and_still_learns(algorithm, task, target, table):
    budget = dp.PrivacyBudget(4.0)
    data = features(table, target, task, budget=budget)
    points = []
    trained = train(data.X_train, data.y_train, task, algorithm, {"epochs": 4, "hidden": [16]} if algorithm == "mlp"
                    else {"epochs": 4}, lambda f, message="", metrics=None: points.append(metrics), schema=data.schema,
                    budget=budget)  # fmt: skip
    assert trained.privacy["epsilon_spent"] <= 4.0
    assert budget.spent() == pytest.approx(trained.privacy["epsilon_spent"], abs=1e-6)
    assert trained.privacy["epsilon_spent"] > 3.9  # the noise is no larger than needed
    curve = [p for p in points if p]
    assert [p["step"] for p in curve] == [1, 2, 3, 4]
    assert set(curve[0]) == {"step", "epsilon"}  # no loss on private rows: it would be a release
    assert curve[-1]["epsilon"] == pytest.approx(trained.privacy["epsilon_spent"], abs=1e-6)
    result = evaluate(trained, data.X_test, data.y_test, data.schema)
    if task == "classification":
        assert result["roc_auc"] > 0.85
    else:
        baseline = float(np.sqrt(np.mean((data.y_test - data.y_test.mean()) ** 2)))
        assert result["rmse"] < 0.6 * baseline
    row = {c: (0.5 if c != "colour" else "red") for c in data.schema.input_columns}
    assert len(predict(trained, data.schema, [row])) == 1


@pytest.mark.parametrize("algorithm", ["random_forest", "hist_gradient_boosting"])
def test_trees_are_refused_under_dp(algorithm, table):
    budget = dp.PrivacyBudget(4.0)
    data = features(table, "label", "classification", budget=budget)
    with pytest.raises(PrivacyError, match="memorise single rows in small leaves"):
        train(data.X_train, data.y_train, "classification", algorithm, {}, schema=data.schema, budget=budget)


def test_private_training_needs_a_private_schema(table):
    data = features(table, "label", "classification")
    with pytest.raises(PrivacyError, match="needs the schema fitted under the same privacy budget"):
        train(data.X_train, data.y_train, "classification", "logistic_regression", {}, schema=data.schema,
              budget=dp.PrivacyBudget(1.0))  # fmt: skip
