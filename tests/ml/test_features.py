import json

import numpy as np
import pytest

from ml.dp import PrivacyBudget
from ml.features import FeatureError, FeatureSchema, features
from ml.privacy import CLIP
from ml.tabular import Categorical, Table
from tests.ml.supervised_data import synthetic_table


def test_features_come_from_parsed_columns_with_a_stated_stratified_split():
    table = synthetic_table()
    data = features(table, "label", "classification", test_size=0.25, seed=3)
    assert data.split == {"test_size": 0.25, "seed": 3, "stratified": True, "train_rows": 300, "test_rows": 100,
                          "rows_without_target": 0}  # fmt: skip
    schema = data.schema
    assert schema.input_columns == ["x1", "x2", "colour", "amount"]
    names = schema.feature_names
    assert names[:3] == ["x1", "x2", "colour=red"] and set(names[3:5]) == {"colour=blue", "colour=green"}
    assert names[5] == "amount"
    assert schema.classes == ["no", "yes"]  # sorted, whatever the rows' order: "yes" is the positive class
    assert data.X_train.shape == (300, 6) and data.X_test.shape == (100, 6)
    assert np.isfinite(data.X_train).all()
    # standardized on the training rows: mean 0, std 1 for a column with no missing values
    assert data.X_train[:, 0].mean() == pytest.approx(0, abs=1e-9)
    assert data.X_train[:, 0].std() == pytest.approx(1)
    # class shares are kept in both parts
    share = lambda y: np.bincount(y, minlength=2) / y.size  # noqa: E731
    assert share(data.y_train) == pytest.approx(share(data.y_test), abs=0.02)


def test_missing_numbers_are_imputed_with_the_training_median():
    data = features(synthetic_table(), "amount", "regression")
    x2 = next(c for c in data.schema.columns if c["name"] == "x2")
    table = synthetic_table()
    assert x2["impute"] == pytest.approx(np.nanmedian(table.numeric["x2"][_train_rows(table, data)]))
    rows = data.schema.rows_matrix([{"x1": 0.0, "x2": None, "colour": "red", "label": "yes"}])
    assert rows[0, 1] == pytest.approx((x2["impute"] - x2["center"]) / x2["scale"])


def _train_rows(table: Table, data) -> np.ndarray:
    # the split is reproducible: rebuild the training indices as features() made them
    from sklearn.model_selection import train_test_split

    known = np.flatnonzero(np.isfinite(table.numeric["amount"]))
    return np.sort(train_test_split(known, test_size=0.2, random_state=0)[0])


def test_only_the_most_frequent_levels_are_one_hot_and_others_are_zeros():
    data = features(synthetic_table(), "label", "classification", max_levels=2)
    colour = next(c for c in data.schema.columns if c["name"] == "colour")
    assert colour["levels"][0] == "red" and len(colour["levels"]) == 2
    X = data.schema.rows_matrix(
        [
            {"x1": 0, "x2": 50, "colour": "mauve", "amount": 100},
            {"x1": 0, "x2": 50, "colour": None, "amount": 100},
        ]
    )
    assert X[:, 2:4].sum() == 0


def test_the_schema_is_json_and_round_trips():
    schema = features(synthetic_table(), "label", "classification").schema
    again = FeatureSchema.from_json(json.loads(json.dumps(schema.to_json())))
    assert again == schema


