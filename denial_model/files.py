"""The one file layer: which formats a claim table comes in, how it is read, how any output
appears.

Every entry point (check, score, train, the Python API) reads through `read_table` or
`read_batches`, so they accept the same files: CSV, gzip-compressed CSV (`.csv.gz`) and
Parquet. CSV cells are read as text (validation decides what is a number or a date);
Arrow's reader handles a UTF-8 byte-order mark, CRLF line ends and quoted newlines.

A CSV row the parser cannot take (more or fewer fields than the header) or a cell that is
not UTF-8 does not fail the file: the row keeps its place as an empty row whose
`table.READ_PROBLEM` cell says what was wrong, and validation rejects it naming the row and
the column, so rows in = rows processed + rows rejected holds for damaged exports too.

Every writer (tables, scored batches, simulated histories, model artifacts, caches) goes
through `atomic_output`: the file is written under a hidden temporary name next to its
destination and renamed into place only when complete, so a failed or interrupted job
never leaves a file that could pass for a result, nor a temporary file behind (the
temporary name is fixed, so a job killed outright is cleaned by its rerun).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import os
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from denial_model.errors import ClaimTableError, ConfigError, OutputError
from denial_model.table import READ_PROBLEM, check_required_columns

__all__ = [
    "CHUNK_LINES",
    "TableWriter",
    "atomic_output",
    "default_rejects_path",
    "read_batches",
    "read_table",
    "refuse_overwriting_input",
    "table_format",
    "write_table",
]

# lines a batch job reads, scores and writes at a time: memory, not results. A 100,000-line
# chunk peaks at about 0.75 GB of working memory; 200,000-line chunks took 1.8 GB in all at
# 5M lines against 1.3 GB, for about the same speed (README, Performance)
CHUNK_LINES = 100_000
CSV_BLOCK_BYTES = 1 << 22  # Arrow's CSV parser block; longer rows grow it (`_CsvRows`)
_MAX_BLOCK_BYTES = 1 << 30
_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".txt": "csv", ".csv.gz": "csv.gz"}


def table_format(path: str | Path) -> str:
    """`parquet`, `csv` or `csv.gz` by the file name; anything else is refused, naming it."""
    name = Path(path).name.lower()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return _SUFFIXES[suffix]
    raise ClaimTableError(f"{path}: unknown format (use .csv, .csv.gz or .parquet)")


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on any failure
    (including KeyboardInterrupt and SystemExit) it is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise cannot_write(path, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def cannot_write(path: Path, exc: OSError) -> OutputError:
    """The one message for an output that failed: the file and the system's reason (full
    disk, read-only folder, file too large), not the library's wording."""
    if isinstance(exc, OutputError):
        return exc
    why = os.strerror(exc.errno) if exc.errno else str(exc).splitlines()[0]
    return OutputError(f"{path}: cannot write: {why}")


def _existing(path: str | Path) -> tuple[Path, str]:
    path = Path(path)
    fmt = table_format(path)
    if not path.exists():
        raise ClaimTableError(f"{path}: no such file")
    if path.is_dir() and fmt != "parquet":
        raise ClaimTableError(f"{path}: a folder (only a Parquet folder of part files is read as a table)")
    return path, fmt


def parquet_parts(path: Path) -> list[Path]:
    """A Parquet file, or the part files of a Parquet folder (Spark's output) in name order."""
    if not path.is_dir():
        return [path]
    parts = sorted(p for p in path.iterdir() if p.suffix == ".parquet" and not p.name.startswith((".", "_")))
    if not parts:
        raise ClaimTableError(f"{path}: a folder with no .parquet part files")
    return parts


