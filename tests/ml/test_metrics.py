import json

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from ml import metrics

Y_BINARY = np.array([0, 0, 1, 1, 1, 0, 1, 0, 1, 1])
P_BINARY = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.2, 0.9, 0.65, 0.55, 0.3])
Y_MULTI = np.array([0, 1, 2, 2, 1, 0, 2, 1, 0, 2, 1, 1])


def binary_proba() -> np.ndarray:
    return np.column_stack([1 - P_BINARY, P_BINARY])


def multi_proba() -> np.ndarray:
    rng = np.random.default_rng(3)
    raw = rng.random((Y_MULTI.size, 3)) + np.eye(3)[Y_MULTI] * 0.6
    return raw / raw.sum(axis=1, keepdims=True)


def test_binary_metrics_match_scikit_learn():
    got = metrics.classification_metrics(Y_BINARY, binary_proba())
    predicted = (P_BINARY >= 0.5).astype(int)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(Y_BINARY, predicted))
    assert got["f1"] == pytest.approx(skm.f1_score(Y_BINARY, predicted))
    assert got["f1_macro"] == pytest.approx(skm.f1_score(Y_BINARY, predicted, average="macro"))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(Y_BINARY, P_BINARY))
    assert got["pr_auc"] == pytest.approx(skm.average_precision_score(Y_BINARY, P_BINARY))
    assert got["confusion_matrix"] == skm.confusion_matrix(Y_BINARY, predicted).tolist()
    json.dumps(got, allow_nan=False)


def test_multiclass_metrics_match_scikit_learn():
    proba = multi_proba()
    got = metrics.classification_metrics(Y_MULTI, proba)
    predicted = proba.argmax(axis=1)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(Y_MULTI, predicted))
    assert got["f1"] == pytest.approx(skm.f1_score(Y_MULTI, predicted, average="macro"))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(Y_MULTI, proba, multi_class="ovr"))
    expected_ap = skm.average_precision_score(np.eye(3)[Y_MULTI], proba, average="macro")
    assert got["pr_auc"] == pytest.approx(expected_ap)
    assert got["log_loss"] == pytest.approx(skm.log_loss(Y_MULTI, proba))
    assert got["confusion_matrix"] == skm.confusion_matrix(Y_MULTI, predicted).tolist()


def test_calibration_bins_match_scikit_learn_reliability_curve():
    got = metrics.calibration(Y_BINARY, binary_proba(), bins=5)
    observed, predicted = calibration_curve(Y_BINARY, P_BINARY, n_bins=5, strategy="uniform")
    filled = [b for b in got["bins"] if b["count"]]
    assert [b["observed"] for b in filled] == pytest.approx(observed)
    assert [b["mean_predicted"] for b in filled] == pytest.approx(predicted)
    assert sum(b["count"] for b in got["bins"]) == Y_BINARY.size
    assert all(b["observed"] is None for b in got["bins"] if not b["count"])


def test_regression_metrics_match_scikit_learn():
    y = np.array([3.0, -0.5, 2.0, 7.0, 4.2])
    pred = np.array([2.5, 0.0, 2.0, 8.0, 3.9])
    got = metrics.regression_metrics(y, pred)
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)))
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert got["r2"] == pytest.approx(skm.r2_score(y, pred))


def test_undefined_metrics_are_none_not_nan():
    one_class = np.zeros(4, dtype=int)
    proba = np.column_stack([np.full(4, 0.7), np.full(4, 0.3)])
    got = metrics.classification_metrics(one_class, proba)
    assert got["roc_auc"] is None
    assert got["pr_auc"] is None
    assert metrics.r2(np.ones(3), np.array([1.0, 2.0, 3.0])) is None
    assert metrics.rmse(np.array([1e300]), np.array([-1e300])) is None  # overflows to inf
    json.dumps(got, allow_nan=False)


def test_bootstrap_interval_brackets_the_estimate_and_is_reproducible():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.clip(y * 0.3 + rng.random(300) * 0.7, 0, 1)
    proba = np.column_stack([1 - p, p])
    first = metrics.bootstrap_ci(metrics.roc_auc, y, proba, n=200, seed=7)
    again = metrics.bootstrap_ci(metrics.roc_auc, y, proba, n=200, seed=7)
    assert first == again
    assert first["low"] < first["estimate"] < first["high"]
    assert first["estimate"] == pytest.approx(skm.roc_auc_score(y, p))
    assert first["undefined_resamples"] == 0
    regression = metrics.bootstrap_ci(metrics.rmse, rng.normal(size=50), rng.normal(size=50), n=100)
    assert regression["low"] <= regression["estimate"] <= regression["high"]
