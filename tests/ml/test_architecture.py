import pytest
import torch

from ml.architecture import MAX_PARAMETERS, SpecError, build, parameter_shapes, validate_spec

SPEC = {"input_width": 5, "hidden": [8, 4], "activation": "tanh", "dropout": 0.1, "task": "classification",
        "output_width": 3}  # fmt: skip


def test_a_valid_spec_builds_a_module_with_fixed_parameter_names():
    module = build(SPEC)
    names = [name for name, _ in module.named_parameters()]
    assert names == list(parameter_shapes(validate_spec(SPEC)))
    assert names == ["hidden.0.weight", "hidden.0.bias", "hidden.1.weight", "hidden.1.bias", "output.weight",
                     "output.bias"]  # fmt: skip
    assert module(torch.zeros(2, 5)).shape == (2, 3)


def test_defaults_are_filled_in():
    spec = validate_spec({"input_width": 2, "task": "regression", "output_width": 1})
    assert spec == {"format": 1, "input_width": 2, "hidden": [], "activation": "relu", "dropout": 0.0,
                    "task": "regression", "output_width": 1}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"activation": "softmax2"}, "activation must be one of"),
        ({"hidden": [8, 0]}, r"hidden\[1\] must be between 1 and"),
        ({"hidden": [8.5]}, r"hidden\[0\] must be a whole number"),
        ({"hidden": [True]}, r"hidden\[0\] must be a whole number"),
        ({"hidden": "8,4"}, "hidden must be a list"),
        ({"hidden": [8] * 9}, "at most 8 hidden layers"),
        ({"dropout": 1.5}, "dropout must be between 0 and 0.9"),
        ({"dropout": float("nan")}, "dropout must be a number"),
        ({"task": "ranking"}, "task must be one of"),
        ({"output_width": 1}, "output_width must be between 2 and"),
        ({"input_width": 0}, "input_width must be between 1 and"),
        ({"shortcut": True}, r"unknown field\(s\) in the architecture spec: shortcut"),
        ({"format": 2}, "unknown architecture spec format"),
        ({"hidden": [4096] * 8}, f"at most {MAX_PARAMETERS:,} are allowed"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_field(change, message):
    with pytest.raises(SpecError, match=message):
        validate_spec({**SPEC, **change})


def test_a_spec_lacking_required_fields_names_them():
    with pytest.raises(SpecError, match="lacks: input_width, output_width"):
        validate_spec({"task": "regression"})
    with pytest.raises(SpecError, match="must be a JSON object"):
        validate_spec([1, 2])
