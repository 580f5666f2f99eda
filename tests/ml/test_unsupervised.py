import json
import math

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.decomposition import PCA

from ml.tabular import Categorical, Table, TabularError
from ml.unsupervised import dbscan, isolation_forest, kmeans, pca, prepare

CENTERS = np.array([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0]])
PLANTED = 123456.789


def table_of(numeric: dict[str, np.ndarray], categorical: dict | None = None) -> Table:
    categorical = categorical or {}
    n = len(next(iter(numeric.values()))) if numeric else len(next(iter(categorical.values())))
    return Table(
        columns=[*numeric, *categorical],
        numeric={k: np.asarray(v, dtype=np.float64) for k, v in numeric.items()},
        categorical={k: Categorical.from_values(v) for k, v in categorical.items()},
        n_rows=n,
    )


def blobs(n: int = 600, seed: int = 0) -> tuple[Table, np.ndarray]:
    x, y = make_blobs(n_samples=n, centers=CENTERS, cluster_std=1.0, random_state=seed)
    # Original units far from z-scores, so un-standardizing is really tested.
    x = x * [3.0, 0.5] + [1000.0, -50.0]
    colour = [["red", "green", "blue"][label] for label in y]
    return table_of({"width": x[:, 0], "height": x[:, 1]}, {"colour": colour}), x


def true_centers_in_original_units() -> np.ndarray:
    return CENTERS * [3.0, 0.5] + [1000.0, -50.0]


def all_numbers(obj) -> list[float]:
    if isinstance(obj, dict):
        return [v for item in obj.values() for v in all_numbers(item)]
    if isinstance(obj, list):
        return [v for item in obj for v in all_numbers(item)]
    return [obj] if isinstance(obj, int | float) and not isinstance(obj, bool) else []


def test_prepare_standardizes_numbers_one_hot_encodes_categories_and_names_what_it_drops():
    n = 40
    rng = np.random.default_rng(1)
    age = rng.normal(40, 10, n)
    age[3] = np.nan
    table = table_of(
        {"age": age, "empty": np.full(n, np.nan)},
        {
            "size": [["s", "m", "l"][i % 3] if i != 5 else None for i in range(n)],
            "id": [str(i) for i in range(n)],
        },
    )
    prepared = prepare(table, max_categories=5)
    # Categories by frequency: s 14, m 13, l 12 (one is missing).
    assert prepared.feature_names == ["age", "size=s", "size=m", "size=l"]
    assert prepared.numeric_columns == ["age"]
    assert prepared.categorical_columns_used == ["size"]
    assert prepared.dropped_columns == {"empty": "all values missing", "id": "too many categories (40 > 5)"}
    assert prepared.X.shape == (n, 4)
    assert prepared.X[:, 0].mean() == pytest.approx(0.0, abs=1e-12)
    assert prepared.X[3, 0] == 0.0  # imputed with the mean
    assert prepared.X[5, 1:].tolist() == [0.0, 0.0, 0.0]  # missing category: no indicator set
    assert prepared.X[:, 1:].sum() == n - 1
    assert prepared.means[0] == pytest.approx(np.nanmean(age))
    assert prepared.rows_used == n
    assert prepared.rows_dropped == 0
    summary = json.dumps(prepared.summary())
    assert "too many categories" in summary


def test_prepare_can_drop_rows_with_missing_values_instead():
    table = table_of({"a": [1.0, np.nan, 3.0, 4.0]}, {"b": ["x", "y", None, "x"]})
    prepared = prepare(table, missing="drop")
    assert prepared.rows_used == 2
    assert prepared.rows_dropped == 2


def test_prepare_refuses_a_table_with_no_usable_columns():
    table = table_of({"nothing": [np.nan] * 5}, {"id": [f"user-{i}" for i in range(5)]})
    with pytest.raises(TabularError, match="no numeric or low-cardinality categorical columns") as caught:
        prepare(table, max_categories=3)
    assert "nothing: all values missing" in str(caught.value)


def test_prepare_refuses_when_dropping_missing_values_leaves_no_rows():
    table = table_of({"a": [1.0, np.nan], "b": [np.nan, 2.0]})
    with pytest.raises(TabularError, match="no rows left"):
        prepare(table, missing="drop")


