import io
import json
import math

import numpy as np
import pytest

from ml.tabular import TabularError, column_stats, read_table

ROWS = [
    {
        "age": 30 + i,
        "city": ["paris", "lyon", "nice"][i % 3],
        "score": None if i == 4 else i / 2,
        "code": f"{i:03d}",
    }
    for i in range(30)
]


def write_csv(path, rows=ROWS):
    header = list(rows[0])
    lines = [",".join(header)]
    for row in rows:
        lines.append(",".join("" if row[c] is None else str(row[c]) for c in header))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_jsonl(path, rows=ROWS):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_it_infers_numeric_and_categorical_columns(tmp_path, fmt):
    path = write_csv(tmp_path / "d.csv") if fmt == "csv" else write_jsonl(tmp_path / "d.jsonl")
    table = read_table(path, fmt=fmt)
    assert table.n_rows == 30
    assert table.columns == ["age", "city", "score", "code"]
    assert table.kinds == {"age": "numeric", "city": "categorical", "score": "numeric", "code": "numeric"}
    assert math.isnan(table.numeric["score"][4])
    assert table.numeric["age"].dtype == np.float64
    assert table.categorical["city"].tolist()[:3] == ["paris", "lyon", "nice"]


def test_it_treats_missing_tokens_as_missing_and_other_text_as_categories():
    data = b"a,b,c\n1,NA,x\nnull,2,\n3.5,,y\n"
    table = read_table(io.BytesIO(data), fmt="csv")
    assert table.kinds == {"a": "numeric", "b": "numeric", "c": "categorical"}
    assert np.isnan(table.numeric["a"]).tolist() == [False, True, False]
    assert table.categorical["c"].tolist() == ["x", None, "y"]


def test_it_reads_jsonl_with_differing_keys_and_booleans_as_categories():
    data = b'{"a": 1, "flag": true}\n\n{"b": "x", "flag": false, "a": null}\n'
    table = read_table(io.BytesIO(data), fmt="jsonl")
    assert table.columns == ["a", "flag", "b"]
    assert table.categorical["flag"].tolist() == ["true", "false"]
    assert table.categorical["b"].tolist() == [None, "x"]
    assert table.kinds["a"] == "numeric"


def test_it_stops_at_max_rows_and_says_so(tmp_path):
    table = read_table(write_csv(tmp_path / "d.csv"), fmt="csv", max_rows=10)
    assert table.n_rows == 10
    assert table.truncated


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_column_stats_report_aggregates_and_hide_rare_values(tmp_path, fmt):
    rows = [*ROWS, {"age": 99, "city": "rare-town", "score": 1.0, "code": "999"}]
    path = write_csv(tmp_path / "d.csv", rows) if fmt == "csv" else write_jsonl(tmp_path / "d.jsonl", rows)
    stats = column_stats(read_table(path, fmt=fmt))
    assert stats["rows"] == 31
    assert stats["n_columns"] == 4
    by_name = {c["name"]: c for c in stats["columns"]}
    age = by_name["age"]
    assert age["type"] == "numeric"
    assert age["missing"] == 0
    ages = np.array([r["age"] for r in rows], dtype=float)
    assert age["mean"] == pytest.approx(ages.mean())
    assert age["std"] == pytest.approx(ages.std(ddof=1))
    # The extremes are the 5th smallest and largest, so the lone 99 is not exposed.
    assert age["min"] == 34
    assert age["max"] == 56
    assert by_name["score"]["missing"] == 1
    city = by_name["city"]
    assert city["type"] == "categorical"
    assert city["distinct"] == 4
    assert city["top"] == [
        {"value": "paris", "count": 10},
        {"value": "lyon", "count": 10},
        {"value": "nice", "count": 10},
    ]
    assert city["top_suppressed"] == 1
    assert "rare-town" not in json.dumps(stats)
    assert 99 not in (age["min"], age["max"], age["mean"])


def test_column_stats_suppress_a_numeric_column_with_too_few_values():
    table = read_table(io.BytesIO(b"x,y\n1,\n2,\n3,\n4,5\n5,\n6,\n"), fmt="csv")
    y = next(c for c in column_stats(table)["columns"] if c["name"] == "y")
    assert y["suppressed"] is True
    assert y["mean"] is None
    assert y["min"] is None


