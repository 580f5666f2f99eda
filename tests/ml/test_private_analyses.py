"""Differentially private analyses: what a compute-only buyer can learn, and what they cannot."""

import json

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from sklearn.datasets import make_blobs

from ml import private_analyses, unsupervised
from ml.privacy import DELTA, OTHER, Budget, PrivacyError, rho_for
from ml.tabular import Categorical, Table

CENTERS = np.array([[0.0, 0.0, 0.0], [10.0, 10.0, 10.0], [-10.0, 10.0, -10.0]])
ANALYSES = {
    "kmeans": lambda p: private_analyses.kmeans(p, k=3, epsilon=1.0),
    "pca": lambda p: private_analyses.pca(p, epsilon=1.0),
    "isolation_forest": lambda p: private_analyses.isolation_forest(p, epsilon=1.0),
}


def blobs_table(
    n: int = 3_000, seed: int = 0, rare: dict[int, str] | None = None
) -> tuple[Table, np.ndarray]:
    x, y = make_blobs(n_samples=n, centers=CENTERS, cluster_std=1.0, random_state=seed)
    segment = [["north", "south", "east"][label] for label in y]
    for row, value in (rare or {}).items():
        segment[row] = value
    table = Table(
        columns=["x", "y", "z", "segment", "email"],
        numeric={name: x[:, j].copy() for j, name in enumerate("xyz")},
        categorical={
            "segment": Categorical.from_values(segment),
            "email": Categorical.from_values([f"person{i}@example.org" for i in range(n)]),
        },
        n_rows=n,
    )
    return table, x


@pytest.mark.parametrize("max_categories", [2, 20, 100])
@pytest.mark.parametrize("analysis", list(ANALYSES))
def test_no_private_result_names_a_rare_level_or_an_identifier_whatever_max_categories(
    analysis, max_categories
):
    rare = {0: "lighthouse", 1: "lighthouse", 2: "island", 3: "island", 4: "island", 5: "island"}
    table, _ = blobs_table(rare=rare)
    prepared = unsupervised.prepare(table, max_categories=max_categories, private=True)
    text = json.dumps(ANALYSES[analysis](prepared))
    assert "lighthouse" not in text and "island" not in text, "levels of fewer than 5 rows are never named"
    assert "example.org" not in text, "no value of an identifier column is named"
    assert "identifier-like" in text, "the identifier column is named as dropped, without its values"
    assert f"segment={OTHER}" in prepared.feature_names
    named = [v for c, v in prepared.onehot if c == "segment" and v != OTHER]
    assert len(named) <= max_categories


def test_a_level_reaching_min_count_in_the_rows_used_is_named_and_one_below_is_folded():
    table, _ = blobs_table(rare={i: "island" for i in range(5)} | {i: "cove" for i in range(5, 9)})
    prepared = unsupervised.prepare(table, private=True)
    levels = {v for c, v in prepared.onehot if c == "segment"}
    assert "island" in levels and "cove" not in levels and OTHER in levels
    # Every row is in exactly one level of the column, so the folded rows are counted under "(other)".
    block = [
        j for j, (c, _) in enumerate(prepared.onehot, start=len(prepared.numeric_columns)) if c == "segment"
    ]
    assert prepared.X[:, block].sum(axis=1).tolist() == [1.0] * table.n_rows


def test_private_features_are_clipped_so_one_wild_row_moves_no_sum_more_than_the_row_norm():
    table, _ = blobs_table()
    table.numeric["x"][7] = 1e12
    prepared = unsupervised.prepare(table, private=True)
    norms = np.linalg.norm(prepared.X, axis=1)
    assert norms.max() <= prepared.row_norm + 1e-9
    assert abs(prepared.means[0]) < 5, "the wild row does not move the centre (a median)"


def _centroids(result: dict, columns: list[str]) -> np.ndarray:
    return np.array(
        [[c["centroid"][name] for name in columns] if c["centroid"] else [np.inf] * len(columns)
         for c in result["clusters"]]
    )  # fmt: skip


def test_private_k_means_finds_well_separated_clusters_at_the_default_epsilon():
    """On 3,000 rows, every DP centroid lies within 0.75 of the data's standard deviation (per coordinate) of
    the true centre, and every size within 200 of 1,000, in most of five runs (noise is random: about one run in
    twenty merges two clusters)."""
    table, x = blobs_table()
    prepared = unsupervised.prepare(table, private=True)
    errors, sizes_right = [], 0
    for seed in range(5):
        result = private_analyses.kmeans(prepared, k=3, epsilon=1.0, seed=seed)
        got = _centroids(result, ["x", "y", "z"])
        distance = np.abs(got[:, None, :] - CENTERS[None, :, :]).max(axis=2)
        rows, cols = linear_sum_assignment(np.nan_to_num(distance, posinf=1e12))
        errors.append((np.abs(got[rows] - CENTERS[cols]) / x.std(axis=0)).max())
        sizes = sorted(c["size"] or 0 for c in result["clusters"])
        sizes_right += sizes == pytest.approx([1_000] * 3, abs=200)
    assert np.median(errors) < 0.75, errors
    assert sizes_right >= 3
    assert result["privacy"]["epsilon"] == 1.0 and result["privacy"]["delta"] == DELTA
    visible = next(c for c in result["clusters"] if not c["suppressed"])
    assert visible["centroid_sd"]["x"] > 0, "the noise scale is stated in original units"