def test_kmeans_chooses_three_clusters_for_three_blobs_with_centroids_in_original_units():
    table, _ = blobs()
    calls: list[float] = []
    result = kmeans(prepare(table), k=None, k_range=(2, 6), progress=lambda f, m: calls.append(f))
    assert result["k"] == 3
    assert result["chosen_by"] == "silhouette"
    assert [c["k"] for c in result["candidates"]] == [2, 3, 4, 5, 6]
    assert result["silhouette"] > 0.7
    assert sorted(c["size"] for c in result["clusters"]) == [200, 200, 200]
    found = np.array([[c["centroid"]["width"], c["centroid"]["height"]] for c in result["clusters"]])
    for center in true_centers_in_original_units():
        nearest = found[np.argmin(np.linalg.norm(found - center, axis=1))]
        assert nearest == pytest.approx(center, abs=0.5)
    # Each blob is one colour, so each cluster's colour share is 1 for exactly one colour.
    for cluster in result["clusters"]:
        assert sorted(cluster["category_shares"]["colour"].values()) == pytest.approx([0, 0, 1], abs=1e-6)
    assert calls == sorted(calls)
    assert calls[-1] == 1.0
    json.dumps(result, allow_nan=False)


def test_kmeans_density_grid_counts_every_row_of_each_cluster_when_none_are_sparse():
    table, _ = blobs(n=3000)
    result = kmeans(prepare(table), k=3, bins=10)
    grid = np.array(result["scatter"]["counts"])
    assert grid.shape == (3, 10, 10)
    sizes = [c["size"] for c in result["clusters"]]
    # Only sparse cells are hidden, so the totals are close to the sizes but never above them.
    assert all(0.9 * s <= g <= s for g, s in zip(grid.sum(axis=(1, 2)), sizes, strict=True))
    assert grid[(grid > 0)].min() >= 5
    assert all(len(p) == 2 for p in result["scatter"]["centroids"])


def test_kmeans_suppresses_small_clusters_and_never_reveals_a_row():
    table, _ = blobs(n=300)
    width = np.append(table.numeric["width"], [PLANTED, PLANTED + 1])
    height = np.append(table.numeric["height"], [7.25, 7.5])
    table = table_of(
        {"width": width, "height": height}, {"colour": [*table.categorical["colour"].tolist(), "red", "red"]}
    )
    result = kmeans(prepare(table), k=4, min_cluster_size=5)
    small = [c for c in result["clusters"] if c["suppressed"]]
    assert len(small) == 1
    assert small[0]["size"] is None
    assert small[0]["centroid"] is None
    assert result["scatter"]["centroids"][small[0]["cluster"]] is None
    text = json.dumps(result)
    assert "123456" not in text
    raw = set(width.round(6)) | set(height.round(6))
    assert not raw & set(all_numbers(result["clusters"]))


def test_kmeans_refuses_fewer_rows_than_clusters():
    table = table_of({"a": [1.0, 2.0, 3.0]})
    with pytest.raises(TabularError, match="cannot make 5 clusters from 3 rows"):
        kmeans(prepare(table), k=5)


def test_kmeans_with_mini_batches_finds_the_same_blobs():
    table, _ = blobs()
    result = kmeans(prepare(table), k=3, mini_batch=True)
    assert result["algorithm"] == "minibatch_kmeans"
    assert sorted(c["size"] for c in result["clusters"]) == [200, 200, 200]


def test_dbscan_finds_the_blobs_and_counts_noise():
    table, _ = blobs()
    # Scattered far from the blobs and from each other: noise.
    width = np.append(table.numeric["width"], 1100.123457 + 20 * np.arange(6))
    height = np.append(table.numeric["height"], np.linspace(-80.654321, -60, 6))
    prepared = prepare(table_of({"width": width, "height": height}))
    result = dbscan(prepared, eps=0.3, min_samples=5)
    assert result["n_clusters"] == 3
    assert result["noise"] >= 6
    assert result["silhouette"] > 0.5
    assert not set(width[-6:].round(6)) & set(all_numbers(result))
    json.dumps(result, allow_nan=False)
    # The plot has one layer per cluster and one for noise, which has no centroid.
    grid = result["scatter"]
    assert len(grid["counts"]) == 4 and grid["centroids"][3] is None
    for layer, cluster in zip(grid["counts"], result["clusters"], strict=False):
        assert 0.8 * cluster["size"] <= sum(map(sum, layer)) <= cluster["size"]  # sparse cells are hidden