def test_reading_reports_progress_to_the_end_and_the_statistics_are_json(tmp_path):
    path = write_csv(tmp_path / "d.csv")
    calls = []
    stats = column_stats(read_table(path, fmt="csv", progress=lambda f, m: calls.append(f)))
    assert calls[-1] == 1.0
    json.dumps(stats, allow_nan=False)


@pytest.mark.parametrize(
    ("fmt", "data", "message"),
    [
        ("csv", b"a,b\n1,2\n3,\xff\xfe\n", "not UTF-8 text: undecodable byte on line 3"),
        ("csv", b"a,b\n1,2\n3,4,5\n", "line 3 has 3 fields but the header has 2"),
        ("csv", b'a,b\n1,"x"y\n', "malformed CSV on line 2"),
        ("csv", b"", "the file is empty"),
        ("csv", b"a,b\n", "no data rows"),
        ("csv", b"a,a\n1,2\n", "repeats column name(s): a"),
        ("jsonl", b'{"a": 1}\n{"a": 2\n', "line 2 is not valid JSON"),
        ("jsonl", b'{"a": 1}\n[1, 2]\n', "line 2 is a JSON list, expected an object"),
        ("jsonl", b"\n\n", "no data rows"),
    ],
)
def test_it_refuses_bad_input_with_a_message_that_says_why(fmt, data, message):
    with pytest.raises(TabularError) as caught:
        read_table(io.BytesIO(data), fmt=fmt)
    assert message in str(caught.value)


def test_it_refuses_an_unknown_format():
    with pytest.raises(TabularError, match="unknown format"):
        read_table(io.BytesIO(b"a\n1\n"), fmt="xlsx")  # type: ignore[arg-type]


def test_saved_columns_load_back_identical_and_never_unpickle(tmp_path):
    from ml.tabular import table_load, table_save

    data = b"n,city,note\n1.5,Oslo,\n,Bergen,x\n3,,y\n" + b"4,Oslo,z\n" * 20
    table = read_table(io.BytesIO(data), fmt="csv")
    path = tmp_path / "columns.npz"
    with path.open("wb") as fh:
        table_save(table, fh)
    loaded = table_load(path)
    assert loaded.columns == table.columns and loaded.kinds == table.kinds and loaded.n_rows == 23
    np.testing.assert_array_equal(loaded.numeric["n"], table.numeric["n"])  # nan included
    assert loaded.categorical["city"].tolist() == table.categorical["city"].tolist()
    assert loaded.head[:3] == [["1.5", "Oslo", ""], ["", "Bergen", "x"], ["3", "", "y"]]
    assert column_stats(loaded) == column_stats(table)

    np.savez(tmp_path / "evil.npz", meta=np.array([{"format": 1}], dtype=object), numeric=np.zeros(1))
    with pytest.raises(ValueError, match="allow_pickle"):
        table_load(tmp_path / "evil.npz")


