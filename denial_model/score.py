"""Batch scoring: probability, risk tier, rule hits, reasons and fixes for every line.

`score_frame` scores a DataFrame; `score_file` streams a CSV or Parquet file in chunks
(Parquet record batches, CSV chunks) so memory does not grow with the file, and writes the
result atomically (temporary file, then rename). Rows in = rows scored + rows rejected.

Cross-line rules (duplicates and daily totals, days since the previous dose) need other
lines. A claim is never split across chunks; each chunk is scored together with the earlier
lines those rules can still reach, carried from chunk to chunk (see `carry_context`) and
seeded by an optional `history` table of earlier batches. This is exact when the batch is
sorted by service date (as a nightly export is): give it sorted, or pass the earlier lines
as `history`. `score_frame` sees the whole table at once and needs no ordering.
"""

from __future__ import annotations

import contextlib
import csv
import json
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from denial_model.artifact import LoadedModel
from denial_model.explain import counterfactuals, reasons_and_fixes
from denial_model.rules.engine import RuleResult
from denial_model.rules.pack import CATEGORIES
from denial_model.table import (
    REJECT_COLUMNS,
    ClaimFrame,
    ClaimTableError,
    _factorize,
    check_required_columns,
    compact_lines,
    concat_lines,
    frame_from_arrow,
    read_table,
    validate,
)
from denial_model.train import Thresholds

SCORE_COLUMNS = ("denial_probability", "risk_tier", "rule_hits", "reasons", "fixes", "dollars_at_risk")
SCORE_BINS = np.linspace(0, 1, 51)


@dataclass
class ScoreSummary:
    """Running totals of a scoring job (what each batch run records)."""

    rows_in: int = 0
    scored: int = 0
    rejected: int = 0
    tiers: dict = field(default_factory=lambda: {"low": 0, "medium": 0, "high": 0})
    score_hist: np.ndarray = field(default_factory=lambda: np.zeros(len(SCORE_BINS) - 1, dtype=np.int64))
    category_lines: dict = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    dollars_at_risk: float = 0.0
    billed: float = 0.0
    features: dict = field(default_factory=dict)  # drift: feature -> counts per reference bin

    def quantiles(self, qs=(0.05, 0.25, 0.5, 0.75, 0.95, 0.99)) -> dict[str, float]:
        cum = np.cumsum(self.score_hist) / max(self.score_hist.sum(), 1)
        return {f"q{int(q * 100):02d}": float(SCORE_BINS[1:][np.searchsorted(cum, q)]) for q in qs}


def _drift_counts(features: pd.DataFrame, p: np.ndarray, reference: dict) -> dict[str, np.ndarray]:
    out = {"score": np.histogram(p, bins=reference["score"]["edges"])[0]}
    for name, ref in reference.get("numeric", {}).items():
        v = features[name].to_numpy(dtype=float)
        v = v[~np.isnan(v)]
        out[name] = np.histogram(np.clip(v, ref["edges"][0], ref["edges"][-1]), bins=ref["edges"])[0]
    for name, ref in reference.get("categorical", {}).items():
        codes, uniques = _factorize(features[name])  # per distinct value, not per line
        names = ["__missing__" if pd.isna(u) else str(u) for u in uniques]
        counts = pd.Series(np.bincount(codes, minlength=len(names)), index=names).groupby(level=0).sum()
        known = [int(counts.get(k, 0)) for k in ref["levels"]]
        out[name] = np.array([*known, len(codes) - sum(known)])
    return out


