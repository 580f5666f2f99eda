"""Small synthetic tables for the supervised tests: separable enough that any model beats a trivial one."""

import numpy as np

from ml.tabular import Categorical, Table


def synthetic_table(n: int = 400, seed: int = 0) -> Table:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(50.0, 10.0, size=n)
    x2[::7] = np.nan  # missing values, imputed by the schema
    colour = rng.choice(["red", "green", "blue"], p=[0.4, 0.3, 0.3], size=n)
    signal = 2.0 * x1 + 2.0 * (colour == "red") + 0.1 * np.nan_to_num(x2 - 50.0)
    label = np.where(signal + rng.normal(0, 0.3, size=n) > 1.0, "yes", "no")
    amount = 3.0 * x1 + 2.0 * (colour == "red") + rng.normal(0, 0.3, size=n) + 100.0
    return Table(
        columns=["x1", "x2", "colour", "label", "amount"],
        numeric={"x1": x1, "x2": x2, "amount": amount},
        categorical={
            "colour": Categorical.from_values(colour.tolist()),
            "label": Categorical.from_values(label.tolist()),
        },
        n_rows=n,
    )
