"""MLP architecture specs: a small JSON dict that our own code validates and turns into a `torch.nn.Module`.

A spec is all a model file needs besides its weights, so uploaded weights never bring code: the module is built
here, from an allow-list of layers and activations, within bounds that keep one spec from exhausting memory.
Parameter names are fixed by the spec (`hidden.0.weight`, ..., `output.bias`), so safetensors files round-trip.
"""

import itertools
import math
from typing import Any

import torch
from torch import nn

FORMAT = 1
TASKS = ("classification", "regression")
ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}
MAX_INPUT_WIDTH = 10_000
MAX_LAYER_WIDTH = 4_096
MAX_LAYERS = 8
MAX_OUTPUT_WIDTH = 1_000
MAX_PARAMETERS = 20_000_000  # 80 MB of float32 weights
MAX_DROPOUT = 0.9
_KEYS = {"format", "input_width", "hidden", "activation", "dropout", "task", "output_width"}
_DEFAULTS = {"format": FORMAT, "hidden": [], "activation": "relu", "dropout": 0.0}


class SpecError(ValueError):
    """An architecture spec that cannot be built; the message says which field and why."""


def _int(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{what} must be a whole number, not {type(value).__name__}")
    if not low <= value <= high:
        raise SpecError(f"{what} must be between {low} and {high}, not {value}")
    return value


def validate_spec(spec: Any) -> dict:
    """The spec with defaults filled in, or SpecError naming the first field that is wrong."""
    if not isinstance(spec, dict):
        raise SpecError(f"an architecture spec must be a JSON object, not {type(spec).__name__}")
    unknown = sorted(str(k) for k in set(spec) - _KEYS)
    if unknown:
        raise SpecError(f"unknown field(s) in the architecture spec: {', '.join(unknown)}")
    missing = sorted({"input_width", "task", "output_width"} - set(spec))
    if missing:
        raise SpecError(f"the architecture spec lacks: {', '.join(missing)}")
    spec = {**_DEFAULTS, **spec}
    if spec["format"] != FORMAT:
        raise SpecError(f"unknown architecture spec format {spec['format']!r}; this platform reads {FORMAT}")
    if spec["task"] not in TASKS:
        raise SpecError(f"task must be one of {', '.join(TASKS)}, not {spec['task']!r}")
    input_width = _int(spec["input_width"], "input_width", 1, MAX_INPUT_WIDTH)
    if not isinstance(spec["hidden"], list):
        raise SpecError("hidden must be a list of layer widths, e.g. [64, 32]")
    if len(spec["hidden"]) > MAX_LAYERS:
        raise SpecError(f"at most {MAX_LAYERS} hidden layers, not {len(spec['hidden'])}")
    hidden = [_int(w, f"hidden[{i}]", 1, MAX_LAYER_WIDTH) for i, w in enumerate(spec["hidden"])]
    if spec["activation"] not in ACTIVATIONS:
        raise SpecError(
            f"activation must be one of {', '.join(sorted(ACTIVATIONS))}, not {spec['activation']!r}"
        )
    dropout = spec["dropout"]
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not math.isfinite(dropout):
        raise SpecError("dropout must be a number")
    if not 0 <= dropout <= MAX_DROPOUT:
        raise SpecError(f"dropout must be between 0 and {MAX_DROPOUT}, not {dropout}")
    low_output = 2 if spec["task"] == "classification" else 1
    output_width = _int(spec["output_width"], "output_width", low_output, MAX_OUTPUT_WIDTH)
    out = {
        "format": FORMAT,
        "input_width": input_width,
        "hidden": hidden,
        "activation": spec["activation"],
        "dropout": float(dropout),
        "task": spec["task"],
        "output_width": output_width,
    }
    count = parameter_count(out)
    if count > MAX_PARAMETERS:
        raise SpecError(f"the architecture has {count:,} parameters; at most {MAX_PARAMETERS:,} are allowed")
    return out


def parameter_shapes(spec: dict) -> dict[str, tuple[int, ...]]:
    """Each parameter's name and shape, in the module's order, without building it (spec already validated)."""
    widths = [spec["input_width"], *spec["hidden"]]
    shapes: dict[str, tuple[int, ...]] = {}
    for i, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
        shapes[f"hidden.{i}.weight"] = (n_out, n_in)
        shapes[f"hidden.{i}.bias"] = (n_out,)
    shapes["output.weight"] = (spec["output_width"], widths[-1])
    shapes["output.bias"] = (spec["output_width"],)
    return shapes


def parameter_count(spec: dict) -> int:
    return sum(math.prod(shape) for shape in parameter_shapes(spec).values())


class MLP(nn.Module):
    """Linear layers with one activation and dropout between them; outputs logits or regression values."""

    def __init__(self, spec: dict) -> None:
        super().__init__()
        self.spec = spec
        widths = [spec["input_width"], *spec["hidden"]]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.output = nn.Linear(widths[-1], spec["output_width"])
        self.activation = ACTIVATIONS[spec["activation"]]()
        self.dropout = nn.Dropout(spec["dropout"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = self.dropout(self.activation(layer(x)))
        return self.output(x)


def build(spec: Any) -> MLP:
    """A freshly initialised module for a spec (validated here, so any JSON may be passed)."""
    return MLP(validate_spec(spec))
