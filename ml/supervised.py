"""Supervised models: train on `ml.features` matrices, evaluate on the held-out rows, predict on JSON rows.

Algorithms: logistic regression (classification), linear regression (regression; ridge when `alpha` > 0),
random forest and histogram gradient boosting (scikit-learn, both tasks), and an MLP (PyTorch, from an
`ml.architecture` spec, both tasks). Every training is seeded and repeats exactly on the same device.

With a `PrivacyBudget` (compute-only licences), training is differentially private: the MLP by DP-SGD and the
linear models by DP-SGD on a linear model (noisy clipped gradient descent on Poisson samples, `ml.dp`), whose
weights are then handed to scikit-learn's estimator; the noise is set so that the whole run, schema included,
spends at most the budget's ε. Trees are refused: they can memorise single rows in small leaves.
"""

import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from scipy.special import expit
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.utils.extmath import softmax
from torch import nn

from ml import metrics
from ml.architecture import MLP, build, validate_spec
from ml.artifacts import ArtifactError, load_sklearn, load_torch, save_sklearn, save_torch, sniff
from ml.device import pick_device
from ml.dp import PrivacyBudget, dp_sgd, rdp_subsampled_gaussian
from ml.features import FeatureError, Features, FeatureSchema, features
from ml.privacy import PrivacyError

__all__ = [
    "ALGORITHMS",
    "FeatureSchema",
    "Features",
    "TorchModel",
    "Trained",
    "check_signature",
    "evaluate",
    "features",
    "model_from_bytes",
    "model_to_bytes",
    "options_check",
    "predict",
    "predict_matrix",
    "train",
]

ALGORITHMS = {
    "logistic_regression": ("classification",),
    "linear_regression": ("regression",),
    "random_forest": ("classification", "regression"),
    "hist_gradient_boosting": ("classification", "regression"),
    "mlp": ("classification", "regression"),
}
TREES = frozenset({"random_forest", "hist_gradient_boosting"})
_INT, _FLOAT = "int", "float"
# name -> (kind, low, high, default); a default of None means "scikit-learn's own / unlimited".
_OPTIONS: dict[str, dict[str, tuple]] = {
    "logistic_regression": {"C": (_FLOAT, 1e-6, 1e6, 1.0), "max_iter": (_INT, 10, 10_000, 1000)},
    "linear_regression": {"alpha": (_FLOAT, 0.0, 1e6, 0.0)},
    "random_forest": {
        "n_estimators": (_INT, 1, 1000, 100),
        "max_depth": (_INT, 1, 100, None),
        "min_samples_leaf": (_INT, 1, 10_000, 1),
    },
    "hist_gradient_boosting": {
        "max_iter": (_INT, 1, 2000, 100),
        "learning_rate": (_FLOAT, 1e-4, 1.0, 0.1),
        "max_depth": (_INT, 1, 100, None),
        "max_leaf_nodes": (_INT, 2, 1024, 31),
        "min_samples_leaf": (_INT, 1, 10_000, 20),
    },
    "mlp": {
        "epochs": (_INT, 1, 1000, 30),
        "lr": (_FLOAT, 1e-6, 1.0, 1e-3),
        "batch_size": (_INT, 1, 65_536, 64),
        "weight_decay": (_FLOAT, 0.0, 1.0, 0.0),
        "validation_fraction": (_FLOAT, 0.0, 0.5, 0.1),
    },
}
_MLP_SPEC_KEYS = ("hidden", "activation", "dropout")
_DP_OPTIONS = {
    "epochs": (_INT, 1, 1000, 20),
    "lr": (_FLOAT, 1e-6, 1.0, None),  # default: 0.01 for the MLP, 0.05 for linear models
    "batch_size": (_INT, 1, 65_536, 256),
    "clip": (_FLOAT, 1e-3, 100.0, 1.0),
    "weight_decay": (_FLOAT, 0.0, 1.0, 0.0),
}
PREDICT_BATCH = 65_536