def _parquet_file(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ClaimTableError(f"{path}: cannot read as parquet: {exc}") from None


def _csv_header(path: Path, fmt: str) -> list[str]:
    opener = gzip.open if fmt == "csv.gz" else open
    try:
        with opener(path, "rt", newline="", encoding="utf-8-sig", errors="replace") as f:
            header = next(csv.reader(f), None)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ClaimTableError(f"{path}: cannot read the header row: {exc}") from None
    if not header:
        raise ClaimTableError(f"{path}: empty file (no header row)")
    return header


def _header(path: Path, names: list) -> list:
    """The canonical header (`table.canonical_columns`), or one error naming the file."""
    try:
        return check_required_columns(names)
    except ClaimTableError as exc:
        raise ClaimTableError(f"{path}: {exc}") from None


def read_table(path: str | Path) -> pd.DataFrame:
    """The whole table as pandas (CSV cells as text, '' for empty; Parquet as stored), with
    the canonical header."""
    parts = [t.to_pandas() for t in read_batches(path, 1 << 24)]
    df = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
    if df[READ_PROBLEM].isna().all():  # kept only to carry a problem to `validate`
        df = df.drop(columns=READ_PROBLEM)
    return df


def read_batches(path: str | Path, chunk_lines: int) -> Iterator[pa.Table]:
    """The file as Arrow tables of `chunk_lines` rows (the last may be shorter), with the
    canonical header (known columns in their spec spelling).

    Parquet (a file, or a folder of part files in name order) is read by record batches;
    CSV by Arrow's streaming reader with every column as text, rebatched to `chunk_lines`.
    The format and the header are checked before the first
    batch, so an unusable file is refused up front with one message naming it; a file that
    turns out unreadable further on is refused naming it too, and no output appears."""
    path, fmt = _existing(path)
    if fmt == "parquet":
        parts = parquet_parts(path)
        files = [_parquet_file(f) for f in parts]
        names = _header(path, files[0].schema_arrow.names)
        for f, pf in zip(parts[1:], files[1:], strict=True):
            if pf.schema_arrow.names != files[0].schema_arrow.names:
                raise ClaimTableError(f"{f}: its columns differ from those of {parts[0].name}")
        batches = (
            _no_problems(pa.Table.from_batches([b]))
            for pf in files
            for b in pf.iter_batches(batch_size=chunk_lines)
        )
        return _renamed(
            path,
            fmt,
            batches,
            [*names, READ_PROBLEM],
            _no_problems(files[0].schema_arrow.empty_table()).schema,
        )
    header = _csv_header(path, fmt)
    names = _header(path, header)
    rows = _CsvRows(path, fmt, header)  # opens the file now: refused here when unusable
    batches = _rebatched(rows.tables(), chunk_lines, rows.schema)
    return _renamed(path, fmt, batches, [*names, READ_PROBLEM], rows.schema)


def _renamed(
    path: Path, fmt: str, batches: Iterator[pa.Table], names: list, schema: pa.Schema
) -> Iterator[pa.Table]:
    """The batches with the canonical names; a file with a header and no rows gives one
    empty table, so its columns are still known."""
    empty = True
    try:
        for table in batches:
            empty = False
            yield table.rename_columns(names)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ClaimTableError(f"{path}: cannot read as {fmt}: {exc}") from None
    if empty:
        yield schema.empty_table().rename_columns(names)


def _rebatched(tables: Iterator[pa.Table], chunk_lines: int, schema: pa.Schema) -> Iterator[pa.Table]:
    pending: list[pa.RecordBatch] = []
    held = 0
    for t in tables:
        pending.extend(t.to_batches())
        held += len(t)
        while held >= chunk_lines:
            table = pa.Table.from_batches(pending, schema=schema)
            yield table.slice(0, chunk_lines)
            rest = table.slice(chunk_lines)
            pending, held = rest.to_batches(), len(rest)
    if held:
        yield pa.Table.from_batches(pending, schema=schema)


def _no_problems(table: pa.Table) -> pa.Table:
    return table.append_column(READ_PROBLEM, pa.nulls(len(table), pa.string()))


class _BadRows:
    """Arrow's handler for CSV rows with the wrong number of fields: each is noted with its
    0-based position among the data rows (Arrow numbers rows from 1, the header being row 1,
    blank lines not counted) and skipped; `_with_bad_rows` puts it back in its place."""

    def __init__(self, fields: int):
        self.fields = fields
        self.pending: deque[tuple[int, str]] = deque()

    def __call__(self, row) -> str:
        self.pending.append(
            (
                row.number - 2,
                f"(whole row)\thas {row.actual_columns} fields where the header has {self.fields}",
            )
        )
        return "skip"

    def forget_before(self, start: int) -> None:
        """Drop rows already put back (noted again when the file is reopened)."""
        while self.pending and self.pending[0][0] < start:
            self.pending.popleft()

    def take_before(self, end: int) -> list[tuple[int, str]]:
        """The noted rows whose place is before `end` once they are put back (all, for None)."""
        taken: list[tuple[int, str]] = []
        while self.pending and self.pending[0][0] < end + len(taken):
            taken.append(self.pending.popleft())
        return taken


class _CsvRows:
    """A CSV file's rows as Arrow tables: every column as text, rows Arrow could not parse
    put back in place (`_BadRows`), cells that are not UTF-8 emptied and named
    (`_utf8_checked`), and a `READ_PROBLEM` column saying which rows are which.

    Arrow parses in blocks and refuses a row that straddles more than two; the reader is
    then reopened with blocks eight times larger (up to `_MAX_BLOCK_BYTES`) and the rows
    already produced are passed over, so a 5 MB cell is a row reject like any long cell."""

    def __init__(self, path: Path, fmt: str, header: list[str]):
        self.path, self.fmt, self.header = path, fmt, header
        self.block = CSV_BLOCK_BYTES
        self.bad_rows = _BadRows(len(header))
        self.reader = self._open()
        self.schema = self.reader.schema.append(pa.field(READ_PROBLEM, pa.string()))

    def _open(self) -> pa_csv.CSVStreamingReader:
        self.bad_rows.pending.clear()
        options = {
            "read_options": pa_csv.ReadOptions(
                block_size=self.block, use_threads=False
            ),  # one thread: rows numbered
            "parse_options": pa_csv.ParseOptions(newlines_in_values=True, invalid_row_handler=self.bad_rows),
            "convert_options": pa_csv.ConvertOptions(
                column_types={c: pa.string() for c in self.header},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                check_utf8=False,  # checked per cell by `_utf8_checked`
            ),
        }
        try:
            return pa_csv.open_csv(self.path, **options)
        except (pa.ArrowInvalid, OSError) as exc:
            if self._grown(exc):
                return self._open()
            raise ClaimTableError(f"{self.path}: cannot read as {self.fmt}: {exc}") from None

    def _grown(self, exc: Exception) -> bool:
        """A row longer than the parser's blocks: grow them (True) unless at the limit."""
        if "straddl" not in str(exc) or self.block >= _MAX_BLOCK_BYTES:
            return False
        self.block = min(self.block * 8, _MAX_BLOCK_BYTES)
        return True

    def tables(self) -> Iterator[pa.Table]:
        start = 0  # the data position of the next row to produce
        good = 0  # rows Arrow parsed and produced so far
        while True:
            skip = good  # after a reopen: rows produced already
            try:
                for batch in self.reader:
                    table = pa.Table.from_batches([batch])
                    if skip:
                        passed, skip = min(skip, len(table)), skip - min(skip, len(table))
                        table = table.slice(passed)
                    self.bad_rows.forget_before(start)
                    good += len(table)
                    table = _utf8_checked(table)
                    taken = self.bad_rows.take_before(start + len(table))
                    if taken:
                        table = _put_back(table, taken, start, self.schema)
                    start += len(table)
                    yield table
                break
            except pa.ArrowInvalid as exc:
                if not self._grown(exc):
                    raise
                self.reader = self._open()
        rest = self.bad_rows.take_before(1 << 62)
        if rest:
            yield _put_back(_no_problems(self.reader.schema.empty_table()), rest, start, self.schema)


def _put_back(table: pa.Table, rows: list[tuple[int, str]], start: int, schema: pa.Schema) -> pa.Table:
    n, k = len(table), len(rows)
    blank = {f.name: pa.array([""] * k, pa.string()) for f in schema if f.name != READ_PROBLEM}
    blank[READ_PROBLEM] = pa.array([why for _, why in rows], pa.string())
    placed = np.zeros(n + k, dtype=bool)
    placed[np.array([pos for pos, _ in rows]) - start] = True
    order = np.empty(n + k, dtype=np.int64)
    order[~placed] = np.arange(n)
    order[placed] = n + np.arange(k)
    return pa.concat_tables([table, pa.table(blank, schema=schema)]).take(pa.array(order))


_LOCATED = threading.local()


def _locate_bad_bytes(exc: UnicodeDecodeError) -> tuple[str, int]:
    _LOCATED.found.append(exc.start)
    return "", exc.end


codecs.register_error("denial-model-locate", _locate_bad_bytes)


def _utf8_checked(table: pa.Table) -> pa.Table:
    """The table with every cell that is not UTF-8 text emptied and its row's problem set
    (the first such column of the row), so one stray byte rejects one row, not the file.
    Arrow checks each column at once; only a column that fails is searched, by one decode
    of its bytes that notes where each bad sequence starts."""
    problem = pa.nulls(len(table), pa.string())
    for i, name in enumerate(table.column_names):
        col = table.column(i).combine_chunks()
        try:
            col.cast(pa.binary()).cast(pa.string())
            continue
        except pa.ArrowInvalid:
            pass
        bad = np.zeros(len(col), dtype=bool)
        bad[_rows_with_bad_bytes(col)] = True
        mask = pa.array(bad)
        why = f"{name}\tis not UTF-8 text (save the file as UTF-8)"
        problem = pc.if_else(pc.and_(mask, pc.is_null(problem)), why, problem)
        table = table.set_column(i, name, pc.if_else(mask, "", col))
    return table.append_column(READ_PROBLEM, problem)


def _rows_with_bad_bytes(col: pa.Array) -> np.ndarray:
    offsets_buf, data_buf = col.buffers()[1:3]
    offsets = np.frombuffer(offsets_buf, dtype=np.int32, count=len(col) + 1, offset=col.offset * 4)
    raw = memoryview(data_buf)[offsets[0] : offsets[-1]].tobytes()
    _LOCATED.found = []
    raw.decode("utf-8", errors="denial-model-locate")
    starts = np.asarray(_LOCATED.found, dtype=np.int64) + offsets[0]
    return np.unique(np.searchsorted(offsets, starts, side="right") - 1)


def refuse_overwriting_input(source: str | Path, *outputs: str | Path | None) -> None:
    """An output that would replace the input is refused before anything is read."""
    src = Path(source).resolve()
    for out in outputs:
        if out is not None and Path(out).resolve() == src:
            raise ConfigError(f"{out}: is the input file; write the output somewhere else")


def default_rejects_path(output: str | Path) -> Path:
    """Where rejects go when not given: next to the output, `scored.parquet` -> `scored.rejects.csv`."""
    output = Path(output)
    fmt = table_format(output)
    stem = output.name[: -len(".csv.gz")] if fmt == "csv.gz" else output.stem
    return output.with_name(stem + ".rejects.csv")


# Timestamps are written in microseconds: Spark (and most lakehouse engines) cannot read
# Parquet's nanosecond timestamps, and a claim's dates carry no finer time than that.
PARQUET_TIMESTAMPS = {"coerce_timestamps": "us", "allow_truncated_timestamps": True}


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    """Write CSV, CSV.gz or Parquet by the file name, atomically."""
    fmt = table_format(path)
    with atomic_output(path) as tmp:
        if fmt == "parquet":
            df.to_parquet(tmp, index=False, **PARQUET_TIMESTAMPS)
        else:
            df.to_csv(
                tmp, index=False, date_format="%Y-%m-%d", compression="gzip" if fmt == "csv.gz" else None
            )


def _csv_ready(table: pa.Table) -> pa.Table:
    """Columns as CSV writes them: dates as YYYY-MM-DD (as the claim-line table has them),
    lists as their items ';'-separated, other nested values as text."""
    for i, f in enumerate(table.schema):
        col = table.column(i)
        if pa.types.is_timestamp(f.type) or pa.types.is_date(f.type):
            col = pc.strftime(col, format="%Y-%m-%d")
        elif pa.types.is_list(f.type) or pa.types.is_large_list(f.type):
            col = pc.binary_join(pc.cast(col, pa.list_(pa.string())), ";")
        elif pa.types.is_nested(f.type):
            col = pa.array([None if v is None else str(v) for v in col.to_pylist()], pa.string())
        else:
            continue
        table = table.set_column(i, f.name, col)
    return table


class TableWriter:
    """A table written chunk by chunk (Parquet row groups, CSV appends) to an atomic output.

    Writes run in a background thread (Arrow encodes and compresses outside the GIL), one at
    a time: a write waits for the one before it, so at most one chunk is in flight. `close`
    moves the finished file into place; `abort` removes it."""

    def __init__(self, path: str | Path, schema: pa.Schema | None = None):
        self.path = Path(path)
        self.format = table_format(self.path)
        self.schema = schema
        self._output = atomic_output(self.path)
        self.tmp = self._output.__enter__()
        self._writer: pq.ParquetWriter | pa_csv.CSVWriter | None = None
        self._sink: pa.NativeFile | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="denial-model-writer")
        self._pending: Future | None = None

    def write(self, table: pa.Table) -> None:
        self._wait()
        self._pending = self._pool.submit(self._write, table)

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            try:
                pending.result()  # a failed write raises here, in the caller
            except OSError as exc:
                raise cannot_write(self.path, exc) from None

    def _write(self, table: pa.Table) -> None:
        parquet = self.format == "parquet"
        if not parquet:
            table = _csv_ready(table)
        if self._writer is None:
            self.schema = self.schema if self.schema is not None and parquet else table.schema
            if parquet:
                self._writer = pq.ParquetWriter(self.tmp, self.schema, **PARQUET_TIMESTAMPS)
            else:
                gz = "gzip" if self.format == "csv.gz" else None
                self._sink = pa.output_stream(str(self.tmp), compression=gz)
                self._writer = pa_csv.CSVWriter(self._sink, self.schema)
        self._writer.write_table(table if table.schema == self.schema else table.cast(self.schema))

    def _finish(self) -> None:
        writer, sink, self._writer, self._sink = self._writer, self._sink, None, None
        if writer is not None:
            writer.close()
        if sink is not None:
            sink.close()

    def finish(self, empty: pa.Table) -> None:
        """Complete the temporary file (`empty` gives an empty input its columns); `commit`
        then moves it into place. Two outputs that belong together (scores and rejects) are
        both finished before either is committed."""
        self._wait()
        try:
            if self._writer is None:
                self._write(empty)
            self._finish()
        except OSError as exc:
            raise cannot_write(self.path, exc) from None
        finally:
            self._pool.shutdown()

    def commit(self) -> None:
        self._output.__exit__(None, None, None)

    def close(self, empty: pa.Table) -> None:
        """Finish the file and move it into place (`abort` on failure)."""
        try:
            self.finish(empty)
        except BaseException:
            self.abort()
            raise
        self.commit()

    def abort(self) -> None:
        """A failed job leaves nothing behind that could pass for a result."""
        with contextlib.suppress(Exception):  # the job is failing already: its error is the one to report
            self._wait()
            self._finish()
        self._pool.shutdown()
        with contextlib.suppress(Exception):
            self._output.__exit__(RuntimeError, RuntimeError("aborted"), None)
