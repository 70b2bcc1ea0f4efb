"""X12 in: 837P claims and 835 remittances as the claim-line table.

`ingest(claims, remits)` reads 837P files (`claims.py`), and 835 files (`remits.py`) when
given, and joins them (`history.py`) into the labeled history `train` takes; without
remits it gives the unlabeled lines `check` and `score` take, so a nightly 837 batch can be
scored before it is sent. `segments.py` splits each file by the separators its ISA
declares and checks the envelopes; errors name the file and the segment position.
`write_x12` writes a history (a simulated one) as the 837P and 835 a practice would hold
(`writers.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from denial_model.errors import ConfigError
from denial_model.table import PAYER_TYPES, REJECT_COLUMNS

__all__ = ["Ingested", "dose_from_ndc", "ingest", "load_payer_map", "write_x12", "x12_files"]

_GENERIC = (".x12", ".edi", ".txt")


@dataclass
class Ingested:
    """The claim-line table read (labeled when remits were given), the remit lines that
    met no claim line, the counts, and what was read leniently (`notes`)."""

    lines: pd.DataFrame
    rejects: pd.DataFrame
    counts: dict[str, int]
    notes: list[str] = field(default_factory=list)


def x12_files(paths: list[str | Path], kind: str = "") -> list[Path]:
    """The files named; a folder stands for its files of that kind (`.837` or `.835`, and
    `.x12`, `.edi`, `.txt`), sorted. A file of the other kind named is an error when read."""
    out: list[Path] = []
    suffixes = (f".{kind}", *_GENERIC) if kind else (".837", ".835", *_GENERIC)
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in suffixes))
        else:
            out.append(p)
    return out


def load_payer_map(path: str | Path | None) -> dict[str, str]:
    """A YAML mapping payer id -> payer type, overriding the claim filing indicator."""
    if path is None:
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the payer map: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the payer map must map payer ids to payer types")
    for payer, kind in data.items():
        if kind not in PAYER_TYPES:
            raise ConfigError(f"{path}: payer {payer!r}: {kind!r} is not one of {', '.join(PAYER_TYPES)}")
    return {str(k): v for k, v in data.items()}


def dose_from_ndc(lines: pd.DataFrame) -> pd.Series:
    """The administered milligrams an 837 implies, where the NDC quantity says it: ME
    (milligrams) as is, GR x 1000, UN x the milligrams in one item of a single-dose package
    the rule pack lists (`Product`); otherwise (milliliters need a concentration, and a
    multiple-dose vial is not used up by one dose): NaN, an unknown dose."""
    from denial_model.rules.pack import load_pack

    single = {
        p.ndc: p.mg_per_item
        for pol in load_pack().policies
        for p in pol.products
        if p.container == "single_dose"
    }
    qty = pd.to_numeric(lines["ndc_quantity"], errors="coerce")
    unit = lines["ndc_unit"].astype(str)
    per_item = lines["ndc"].map(single).astype(float)
    mg = (
        qty.where(unit == "ME")
        .fillna((qty * 1000).where(unit == "GR"))
        .fillna((qty * per_item).where(unit == "UN"))
    )
    return mg.round(3)


def ingest(
    claims: list[str | Path], remits: list[str | Path] | None = None, payer_map: dict[str, str] | None = None
) -> Ingested:
    """837P claim files (and 835 remit files) as the claim-line table."""
    from denial_model.x12.claims import read_837
    from denial_model.x12.history import join_remits, latest_claims
    from denial_model.x12.remits import read_835

    notes: list[str] = []
    sent = read_837(x12_files(claims, "837"), payer_map, notes)
    lines = latest_claims(sent).reset_index(drop=True)
    lines["dose_mg"] = dose_from_ndc(lines)
    counts = {
        "837 lines read": len(sent),
        "837 lines superseded (claim sent again, or voided)": len(sent) - len(lines),
        "claim lines": len(lines),
    }
    if not remits:
        empty = pd.DataFrame({c: pd.Series(dtype="int64" if c == "row" else object) for c in REJECT_COLUMNS})
        return Ingested(lines, empty, counts, notes)
    joined = join_remits(lines, read_835(x12_files(remits, "835"), notes))
    return Ingested(joined.lines, joined.rejects, {**counts, **joined.counts}, notes)


def write_x12(history: pd.DataFrame, folder: str | Path) -> tuple[Path, Path]:
    """A claim-line history with outcomes as `folder/claims.837` and `folder/remits.835`."""
    from denial_model.x12.writers import write_835, write_837

    folder = Path(folder)
    claims, remits = folder / "claims.837", folder / "remits.835"
    write_837(history, claims)
    write_835(history, remits)
    return claims, remits
