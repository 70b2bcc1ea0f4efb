"""Batch scoring: probability, risk tier, rule hits, reasons and fixes for every line.

`score_frame` scores a DataFrame; `score_file` streams a CSV or Parquet file in chunks
(Parquet record batches, CSV chunks) so memory does not grow with the file, and writes the
result atomically (temporary file, then rename). Rows in = rows scored + rows rejected.

Cross-line rules (duplicates and daily totals, days since the previous dose, administration
on the claim) need other lines. A claim is never split across chunks; each chunk is scored
together with a small context carried from the lines before it: per patient and code, the
lines of its two latest service days within `lookback_days` (see `carry_context`), seeded
by an optional `history` table of earlier batches. This is exact when the batch is sorted
by service date (as a nightly export is): give it sorted, or pass the earlier lines as
`history`. `score_frame` sees the whole table at once and needs no ordering.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from denial_model.artifact import LoadedModel
from denial_model.explain import counterfactuals, reasons_and_fixes
from denial_model.rules.pack import CATEGORIES
from denial_model.table import REJECT_COLUMNS, ClaimFrame, check_required_columns, read_table, validate

SCORE_COLUMNS = ("denial_probability", "risk_tier", "rule_hits", "reasons", "fixes", "dollars_at_risk")
SCORE_BINS = np.linspace(0, 1, 51)
_ROW = "__row__"


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
        vals = features[name].astype(object).where(features[name].notna(), "__missing__")
        counts = vals.value_counts()
        known = [counts.get(k, 0) for k in ref["levels"]]
        out[name] = np.array([*known, int(counts.sum()) - int(sum(known))])
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


def _score_lines(lines: pd.DataFrame, loaded: LoadedModel, n_context: int) -> tuple[pd.DataFrame, dict]:
    """Score validated lines; the first `n_context` rows are look-back context, not output."""
    feats = loaded.model.named_steps["features"]
    predictor = loaded.predictor
    X, result = feats.transform_with_rules(ClaimFrame(lines))
    keep = slice(n_context, None)
    Xk = X.iloc[keep].reset_index(drop=True)
    rk = type(result)(hits=result.hits[keep], rules=result.rules, drug=result.drug[keep])
    prepared = predictor.prepare(Xk, binary=([r.id for r in rk.rules], rk.hits))
    pk = predictor.proba(prepared)
    after = counterfactuals(predictor, prepared, rk, pk)
    sub = lines.iloc[keep]
    reasons, fixes = reasons_and_fixes(
        Xk,
        rk,
        pk,
        after,
        loaded.thresholds.high,
        feats.prior_,
        sub["payer_id"].to_numpy(dtype=object),
        sub["hcpcs_code"].to_numpy(dtype=object),
    )
    billed = sub["billed_amount"].to_numpy(dtype=float)
    scores = pd.DataFrame(
        {
            "denial_probability": pk,
            "risk_tier": loaded.thresholds.tier(pk),
            "rule_hits": rk.rule_hits,
            "reasons": reasons,
            "fixes": fixes,
            "dollars_at_risk": np.round(pk * billed, 2),
        }
    )
    return scores, {"features": Xk, "result": rk, "p": pk, "billed": billed}


def score_frame(
    df: pd.DataFrame, loaded: LoadedModel, history: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scored rows: input columns + score columns, rejects). `history`: earlier lines for
    the cross-line rules (not scored, not returned)."""
    v = validate(df)
    ctx = validate(history).lines if history is not None else v.lines.iloc[:0]
    lines = pd.concat([ctx, v.lines], ignore_index=True) if len(ctx) else v.lines
    scores, _ = _score_lines(lines, loaded, len(ctx))
    out = df.iloc[v.rows].reset_index(drop=True)
    for c in SCORE_COLUMNS:
        out[c] = scores[c].to_numpy()
    return out, v.rejects


def _chunks(path: Path, chunk_lines: int) -> Iterator[pd.DataFrame]:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        check_required_columns(pf.schema_arrow.names)
        for batch in pf.iter_batches(batch_size=chunk_lines):
            yield batch.to_pandas()
    elif suffix == ".csv":
        reader = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, chunksize=chunk_lines)
        for i, chunk in enumerate(reader):
            if i == 0:
                check_required_columns(chunk.columns)
            yield chunk
    else:
        read_table(path)  # raises the clear unknown-format error


class _Writer:
    def __init__(self, path: Path):
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp")
        self.parquet = path.suffix.lower() in (".parquet", ".pq")
        self.writer = None
        self.n = 0

    def write(self, df: pd.DataFrame) -> None:
        if self.parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df, preserve_index=False)
            if self.writer is None:
                self.schema = table.schema
                self.writer = pq.ParquetWriter(self.tmp, self.schema)
            self.writer.write_table(table.cast(self.schema))
        else:
            df.to_csv(
                self.tmp,
                mode="w" if self.n == 0 else "a",
                header=self.n == 0,
                index=False,
                date_format="%Y-%m-%d",
            )
        self.n += 1

    def close(self, empty: pd.DataFrame) -> None:
        """Finish the temporary file and move it into place (the only way output appears)."""
        if self.n == 0:
            self.write(empty)
        if self.writer is not None:
            self.writer.close()
        self.tmp.replace(self.path)

    def abort(self) -> None:
        """A failed job leaves nothing behind that could pass for a result."""
        if self.writer is not None:
            self.writer.close()
        self.tmp.unlink(missing_ok=True)


