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

import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from denial_model.drift import drift_counts
from denial_model.errors import ClaimTableError, ConfigError
from denial_model.files import (
    CHUNK_LINES,
    TableWriter,
    default_rejects_path,
    read_batches,
    refuse_overwriting_input,
)
from denial_model.rules.pack import CATEGORIES
from denial_model.scorer import NUMBER_COLUMNS, SCORE_COLUMNS, SCORE_TYPES, Scored, Scorer, ScoringModel
from denial_model.table import (
    READ_PROBLEM,
    REJECTS_SCHEMA,
    check_date_format,
    compact_lines,
    concat_lines,
    frame_from_arrow,
    rejects_table,
    separate_groups,
    validate,
)
from denial_model.thresholds import TIERS

__all__ = [
    "QUANTILES",
    "REJECTS_SCHEMA",
    "SCORE_COLUMNS",
    "Block",
    "Carried",
    "ScoreSummary",
    "carry_context",
    "score_block",
    "score_file",
    "score_frame",
]

SCORE_BINS = np.linspace(0, 1, 51)
TOP_LINES = 20  # the most valuable lines a scoring run's report lists
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def quantile_name(q: float) -> str:
    """The metric suffix of a score quantile: 0.05 -> q05."""
    return f"q{round(q * 100):02d}"


@dataclass
class ScoreSummary:
    """Running totals of a scoring job (what each batch run records).

    Every field but `scores` adds up block by block, so partial summaries made where the
    blocks were scored (Spark executors: `partial`) merge into the job's (`merge`); the
    exact quantiles need the scores themselves, so a merged summary takes them from
    whoever has them (`quantile_values`)."""

    rows_in: int = 0
    scored: int = 0
    rejected: int = 0
    tiers: dict = field(default_factory=lambda: {"low": 0, "medium": 0, "high": 0})
    category_lines: dict = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    dollars_at_risk: float = 0.0
    billed: float = 0.0
    features: dict = field(default_factory=dict)  # drift: feature -> counts per reference bin
    score_counts: np.ndarray = field(default_factory=lambda: np.zeros(len(SCORE_BINS) - 1, np.int64))
    by_payer: dict = field(default_factory=dict)  # payer id -> dollars at risk
    by_group: dict = field(default_factory=dict)  # reason group -> dollars at risk
    top: list = field(default_factory=list)  # the TOP_LINES most valuable lines to work (dicts)
    scores: list = field(default_factory=list, repr=False)  # every probability, float32, per chunk
    quantile_values: dict | None = None  # quantiles computed elsewhere (when `scores` is not kept)

    def histogram(self) -> tuple[np.ndarray, np.ndarray]:
        """(lines per score bin, bin edges): the batch's score distribution, for its plot."""
        return self.score_counts, SCORE_BINS

    def quantiles(self, qs=QUANTILES) -> dict[str, float]:
        """Exact score quantiles (the probabilities are kept, 4 bytes a line); none without lines."""
        if not self.scores:
            return dict(self.quantile_values or {})
        values = np.quantile(np.concatenate(self.scores), qs)
        return {quantile_name(q): float(v) for q, v in zip(qs, values, strict=True)}

    def partial(self) -> dict:
        """The additive totals as plain JSON values (no scores): what a worker sends back."""
        return {
            "rows_in": self.rows_in,
            "scored": self.scored,
            "rejected": self.rejected,
            "tiers": self.tiers,
            "category_lines": self.category_lines,
            "dollars_at_risk": self.dollars_at_risk,
            "billed": self.billed,
            "features": {k: np.asarray(v).tolist() for k, v in self.features.items()},
            "score_counts": self.score_counts.tolist(),
            "by_payer": self.by_payer,
            "by_group": self.by_group,
            "top": self.top,
        }

    def merge(self, part: dict) -> None:
        """Add a `partial` of another block's summary to this one."""
        self.rows_in += int(part["rows_in"])
        self.scored += int(part["scored"])
        self.rejected += int(part["rejected"])
        for total, add in ((self.tiers, part["tiers"]), (self.category_lines, part["category_lines"])):
            for k, n in add.items():
                total[k] = total.get(k, 0) + int(n)
        self.dollars_at_risk += float(part["dollars_at_risk"])
        self.billed += float(part["billed"])
        for name, counts in part["features"].items():
            self.features[name] = self.features.get(name, 0) + np.asarray(counts, dtype=np.int64)
        self.score_counts = self.score_counts + np.asarray(part["score_counts"], dtype=np.int64)
        for total, add in ((self.by_payer, part["by_payer"]), (self.by_group, part["by_group"])):
            for k, v in add.items():
                total[k] = total.get(k, 0.0) + float(v)
        self.add_top(part["top"])

    def add_top(self, lines: list[dict]) -> None:
        """Keep the `TOP_LINES` most valuable lines of those kept and `lines`."""
        both = sorted(
            [*self.top, *lines], key=lambda r: (-r["value"], str(r["claim_id"]), str(r["line_number"]))
        )
        self.top = both[:TOP_LINES]


