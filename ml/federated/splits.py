"""The simulation's and the benchmark's task: scikit-learn's bundled `load_digits` (no download), an 80/20
split, standardized by the training part as a `FeatureSchema`, and its training rows shared among parties,
IID or by a Dirichlet(alpha) draw over each label (non-IID)."""

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.features import FeatureSchema

TARGET = "digit"


@dataclass
class Task:
    columns: list[str]  # the input columns, in order
    X_train: np.ndarray  # raw values (float64), as a party's file holds them
    y_train: np.ndarray  # class indices (int64)
    X_test: np.ndarray
    y_test: np.ndarray
    schema: FeatureSchema  # standardization fitted on the training part

    def spec(self, hidden: tuple[int, ...] = (128,)) -> dict:
        """The benchmark's MLP: 64 inputs, `hidden` ReLU layers, 10 logits."""
        return {"input_width": len(self.columns), "hidden": list(hidden), "activation": "relu", "dropout": 0.0,
                "task": "classification", "output_width": len(self.schema.classes)}  # fmt: skip


def digits_task(*, test_size: float = 0.2, random_state: int = 0) -> Task:
    """load_digits split `test_size` with `random_state`, the scaler (mean, std; 1 where constant) fitted on the
    training rows, as StandardScaler does."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X, y = digits.data.astype(np.float64), digits.target.astype(np.int64)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_size, random_state=random_state)
    columns = [f"pixel{i}" for i in range(X.shape[1])]
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)
    scale = np.where(std > 0, std, 1.0)
    schema = FeatureSchema(
        columns=[
            {"name": c, "type": "numeric", "impute": float(m), "center": float(m), "scale": float(s)}
            for c, m, s in zip(columns, mean, scale, strict=True)
        ],
        target={"name": TARGET, "task": "classification", "classes": list(range(10))},
    )
    return Task(columns, X_train, y_train, X_test, y_test, schema)


def iid_partitions(n: int, parties: int, *, seed: int = 0) -> list[np.ndarray]:
    """Row indices 0..n-1 shuffled by `seed` and cut into `parties` near-equal parts (in shuffled order, as
    `ml.federated.simulate.digits_split` shares them)."""
    order = np.random.default_rng(seed).permutation(n)
    return list(np.array_split(order, parties))


def dirichlet_partitions(
    y: np.ndarray, parties: int, *, alpha: float, seed: int = 0, min_size: int = 10
) -> list[np.ndarray]:
    """Non-IID: each label's rows shared among the parties by proportions drawn from Dirichlet(alpha);
    drawn again (same generator) until every party has at least `min_size` rows."""
    if alpha <= 0:
        raise ValueError("alpha must be positive")
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        parts: list[list[int]] = [[] for _ in range(parties)]
        for label in np.unique(y):
            rows = rng.permutation(np.flatnonzero(y == label))
            shares = rng.dirichlet(np.full(parties, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(rows)).astype(int)
            for k, chunk in enumerate(np.split(rows, cuts)):
                parts[k] += chunk.tolist()
        if min(len(p) for p in parts) >= min_size:
            return [np.sort(np.array(p, dtype=np.int64)) for p in parts]
    raise ValueError(f"no Dirichlet({alpha}) split gives each of {parties} parties {min_size} rows")


def write_csv(path: Path, task: Task, rows: np.ndarray | None = None, *, test: bool = False) -> Path:
    """The rows (training part, or the test part) as a party's CSV: the input columns, then the label."""
    X, y = (task.X_test, task.y_test) if test else (task.X_train, task.y_train)
    if rows is not None:
        X, y = X[rows], y[rows]
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow([*task.columns, TARGET])
        for values, label in zip(X, y, strict=True):
            out.writerow([*(repr(float(v)) if v != int(v) else str(int(v)) for v in values), int(label)])
    return path