def test_dbscan_hides_a_noise_count_below_the_minimum():
    table, _ = blobs()
    width = np.append(table.numeric["width"], [1100.0, 1200.0])
    height = np.append(table.numeric["height"], [-80.0, -70.0])
    result = dbscan(prepare(table_of({"width": width, "height": height})), eps=0.5, min_samples=3)
    assert result["n_clusters"] == 3
    assert result["noise"] is None
    assert result["noise_suppressed"] is True


def test_pca_explained_variance_matches_sklearn_and_sums_to_at_most_one():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(500, 3))
    data = np.column_stack([base, base @ rng.normal(size=(3, 3)) + rng.normal(scale=0.1, size=(500, 3))])
    prepared = prepare(table_of({f"f{i}": data[:, i] for i in range(6)}))
    result = pca(prepared)
    assert result["n_components"] == 6
    ratios = result["explained_variance_ratio"]
    assert sum(ratios) <= 1 + 1e-6
    assert result["cumulative"][-1] == pytest.approx(1.0, abs=1e-6)
    expected = PCA(n_components=6).fit(prepared.X).explained_variance_ratio_
    assert ratios == pytest.approx(expected.tolist(), abs=1e-6)
    assert len(result["loadings"]) == 6
    assert len(result["loadings"][0]) == len(result["feature_names"]) == 6
    assert pca(prepared, n_components=2)["cumulative"][-1] < 1


def test_pca_refuses_more_components_than_features():
    prepared = prepare(table_of({"a": [1.0, 2.0, 3.0], "b": [3.0, 1.0, 2.0]}))
    with pytest.raises(TabularError, match="n_components must be between 1 and 2"):
        pca(prepared, n_components=3)


def test_isolation_forest_flags_about_the_planted_share_of_outliers():
    rng = np.random.default_rng(3)
    normal = rng.normal(size=(980, 3))
    outliers = rng.uniform(8, 12, size=(20, 3)) * rng.choice([-1, 1], size=(20, 3))
    data = np.vstack([normal, outliers])
    data[0, 0] = PLANTED
    prepared = prepare(table_of({f"f{i}": data[:, i] for i in range(3)}))
    result = isolation_forest(prepared, contamination=0.02)
    assert result["share_flagged"] == pytest.approx(0.02, abs=0.002)
    auto = isolation_forest(prepared)
    assert 0.02 <= auto["share_flagged"] <= 0.1
    assert sum(auto["counts"]) <= 1000
    assert all(c == 0 or c >= 5 for c in auto["counts"])
    assert len(auto["bins"]) == len(auto["counts"]) + 1
    assert "123456" not in json.dumps(auto)


@pytest.mark.parametrize("contamination", [0.0, 0.7, "most"])
def test_isolation_forest_refuses_a_meaningless_contamination(contamination):
    prepared = prepare(table_of({"a": np.arange(20.0)}))
    with pytest.raises(TabularError, match="contamination must be"):
        isolation_forest(prepared, contamination=contamination)


@pytest.mark.parametrize(
    "huge",
    [
        [1e200, -1e200] * 15,  # squares overflow
        [1e308] * 30,  # the sum overflows
        [1.7e308, -1.7e308] * 15,  # x - mean nearly overflows
        [1.7e308] + [-1.7e308] * 29,  # x - mean overflows
    ],
)
@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_prepare_and_every_analysis_stay_finite_on_numbers_near_the_float_limit(huge):
    from ml import private_analyses

    n = len(huge)
    table = table_of({"huge": huge, "small": np.arange(n, dtype=float)}, {"kind": ["a", "b"] * (n // 2)})
    for private in (False, True):
        prepared = prepare(table, private=private, min_count=1)
        assert np.isfinite(prepared.X).all()
        assert prepared.numeric_columns == ["huge", "small"]
        json.dumps(prepared.metadata(), allow_nan=False)  # PostgreSQL's JSON refuses NaN and Infinity
        results = [kmeans(prepared, k=2), pca(prepared), isolation_forest(prepared)]
        if private:
            results += [
                private_analyses.kmeans(prepared, k=2, epsilon=1.0),
                private_analyses.pca(prepared, epsilon=1.0),
                private_analyses.isolation_forest(prepared, epsilon=1.0),
            ]
        else:
            results.append(dbscan(prepared, eps=0.5, min_samples=2))
        for result in results:
            json.dumps(result, allow_nan=False)
            assert all(math.isfinite(v) for v in all_numbers(result))
