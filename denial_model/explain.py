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
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from denial_model.groups import UNFIXABLE_CATEGORIES
from denial_model.rules.engine import RuleResult, per_rules
from denial_model.rules.kinds import KINDS, LineEdits

if TYPE_CHECKING:
    from denial_model.features.claim import FeatureColumns
from denial_model.rules.pack import CATEGORIES
from denial_model.table import ClaimFrame, own_frame

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
    row, rule = result.pairs
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


def _fixable(rules) -> np.ndarray:
    return np.array([r.category not in UNFIXABLE_CATEGORIES for r in rules], dtype=bool)


def _reason_texts(rules) -> pa.Array:
    return pa.array(
        [f"{r.id} ({r.carc}{'/' + r.remark if r.remark else ''}): {r.message}" for r in rules], pa.string()
    )


def _fix_texts(rules) -> pa.Array:
    return pa.array([r.fix.rstrip(". ") + ": " for r in rules], pa.string())


def fixable_pairs(result: RuleResult) -> tuple[np.ndarray, np.ndarray]:
    """The (line, fired rule) pairs whose finding a change to the claim can cure (all but
    `groups.UNFIXABLE_CATEGORIES`), sorted by line."""
    rows, rules = result.pairs
    fixable = per_rules(result.rules, "fixable", _fixable)
    keep = fixable[rules] if len(rules) else np.zeros(0, dtype=bool)
    return rows[keep], rules[keep]


def zeroed_fixes(
    predictor, prepared, result: RuleResult, p: np.ndarray, skip: np.ndarray | None = None
) -> np.ndarray:
    """`p` with every line's fixable findings corrected at the feature level (their rule
    features set to 0 together); `p` itself for a line without one, or one in `skip` (a
    bool mask: lines answered otherwise)."""
    out = np.array(p, dtype=float, copy=True)
    rows, rules = fixable_pairs(result)
    if skip is not None and len(rows):
        keep = ~skip[rows]
        rows, rules = rows[keep], rules[keep]
    if len(rows):
        out[np.unique(rows)] = predictor.proba_zeroed_sets(
            prepared, rows, [result.rules[j].id for j in rules]
        )
    return out


def repaired(frame: ClaimFrame, result: RuleResult, rows: np.ndarray, rules: np.ndarray, pack):
    """(the lines of every patient with a finding its kind can repair, copied with those
    findings repaired (`rules.kinds` repairs), and their positions in the lines), or None.
    Whole patients go together, so the cross-line rules and the claim context of a
    repaired line are read as for the original."""
    repairs = [KINDS[result.rules[j].kind].repairs for j in rules]
    can = np.array([r is not None for r in repairs], dtype=bool)
    if not can.any():
        return None
    patient = frame.factor("patient_id")[0]
    take = np.flatnonzero(np.isin(patient, patient[rows[can]]))
    lines = frame.df
    sub = own_frame(lines if len(take) == frame.n else lines.iloc[take])
    at = np.searchsorted(take, rows[can])
    policies = {pol.name: pol for pol in pack.policies}
    edits = LineEdits(sub)
    for j in np.unique(rules[can]):
        rule = result.rules[j]
        KINDS[rule.kind].repairs(edits, at[rules[can] == j], rule.params, policies.get(rule.policy))
    return edits.frame(), take


def _join_per_line(n: int, rows: np.ndarray, pieces: pa.Array) -> pa.Array:
    """' | '-join the pieces of each line (`rows` sorted); '' for a line without any."""
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), pieces), SEP)