def test_identifier_like_columns_are_never_used():
    table = synthetic_table()
    ids = Categorical.from_values([f"customer-{i}" for i in range(table.n_rows)])
    table = Table(columns=[*table.columns, "customer"], numeric=table.numeric,
                  categorical={**table.categorical, "customer": ids}, n_rows=table.n_rows)  # fmt: skip
    schema = features(table, "label", "classification").schema
    assert "customer" not in schema.input_columns
    assert "identifier-like" in schema.dropped["customer"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"x1": 1, "x2": 2, "colour": "red"}], "row 0: missing column\\(s\\) 'amount'"),
        (
            [{"x1": 1, "x2": 2, "colour": "red", "amount": 1, "secret": 1}],
            "row 0: unknown column\\(s\\) 'secret'",
        ),
        (
            [{"x1": "abc", "x2": 2, "colour": "red", "amount": 1}],
            "row 0, column \"x1\": expected a number, got 'abc'",
        ),
        (
            [{"x1": 1, "x2": 2, "colour": {"a": 1}, "amount": 1}],
            'row 0, column "colour": expected text, got dict',
        ),
        ([{"x1": 1, "x2": True, "colour": "red", "amount": 1}], 'column "x2": expected a number, got True'),
        ([{"x1": 1, "x2": "inf", "colour": "red", "amount": 1}], 'column "x2": expected a number'),
        ([], "rows must be a non-empty list"),
        ([[1, 2, 3, 4]], "row 0: expected an object"),
    ],
)
def test_rows_are_refused_naming_the_wrong_or_missing_columns(rows, message):
    schema = features(synthetic_table(), "label", "classification").schema
    with pytest.raises(FeatureError, match=message) as refused:
        schema.rows_matrix(rows)
    if rows and isinstance(rows[0], dict):
        assert "Expected columns: x1 (number), x2 (number), colour (text), amount (number)" in str(
            refused.value
        )


def test_rows_accept_numbers_as_text_and_missing_values():
    schema = features(synthetic_table(), "label", "classification").schema
    X = schema.rows_matrix([{"x1": "1.5", "x2": "", "colour": "red", "amount": None},
                            {"x1": 1.5, "x2": "NA", "colour": " red ", "amount": "null"}])  # fmt: skip
    assert np.array_equal(X[0], X[1])


def _numeric_schema(clip: float | None) -> FeatureSchema:
    columns = [{"name": f"x{i}", "type": "numeric", "impute": 0.5 * i, "center": i - 2.0, "scale": 0.5 + i}
               for i in range(4)]  # fmt: skip
    target = {"name": "y", "task": "classification", "classes": ["no", "yes"]}
    return FeatureSchema.from_json({"format": 1, "columns": columns, "target": target, "clip": clip})


@pytest.mark.parametrize("clip", [None, 1.0])
def test_rows_of_numbers_only_make_the_matrix_that_cell_by_cell_reading_makes(clip):
    schema = _numeric_schema(clip)
    rows = [{"x0": 1, "x1": -2.5, "x2": 1e6, "x3": 0.0}, {"x0": 3.25, "x1": 7, "x2": -1e-9, "x3": 2**53 - 1}]
    fast = schema.rows_matrix(rows)
    # A null in one cell takes every column the cell-by-cell way; the other rows come out the same.
    slow = schema.rows_matrix([*rows, {"x0": None, "x1": "2", "x2": 0, "x3": 0}])
    assert np.array_equal(fast, slow[:2])
    assert slow[2, 0] == np.clip((0.0 - (-2.0)) / 0.5, -(clip or np.inf), clip or np.inf)


@pytest.mark.parametrize(
    ("cell", "message"),
    [(True, "expected a number, got True"), (float("inf"), "expected a number"), ("x", "expected a number"),
     ([1], "expected a number")],
)  # fmt: skip
def test_a_bad_number_among_plain_ones_is_named_by_row_and_column(cell, message):
    schema = _numeric_schema(None)
    rows = [{"x0": 1.0, "x1": 2.0, "x2": 3.0, "x3": 4.0}, {"x0": 1.0, "x1": 2.0, "x2": cell, "x3": 4.0}]
    with pytest.raises(FeatureError, match=f'row 1, column "x2": {message}'):
        schema.rows_matrix(rows)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"columns": []}, "non-empty list of columns"),
        (
            {"columns": [{"name": "a", "type": "numeric", "impute": 0, "center": 0, "scale": 0}]},
            "scale must be positive",
        ),
        (
            {"columns": [{"name": "a", "type": "numeric", "impute": 0, "center": float("nan"), "scale": 1}]},
            "center must be",
        ),
        (
            {"columns": [{"name": "a", "type": "categorical", "levels": ["x", "x"]}]},
            "levels must be distinct",
        ),
        ({"columns": [{"name": "a", "type": "date"}]}, 'type must be "numeric" or "categorical"'),
        ({"target": {"name": "t", "task": "classification", "classes": ["only"]}}, "needs 2 to 100 classes"),
        ({"target": {"name": "a", "task": "regression"}}, "is also an input column"),
    ],
)
def test_a_declared_schema_is_checked_field_by_field(change, message):
    good = {"columns": [{"name": "a", "type": "numeric", "impute": 0, "center": 0, "scale": 1}],
            "target": {"name": "t", "task": "regression", "center": 0, "scale": 1}}  # fmt: skip
    FeatureSchema.from_json(good)
    with pytest.raises(FeatureError, match=message):
        FeatureSchema.from_json({**good, **change})