class Progress(Protocol):
    """How training reports: `progress(fraction, message=..., metrics=...)`, as the jobs' reporter takes it."""

    def __call__(self, fraction: float, *, message: str = "", metrics: dict | None = None) -> None: ...


def _silent(fraction: float, *, message: str = "", metrics: dict | None = None) -> None:
    return None


@dataclass
class TorchModel:
    """A built MLP and its spec; outputs probabilities (classification) or values in the target's units."""

    module: MLP
    spec: dict
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def task(self) -> str:
        return self.spec["task"]

    def _outputs(self, X: np.ndarray) -> np.ndarray:
        self.module.eval()
        out = []
        with torch.no_grad():
            for lo in range(0, X.shape[0], PREDICT_BATCH):
                x = torch.as_tensor(X[lo : lo + PREDICT_BATCH], dtype=torch.float32, device=self.device)
                y = self.module(x)
                out.append(
                    (torch.softmax(y.double(), dim=1) if self.task == "classification" else y).cpu().numpy()
                )
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, self.spec["output_width"]))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._outputs(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        out = self._outputs(X)
        return out.argmax(axis=1) if self.task == "classification" else out[:, 0]


@dataclass
class Trained:
    """A trained model with what produced it: the algorithm, the options used (defaults filled in), the
    learning curve (MLP) and, under DP, the privacy spent."""

    model: Any
    algorithm: str
    task: str
    options: dict
    curve: list[dict] = field(default_factory=list)
    privacy: dict | None = None


def _resolve_options(algorithm: str, options: dict | None, private: bool) -> dict:
    options = dict(options or {})
    table = dict(_DP_OPTIONS) if private else dict(_OPTIONS[algorithm])
    if algorithm == "linear_regression" and private:
        table["alpha"] = _OPTIONS["linear_regression"]["alpha"]
    if algorithm == "logistic_regression" and private:
        table["C"] = _OPTIONS["logistic_regression"]["C"]
    table["seed"] = (_INT, 0, 2**31 - 1, 0)
    extra = set(options) - set(table) - (set(_MLP_SPEC_KEYS) if algorithm == "mlp" else set())
    if extra:
        raise ValueError(
            f"unknown option(s) for {algorithm}{' under differential privacy' if private else ''}: "
            f"{', '.join(sorted(extra))}; allowed: {', '.join(sorted(table) + (list(_MLP_SPEC_KEYS) if algorithm == 'mlp' else []))}"
        )
    out: dict[str, Any] = {}
    for name, (kind, low, high, default) in table.items():
        value = options.get(name, default)
        if value is None:
            out[name] = None
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (kind == _INT and not isinstance(value, int))
        ):
            raise ValueError(f"option {name} must be {'a whole number' if kind == _INT else 'a number'}")
        # The range first: math.isfinite of an integer beyond any float (10**400) raises OverflowError.
        if not (low <= value <= high and math.isfinite(value)):
            shown = value if len(str(value)) <= 24 else f"{str(value)[:12]}… ({len(str(value))} characters)"
            raise ValueError(f"option {name} must be between {low:g} and {high:g}, not {shown}")
        out[name] = value
    if algorithm == "mlp":
        for key in _MLP_SPEC_KEYS:
            if key in options:
                out[key] = options[key]
    return out


def _trees_not_private(algorithm: str) -> str:
    return (
        f"{algorithm.replace('_', ' ')} cannot be trained under a compute-only licence: tree models can "
        "memorise single rows in small leaves, so they are offered only to the data's owner and download "
        "licensees. Choose logistic or linear regression or the MLP, which train with differential privacy"
    )


