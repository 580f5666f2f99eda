"""A party's side of a round: its rows as the model's input, local training from the global weights (FedAvg's
SGD or Adam, FedProx's proximal term), and evaluation. The server uses the same code to evaluate and to seed
the first global model, so clients and server agree on every number.

Regression targets are trained standardized by the schema's center and scale (as `ml.supervised` does);
`bake_target_scale` folds that into the output layer when the final model is published.
"""

import math
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ml.architecture import build, validate_spec
from ml.device import pick_device
from ml.evaluation import labels
from ml.features import FeatureError, FeatureSchema
from ml.federated import tensors as T
from ml.federated.tensors import Tensors

OPTIMIZERS = ("sgd", "adam")
RECIPE_DEFAULTS = {"optimizer": "sgd", "lr": 0.05, "batch_size": 32, "local_epochs": 1, "proximal_mu": 0.0}
MAX_BATCH = 65_536
MAX_EPOCHS = 100
EVAL_BATCH = 8_192


class RecipeError(ValueError):
    """A training recipe that cannot be used; the message names the field."""


@dataclass
class LocalResult:
    """A party's update: the weight delta (local - global), the rows it trained on and its local metrics."""

    delta: Tensors
    num_examples: int
    metrics: dict = field(default_factory=dict)


def task_xy(schema: FeatureSchema, table: Any) -> tuple[np.ndarray, np.ndarray]:
    """The feature matrix (float32) and targets of a party's table: class indices (int64) in the schema's
    order, or standardized values (float32). Every row needs a target the schema knows."""
    target = schema.target["name"]
    missing = [c for c in [*schema.input_columns, target] if c not in table.columns]
    if missing:
        raise FeatureError(
            "the table lacks the federation's column(s) " + ", ".join(f'"{c}"' for c in missing[:20])
        )
    if table.n_rows == 0:
        raise FeatureError("the table has no rows")
    X = schema.matrix(table).astype(np.float32)
    y = labels(table, schema)  # names the count of rows without a target or with an unknown class
    if schema.task == "regression":
        y = ((y - schema.target["center"]) / schema.target["scale"]).astype(np.float32)
    return X, y


@contextmanager
def _forked(dev: torch.device):
    """Global torch RNGs (initial weights, dropout) forked, so seeding here does not leak to the caller."""
    devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type="cuda" if dev.type == "cuda" else None):
        yield


def initial_tensors(spec: dict, seed: int) -> Tensors:
    """The first global model: the spec's module initialised from `seed` (PyTorch's default init)."""
    with _forked(torch.device("cpu")):
        torch.manual_seed(seed)
        return T.from_module(build(spec))


