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
_PROGRESS_EVERY = 50_000


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
) -> Table:
    """Read a CSV (with a header row) or JSON Lines file into a `Table`, inferring numeric columns."""
    if fmt not in ("csv", "jsonl"):
        raise TabularError(f"unknown format {fmt!r}: expected 'csv' or 'jsonl'")
    if max_rows is not None and max_rows < 1:
        raise TabularError("max_rows must be at least 1")
    with _open(source) as (fh, total_bytes):
        table = _read_numeric_csv(fh, total_bytes, progress) if fmt == "csv" and max_rows is None else None
        if table is None:
            table = _read_general(fh, total_bytes, progress, fmt=fmt, max_rows=max_rows)
    if progress is not None:
        progress(1.0, f"read {table.n_rows} rows and {len(table.columns)} columns")
    return table


def _read_general(
    fh: IO[Any], total_bytes: int | None, progress: Progress | None, *, fmt: str, max_rows: int | None
) -> Table:
    """Any CSV or JSON Lines file. Column types are decided block by block; a column found to hold text after
    numbers were kept for it (their spelling gone) is read again, from the start, as categorical."""
    start, categorical = fh.tell(), set()
    while True:
        builder = _Builder(categorical)
        lines = _decoded_lines(fh, total_bytes, progress)
        try:
            truncated = (_read_csv if fmt == "csv" else _read_jsonl)(lines, max_rows, builder)
        except _TextAfterNumbers as exc:
            categorical.add(exc.column)
            fh.seek(start)
            continue
        return builder.table(truncated)


class _TextAfterNumbers(Exception):
    def __init__(self, column: str) -> None:
        self.column = column


class _Builder:
    """Typed columns built a block of rows at a time, so a file's strings are never all in memory at once."""

    def __init__(self, categorical: set[str]) -> None:
        self.forced = categorical  # columns known to be categorical from an earlier attempt
        self.blocks: dict[str, list[np.ndarray]] = {}  # float64 blocks, or int32 codes once categorical
        self.numeric: dict[str, bool] = {}
        self.seen_number: dict[str, bool] = {}
        self.code_of: dict[str, dict[str, int]] = {}
        self.n_rows = 0
        self.head: list[list[str | None]] = []

    def add(self, columns: list[str], raw: list[list[Any]]) -> None:
        """One block: `raw[j]` holds the values of `columns[j]`, all of one length."""
        n = len(raw[0]) if raw else 0
        if n == 0:
            return
        if len(self.head) < HEAD_ROWS:
            wanted = HEAD_ROWS - len(self.head)
            self.head += [
                [None if v is None else str(v) for v in row]
                for row in zip(*(values[:wanted] for values in raw), strict=True)
            ]
        for name, values in zip(columns, raw, strict=True):
            if name not in self.blocks:  # a JSON key first seen now: missing in every earlier row
                self.numeric[name] = name not in self.forced
                self.seen_number[name] = False
                self.code_of[name] = {}
                self.blocks[name] = [self._missing(name, self.n_rows)]
            if self.numeric[name]:
                numbers = _as_numeric(values)
                if numbers is not None:
                    self.seen_number[name] |= bool((~np.isnan(numbers)).any())
                    self.blocks[name].append(numbers)
                    continue
                if self.seen_number[name]:
                    raise _TextAfterNumbers(name)
                # Every earlier value was missing: nothing is lost by switching now.
                self.numeric[name] = False
                self.blocks[name] = [self._missing(name, self.n_rows)]
            self.blocks[name].append(_encode(map(_as_category, values), self.code_of[name]))
        self.n_rows += n

    def _missing(self, name: str, n: int) -> np.ndarray:
        return np.full(n, math.nan) if self.numeric[name] else np.full(n, -1, dtype=np.int32)

    def table(self, truncated: bool) -> Table:
        if self.n_rows == 0:
            raise TabularError("the file has no data rows")
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
            truncated=truncated,
            # JSON rows read before a key first appeared lack its column.
            head=[row + [None] * (len(self.blocks) - len(row)) for row in self.head],
        )


