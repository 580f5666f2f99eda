"""Differentially private unsupervised analyses (`ml.private_analyses`) against the exact ones; one JSON line.

Data: synthetic well-separated Gaussian clusters (scikit-learn `make_blobs`: 20 numeric columns, 8 centres
in the box ±10, unit spread), as an `ml.tabular.Table`. The private analyses take
`unsupervised.prepare(private=True)` (clipped, scaled by the published moments), the exact ones plain
`unsupervised.prepare`.

1. Error against ε, at each of BENCH_ROWS (10,000 and 1,000,000 rows), the median over BENCH_ERROR_REPEATS
   runs (the noise is random):
   - k-means (k=8) centroids: each released centroid is matched to an exact one (Hungarian matching on their
     distance in original units; suppressed clusters stay unmatched and are counted), then the mean absolute
     coordinate error in units of each column's standard deviation, over matched clusters and columns (also
     the worst matched cluster's). As a check of the reference: the exact centroids against make_blobs' own.
   - PCA: the largest absolute error of the first 5 explained-variance ratios, next to the error the private
     result itself predicts (`privacy.explained_variance_ratio_error`).
2. Run time with DP over the exact run time (goal <= 1.5) at BENCH_TIME_ROWS rows: k-means (k=8, ε=1,
   against Lloyd's, `mini_batch=False`), PCA (ε=1) and isolation forest (ε=1), BENCH_REPEATS interleaved
   pairs, the median of the pairs' ratios. Only the analysis call is timed: each mode's `prepare` runs
   outside the timer (its times are reported apart). OpenDP's calibration of ε to zCDP ρ is cached per ε:
   the timed runs hit that cache; the cost of a miss (and of the first, which loads OpenDP) is reported.

Progress goes to stderr. Nothing is written to disk.
"""

import hashlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS = [int(x) for x in os.environ.get("BENCH_ROWS", "10000,1000000").split(",")]
TIME_ROWS = int(os.environ.get("BENCH_TIME_ROWS", 1_000_000))
EPSILONS = [float(x) for x in os.environ.get("BENCH_EPSILONS", "0.1,0.5,1,3,10").split(",")]
ERROR_REPEATS = int(os.environ.get("BENCH_ERROR_REPEATS", 3))
REPEATS = int(os.environ.get("BENCH_REPEATS", 5))
COLUMNS = 20
K = 8
PCA_COMPONENTS = 5  # compared
TIME_EPSILON = 1.0
GOAL = 1.5

sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from ml import private_analyses, unsupervised  # noqa: E402
from ml.privacy import DELTA, rho_for  # noqa: E402
from ml.tabular import Table  # noqa: E402


def log(message: str) -> None:
    print(f"[privacy bench] {message}", file=sys.stderr, flush=True)


def blobs(rows: int, seed: int = 0) -> tuple[Table, np.ndarray]:
    """The table and make_blobs' true centres (centres x columns)."""
    from sklearn.datasets import make_blobs

    X, _, centres = make_blobs(
        n_samples=rows, n_features=COLUMNS, centers=K, cluster_std=1.0, random_state=seed, return_centers=True
    )
    X = np.asfortranarray(X)  # each column contiguous, as the parser leaves them
    names = [f"c{i}" for i in range(COLUMNS)]
    table = Table(
        columns=names, numeric={c: X[:, j] for j, c in enumerate(names)}, categorical={}, n_rows=rows
    )
    return table, centres


def centroids(result: dict, names: list[str]) -> np.ndarray:
    """The released (not suppressed) centroids in original units, clusters x columns."""
    found = [[c["centroid"][n] for n in names] for c in result["clusters"] if c["centroid"] is not None]
    return np.array(found, dtype=np.float64).reshape(-1, len(names))


def centroid_error(
    found: np.ndarray, exact: np.ndarray, stds: np.ndarray
) -> tuple[float | None, float | None]:
    """Mean and worst-cluster mean absolute coordinate error (in column stds) after Hungarian matching."""
    from scipy.optimize import linear_sum_assignment

    if not len(found) or not len(exact):
        return None, None
    cost = np.linalg.norm(found[:, None, :] - exact[None, :, :], axis=2)
    rows, cols = linear_sum_assignment(cost)
    per_cluster = (np.abs(found[rows] - exact[cols]) / stds).mean(axis=1)
    return float(per_cluster.mean()), float(per_cluster.max())


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 4) if present else None