def options_check(algorithm: str, task: str, options: dict | None = None, *, private: bool = False) -> dict:
    """The options `train` would use (defaults filled in), checked before any data is read: ValueError naming
    what is wrong, PrivacyError for a tree under differential privacy. An MLP's spec fields are checked too."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, not {algorithm!r}")
    if task not in ALGORITHMS[algorithm]:
        raise ValueError(f"{algorithm} does not do {task}")
    if private and algorithm in TREES:
        raise PrivacyError(_trees_not_private(algorithm))
    opts = _resolve_options(algorithm, options, private)
    if algorithm == "mlp":
        _spec(opts, task, 1, 2 if task == "classification" else None, [64, 32])
    return opts


def train(
    X: np.ndarray,
    y: np.ndarray,
    task: str,
    algorithm: str,
    options: dict | None = None,
    progress: Progress | None = None,
    *,
    schema: FeatureSchema | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    budget: PrivacyBudget | None = None,
    device: str = "",
) -> Trained:
    """Train `algorithm` on X (features) and y (class indices, or values). `schema` (the one that built X)
    gives the class count and the target's scale; it is required under DP, where every number must come from
    a private release. The MLP's learning curve is reported each epoch on `validation` (default: a
    `validation_fraction` of the training rows, held back)."""
    report = progress or _silent
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, not {algorithm!r}")
    if task not in ALGORITHMS[algorithm]:
        other = "logistic_regression" if algorithm == "linear_regression" else "linear_regression"
        hint = f" (use {other})" if algorithm in ("logistic_regression", "linear_regression") else ""
        raise ValueError(f"{algorithm} does not do {task}{hint}")
    if budget is not None and algorithm in TREES:
        raise PrivacyError(_trees_not_private(algorithm))
    if budget is not None and (schema is None or not schema.private):
        raise PrivacyError("private training needs the schema fitted under the same privacy budget")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] != len(y) or X.shape[0] < 2:
        raise ValueError("X must be a matrix with one row per label, and at least two rows")
    if not np.isfinite(X).all():
        raise ValueError("X holds NaN or infinite values; build it with ml.features")
    opts = _resolve_options(algorithm, options, budget is not None)
    n_classes = len(schema.classes) if schema is not None and task == "classification" else None
    if task == "classification":
        y = np.asarray(y, dtype=np.int64)
        n_classes = n_classes or int(y.max()) + 1
        if n_classes < 2 or y.min() < 0 or y.max() >= n_classes:
            raise ValueError("classification labels must be class indices 0..k-1, with k >= 2")
    else:
        y = np.asarray(y, dtype=np.float64)
        if not np.isfinite(y).all():
            raise ValueError("regression targets must be finite")
    if budget is not None:
        return _train_private(X, y, task, algorithm, opts, report, schema, n_classes, budget, device)
    if algorithm == "mlp":
        return _train_mlp(X, y, task, opts, report, schema, n_classes, validation, device)
    report(0.0, message=f"training {algorithm.replace('_', ' ')} on {X.shape[0]} rows")
    estimator = _estimator(algorithm, task, opts)
    estimator.fit(X, y)
    report(1.0, message="trained")
    return Trained(estimator, algorithm, task, opts)


def _estimator(algorithm: str, task: str, opts: dict) -> Any:
    seed = opts["seed"]
    if algorithm == "logistic_regression":
        return LogisticRegression(C=opts["C"], max_iter=opts["max_iter"])
    if algorithm == "linear_regression":
        return Ridge(alpha=opts["alpha"]) if opts["alpha"] > 0 else LinearRegression()
    if algorithm == "random_forest":
        cls = RandomForestClassifier if task == "classification" else RandomForestRegressor
        return cls(n_estimators=opts["n_estimators"], max_depth=opts["max_depth"],
                   min_samples_leaf=opts["min_samples_leaf"], random_state=seed, n_jobs=1)  # fmt: skip
    cls = HistGradientBoostingClassifier if task == "classification" else HistGradientBoostingRegressor
    return cls(max_iter=opts["max_iter"], learning_rate=opts["learning_rate"], max_depth=opts["max_depth"],
               max_leaf_nodes=opts["max_leaf_nodes"], min_samples_leaf=opts["min_samples_leaf"],
               random_state=seed)  # fmt: skip


def _device(device: str) -> torch.device:
    return pick_device(device or os.environ.get("ML_DEVICE", ""))


@contextmanager
def _seeded(dev: torch.device) -> Iterator[None]:
    """Global torch RNGs (initial weights, dropout) forked for the block, so seeding does not leak out of it."""
    devices = (
        [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    )
    with torch.random.fork_rng(devices=devices, device_type="cuda" if dev.type == "cuda" else None):
        yield


def _target_scale(y: np.ndarray, schema: FeatureSchema | None) -> tuple[float, float]:
    if schema is not None and schema.task == "regression":
        return schema.target["center"], schema.target["scale"]
    std = float(y.std())
    return float(y.mean()), std if std > 0 else 1.0


def _spec(opts: dict, task: str, n_in: int, n_classes: int | None, hidden_default: list[int]) -> dict:
    return validate_spec(
        {
            "input_width": n_in,
            "hidden": opts.get("hidden", hidden_default),
            "activation": opts.get("activation", "relu"),
            "dropout": opts.get("dropout", 0.0),
            "task": task,
            "output_width": n_classes if task == "classification" else 1,
        }
    )


def _bake_target_scale(module: MLP, center: float, scale: float) -> None:
    """Fold the target's standardization into the output layer, so the module predicts in the target's units."""
    with torch.no_grad():
        module.output.weight.mul_(scale)
        module.output.bias.mul_(scale).add_(center)


def _loss(task: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if task == "classification":
        return nn.functional.cross_entropy
    return lambda out, target: nn.functional.mse_loss(out[:, 0], target)


def _train_mlp(
    X: np.ndarray, y: np.ndarray, task: str, opts: dict, report: Progress, schema: FeatureSchema | None,
    n_classes: int | None, validation: tuple[np.ndarray, np.ndarray] | None, device: str,
) -> Trained:  # fmt: skip
    dev = _device(device)
    seed = opts["seed"]
    if validation is None and opts["validation_fraction"] > 0 and X.shape[0] >= 20:
        stratify = y if task == "classification" and np.bincount(y).min(initial=2) >= 2 else None
        X, X_val, y, y_val = train_test_split(X, y, test_size=opts["validation_fraction"], random_state=seed,
                                              stratify=stratify)  # fmt: skip
        validation = (X_val, y_val)
    center, scale = _target_scale(y, schema) if task == "regression" else (0.0, 1.0)
    spec = _spec(opts, task, X.shape[1], n_classes, [64, 32])
    as_y = (lambda a: torch.as_tensor(a, dtype=torch.long, device=dev)) if task == "classification" else (
        lambda a: torch.as_tensor((a - center) / scale, dtype=torch.float32, device=dev))  # fmt: skip
    xt, yt = torch.as_tensor(X, dtype=torch.float32, device=dev), as_y(y)
    val = None
    if validation is not None:
        val = (
            torch.as_tensor(validation[0], dtype=torch.float32, device=dev),
            as_y(validation[1]),
        )
    loss_fn = _loss(task)
    curve: list[dict] = []
    with _seeded(dev):
        torch.manual_seed(seed)
        module = build(spec).to(dev)
        optimizer = torch.optim.Adam(module.parameters(), lr=opts["lr"], weight_decay=opts["weight_decay"])
        generator = torch.Generator(device="cpu").manual_seed(seed)
        epochs, batch = opts["epochs"], opts["batch_size"]
        report(0.0, message=f"training the MLP on {xt.shape[0]} rows ({dev.type})")
        for epoch in range(1, epochs + 1):
            module.train()
            order = torch.randperm(xt.shape[0], generator=generator).to(dev)
            total = 0.0
            for lo in range(0, xt.shape[0], batch):
                idx = order[lo : lo + batch]
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(module(xt[idx]), yt[idx])
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * idx.numel()
            point: dict[str, Any] = {"step": epoch, "loss": _f(total / xt.shape[0])}
            if val is not None:
                point.update(_validation_point(module, val, task, loss_fn, scale))
            curve.append(point)
            report(epoch / epochs, message=f"epoch {epoch} of {epochs}", metrics=point)
    if task == "regression":
        _bake_target_scale(module, center, scale)
    return Trained(TorchModel(module.eval(), spec, dev), "mlp", task, {**opts, **{k: spec[k] for k in _MLP_SPEC_KEYS}},
                   curve)  # fmt: skip


def _validation_point(module: MLP, val: tuple, task: str, loss_fn: Callable, scale: float) -> dict:
    xv, yv = val
    module.eval()
    with torch.no_grad():
        out = module(xv)
        point = {"val_loss": _f(float(loss_fn(out, yv)))}
        if task == "classification":
            point["accuracy"] = _f(float((out.argmax(dim=1) == yv).float().mean()))
        else:
            point["rmse"] = _f(float(torch.sqrt(torch.mean((out[:, 0] - yv) ** 2))) * scale)
    return point


def _f(x: float) -> float | None:
    return round(x, 6) if math.isfinite(x) else None


def _train_private(
    X: np.ndarray, y: np.ndarray, task: str, algorithm: str, opts: dict, report: Progress, schema: FeatureSchema,
    n_classes: int | None, budget: PrivacyBudget, device: str,
) -> Trained:  # fmt: skip
    """DP-SGD on the MLP, or on a linear model for logistic/linear regression (see the module docstring)."""
    dev = _device(device)
    seed, epochs, clip = opts["seed"], opts["epochs"], opts["clip"]
    n = X.shape[0]
    q = min(opts["batch_size"] / n, 1.0)
    steps_per_epoch = max(1, round(1 / q))
    steps = epochs * steps_per_epoch
    report(0.0, message="choosing the noise that fits the privacy budget")
    z = budget.sgd_noise_multiplier(q, steps)
    linear = algorithm != "mlp"
    if linear:
        spec = _spec({"hidden": []}, task, X.shape[1], n_classes, [])
    else:
        spec = _spec(opts, task, X.shape[1], n_classes, [64, 32])
    center, scale = (schema.target["center"], schema.target["scale"]) if task == "regression" else (0.0, 1.0)
    xt = torch.as_tensor(X, dtype=torch.float32, device=dev)
    yt = (torch.as_tensor(y, dtype=torch.long, device=dev) if task == "classification"
          else torch.as_tensor((y - center) / scale, dtype=torch.float32, device=dev))  # fmt: skip
    lr = opts["lr"] or (0.05 if linear else 0.01)
    # L2 regularisation of linear models: 1/C for logistic, alpha for ridge, per row as scikit-learn scales them.
    decay = opts["weight_decay"]
    if algorithm == "logistic_regression":
        decay = decay or 1.0 / (opts["C"] * n)
    elif algorithm == "linear_regression":
        decay = decay or opts["alpha"] / n
    curve: list[dict] = []
    with _seeded(dev):
        torch.manual_seed(seed)
        module = build(spec).to(dev)
        if linear:
            with torch.no_grad():
                module.output.weight.zero_()
                module.output.bias.zero_()
        optimizer = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=decay)
        generator = torch.Generator(device=dev).manual_seed(seed)
        report(0.0, message=f"DP-SGD: {steps} steps, noise multiplier {z:.3f}, sampling rate {q:.4f}")

        def on_step(step: int) -> None:
            if (step + 1) % steps_per_epoch == 0:
                epoch = (step + 1) // steps_per_epoch
                # Losses on private rows would be releases too: the curve shows only the privacy spent.
                spent = budget.spent(rdp_subsampled_gaussian(q, z, step + 1))
                point = {"step": epoch, "epsilon": round(spent, 6)}
                curve.append(point)
                report(
                    epoch / epochs, message=f"epoch {epoch} of {epochs} (ε spent {spent:.3f})", metrics=point
                )

        dp_sgd(module, _loss(task), xt, yt, sampling_rate=q, steps=steps, noise_multiplier=z, clip=clip,
               optimizer=optimizer, generator=generator, on_step=on_step)  # fmt: skip
    budget.spend_subsampled_gaussian(q, z, steps, what=f"DP-SGD ({algorithm}, clip {clip:g})")
    module.eval()
    if task == "regression":
        _bake_target_scale(module, center, scale)
    privacy = budget.summary()
    opts = {**opts, "lr": lr, "noise_multiplier": z, "sampling_rate": q, "steps": steps}
    if linear:
        return Trained(_to_sklearn(module, task, n_classes), algorithm, task, opts, curve, privacy)
    return Trained(TorchModel(module, spec, dev), algorithm, task, {**opts, **{k: spec[k] for k in _MLP_SPEC_KEYS}},
                   curve, privacy)  # fmt: skip


def _to_sklearn(module: MLP, task: str, n_classes: int | None) -> Any:
    """The linear module's weights in scikit-learn's estimator (so it is saved, loaded and served like any)."""
    w = module.output.weight.detach().cpu().double().numpy()
    b = module.output.bias.detach().cpu().double().numpy()
    if task == "regression":
        est = Ridge()
        est.coef_, est.intercept_ = w[0], float(b[0])
    else:
        est = LogisticRegression()
        est.classes_ = np.arange(n_classes)
        if n_classes == 2:  # softmax over two logits is the logistic of their difference
            est.coef_, est.intercept_ = (w[1] - w[0])[None, :], np.array([b[1] - b[0]])
        else:
            est.coef_, est.intercept_ = w, b
        est.n_iter_ = np.array([0])
    est.n_features_in_ = w.shape[1]
    return est


def _unwrap(model: Any) -> Any:
    return model.model if isinstance(model, Trained) else model


_LINEAR = (LinearRegression, LogisticRegression, Ridge)


def _linear_scores(model: Any, X: np.ndarray) -> np.ndarray | None:
    """A plain linear model's decision function computed as scikit-learn computes it, without the checks of its
    input (most of a one-row call: feature names, dataframe kinds, finiteness): only for a finite float64 matrix
    of the width it was fitted on, which is what `FeatureSchema.rows_matrix` makes. None for anything else, which
    scikit-learn then checks and refuses as before."""
    if (
        type(model) not in _LINEAR
        or not isinstance(X, np.ndarray)
        or X.dtype != np.float64
        or X.ndim != 2
        or X.shape[1] != getattr(model, "n_features_in_", None)
        or not isinstance(model.coef_, np.ndarray)
        or not np.isfinite(X).all()
    ):
        return None
    coef = model.coef_
    scores = X @ (coef.T if coef.ndim == 2 else coef) + model.intercept_
    return scores.reshape(-1) if scores.ndim > 1 and scores.shape[1] == 1 else scores


def _linear_probabilities(model: Any, X: np.ndarray) -> np.ndarray | None:
    """`predict_proba` of a LogisticRegression, by scikit-learn's own arithmetic (see _linear_scores)."""
    if not isinstance(model, LogisticRegression):
        return None
    scores = _linear_scores(model, X)
    if scores is None:
        return None
    if len(model.classes_) <= 2:
        p = expit(scores, out=scores)
        return np.stack([1 - p, p], axis=1)
    return softmax(scores, copy=False)