def score_frame(
    df: pd.DataFrame,
    loaded: ScoringModel,
    history: pd.DataFrame | None = None,
    date_format: str | None = None,
    groups: np.ndarray | None = None,
    history_groups: np.ndarray | None = None,
    keep_input: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scored rows: input columns + score columns, rejects). `loaded`: anything with a
    `scorer` (a `LoadedModel`, a `DenialModel`). `history`: earlier lines for
    the cross-line rules (not scored, not returned); `date_format`: as in `validate`.
    `groups` (and `history_groups`): an integer a row; rows of different groups are scored
    as if in separate calls (`table.separate_groups`), so independent tables can share one.
    `keep_input=False`: the score columns only (the service answers with ids and scores)."""
    v = validate(df, keep_extra=False, date_format=date_format)
    if groups is not None and _one_group(groups, history_groups if history is not None else None):
        groups = None  # one group: nothing to keep apart
    lines = v.lines if groups is None else separate_groups(v.lines, np.asarray(groups)[v.rows])
    earlier = None
    if history is not None:
        h = validate(history, keep_extra=False, date_format=date_format)
        earlier = h.lines if groups is None else separate_groups(h.lines, np.asarray(history_groups)[h.rows])
    if len(v.lines):
        scored = loaded.scorer.score_lines(v.claim_frame() if lines is v.lines else lines, earlier)
        scores = pa.table([scored.columns[c] for c in SCORE_COLUMNS], names=list(SCORE_COLUMNS)).to_pandas()
    else:
        empty = {c: pd.Series(dtype=float if c in NUMBER_COLUMNS else str) for c in SCORE_COLUMNS}
        scores = pd.DataFrame(empty)
    if not keep_input:
        return scores, v.rejects
    # the score columns replace any of the same name the input had; joined in one step
    out = df.iloc[v.rows].reset_index(drop=True)
    if replaced := [c for c in SCORE_COLUMNS if c in out.columns]:
        out = out.drop(columns=replaced)
    return pd.concat([out, scores], axis=1), v.rejects


def _one_group(groups: np.ndarray, history_groups: np.ndarray | None) -> bool:
    """True when the lines, and the history lines if any, are all of one group."""
    values = np.asarray(groups)
    if history_groups is not None:
        values = np.concatenate([values, np.asarray(history_groups)])
    return not len(values) or bool((values == values[0]).all())


def _output_table(table: pa.Table) -> pa.Table:
    """Input columns as they came, minus pandas' stored index columns, schema metadata and
    score columns of an earlier run (a scored file scored again gets fresh ones, not two)."""
    meta = table.schema.metadata or {}
    drop = [c for c in (*SCORE_COLUMNS, READ_PROBLEM) if c in table.column_names]
    if b"pandas" in meta:
        index = json.loads(meta[b"pandas"]).get("index_columns", [])
        drop += [c for c in index if isinstance(c, str) and c in table.column_names]
    return table.drop_columns(drop).replace_schema_metadata(None)


def _split_last_claim(table: pa.Table) -> np.ndarray | None:
    """Mask of the rows of the table's last claim (None when the whole table is that claim)."""
    claim = table.column("claim_id")
    same = pc.fill_null(pc.equal(claim, claim[len(table) - 1]), False).to_numpy(zero_copy_only=False)
    return same if not same.all() else None


