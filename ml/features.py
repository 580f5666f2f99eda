"""Features for supervised models, from a dataset's already-parsed columns (`ml.tabular.Table`), never its file.

A `FeatureSchema` (JSON) says how rows become the model's input: numeric columns imputed with their median and
standardized, text columns one-hot encoded over their most frequent levels (any other value, and a missing
one, is all zeros), and the target's classes or scale. Training and prediction both use it, so `rows_matrix`
checks a prediction request's rows against it and names every wrong or missing column.

Under a compute-only licence (`budget` given), every number and level in the schema is released with
differential privacy (`ml.dp`): medians and quartiles from noisy histograms over a fixed grid, levels and
classes from noisy counts above a threshold; identifier-like text columns are never used or named. The grid
has half-octave bins, so a column far from zero for its spread (100 ± 3) is scaled coarsely under DP.
"""

import itertools
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from scipy import stats
from sklearn.model_selection import train_test_split

from ml.dp import SELECTION_SHARE, PrivacyBudget, selection_threshold
from ml.privacy import CLIP, IDENTIFIER_SHARE, MIN_COUNT
from ml.tabular import INFINITY_TOKENS, MISSING_TOKENS

FORMAT = 1
TASKS = ("classification", "regression")
MAX_CLASSES = 100
MAX_LEVELS = 50
MAX_PREDICT_ROWS = 10_000
_MAX_ERRORS = 10
_TARGET = "\0target"  # the target's key among the private counts (no column is named so)
# The noisy histograms' fixed grid: |x| from 2^-20 to 2^64 in half octaves, each sign, and a zero bin.
_MAGNITUDES = 2.0 ** (np.arange(-40, 129) / 2)
_EDGES = np.concatenate([-_MAGNITUDES[::-1], _MAGNITUDES])
_BIN_NOISE_CUT = float(stats.norm.isf(0.5 / (_EDGES.size + 1)))  # noise scales


class FeatureError(ValueError):
    """Bad columns, rows or schema; the message names the columns (and rows) at fault, for a 400 answer."""


class CategoricalLike(Protocol):
    codes: np.ndarray
    levels: list[str]


class TableLike(Protocol):
    """What `ml.tabular.Table` offers: float64 numeric columns (nan = missing) and coded categorical ones."""

    columns: list[str]
    numeric: dict[str, np.ndarray]
    categorical: dict[str, CategoricalLike]
    n_rows: int


