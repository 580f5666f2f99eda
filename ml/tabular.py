"""Uploaded tables (CSV or JSON Lines) read into numpy columns, and aggregate-only statistics about them.

pandas is not a dependency: numpy's C reader (a CSV of numbers only) or the stdlib `csv`/`json` readers, a block
of rows at a time, feed a small column store (`Table`).
"""

import csv
import itertools
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, Literal

import numpy as np

Progress = Callable[[float, str], None]
Source = str | os.PathLike[str] | IO[bytes] | IO[str]

# Compared after strip() and lower(); "nan" would parse as a float anyway, the rest would not.
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})
# A written infinity is missing too; one that a number too large to hold became (1e400) is refused.
INFINITY_TOKENS = frozenset({"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})
_PROGRESS_EVERY = 50_000
_HUGE = 1e150  # a number whose square could overflow a float64


class TabularError(ValueError):
    """A table that cannot be read or analysed; the message is meant for the user who uploaded it."""


@dataclass
class Categorical:
    """A text column as integer codes into `levels` (first-seen order); -1 marks a missing value."""

    codes: np.ndarray  # int32, one per row
    levels: list[str]

    @classmethod
    def from_values(cls, values: Iterable[str | None]) -> "Categorical":
        code_of: dict[str, int] = {}
        return cls(codes=_encode(values, code_of), levels=list(code_of))

    def counts(self) -> np.ndarray:
        """Rows per level."""
        return np.bincount(self.codes[self.codes >= 0], minlength=len(self.levels))

    def tolist(self) -> list[str | None]:
        levels = self.levels
        return [None if code < 0 else levels[code] for code in self.codes.tolist()]


def _encode(values: Iterable[str | None], code_of: dict[str, int]) -> np.ndarray:
    """int32 codes of the values, adding unseen ones to `code_of` in first-seen order; None is -1."""
    return np.fromiter(
        (-1 if v is None else code_of.setdefault(v, len(code_of)) for v in values), dtype=np.int32
    )


@dataclass
class Table:
    """Columns in file order; each is in exactly one of `numeric` (float64, nan = missing) or `categorical`."""

    columns: list[str]
    numeric: dict[str, np.ndarray]
    categorical: dict[str, Categorical]
    n_rows: int
    truncated: bool = False  # stopped at `max_rows` before the end of the file
    head: list[list[str | None]] = field(default_factory=list)  # the first rows as written in the file
    kinds: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.kinds = {c: ("numeric" if c in self.numeric else "categorical") for c in self.columns}


HEAD_ROWS = 10
BLOCK_ROWS = 65_536  # rows parsed as text before they are converted to typed columns
_COLUMNS_FORMAT = 1


def table_save(table: Table, fileobj: IO[bytes]) -> None:
    """Write the parsed columns as an uncompressed .npz (no pickles), so they are parsed only once.

    Numeric columns are one column-major float64 matrix, so each column loads as a contiguous array;
    categorical columns are one int32 matrix of codes, with their levels in the JSON metadata.
    """
    numeric_names = [c for c in table.columns if c in table.numeric]
    categorical_names = [c for c in table.columns if c in table.categorical]
    numeric = np.empty((table.n_rows, len(numeric_names)), dtype=np.float64, order="F")
    for j, name in enumerate(numeric_names):
        numeric[:, j] = table.numeric[name]
    codes = np.empty((table.n_rows, len(categorical_names)), dtype=np.int32, order="F")
    for j, name in enumerate(categorical_names):
        codes[:, j] = table.categorical[name].codes
    meta = {
        "format": _COLUMNS_FORMAT,
        "columns": table.columns,
        "numeric": numeric_names,
        "levels": {name: table.categorical[name].levels for name in categorical_names},
        "n_rows": table.n_rows,
        "truncated": table.truncated,
        "head": table.head,
    }
    blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(fileobj, numeric=numeric, codes=codes, meta=blob)


def table_load(fileobj: IO[bytes] | str | os.PathLike[str]) -> Table:
    """The `Table` that `table_save` wrote."""
    with np.load(fileobj, allow_pickle=False) as data:
        meta = json.loads(data["meta"].tobytes())
        if meta.get("format") != _COLUMNS_FORMAT:
            raise TabularError(f"unknown parsed-columns format {meta.get('format')!r}")
        numeric, codes = data["numeric"], data["codes"]
    levels = meta["levels"]
    return Table(
        columns=meta["columns"],
        numeric={name: numeric[:, j] for j, name in enumerate(meta["numeric"])},
        categorical={
            name: Categorical(codes=codes[:, j], levels=levels[name]) for j, name in enumerate(levels)
        },
        n_rows=meta["n_rows"],
        truncated=meta["truncated"],
        head=meta["head"],
    )


def read_table(
    source: Source,
    *,
    fmt: Literal["csv", "jsonl"],
    max_rows: int | None = None,
    progress: Progress | None = None,
    max_columns: int | None = None,
    max_cells: int | None = None,
) -> Table:
    """Read a CSV (with a header row) or JSON Lines file into a `Table`, inferring numeric columns. With
    `max_columns` or `max_cells` (rows times columns: a JSON line without a key still costs a cell in every column),
    a file past either is refused (TabularError naming the limit) as soon as it is seen, before it is held.

    Column types are decided a block of rows at a time. A column found to hold text after a block of numbers
    (whose spelling is gone) is noted and the reading goes on to the end, to find every such column; the file
    is then read once more with all of them as text. So a file is read at most twice.
    """
    if fmt not in ("csv", "jsonl"):
        raise TabularError(f"unknown format {fmt!r}: expected 'csv' or 'jsonl'")
    if max_rows is not None and max_rows < 1:
        raise TabularError("max_rows must be at least 1")
    read = _read_csv if fmt == "csv" else _read_jsonl
    with _open(source) as (fh, total_bytes):
        start = fh.tell()
        builder = _Builder(set(), max_rows, max_columns, max_cells)
        read(_decoded_lines(fh, total_bytes, progress), builder)
        if builder.turned:
            fh.seek(start)
            if progress is not None:
                progress(0.0, f"reading again: {len(builder.turned)} column(s) hold text after numbers")
            builder = _Builder(builder.turned, max_rows, max_columns, max_cells)
            read(_decoded_lines(fh, total_bytes, progress), builder)
        table = builder.table()
    if progress is not None:
        progress(1.0, f"read {table.n_rows} rows and {len(table.columns)} columns")
    return table


class _Builder:
    """Typed columns built a block of rows at a time, so a file's strings are never all in memory at once."""

    def __init__(
        self, text_columns: set[str], max_rows: int | None, max_columns: int | None = None,
        max_cells: int | None = None,
    ) -> None:  # fmt: skip
        self.forced = text_columns  # columns known to hold text after numbers, from the first reading
        self.turned: set[str] = set()  # columns found to hold text after numbers in this reading
        self.max_rows = max_rows
        self.max_columns, self.max_cells = max_columns, max_cells
        self.truncated = False  # stopped at `max_rows` before the end of the file
        self.blocks: dict[str, list[np.ndarray]] = {}  # float64 blocks, or int32 codes once categorical
        self.numeric: dict[str, bool] = {}
        self.seen_number: dict[str, bool] = {}
        self.code_of: dict[str, dict[str, int]] = {}
        # column -> (row, value) of its first number too large for a float64
        self.too_large: dict[str, tuple[int, Any]] = {}
        self.n_rows = 0
        self.head: list[list[str | None]] = []

    def room(self, n: int) -> int:
        """How many of the next `n` rows fit under `max_rows`; marks the table truncated if not all do."""
        if self.max_rows is None or self.n_rows + n <= self.max_rows:
            return n
        self.truncated = True
        return self.max_rows - self.n_rows

    def check_shape(self, rows: int, columns: int) -> None:
        """TabularError when `rows` rows of `columns` columns would pass `max_columns` or `max_cells`."""
        if self.max_columns is not None and columns > self.max_columns:
            raise TabularError(f"the file has more than {self.max_columns:,} columns")
        if self.max_cells is not None and rows * columns > self.max_cells:
            raise TabularError(
                f"the file holds more than {self.max_cells:,} values (rows times columns; a JSON line without a key "
                "still has a value, missing, in its column)"
            )

    def takes_numbers(self, columns: list[str]) -> bool:
        """Whether a block that is all numbers can go in as a matrix: every column is still numeric."""
        return not self.turned and all(self.numeric.get(c, c not in self.forced) for c in columns)

    def _start(self, name: str) -> None:
        # A JSON key first seen now is missing in every earlier row.
        self.numeric[name] = name not in self.forced
        self.seen_number[name] = False
        self.code_of[name] = {}
        self.blocks[name] = [self._missing(name, self.n_rows)]

    def _add_head(self, rows: Iterable[list[Any]]) -> None:
        if len(self.head) < HEAD_ROWS:
            wanted = HEAD_ROWS - len(self.head)
            self.head += [
                [None if v is None else str(v) for v in row] for row in itertools.islice(rows, wanted)
            ]

    def add_numbers(self, columns: list[str], matrix: np.ndarray, head: list[list[str]]) -> None:
        """A block of finite numbers (nan = missing), one column of `matrix` per name in `columns`."""
        if matrix.shape[0] == 0:
            return
        self._add_head(iter(head[: matrix.shape[0]]))
        for j, name in enumerate(columns):
            if name not in self.blocks:
                self._start(name)
            numbers = np.ascontiguousarray(matrix[:, j])
            self.seen_number[name] |= bool((~np.isnan(numbers)).any())
            self.blocks[name].append(numbers)
        self.n_rows += matrix.shape[0]

    def add(self, columns: list[str], raw: list[list[Any]]) -> None:
        """One block: `raw[j]` holds the values of `columns[j]`, all of one length."""
        n = len(raw[0]) if raw else 0
        if n == 0:
            return
        self._add_head(zip(*(values[:HEAD_ROWS] for values in raw), strict=True))
        for name, values in zip(columns, raw, strict=True):
            if name not in self.blocks:
                self._start(name)
            if name in self.turned or (self.turned and not self.numeric[name]):
                continue  # this reading is only looking for more columns that turn; the next one keeps them
            if self.numeric[name]:
                parsed = _as_numeric(values)
                if parsed is not None:
                    numbers, too_large = parsed
                    if too_large is not None and name not in self.too_large:
                        self.too_large[name] = (self.n_rows + too_large + 1, values[too_large])
                    self.seen_number[name] |= too_large is not None or bool((~np.isnan(numbers)).any())
                    self.blocks[name].append(numbers)
                    continue
                if self.seen_number[name]:
                    self.turned.add(name)
                    self.blocks[name] = []
                    continue
                # Every earlier value was missing: nothing is lost by switching now.
                self.numeric[name] = False
                self.blocks[name] = [self._missing(name, self.n_rows)]
            self.blocks[name].append(_encode(map(_as_category, values), self.code_of[name]))
        self.n_rows += n

    def _missing(self, name: str, n: int) -> np.ndarray:
        return np.full(n, math.nan) if self.numeric[name] else np.full(n, -1, dtype=np.int32)

    def table(self) -> Table:
        if self.turned:
            raise RuntimeError("a column turned to text on the second reading")  # read_table prevents this
        if self.n_rows == 0:
            raise TabularError("the file has no data rows")
        for name in self.blocks:
            if self.numeric[name] and name in self.too_large:
                row, value = self.too_large[name]
                raise TabularError(_too_large_message(name, row, value))
        joined = {name: np.concatenate(blocks) for name, blocks in self.blocks.items()}
        return Table(
            columns=list(self.blocks),
            numeric={name: a for name, a in joined.items() if self.numeric[name]},
            categorical={
                name: Categorical(codes=a, levels=list(self.code_of[name]))
                for name, a in joined.items()
                if not self.numeric[name]
            },
            n_rows=self.n_rows,
            truncated=self.truncated,
            # JSON rows read before a key first appeared lack its column.
            head=[row + [None] * (len(self.blocks) - len(row)) for row in self.head],
        )


def _too_large_message(name: str, row: int, value: Any) -> str:
    text = value.strip() if isinstance(value, str) else str(value) if isinstance(value, int) else ""
    if len(text) > 24:
        text = f"{text[:12]}… ({len(text)} characters)"
    number = f"the number {text}" if text else "a number"
    return (
        f'column "{name}", row {row}: {number} is too large; a numeric column holds numbers up to about '
        "±1.8e308. Write it smaller, or leave it out"
    )


@contextmanager
def _open(source: Source) -> Iterator[tuple[IO[Any], int | None]]:
    """The file to read, and its remaining size in bytes when it can be known (for progress)."""
    if isinstance(source, str | os.PathLike):
        try:
            fh = open(source, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise TabularError(f"cannot open the file: {exc.strerror}") from None
        try:
            yield fh, os.fstat(fh.fileno()).st_size
        finally:
            fh.close()
        return
    try:
        here = source.tell()
        size = source.seek(0, os.SEEK_END) - here
        source.seek(here)
    except (AttributeError, OSError, ValueError):
        # Not seekable: spooled to a temporary file, since a column's type may need a second reading.
        with tempfile.TemporaryFile() as spool:
            while chunk := source.read(1 << 20):
                spool.write(chunk if isinstance(chunk, bytes) else chunk.encode("utf-8"))
            size = spool.tell()
            spool.seek(0)
            yield spool, size
        return
    yield source, size


def _decoded_lines(fh: Iterable[Any], total_bytes: int | None, progress: Progress | None) -> Iterator[str]:
    # Decoding line by line is exact for UTF-8 (no multi-byte sequence contains b"\n") and lets the error
    # name the line.
    done = 0
    for number, raw in enumerate(fh, start=1):
        if isinstance(raw, bytes):
            done += len(raw)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise TabularError(
                    f"the file is not UTF-8 text: undecodable byte on line {number}, "
                    f"position {exc.start + 1}; save it as UTF-8 and upload it again"
                ) from None
        else:
            text = raw
            done += len(raw)
        if number == 1:
            text = text.removeprefix("\ufeff")
        if progress is not None and number % _PROGRESS_EVERY == 0:
            fraction = min(done / total_bytes, 0.99) if total_bytes else 0.0
            progress(fraction, f"read {number} lines")
        yield text


def _read_csv(lines: Iterator[str], builder: _Builder) -> None:
    """Feed the CSV's rows to `builder` a block of lines at a time: a block of plain numbers through numpy's C
    reader (about 3 times faster), any other through the `csv` module."""
    # strict=True turns stray quotes into errors instead of silently merging fields.
    reader = csv.reader(lines, strict=True)
    try:
        header = next((row for row in reader if row), None)
    except csv.Error as exc:
        raise TabularError(f"malformed CSV on line {reader.line_num}: {exc}") from None
    if header is None:
        raise TabularError("the file is empty: expected a header row and at least one data row")
    columns = _header_names(header, reader.line_num)
    builder.check_shape(1, len(columns))
    before = reader.line_num  # lines read before the block
    while not builder.truncated:
        block = list(itertools.islice(lines, BLOCK_ROWS))
        if not block:
            return
        builder.check_shape(builder.n_rows + len(block), len(columns))
        numbers = _plain_numbers(block, len(columns)) if builder.takes_numbers(columns) else None
        if numbers is None:
            before += _read_csv_block(block, lines, before, columns, builder)
            continue
        matrix, head = numbers
        builder.add_numbers(columns, matrix[: builder.room(matrix.shape[0])], head)
        before += len(block)


def _plain_numbers(block: list[str], n_columns: int) -> tuple[np.ndarray, list[list[str]]] | None:
    """The block's rows as a float64 matrix and its first rows as written, when every field is a finite number
    or nan and no field is quoted (so each line is one row); None otherwise."""
    rows = [line for line in block if line.strip("\r\n")]
    if not rows or any('"' in line for line in rows):
        return None
    try:
        matrix = np.loadtxt(rows, delimiter=",", comments=None, dtype=np.float64, ndmin=2)
    except ValueError:
        return None
    # numpy's reader accepts a subset of what float() accepts, with the same values; infinities are left
    # to the general path, which tells an overflowing number from a written "inf".
    if matrix.shape != (len(rows), n_columns) or np.isinf(matrix).any():
        return None
    return matrix, list(csv.reader(rows[:HEAD_ROWS]))


def _read_csv_block(
    block: list[str], lines: Iterator[str], before: int, columns: list[str], builder: _Builder
) -> int:
    """Feed the rows of `block` (and the lines that a quoted field carries on into) to `builder` through the
    `csv` module; the number of lines read."""
    taken = 0

    def feed() -> Iterator[str]:
        nonlocal taken
        for line in itertools.chain(block, lines):
            taken += 1
            yield line

    reader = csv.reader(feed(), strict=True)
    raw: list[list[Any]] = [[] for _ in columns]
    n = 0
    try:
        for row in reader:
            if row:
                if len(row) != len(columns):
                    raise TabularError(
                        f"line {before + reader.line_num} has {len(row)} fields but the header has "
                        f"{len(columns)}"
                    )
                if builder.room(n + 1) == n:
                    break
                for values, value in zip(raw, row, strict=True):
                    values.append(value)
                n += 1
            if taken >= len(block):
                break  # the block's last row is complete: the next block starts on the next line
    except csv.Error as exc:
        raise TabularError(f"malformed CSV on line {before + reader.line_num}: {exc}") from None
    builder.add(columns, raw)
    return taken


def _header_names(header: list[str], line: int) -> list[str]:
    names = [h.strip() or f"column_{i + 1}" for i, h in enumerate(header)]
    if all(h.strip() == "" for h in header):
        raise TabularError(f"line {line} should be a header row with column names but it is blank")
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise TabularError(f"the header repeats column name(s): {', '.join(duplicates)}")
    return names


def _read_jsonl(lines: Iterator[str], builder: _Builder) -> None:
    """Feed the objects' values to `builder` a block at a time.

    Keys may differ between lines: the columns are their union in first-seen order, absent = missing."""
    index: dict[str, int] = {}
    raw: list[list[Any]] = []
    n = 0  # rows in this block
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if builder.room(n + 1) == n:  # `max_rows` reached
            break
        obj = _json_object(line, number)
        if builder.max_columns is not None or builder.max_cells is not None:
            builder.check_shape(builder.n_rows + n + 1, len(raw) + sum(1 for key in obj if key not in index))
        for key, value in obj.items():
            column = index.get(key)
            if column is None:
                column = index[key] = len(raw)
                raw.append([None] * n)
            raw[column].append(_json_scalar(value))
        n += 1
        for values in raw:
            if len(values) < n:
                values.append(None)
        if n == BLOCK_ROWS:
            builder.add(list(index), raw)
            raw, n = [[] for _ in raw], 0
    if builder.n_rows + n == 0:
        raise TabularError("the file has no data rows")
    if not raw:
        raise TabularError("the JSON objects have no keys: there are no columns")
    builder.add(list(index), raw)


def _json_constant(name: str) -> str | None:
    # NaN is missing; a written Infinity stays a word, counted as missing in a numeric column, so that an
    # infinity from a number too large to hold (1e400) is told apart.
    return None if name == "NaN" else name


def _json_object(line: str, number: int) -> dict:
    try:
        obj = json.loads(line, parse_constant=_json_constant)
    except json.JSONDecodeError as exc:
        raise TabularError(f"line {number} is not valid JSON: {exc.msg} (column {exc.colno})") from None
    except ValueError:
        # An integer longer than Python converts (4,300 digits): read its digits as text.
        obj = json.loads(line, parse_constant=_json_constant, parse_int=str)
    if not isinstance(obj, dict):
        raise TabularError(f"line {number} is a JSON {type(obj).__name__}, expected an object")
    return obj


def _json_scalar(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"  # a flag is a category, not the numbers 0 and 1
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return value


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in MISSING_TOKENS)


def _as_numeric(values: list[Any]) -> tuple[np.ndarray, int | None] | None:
    """The column as float64 if every non-missing value is a number, else None; with the index of the first
    number too large for a float64, if any. Infinities and too large numbers are nan in the array."""
    try:
        out = np.array(values, dtype=np.float64)  # fast path: no missing tokens numpy cannot parse
    except (ValueError, TypeError, OverflowError):
        out = np.empty(len(values), dtype=np.float64)
        for i, value in enumerate(values):
            if _is_missing(value):
                out[i] = math.nan
                continue
            try:
                out[i] = float(value)
            except OverflowError:  # an integer beyond float64
                out[i] = math.inf
            except (ValueError, TypeError):
                return None
    too_large = None
    non_finite = np.flatnonzero(~np.isfinite(out))
    for i in non_finite.tolist():  # usually none
        value = values[i]
        written = (
            _is_missing(value)
            or (isinstance(value, str) and value.strip().lower() in INFINITY_TOKENS)
            or (isinstance(value, float) and math.isnan(value))
        )
        if not written:
            too_large = i
            break
    # Infinities cannot enter means or distances; they are counted as missing.
    out[non_finite] = math.nan
    return out, too_large


def _as_category(value: Any) -> str | None:
    return None if _is_missing(value) else str(value).strip()


def column_stats(table: Table, *, min_count: int = 5) -> dict:
    """Per-column aggregates; nothing that describes fewer than `min_count` rows is reported.

    For that reason `min` and `max` are the `min_count`-th smallest and largest values (exact only when
    `min_count` is 1): the true extremes would single out one row.
    """
    min_count = max(int(min_count), 1)
    columns = []
    for name in table.columns:
        if name in table.numeric:
            columns.append(_numeric_stats(name, table.numeric[name], min_count))
        else:
            columns.append(_categorical_stats(name, table.categorical[name], min_count))
    return {
        "rows": table.n_rows,
        "n_columns": len(table.columns),
        "truncated": table.truncated,
        "min_count": min_count,
        "columns": columns,
    }


def _numeric_stats(name: str, values: np.ndarray, min_count: int) -> dict:
    present = values[~np.isnan(values)]
    n = int(present.size)
    out: dict[str, Any] = {"name": name, "type": "numeric", "count": n, "missing": int(values.size - n)}
    if n < min_count:
        out.update(min=None, max=None, mean=None, std=None, suppressed=n > 0)
        return out
    low = np.partition(present, min_count - 1)[min_count - 1]
    high = np.partition(present, n - min_count)[n - min_count]
    mean, std = moments(present, ddof=1) if n > 1 else (float(present[0]), 0.0)
    out.update(
        min=_round(low),
        max=_round(high),
        mean=_round(mean),
        std=_round(std),  # None only when it exceeds what a float64 holds (values spread over ±1e308)
        suppressed=False,
        histogram=_histogram(present, float(low), float(high), min_count),
    )
    return out


HISTOGRAM_BINS = 12


def _histogram(values: np.ndarray, low: float, high: float, min_count: int) -> dict | None:
    """Rows per equal-width bin between the released `low` and `high` (the `min_count`-th smallest and largest
    values); the fewer than `min_count` rows beyond them are counted in the end bins, and a bin of fewer than
    `min_count` rows is shown as empty. None when the range is a single value or wider than a float64."""
    if not math.isfinite(high - low) or high <= low:
        return None
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    counts, _ = np.histogram(np.clip(values, low, high), bins=edges)
    hidden = (counts > 0) & (counts < min_count)
    counts[hidden] = 0
    return {
        "edges": [float(f"{e:.6g}") for e in edges],
        "counts": counts.tolist(),
        "suppressed": int(hidden.sum()),
    }


def moments(values: np.ndarray, *, ddof: int = 0) -> tuple[float, float]:
    """Mean and standard deviation of finite values, without overflow on the way: squares of numbers beyond
    1e150 would overflow, so such values are scaled into [-1, 1] first. The standard deviation is inf only
    when it truly exceeds a float64."""
    scale = float(np.abs(values).max()) if values.size else 0.0
    if scale <= _HUGE:
        return float(values.mean()), float(values.std(ddof=ddof))
    scaled = values / scale
    return float(scaled.mean()) * scale, float(scaled.std(ddof=ddof)) * scale


def _categorical_stats(name: str, column: Categorical, min_count: int) -> dict:
    counts = column.counts()
    present = int(counts.sum())
    # Most common first, ties in first-seen order (as Counter.most_common), present levels only.
    top = [i for i in np.argsort(-counts, kind="stable")[:5] if counts[i] > 0]
    shown = [{"value": column.levels[i], "count": int(counts[i])} for i in top if counts[i] >= min_count]
    return {
        "name": name,
        "type": "categorical",
        "count": present,
        "missing": int(column.codes.size) - present,
        "distinct": int(np.count_nonzero(counts)),
        "top": shown,
        "top_suppressed": len(top) - len(shown),
    }


def _round(x: Any, digits: int = 6) -> float | None:
    """A JSON-safe float: rounded, and None for nan or infinity (which JSON cannot carry)."""
    value = float(x)
    return round(value, digits) if math.isfinite(value) else None