def reference_profile(features: pd.DataFrame, p: np.ndarray) -> dict:
    """Distributions of the score and main features on the training data, for drift (PSI)."""
    edges = np.unique(np.quantile(p, np.linspace(0, 1, 11)))
    edges[0], edges[-1] = 0.0, 1.0
    prof: dict = {"score": {"edges": edges.tolist(), "counts": np.histogram(p, bins=edges)[0].tolist()}}
    prof["numeric"] = {}
    for name in ("units", "billed_amount", "days_to_submission", "dose_mg"):
        v = features[name].to_numpy(dtype=float)
        v = v[~np.isnan(v)]
        e = np.unique(np.quantile(v, np.linspace(0, 1, 11)))
        if len(e) < 2:
            continue
        prof["numeric"][name] = {"edges": e.tolist(), "counts": np.histogram(v, bins=e)[0].tolist()}
    prof["categorical"] = {}
    for name in ("payer_type", "hcpcs_code", "place_of_service", "drug"):
        vals = features[name].astype(object).where(features[name].notna(), "__missing__")
        counts = vals.value_counts().head(20)
        prof["categorical"][name] = {
            "levels": [str(x) for x in counts.index],
            "counts": [*counts.tolist(), int(len(vals) - counts.sum())],
        }
    return prof


def psi(expected: np.ndarray, actual: np.ndarray, eps: float = 1e-4) -> float:
    """Population stability index between two count vectors over the same bins."""
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    e = np.maximum(e / max(e.sum(), 1), eps)
    a = np.maximum(a / max(a.sum(), 1), eps)
    return float(np.sum((a - e) * np.log(a / e)))


TIERS = Thresholds.names
_TIERS = pa.array(TIERS)
REJECTS_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("claim_id", pa.string()),
        ("line_number", pa.string()),
        ("column", pa.string()),
        ("reason", pa.string()),
    ]
)


@dataclass
class Scored:
    """Score columns of a block of lines (Arrow arrays, in SCORE_COLUMNS order) and what the
    job summary needs from them."""

    columns: dict[str, pa.Array]
    p: np.ndarray
    tier: np.ndarray  # index into TIERS
    billed: np.ndarray
    dollars: np.ndarray  # expected dollars at risk per line
    features: pd.DataFrame
    result: RuleResult


def _score_lines(lines: pd.DataFrame, loaded: LoadedModel, earlier: pd.DataFrame | None = None) -> Scored:
    """Score validated lines; `earlier`: look-back lines the cross-line rules read (not scored)."""
    feats = loaded.model.named_steps["features"]
    predictor = loaded.predictor
    frame = ClaimFrame(lines)
    rk = feats.rules_.evaluate(frame, earlier=earlier)
    attrs = feats.attributes(frame, rk.drug)
    prepared = predictor.prepare(attrs, binary=(rk.ids, rk.hits))
    raw = predictor.raw(prepared)
    p = predictor.calibrate(raw)
    findings = counterfactuals(predictor, prepared, rk, raw)
    reasons, fixes = reasons_and_fixes(
        findings, rk, p, loaded.thresholds.high, feats.prior_, attrs, lines["payer_id"], lines["hcpcs_code"]
    )
    tier = loaded.thresholds.tier_index(p)
    hit_codes, hit_text = rk.per_line_codes(RuleResult.hit_ids)
    billed = lines["billed_amount"].to_numpy(dtype=float)
    dollars = np.round(p * billed, 2)
    columns = {
        "denial_probability": pa.array(p, pa.float64()),
        "risk_tier": _TIERS.take(pa.array(tier)),
        "rule_hits": pa.array(hit_text, pa.string()).take(pa.array(hit_codes)),
        "reasons": reasons,
        "fixes": fixes,
        "dollars_at_risk": pa.array(dollars, pa.float64()),
    }
    return Scored(columns=columns, p=p, tier=tier, billed=billed, dollars=dollars, features=attrs, result=rk)


