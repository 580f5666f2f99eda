"""Held-out metrics for supervised models, JSON-ready: every number is a finite float or None (undefined).

Classification takes the true class indices and the predicted probabilities (one column per class, in the
schema's class order; with two classes, the second is the positive one for F1, ROC-AUC, PR-AUC and the
calibration curve); regression takes true and predicted values.
"""

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm

CALIBRATION_BINS = 10


def _finite(x: Any) -> float | None:
    value = float(x)
    return value if math.isfinite(value) else None


def _probabilities(y: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.int64).ravel()
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[0] != y.shape[0] or proba.shape[1] < 2:
        raise ValueError("probabilities must have one row per label and one column per class (at least 2)")
    if y.size == 0:
        raise ValueError("no rows to score")
    if y.min() < 0 or y.max() >= proba.shape[1]:
        raise ValueError("labels must be class indices into the probability columns")
    return y, proba


def accuracy(y: np.ndarray, proba: np.ndarray) -> float | None:
    y, proba = _probabilities(y, proba)
    return _finite(np.mean(proba.argmax(axis=1) == y))


def f1(y: np.ndarray, proba: np.ndarray) -> float | None:
    """F1 of the positive class (index 1) for two classes, the unweighted mean over classes (macro) for more."""
    y, proba = _probabilities(y, proba)
    k = proba.shape[1]
    average = "binary" if k == 2 else "macro"
    return _finite(
        skm.f1_score(y, proba.argmax(axis=1), labels=list(range(k)), average=average, zero_division=0)
    )


def f1_macro(y: np.ndarray, proba: np.ndarray) -> float | None:
    y, proba = _probabilities(y, proba)
    k = proba.shape[1]
    return _finite(
        skm.f1_score(y, proba.argmax(axis=1), labels=list(range(k)), average="macro", zero_division=0)
    )


def roc_auc(y: np.ndarray, proba: np.ndarray) -> float | None:
    """ROC-AUC (one-vs-rest, macro over the classes present, for more than two); None when a single class is
    present, as it is undefined then."""
    y, proba = _probabilities(y, proba)
    present = np.unique(y)
    if present.size < 2:
        return None
    if proba.shape[1] == 2:
        return _finite(skm.roc_auc_score(y, proba[:, 1]))
    scores = [skm.roc_auc_score(y == c, proba[:, c]) for c in present]
    return _finite(np.mean(scores))


def pr_auc(y: np.ndarray, proba: np.ndarray) -> float | None:
    """Area under the precision-recall curve as average precision (of class 1 for two classes; macro over the
    classes present for more); None when no row is positive."""
    y, proba = _probabilities(y, proba)
    if proba.shape[1] == 2:
        return _finite(skm.average_precision_score(y, proba[:, 1])) if (y == 1).any() else None
    present = np.unique(y)
    return _finite(np.mean([skm.average_precision_score(y == c, proba[:, c]) for c in present]))


def confusion(y: np.ndarray, proba: np.ndarray) -> list[list[int]]:
    """Rows are true classes, columns predicted classes, in class order."""
    y, proba = _probabilities(y, proba)
    k = proba.shape[1]
    return skm.confusion_matrix(y, proba.argmax(axis=1), labels=list(range(k))).tolist()


def calibration(y: np.ndarray, proba: np.ndarray, *, bins: int = CALIBRATION_BINS) -> dict:
    """Reliability diagram data over `bins` equal-width bins of [0, 1]: per bin, the mean predicted probability,
    the observed frequency and the row count. With two classes the probability is that of class 1; with more it
    is the top class's (confidence) and "observed" is the share of rows where the top class was right."""
    y, proba = _probabilities(y, proba)
    if proba.shape[1] == 2:
        p, hit, kind = proba[:, 1], (y == 1), "positive class"
    else:
        p, hit, kind = proba.max(axis=1), proba.argmax(axis=1) == y, "top class"
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.searchsorted(edges[1:-1], p)  # bins are (low, high], the first [0, high], as scikit-learn's
    counts = np.bincount(index, minlength=bins)
    sums = np.bincount(index, weights=p, minlength=bins)
    hits = np.bincount(index, weights=hit.astype(np.float64), minlength=bins)
    out = []
    for b in range(bins):
        n = int(counts[b])
        out.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": n,
                "mean_predicted": _finite(sums[b] / n) if n else None,
                "observed": _finite(hits[b] / n) if n else None,
            }
        )
    gap = (
        np.abs(sums - hits).sum() / y.size
    )  # expected calibration error: sum over bins of n_b |p̄_b - o_b| / n
    return {"probability_of": kind, "bins": out, "ece": _finite(gap)}


