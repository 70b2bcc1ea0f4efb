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


def counterfactuals(
    classifier, features: pd.DataFrame, result: RuleResult, p: np.ndarray
) -> dict[str, np.ndarray]:
    """rule id -> probability after correcting that finding (NaN where the rule did not fire).

    Every (line, fired rule) pair becomes one row of a single frame, scored in one call."""
    hits = result.hits
    blocks = [(j, np.flatnonzero(hits[:, j])) for j in range(hits.shape[1])]
    blocks = [(j, rows) for j, rows in blocks if len(rows)]
    if not blocks:
        return {}
    all_rows = np.concatenate([rows for _, rows in blocks])
    big = features.iloc[all_rows].reset_index(drop=True)
    start = 0
    for j, rows in blocks:
        col = result.rules[j].id
        values = big[col].to_numpy(copy=True)
        values[start : start + len(rows)] = 0.0
        big[col] = values
        start += len(rows)
    scored = classifier.predict_proba(big)[:, 1]
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
    """Per line: reasons and fixes strings, most important first, ' | '-separated."""
    n = len(p)
    rules = {r.id: r for r in result.rules}
    ids = list(after)
    if ids:
        drops = np.column_stack([p - after[i] for i in ids])  # NaN where not fired
        order = np.argsort(-np.nan_to_num(drops, nan=-np.inf), axis=1, kind="stable")
    reasons = np.full(n, "", dtype=object)
    fixes = np.full(n, "", dtype=object)
    if ids:
        fired = ~np.isnan(drops)
        n_fired = fired.sum(axis=1)
        after_m = np.column_stack([after[i] for i in ids])
        what = np.array(
            [
                f"{i} ({rules[i].carc}{'/' + rules[i].remark if rules[i].remark else ''}): {rules[i].message}"
                for i in ids
            ],
            dtype=object,
        )
        how = np.array([rules[i].fix + ": " for i in ids], dtype=object)
        p_text = np.char.mod("%.2f", p).astype(object)
        for k in range(int(n_fired.max(initial=0))):  # rank by rank, all lines at once
            rows = np.flatnonzero(n_fired > k)
            j = order[rows, k]
            sep = SEP if k else ""
            a_text = np.char.mod("%.2f", after_m[rows, j]).astype(object)
            reasons[rows] = reasons[rows] + sep + what[j]
            fixes[rows] = fixes[rows] + sep + how[j] + p_text[rows] + " -> " + a_text
    learned = (reasons == "") & (p >= high)
    if learned.any():
        pc = features["hist_payer_code_rate"].to_numpy(dtype=float)
        pv = features["hist_provider_rate"].to_numpy(dtype=float)
        use_pc = pc >= pv
        rate = np.where(use_pc, pc, pv)
        who = np.where(
            use_pc, "payer " + payer.astype(str) + " on " + code.astype(str), "this provider's lines"
        )
        text = (
            "learned from history (no rule fired): "
            + who.astype(object)
            + " were denied at "
            + pd.Series(rate * 100).round(0).astype(int).astype(str).to_numpy(dtype=object)
            + f"% vs {prior * 100:.0f}% overall"
        )
        reasons[learned] = text[learned]
        fixes[learned] = "check this payer's current policy for the code before sending (no rule names it)"
    return reasons, fixes