def score_frame(
    df: pd.DataFrame, loaded: LoadedModel, history: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scored rows: input columns + score columns, rejects). `history`: earlier lines for
    the cross-line rules (not scored, not returned)."""
    v = validate(df, keep_extra=False)
    earlier = validate(history, keep_extra=False).lines if history is not None else None
    out = df.iloc[v.rows].reset_index(drop=True)
    if len(v.lines):
        scored = _score_lines(v.lines, loaded, earlier)
        for c in SCORE_COLUMNS:
            out[c] = scored.columns[c].to_pandas()
    else:
        for c in SCORE_COLUMNS:
            out[c] = pd.Series(dtype=float if c in ("denial_probability", "dollars_at_risk") else str)
    return out, v.rejects


def _read_batches(path: Path, chunk_lines: int) -> Iterator[pa.Table]:
    """The file as Arrow tables of `chunk_lines` rows (the last may be shorter).

    Parquet is read by record batches; CSV by Arrow's streaming reader with every column
    as text (validation decides what is a number), rebatched to `chunk_lines`."""
    suffix = path.suffix.lower()
    if not path.exists():
        read_table(path)  # raises the clear no-such-file error
    if suffix in (".parquet", ".pq"):
        pf = pq.ParquetFile(path)
        check_required_columns(pf.schema_arrow.names)
        for batch in pf.iter_batches(batch_size=chunk_lines):
            yield pa.Table.from_batches([batch])
        return
    if suffix != ".csv":
        read_table(path)  # raises the clear unknown-format error
    with open(path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), None)
    if header is None:
        raise ClaimTableError(f"{path}: empty file (no header row)")
    check_required_columns(header)
    reader = pa_csv.open_csv(
        path,
        read_options=pa_csv.ReadOptions(block_size=1 << 22),
        convert_options=pa_csv.ConvertOptions(
            column_types={c: pa.string() for c in header},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
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


def _output_table(table: pa.Table) -> pa.Table:
    """Input columns as they came, minus pandas' stored index columns and schema metadata."""
    meta = table.schema.metadata or {}
    drop: list[str] = []
    if b"pandas" in meta:
        index = json.loads(meta[b"pandas"]).get("index_columns", [])
        drop = [c for c in index if isinstance(c, str) and c in table.column_names]
    return table.drop_columns(drop).replace_schema_metadata(None)


class _Writer:
    """Parquet or CSV, written to a hidden temporary file and renamed into place on close.

    Writes run in a background thread (Arrow encodes and compresses outside the GIL), one
    at a time: a write waits for the one before it, so at most one chunk is in flight."""

    def __init__(self, path: Path, schema: pa.Schema | None = None):
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp")
        self.parquet = path.suffix.lower() in (".parquet", ".pq")
        self.schema = schema
        self.writer = None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="denial-model-writer")
        self.pending: Future | None = None

    def write(self, table: pa.Table) -> None:
        self._wait()
        self.pending = self.pool.submit(self._write, table)

    def _wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()  # a failed write raises here, in the caller

    def _write(self, table: pa.Table) -> None:
        if not self.parquet:  # CSV: dates as YYYY-MM-DD, as the input spec has them
            for i, f in enumerate(table.schema):
                if pa.types.is_timestamp(f.type) or pa.types.is_date(f.type):
                    table = table.set_column(i, f.name, pc.strftime(table.column(i), format="%Y-%m-%d"))
        if self.writer is None:
            self.schema = self.schema if self.schema is not None and self.parquet else table.schema
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.parquet:
                self.writer = pq.ParquetWriter(self.tmp, self.schema)
            else:
                self.writer = pa_csv.CSVWriter(self.tmp, self.schema)
        self.writer.write_table(table if table.schema == self.schema else table.cast(self.schema))

    def close(self, empty: pa.Table) -> None:
        """Finish the temporary file and move it into place (the only way output appears)."""
        try:
            self._wait()
            if self.writer is None:
                self._write(empty)
            self.writer.close()
        finally:
            self.pool.shutdown()
        self.tmp.replace(self.path)

    def abort(self) -> None:
        """A failed job leaves nothing behind that could pass for a result."""
        with contextlib.suppress(Exception):  # the job is failing already: its error is the one to report
            self._wait()
        self.pool.shutdown()
        if self.writer is not None:
            self.writer.close()
        self.tmp.unlink(missing_ok=True)


def _split_last_claim(table: pa.Table) -> np.ndarray | None:
    """Mask of the rows of the table's last claim (None when the whole table is that claim)."""
    claim = table.column("claim_id")
    same = pc.fill_null(pc.equal(claim, claim[len(table) - 1]), False).to_numpy(zero_copy_only=False)
    return same if not same.all() else None


