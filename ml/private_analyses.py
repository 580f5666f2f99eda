"""Differentially private k-means, PCA and isolation forest for compute-only buyers.

Each takes features from `ml.unsupervised.prepare(private=True)` (clipped, rare levels folded, so each row's L2
norm is at most `row_norm`) and an ε; every number that depends on the rows is released through
`ml.privacy.Budget`, and everything else is computed from those releases. Results have the same shape as the
exact analyses' (so the same pages and plots show them) plus a `privacy` block: the (ε, δ) spent, each release's
noise scale and the expected error of the figures in the data's own units.
"""

import math
from typing import Literal

import numpy as np
from sklearn.cluster import KMeans

from ml.privacy import CLIP, DELTA, MIN_COUNT, Budget, PrivacyError, noisy_counts
from ml.tabular import Progress, TabularError
from ml.unsupervised import Prepared, _clusters, _round, _round_list, _silent

# How each analysis splits its budget (shares of ρ).
KMEANS_SHARES = {"moments": 0.15, "init": 0.10, "iterations": 0.55, "grid": 0.20}
PCA_MOMENT_SHARES = {"rows": 0.1, "sums": 0.3, "products": 0.6}
FOREST_SHARES = {"rows": 0.05, "leaves": 0.55, "scores": 0.40}
ITERATIONS = 3


def _check(prepared: Prepared) -> tuple[np.ndarray, float]:
    if prepared.row_norm is None:
        raise PrivacyError("private analyses need features prepared with private=True")
    return prepared.X, prepared.row_norm


def _moments(
    X: np.ndarray, budget: Budget, share: float, row_norm: float
) -> tuple[float, np.ndarray, np.ndarray]:
    """Noisy row count, mean and covariance ("Analyze Gauss", Dwork et al. 2014): the count, the feature sums
    and the upper triangle of XᵀX, whose sensitivities are 1, `row_norm` and `row_norm`²."""
    n, d = X.shape
    count = budget.gaussian(np.array([float(n)]), sensitivity=1.0, share=share * PCA_MOMENT_SHARES["rows"],
                            what="rows")[0]  # fmt: skip
    sums = budget.gaussian(X.sum(axis=0), sensitivity=row_norm, share=share * PCA_MOMENT_SHARES["sums"],
                           what="feature sums")  # fmt: skip
    upper = np.triu_indices(d)
    products = budget.gaussian(
        (X.T @ X)[upper], sensitivity=row_norm**2, share=share * PCA_MOMENT_SHARES["products"],
        what="feature cross-products",
    )  # fmt: skip
    gram = np.zeros((d, d))
    gram[upper] = products
    gram = gram + gram.T - np.diag(np.diag(gram))
    count = max(count, 2.0)
    mean = sums / count
    return count, mean, gram / count - np.outer(mean, mean)