class _Unseekable(io.RawIOBase):
    """A stream that cannot seek (a pipe, a socket)."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self._inner.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def assert_same_table(a, b) -> None:
    assert a.columns == b.columns and a.kinds == b.kinds and a.n_rows == b.n_rows and a.head == b.head
    for name in a.numeric:
        np.testing.assert_array_equal(a.numeric[name], b.numeric[name])
    for name in a.categorical:
        assert a.categorical[name].tolist() == b.categorical[name].tolist()


@pytest.mark.parametrize(
    ("data", "fast"),
    [
        (b"a,b\n1,2\n3.5,-4e3\n", True),
        (b"\xef\xbb\xbfa,b\r\n1,2\r\n\r\n3,4\r\n", True),  # BOM, CRLF, a blank line
        (b"a,b\n1, 4\n", True),  # a space
        (b"a,b\n1,nan\n", True),  # nan is missing
        (b'"a","b"\n"1","2"\n3, 4\n', False),  # quoted numbers: the csv module's
        (b"a,b\n1,nan\ninf,2\n", False),  # infinity: missing, unless a number was too large to hold
        (b"a,b\n1_000,2\n", False),  # float() reads it, numpy does not
        (b"a,b\n1,\n2,3\n", False),  # an empty field
        (b"a,b\n1,x\n", False),  # a word
        (b"a,b\n1,2,3\n", False),  # ragged: the general path's error
        (b"a\n \n2\n", False),  # a blank field in a one-column file is a missing value
        (b"a,a\n1,2\n", False),  # a repeated name: the general path's error
        (b"a,b\n", False),  # no rows: the general path's error
        (b"a\n#1\n2\n", False),  # '#' is not a comment
    ],
)
def test_the_numeric_fast_path_reads_exactly_what_the_csv_module_reads(monkeypatch, data, fast):
    import ml.tabular

    plain_numbers = ml.tabular._plain_numbers
    taken = []
    monkeypatch.setattr(
        ml.tabular, "_plain_numbers", lambda *a: taken.append(found := plain_numbers(*a)) or found
    )
    try:
        table = read_table(io.BytesIO(data), fmt="csv")
    except TabularError as exc:
        table = exc
    assert any(found is not None for found in taken) is fast
    monkeypatch.setattr(ml.tabular, "_plain_numbers", lambda *a: None)  # the csv module only
    try:
        expected = read_table(io.BytesIO(data), fmt="csv")
    except TabularError as exc:
        assert str(table) == str(exc)
        return
    assert_same_table(table, expected)


def test_an_unseekable_stream_is_read_like_a_file():
    data = b"n,word\n1,a\n2,b\n" + b"3,c\n" * 10
    assert_same_table(read_table(_Unseekable(data), fmt="csv"), read_table(io.BytesIO(data), fmt="csv"))


def test_a_column_with_text_after_a_block_of_numbers_is_read_again_as_categorical(monkeypatch):
    import ml.tabular

    monkeypatch.setattr(ml.tabular, "BLOCK_ROWS", 4)
    data = b"code,x\n" + b"".join(b"00%d,%d\n" % (i, i) for i in range(9)) + b"A7,9\n"
    table = read_table(io.BytesIO(data), fmt="csv")
    assert table.kinds == {"code": "categorical", "x": "numeric"}
    assert table.categorical["code"].tolist()[:2] == ["000", "001"]  # as written, not 0.0 and 1.0
    assert table.categorical["code"].tolist()[-1] == "A7"
    assert table.numeric["x"].tolist() == list(range(10))


def test_json_keys_first_seen_in_a_later_block_are_missing_before_it(monkeypatch):
    import ml.tabular

    monkeypatch.setattr(ml.tabular, "BLOCK_ROWS", 2)
    lines = [b'{"a": 1}', b'{"a": 2}', b'{"a": 3, "b": "x"}', b'{"a": null, "c": 5}', b'{"b": "y"}']
    table = read_table(io.BytesIO(b"\n".join(lines)), fmt="jsonl")
    assert table.columns == ["a", "b", "c"]
    assert np.isnan(table.numeric["a"]).tolist() == [False, False, False, True, True]
    assert table.categorical["b"].tolist() == [None, None, "x", None, "y"]
    assert np.isnan(table.numeric["c"]).tolist() == [True, True, True, False, True]
    assert table.head[0] == ["1", None, None] and table.head[2] == ["3", "x", None]


class _CountingFile(io.BytesIO):
    """A file that counts the bytes read from it."""

    bytes_read = 0

    def __next__(self) -> bytes:
        line = super().__next__()
        self.bytes_read += len(line)
        return line

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data


def _text_after_numbers(fmt: str, columns: int, rows: int) -> bytes:
    """Every column holds numbers spelled so that floats would lose their spelling, then one word."""
    names = [f"c{j}" for j in range(columns)]
    values = [[f"{i}.{j}0" for j in range(columns)] for i in range(rows)] + [
        [f"w{j}" for j in range(columns)]
    ]
    if fmt == "csv":
        return "\n".join(",".join(row) for row in [names, *values]).encode() + b"\n"
    return "".join(json.dumps(dict(zip(names, row, strict=True))) + "\n" for row in values).encode()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_columns_with_text_after_a_block_of_numbers_are_read_again_once_for_all(monkeypatch, fmt):
    import ml.tabular

    data = _text_after_numbers(fmt, columns=30, rows=40)
    whole = read_table(io.BytesIO(data), fmt=fmt)  # one block: each column is text from the start
    monkeypatch.setattr(ml.tabular, "BLOCK_ROWS", 8)
    counting = _CountingFile(data)
    table = read_table(counting, fmt=fmt)
    assert counting.bytes_read <= 2 * len(data), "30 columns turned to text, the file was read at most twice"
    assert_same_table(table, whole)
    assert table.kinds == {f"c{j}": "categorical" for j in range(30)}
    assert table.categorical["c3"].tolist()[:2] == ["0.30", "1.30"], "as written, not 0.3"
    assert table.categorical["c3"].tolist()[-1] == "w3"


def test_a_file_with_no_text_after_numbers_is_read_once(monkeypatch):
    import ml.tabular

    monkeypatch.setattr(ml.tabular, "BLOCK_ROWS", 8)
    data = b"a,b,c\n" + b"".join(b"%d,%d.5,x%d\n" % (i, i, i % 3) for i in range(50)) + b"1,,y\n"
    counting = _CountingFile(data)
    table = read_table(counting, fmt="csv")
    assert counting.bytes_read == len(data)
    assert table.kinds == {"a": "numeric", "b": "numeric", "c": "categorical"} and table.n_rows == 51


@pytest.mark.parametrize(
    ("fmt", "data", "message"),
    [
        ("csv", b"a,b\n1,2\n1e400,3\n", 'column "a", row 2: the number 1e400 is too large'),
        (
            "csv",
            b"a,b\n1,2\n3,-" + b"9" * 400 + b"\n",
            'column "b", row 2: the number -99999999999… (401 characters)',
        ),
        ("jsonl", b'{"a": 1}\n{"a": 1' + b"0" * 400 + b"}\n", 'column "a", row 2: the number 100000000000…'),
        ("jsonl", b'{"a": 1}\n{"a": ' + b"7" * 5000 + b"}\n", 'column "a", row 2: the number 777777777777…'),
        ("jsonl", b'{"a": 1}\n{"a": 2}\n{"a": -1e999}\n', 'column "a", row 3: a number is too large'),
    ],
)
def test_a_number_too_large_for_a_float_is_refused_with_its_column_and_row(fmt, data, message):
    with pytest.raises(TabularError) as caught:
        read_table(io.BytesIO(data), fmt=fmt)
    assert message in str(caught.value)
    assert "±1.8e308" in str(caught.value)


def test_a_huge_integer_in_a_text_column_is_kept_as_written():
    big = "1" + "0" * 400
    data = f'{{"id": {big}}}\n{{"id": "x"}}\n{{"id": {"9" * 5000}}}\n'.encode()
    table = read_table(io.BytesIO(data), fmt="jsonl")
    assert table.categorical["id"].tolist() == [big, "x", "9" * 5000]


@pytest.mark.parametrize(
    ("fmt", "data"),
    [
        ("csv", b"a\n1\ninf\n-Infinity\nnan\n2\n"),
        ("jsonl", b'{"a": 1}\n{"a": Infinity}\n{"a": -Infinity}\n{"a": NaN}\n{"a": 2}\n'),
    ],
)
def test_written_infinities_and_nan_count_as_missing(fmt, data):
    table = read_table(io.BytesIO(data), fmt=fmt)
    assert np.isnan(table.numeric["a"]).tolist() == [False, True, True, True, False]


@pytest.mark.parametrize(
    ("values", "mean", "std"),
    [
        ([1e200, -1e200] * 10, 0.0, 1.0259783520851542e200),  # the squares overflow a float64
        ([1e308] * 20, 1e308, 0.0),  # the sum overflows
        ([1.7e308, -1.7e308] * 10, 0.0, 1.7441631985447618e308),
        ([1.7e308, -1.7e308] * 3, 0.0, None),  # the standard deviation itself is beyond a float64
    ],
)
def test_statistics_of_numbers_near_the_float_limits_are_finite_or_none(values, mean, std):
    data = ("a\n" + "".join(f"{v!r}\n" for v in values)).encode()
    stats = column_stats(read_table(io.BytesIO(data), fmt="csv"), min_count=1)
    json.dumps(stats, allow_nan=False)
    (column,) = stats["columns"]
    assert column["min"] == min(values) and column["max"] == max(values)
    assert column["mean"] == pytest.approx(mean)
    assert column["std"] == (None if std is None else pytest.approx(std, rel=1e-9))