def score_file(
    input_path: str | Path,
    output_path: str | Path,
    loaded: LoadedModel,
    rejects_path: str | Path | None = None,
    history: pd.DataFrame | None = None,
    chunk_lines: int = 200_000,
    on_chunk=None,
) -> ScoreSummary:
    """Stream a claim file through the model; returns the job's summary (with drift counts).

    The input rows are written back as they came (Arrow in, Arrow out), followed by the
    score columns; rows that fail validation go to the rejects file instead. Reading the next
    chunk and writing the last one run in background threads while a chunk is scored."""
    input_path, output_path = Path(input_path), Path(output_path)
    rejects_path = (
        Path(rejects_path) if rejects_path else output_path.with_name(output_path.stem + ".rejects.csv")
    )
    summary = ScoreSummary()
    reference = loaded.manifest.get("drift_reference")
    out_w, rej_w = _Writer(output_path), _Writer(rejects_path, REJECTS_SCHEMA)
    context = None
    if history is not None:
        earlier = validate(history, keep_extra=False).lines
        until = loaded.model.named_steps["features"].rules_.evaluate(ClaimFrame(earlier)).relevant_until
        context = carry_context(None, earlier, until)
    schema: pa.Schema | None = None
    try:
        for chunk in _prefetched(_claim_chunks(input_path, chunk_lines)):
            schema = schema or chunk.schema
            context = _score_chunk(chunk, loaded, context, summary, reference, out_w, rej_w)
            summary.rows_in = chunk.rows_in
            if on_chunk is not None:
                on_chunk(summary)
    except BaseException:
        out_w.abort()
        rej_w.abort()
        raise
    score_schema = pa.schema(
        [
            (c, pa.float64() if c in ("denial_probability", "dollars_at_risk") else pa.string())
            for c in SCORE_COLUMNS
        ]
    )
    out_schema = pa.unify_schemas([schema or pa.schema([]), score_schema])
    out_w.close(out_schema.empty_table())
    rej_w.close(REJECTS_SCHEMA.empty_table())
    return summary


@dataclass
class _Chunk:
    table: pa.Table  # raw input rows, whole claims only
    rows: np.ndarray  # their row numbers in the input file
    frame: pd.DataFrame  # the input columns as pandas, for validation
    rows_in: int  # input rows read and not held back so far
    schema: pa.Schema  # of the output's input columns


def _claim_chunks(path: Path, chunk_lines: int) -> Iterator[_Chunk]:
    """The file in chunks of whole claims: a chunk's last claim is held back and put in
    front of the next chunk, as it may continue there."""
    carry: tuple[pa.Table, np.ndarray] | None = None
    consumed = 0
    schema = None
    for table, last in _with_last(_read_batches(path, chunk_lines)):
        rows = np.arange(consumed, consumed + len(table), dtype=np.int64)
        consumed += len(table)
        schema = schema or _output_table(table).schema
        if carry is not None:
            table = pa.concat_tables([carry[0], table])
            rows = np.r_[carry[1], rows]
            carry = None
        if not last and len(table):
            tail = _split_last_claim(table)
            if tail is not None:
                carry = (table.filter(pa.array(tail)), rows[tail])
                table, rows = table.filter(pa.array(~tail)), rows[~tail]
        held = 0 if carry is None else len(carry[1])
        yield _Chunk(table, rows, frame_from_arrow(table), consumed - held, schema)