def score_file(
    input_path: str | Path,
    output_path: str | Path,
    loaded: LoadedModel,
    rejects_path: str | Path | None = None,
    history: pd.DataFrame | None = None,
    chunk_lines: int = 200_000,
    lookback_days: int = 60,
    on_chunk=None,
) -> ScoreSummary:
    """Stream a claim file through the model; returns the job's summary (with drift counts)."""
    input_path, output_path = Path(input_path), Path(output_path)
    rejects_path = (
        Path(rejects_path) if rejects_path else output_path.with_name(output_path.stem + ".rejects.csv")
    )
    summary = ScoreSummary()
    reference = loaded.manifest.get("drift_reference")
    out_w, rej_w = _Writer(output_path), _Writer(rejects_path)
    context = carry_context(None, validate(history).lines) if history is not None else None
    carry: pd.DataFrame | None = None
    consumed = 0
    empty_out = None
    try:
        for chunk, last in _with_last(_chunks(input_path, chunk_lines)):
            chunk = chunk.copy()
            chunk[_ROW] = np.arange(consumed, consumed + len(chunk))
            consumed += len(chunk)
            if carry is not None:
                chunk = pd.concat([carry, chunk], ignore_index=True)
                carry = None
            if not last and len(chunk):
                tail_claim = chunk["claim_id"].iloc[-1]
                tail = (chunk["claim_id"] == tail_claim).to_numpy()
                if not tail.all():  # hold the last claim back: it may continue in the next chunk
                    carry = chunk.loc[tail].reset_index(drop=True)
                    chunk = chunk.loc[~tail].reset_index(drop=True)
            v = validate(chunk)
            rej = v.rejects.copy()
            rej["row"] = (
                chunk[_ROW].to_numpy()[rej["row"].to_numpy(dtype=np.int64)] if len(rej) else rej["row"]
            )
            n_ctx = 0
            lines = v.lines
            if context is not None and len(context) and len(lines):
                start = lines["service_date"].min() - pd.Timedelta(days=lookback_days)
                context = context[(context["service_date"] >= start).to_numpy()]
                relevant = context[context["patient_id"].isin(lines["patient_id"].unique()).to_numpy()]
                n_ctx = len(relevant)
                lines = pd.concat([relevant, lines], ignore_index=True)
            out = chunk.iloc[v.rows].drop(columns=[_ROW]).reset_index(drop=True)
            if len(v.lines):
                scores, detail = _score_lines(lines, loaded, n_ctx)
                for c in SCORE_COLUMNS:
                    out[c] = scores[c].to_numpy()
                _accumulate(summary, detail, scores, reference)
                out_w.write(out)
            elif empty_out is None:
                empty_out = out.assign(**{c: pd.Series(dtype=object) for c in SCORE_COLUMNS})
            if len(rej):
                rej_w.write(rej[list(REJECT_COLUMNS)])
            context = carry_context(context, v.lines)
            summary.scored += len(v.lines)
            summary.rejected += len(rej)
            if on_chunk is not None:
                on_chunk(summary)
            summary.rows_in = consumed - (0 if carry is None else len(carry))
    except BaseException:
        out_w.abort()
        rej_w.abort()
        raise
    out_w.close(empty_out if empty_out is not None else pd.DataFrame(columns=list(SCORE_COLUMNS)))
    rej_w.close(pd.DataFrame(columns=list(REJECT_COLUMNS)))
    return summary


def carry_context(context: pd.DataFrame | None, lines: pd.DataFrame) -> pd.DataFrame:
    """What later chunks need from the lines seen so far: per patient and code, the lines of
    its two latest service days. With the batch sorted by date that is exactly what the
    cross-line rules read across a chunk boundary (same-day duplicates and daily totals on
    the boundary day, the previous dose before it), so the context stays small."""
    seen = lines if context is None or not len(context) else pd.concat([context, lines], ignore_index=True)
    if not len(seen):
        return seen
    rank = seen.groupby(["patient_id", "hcpcs_code"], sort=False)["service_date"].rank(
        method="dense", ascending=False
    )
    return seen[(rank <= 2).to_numpy()].reset_index(drop=True)


def _with_last(it: Iterator[pd.DataFrame]) -> Iterator[tuple[pd.DataFrame, bool]]:
    prev = None
    for x in it:
        if prev is not None:
            yield prev, False
        prev = x
    if prev is not None:
        yield prev, True


def _accumulate(summary: ScoreSummary, detail: dict, scores: pd.DataFrame, reference: dict | None) -> None:
    p = detail["p"]
    summary.score_hist += np.histogram(p, bins=SCORE_BINS)[0]
    for tier, n in scores["risk_tier"].value_counts().items():
        summary.tiers[tier] = summary.tiers.get(tier, 0) + int(n)
    cats = detail["result"].category_hits()
    for c in CATEGORIES:
        summary.category_lines[c] += int(cats[c].sum())
    summary.dollars_at_risk += float(scores["dollars_at_risk"].sum())
    summary.billed += float(detail["billed"].sum())
    if reference:
        for name, counts in _drift_counts(detail["features"], p, reference).items():
            summary.features[name] = summary.features.get(name, 0) + counts