@dataclass
class FeatureSchema:
    """Input columns in order (each {"name", "type": "numeric", "impute", "center", "scale"} or {"name", "type":
    "categorical", "levels"}), the target ({"name", "task", "classes"} or {"name", "task", "center", "scale"}),
    an optional clip of standardized numbers, and the dataset columns left out with why."""

    columns: list[dict]
    target: dict
    clip: float | None = None
    dropped: dict[str, str] = field(default_factory=dict)
    private: bool = False

    @property
    def task(self) -> str:
        return self.target["task"]

    @property
    def classes(self) -> list:
        return list(self.target.get("classes", []))

    @property
    def input_columns(self) -> list[str]:
        return [c["name"] for c in self.columns]

    @property
    def feature_names(self) -> list[str]:
        names: list[str] = []
        for c in self.columns:
            names += [c["name"]] if c["type"] == "numeric" else [f"{c['name']}={v}" for v in c["levels"]]
        return names

    @property
    def n_features(self) -> int:
        return sum(1 if c["type"] == "numeric" else len(c["levels"]) for c in self.columns)

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "columns": [dict(c) for c in self.columns],
            "target": dict(self.target),
            "clip": self.clip,
            "dropped": dict(self.dropped),
            "private": self.private,
        }

    @classmethod
    def from_json(cls, data: Any) -> "FeatureSchema":
        """A schema from JSON (ours, or one declared with an uploaded model), checked field by field."""
        if not isinstance(data, dict):
            raise FeatureError("a feature schema must be a JSON object")
        if data.get("format", FORMAT) != FORMAT:
            raise FeatureError(f"unknown feature schema format {data.get('format')!r}")
        columns = data.get("columns")
        if not isinstance(columns, list) or not columns:
            raise FeatureError("the feature schema needs a non-empty list of columns")
        if len(columns) > 10_000:
            raise FeatureError("the feature schema has more than 10000 columns")
        out, seen = [], set()
        for i, c in enumerate(columns):
            out.append(_checked_column(c, i))
            if out[-1]["name"] in seen:
                raise FeatureError(f"the feature schema repeats column {out[-1]['name']!r}")
            seen.add(out[-1]["name"])
        target = _checked_target(data.get("target"))
        if target["name"] in seen:
            raise FeatureError(f"the target {target['name']!r} is also an input column")
        clip = data.get("clip")
        if clip is not None and not (_is_number(clip) and clip > 0):
            raise FeatureError("clip must be a positive number or null")
        dropped = data.get("dropped") or {}
        if not isinstance(dropped, dict) or not all(isinstance(v, str) for v in dropped.values()):
            raise FeatureError("dropped must map column names to reasons")
        return cls(
            columns=out, target=target, clip=clip, dropped=dict(dropped), private=bool(data.get("private"))
        )

    def matrix(self, table: TableLike, rows: np.ndarray | None = None) -> np.ndarray:
        """The feature matrix (float64) of `table`'s rows (all, or the indices `rows`)."""
        n = table.n_rows if rows is None else len(rows)
        X = np.zeros((n, self.n_features), dtype=np.float64)
        j = 0
        for c in self.columns:
            name = c["name"]
            if c["type"] == "numeric":
                if name not in table.numeric:
                    raise FeatureError(f'column "{name}" must be numeric')
                values = table.numeric[name] if rows is None else table.numeric[name][rows]
                X[:, j] = self._scale(c, values)
                j += 1
                continue
            if name not in table.categorical:
                raise FeatureError(f'column "{name}" must be text (categorical)')
            column = table.categorical[name]
            codes = column.codes if rows is None else column.codes[rows]
            slot = {level: k for k, level in enumerate(c["levels"])}
            lookup = np.array([slot.get(level, -1) for level in column.levels] + [-1], dtype=np.int64)
            index = lookup[codes]  # code -1 (missing) reads the extra -1 slot
            hit = index >= 0
            X[np.flatnonzero(hit), j + index[hit]] = 1.0
            j += len(c["levels"])
        return X

    def _scale(self, c: dict, values: np.ndarray) -> np.ndarray:
        values = np.where(np.isfinite(values), values, c["impute"])
        z = (values - c["center"]) / c["scale"]
        return np.clip(z, -self.clip, self.clip) if self.clip is not None else z

    def _scale_all(self, X: np.ndarray) -> np.ndarray:
        """_scale of every column of a matrix of only numeric columns, at once."""
        impute, center, scale = (
            np.array([c[k] for c in self.columns]) for k in ("impute", "center", "scale")
        )
        X = np.where(np.isfinite(X), X, impute)
        z = (X - center) / scale
        return np.clip(z, -self.clip, self.clip) if self.clip is not None else z

    def rows_matrix(self, rows: Any, *, max_rows: int = MAX_PREDICT_ROWS) -> np.ndarray:
        """The feature matrix of rows sent for prediction (a list of {column: value}). Every input column must
        be present (null means missing) and no other; numbers may come as JSON numbers or numeric text (CSV);
        a text column takes text, or a number or true/false as its text."""
        if not isinstance(rows, list) or not rows:
            raise FeatureError("rows must be a non-empty list of objects, one per row")
        if len(rows) > max_rows:
            raise FeatureError(f"at most {max_rows} rows per request, not {len(rows)}")
        expected = self.input_columns
        names = set(expected)
        errors: list[str] = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise FeatureError(f"row {i}: expected an object of column: value, not {type(row).__name__}")
            if row.keys() == names:  # the common case, compared in C
                continue
            missing = [c for c in expected if c not in row]
            extra = sorted(str(k) for k in row if k not in self._index)
            if missing:
                errors.append(f"row {i}: missing column(s) {', '.join(repr(c) for c in missing)}")
            if extra:
                errors.append(f"row {i}: unknown column(s) {', '.join(repr(c) for c in extra)}")
            if len(errors) >= _MAX_ERRORS:
                break
        if not errors and all(c["type"] == "numeric" for c in self.columns):
            # Each row's values in the columns' order, taken in C (an itemgetter of one name gives no tuple).
            take = operator.itemgetter(*expected) if len(expected) > 1 else lambda row: (row[expected[0]],)
            X = _plain_numbers(list(map(take, rows)))
            if X is not None:  # numbers only, the common case: scaled at once
                return self._scale_all(X)
        if not errors:
            X = np.zeros((len(rows), self.n_features), dtype=np.float64)
            j = 0
            for c in self.columns:
                if c["type"] == "numeric":
                    cells = [row[c["name"]] for row in rows]
                    values = _plain_numbers(cells)
                    if values is None:  # text, nulls or bad values: read cell by cell, naming the bad ones
                        values = np.array(
                            [self._number(v, i, c["name"], errors) for i, v in enumerate(cells)]
                        )
                    X[:, j] = self._scale(c, values)
                    j += 1
                else:
                    slot = {level: k for k, level in enumerate(c["levels"])}
                    for i, row in enumerate(rows):
                        k = slot.get(self._text(row[c["name"]], i, c["name"], errors), -1)
                        if k >= 0:
                            X[i, j + k] = 1.0
                    j += len(c["levels"])
        if errors:
            shown = errors[:_MAX_ERRORS]
            more = f" (and {len(errors) - len(shown)} more)" if len(errors) > len(shown) else ""
            raise FeatureError(
                "; ".join(shown) + more + f". Expected columns: {', '.join(self._described())}"
            )
        return X

    @property
    def _index(self) -> dict[str, dict]:
        return {c["name"]: c for c in self.columns}

    def _described(self) -> list[str]:
        return [f"{c['name']} ({'number' if c['type'] == 'numeric' else 'text'})" for c in self.columns]

    @staticmethod
    def _number(value: Any, i: int, name: str, errors: list[str]) -> float:
        if value is None:
            return math.nan
        if isinstance(value, str):
            text = value.strip().lower()
            if text in MISSING_TOKENS:
                return math.nan
            if text not in INFINITY_TOKENS:
                try:
                    number = float(text)
                except ValueError:
                    number = None
                if number is not None and math.isfinite(number):
                    return number
        elif _is_number(value):
            return float(value)
        if len(errors) < _MAX_ERRORS + 1:
            shown = repr(value) if len(repr(value)) <= 30 else f"{type(value).__name__} value"
            errors.append(f'row {i}, column "{name}": expected a number, got {shown}')
        return math.nan

    @staticmethod
    def _text(value: Any, i: int, name: str, errors: list[str]) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool):
            return "true" if value else "false"  # as ml.tabular reads JSON flags
        if isinstance(value, str):
            text = value.strip()
            return None if text.lower() in MISSING_TOKENS else text
        if isinstance(value, int | float) and math.isfinite(_as_float(value)):
            return str(value)
        if len(errors) < _MAX_ERRORS + 1:
            errors.append(f'row {i}, column "{name}": expected text, got {type(value).__name__}')
        return None

    def example_row(self) -> dict:
        """A row every model of this schema accepts: the imputed value of each number, the first level of each
        text column (for smoke tests of uploads)."""
        return {
            c["name"]: (c["impute"] if c["type"] == "numeric" else (c["levels"][0] if c["levels"] else None))
            for c in self.columns
        }