def classification_metrics(y: np.ndarray, proba: np.ndarray) -> dict:
    """Every classification figure the platform shows, for one held-out set."""
    y, proba = _probabilities(y, proba)
    return {
        "rows": int(y.size),
        "accuracy": accuracy(y, proba),
        "f1": f1(y, proba),
        "f1_macro": f1_macro(y, proba),
        "roc_auc": roc_auc(y, proba),
        "pr_auc": pr_auc(y, proba),
        "log_loss": _finite(skm.log_loss(y, np.clip(proba, 1e-15, 1), labels=list(range(proba.shape[1])))),
        "confusion_matrix": confusion(y, proba),
        "calibration": calibration(y, proba),
    }


def _values(y: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).ravel()
    pred = np.asarray(pred, dtype=np.float64).ravel()
    if y.shape != pred.shape or y.size == 0:
        raise ValueError("true and predicted values must be two non-empty arrays of one length")
    return y, pred


def rmse(y: np.ndarray, pred: np.ndarray) -> float | None:
    y, pred = _values(y, pred)
    with np.errstate(over="ignore"):
        return _finite(np.sqrt(np.mean((y - pred) ** 2)))


def mae(y: np.ndarray, pred: np.ndarray) -> float | None:
    y, pred = _values(y, pred)
    return _finite(np.mean(np.abs(y - pred)))


def r2(y: np.ndarray, pred: np.ndarray) -> float | None:
    """The coefficient of determination; None when the true values are constant (it is undefined then)."""
    y, pred = _values(y, pred)
    total = np.sum((y - y.mean()) ** 2)
    if total == 0:
        return None
    return _finite(1 - np.sum((y - pred) ** 2) / total)


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict:
    y, pred = _values(y, pred)
    return {"rows": int(y.size), "rmse": rmse(y, pred), "mae": mae(y, pred), "r2": r2(y, pred)}


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float | None]] = {
    "accuracy": accuracy,
    "f1": f1,
    "f1_macro": f1_macro,
    "roc_auc": roc_auc,
    "pr_auc": pr_auc,
    "rmse": rmse,
    "mae": mae,
    "r2": r2,
}
HIGHER_IS_BETTER = {"accuracy": True, "f1": True, "f1_macro": True, "roc_auc": True, "pr_auc": True,
                    "rmse": False, "mae": False, "r2": True}  # fmt: skip


def bootstrap_ci(
    metric_fn: Callable[[np.ndarray, np.ndarray], float | None],
    y: Sequence | np.ndarray,
    p: Sequence | np.ndarray,
    *,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """The metric on all rows, and the percentile bootstrap interval at `level` from `n` resamples of the rows
    (resamples where the metric is undefined are left out, and counted)."""
    if not 1 <= n <= 100_000:
        raise ValueError("n must be between 1 and 100000")
    if not 0 < level < 1:
        raise ValueError("level must be between 0 and 1")
    y, p = np.asarray(y), np.asarray(p)
    if y.shape[0] != p.shape[0] or y.shape[0] == 0:
        raise ValueError("y and p must have the same, non-zero number of rows")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        idx = rng.integers(0, y.shape[0], y.shape[0])
        value = metric_fn(y[idx], p[idx])
        if value is not None and math.isfinite(value):
            values.append(value)
    estimate = metric_fn(y, p)
    low = high = None
    if values:
        low, high = (_finite(v) for v in np.quantile(values, [(1 - level) / 2, (1 + level) / 2]))
    return {
        "estimate": None if estimate is None else _finite(estimate),
        "low": low,
        "high": high,
        "level": level,
        "resamples": n,
        "undefined_resamples": n - len(values),
    }