def _prefetched(items: Iterator, depth: int = 1) -> Iterator:
    """Produce the next items in a background thread while the caller works on this one
    (Arrow's reading, decoding and dictionary encoding run outside the GIL). Errors are
    raised in the caller; a caller that stops early stops the thread."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(msg: tuple) -> bool:
        while not stop.is_set():
            try:
                q.put(msg, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for x in items:
                if not put(("item", x)):
                    return
            put(("done", None))
        except BaseException as e:  # handed to the caller
            put(("error", e))

    thread = threading.Thread(target=run, name="denial-model-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, x = q.get()
            if kind == "done":
                return
            if kind == "error":
                raise x
            yield x
    finally:
        stop.set()
        thread.join()


def _score_chunk(
    chunk: _Chunk,
    loaded: LoadedModel,
    context: Carried | None,
    summary: ScoreSummary,
    reference: dict | None,
    out_w: _Writer,
    rej_w: _Writer,
) -> Carried | None:
    """Validate, score and write one chunk; returns the context for the next one."""
    table, rows = chunk.table, chunk.rows
    v = validate(chunk.frame, keep_extra=False)
    if len(v.rejects):
        rej = v.rejects.assign(row=rows[v.rejects["row"].to_numpy(dtype=np.int64)])
        rej_w.write(
            pa.Table.from_pandas(rej[list(REJECT_COLUMNS)], schema=REJECTS_SCHEMA, preserve_index=False)
        )
    summary.rejected += len(v.rejects)
    if not len(v.lines):
        return context
    relevant = None
    if context is not None and len(context.lines):
        patients = v.lines["patient_id"]
        patients = patients.cat.categories if isinstance(patients.dtype, pd.CategoricalDtype) else patients
        relevant = context.lines[context.lines["patient_id"].isin(patients).to_numpy()]
    scored = _score_lines(v.lines, loaded, relevant)
    out = _output_table(table)
    if len(v.rows) < len(table):
        out = out.take(pa.array(v.rows))
    for c in SCORE_COLUMNS:
        out = out.append_column(c, scored.columns[c])
    out_w.write(out)
    _accumulate(summary, scored, reference)
    summary.scored += len(v.lines)
    return carry_context(context, v.lines, scored.result.relevant_until)


@dataclass
class Carried:
    """Earlier lines a later chunk's cross-line rules can still reach, with the last service
    day (days since 1970) on which each can."""

    lines: pd.DataFrame
    until: np.ndarray


def carry_context(context: Carried | None, lines: pd.DataFrame, until: np.ndarray) -> Carried:
    """What later chunks need from the lines seen so far.

    Each cross-line rule kind says how far back it looks (duplicates and daily totals: the
    same day; days between doses: the rule's `days` - 1), so the engine gives every line the
    last day a later line can still be compared with it (`RuleResult.relevant_until`). With
    the batch sorted by date, later lines fall on or after the last day seen, so a line is
    kept while that day is within its reach and dropped after: the context is the last day's
    lines plus the recent doses of the drugs with a dosing interval, whatever the file's size."""
    if context is not None and len(context.lines):
        seen = concat_lines([context.lines, lines])
        until = np.r_[context.until, until]
    else:
        seen = lines
    if not len(seen):
        return Carried(seen, np.zeros(0, dtype=np.int64))
    last_day = int(seen["service_date"].max().to_datetime64().astype("datetime64[D]").astype(np.int64))
    keep = np.flatnonzero(until >= last_day)
    return Carried(compact_lines(seen.iloc[keep]), until[keep])


def _with_last(it: Iterator) -> Iterator[tuple]:
    prev = None
    for x in it:
        if prev is not None:
            yield prev, False
        prev = x
    if prev is not None:
        yield prev, True


def _accumulate(summary: ScoreSummary, scored: Scored, reference: dict | None) -> None:
    p = scored.p
    summary.score_hist += np.histogram(p, bins=SCORE_BINS)[0]
    for tier, n in zip(TIERS, np.bincount(scored.tier, minlength=len(TIERS)), strict=True):
        summary.tiers[tier] = summary.tiers.get(tier, 0) + int(n)
    cats = scored.result.category_hits()
    for c in CATEGORIES:
        summary.category_lines[c] += int(cats[c].sum())
    summary.dollars_at_risk += float(scored.dollars.sum())
    summary.billed += float(scored.billed.sum())
    if reference:
        for name, counts in _drift_counts(scored.features, p, reference).items():
            summary.features[name] = summary.features.get(name, 0) + counts