def sources_digest() -> str:
    """Of the modules measured, so that figures can be told apart while they change."""
    digest = hashlib.sha256()
    for name in ("privacy.py", "private_analyses.py", "unsupervised.py", "tabular.py"):
        digest.update((ROOT / "ml" / name).read_bytes())
    return digest.hexdigest()[:12]


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def errors(
    table: Table, centres: np.ndarray, figures: dict
) -> tuple[unsupervised.Prepared, unsupervised.Prepared]:
    """The error figures at this size, filed under its row count; returns (exact, private) features."""
    n, names = table.n_rows, list(table.columns)
    stds = np.array([table.numeric[c].std() for c in names])
    exact_prepared = unsupervised.prepare(table)
    private_prepared = unsupervised.prepare(table, private=True)
    log(f"{n} rows: exact k-means and PCA")
    exact_centres = centroids(unsupervised.kmeans(exact_prepared, k=K, mini_batch=False), names)
    exact_ratio = np.array(unsupervised.pca(exact_prepared)["explained_variance_ratio"][:PCA_COMPONENTS])
    size = str(n)
    X = private_prepared.X  # without noise: what the private scaling and clipping change on their own
    mean = X.mean(axis=0)
    values = np.linalg.eigvalsh(X.T @ X / n - np.outer(mean, mean))[::-1]
    noiseless = values[:PCA_COMPONENTS] / values.sum()
    figures["pca_evr_error_noiseless"][size] = round(float(np.abs(noiseless - exact_ratio).max()), 4)
    figures["exact_kmeans_vs_true_centres_std"][size] = round(
        centroid_error(exact_centres, centres, stds)[0], 4
    )
    for name in ("kmeans_centroid_error_std", "kmeans_worst_cluster_error_std", "kmeans_unmatched_clusters",
                 "pca_evr_error", "pca_evr_noise_error", "pca_evr_error_predicted"):  # fmt: skip
        figures[name][size] = {}
    for eps in EPSILONS:
        log(f"{n} rows: ε={eps:g}, {ERROR_REPEATS} private runs")
        mean_errors, worst_errors, unmatched, pca_errors, pca_noise, predicted = [], [], [], [], [], []
        for _ in range(ERROR_REPEATS):
            found = centroids(private_analyses.kmeans(private_prepared, k=K, epsilon=eps), names)
            mean_error, worst_error = centroid_error(found, exact_centres, stds)
            mean_errors.append(mean_error)
            worst_errors.append(worst_error)
            unmatched.append(len(exact_centres) - len(found))
            result = private_analyses.pca(private_prepared, epsilon=eps)
            ratio = np.array(result["explained_variance_ratio"][:PCA_COMPONENTS])
            pca_errors.append(float(np.abs(ratio - exact_ratio).max()))
            pca_noise.append(float(np.abs(ratio - noiseless).max()))  # the noise alone, same features
            predicted.append(result["privacy"]["explained_variance_ratio_error"])
        key = f"{eps:g}"
        figures["kmeans_centroid_error_std"][size][key] = median(mean_errors)
        figures["kmeans_worst_cluster_error_std"][size][key] = median(worst_errors)
        figures["kmeans_unmatched_clusters"][size][key] = unmatched  # every run's, not a median
        figures["pca_evr_error"][size][key] = median(pca_errors)
        figures["pca_evr_noise_error"][size][key] = median(pca_noise)
        figures["pca_evr_error_predicted"][size][key] = median(predicted)
    return exact_prepared, private_prepared


