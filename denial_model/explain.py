"""Reasons and fixes a coder can act on.

For every rule that fired on a line, the line is re-scored with that finding corrected (its
rule feature set to 0), all lines of the batch at once per rule; reasons are ordered by how
much each correction lowers the probability, and each fix carries the probability after it
("add JZ modifier: 0.71 -> 0.12"). A line with a high score and no rule hit gets a reason
from what the model learned from history (the payer-code pair's or the provider's denial
rate), worded as such.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from denial_model.rules.engine import RuleResult

SEP = " | "
_PROB_TEXT = np.array([f"{i / 100:.2f}" for i in range(101)], dtype=object)


def _prob_text(p: np.ndarray) -> np.ndarray:
    """Probabilities as two-decimal strings, by lookup (no per-line formatting)."""
    return _PROB_TEXT[np.clip(np.rint(np.asarray(p) * 100), 0, 100).astype(np.int64)]


def counterfactuals(predictor, prepared, result: RuleResult, p: np.ndarray) -> dict[str, np.ndarray]:
    """rule id -> probability after correcting that finding (NaN where the rule did not fire).

    `predictor` is a `denial_model.predict` predictor and `prepared` its `prepare(features)`.
    Every (line, fired rule) pair becomes one row of a single block, scored in one call."""
    hits = result.hits
    blocks = [(j, np.flatnonzero(hits[:, j])) for j in range(hits.shape[1])]
    blocks = [(j, rows) for j, rows in blocks if len(rows)]
    if not blocks:
        return {}
    big = predictor.take(prepared, np.concatenate([rows for _, rows in blocks]))
    start = 0
    for j, rows in blocks:
        predictor.set_zero(big, slice(start, start + len(rows)), result.rules[j].id)
        start += len(rows)
    scored = predictor.proba(big)
    out: dict[str, np.ndarray] = {}
    start = 0
    for j, rows in blocks:
        after = np.full(len(p), np.nan)
        after[rows] = scored[start : start + len(rows)]
        out[result.rules[j].id] = after
        start += len(rows)
    return out


def reasons_and_fixes(
    features: pd.DataFrame,
    result: RuleResult,
    p: np.ndarray,
    after: dict[str, np.ndarray],
    high: float,
    prior: float,
    payer: np.ndarray,
    code: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per line: reasons and fixes strings, most important first, ' | '-separated.

    Works on the (line, fired rule) pairs only, sorted once by line and by how much the fix
    lowers the probability; the strings are then assembled rank by rank for all lines."""
    n = len(p)
    rules = {r.id: r for r in result.rules}
    ids = list(after)
    reasons = np.full(n, "", dtype=object)
    fixes = np.full(n, "", dtype=object)
    if ids:
        after_m = np.column_stack([after[i] for i in ids])
        row, j = np.nonzero(~np.isnan(after_m))
        a = after_m[row, j]
        order = np.lexsort((j, a, row))  # by line, then lowest probability after the fix first
        row, j, a = row[order], j[order], a[order]
        first = np.r_[0, np.flatnonzero(np.diff(row)) + 1]
        rank = np.arange(len(row)) - np.repeat(first, np.diff(np.r_[first, len(row)]))
        what = np.array(
            [
                f"{i} ({rules[i].carc}{'/' + rules[i].remark if rules[i].remark else ''}): {rules[i].message}"
                for i in ids
            ],
            dtype=object,
        )
        how = np.array([rules[i].fix.rstrip(". ") + ": " for i in ids], dtype=object)
        p_text = _prob_text(p)
        a_text = _prob_text(a)
        for k in range(int(rank.max(initial=-1)) + 1):
            sel = rank == k
            r, jj = row[sel], j[sel]
            sep = SEP if k else ""
            reasons[r] = reasons[r] + sep + what[jj]
            fixes[r] = fixes[r] + sep + how[jj] + p_text[r] + " -> " + a_text[sel]
    learned = np.flatnonzero((reasons == "") & (p >= high))
    if len(learned):
        pc = features["hist_payer_code_rate"].to_numpy(dtype=float)[learned]
        pv = features["hist_provider_rate"].to_numpy(dtype=float)[learned]
        use_pc = pc >= pv
        rate = np.rint(np.where(use_pc, pc, pv) * 100).astype(np.int64).astype(str).astype(object)
        who = np.where(
            use_pc,
            "payer " + payer[learned].astype(str) + " on " + code[learned].astype(str),
            "this provider's lines",
        ).astype(object)
        reasons[learned] = (
            "learned from history (no rule fired): " + who + " were denied at " + rate
        ) + f"% vs {prior * 100:.0f}% overall"
        fixes[learned] = "check this payer's current policy for the code before sending (no rule names it)"
    return reasons, fixes
