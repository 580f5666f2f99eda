"""Unsupervised analyses of a `Table` for buyers with compute-only access: every result is an aggregate.

No result carries a row: cluster sizes, centroids and histogram bins that describe fewer than
`min_cluster_size` (or `min_count`) rows are suppressed, and scatter plots are density grids, not points.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.cluster import DBSCAN, KMeans, MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import silhouette_score

from ml.privacy import CLIP, IDENTIFIER_SHARE, MIN_COUNT, OTHER
from ml.tabular import Progress, Table, TabularError

SILHOUETTE_ROWS = 2_000  # silhouette is quadratic in rows: scored on a sample this large (error ~0.005)
SELECTION_ROWS = 50_000  # choosing k fits one model per candidate: on a sample this large
# Lloyd's k-means (OpenMP in scikit-learn) beat MiniBatchKMeans on 1,000,000 x 20, k=8 on the 2-core VM
# (1.0-1.5 s against 4.2-5.6 s); mini-batches pay off only far beyond that.
MINI_BATCH_ABOVE = 5_000_000
SAMPLE_ROWS = 100_000  # the plot's axes and range come from a sample this large; its counts from every row
_BLOCK_ROWS = 8_192
_HUGE = 1e150  # a number whose square could overflow a float64
_FLOAT_MAX = float(np.finfo(np.float64).max)


@dataclass
class Prepared:
    """A standardized feature matrix: numeric features first (z-scores), then one-hot categories (0/1)."""

    X: np.ndarray
    feature_names: list[str]
    numeric_columns: list[str]
    categorical_columns_used: list[str]
    onehot: list[tuple[str, str]]  # (column, value) of each one-hot feature, in order after the numeric ones
    dropped_columns: dict[str, str]  # column -> why it was not used
    rows_used: int
    rows_dropped: int
    means: np.ndarray  # of the numeric columns, to turn z-scores back into original units
    stds: np.ndarray
    row_norm: float | None = None  # set by `prepare(private=True)`: the largest L2 norm of a row of `X`

    def metadata(self) -> dict:
        """Everything but `X`, as JSON; `Prepared.restore(X, metadata)` rebuilds the object."""
        return {
            "feature_names": list(self.feature_names),
            "numeric_columns": list(self.numeric_columns),
            "categorical_columns_used": list(self.categorical_columns_used),
            "onehot": [list(pair) for pair in self.onehot],
            "dropped_columns": dict(self.dropped_columns),
            "rows_used": self.rows_used,
            "rows_dropped": self.rows_dropped,
            "means": self.means.tolist(),
            "stds": self.stds.tolist(),
        }

    @classmethod
    def restore(cls, X: np.ndarray, metadata: dict) -> "Prepared":
        if X.shape != (metadata["rows_used"], len(metadata["feature_names"])):
            raise TabularError(f"the saved features have shape {X.shape}, not what their metadata says")
        return cls(
            X=X,
            **{
                **metadata,
                "onehot": [tuple(pair) for pair in metadata["onehot"]],
                "means": np.asarray(metadata["means"], dtype=np.float64),
                "stds": np.asarray(metadata["stds"], dtype=np.float64),
            },
        )

    def summary(self) -> dict:
        return {
            "rows_used": self.rows_used,
            "rows_dropped": self.rows_dropped,
            "numeric_columns": list(self.numeric_columns),
            "categorical_columns_used": list(self.categorical_columns_used),
            "dropped_columns": [{"column": c, "reason": r} for c, r in self.dropped_columns.items()],
            "n_features": len(self.feature_names),
        }


def prepare(
    table: Table,
    *,
    max_categories: int = 20,
    missing: Literal["impute", "drop"] = "impute",
    private: bool = False,
    min_count: int = MIN_COUNT,
) -> Prepared:
    """Standardize numeric columns and one-hot encode categorical ones with at most `max_categories` values.

    `missing="impute"` fills a missing number with its column mean (z-score 0) and a missing category with
    all-zero indicators; `missing="drop"` drops every row with a missing value in a used column.

    `private=True` applies the rules for compute-only buyers, the one place they live: an identifier-like text
    column is dropped unnamed; a level held by fewer than `min_count` of the rows used, or beyond the
    `max_categories` most frequent, is folded into "(other)", which every used text column has; numbers are
    centred on the median of all their values, scaled by their interquartile range (whatever rows are used)
    and clipped to ±`CLIP`, so that one row moves any sum by at most `row_norm`.
    """
    if missing not in ("impute", "drop"):
        raise TabularError(f"missing must be 'impute' or 'drop', not {missing!r}")
    dropped: dict[str, str] = {}
    numeric: list[str] = []
    candidates: list[tuple[str, np.ndarray, np.ndarray]] = []  # (name, codes, rows per level)
    for name in table.columns:
        if name in table.numeric:
            if np.isnan(table.numeric[name]).all():
                dropped[name] = "all values missing"
            else:
                numeric.append(name)
            continue
        column = table.categorical[name]
        counts = column.counts()
        distinct = int(np.count_nonzero(counts))
        if distinct == 0:
            dropped[name] = "all values missing"
        elif private and distinct > IDENTIFIER_SHARE * counts.sum():
            dropped[name] = "identifier-like: nearly every value is distinct, so none is used or named"
        elif not private and distinct > max_categories:
            dropped[name] = f"too many categories ({distinct} > {max_categories})"
        else:
            candidates.append((name, column.codes, counts))
    if not numeric and not candidates:
        why = "; ".join(f"{c}: {r}" for c, r in dropped.items())
        raise TabularError(
            "no usable columns: no numeric or low-cardinality categorical columns"
            + (f" ({why})" if why else "")
        )

    keep: np.ndarray | None = None
    if missing == "drop":
        keep = np.ones(table.n_rows, dtype=bool)
        for name in numeric:
            keep &= ~np.isnan(table.numeric[name])
        for _, codes, _ in candidates:
            keep &= codes >= 0
    rows_used = table.n_rows if keep is None else int(keep.sum())
    if rows_used == 0:
        raise TabularError("no rows left after dropping rows with missing values; try missing='impute'")

    # (name, codes of the rows used into the column's one-hot block (-1: missing), levels in block order)
    categorical: list[tuple[str, np.ndarray, list[str]]] = []
    for name, codes, counts in candidates:
        levels_all = table.categorical[name].levels
        if keep is not None:
            codes = codes[keep]
            if private:
                counts = np.bincount(codes[codes >= 0], minlength=len(levels_all))
        order = sorted(np.flatnonzero(counts), key=lambda i: (-counts[i], levels_all[i]))
        if private:
            order = [i for i in order if counts[i] >= min_count and levels_all[i] != OTHER][:max_categories]
        rank = np.full(len(levels_all) + 1, -1, dtype=np.int64)  # the extra slot maps code -1 to -1
        levels = [levels_all[i] for i in order]
        if private:
            rank[:-1] = len(order)  # every level not named is "(other)"
            levels.append(OTHER)
        rank[order] = np.arange(len(order))
        categorical.append((name, rank[codes], levels))

    n_features = len(numeric) + sum(len(levels) for _, _, levels in categorical)
    columns = [table.numeric[name] if keep is None else table.numeric[name][keep] for name in numeric]
    means = np.empty(len(numeric))
    stds = np.empty(len(numeric))
    # Columns with numbers beyond 1e150 are standardized in units of their largest magnitude, so that neither
    # their moments nor x - mean overflow; `shift` and `scale` are the mean and std in those units.
    unit, shift, scale = np.ones(len(numeric)), np.empty(len(numeric)), np.empty(len(numeric))
    for j, name in enumerate(numeric):
        col = table.numeric[name] if private else columns[j]
        present = col[~np.isnan(col)] if np.isnan(col).any() else col
        largest = float(np.abs(present).max())
        if largest > _HUGE:
            unit[j] = largest
            present = present / largest
        if private:
            # The median and the interquartile range (as a normal's standard deviation): one wild row moves
            # neither, where it can stretch a standard deviation until every other row sits near zero.
            q1, shift[j], q3 = np.quantile(present, [0.25, 0.5, 0.75])
            std = (q3 - q1) / 1.349 or present.std()
        else:
            shift[j], std = present.mean(), present.std()
        scale[j] = std if std > 0 else 1.0  # a constant column stays at 0 instead of becoming nan
        # In original units for the metadata (JSON): an interquartile range wider than a float64 holds is
        # held at its largest value.
        means[j] = shift[j] * unit[j]
        stds[j] = min(float(scale[j]) * float(unit[j]), _FLOAT_MAX)
    rescaled = bool((unit != 1.0).any())
    # The one big allocation is the matrix itself, filled a block of rows at a time so that writing
    # the columns across stays in cache.
    X = np.zeros((rows_used, n_features), dtype=np.float64)
    m = len(numeric)
    for lo in range(0, rows_used, _BLOCK_ROWS):
        block = X[lo : lo + _BLOCK_ROWS, :m]
        for j, col in enumerate(columns):
            block[:, j] = col[lo : lo + _BLOCK_ROWS]
        if rescaled:
            block /= unit
        block -= shift
        block /= scale
        block[np.isnan(block)] = 0.0  # a missing number becomes its column's mean
        if private:
            np.clip(block, -CLIP, CLIP, out=block)
    onehot: list[tuple[str, str]] = []
    start = len(numeric)
    for name, codes, levels in categorical:
        rows = np.flatnonzero(codes >= 0)
        X[rows, start + codes[rows]] = 1.0
        onehot.extend((name, v) for v in levels)
        start += len(levels)
    return Prepared(
        X=X,
        feature_names=numeric + [f"{c}={v}" for c, v in onehot],
        numeric_columns=numeric,
        categorical_columns_used=[name for name, _, _ in categorical],
        onehot=onehot,
        dropped_columns=dropped,
        rows_used=rows_used,
        rows_dropped=table.n_rows - rows_used,
        means=means,
        stds=stds,
        # Each clipped number adds at most CLIP² to a row's squared norm, each text column at most 1.
        row_norm=math.sqrt(m * CLIP**2 + len(categorical)) if private else None,
    )


def kmeans(
    prepared: Prepared,
    *,
    k: int | None = None,
    k_range: tuple[int, int] = (2, 8),
    mini_batch: bool | None = None,
    seed: int = 0,
    min_cluster_size: int = 5,
    bins: int | None = None,
    progress: Progress | None = None,
) -> dict:
    """k-means clusters: sizes, centroids in original units, silhouette, and a per-cluster density grid.

    With `k=None`, k is the silhouette-best in `k_range` (inclusive), each candidate fitted on a sample.
    `mini_batch=None` uses MiniBatchKMeans above `MINI_BATCH_ABOVE` rows.
    """
    report = progress or _silent
    X = prepared.X
    n = X.shape[0]
    if mini_batch is None:
        mini_batch = n > MINI_BATCH_ABOVE
    candidates: list[dict] = []
    if k is None:
        low, high = int(k_range[0]), min(int(k_range[1]), n - 1)
        if low < 2 or low > high:
            raise TabularError(f"cannot choose k in {list(k_range)} with {n} rows: need 2 <= k < rows")
        sample = X[_sample(n, SELECTION_ROWS, seed)] if n > SELECTION_ROWS else X
        for i, candidate in enumerate(range(low, high + 1)):
            report(0.5 * i / (high - low + 1), f"trying k={candidate}")
            labels = _kmeans_model(candidate, mini_batch, seed).fit(sample).labels_
            candidates.append({"k": candidate, "silhouette": _silhouette(sample, labels, seed)})
        scored = [c for c in candidates if c["silhouette"] is not None]
        k = max(scored, key=lambda c: c["silhouette"])["k"] if scored else low
        chosen_by = "silhouette"
    else:
        if k < 1:
            raise TabularError("k must be at least 1")
        if n < k:
            raise TabularError(
                f"cannot make {k} clusters from {n} rows: need at least as many rows as clusters"
            )
        chosen_by = "given"
    report(0.5, f"fitting k-means with k={k} on {n} rows")
    model = _kmeans_model(k, mini_batch, seed).fit(X)
    labels = model.labels_
    report(0.8, "scoring and summarizing clusters")
    sizes = np.bincount(labels, minlength=k)
    silhouette = _silhouette(X, labels, seed) if k > 1 else None
    scatter = _density_grid(X, labels, model.cluster_centers_, sizes, bins, min_cluster_size)
    result = {
        "algorithm": "minibatch_kmeans" if mini_batch else "kmeans",
        "k": int(k),
        "chosen_by": chosen_by,
        "candidates": candidates,
        "silhouette": _round(silhouette),
        "inertia": _round(model.inertia_),
        "rows": n,
        "min_cluster_size": min_cluster_size,
        "clusters": _clusters(prepared, model.cluster_centers_, sizes, min_cluster_size),
        "feature_names": list(prepared.feature_names),
        "scatter": scatter,
        "input": prepared.summary(),
    }
    report(1.0, "done")
    return result


def _kmeans_model(k: int, mini_batch: bool, seed: int) -> KMeans | MiniBatchKMeans:
    if mini_batch:
        return MiniBatchKMeans(n_clusters=k, random_state=seed, n_init="auto", batch_size=4096)
    return KMeans(n_clusters=k, random_state=seed, n_init="auto")


def dbscan(
    prepared: Prepared,
    *,
    eps: float = 0.5,
    min_samples: int = 5,
    min_cluster_size: int = 5,
    max_rows: int = 50_000,
    seed: int = 0,
    bins: int | None = None,
    progress: Progress | None = None,
) -> dict:
    """DBSCAN clusters (eps in standardized units): sizes, noise count, silhouette of the non-noise rows.

    Above `max_rows` rows it runs on a random sample of that many, since its memory grows with density.
    """
    report = progress or _silent
    X = prepared.X
    n = X.shape[0]
    sampled = n > max_rows
    if sampled:
        X = X[_sample(n, max_rows, seed)]
    report(0.1, f"running DBSCAN on {X.shape[0]} rows")
    labels = DBSCAN(eps=eps, min_samples=min_samples).fit(X).labels_
    report(0.8, "summarizing clusters")
    clustered = labels >= 0
    n_clusters = int(labels.max()) + 1 if clustered.any() else 0
    sizes = np.bincount(labels[clustered], minlength=n_clusters)
    centers = np.zeros((n_clusters, X.shape[1]))
    np.add.at(centers, labels[clustered], X[clustered])
    centers /= np.maximum(sizes, 1)[:, None]
    noise = int((~clustered).sum())
    silhouette = _silhouette(X[clustered], labels[clustered], seed) if n_clusters >= 2 else None
    noise_hidden = 0 < noise < min_cluster_size
    # Noise is drawn as one more group after the clusters, without a centroid (size 0 hides it).
    scatter = _density_grid(
        X, np.where(clustered, labels, n_clusters), np.vstack([centers, np.zeros((1, X.shape[1]))]),
        np.append(sizes, 0), bins, min_cluster_size,
    )  # fmt: skip
    result = {
        "algorithm": "dbscan",
        "eps": float(eps),
        "min_samples": int(min_samples),
        "rows": int(X.shape[0]),
        "sampled": sampled,
        "n_clusters": n_clusters,
        "noise": None if noise_hidden else noise,
        "noise_suppressed": noise_hidden,
        "silhouette": _round(silhouette),
        "min_cluster_size": min_cluster_size,
        "clusters": _clusters(prepared, centers, sizes, min_cluster_size),
        "feature_names": list(prepared.feature_names),
        "scatter": scatter,
        "input": prepared.summary(),
    }
    report(1.0, "done")
    return result


def pca(
    prepared: Prepared, *, n_components: int | None = None, seed: int = 0, progress: Progress | None = None
) -> dict:
    """Principal components of the standardized features: explained variance ratios and loadings."""
    report = progress or _silent
    n, f = prepared.X.shape
    if n < 2:
        raise TabularError("PCA needs at least 2 rows")
    limit = min(n, f)
    n_components = min(10, limit) if n_components is None else int(n_components)
    if not 1 <= n_components <= limit:
        raise TabularError(
            f"n_components must be between 1 and {limit} (rows and features), not {n_components}"
        )
    report(0.1, f"fitting PCA with {n_components} components")
    model = PCA(n_components=n_components, random_state=seed).fit(prepared.X)
    ratio = model.explained_variance_ratio_
    result = {
        "algorithm": "pca",
        "rows": n,
        "n_components": n_components,
        "components": [f"PC{i + 1}" for i in range(n_components)],
        "feature_names": list(prepared.feature_names),
        "explained_variance_ratio": _round_list(ratio),
        "cumulative": _round_list(np.cumsum(ratio)),
        "loadings": [_round_list(row) for row in model.components_],
        "input": prepared.summary(),
    }
    report(1.0, "done")
    return result


def isolation_forest(
    prepared: Prepared,
    *,
    contamination: Literal["auto"] | float = "auto",
    seed: int = 0,
    n_estimators: int = 100,
    bins: int = 30,
    min_count: int = 5,
    progress: Progress | None = None,
) -> dict:
    """Anomaly scores (0..1, higher = more isolated) as a histogram, with the threshold and the share flagged.

    Which rows are flagged is not reported: only how many.
    """
    report = progress or _silent
    X = prepared.X
    if contamination != "auto" and not (isinstance(contamination, int | float) and 0 < contamination <= 0.5):
        raise TabularError(f"contamination must be 'auto' or a number in (0, 0.5], not {contamination!r}")
    report(0.1, "fitting the isolation forest")
    model = IsolationForest(n_estimators=n_estimators, contamination=contamination, random_state=seed).fit(X)
    report(0.5, "scoring rows")
    scores = -model.score_samples(X)
    threshold = -float(model.offset_)
    flagged = int((scores > threshold).sum())  # the rule IsolationForest.predict uses
    # Range rounded outward so the edges are not the exact score of the most (or least) anomalous row.
    low = math.floor(float(scores.min()) * 100) / 100
    high = max(math.ceil(float(scores.max()) * 100) / 100, low + 0.01)
    counts, edges = np.histogram(scores, bins=bins, range=(low, high))
    hidden = (counts > 0) & (counts < min_count)
    counts[hidden] = 0
    result = {
        "algorithm": "isolation_forest",
        "rows": int(X.shape[0]),
        "contamination": contamination if contamination == "auto" else float(contamination),
        "threshold": _round(threshold),
        "flagged": flagged,
        "share_flagged": _round(flagged / X.shape[0]),
        "bins": _round_list(edges),
        "counts": [int(c) for c in counts],
        "suppressed_bins": int(hidden.sum()),
        "min_count": min_count,
        "input": prepared.summary(),
    }
    report(1.0, "done")
    return result


# --- shared helpers ------------------------------------------------------------------------------------


def _silent(fraction: float, message: str) -> None:
    pass


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    # Sorted, so that fancy indexing walks memory forward.
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def _silhouette(X: np.ndarray, labels: np.ndarray, seed: int) -> float | None:
    if X.shape[0] > SILHOUETTE_ROWS:
        idx = _sample(X.shape[0], SILHOUETTE_ROWS, seed)
        X, labels = X[idx], labels[idx]
    if not 2 <= len(np.unique(labels)) <= X.shape[0] - 1:
        return None
    return float(silhouette_score(X, labels))


def _clusters(
    prepared: Prepared, centers: np.ndarray, sizes: np.ndarray, min_size: int, sum_sd: float | None = None
) -> list[dict]:
    """Each cluster's size and centroid in original units; both hidden when it is smaller than `min_size`.

    With `sum_sd`, the noise scale of a private analysis's cluster sums, each centroid also states its noise:
    per column in original units (`centroid_sd`) and for category shares (`share_sd`). A figure beyond what a
    float64 holds (columns near ±1e308) is None."""
    # Overflow is expected there, and `_round` turns its infinities into None.
    with np.errstate(over="ignore", invalid="ignore"):
        return _clusters_unchecked(prepared, centers, sizes, min_size, sum_sd)


def _clusters_unchecked(
    prepared: Prepared, centers: np.ndarray, sizes: np.ndarray, min_size: int, sum_sd: float | None
) -> list[dict]:
    n_num = len(prepared.numeric_columns)
    private = sum_sd is not None
    out = []
    for i, (center, size) in enumerate(zip(centers, sizes, strict=True)):
        if size < min_size:
            hidden = {
                "cluster": i,
                "size": None,
                "suppressed": True,
                "centroid": None,
                "category_shares": None,
            }
            out.append({**hidden, "centroid_sd": None} if private else hidden)
            continue
        original = center[:n_num] * prepared.stds + prepared.means
        shares: dict[str, dict[str, float | None]] = {}
        for (column, value), share in zip(prepared.onehot, center[n_num:], strict=True):
            shares.setdefault(column, {})[value] = _round(min(max(share, 0.0), 1.0))
        cluster = {
            "cluster": i,
            "size": int(size),
            "suppressed": False,
            "centroid": {c: _round(v) for c, v in zip(prepared.numeric_columns, original, strict=True)},
            "category_shares": shares,
        }
        if private:
            sd = sum_sd / size  # of each coordinate of noisy sum / noisy size, in standardized units
            cluster["centroid_sd"] = {
                c: _round(sd * s) for c, s in zip(prepared.numeric_columns, prepared.stds, strict=True)
            }
            cluster["share_sd"] = _round(sd) if prepared.onehot else None
        out.append(cluster)
    return out


def _density_grid(
    X: np.ndarray,
    labels: np.ndarray,
    centers: np.ndarray,
    sizes: np.ndarray,
    bins: int | None,
    min_count: int,
) -> dict:
    """Counts of each cluster's rows on a bins x bins grid over the first two principal components.

    `bins=None` scales the grid with the rows (8 to 40 a side), so that small data still fills cells above
    `min_count` instead of having them all suppressed."""
    if bins is None:
        bins = int(np.clip(math.sqrt(X.shape[0]) / 2, 8, 40))
    sample = _sample(X.shape[0], SAMPLE_ROWS, 0) if X.shape[0] > SAMPLE_ROWS else slice(None)
    mean, axes, ratio = _top2_axes(X[sample])
    points = X @ axes.T
    points -= mean @ axes.T
    edges = []
    index = np.zeros(X.shape[0], dtype=np.int64)
    for d in range(2):
        # The range covers the central 99% padded by 5%: min and max would be the coordinates of single rows.
        lo, hi = np.quantile(points[sample, d], [0.005, 0.995])
        pad = max(hi - lo, 1e-9) * 0.05
        lo, hi = lo - pad, hi + pad
        edges.append(np.linspace(lo, hi, bins + 1))
        cell = np.floor((points[:, d] - lo) * (bins / (hi - lo))).astype(np.int64)
        np.clip(cell, 0, bins - 1, out=cell)  # rows outside the range are counted in the edge cells
        index = index * bins + cell
    k = len(centers)
    # One bincount for all clusters instead of a histogram2d pass per cluster.
    counts = np.bincount(labels.astype(np.int64) * bins * bins + index, minlength=k * bins * bins)
    counts = counts.reshape(k, bins, bins)
    hidden = (counts > 0) & (counts < min_count)
    counts[hidden] = 0
    projected = (centers - mean) @ axes.T
    return {
        "axes": ["PC1", "PC2"],
        "explained_variance_ratio": _round_list(ratio),
        "bins": bins,
        "x_edges": _round_list(edges[0]),
        "y_edges": _round_list(edges[1]),
        "counts": counts.tolist(),  # counts[cluster][x bin][y bin]
        "suppressed_cells": int(hidden.sum()),
        "centroids": [
            None if size < min_count else _round_list(p) for p, size in zip(projected, sizes, strict=True)
        ],
    }


def _top2_axes(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, the two leading principal axes (2 x features) and their explained variance ratios.

    From the features x features covariance: one matrix product over X.
    """
    n = X.shape[0]
    mean = X.mean(axis=0)
    cov = (X.T @ X) / n - np.outer(mean, mean)
    values, vectors = np.linalg.eigh(cov)
    values, vectors = values[::-1].clip(min=0), vectors[:, ::-1]
    axes = np.zeros((2, X.shape[1]))
    m = min(2, X.shape[1])
    axes[:m] = vectors[:, :m].T
    total = values.sum()
    ratio = np.zeros(2)
    if total > 0:
        ratio[:m] = values[:m] / total
    return mean, axes, ratio


def _round(x: Any, digits: int = 6) -> float | None:
    if x is None:
        return None
    value = float(x)
    return round(value, digits) if math.isfinite(value) else None


def _round_list(values: Sequence[float] | np.ndarray) -> list[float | None]:
    return [_round(v) for v in values]
