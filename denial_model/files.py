"""The one file layer: which formats a claim table comes in, how it is read, how any output
appears.

Every entry point (check, score, train, the Python API) reads through `read_table` or
`read_batches`, so they accept the same files: CSV, gzip-compressed CSV (`.csv.gz`) and
Parquet. CSV cells are read as text (validation decides what is a number or a date);
Arrow's reader handles a UTF-8 byte-order mark, CRLF line ends and quoted newlines.

Every writer (tables, scored batches, simulated histories, model artifacts, caches) goes
through `atomic_output`: the file is written under a hidden temporary name next to its
destination and renamed into place only when complete, so a failed or interrupted job
never leaves a file that could pass for a result, nor a temporary file behind (the
temporary name is fixed, so a job killed outright is cleaned by its rerun).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from denial_model.errors import ClaimTableError, ConfigError
from denial_model.table import check_required_columns

__all__ = [
    "TableWriter",
    "atomic_output",
    "default_rejects_path",
    "read_batches",
    "read_table",
    "refuse_overwriting_input",
    "table_format",
    "write_table",
]

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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _existing(path: str | Path) -> tuple[Path, str]:
    path = Path(path)
    fmt = table_format(path)
    if not path.exists():
        raise ClaimTableError(f"{path}: no such file")
    return path, fmt


def _csv_header(path: Path, fmt: str) -> list[str]:
    opener = gzip.open if fmt == "csv.gz" else open
    try:
        with opener(path, "rt", newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), None)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ClaimTableError(f"{path}: cannot read the header row: {exc}") from None
    if not header:
        raise ClaimTableError(f"{path}: empty file (no header row)")
    return header


def _csv_options(header: list[str]) -> tuple[pa_csv.ReadOptions, pa_csv.ConvertOptions]:
    return (
        pa_csv.ReadOptions(block_size=1 << 22),
        pa_csv.ConvertOptions(
            column_types={c: pa.string() for c in header},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


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
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def read_batches(path: str | Path, chunk_lines: int) -> Iterator[pa.Table]:
    """The file as Arrow tables of `chunk_lines` rows (the last may be shorter), with the
    canonical header (known columns in their spec spelling).

    Parquet is read by record batches; CSV by Arrow's streaming reader with every column as
    text, rebatched to `chunk_lines`. The format and the header are checked before the first
    batch, so an unusable file is refused up front with one message naming it; a file that
    turns out unreadable further on is refused naming it too, and no output appears."""
    path, fmt = _existing(path)
    if fmt == "parquet":
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ClaimTableError(f"{path}: cannot read as parquet: {exc}") from None
        names = _header(path, pf.schema_arrow.names)
        batches = (pa.Table.from_batches([b]) for b in pf.iter_batches(batch_size=chunk_lines))
        return _renamed(path, fmt, batches, names, pf.schema_arrow)
    header = _csv_header(path, fmt)
    names = _header(path, header)
    read, convert = _csv_options(header)
    try:
        reader = pa_csv.open_csv(path, read_options=read, convert_options=convert)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ClaimTableError(f"{path}: cannot read as {fmt}: {exc}") from None
    return _renamed(path, fmt, _rebatched(reader, chunk_lines), names, reader.schema)


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


def _rebatched(reader: pa_csv.CSVStreamingReader, chunk_lines: int) -> Iterator[pa.Table]:
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in reader:
        pending.append(batch)
        held += len(batch)
        while held >= chunk_lines:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, chunk_lines)
            rest = table.slice(chunk_lines)
            pending, held = rest.to_batches(), len(rest)
    if held:
        yield pa.Table.from_batches(pending, schema=reader.schema)


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


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    """Write CSV, CSV.gz or Parquet by the file name, atomically."""
    fmt = table_format(path)
    with atomic_output(path) as tmp:
        if fmt == "parquet":
            df.to_parquet(tmp, index=False)
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
            pending.result()  # a failed write raises here, in the caller

    def _write(self, table: pa.Table) -> None:
        parquet = self.format == "parquet"
        if not parquet:
            table = _csv_ready(table)
        if self._writer is None:
            self.schema = self.schema if self.schema is not None and parquet else table.schema
            if parquet:
                self._writer = pq.ParquetWriter(self.tmp, self.schema)
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
        if self._writer is None:
            self._write(empty)
        self._finish()
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