def test_bad_targets_and_tasks_are_refused():
    table = synthetic_table()
    with pytest.raises(FeatureError, match='no column "nope"'):
        features(table, "nope", "classification")
    with pytest.raises(FeatureError, match='"colour" holds text; regression needs a numeric column'):
        features(table, "colour", "regression")
    with pytest.raises(FeatureError, match="distinct numbers; classification allows at most 100"):
        features(table, "amount", "classification")
    with pytest.raises(FeatureError, match="task must be one of"):
        features(table, "label", "clustering")


def test_a_private_schema_is_released_with_noise_and_charged_to_the_budget():
    table = synthetic_table(n=3000)
    budget = PrivacyBudget(4.0)
    data = features(table, "label", "classification", budget=budget)
    schema = data.schema
    assert schema.private and schema.clip == CLIP
    assert np.abs(data.X_train).max() <= CLIP
    x1 = next(c for c in schema.columns if c["name"] == "x1")
    assert x1["center"] == pytest.approx(0, abs=0.5) and 0.3 < x1["scale"] < 3  # noisy, coarse, but sane
    assert set(schema.classes) == {"yes", "no"}
    assert 0 < budget.spent() <= 0.1 * 4.0 * 1.001
    assert [r["what"] for r in budget.releases] == [
        "feature schema histograms (5 columns)",
        "naming levels and classes above a noisy-count threshold",
    ]
    assert data.split["rows_without_target"] is None  # an exact count would be a release


def test_a_private_schema_does_not_name_rare_levels():
    table = synthetic_table(n=2000)
    rare = np.array(table.categorical["colour"].tolist(), dtype=object)
    rare[:3] = "one-of-a-kind"
    table.categorical["colour"] = Categorical.from_values(rare.tolist())
    schema = features(table, "label", "classification", budget=PrivacyBudget(2.0)).schema
    colour = next(c for c in schema.columns if c["name"] == "colour")
    assert "one-of-a-kind" not in colour["levels"]
    assert "one-of-a-kind" in features(table, "label", "classification").schema.columns[2]["levels"]


@pytest.mark.parametrize("names", [["a"], ["a", "b", "c"]])
def test_numeric_rows_are_read_at_once_as_column_by_column(names):
    columns = [{"name": n, "type": "numeric", "impute": 5.0, "center": 1.0 + i, "scale": 2.0}
               for i, n in enumerate(names)]  # fmt: skip
    schema = FeatureSchema(
        columns=columns, target={"name": "y", "task": "regression", "center": 0, "scale": 1}
    )
    rows = [{n: v * (i + 1) for i, n in enumerate(names)} for v in (3, 0.5, -7)]  # ints and floats
    expected = np.array([[(row[c["name"]] - c["center"]) / c["scale"] for c in columns] for row in rows])
    assert np.array_equal(schema.rows_matrix(rows), expected)
    # A null in one row: read column by column, the null imputed; the other rows as before.
    rows[1][names[-1]] = None
    X = schema.rows_matrix(rows)
    assert X[1, -1] == (5.0 - columns[-1]["center"]) / 2.0
    assert np.array_equal(X[[0, 2]], expected[[0, 2]])
