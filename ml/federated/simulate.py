"""A plain in-process federated loop over scikit-learn's digits: the benchmark's floor, and the poisoning test's
testbed. It runs the platform's own `train_local` and `aggregate`, with no server, no signatures, no ledger.
`synthetic_split` gives it a generated task with more rows per party instead (the poisoning test's second case).

The task is the benchmark's: `load_digits`, an 80/20 split with random_state=0, standardized by a scaler fitted
on the training part, split among the parties IID or by label with Dirichlet(alpha) proportions; an MLP
64-128-10 trained by SGD (lr 0.05, batch 32, one local epoch) for 20 rounds, every seed fixed.
"""

import time
from contextlib import contextmanager

import numpy as np
import torch

from ml.federated import tensors as T
from ml.federated.aggregate import Update, aggregate
from ml.federated.local import evaluate, initial_tensors, train_local

SPEC = {
    "input_width": 64,
    "hidden": [128],
    "activation": "relu",
    "task": "classification",
    "output_width": 10,
}
RECIPE = {"optimizer": "sgd", "lr": 0.05, "batch_size": 32, "local_epochs": 1, "proximal_mu": 0.0}


def digits_split(
    parties: int = 10, *, alpha: float | None = None, seed: int = 0
) -> tuple[list[tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray]]:
    """The parties' (X, y) and the test (X, y) of the digits task: IID (alpha None) or Dirichlet(alpha) by label.
    A party may get no rows under a small alpha."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = (
        scaler.transform(X_train).astype(np.float32),
        scaler.transform(X_test).astype(np.float32),
    )
    return _share(X_train, y_train, parties, alpha, seed), (X_test, y_test.astype(np.int64))


def _share(
    X_train: np.ndarray, y_train: np.ndarray, parties: int, alpha: float | None, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The training rows shared among the parties, IID (alpha None) or by label with Dirichlet(alpha)."""
    rng = np.random.default_rng(seed)
    if alpha is None:
        shares = np.array_split(rng.permutation(len(y_train)), parties)
    else:
        buckets: list[list[int]] = [[] for _ in range(parties)]
        for label in np.unique(y_train):
            rows = rng.permutation(np.flatnonzero(y_train == label))
            cuts = (np.cumsum(rng.dirichlet(np.full(parties, alpha)))[:-1] * len(rows)).astype(int)
            for p, part in enumerate(np.split(rows, cuts)):
                buckets[p].extend(part.tolist())
        shares = [np.sort(np.array(b, dtype=np.int64)) for b in buckets]
    return [(X_train[s], y_train[s].astype(np.int64)) for s in shares]


def synthetic_split(
    parties: int = 10, *, rows_per_party: int = 2000, test_rows: int = 2000, features: int = 20,
    informative: int = 10, classes: int = 4, class_sep: float = 1.0, random_state: int = 0, alpha: float | None = None, seed: int = 0,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """A tabular task with more rows per party than digits, generated (nothing downloaded): scikit-learn's
    `make_classification` (one cluster per class, no redundant features) with `random_state`, its first
    `parties * rows_per_party` rows for training and the next `test_rows` for test, standardized by the training
    part, shared as `digits_split` shares digits' rows. Its MLP is SPEC with `features` inputs and `classes`
    outputs."""
    from sklearn.datasets import make_classification
    from sklearn.preprocessing import StandardScaler

    n_train = parties * rows_per_party
    X, y = make_classification(
        n_samples=n_train + test_rows, n_features=features, n_informative=informative,
        n_redundant=0, n_classes=classes, n_clusters_per_class=1, class_sep=class_sep,
        random_state=random_state,
    )  # fmt: skip
    X_train, X_test, y_train, y_test = X[:n_train], X[n_train:], y[:n_train], y[n_train:]
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = (
        scaler.transform(X_train).astype(np.float32),
        scaler.transform(X_test).astype(np.float32),
    )
    return _share(X_train, y_train, parties, alpha, seed), (X_test, y_test.astype(np.int64))


def plain_fedavg_loop(
    *, rounds: int = 20, parties: int = 10, alpha: float | None = None, seed: int = 0, strategy: str = "fedavg",
    options: dict | None = None, byzantine: int = 0, attack_scale: float = 10.0, recipe: dict | None = None,
    spec: dict | None = None, device: str = "cpu", threads: int | None = 1,
    data: tuple[list[tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict:  # fmt: skip
    """Run the loop and return per-round test accuracy, loss and seconds (training, aggregation and evaluation).
    The last `byzantine` parties train honestly, then send their delta sign-flipped and scaled by
    `attack_scale`; `excluded` counts the updates the strategy left out each round. `threads` sets torch's
    intra-op threads for the run (None: leave them): one is fastest for so small a model, and many times faster
    than several when the cores are shared. `data`, the parties' (X, y) and the test (X, y) (as from
    `synthetic_split`; `spec` must fit it), replaces digits: `parties` and `alpha` are then its."""
    task = data if data is not None else digits_split(parties, alpha=alpha, seed=seed)
    with _threads(threads):
        return _loop(rounds, task, seed, strategy, options, byzantine, attack_scale, recipe, spec, device)


@contextmanager
def _threads(n: int | None):
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _loop(
    rounds: int, task: tuple, seed: int, strategy: str, options: dict | None, byzantine: int,
    attack_scale: float, recipe: dict | None, spec: dict | None, device: str,
) -> dict:  # fmt: skip
    data, (X_test, y_test) = task
    parties = len(data)
    spec = spec or SPEC
    glob = initial_tensors(spec, seed)
    recipe = recipe or RECIPE
    out: dict = {
        "accuracy": [],
        "loss": [],
        "seconds": [],
        "excluded": [],
        "sizes": [len(y) for _, y in data],
    }
    state = None
    for r in range(rounds):
        start = time.perf_counter()
        updates = []
        for p, (X, y) in enumerate(data):
            if len(y) == 0:
                continue
            party_seed = seed * 100_003 + r * 1000 + p  # distinct for every party and round
            res = train_local(
                spec=spec, global_tensors=glob, X=X, y=y, recipe=recipe, seed=party_seed, device=device
            )
            delta = res.delta
            if p >= parties - byzantine:
                delta = {k: (-attack_scale * a).astype(np.float32) for k, a in delta.items()}
            # The id makes the order (and Krum's ties) the parties' order, like a digest would fix one.
            updates.append(
                Update(id=f"{p:04d}-{T.digest(delta)}", tensors=delta, num_examples=res.num_examples)
            )
        agg = aggregate(
            strategy=strategy, options=options, global_tensors=glob, updates=updates, server_state=state
        )
        glob, state = agg.new_global, agg.server_state
        metrics = evaluate(spec=spec, tensors=glob, X=X_test, y=y_test, device=device)
        out["seconds"].append(time.perf_counter() - start)
        out["accuracy"].append(metrics["accuracy"])
        out["loss"].append(metrics["loss"])
        out["excluded"].append(len(agg.excluded))
    out["final_accuracy"] = out["accuracy"][-1]
    out["total_seconds"] = sum(out["seconds"])
    out["digest"] = T.digest(glob)
    return out