def _eigen(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending, >= 0) and eigenvectors (as rows) of a symmetric matrix."""
    values, vectors = np.linalg.eigh(cov)
    return values[::-1].clip(min=0), vectors[:, ::-1].T


def pca(
    prepared: Prepared, *, epsilon: float, delta: float = DELTA, n_components: int | None = None,
    progress: Progress | None = None,
) -> dict:  # fmt: skip
    """Principal components of the noisy covariance of the clipped features."""
    report = progress or _silent
    X, row_norm = _check(prepared)
    d = X.shape[1]
    n_components = min(10, d) if n_components is None else int(n_components)
    if not 1 <= n_components <= d:
        raise TabularError(f"n_components must be between 1 and {d} (the features), not {n_components}")
    budget = Budget(epsilon, delta)
    report(0.1, "releasing the noisy covariance")
    count, _mean, cov = _moments(X, budget, 1.0, row_norm)
    values, vectors = _eigen(cov)
    total = float(values.sum()) or 1.0
    ratio = values[:n_components] / total
    # A symmetric Gaussian noise matrix of entry scale s has spectral norm about 2s√d (Weyl's bound on how far
    # each eigenvalue moves), so each ratio is off by about that much of the total variance.
    entry_sd = budget.sigma("feature cross-products") / count
    result = {
        "algorithm": "pca",
        "rows": round(float(count)),
        "n_components": n_components,
        "components": [f"PC{i + 1}" for i in range(n_components)],
        "feature_names": list(prepared.feature_names),
        "explained_variance_ratio": _round_list(ratio),
        "cumulative": _round_list(np.cumsum(ratio)),
        "loadings": [_round_list(row) for row in vectors[:n_components]],
        "input": _input(prepared, count),
        "privacy": {
            **budget.summary(),
            "covariance_entry_sd": _round(entry_sd),
            "explained_variance_ratio_error": _round(min(2 * entry_sd * math.sqrt(d) / total, 1.0)),
        },
    }
    report(1.0, "done")
    return result


def kmeans(
    prepared: Prepared,
    *,
    k: int,
    epsilon: float,
    delta: float = DELTA,
    iterations: int = ITERATIONS,
    seed: int = 0,
    min_cluster_size: int = MIN_COUNT,
    bins: int | None = None,
    progress: Progress | None = None,
) -> dict:
    """Noisy Lloyd's k-means (DPLloyd, Blum et al. 2005; Su et al. 2016): each iteration releases every cluster's
    noisy sum and count. It starts from a noisy density grid on the noisy top two principal axes (the grid the
    plot shows), so that well-separated clusters each get a centre without looking at a row."""
    report = progress or _silent
    X, row_norm = _check(prepared)
    d = X.shape[1]
    if not 1 <= k <= 50:
        raise TabularError("k must be between 1 and 50")
    budget = Budget(epsilon, delta)
    report(0.05, "releasing the noisy covariance for the plot's axes")
    count, mean, cov = _moments(X, budget, KMEANS_SHARES["moments"], row_norm)
    values, vectors = _eigen(cov)
    axes = vectors[:2] if d >= 2 else np.vstack([vectors, np.zeros((1, d))])
    bins = bins or int(np.clip(math.sqrt(count) / 4, 8, 24))
    grid = _Grid(X, mean, axes, values[:2], bins)

    report(0.15, "releasing the noisy density grid that places the first centres")
    density = noisy_counts(budget, np.bincount(grid.index, minlength=bins * bins), share=KMEANS_SHARES["init"],
                           what="initial density grid")  # fmt: skip
    # Cells under three noise scales are taken as empty: a noisy far corner would otherwise win a seed.
    density[density < 3 * budget.sigma("initial density grid")] = 0
    centers = _initial_centres(grid, density, k, seed)
    lower, upper = _box(prepared)
    weight = row_norm  # counts ride with the sums scaled to the same sensitivity
    share = KMEANS_SHARES["iterations"] / iterations
    for t in range(iterations):
        report(0.2 + 0.6 * t / iterations, f"noisy Lloyd iteration {t + 1} of {iterations}")
        labels = _assign(X, centers)
        sums = _cluster_sums(X, labels, k)
        sizes = np.bincount(labels, minlength=k).astype(np.float64)
        noisy = budget.gaussian(
            np.hstack([sums, weight * sizes[:, None]]), sensitivity=row_norm * math.sqrt(2), share=share,
            what="cluster sums and sizes",
        )  # fmt: skip
        noisy_sums, noisy_sizes = noisy[:, :d], noisy[:, d] / weight
        # A cluster whose count is lost in the noise keeps its centre instead of jumping to noise / noise.
        sure = noisy_sizes > max(1.0, 3 * budget.sigma("cluster sums and sizes") / weight)
        centers[sure] = np.clip(noisy_sums[sure] / noisy_sizes[sure, None], lower, upper)
    report(0.85, "releasing the noisy density grid by cluster")
    labels = _assign(X, centers)
    cells = noisy_counts(
        budget, np.bincount(labels * bins * bins + grid.index, minlength=k * bins * bins),
        share=KMEANS_SHARES["grid"], what="density grid by cluster",
    ).reshape(k, bins, bins)  # fmt: skip
    hidden = (cells > 0) & (cells < _shown_from(min_cluster_size, budget.sigma("density grid by cluster")))
    cells[hidden] = 0
    sizes_out = np.maximum(np.rint(noisy_sizes), 0).astype(np.int64)
    sum_sd = budget.sigma("cluster sums and sizes")
    clusters = _clusters(prepared, centers, sizes_out, min_cluster_size, sum_sd)
    projected = (centers - mean) @ axes.T
    result = {
        "algorithm": "kmeans",
        "k": int(k),
        "chosen_by": "given",
        "candidates": [],
        "silhouette": None,
        "inertia": None,
        "rows": round(float(count)),
        "min_cluster_size": min_cluster_size,
        "clusters": clusters,
        "feature_names": list(prepared.feature_names),
        "scatter": {
            "axes": ["PC1", "PC2"],
            "explained_variance_ratio": _round_list(values[:2] / (values.sum() or 1.0)),
            "bins": bins,
            "x_edges": _round_list(grid.edges[0]),
            "y_edges": _round_list(grid.edges[1]),
            "counts": cells.tolist(),
            "suppressed_cells": int(hidden.sum()),
            "centroids": [
                None if s < min_cluster_size else _round_list(p)
                for p, s in zip(projected, sizes_out, strict=True)
            ],
        },
        "input": _input(prepared, count),
        "privacy": {
            **budget.summary(),
            "iterations": iterations,
            "size_sd": _round(sum_sd / weight),
            "cell_sd": _round(budget.sigma("density grid by cluster")),
        },
    }
    report(1.0, "done")
    return result


class _Grid:
    """Each row's cell on a bins x bins grid over two (noisy) principal axes. The range is ±4 noisy standard
    deviations around the noisy mean: released numbers only, never a row's coordinates."""

    def __init__(self, X: np.ndarray, mean: np.ndarray, axes: np.ndarray, variances: np.ndarray, bins: int):
        self.bins, self.mean, self.axes = bins, mean, axes
        self.edges = []
        self.index = np.zeros(X.shape[0], dtype=np.int64)
        points = X @ axes.T - mean @ axes.T
        for dim in range(2):
            half = 4 * math.sqrt(max(float(variances[dim]) if dim < len(variances) else 0.0, 1e-6))
            self.edges.append(np.linspace(-half, half, bins + 1))
            cell = np.floor((points[:, dim] + half) * (bins / (2 * half))).astype(np.int64)
            np.clip(cell, 0, bins - 1, out=cell)  # rows outside the range are counted in the edge cells
            self.index = self.index * bins + cell

    def centres(self) -> np.ndarray:
        """The cells' centres in grid coordinates, in the order of `index`."""
        mids = [(e[:-1] + e[1:]) / 2 for e in self.edges]
        gx, gy = np.meshgrid(mids[0], mids[1], indexing="ij")
        return np.column_stack([gx.ravel(), gy.ravel()])