def _plain_numbers(cells: list) -> np.ndarray | None:
    """A column (or a list of rows, as tuples) of JSON numbers (no bools, text or nulls), all finite, as floats
    at once; None otherwise."""
    kinds = set(
        map(type, itertools.chain.from_iterable(cells) if cells and type(cells[0]) is tuple else cells)
    )
    if not kinds <= {float, int}:
        return None
    try:
        values = np.array(cells, dtype=np.float64)
    except OverflowError:  # an integer beyond any float
        return None
    return values if np.isfinite(values).all() else None


def _is_number(x: Any) -> bool:
    # float() first: math.isfinite of an integer beyond any float (10**400) raises OverflowError.
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(_as_float(x))


def _as_float(x: int | float) -> float:
    try:
        return float(x)
    except OverflowError:
        return math.inf


def _checked_column(c: Any, i: int) -> dict:
    if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not c["name"]:
        raise FeatureError(f"columns[{i}] must be an object with a non-empty name")
    name = c["name"]
    if c.get("type") == "numeric":
        for key in ("impute", "center", "scale"):
            if not _is_number(c.get(key)):
                raise FeatureError(f'column "{name}": {key} must be a finite number')
        if c["scale"] <= 0:
            raise FeatureError(f'column "{name}": scale must be positive')
        return {"name": name, "type": "numeric", "impute": float(c["impute"]), "center": float(c["center"]),
                "scale": float(c["scale"])}  # fmt: skip
    if c.get("type") == "categorical":
        levels = c.get("levels")
        if not isinstance(levels, list) or not all(isinstance(v, str) for v in levels):
            raise FeatureError(f'column "{name}": levels must be a list of text values')
        if len(set(levels)) != len(levels) or len(levels) > MAX_LEVELS:
            raise FeatureError(f'column "{name}": levels must be distinct, at most {MAX_LEVELS}')
        return {"name": name, "type": "categorical", "levels": list(levels)}
    raise FeatureError(f'column "{name}": type must be "numeric" or "categorical"')


