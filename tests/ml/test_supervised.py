import json
import pickle

import numpy as np
import pytest
import torch

from ml.artifacts import ArtifactError
from ml.features import FeatureError, FeatureSchema
from ml.supervised import (
    check_signature,
    evaluate,
    features,
    model_from_bytes,
    model_to_bytes,
    predict,
    train,
)
from tests.ml.supervised_data import synthetic_table

FAST = {
    "logistic_regression": {},
    "linear_regression": {},
    "random_forest": {"n_estimators": 20},
    "hist_gradient_boosting": {"max_iter": 30},
    "mlp": {"epochs": 15, "hidden": [16], "batch_size": 32, "lr": 0.01},
}


@pytest.fixture(scope="module")
def classification():
    return features(synthetic_table(), "label", "classification")


@pytest.fixture(scope="module")
def regression():
    return features(synthetic_table(), "amount", "regression")


@pytest.mark.parametrize(
    "algorithm", ["logistic_regression", "random_forest", "hist_gradient_boosting", "mlp"]
)
def test_each_classifier_beats_the_majority_class_on_held_out_rows(algorithm, classification):
    data = classification
    trained = train(
        data.X_train, data.y_train, "classification", algorithm, FAST[algorithm], schema=data.schema
    )
    result = evaluate(trained, data.X_test, data.y_test, data.schema)
    majority = np.bincount(data.y_test).max() / data.y_test.size
    assert result["accuracy"] > majority + 0.15
    assert result["roc_auc"] > 0.9
    json.dumps(result, allow_nan=False)


@pytest.mark.parametrize("algorithm", ["linear_regression", "random_forest", "hist_gradient_boosting", "mlp"])
def test_each_regressor_beats_predicting_the_mean_on_held_out_rows(algorithm, regression):
    data = regression
    trained = train(data.X_train, data.y_train, "regression", algorithm, FAST[algorithm], schema=data.schema)
    result = evaluate(trained, data.X_test, data.y_test, data.schema)
    baseline = float(np.sqrt(np.mean((data.y_test - data.y_train.mean()) ** 2)))
    assert result["rmse"] < 0.5 * baseline
    assert result["r2"] > 0.75


def test_the_mlp_reports_a_learning_curve_each_epoch(classification):
    data = classification
    points = []

    def progress(fraction, *, message="", metrics=None):
        points.append((fraction, message, metrics))

    trained = train(
        data.X_train, data.y_train, "classification", "mlp", FAST["mlp"], progress, schema=data.schema
    )
    curve = [m for _, _, m in points if m]
    assert [m["step"] for m in curve] == list(range(1, 16))
    assert set(curve[0]) == {"step", "loss", "val_loss", "accuracy"}
    assert curve[-1]["loss"] < curve[0]["loss"]
    assert points[-1][0] == 1.0
    assert trained.curve == curve


def test_training_is_deterministic_for_a_seed(regression):
    data = regression
    runs = [train(data.X_train, data.y_train, "regression", "mlp", {**FAST["mlp"], "epochs": 3, "seed": 5},
                  schema=data.schema) for _ in range(2)]  # fmt: skip
    first, second = (model_to_bytes(r)[1] for r in runs)
    assert first == second
    other = train(data.X_train, data.y_train, "regression", "mlp", {**FAST["mlp"], "epochs": 3, "seed": 6},
                  schema=data.schema)  # fmt: skip
    assert model_to_bytes(other)[1] != first


@pytest.mark.parametrize("algorithm", ["mlp", "hist_gradient_boosting", "logistic_regression"])
def test_a_saved_model_predicts_exactly_as_the_trained_one(algorithm, classification, monkeypatch):
    data = classification
    trained = train(
        data.X_train, data.y_train, "classification", algorithm, FAST[algorithm], schema=data.schema
    )
    kind, blob = model_to_bytes(trained)
    assert kind == ("safetensors" if algorithm == "mlp" else "skops")
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load"))
    loaded = model_from_bytes(blob)
    schema = FeatureSchema.from_json(json.loads(json.dumps(data.schema.to_json())))
    check_signature(loaded, schema)
    rows = [{"x1": 0.3, "x2": 41.0, "colour": "red", "amount": 101.0}, {"x1": -2, "x2": None, "colour": "blue",
            "amount": "95.5"}]  # fmt: skip
    assert predict(loaded, schema, rows) == predict(trained, data.schema, rows)
    got = predict(loaded, schema, rows)
    assert got[0]["prediction"] in schema.classes
    assert sum(got[0]["probabilities"].values()) == pytest.approx(1)