def score_file(
    input_path: str | Path,
    output_path: str | Path,
    loaded: ScoringModel,
    rejects_path: str | Path | None = None,
    history: pd.DataFrame | None = None,
    chunk_lines: int = CHUNK_LINES,
    on_chunk=None,
    date_format: str | None = None,
) -> ScoreSummary:
    """Stream a claim file through the model; returns the job's summary (with drift counts).

    The input rows are written back as they came (Arrow in, Arrow out), followed by the
    score columns; rows that fail validation go to the rejects file instead (default
    `default_rejects_path(output_path)`). Reading the next chunk and writing the last one run
    in background threads while a chunk is scored. Output and rejects are moved into place
    together at the end; a failed job leaves neither. `date_format`: as in `validate`."""
    if not isinstance(chunk_lines, int) or chunk_lines < 1:
        raise ConfigError(f"chunk_lines must be a whole number >= 1, got {chunk_lines!r}")
    date_format = check_date_format(date_format)
    input_path, output_path = Path(input_path), Path(output_path)
    rejects_path = Path(rejects_path) if rejects_path else default_rejects_path(output_path)
    refuse_overwriting_input(input_path, output_path, rejects_path)
    scorer = loaded.scorer
    summary = ScoreSummary()
    context = None
    if history is not None:
        earlier = validate(history, keep_extra=False, date_format=date_format).lines
        context = carry_context(None, earlier, scorer.relevant_until(earlier))
    chunks = _claim_chunks(input_path, chunk_lines)  # refuses an unusable file before any output
    out_w = TableWriter(output_path)
    rej_w = TableWriter(rejects_path, REJECTS_SCHEMA)
    schema: pa.Schema | None = None
    try:
        for chunk in _prefetched(chunks):
            schema = schema or chunk.schema
            context = _score_chunk(
                chunk, scorer, context, summary, loaded.drift_reference, (out_w, rej_w), date_format
            )
            summary.rows_in = chunk.rows_in
            if on_chunk is not None:
                on_chunk(summary)
        out_schema = pa.unify_schemas([schema or pa.schema([]), pa.schema(list(SCORE_TYPES.items()))])
        out_w.finish(out_schema.empty_table())
        rej_w.finish(REJECTS_SCHEMA.empty_table())
    except BaseException:
        out_w.abort()
        rej_w.abort()
        raise
    out_w.commit()
    rej_w.commit()
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
    front of the next chunk, as it may continue there. The file is opened (and refused when
    unusable) when this is called, not when the first chunk is asked for."""
    return _whole_claims(path, read_batches(path, chunk_lines))


class _ClaimsSeen:
    """Claims already scored in earlier chunks, as sorted 64-bit hashes (8 bytes a claim)."""

    def __init__(self, path: Path):
        self.path = path
        self.hashes = np.zeros(0, dtype=np.uint64)

    def add(self, table: pa.Table, rows: np.ndarray) -> None:
        """Record this chunk's claims; a claim seen in an earlier chunk means the file's lines
        of one claim are not together, and the claim-level rules would be wrong: refused."""
        if not len(table):
            return
        ids = pc.cast(table.column("claim_id"), pa.string()).to_numpy(zero_copy_only=False)
        distinct = pd.unique(ids[ids != ""])  # no claim id: a row reject, not a claim
        hashes = pd.util.hash_array(np.asarray(distinct, dtype=object))
        order = np.argsort(hashes)
        new = hashes[order]
        # the file's claims so far stay sorted: a chunk's claims are looked up and inserted
        # (its own size times log of the rest, plus one copy), not all sorted again each chunk
        at = np.searchsorted(self.hashes, new)
        again = np.zeros(len(hashes), dtype=bool)
        again[order] = self.hashes[np.minimum(at, len(self.hashes) - 1)] == new if len(self.hashes) else False
        if again.any():
            claim = distinct[int(np.flatnonzero(again)[0])]
            row = int(rows[int(np.flatnonzero(ids == claim)[0])])
            raise ClaimTableError(
                f"{self.path}: claim {claim!r} continues at row {row} after lines of other claims: "
                "a claim's lines must be together in the file (sort it by service date, then claim), "
                "or give a --chunk-lines larger than the file"
            )
        self.hashes = np.insert(self.hashes, at, new)


def _whole_claims(path: Path, batches: Iterator[pa.Table]) -> Iterator[_Chunk]:
    carry: tuple[pa.Table, np.ndarray] | None = None
    consumed = 0
    schema = None
    seen = _ClaimsSeen(path)
    for table, last in _with_last(batches):
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
        seen.add(table, rows)
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


@dataclass
class Block:
    """One block of input rows, scored: the output rows (input columns as they came + the
    score columns), the rejects, and the validated lines (what later blocks' cross-line
    rules may need) with the last day each can still be reached."""

    output: pa.Table
    rows: np.ndarray  # the input row number of each output row
    rejects: pa.Table
    lines: pd.DataFrame
    until: np.ndarray


def score_block(
    table: pa.Table,
    rows: np.ndarray,
    scorer: Scorer,
    summary: ScoreSummary,
    reference: dict | None,
    earlier: pd.DataFrame | None = None,
    date_format: str | None = None,
    frame: pd.DataFrame | None = None,
) -> Block:
    """Validate and score one block of raw input rows (Arrow, the input columns only) and add
    it to `summary` (all but `rows_in`, which the reader counts). `rows`: each row's number
    in the input (what a reject names); `earlier`: validated look-back lines for the
    cross-line rules (not scored; those of other patients are passed over); `frame`: the
    rows as `frame_from_arrow` gives them, when already made. What `score_file` does to each
    chunk and a Spark worker to each block of whole patients."""
    v = validate(
        frame_from_arrow(table) if frame is None else frame, keep_extra=False, date_format=date_format
    )
    rejects = rejects_table(v.rejects, rows)
    summary.rejected += len(v.rejects)
    out = _output_table(table)
    if not len(v.lines):
        empty = pa.table({c: pa.array([], t) for c, t in SCORE_TYPES.items()})
        out = out.take(pa.array([], pa.int64()))
        for c in SCORE_COLUMNS:
            out = out.append_column(c, empty.column(c))
        return Block(out, rows[:0], rejects, v.lines, np.zeros(0, dtype=np.int64))
    scored = scorer.score_lines(v.lines, _of_patients(earlier, v.lines))
    if len(v.rows) < len(table):
        out = out.take(pa.array(v.rows))
    for c in SCORE_COLUMNS:
        out = out.append_column(c, scored.columns[c])
    _accumulate(summary, scored, reference, v.lines)
    summary.scored += len(v.lines)
    return Block(out, rows[v.rows], rejects, v.lines, scored.result.relevant_until)


def _score_chunk(
    chunk: _Chunk,
    scorer: Scorer,
    context: Carried | None,
    summary: ScoreSummary,
    reference: dict | None,
    writers: tuple[TableWriter, TableWriter],
    date_format: str | None,
) -> Carried | None:
    """Score and write one chunk (to the output and rejects writers) with the earlier lines
    of its patients; returns the context for the next one."""
    out_w, rej_w = writers
    earlier = context.lines if context is not None else None
    block = score_block(
        chunk.table, chunk.rows, scorer, summary, reference, earlier, date_format, frame=chunk.frame
    )
    if len(block.rejects):
        rej_w.write(block.rejects)
    if not len(block.lines):
        return context
    out_w.write(block.output)
    return carry_context(context, block.lines, block.until)


def _of_patients(earlier: pd.DataFrame | None, lines: pd.DataFrame) -> pd.DataFrame | None:
    """The look-back lines of the patients in `lines` (the only ones their rules can read)."""
    if earlier is None or not len(earlier):
        return None
    patients = lines["patient_id"]
    patients = patients.cat.categories if isinstance(patients.dtype, pd.CategoricalDtype) else patients
    return earlier[earlier["patient_id"].isin(patients).to_numpy()]


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


def _accumulate(summary: ScoreSummary, scored: Scored, reference: dict | None, lines: pd.DataFrame) -> None:
    p = scored.p
    _by(summary.by_payer, lines["payer_id"], scored.dollars)
    _by(summary.by_group, scored.columns["reason_group"].to_pandas(), scored.dollars)
    summary.add_top(_top_lines(scored, lines))
    summary.scores.append(p.astype(np.float32))
    summary.score_counts = summary.score_counts + np.histogram(p, bins=SCORE_BINS)[0]
    for tier, n in zip(TIERS, np.bincount(scored.tier, minlength=len(TIERS)), strict=True):
        summary.tiers[tier] = summary.tiers.get(tier, 0) + int(n)
    cats = scored.result.category_hits()
    for c in CATEGORIES:
        summary.category_lines[c] += int(cats[c].sum())
    summary.dollars_at_risk += float(scored.dollars.sum())
    summary.billed += float(scored.billed.sum())
    if reference:
        for name, counts in drift_counts(scored.features, p, reference).items():
            summary.features[name] = summary.features.get(name, 0) + counts


def _by(total: dict, keys: pd.Series, dollars: np.ndarray) -> None:
    """Add each key's dollars (one sum per distinct key) into `total`."""
    codes, uniques = pd.factorize(pd.Series(keys).astype(str).to_numpy())
    sums = np.bincount(codes, weights=dollars, minlength=len(uniques))
    for k, v in zip(uniques, sums, strict=True):
        total[str(k)] = total.get(str(k), 0.0) + float(v)