def _checked_target(t: Any) -> dict:
    if not isinstance(t, dict) or not isinstance(t.get("name"), str) or t.get("task") not in TASKS:
        raise FeatureError(
            'the target must be an object with a name and a task ("classification" or "regression")'
        )
    if t["task"] == "classification":
        classes = t.get("classes")
        if not isinstance(classes, list) or not 2 <= len(classes) <= MAX_CLASSES:
            raise FeatureError(f"a classification target needs 2 to {MAX_CLASSES} classes")
        if not all(isinstance(v, str) or _is_number(v) for v in classes) or len(
            set(map(repr, classes))
        ) != len(classes):
            raise FeatureError("classes must be distinct text or numbers")
        return {"name": t["name"], "task": "classification", "classes": list(classes)}
    center, scale = t.get("center", 0.0), t.get("scale", 1.0)
    if not (_is_number(center) and _is_number(scale) and scale > 0):
        raise FeatureError("a regression target's center and scale must be finite, scale positive")
    return {"name": t["name"], "task": "regression", "center": float(center), "scale": float(scale)}


@dataclass
class Features:
    """Train and held-out matrices, the schema fitted on the training rows, and how the split was made."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    schema: FeatureSchema
    split: dict


def _class_label(value: float) -> int | float:
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else float(value)


def _target(table: TableLike, target: str, task: str) -> tuple[np.ndarray, list, np.ndarray]:
    """Per row: the index of its class (classification, -1 = missing) or its value (regression, nan = missing);
    the candidate classes; and the row counts per class."""
    if task == "regression":
        if target not in table.numeric:
            raise FeatureError(f'the target "{target}" holds text; regression needs a numeric column')
        return table.numeric[target], [], np.zeros(0)
    if target in table.categorical:
        # Classes in sorted order, whatever the rows' order: "yes" after "no", "true" after "false".
        column = table.categorical[target]
        levels = [str(c) for c in column.levels]
        order = sorted(range(len(levels)), key=levels.__getitem__)
        rank = np.empty(len(levels) + 1, dtype=np.int64)
        rank[order] = np.arange(len(levels))
        rank[-1] = -1
        codes = rank[column.codes]  # a missing value (-1) reads the extra slot
        return codes, sorted(levels), np.bincount(codes[codes >= 0], minlength=len(levels))
    values = table.numeric[target]
    present = np.isfinite(values)
    distinct, inverse = np.unique(values[present], return_inverse=True)
    if distinct.size > MAX_CLASSES:
        raise FeatureError(
            f'the target "{target}" has {distinct.size} distinct numbers; classification allows at most '
            f"{MAX_CLASSES} classes (choose regression)"
        )
    codes = np.full(values.shape[0], -1, dtype=np.int64)
    codes[present] = inverse
    return codes, [_class_label(v) for v in distinct], np.bincount(inverse, minlength=distinct.size)


def _usable_columns(table: TableLike, target: str, rows: np.ndarray) -> tuple[list[str], dict[str, str]]:
    used, dropped = [], {}
    for name in table.columns:
        if name == target:
            continue
        if name in table.numeric:
            if not np.isfinite(table.numeric[name][rows]).any():
                dropped[name] = "all values missing"
            else:
                used.append(name)
            continue
        codes = table.categorical[name].codes[rows]
        present = codes[codes >= 0]
        distinct = np.unique(present).size
        if distinct == 0:
            dropped[name] = "all values missing"
        elif distinct > IDENTIFIER_SHARE * present.size:
            dropped[name] = "identifier-like: nearly every value is distinct, so none is used or named"
        else:
            used.append(name)
    if not used:
        raise FeatureError("no usable input columns besides the target")
    return used, dropped


def features(
    table: TableLike,
    target: str,
    task: str,
    *,
    test_size: float = 0.2,
    seed: int = 0,
    max_levels: int = 20,
    budget: PrivacyBudget | None = None,
    min_count: int = MIN_COUNT,
) -> Features:
    """Split the rows with a known target into training and held-out rows (stratified by class when every
    class has two rows or more), fit the schema on the training rows, and build both matrices.

    With `budget`, the schema is fitted with differential privacy (see the module's docstring), standardized
    numbers are clipped to ±`CLIP`, and rows whose class is not named are left out."""
    if task not in TASKS:
        raise FeatureError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
    if target not in table.columns:
        raise FeatureError(f'there is no column "{target}" to predict')
    if not (_is_number(test_size) and 0.05 <= test_size <= 0.5):
        raise FeatureError("test_size must be between 0.05 and 0.5")
    if not (isinstance(max_levels, int) and 1 <= max_levels <= MAX_LEVELS):
        raise FeatureError(f"max_levels must be between 1 and {MAX_LEVELS}")
    y_all, classes, counts = _target(table, target, task)
    known = np.flatnonzero(y_all >= 0) if task == "classification" else np.flatnonzero(np.isfinite(y_all))
    if task == "classification" and np.count_nonzero(counts) < 2:
        raise FeatureError(f'the target "{target}" needs at least two classes with rows')
    if known.size < 10:
        raise FeatureError(f"only {known.size} rows have a target value; at least 10 are needed")
    stratify = None
    if task == "classification":
        stratify = y_all[known] if counts[counts > 0].min() >= 2 else None
    train, test = train_test_split(known, test_size=test_size, random_state=seed, stratify=stratify)
    train, test = np.sort(train), np.sort(test)
    used, dropped = _usable_columns(table, target, train)

    fit = _PrivateFit(budget, used, min_count, seed) if budget is not None else None
    columns = [
        _fit_numeric(table.numeric[name][train], fit, name)
        if name in table.numeric
        else _fit_levels(table.categorical[name], train, max_levels, fit, name)
        for name in used
    ]
    if task == "classification":
        train_counts = np.bincount(y_all[train], minlength=len(classes))
        if fit is not None:
            fit.levels(_TARGET, [str(c) for c in classes], train_counts, MAX_CLASSES)
    else:
        target_fit = _fit_numeric(y_all[train], fit, target)
    if fit is not None:
        fit.release()
        columns = [_finish(c, fit) for c in columns]
        for c in columns:
            if c["type"] == "categorical" and not c["levels"]:
                dropped[c["name"]] = "no level has enough rows to be named under this privacy budget"
        columns = [c for c in columns if c["type"] == "numeric" or c["levels"]]
    if task == "classification":
        if fit is not None:
            released = set(fit.named_levels(_TARGET))
            named = [k for k, c in enumerate(classes) if str(c) in released]  # the candidates' order
        else:
            named = [int(k) for k in np.flatnonzero(train_counts)]
        if len(named) < 2:
            raise FeatureError(
                "fewer than two classes have enough training rows to be named"
                + (" under this privacy budget" if fit is not None else "")
            )
        target_spec = {"name": target, "task": task, "classes": [classes[k] for k in named]}
        remap = np.full(len(classes) + 1, -1, dtype=np.int64)
        remap[named] = np.arange(len(named))
        y_index = remap[y_all]  # a missing target (-1) reads the extra slot
        train, test = train[y_index[train] >= 0], test[y_index[test] >= 0]
        y_train, y_test = y_index[train], y_index[test]
    else:
        if fit is not None:
            target_fit = _finish(target_fit, fit)
        target_spec = {
            "name": target,
            "task": task,
            "center": target_fit["center"],
            "scale": target_fit["scale"],
        }
        y_train, y_test = y_all[train], y_all[test]
    schema = FeatureSchema(columns=columns, target=target_spec, clip=CLIP if fit is not None else None,
                           dropped=dropped, private=fit is not None)  # fmt: skip
    if not schema.columns:
        raise FeatureError("no usable input columns besides the target")
    split = {
        "test_size": test_size,
        "seed": seed,
        "stratified": stratify is not None,
        "train_rows": int(train.size),
        "test_rows": int(test.size),
        "rows_without_target": int(table.n_rows - known.size) if fit is None else None,
    }
    return Features(schema.matrix(table, train), y_train, schema.matrix(table, test), y_test, schema, split)


def _fit_numeric(values: np.ndarray, fit: "_PrivateFit | None", name: str) -> dict:
    if fit is not None:
        return fit.numeric(name, values)
    present = values[np.isfinite(values)]
    median = float(np.median(present))
    mean, std = float(present.mean()), float(present.std())
    scale = std if std > 0 and math.isfinite(std) else 1.0
    return {"name": name, "type": "numeric", "impute": median, "center": mean, "scale": scale}


def _fit_levels(
    column: CategoricalLike, rows: np.ndarray, max_levels: int, fit: "_PrivateFit | None", name: str
) -> dict:
    codes = column.codes[rows]
    counts = np.bincount(codes[codes >= 0], minlength=len(column.levels))
    if fit is not None:
        return fit.levels(name, column.levels, counts, max_levels)
    order = sorted(np.flatnonzero(counts), key=lambda i: (-counts[i], column.levels[i]))[:max_levels]
    return {"name": name, "type": "categorical", "levels": [str(column.levels[i]) for i in order]}


class _PrivateFit:
    """Collects every count the schema needs into one vector (each row adds 1 to one cell per column, so its
    L2 sensitivity is √columns), releases it with one Gaussian noise draw, then reads quantiles and levels."""

    def __init__(self, budget: PrivacyBudget, used: Sequence[str], min_count: int, seed: int) -> None:
        self.budget, self.min_count = budget, min_count
        self.rng = np.random.default_rng([seed, len(used), 0x5CE3A])
        self.cells: dict[str, np.ndarray] = {}  # column -> exact counts, then noisy ones
        self.levels_of: dict[str, list[str]] = {}
        self.max_levels: dict[str, int] = {}
        self.noise = budget.schema_noise_multiplier()

    def numeric(self, name: str, values: np.ndarray) -> dict:
        present = values[np.isfinite(values)]
        self.cells[name] = np.bincount(np.searchsorted(_EDGES, present), minlength=_EDGES.size + 1).astype(
            float
        )
        return {"name": name, "type": "numeric", "pending": True}

    def levels(self, name: str, levels: list[str], counts: np.ndarray, max_levels: int) -> dict:
        self.cells[name] = counts.astype(float)
        self.levels_of[name] = [str(level) for level in levels]
        self.max_levels[name] = max_levels
        return {"name": name, "type": "categorical", "pending": True}

    def release(self) -> None:
        columns = len(self.cells)
        self.sigma = self.noise * math.sqrt(columns)
        self.budget.spend_gaussian(self.noise, what=f"feature schema histograms ({columns} columns)")
        for name, counts in self.cells.items():
            self.cells[name] = counts + self.rng.normal(0.0, self.sigma, size=counts.shape)
        if self.levels_of:
            delta = self.budget.delta * SELECTION_SHARE
            self.threshold = selection_threshold(self.sigma, delta, len(self.levels_of), self.min_count)
            self.budget.spend_selection_delta(
                delta, what="naming levels and classes above a noisy-count threshold"
            )

    def quantiles(self, name: str) -> tuple[float, float, float]:
        noisy = self.cells[name]
        # Bins under the noise count as empty: on a grid this size, under half a bin per column passes by noise.
        counts = np.where(noisy > _BIN_NOISE_CUT * self.sigma, noisy, 0.0)
        if counts.sum() <= 0:
            return 0.0, 0.0, 1.0
        cumulative = np.cumsum(counts) / counts.sum()
        values = [_bin_value(int(np.searchsorted(cumulative, q))) for q in (0.25, 0.5, 0.75)]
        return values[0], values[1], values[2]

    def named_levels(self, name: str) -> list[str]:
        noisy, levels = self.cells[name], self.levels_of[name]
        kept = [i for i in np.argsort(-noisy, kind="stable") if noisy[i] >= self.threshold]
        return [levels[i] for i in kept[: self.max_levels[name]]]


def _bin_value(b: int) -> float:
    """A representative value of histogram bin `b` (np.searchsorted over `_EDGES`): its geometric middle."""
    half = _MAGNITUDES.size
    if b == half:
        return 0.0  # between -2^-20 and 2^-20
    if b < half:
        return -_bin_value(2 * half - b)
    k = b - half - 1  # (_MAGNITUDES[k], _MAGNITUDES[k + 1]]
    return float(_MAGNITUDES[min(k, half - 1)] * (2**0.25 if k < half - 1 else 1.0))


def _finish(c: dict, fit: _PrivateFit) -> dict:
    if c["type"] == "numeric":
        q1, median, q3 = fit.quantiles(c["name"])
        scale = (q3 - q1) / 1.349
        if not scale > 0:
            scale = max(abs(median) * 0.3, 1.0) if median != 0 else 1.0
        return {"name": c["name"], "type": "numeric", "impute": median, "center": median, "scale": scale}
    return {"name": c["name"], "type": "categorical", "levels": fit.named_levels(c["name"])}
