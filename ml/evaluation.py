"""Scoring a model on a sealed holdout: labelled rows read by `ml.tabular` (CSV or JSON Lines), checked against
the model's feature schema, scored by one metric of `ml.metrics` with a bootstrap confidence interval.

Error messages name columns and counts, never a row's values: they may be read by someone without a right to
the rows.
"""

import math
from typing import Any

import numpy as np

from ml import metrics
from ml.features import FeatureError, FeatureSchema
from ml.tabular import Table

METRICS_BY_TASK = {
    "classification": ("accuracy", "f1", "roc_auc"),
    "regression": ("rmse", "mae", "r2"),
}


def metric_names(task: str) -> tuple[str, ...]:
    """The metrics a holdout of this task may be scored by."""
    return METRICS_BY_TASK.get(task, ())


def higher_is_better(metric: str) -> bool:
    return metrics.HIGHER_IS_BETTER[metric]


def check_columns(table: Table, schema: FeatureSchema) -> None:
    """That the holdout has exactly the model's input columns and its target (FeatureError says what not)."""
    target = schema.target["name"]
    expected = [*schema.input_columns, target]
    missing = [c for c in expected if c not in table.columns]
    extra = [c for c in table.columns if c not in expected]
    problems = []
    if table.n_rows == 0:
        raise FeatureError("the holdout has no rows")
    if target in missing:
        problems.append(f'the target column "{target}" is missing')
        missing.remove(target)
    if missing:
        problems.append("missing column(s) " + ", ".join(f'"{c}"' for c in missing))
    if extra:
        problems.append("unknown column(s) " + ", ".join(f'"{c}"' for c in extra[:20]))
    if problems:
        raise FeatureError(
            "; ".join(problems) + ". Expected the columns " + ", ".join(f'"{c}"' for c in expected)
        )


def labels(table: Table, schema: FeatureSchema) -> np.ndarray:
    """The true labels of the holdout's rows: class indices in the schema's class order (classification) or
    values (regression). Every row must be labelled, with a class the model knows."""
    name = schema.target["name"]
    if schema.task == "regression":
        if name not in table.numeric:
            raise FeatureError(f'the target "{name}" holds text; this model predicts numbers')
        y = table.numeric[name]
        if not np.all(np.isfinite(y)):
            raise FeatureError(f'{int((~np.isfinite(y)).sum())} row(s) have no value in the target "{name}"')
        return y
    classes = schema.classes
    if name in table.numeric:
        values = table.numeric[name]
        if not np.all(np.isfinite(values)):
            raise FeatureError(f'{int((~np.isfinite(values)).sum())} row(s) have no label in "{name}"')
        index = {}
        for i, c in enumerate(classes):
            number = _as_number(c)
            if number is not None:
                index[number] = i
        y = np.array([index.get(float(v), -1) for v in values], dtype=np.int64)
    else:
        column = table.categorical[name]
        by_text = {str(c): i for i, c in enumerate(classes)}
        lookup = np.array([by_text.get(level, -1) for level in column.levels] + [-2], dtype=np.int64)
        y = lookup[column.codes]
        if (y == -2).any():
            raise FeatureError(f'{int((y == -2).sum())} row(s) have no label in "{name}"')
    unknown = int((y < 0).sum())
    if unknown:
        raise FeatureError(
            f'{unknown} row(s) have a label in "{name}" that is not one of the model\'s classes '
            f"({', '.join(map(str, classes))})"
        )
    return y


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    try:
        number = float(str(value))
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def outputs(model: Any, schema: FeatureSchema, table: Table) -> np.ndarray:
    """What the metric scores: class probabilities (classification) or predicted values (regression)."""
    from ml import supervised  # torch loads with the model, not with this module

    X = schema.matrix(table)
    if schema.task == "classification":
        return supervised.probabilities(model, X, schema)
    return supervised.values(model, X)


def score(
    model: Any, schema: FeatureSchema, table: Table, *, metric: str, resamples: int = 1000, seed: int = 0
) -> dict:
    """The model's `metric` on the holdout with its bootstrap interval: {"metric", "estimate", "low", "high",
    "level", "resamples", "undefined_resamples", "rows"}. FeatureError when the holdout does not fit."""
    if metric not in metric_names(schema.task):
        raise FeatureError(
            f"{metric!r} is not a {schema.task} metric; choose one of {', '.join(metric_names(schema.task))}"
        )
    check_columns(table, schema)
    y = labels(table, schema)
    p = outputs(model, schema, table)
    if not np.all(np.isfinite(p)):
        # Scored as they are, NaN probabilities would read as the first class (argmax) and might meet a standard.
        raise FeatureError(
            "the model gave NaN or infinite outputs on the holdout, so it cannot be scored on it"
        )
    result = metrics.bootstrap_ci(metrics.METRICS[metric], y, p, n=resamples, seed=seed)
    return {"metric": metric, **result, "rows": int(table.n_rows)}


def meets(value: float | None, *, threshold: float, direction: str) -> bool:
    """Whether a measured value meets a standard: at least (`"min"`) or at most (`"max"`) the threshold. An
    undefined value never does."""
    if value is None or not math.isfinite(value):
        return False
    return value >= threshold if direction == "min" else value <= threshold


def rank(scores: list[dict], *, metric: str) -> list[int]:
    """The order of `scores` (dicts with "estimate", or "error") from best to worst; undefined ones last."""
    sign = -1.0 if higher_is_better(metric) else 1.0

    def key(i: int) -> tuple[int, float, int]:
        value = scores[i].get("estimate")
        return (0, sign * value, i) if isinstance(value, float) and math.isfinite(value) else (1, 0.0, i)

    return sorted(range(len(scores)), key=key)
