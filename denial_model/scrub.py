"""The claim scrubber: rules alone, over a file or a DataFrame.

`check_frame` returns the input rows that passed validation plus `rule_hits` and
`rule_carcs`, and the rejects; `check_file` does the same from and to CSV/Parquet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from denial_model.files import read_table, refuse_overwriting_input, write_table
from denial_model.rules.engine import RuleResult, evaluate
from denial_model.rules.pack import CATEGORIES, RulePack, load_pack
from denial_model.table import (
    READ_PROBLEM,
    ClaimFrame,
    check_date_format,
    frame_from_arrow,
    rejects_table,
    validate,
)


@dataclass
class CheckResult:
    checked: pd.DataFrame  # input rows (original values) + rule_hits + rule_carcs
    rejects: pd.DataFrame
    result: RuleResult
    rows_in: int

    def summary(self) -> dict:
        """Lines, lines with findings, and lines per category, for reports and the CLI."""
        cats = self.result.category_hits()
        return {
            "rows_in": self.rows_in,
            "lines_checked": len(self.checked),
            "lines_rejected": len(self.rejects),
            "lines_with_findings": int((self.checked["rule_hits"] != "").sum()),
            "lines_with_deny_findings": int(self.result.deny_hit().sum()),
            "by_category": {c: int(cats[c].sum()) for c in CATEGORIES},
        }


def check_frame(
    raw: pd.DataFrame, pack: RulePack | None = None, date_format: str | None = None
) -> CheckResult:
    """Validate and scrub a raw claim-line table; input values are written back unchanged.
    `date_format`: text dates in that strftime format are read too (see `table.validate`)."""
    pack = pack or load_pack()
    v = validate(raw, date_format=date_format)
    result = evaluate(ClaimFrame(v.lines), pack)
    checked = raw.iloc[v.rows].reset_index(drop=True).drop(columns=READ_PROBLEM, errors="ignore")
    checked["rule_hits"] = result.rule_hits
    checked["rule_carcs"] = result.carcs
    return CheckResult(checked=checked, rejects=v.rejects, result=result, rows_in=v.rows_in)


def check_block(
    table, rows, pack: RulePack, date_format: str | None = None
) -> tuple[pa.Table, np.ndarray, pa.Table, RuleResult]:
    """The rules on one block of raw input rows (Arrow): (the rows that passed, as they came,
    plus `rule_hits` and `rule_carcs`; their input row numbers; the rejects; the rule
    result). What a Spark worker does to each block of whole patients."""
    v = validate(frame_from_arrow(table), keep_extra=False, date_format=date_format)
    result = evaluate(ClaimFrame(v.lines), pack)
    out = table.take(pa.array(v.rows, pa.int64()))
    out = out.append_column("rule_hits", pa.array(result.rule_hits, pa.string()))
    out = out.append_column("rule_carcs", pa.array(result.carcs, pa.string()))
    return out, rows[v.rows], rejects_table(v.rejects, rows), result


def check_file(
    input_path: str | Path,
    output_path: str | Path,
    rejects_path: str | Path | None = None,
    pack: RulePack | None = None,
    date_format: str | None = None,
) -> CheckResult:
    refuse_overwriting_input(input_path, output_path, rejects_path)
    check_date_format(date_format)  # an option error before the file is read
    res = check_frame(read_table(input_path), pack, date_format)
    write_table(res.checked, output_path)
    if rejects_path is not None:
        write_table(res.rejects, rejects_path)
    return res