def probabilities(model: Any, X: np.ndarray, schema: FeatureSchema) -> np.ndarray:
    """Class probabilities, one column per class of the schema (a class the model never saw gets 0)."""
    model = _unwrap(model)
    k = len(schema.classes)
    if isinstance(model, TorchModel):
        return model.predict_proba(X)
    raw = _linear_probabilities(model, X)
    if raw is None:
        raw = np.asarray(model.predict_proba(X), dtype=np.float64)
    out = np.zeros((raw.shape[0], k))
    out[:, _class_columns(model, schema)] = raw
    return out


def _class_columns(model: Any, schema: FeatureSchema) -> list[int]:
    classes = list(getattr(model, "classes_", []))
    by_label = {repr(c): i for i, c in enumerate(schema.classes)}
    columns = []
    for c in classes:
        value = c.item() if hasattr(c, "item") else c
        if repr(value) in by_label:
            columns.append(by_label[repr(value)])
        elif isinstance(value, int) and 0 <= value < len(schema.classes):
            columns.append(value)
        else:
            raise ArtifactError(f"the model predicts class {value!r}, which the schema does not list")
    return columns


def values(model: Any, X: np.ndarray) -> np.ndarray:
    model = _unwrap(model)
    scores = _linear_scores(model, X) if not isinstance(model, LogisticRegression) else None
    return np.asarray(model.predict(X) if scores is None else scores, dtype=np.float64).ravel()


