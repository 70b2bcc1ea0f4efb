"""Stage 6, the writer: blocks of patients into chunks, chunks into a file.

Generation runs in fixed blocks of `cfg.block_patients` patients, each with its own random
stream, so the output does not depend on how blocks are grouped into chunks; each chunk is
written as a Parquet row group (or CSV rows) and dropped, so memory does not grow with the
size. The file appears under its name only when complete (`files.atomic_output`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from denial_model.files import TableWriter
from denial_model.reference import Reference, load_reference
from denial_model.rules.pack import RulePack, load_pack
from denial_model.simulate.claims import clean_claims, to_lines
from denial_model.simulate.config import SimConfig
from denial_model.simulate.facts import PackFacts
from denial_model.simulate.mistakes import Slips, plant_mistakes
from denial_model.simulate.outcomes import outcomes
from denial_model.simulate.patients import draw_courses, draw_patients
from denial_model.simulate.world import World, build_world
from denial_model.table import INPUT_COLUMNS, LABEL_COLUMNS

__all__ = ["DENIAL_GROUPS", "HistorySummary", "iter_chunks", "simulate", "simulate_block", "write_history"]

# the claim-line table, then the outcome labels, then the simulator's truth
COLUMN_ORDER = [*INPUT_COLUMNS, *LABEL_COLUMNS, "planted_categories"]


def simulate_block(cfg: SimConfig, world: World, facts: PackFacts, ref: Reference, b: int) -> pd.DataFrame:
    """All claim lines of block `b` of patients: patients, clean claims, mistakes, outcomes."""
    rng = np.random.default_rng([cfg.seed, 1, b])
    patients = draw_patients(cfg, world, rng)
    course = draw_courses(cfg, patients, rng)
    claims = clean_claims(cfg, world, facts, patients, course, b, rng)
    plant_mistakes(claims, Slips(cfg, world, facts, rng))
    return outcomes(cfg, world, ref, to_lines(claims, world, rng), rng)


def iter_chunks(
    cfg: SimConfig, ref: Reference | None = None, pack: RulePack | None = None
) -> Iterator[pd.DataFrame]:
    """Chunks of the history (whole claims), `cfg.chunk_blocks` blocks each, until ~cfg.lines."""
    ref = ref or load_reference()
    facts = PackFacts.from_pack(pack or load_pack())
    world = build_world(cfg)
    done, b = 0, 0
    while done < cfg.lines:
        frames = []
        for _ in range(cfg.chunk_blocks):
            frames.append(simulate_block(cfg, world, facts, ref, b))
            b += 1
            done += len(frames[-1])
            if done >= cfg.lines:
                break
        chunk = pd.concat(frames, ignore_index=True)
        if done > cfg.lines:  # stop at the last whole claim within the requested lines
            cut = len(chunk) - (done - cfg.lines)
            ids = chunk["claim_id"].to_numpy()
            if cut < len(chunk) and cut > 0 and ids[cut] == ids[cut - 1]:
                cut = int(np.flatnonzero(ids[:cut] != ids[cut - 1]).max(initial=-1)) + 1
            chunk = chunk.iloc[:cut]
        yield chunk[COLUMN_ORDER].reset_index(drop=True)


def simulate(
    cfg: SimConfig | None = None, ref: Reference | None = None, pack: RulePack | None = None
) -> pd.DataFrame:
    """The whole history in memory (for tests and notebooks; use `write_history` at scale)."""
    return pd.concat(list(iter_chunks(cfg or SimConfig(), ref, pack)), ignore_index=True)


DENIAL_GROUPS = {
    "CO-16": "missing information",
    "CO-197": "authorization",
    "CO-50": "medical necessity",
    "CO-11": "medical necessity",
    "CO-4": "coding error",
    "CO-181": "coding error",
    "CO-151": "coding error",
    "CO-29": "timely filing",
    "CO-18": "duplicate",
    "CO-119": "frequency",
    "CO-96": "not covered",
    "CO-58": "place of service",
    "CO-45": "contract / fee schedule",
}


@dataclass
class HistorySummary:
    """Running totals a simulation prints: lines, claims, denial rates, denial causes."""

    lines: int = 0
    claims: int = 0
    denied: int = 0
    by_payer_type: dict = field(default_factory=dict)  # type -> [lines, denied]
    by_carc: dict = field(default_factory=dict)
    by_group: dict = field(default_factory=dict)
    planted_lines: int = 0

    def add(self, chunk: pd.DataFrame) -> None:
        self.lines += len(chunk)
        self.claims += chunk["claim_id"].nunique()
        self.denied += int(chunk["denied"].sum())
        self.planted_lines += int((chunk["planted_categories"] != "").sum())
        g = chunk.groupby("payer_type", observed=True)["denied"].agg(["size", "sum"])
        for t, row in g.iterrows():
            cur = self.by_payer_type.setdefault(t, [0, 0])
            cur[0] += int(row["size"])
            cur[1] += int(row["sum"])
        for carc, n in chunk.loc[chunk["denied"], "carc_codes"].value_counts().items():
            self.by_carc[carc] = self.by_carc.get(carc, 0) + int(n)
            grp = DENIAL_GROUPS.get(carc, "other")
            self.by_group[grp] = self.by_group.get(grp, 0) + int(n)

    @property
    def denial_rate(self) -> float:
        return self.denied / self.lines if self.lines else 0.0

    def payer_rates(self) -> dict[str, float]:
        return {t: d / n for t, (n, d) in sorted(self.by_payer_type.items())}

    def to_dict(self) -> dict:
        return {
            "lines": self.lines,
            "claims": self.claims,
            "denial_rate": self.denial_rate,
            "denial_rate_by_payer_type": self.payer_rates(),
            "denials_by_carc": self.by_carc,
            "denials_by_group": self.by_group,
            "lines_with_planted_breaks": self.planted_lines,
        }


def _schema():
    import pyarrow as pa

    s, f, d = pa.string(), pa.float64(), pa.timestamp("ns")
    types = {
        "claim_id": s,
        "line_number": pa.int64(),
        "patient_id": s,
        "provider_npi": s,
        "payer_id": s,
        "payer_type": s,
        "service_date": d,
        "submission_date": d,
        "place_of_service": s,
        "hcpcs_code": s,
        "modifiers": s,
        "units": f,
        "billed_amount": f,
        "dose_mg": f,
        "ndc": s,
        "ndc_quantity": f,
        "ndc_unit": s,
        "drug_description": s,
        "diagnosis_codes": s,
        "prior_auth_number": s,
        "documentation": s,
        "denied": pa.bool_(),
        "carc_codes": s,
        "paid_amount": f,
        "adjudication_date": d,
        "p_true": f,
        "planted_categories": s,
    }
    return pa.schema([(c, types[c]) for c in COLUMN_ORDER])


def write_history(
    cfg: SimConfig,
    path: str | Path,
    ref: Reference | None = None,
    on_chunk: Any = None,
    pack: RulePack | None = None,
) -> HistorySummary:
    """Simulate and write in chunks (Parquet row groups, or CSV / CSV.gz rows); memory stays
    flat, and a failed run leaves no file behind."""
    summary = HistorySummary()
    schema = _schema()
    writer = TableWriter(path, schema)
    try:
        for chunk in iter_chunks(cfg, ref, pack):
            writer.write(pa.Table.from_pandas(chunk, preserve_index=False, schema=schema))
            summary.add(chunk)
            if on_chunk is not None:
                on_chunk(summary)
        writer.finish(schema.empty_table())
    except BaseException:
        writer.abort()
        raise
    writer.commit()
    return summary
