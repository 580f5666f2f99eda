"""Checking a training's options before any data is read (what the models market does before it queues a job)."""

import pytest

from ml.privacy import PrivacyError
from ml.supervised import options_check


def test_defaults_are_filled_in_and_the_mlp_spec_is_kept():
    opts = options_check("mlp", "classification", {"hidden": [8], "epochs": 3})
    assert (opts["hidden"], opts["epochs"], opts["lr"], opts["seed"]) == ([8], 3, 1e-3, 0)
    private = options_check("logistic_regression", "classification", {"epochs": 3}, private=True)
    assert private["clip"] == 1.0 and private["C"] == 1.0


@pytest.mark.parametrize(
    ("args", "private", "error", "message"),
    [
        (("svm", "classification", {}), False, ValueError, "algorithm must be one of"),
        (("logistic_regression", "regression", {}), False, ValueError, "does not do regression"),
        (("random_forest", "regression", {"epochs": 2}), False, ValueError, "unknown option(s)"),
        (("mlp", "regression", {"hidden": [0]}), False, ValueError, "hidden[0]"),
        (("mlp", "regression", {"activation": "softmax"}), False, ValueError, "activation"),
        (("hist_gradient_boosting", "regression", {}), True, PrivacyError, "memorise single rows"),
    ],
)
def test_what_would_not_train_is_refused_with_the_reason(args, private, error, message):
    with pytest.raises(error) as raised:
        options_check(*args, private=private)
    assert message in str(raised.value)
