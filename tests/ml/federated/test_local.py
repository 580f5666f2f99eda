import math

import numpy as np
import pytest
import torch

from ml.architecture import build
from ml.features import FeatureError, features
from ml.federated import tensors as T
from ml.federated.local import (
    RecipeError,
    bake_target_scale,
    evaluate,
    initial_tensors,
    recipe_check,
    task_xy,
    train_local,
)
from ml.tabular import Categorical, Table
from tests.ml.supervised_data import synthetic_table


def _classification():
    table = synthetic_table(300)
    schema = features(table, "label", "classification").schema
    spec = {"input_width": schema.n_features, "hidden": [16], "task": "classification", "output_width": 2}
    return table, schema, spec


def test_a_partys_table_becomes_float32_features_and_class_indices_in_the_schemas_order():
    table, schema, _ = _classification()
    X, y = task_xy(schema, table)
    assert X.dtype == np.float32 and X.shape == (300, schema.n_features)
    np.testing.assert_allclose(X, schema.matrix(table), atol=1e-6)
    labels = np.array(table.categorical["label"].tolist())
    assert schema.classes == ["no", "yes"]
    assert (y == (labels == "yes")).all() and y.dtype == np.int64


def test_regression_targets_are_standardized_by_the_schema():
    table = synthetic_table(200)
    schema = features(table, "amount", "regression").schema
    _, y = task_xy(schema, table)
    expected = (table.numeric["amount"] - schema.target["center"]) / schema.target["scale"]
    np.testing.assert_allclose(y, expected, rtol=1e-6)


def test_rows_without_a_target_or_with_an_unknown_class_are_refused_with_a_count():
    table, schema, _ = _classification()
    values = table.categorical["label"].tolist()
    values[3] = None
    values[5] = "maybe"
    values[6] = "maybe"
    broken = Table(columns=table.columns, numeric=table.numeric, n_rows=table.n_rows,
                   categorical={**table.categorical, "label": Categorical.from_values(values)})  # fmt: skip
    with pytest.raises(FeatureError, match="1 row"):
        task_xy(schema, broken)
    values[3] = "no"
    broken.categorical["label"] = Categorical.from_values(values)
    with pytest.raises(FeatureError, match=r"2 row.*not one of the model's classes"):
        task_xy(schema, broken)


def test_a_table_missing_a_column_names_it():
    table, schema, _ = _classification()
    short = Table(columns=["x1", "label"], numeric={"x1": table.numeric["x1"]}, n_rows=table.n_rows,
                  categorical={"label": table.categorical["label"]})  # fmt: skip
    with pytest.raises(FeatureError, match='"x2", "colour"'):
        task_xy(schema, short)


def test_the_initial_model_depends_only_on_the_seed():
    _, _, spec = _classification()
    a, b, c = initial_tensors(spec, 1), initial_tensors(spec, 1), initial_tensors(spec, 2)
    assert T.digest(a) == T.digest(b) != T.digest(c)
    assert sorted(a) == sorted(T.from_module(build(spec)))


def test_local_training_returns_the_delta_from_the_global_model_and_repeats_exactly():
    table, schema, spec = _classification()
    X, y = task_xy(schema, table)
    glob = initial_tensors(spec, 0)
    recipe = {"optimizer": "sgd", "lr": 0.1, "batch_size": 16, "local_epochs": 3}
    first = train_local(spec=spec, global_tensors=glob, X=X, y=y, recipe=recipe, seed=4)
    again = train_local(spec=spec, global_tensors=glob, X=X, y=y, recipe=recipe, seed=4)
    other = train_local(spec=spec, global_tensors=glob, X=X, y=y, recipe=recipe, seed=5)
    assert T.digest(first.delta) == T.digest(again.delta) != T.digest(other.delta)
    assert first.num_examples == 300 and sorted(first.delta) == sorted(glob)
    before = evaluate(spec=spec, tensors=glob, X=X, y=y)
    after = evaluate(spec=spec, tensors=T.add(glob, first.delta), X=X, y=y)
    assert after["loss"] < before["loss"] and after["accuracy"] > 0.85
    assert math.isfinite(first.metrics["loss"]) and 0 <= first.metrics["accuracy"] <= 1


def test_the_proximal_term_keeps_the_update_closer_to_the_global_model():
    table, schema, spec = _classification()
    X, y = task_xy(schema, table)
    glob = initial_tensors(spec, 0)
    plain = train_local(
        spec=spec, global_tensors=glob, X=X, y=y, recipe={"lr": 0.1, "local_epochs": 3}, seed=0
    )
    prox = train_local(spec=spec, global_tensors=glob, X=X, y=y, seed=0,
                       recipe={"lr": 0.1, "local_epochs": 3, "proximal_mu": 5.0})  # fmt: skip
    assert T.l2_norm(prox.delta) < 0.8 * T.l2_norm(plain.delta)