def _initial_centres(grid: _Grid, density: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k centres from the noisy grid, mapped back to feature space: greedy seeds (the densest cell, then each
    time the cell with the most mass times squared distance to the seeds so far, a deterministic k-means++),
    refined by weighted k-means on the cells."""
    points = grid.centres()
    weights = np.maximum(density.astype(np.float64), 0.0)
    if np.count_nonzero(weights) < k:  # too few cells carry mass: let every cell count a little
        weights = weights + 1e-3
    seeds = [int(np.argmax(weights))]
    nearest = ((points - points[seeds[0]]) ** 2).sum(axis=1)
    for _ in range(1, k):
        seeds.append(int(np.argmax(weights * nearest)))
        nearest = np.minimum(nearest, ((points - points[seeds[-1]]) ** 2).sum(axis=1))
    model = KMeans(n_clusters=k, init=points[seeds], n_init=1, random_state=seed)
    model.fit(points, sample_weight=weights)
    return grid.mean + model.cluster_centers_ @ grid.axes


def _assign(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """The nearest centre of each row, a block of rows at a time."""
    labels = np.empty(X.shape[0], dtype=np.int64)
    norms = (centers**2).sum(axis=1)
    for lo in range(0, X.shape[0], 65_536):
        block = X[lo : lo + 65_536]
        labels[lo : lo + 65_536] = np.argmin(norms - 2 * block @ centers.T, axis=1)
    return labels


def _cluster_sums(X: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    return np.stack([np.bincount(labels, weights=X[:, j], minlength=k) for j in range(X.shape[1])], axis=1)


def _box(prepared: Prepared) -> tuple[np.ndarray, np.ndarray]:
    """The public range of every feature: ±CLIP for numbers, [0, 1] for one-hot levels."""
    lower = np.zeros(prepared.X.shape[1])
    lower[: len(prepared.numeric_columns)] = -CLIP
    return lower, np.where(lower < 0, CLIP, 1.0)


def _input(prepared: Prepared, count: float) -> dict:
    """What was analysed, with the row count replaced by its noisy release (the exact one would be a query)."""
    summary = prepared.summary()
    summary["rows_used"] = round(float(count))
    summary["rows_dropped"] = None
    return summary


def _shown_from(min_count: int, sigma: float) -> int:
    """The smallest noisy count shown: `min_count`, and at least two noise scales, so that an empty cell is
    rarely drawn as full (about 2% of them)."""
    return max(min_count, math.ceil(2 * sigma))


def _c(m: np.ndarray | float) -> np.ndarray:
    """The average path length of an unsuccessful search in a binary search tree of m nodes (Liu et al. 2008)."""
    m = np.asarray(m, dtype=np.float64)
    safe = np.maximum(m, 2.0)
    value = 2 * (np.log(safe - 1) + np.euler_gamma) - 2 * (safe - 1) / safe
    return np.where(m <= 1, 0.0, np.where(m <= 2, 1.0, value))


def isolation_forest(
    prepared: Prepared,
    *,
    epsilon: float,
    delta: float = DELTA,
    contamination: Literal["auto"] | float = "auto",
    n_trees: int = 16,
    bins: int = 30,
    seed: int = 0,
    min_count: int = MIN_COUNT,
    progress: Progress | None = None,
) -> dict:
    """Isolation by random trees whose splits are drawn in the features' public box (never at a row's value);
    each leaf's noisy count sets the path length of the rows it holds, and the scores' histogram is noisy too.
    `contamination="auto"` flags the top 5% of the noisy histogram."""
    report = progress or _silent
    X, _row_norm = _check(prepared)
    if contamination != "auto" and not (isinstance(contamination, int | float) and 0 < contamination <= 0.5):
        raise TabularError(f"contamination must be 'auto' or a number in (0, 0.5], not {contamination!r}")
    share_flag = 0.05 if contamination == "auto" else float(contamination)
    n, d = X.shape
    budget = Budget(epsilon, delta)
    count = max(budget.gaussian(np.array([float(n)]), sensitivity=1.0, share=FOREST_SHARES["rows"],
                                what="rows")[0], 2.0)  # fmt: skip
    depth = int(np.clip(math.floor(math.log2(count / 100)), 3, 10)) if count > 800 else 3
    leaves = 2**depth
    rng = np.random.default_rng(seed)
    lower, upper = _box(prepared)
    report(0.1, f"growing {n_trees} random trees of depth {depth}")
    leaf_of = np.empty((n_trees, n), dtype=np.int64)
    flat = X.reshape(-1) if X.flags.c_contiguous else np.ascontiguousarray(X).reshape(-1)
    base = np.arange(n, dtype=np.int64) * d
    for t in range(n_trees):
        features, thresholds = _random_tree(rng, depth, lower, upper)
        node = np.zeros(n, dtype=np.int64)
        for _ in range(depth):
            f = features[node]
            node = 2 * node + 1 + (flat[base + f] >= thresholds[node])
        leaf_of[t] = node - (leaves - 1)
        report(0.1 + 0.5 * (t + 1) / n_trees, f"tree {t + 1} of {n_trees}")
    # Each row sits in one leaf of every tree: the L2 sensitivity of all leaf counts together is √trees.
    leaf_counts = np.bincount(
        (np.arange(n_trees)[:, None] * leaves + leaf_of).ravel(), minlength=n_trees * leaves
    )
    noisy_leaves = budget.gaussian(leaf_counts.astype(np.float64), sensitivity=math.sqrt(n_trees),
                                   share=FOREST_SHARES["leaves"], what="leaf counts").reshape(n_trees, leaves)  # fmt: skip
    noisy_leaves = np.maximum(noisy_leaves, 1.0)
    leaf_path = depth + _c(noisy_leaves)  # path length of a row in each leaf, from released numbers only
    norm = float(_c(count))
    path = leaf_path[np.arange(n_trees)[:, None], leaf_of].mean(axis=0)
    scores = np.power(2.0, -path / norm)
    # The histogram's range is that of the leaves' own scores (released numbers), rounded outward.
    leaf_scores = np.power(2.0, -leaf_path / norm)
    low = math.floor(float(leaf_scores.min()) * 100) / 100
    high = max(math.ceil(float(leaf_scores.max()) * 100) / 100, low + 0.01)
    report(0.8, "releasing the noisy histogram of scores")
    counts, edges = np.histogram(scores, bins=bins, range=(low, high))
    noisy = noisy_counts(budget, counts, share=FOREST_SHARES["scores"], what="score histogram")
    hidden = (noisy > 0) & (noisy < _shown_from(min_count, budget.sigma("score histogram")))
    noisy[hidden] = 0
    total = max(int(noisy.sum()), 1)
    above = np.cumsum(noisy[::-1])[::-1]  # rows at or above each bin's lower edge
    first = int(np.argmax(above <= share_flag * total)) if (above <= share_flag * total).any() else len(noisy)
    flagged = int(above[first]) if first < len(noisy) else 0
    threshold = float(edges[first]) if first < len(noisy) else float(edges[-1])
    result = {
        "algorithm": "isolation_forest",
        "rows": round(float(count)),
        "contamination": contamination if contamination == "auto" else float(contamination),
        "threshold": _round(threshold),
        "flagged": flagged,
        "share_flagged": _round(flagged / total),
        "bins": _round_list(edges),
        "counts": [int(c) for c in noisy],
        "suppressed_bins": int(hidden.sum()),
        "min_count": min_count,
        "input": _input(prepared, count),
        "privacy": {
            **budget.summary(),
            "trees": n_trees,
            "depth": depth,
            "bin_sd": _round(budget.sigma("score histogram")),
        },
    }
    report(1.0, "done")
    return result


def _random_tree(rng: np.random.Generator, depth: int, lower: np.ndarray, upper: np.ndarray):
    """A complete tree of `depth` levels, stored heap-wise: a random feature per node, split uniformly inside
    that node's box, which starts as the features' public range."""
    nodes = 2**depth - 1
    features = np.empty(nodes, dtype=np.int64)
    thresholds = np.empty(nodes)
    boxes = {0: (lower.copy(), upper.copy())}
    for node in range(nodes):
        lo, hi = boxes.pop(node)
        f = int(rng.integers(len(lo)))
        cut = float(rng.uniform(lo[f], hi[f]))
        features[node], thresholds[node] = f, cut
        left_hi, right_lo = hi.copy(), lo.copy()
        left_hi[f], right_lo[f] = cut, cut
        if 2 * node + 2 < nodes:
            boxes[2 * node + 1] = (lo, left_hi)
            boxes[2 * node + 2] = (right_lo, hi)
    return features, thresholds