def _number(recipe: dict, key: str, low: float, high: float, *, open_low: bool) -> float:
    value = recipe[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecipeError(f"{key} must be a number, not {type(value).__name__}")
    value = float(value) if abs(value) < 1e300 else math.inf
    if not math.isfinite(value) or not ((value > low if open_low else value >= low) and value <= high):
        raise RecipeError(f"{key} must be in {'(' if open_low else '['}{low:g}, {high:g}], not {value!r}")
    return value


def _whole(recipe: dict, key: str, high: int) -> int:
    value = recipe[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise RecipeError(f"{key} must be a whole number from 1 to {high}, not {value!r}")
    return value


def recipe_check(recipe: Any) -> dict:
    """The local training recipe with defaults filled in, or RecipeError naming the field at fault."""
    recipe = {} if recipe is None else recipe
    if not isinstance(recipe, dict):
        raise RecipeError("the training recipe must be an object")
    unknown = sorted(str(k) for k in recipe if k not in RECIPE_DEFAULTS)
    if unknown:
        raise RecipeError(
            f"unknown recipe field(s): {', '.join(unknown)} (allowed: {', '.join(RECIPE_DEFAULTS)})"
        )
    out = {**RECIPE_DEFAULTS, **recipe}
    if out["optimizer"] not in OPTIMIZERS:
        raise RecipeError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {out['optimizer']!r}")
    out["lr"] = _number(out, "lr", 0, 10, open_low=True)
    out["proximal_mu"] = _number(out, "proximal_mu", 0, 1000, open_low=False)
    out["batch_size"] = _whole(out, "batch_size", MAX_BATCH)
    out["local_epochs"] = _whole(out, "local_epochs", MAX_EPOCHS)
    return out


def _device(device: str) -> torch.device:
    return pick_device("" if device == "auto" else device)


def _checked(spec: dict, X: np.ndarray, y: np.ndarray) -> None:
    if X.ndim != 2 or X.shape[1] != spec["input_width"]:
        raise FeatureError(f"the model takes {spec['input_width']} features per row, not {X.shape[1:]}")
    if X.shape[0] == 0 or y.shape != (X.shape[0],):
        raise FeatureError("there must be one target per row, and at least one row")
    if not np.isfinite(X).all():
        raise FeatureError("the features hold NaN or infinite values")
    if spec["task"] == "classification":
        if y.min() < 0 or y.max() >= spec["output_width"]:
            raise FeatureError(f"class indices must be in [0, {spec['output_width']})")
    elif not np.isfinite(y).all():
        raise FeatureError("the regression targets hold NaN or infinite values")


def _targets(spec: dict, y: np.ndarray, dev: torch.device) -> torch.Tensor:
    dtype = torch.long if spec["task"] == "classification" else torch.float32
    return torch.as_tensor(y, dtype=dtype, device=dev)


def _loss(task: str, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if task == "classification":
        return nn.functional.cross_entropy(out, target)
    return nn.functional.mse_loss(out[:, 0], target)


def train_local(
    *, spec: dict, global_tensors: Tensors, X: np.ndarray, y: np.ndarray, recipe: dict, seed: int,
    device: str = "cpu", progress: Callable[[int, int], None] | None = None,
) -> LocalResult:  # fmt: skip
    """Train from the global weights on (X, y) by the recipe and return the delta. Batch order and dropout come
    from `seed`; FedProx adds (mu/2)·||w - w_global||² to each batch's loss. `progress(step, steps)` is called
    after each batch; `device` is "cpu", "cuda[:n]" or "auto" (CUDA when present)."""
    spec = validate_spec(spec)
    recipe = recipe_check(recipe)
    _checked(spec, X, y)
    dev = _device(device)
    n, batch, epochs, mu = X.shape[0], recipe["batch_size"], recipe["local_epochs"], recipe["proximal_mu"]
    steps, step = epochs * math.ceil(n / batch), 0
    xt = torch.as_tensor(X, dtype=torch.float32, device=dev)
    yt = _targets(spec, y, dev)
    with _forked(dev):
        torch.manual_seed(seed)
        module = T.load_into(build(spec).to(dev), global_tensors)
        anchor = [p.detach().clone() for p in module.parameters()] if mu > 0 else []
        params = module.parameters()
        optimizer = (torch.optim.SGD(params, lr=recipe["lr"]) if recipe["optimizer"] == "sgd"
                     else torch.optim.Adam(params, lr=recipe["lr"]))  # fmt: skip
        generator = torch.Generator(device="cpu").manual_seed(seed)
        module.train()
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator).to(dev)
            total, correct = torch.zeros((), device=dev), torch.zeros((), device=dev)
            for lo in range(0, n, batch):
                idx = order[lo : lo + batch]
                optimizer.zero_grad(set_to_none=True)
                out = module(xt[idx])
                loss = _loss(spec["task"], out, yt[idx])
                total += loss.detach() * idx.numel()
                if spec["task"] == "classification":
                    correct += (out.detach().argmax(dim=1) == yt[idx]).sum()
                if mu > 0:
                    loss = loss + (mu / 2) * sum(((p - a) ** 2).sum() for p, a in
                                                 zip(module.parameters(), anchor, strict=True))  # fmt: skip
                loss.backward()
                optimizer.step()
                step += 1
                if progress is not None:
                    progress(step, steps)
    # Metrics of the last epoch, as the batches went (no extra pass over the data).
    metrics = {"loss": float(total) / n}
    if spec["task"] == "classification":
        metrics["accuracy"] = float(correct) / n
    delta = T.subtract(T.from_module(module), T.canonical(global_tensors))
    return LocalResult(delta=delta, num_examples=int(n), metrics=metrics)


def evaluate(
    *, spec: dict, tensors: Tensors, X: np.ndarray, y: np.ndarray, device: str = "cpu",
    schema: FeatureSchema | None = None,
) -> dict:  # fmt: skip
    """The model's metrics on (X, y): loss and accuracy (classification), or loss, rmse, mae and r2
    (regression; rmse and mae in the target's units when `schema` is given, else standardized)."""
    spec = validate_spec(spec)
    _checked(spec, X, y)
    dev = _device(device)
    module = T.load_into(build(spec).to(dev), tensors).eval()
    with torch.no_grad():
        out = torch.cat(
            [module(torch.as_tensor(X[lo : lo + EVAL_BATCH], dtype=torch.float32, device=dev))
             for lo in range(0, X.shape[0], EVAL_BATCH)]
        ).double()  # fmt: skip
        if spec["task"] == "classification":
            target = torch.as_tensor(y, dtype=torch.long, device=dev)
            return {
                "loss": float(nn.functional.cross_entropy(out, target)),
                "accuracy": float((out.argmax(dim=1) == target).double().mean()),
            }
        pred, target = out[:, 0], torch.as_tensor(y, dtype=torch.float64, device=dev)
        err = pred - target
        mse = float((err**2).mean())
        var = float(((target - target.mean()) ** 2).mean())
    scale = schema.target["scale"] if schema is not None and schema.task == "regression" else 1.0
    return {
        "loss": mse,
        "rmse": math.sqrt(mse) * scale,
        "mae": float(err.abs().mean()) * scale,
        "r2": 1.0 - mse / var if var > 0 else 0.0,
    }


def bake_target_scale(tensors: Tensors, schema: FeatureSchema) -> Tensors:
    """A regression model's weights with the target's standardization folded into the output layer, so it
    predicts in the target's units (as `ml.supervised`'s models do); classification weights unchanged."""
    if schema.task != "regression":
        return T.canonical(tensors)
    center, scale = schema.target["center"], schema.target["scale"]
    out = dict(T.canonical(tensors))
    out["output.weight"] = (out["output.weight"].astype(np.float64) * scale).astype(np.float32)
    out["output.bias"] = (out["output.bias"].astype(np.float64) * scale + center).astype(np.float32)
    return out