def test_differencing_two_analyses_whose_rows_differ_by_one_no_longer_rebuilds_that_row():
    """missing="impute" and missing="drop" differ by the one row with a missing value: exact centroids give its
    values back exactly; private ones leave it far off, compared with the column's spread."""
    n = 600
    x, _ = make_blobs(n_samples=n, centers=CENTERS, cluster_std=1.0, random_state=3)
    target = x[0].copy()
    segment = [None] + ["a"] * (n - 1)  # the target row alone misses its category
    table = Table(
        columns=["x", "y", "z", "segment"],
        numeric={name: x[:, j].copy() for j, name in enumerate("xyz")},
        categorical={"segment": Categorical.from_values(segment)},
        n_rows=n,
    )

    def rebuild(with_row: dict, without_row: dict) -> np.ndarray:
        # The cluster nearest the target in the analysis that holds it, and its counterpart without it.
        a, b = _centroids(with_row, list("xyz")), _centroids(without_row, list("xyz"))
        i = int(np.argmin(np.abs(a - target).sum(axis=1)))
        j = int(np.argmin(np.abs(b - a[i]).sum(axis=1)))
        size_a, size_b = with_row["clusters"][i]["size"] or 0, without_row["clusters"][j]["size"] or 0
        return size_a * a[i] - size_b * b[j]

    exact = [unsupervised.kmeans(unsupervised.prepare(table, missing=m), k=3) for m in ("impute", "drop")]
    assert rebuild(*exact) == pytest.approx(target, abs=0.01), "the attack works on exact results"

    spread = x.std(axis=0)
    errors = []
    for _ in range(10):
        private = [
            private_analyses.kmeans(unsupervised.prepare(table, missing=m, private=True), k=3, epsilon=1.0)
            for m in ("impute", "drop")
        ]
        errors.append(np.nan_to_num(np.abs(rebuild(*private) - target) / spread, nan=np.inf).mean())
    assert np.median(errors) > 10, f"reconstruction errors in standard deviations: {errors}"


def test_private_pca_finds_the_main_direction_of_correlated_data():
    rng = np.random.default_rng(0)
    base = rng.normal(size=20_000)
    table = Table(
        columns=["a", "b", "c"],
        numeric={
            "a": base + 0.1 * rng.normal(size=20_000),
            "b": base + 0.1 * rng.normal(size=20_000),
            "c": rng.normal(size=20_000),
        },
        categorical={},
        n_rows=20_000,
    )
    private = private_analyses.pca(unsupervised.prepare(table, private=True), epsilon=1.0)
    exact = unsupervised.pca(unsupervised.prepare(table, private=True))
    cosine = abs(np.dot(private["loadings"][0], exact["loadings"][0]))
    assert cosine > 0.95
    assert private["explained_variance_ratio"][0] == pytest.approx(
        exact["explained_variance_ratio"][0], abs=0.1
    )
    assert private["privacy"]["explained_variance_ratio_error"] < 0.1


def test_the_private_isolation_forest_scores_the_planted_outliers_highest():
    table, _ = blobs_table(n=6_000)
    for row in range(30):
        table.numeric["x"][row] = 60.0 + row  # far outside every blob
    result = private_analyses.isolation_forest(
        unsupervised.prepare(table, private=True), epsilon=1.0, contamination=0.01
    )
    assert sum(result["counts"]) == pytest.approx(6_000, rel=0.1)
    assert result["flagged"] == pytest.approx(60, abs=60)
    assert all(str(60.0 + row) not in json.dumps(result) for row in range(30))


def test_the_budget_converts_epsilon_with_opendp_and_refuses_to_overspend():
    import opendp.prelude as dp

    dp.enable_features("contrib")
    rho = rho_for(1.0)
    gaussian = dp.m.make_gaussian(dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float),
                                  scale=1 / np.sqrt(2 * rho))  # fmt: skip
    epsilon, delta = dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(gaussian), DELTA).map(1.0)
    assert epsilon <= 1.0 + 1e-6 and delta == DELTA
    budget = Budget(1.0)
    budget.gaussian(np.zeros(3), sensitivity=1.0, share=0.7, what="first")
    with pytest.raises(PrivacyError, match="cannot pay"):
        budget.gaussian(np.zeros(3), sensitivity=1.0, share=0.4, what="second")
    with pytest.raises(PrivacyError, match="not finite"):
        budget.gaussian(np.array([np.inf]), sensitivity=1.0, share=0.1, what="a sum")
    with pytest.raises(PrivacyError):
        Budget(float("nan"))