def evaluate(model: Any, X: np.ndarray, y: np.ndarray, schema: FeatureSchema) -> dict:
    """The held-out metrics of `ml.metrics` for the schema's task."""
    if schema.task == "classification":
        return metrics.classification_metrics(y, probabilities(model, X, schema))
    return metrics.regression_metrics(y, values(model, X))


def predict(model: Any, schema: FeatureSchema, rows: Any) -> list[dict]:
    """Predictions for rows of {column: value}, checked against the schema (FeatureError names what is wrong):
    {"prediction": class, "probabilities": {class: p}} or {"prediction": value} per row."""
    return predict_matrix(model, schema, schema.rows_matrix(rows))


def predict_matrix(model: Any, schema: FeatureSchema, X: np.ndarray) -> list[dict]:
    """`predict` on a feature matrix already made by `schema.rows_matrix` (a caller that checks the rows
    before deciding whether to run the model)."""
    if schema.task == "classification":
        proba = probabilities(model, X, schema)
        if not np.isfinite(proba).all():
            bad = int((~np.isfinite(proba).all(axis=1)).sum())
            raise ArtifactError(
                f"the model gave NaN or infinite probabilities for {bad} of {proba.shape[0]} row(s)"
            )
        labels = schema.classes
        names = [str(c) for c in labels]
        # Whole rows at once: numpy's argmax per row and its floats as Python's (tolist), zipped in C.
        return [
            {"prediction": labels[i], "probabilities": dict(zip(names, p, strict=True))}
            for i, p in zip(proba.argmax(axis=1).tolist(), proba.tolist(), strict=True)
        ]
    return [{"prediction": float(v) if math.isfinite(v) else None} for v in values(model, X)]