def _read_numeric_csv(fh: IO[Any], total_bytes: int | None, progress: Progress | None) -> Table | None:
    """A CSV of numbers only, none missing, parsed by numpy's C reader (about 3 times faster than the general
    path); None, with the file rewound, for anything else, which the general path then reads or explains."""
    start = fh.tell()
    lines = _decoded_lines(fh, total_bytes, progress)
    try:
        header_line = next(line for line in lines if line.strip())
        columns = _header_names(next(csv.reader([header_line], strict=True)), 1)
        first = list(itertools.islice(lines, HEAD_ROWS))
        head = [row for row in csv.reader(first, strict=True) if row]
        if not head:
            raise StopIteration  # no data rows: the general path says so
        matrix = np.loadtxt(
            itertools.chain(first, lines),
            delimiter=",",
            quotechar='"',
            comments=None,
            dtype=np.float64,
            ndmin=2,
        )
        if matrix.shape[1] != len(columns):
            raise ValueError("the rows do not match the header")
    except (StopIteration, TabularError, csv.Error, ValueError):
        fh.seek(start)
        return None
    matrix = np.asfortranarray(matrix)  # each column contiguous
    matrix[~np.isfinite(matrix)] = math.nan  # infinities count as missing, as on the general path
    return Table(
        columns=columns,
        numeric={name: matrix[:, j] for j, name in enumerate(columns)},
        categorical={},
        n_rows=matrix.shape[0],
        head=head,
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


def _read_csv(lines: Iterator[str], max_rows: int | None, builder: "_Builder") -> bool:
    """Feed the CSV's rows to `builder` a block at a time; True when `max_rows` cut the file short."""
    # strict=True turns stray quotes into errors instead of silently merging fields.
    reader = csv.reader(lines, strict=True)
    try:
        header = next((row for row in reader if row), None)
        if header is None:
            raise TabularError("the file is empty: expected a header row and at least one data row")
        columns = _header_names(header, reader.line_num)
        raw: list[list[Any]] = [[] for _ in columns]
        truncated = False
        n = 0
        for row in reader:
            if not row:
                continue  # blank line
            if len(row) != len(columns):
                raise TabularError(
                    f"line {reader.line_num} has {len(row)} fields but the header has {len(columns)}"
                )
            if max_rows is not None and n >= max_rows:
                truncated = True
                break
            for values, value in zip(raw, row, strict=True):
                values.append(value)
            n += 1
            if n % BLOCK_ROWS == 0:
                builder.add(columns, raw)
                raw = [[] for _ in columns]
    except csv.Error as exc:
        raise TabularError(f"malformed CSV on line {reader.line_num}: {exc}") from None
    builder.add(columns, raw)
    return truncated


def _header_names(header: list[str], line: int) -> list[str]:
    names = [h.strip() or f"column_{i + 1}" for i, h in enumerate(header)]
    if all(h.strip() == "" for h in header):
        raise TabularError(f"line {line} should be a header row with column names but it is blank")
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise TabularError(f"the header repeats column name(s): {', '.join(duplicates)}")
    return names


def _read_jsonl(lines: Iterator[str], max_rows: int | None, builder: "_Builder") -> bool:
    """Feed the objects' values to `builder` a block at a time; True when `max_rows` cut the file short.

    Keys may differ between lines: the columns are their union in first-seen order, absent = missing."""
    index: dict[str, int] = {}
    raw: list[list[Any]] = []
    n = 0  # rows in this block
    total = 0
    truncated = False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if max_rows is not None and total >= max_rows:
            truncated = True
            break
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TabularError(f"line {number} is not valid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise TabularError(f"line {number} is a JSON {type(obj).__name__}, expected an object")
        for key, value in obj.items():
            column = index.get(key)
            if column is None:
                column = index[key] = len(raw)
                raw.append([None] * n)
            raw[column].append(_json_scalar(value))
        n += 1
        total += 1
        for values in raw:
            if len(values) < n:
                values.append(None)
        if n == BLOCK_ROWS:
            builder.add(list(index), raw)
            raw, n = [[] for _ in raw], 0
    if total == 0:
        raise TabularError("the file has no data rows")
    if not raw:
        raise TabularError("the JSON objects have no keys: there are no columns")
    builder.add(list(index), raw)
    return truncated


def _json_scalar(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"  # a flag is a category, not the numbers 0 and 1
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return value


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in MISSING_TOKENS)


def _as_numeric(values: list[Any]) -> np.ndarray | None:
    """The column as float64 if every non-missing value parses as a float, else None."""
    try:
        out = np.array(values, dtype=np.float64)  # fast path: no missing tokens numpy cannot parse
    except (ValueError, TypeError):
        out = np.empty(len(values), dtype=np.float64)
        for i, value in enumerate(values):
            if _is_missing(value):
                out[i] = math.nan
                continue
            try:
                out[i] = float(value)
            except (ValueError, TypeError):
                return None
    # Infinities cannot enter means or distances; they are counted as missing.
    out[~np.isfinite(out)] = math.nan
    return out


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
    out.update(
        min=_round(low),
        max=_round(high),
        mean=_round(present.mean()),
        std=_round(present.std(ddof=1)) if n > 1 else 0.0,
        suppressed=False,
    )
    return out


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