def test_adam_and_progress_reports_every_batch():
    table, schema, spec = _classification()
    X, y = task_xy(schema, table)
    seen = []
    result = train_local(spec=spec, global_tensors=initial_tensors(spec, 0), X=X, y=y, seed=0,
                         recipe={"optimizer": "adam", "lr": 0.01, "batch_size": 100, "local_epochs": 2},
                         progress=lambda step, steps: seen.append((step, steps)))  # fmt: skip
    assert seen == [(i, 6) for i in range(1, 7)]
    assert T.l2_norm(result.delta) > 0


def test_one_sgd_step_matches_a_hand_computed_step():
    spec = {"input_width": 3, "hidden": [], "task": "regression", "output_width": 1}
    glob = initial_tensors(spec, 0)
    X = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]], dtype=np.float32)
    y = np.array([1.0, -2.0], dtype=np.float32)
    result = train_local(spec=spec, global_tensors=glob, X=X, y=y, seed=0,
                         recipe={"lr": 0.1, "batch_size": 2, "proximal_mu": 0.0})  # fmt: skip
    w, b = glob["output.weight"].astype(np.float64)[0], float(glob["output.bias"][0])
    err = X.astype(np.float64) @ w + b - y
    np.testing.assert_allclose(result.delta["output.weight"][0], -0.1 * (X.T @ err) * 2 / 2, rtol=1e-5)
    np.testing.assert_allclose(result.delta["output.bias"][0], -0.1 * err.sum() * 2 / 2, rtol=1e-5)


def test_regression_metrics_are_reported_in_the_targets_units_with_the_schema():
    table = synthetic_table(200)
    schema = features(table, "amount", "regression").schema
    X, y = task_xy(schema, table)
    spec = {"input_width": schema.n_features, "hidden": [8], "task": "regression", "output_width": 1}
    glob = initial_tensors(spec, 0)
    plain = evaluate(spec=spec, tensors=glob, X=X, y=y)
    scaled = evaluate(spec=spec, tensors=glob, X=X, y=y, schema=schema)
    assert scaled["rmse"] == pytest.approx(plain["rmse"] * schema.target["scale"])
    assert set(plain) == {"loss", "rmse", "mae", "r2"}
    baked = bake_target_scale(glob, schema)
    module = T.load_into(build(spec), baked).eval()
    with torch.no_grad():
        pred = module(torch.as_tensor(X)).numpy()[:, 0]
    module = T.load_into(build(spec), glob).eval()
    with torch.no_grad():
        standardized = module(torch.as_tensor(X)).numpy()[:, 0]
    expected = standardized * schema.target["scale"] + schema.target["center"]
    np.testing.assert_allclose(pred, expected, rtol=1e-4)


def test_training_refuses_features_that_do_not_fit_the_model():
    _, _, spec = _classification()
    glob = initial_tensors(spec, 0)
    X = np.zeros((4, spec["input_width"] + 1), np.float32)
    with pytest.raises(FeatureError, match="features per row"):
        train_local(spec=spec, global_tensors=glob, X=X, y=np.zeros(4, np.int64), recipe={}, seed=0)
    X = np.zeros((4, spec["input_width"]), np.float32)
    with pytest.raises(FeatureError, match="class indices"):
        train_local(spec=spec, global_tensors=glob, X=X, y=np.array([0, 1, 2, 0]), recipe={}, seed=0)


def test_the_recipe_gets_defaults():
    assert recipe_check({}) == {"optimizer": "sgd", "lr": 0.05, "batch_size": 32, "local_epochs": 1,
                                "proximal_mu": 0.0}  # fmt: skip


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ({"optimizer": "rmsprop"}, "optimizer must be one of sgd, adam"),
        ({"lr": 0}, "lr must be in (0, 10]"),
        ({"lr": math.nan}, "lr must be in"),
        ({"lr": 10**400}, "lr must be in"),
        ({"lr": "0.1"}, "lr must be a number"),
        ({"batch_size": 0}, "batch_size must be a whole number from 1"),
        ({"batch_size": 10**20}, "batch_size must be a whole number from 1"),
        ({"local_epochs": 1.5}, "local_epochs must be a whole number"),
        ({"proximal_mu": -0.1}, "proximal_mu must be in [0, 1000]"),
        ({"proximal_mu": True}, "proximal_mu must be a number"),
        ({"momentum": 0.9}, "unknown recipe field(s): momentum"),
        ([], "must be an object"),
    ],
)
def test_bad_recipes_are_refused_with_a_message(recipe, message):
    with pytest.raises(RecipeError) as err:
        recipe_check(recipe)
    assert message in str(err.value)