def check_signature(model: Any, schema: FeatureSchema) -> None:
    """That a (loaded) model takes the schema's features and gives its task's outputs, then a smoke prediction
    on the schema's example row; ArtifactError says what does not match."""
    model = _unwrap(model)
    n = schema.n_features
    if isinstance(model, TorchModel):
        width, task = model.spec["input_width"], model.task
    else:
        width = getattr(model, "n_features_in_", None)
        task = "classification" if hasattr(model, "predict_proba") else "regression"
    if width != n:
        raise ArtifactError(f"the model takes {width} features but the schema makes {n}")
    if task != schema.task:
        raise ArtifactError(f"the model does {task} but the schema's target is for {schema.task}")
    if task == "classification":
        if isinstance(model, TorchModel):
            outputs = model.spec["output_width"]
            if outputs != len(schema.classes):
                raise ArtifactError(
                    f"the model has {outputs} outputs but the schema lists {len(schema.classes)} classes"
                )
        else:
            _class_columns(model, schema)
    try:
        smoke = predict(model, schema, [schema.example_row()])
    except (FeatureError, ArtifactError):
        raise
    except Exception as exc:  # the smoke prediction failed inside the model
        raise ArtifactError(f"the model failed on an example row: {exc}") from None
    if task == "regression" and smoke[0]["prediction"] is None:
        raise ArtifactError("the model gave a NaN or infinite prediction for an example row")


def model_to_bytes(model: Any) -> tuple[str, bytes]:
    """("safetensors", weights with the spec inside) for an MLP, ("skops", bytes) for a scikit-learn model."""
    model = _unwrap(model)
    if isinstance(model, TorchModel):
        return "safetensors", save_torch(model.module, model.spec)
    return "skops", save_sklearn(model)


def model_from_bytes(data: bytes, *, spec: Any = None, max_bytes: int | None = None, device: str = "") -> Any:
    """A model from safe bytes (sniffed first: pickles and unknown files are refused unloaded)."""
    limit = {"max_bytes": max_bytes} if max_bytes is not None else {}
    if sniff(data, **limit) == "skops":
        return load_sklearn(data, **limit)
    module, spec = load_torch(data, spec, **limit)
    dev = _device(device)
    return TorchModel(module.to(dev), spec, dev)