def _fixes(
    findings: Findings, result: RuleResult, p: np.ndarray, how: pa.Array, after_fixes: np.ndarray
) -> tuple[np.ndarray, pa.Array]:
    """(line of each fix piece, the pieces), a line's pieces in order. A line with several
    fixable findings first gets what correcting them all together buys; a line with one
    fixable finding gets that fix with the re-scored probability of the corrected claim;
    other fixes carry their feature-level counterfactual. A fix that does not lower the
    probability as shown ("1.00 -> 1.00") is not offered."""
    rows, rule, after = findings.row, findings.rule, np.array(findings.after, dtype=float, copy=True)
    fixable = per_rules(result.rules, "fixable", _fixable)[rule]
    count = np.bincount(rows[fixable], minlength=len(p))
    single = fixable & (count[rows] == 1)
    after[single] = after_fixes[rows[single]]
    shown = _prob_index(p)
    helps = _prob_index(after) < shown[rows]
    together = np.flatnonzero((count >= 2) & (_prob_index(after_fixes) < shown))
    texts = pa.array([f"correct all {k} findings together: " for k in range(int(count.max(initial=0)) + 1)])
    pieces = pa.concat_arrays(
        [
            pc.binary_join_element_wise(
                texts.take(pa.array(count[together])),
                _PROB_ARROW.take(pa.array(shown[together])),
                _PROB.take(pa.array(_prob_index(after_fixes[together]))),
                "",
            ),
            pc.binary_join_element_wise(
                how.take(pa.array(rule[helps])),
                _PROB_ARROW.take(pa.array(shown[rows[helps]])),
                _PROB.take(pa.array(_prob_index(after[helps]))),
                "",
            ),
        ]
    )
    at = np.r_[together, rows[helps]]
    order = np.argsort(at, kind="stable")  # per line: all together first, then the single fixes
    return at[order], pieces.take(pa.array(order))


def reasons_and_fixes(
    findings: Findings,
    result: RuleResult,
    p: np.ndarray,
    high: float,
    prior: float,
    features: pd.DataFrame | FeatureColumns,
    payer: pd.Series,
    code: pd.Series,
    after_fixes: np.ndarray | None = None,
) -> tuple[pa.Array, pa.Array]:
    """Per line: reasons and fixes strings, most important first, ' | '-separated.

    `features` holds the history rates (`hist_payer_code_rate`, `hist_provider_rate`) and,
    for models of 0.5 on, the claim context (`claim_other_<category>`) that word the learned
    reason; `payer` and `code` name the line's payer and code; `after_fixes` the probability
    with all of a line's fixable findings corrected (`Scorer.after_fixes`), see `_fixes`."""
    n = len(p)
    what = per_rules(result.rules, "reason_texts", _reason_texts)
    how = per_rules(result.rules, "fix_texts", _fix_texts)
    rows, rule = findings.row, findings.rule
    reason_pieces = what.take(pa.array(rule))
    fix_rows, fix_pieces = _fixes(findings, result, p, how, p if after_fixes is None else after_fixes)
    learned = np.flatnonzero((np.bincount(rows, minlength=n) == 0) & (p >= high))
    if len(learned):
        pc_rate = np.asarray(features["hist_payer_code_rate"], dtype=float)[learned]
        pv_rate = np.asarray(features["hist_provider_rate"], dtype=float)[learned]
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
        fix_order = np.argsort(np.r_[fix_rows, learned], kind="stable")
        fix_rows = np.r_[fix_rows, learned][fix_order]
        fix_pieces = pa.concat_arrays([fix_pieces, pa.array(fix, pa.string())]).take(pa.array(fix_order))
    return _join_per_line(n, rows, reason_pieces), _join_per_line(n, fix_rows, fix_pieces)


def _sibling_finding(features: pd.DataFrame | FeatureColumns, rows: np.ndarray) -> np.ndarray | None:
    """For `rows`: the categories the claim's other lines have findings of, most lines first,
    ', '-joined ('' for none); None for a model without claim context."""
    cols = [f"claim_other_{c}" for c in CATEGORIES]
    if cols[0] not in features:
        return None
    counts = np.column_stack([np.asarray(features[c], dtype=float)[rows] for c in cols])
    patterns, inverse = np.unique(counts, axis=0, return_inverse=True)
    names = [c.replace("_", " ") for c in CATEGORIES]
    text = [
        ", ".join(names[j] for j in np.argsort(-row, kind="stable") if row[j] > 0) for row in patterns
    ]  # one string per distinct pattern of the claim's other lines, not per line
    return np.array(text, dtype=object)[inverse.ravel()] if len(rows) else np.zeros(0, dtype=object)
