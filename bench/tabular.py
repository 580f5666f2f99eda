"""Reading a table whose numeric columns turn to text after a block of numbers (`ml.tabular`); one JSON line.

Data: BENCH_COLUMNS (120) columns of BENCH_ROWS (65,536) random numbers written with four decimals, and one
row of words: last (every column turns to text after a block of numbers, so the reader must read the file
again to keep the numbers' spelling) or first (every column is text from its first block: one reading). The
same bytes in another order, in a temporary CSV file.

Timed: what the statistics job does with the file, `read_table` then `column_stats`, BENCH_REPEATS (3)
interleaved pairs, medians; the ratio text-last / text-first (goal <= 2; it was 151 s / 3.3 s = 46 when each
turning column restarted the reading). Also the bytes read over the file's size, counted on the file object.
Progress goes to stderr.
"""

import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS = int(os.environ.get("BENCH_ROWS", 65_536))
COLUMNS = int(os.environ.get("BENCH_COLUMNS", 120))
REPEATS = int(os.environ.get("BENCH_REPEATS", 3))
GOAL = 2.0

sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from ml.tabular import column_stats, read_table  # noqa: E402


class CountingFile(io.FileIO):
    """A file that counts the bytes read from it."""

    bytes_read = 0

    def readinto(self, buffer) -> int:
        n = super().readinto(buffer)
        self.bytes_read += n or 0
        return n


def write(path: str, numbers: bytes, header: bytes, words: bytes, *, text_last: bool) -> None:
    with open(path, "wb") as fh:
        fh.write(header)
        if not text_last:
            fh.write(words)
        fh.write(numbers)
        if text_last:
            fh.write(words)


def statistics_job(path: str) -> tuple[float, float]:
    """Seconds for reading and the statistics, and the bytes read over the file's size."""
    raw = CountingFile(path, "rb")
    with io.BufferedReader(raw, buffer_size=1 << 20) as fh:
        start = time.perf_counter()
        table = read_table(fh, fmt="csv")
        stats = column_stats(table)
        elapsed = time.perf_counter() - start
    assert stats["rows"] == ROWS + 1 and all(c["type"] == "categorical" for c in stats["columns"])
    return elapsed, raw.bytes_read / os.path.getsize(path)


def main() -> None:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    np.savetxt(buffer, rng.normal(0, 100, (ROWS, COLUMNS)), fmt="%.4f", delimiter=",")
    numbers = buffer.getvalue()
    header = (",".join(f"c{j}" for j in range(COLUMNS)) + "\n").encode()
    words = (",".join(f"word{j}" for j in range(COLUMNS)) + "\n").encode()
    times: dict[str, list[float]] = {"text_last": [], "text_first": []}
    reads: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name in times:
            paths[name] = os.path.join(tmp, f"{name}.csv")
            write(paths[name], numbers, header, words, text_last=name == "text_last")
        size = os.path.getsize(paths["text_last"])
        for repeat in range(REPEATS):
            for name in times:
                elapsed, reads[name] = statistics_job(paths[name])
                times[name].append(elapsed)
                print(f"{repeat + 1}/{REPEATS} {name}: {elapsed:.2f} s", file=sys.stderr)
    last, first = statistics.median(times["text_last"]), statistics.median(times["text_first"])
    print(
        json.dumps(
            {
                "bench": "tabular_text_after_numbers",
                "rows": ROWS,
                "columns": COLUMNS,
                "file_mb": round(size / 1e6, 1),
                "repeats": REPEATS,
                "text_last_s": round(last, 2),
                "text_first_s": round(first, 2),
                "ratio": round(last / first, 2),
                "goal_ratio": GOAL,
                "text_last_reads": round(reads["text_last"], 2),
                "text_first_reads": round(reads["text_first"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
