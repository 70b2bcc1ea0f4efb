"""Reasons and fixes a coder can act on.

For every rule that fired on a line, the line is re-scored with that finding corrected (its
rule feature set to 0), all lines of the batch at once per rule; reasons are ordered by how
much each correction lowers the probability, and each fix carries the probability after it
("add JZ modifier: 0.71 -> 0.12"). A line with a high score and no rule hit gets a reason
from what the model learned from history (the claim's other line's finding, else the
payer-code pair's or the provider's denial rate), worded as such.

The strings are assembled by Arrow from the (line, finding) pairs, so no Python string is
made per line: a batch of millions of lines costs a few Arrow kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from denial_model.rules.engine import RuleResult
from denial_model.rules.pack import CATEGORIES

SEP = " | "
_PROB_TEXT = [f"{i / 100:.2f}" for i in range(101)]
_PROB = pa.array(_PROB_TEXT)
_PROB_ARROW = pa.array([t + " -> " for t in _PROB_TEXT])


def _prob_index(p: np.ndarray) -> np.ndarray:
    """Probabilities as indexes into the two-decimal texts (no per-line formatting)."""
    return np.clip(np.rint(np.asarray(p) * 100), 0, 100).astype(np.int64)


@dataclass
class Findings:
    """The (line, fired rule) pairs of a batch with the probability after each fix, sorted by
    line and then by that probability (the most helpful fix first)."""

    row: np.ndarray
    rule: np.ndarray  # index into the rule result's rules
    after: np.ndarray


# Up to this many (line, finding) pairs, the corrected rows are stacked and scored in one
# pass over all trees; above it, each rule's rows are re-scored on the trees that use the
# rule (fewer row walks, more calls). Measured crossover: 20k pairs (about 60k lines).
STACKED_PAIRS = 20_000


def counterfactuals(predictor, prepared, result: RuleResult, raw: np.ndarray) -> Findings:
    """Probability after correcting each finding, for every (line, fired rule) pair.

    `predictor` is a `denial_model.predict` predictor, `prepared` its `prepare(...)` of the
    lines and `raw` its `raw(prepared)`."""
    row, rule = np.nonzero(result.hits)
    if 0 < len(row) <= STACKED_PAIRS:
        after = predictor.proba_zeroed_pairs(prepared, row, [result.rules[j].id for j in rule])
        by_line = np.lexsort((rule, after, row))
        return Findings(row=row[by_line], rule=rule[by_line], after=after[by_line])
    after = np.empty(len(row))
    order = np.argsort(rule, kind="stable")
    bounds = np.searchsorted(rule[order], np.arange(len(result.rules) + 1))
    for j in np.flatnonzero(np.diff(bounds)):
        sel = order[bounds[j] : bounds[j + 1]]
        after[sel] = predictor.proba_zeroed(prepared, raw, row[sel], result.rules[j].id)
    by_line = np.lexsort((rule, after, row))
    return Findings(row=row[by_line], rule=rule[by_line], after=after[by_line])


def _join_per_line(n: int, rows: np.ndarray, pieces: pa.Array) -> pa.Array:
    """' | '-join the pieces of each line (`rows` sorted); '' for a line without any."""
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), pieces), SEP)


def reasons_and_fixes(
    findings: Findings,
    result: RuleResult,
    p: np.ndarray,
    high: float,
    prior: float,
    features: pd.DataFrame,
    payer: pd.Series,
    code: pd.Series,
) -> tuple[pa.Array, pa.Array]:
    """Per line: reasons and fixes strings, most important first, ' | '-separated.

    `features` holds the history rates (`hist_payer_code_rate`, `hist_provider_rate`) and,
    for models of 0.5 on, the claim context (`claim_other_<category>`) that word the learned
    reason; `payer` and `code` name the line's payer and code."""
    n = len(p)
    rules = result.rules
    what = pa.array(
        [f"{r.id} ({r.carc}{'/' + r.remark if r.remark else ''}): {r.message}" for r in rules], pa.string()
    )
    how = pa.array([r.fix.rstrip(". ") + ": " for r in rules], pa.string())
    rows, rule, after = findings.row, findings.rule, findings.after
    reason_pieces = what.take(pa.array(rule))
    fix_pieces = pc.binary_join_element_wise(
        how.take(pa.array(rule)),
        _PROB_ARROW.take(pa.array(_prob_index(p)[rows])),
        _PROB.take(pa.array(_prob_index(after))),
        "",
    )
    learned = np.flatnonzero((np.bincount(rows, minlength=n) == 0) & (p >= high))
    if len(learned):
        pc_rate = features["hist_payer_code_rate"].to_numpy(dtype=float)[learned]
        pv_rate = features["hist_provider_rate"].to_numpy(dtype=float)[learned]
        use_pc = pc_rate >= pv_rate
        rate = np.rint(np.where(use_pc, pc_rate, pv_rate) * 100).astype(np.int64).astype(str).astype(object)
        payer_l = payer.iloc[learned].astype(str).to_numpy(dtype=object)
        code_l = code.iloc[learned].astype(str).to_numpy(dtype=object)
        who = np.where(use_pc, "payer " + payer_l + " on " + code_l, "this provider's lines").astype(object)
        text = ("learned from history (no rule fired): " + who + " were denied at " + rate) + (
            f"% vs {prior * 100:.0f}% overall"
        )
        fix = np.full(
            len(learned),
            "check this payer's current policy for the code before sending (no rule names it)",
            dtype=object,
        )
        sibling = _sibling_finding(features, learned)
        if sibling is not None:
            has = sibling != ""
            text = np.where(
                has,
                "learned from history (no rule fired on this line): it goes down with its claim, "
                "whose other lines have findings of " + sibling,
                text,
            ).astype(object)
            fix = np.where(
                has,
                "correct the claim's other lines first ("
                + sibling
                + "): payers deny a claim's lines together",
                fix,
            ).astype(object)
        order = np.argsort(np.r_[rows, learned], kind="stable")
        rows = np.r_[rows, learned][order]
        reason_pieces = pa.concat_arrays([reason_pieces, pa.array(text, pa.string())]).take(pa.array(order))
        fix_pieces = pa.concat_arrays([fix_pieces, pa.array(fix, pa.string())]).take(pa.array(order))
    return _join_per_line(n, rows, reason_pieces), _join_per_line(n, rows, fix_pieces)


def _sibling_finding(features: pd.DataFrame, rows: np.ndarray) -> np.ndarray | None:
    """For `rows`: the categories the claim's other lines have findings of, most lines first,
    ', '-joined ('' for none); None for a model without claim context."""
    cols = [f"claim_other_{c}" for c in CATEGORIES]
    if cols[0] not in features.columns:
        return None
    counts = features[cols].to_numpy(dtype=float)[rows]
    patterns, inverse = np.unique(counts, axis=0, return_inverse=True)
    names = [c.replace("_", " ") for c in CATEGORIES]
    text = [
        ", ".join(names[j] for j in np.argsort(-row, kind="stable") if row[j] > 0) for row in patterns
    ]  # one string per distinct pattern of the claim's other lines, not per line
    return np.array(text, dtype=object)[inverse.ravel()] if len(rows) else np.zeros(0, dtype=object)