@pytest.mark.parametrize("classes", [2, 3])
def test_linear_models_are_served_exactly_as_scikit_learn_computes_them(classes):
    """probabilities() and values() skip scikit-learn's input checks for plain linear models: bit for bit what its
    predict_proba and predict give, and anything but a finite float64 matrix of the right width still goes
    through scikit-learn, which refuses it as before."""
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge

    from ml.supervised import _linear_probabilities, _linear_scores, probabilities, values

    rng = np.random.default_rng(classes)
    X = rng.normal(size=(300, 6)) * rng.uniform(0.1, 30, size=6)
    y = rng.integers(0, classes, size=300)
    schema = FeatureSchema(
        columns=[{"name": f"x{i}", "type": "numeric"} for i in range(6)],
        target={"name": "y", "task": "classification", "classes": list(range(classes))},
    )
    model = LogisticRegression(max_iter=500).fit(X, y)
    for rows in (X, X[:1], rng.normal(size=(7, 6)) * 1e3):
        assert np.array_equal(probabilities(model, rows, schema), model.predict_proba(rows))
        assert _linear_probabilities(model, rows.copy()) is not None  # served without scikit-learn's checks
    for regressor in (LinearRegression().fit(X, y * 1.5), Ridge(alpha=2).fit(X, y * 1.5)):
        assert _linear_scores(regressor, X) is not None
        assert np.array_equal(values(regressor, X), regressor.predict(X))
    with pytest.raises(ValueError, match="NaN"):
        probabilities(model, np.where(np.eye(2, 6) > 0, np.nan, 0.0), schema)
    with pytest.raises(ValueError, match="features"):
        values(LinearRegression().fit(X, y), X[:, :5])


def test_predict_names_wrong_columns(regression):
    data = regression
    trained = train(data.X_train, data.y_train, "regression", "linear_regression", {}, schema=data.schema)
    with pytest.raises(FeatureError, match=r"missing column\(s\) 'colour'.*unknown column\(s\) 'colur'"):
        predict(trained, data.schema, [{"x1": 1, "x2": 2, "colur": "red", "label": "yes"}])
    value = predict(trained, data.schema, [{"x1": 1, "x2": 2, "colour": "red", "label": "yes"}])[0][
        "prediction"
    ]
    assert 100 < value < 110


def test_a_model_that_does_not_fit_the_schema_is_refused(classification, regression):
    clf = train(classification.X_train, classification.y_train, "classification", "mlp", {**FAST["mlp"], "epochs": 1},
                schema=classification.schema)  # fmt: skip
    with pytest.raises(ArtifactError, match="the model takes 6 features but the schema makes 7"):
        check_signature(clf, regression.schema)
    reg = train(
        regression.X_train,
        regression.y_train,
        "regression",
        "linear_regression",
        {},
        schema=regression.schema,
    )
    with pytest.raises(ArtifactError, match="the model takes 7 features but the schema makes 6"):
        check_signature(reg, classification.schema)


@pytest.mark.parametrize(
    ("algorithm", "task", "options", "message"),
    [
        ("svm", "classification", {}, "algorithm must be one of"),
        (
            "linear_regression",
            "classification",
            {},
            r"does not do classification \(use logistic_regression\)",
        ),
        ("random_forest", "regression", {"n_estimators": 0}, "n_estimators must be between 1 and 1000"),
        ("random_forest", "regression", {"trees": 3}, r"unknown option\(s\) for random_forest: trees"),
        ("mlp", "regression", {"lr": "fast"}, "option lr must be a number"),
        ("mlp", "regression", {"activation": "swish"}, "activation must be one of"),
    ],
)
def test_bad_algorithms_and_options_are_refused(algorithm, task, options, message, regression):
    with pytest.raises(ValueError, match=message):
        train(regression.X_train, regression.y_train, task, algorithm, options, schema=regression.schema)


def test_the_mlp_trains_on_the_device_ml_device_names(regression, monkeypatch):
    monkeypatch.setenv("ML_DEVICE", "cpu")
    trained = train(regression.X_train, regression.y_train, "regression", "mlp", {**FAST["mlp"], "epochs": 1},
                    schema=regression.schema)  # fmt: skip
    assert trained.model.device.type == "cpu"
    if not torch.cuda.is_available():
        monkeypatch.setenv("ML_DEVICE", "cuda")
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            train(
                regression.X_train,
                regression.y_train,
                "regression",
                "mlp",
                {"epochs": 1},
                schema=regression.schema,
            )