def _top_lines(scored: Scored, lines: pd.DataFrame) -> list[dict]:
    """This block's `TOP_LINES` most valuable lines to work (as the queue values them)."""
    from denial_model.queue import SEP, line_value

    value = line_value(scored.p, scored.after_fixes, scored.billed)
    reasons = scored.columns["reasons"].to_numpy(zero_copy_only=False)
    ok = np.flatnonzero((value > 0) & (reasons != ""))
    best = ok[np.argsort(-value[ok], kind="stable")[:TOP_LINES]]
    fixes = scored.columns["fixes"].to_numpy(zero_copy_only=False)
    group = scored.columns["reason_group"].to_numpy(zero_copy_only=False)
    team = scored.columns["owner_team"].to_numpy(zero_copy_only=False)
    return [
        {
            "claim_id": str(lines["claim_id"].iloc[i]),
            "line_number": int(lines["line_number"].iloc[i]),
            "payer_id": str(lines["payer_id"].iloc[i]),
            "hcpcs_code": str(lines["hcpcs_code"].iloc[i]),
            "owner_team": str(team[i]),
            "reason_group": str(group[i]),
            "denial_probability": float(scored.p[i]),
            "probability_after_fixes": float(scored.after_fixes[i]),
            "value": float(value[i]),
            "reason": str(reasons[i]).split(SEP, 1)[0],
            "fix": str(fixes[i]).split(SEP, 1)[0],
        }
        for i in best  # at most TOP_LINES rows a block, not a loop over the lines
    ]