def run_times(table: Table, exact_prepared: unsupervised.Prepared, private_prepared: unsupervised.Prepared,
              figures: dict) -> None:  # fmt: skip
    prepare_runs: dict[str, list[float]] = {"exact": [], "private": []}
    for _ in range(REPEATS):
        prepare_runs["exact"].append(timed(lambda: unsupervised.prepare(table)))
        prepare_runs["private"].append(timed(lambda: unsupervised.prepare(table, private=True)))
    pairs: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "kmeans": (
            lambda: private_analyses.kmeans(private_prepared, k=K, epsilon=TIME_EPSILON),
            lambda: unsupervised.kmeans(exact_prepared, k=K, mini_batch=False),
        ),
        "pca": (
            lambda: private_analyses.pca(private_prepared, epsilon=TIME_EPSILON),
            lambda: unsupervised.pca(exact_prepared),
        ),
        "isolation_forest": (
            lambda: private_analyses.isolation_forest(private_prepared, epsilon=TIME_EPSILON),
            lambda: unsupervised.isolation_forest(exact_prepared),
        ),
    }
    for private, exact in pairs.values():  # warm up: thread pools, OpenDP, the ρ of TIME_EPSILON
        private()
        exact()
    runs: dict[str, dict[str, list[float]]] = {name: {"dp": [], "exact": []} for name in pairs}
    for r in range(REPEATS):  # interleaved, so both see the same machine; which goes first alternates
        log(f"{table.n_rows} rows: timing pair {r + 1} of {REPEATS}")
        for name, (private, exact) in pairs.items():
            if r % 2:
                runs[name]["exact"].append(timed(exact))
                runs[name]["dp"].append(timed(private))
            else:
                runs[name]["dp"].append(timed(private))
                runs[name]["exact"].append(timed(exact))
    # Each private run against the exact run next to it: a noisy neighbour slows both of a pair alike.
    figures["time_ratio"] = {
        name: round(statistics.median(p / e for p, e in zip(r["dp"], r["exact"], strict=True)), 3)
        for name, r in runs.items()
    }
    figures["time_ratio_over_goal"] = [name for name, ratio in figures["time_ratio"].items() if ratio > GOAL]
    figures["time_s"] = {
        name: {mode: round(statistics.median(values), 3) for mode, values in r.items()}
        for name, r in runs.items()
    }
    figures["time_runs_s"] = {
        name: {mode: [round(x, 3) for x in values] for mode, values in r.items()} for name, r in runs.items()
    }
    figures["prepare_s"] = {
        mode: round(statistics.median(values), 3) for mode, values in prepare_runs.items()
    }


def main() -> None:
    start = time.perf_counter()
    figures: dict = {
        "bench": "privacy",
        "data": f"make_blobs: {K} centres in the box ±10, cluster_std 1",
        "rows": ROWS,
        "columns": COLUMNS,
        "k": K,
        "epsilons": EPSILONS,
        "delta": DELTA,
        "error_repeats": ERROR_REPEATS,
        "pca_components_compared": PCA_COMPONENTS,
        "exact_kmeans_vs_true_centres_std": {},
        "kmeans_centroid_error_std": {},
        "kmeans_worst_cluster_error_std": {},
        "kmeans_unmatched_clusters": {},
        "pca_evr_error": {},
        "pca_evr_noise_error": {},
        "pca_evr_error_predicted": {},
        "pca_evr_error_noiseless": {},
        "ml_sources_sha256": sources_digest(),
    }

    # OpenDP's ε -> ρ calibration (a binary search), cached per ε: the first also imports OpenDP.
    calibrations = [timed(lambda eps=eps: rho_for(eps)) for eps in dict.fromkeys([TIME_EPSILON, *EPSILONS])]
    figures["opendp_first_calibration_s"] = round(calibrations[0], 3)
    figures["calibration_new_epsilon_s"] = round(statistics.median(calibrations[1:]), 3)

    for rows in sorted(set(ROWS) | {TIME_ROWS}):
        log(f"{rows} rows: generating")
        table, centres = blobs(rows)
        if rows in ROWS:
            exact_prepared, private_prepared = errors(table, centres, figures)
        else:
            exact_prepared, private_prepared = (
                unsupervised.prepare(table),
                unsupervised.prepare(table, private=True),
            )
        if rows == TIME_ROWS:
            figures.update(
                time_rows=TIME_ROWS, time_epsilon=TIME_EPSILON, time_repeats=REPEATS, time_goal=GOAL
            )
            run_times(table, exact_prepared, private_prepared, figures)
        del table, exact_prepared, private_prepared
    figures["wall_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
