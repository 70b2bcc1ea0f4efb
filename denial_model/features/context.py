"""Features a line's own rule hits do not carry: its claim, its kind, its raw attributes.

- **Claim context.** Payers adjudicate claims: when the drug line goes down for a missing
  authorization or an unsupported diagnosis, its administration line and visit usually go
  with it. Each line sees how many *other* lines of its claim have a finding of each
  category, how many drug lines the claim has, and whether any line of the claim carries an
  authorization number. A claim is never split across scoring chunks, so these are exact
  however a table is cut.
- **Line kind** (drug, administration, visit, other): the same finding means different
  things on different kinds of line.
- **Multi-hot attributes.** Every documentation token, and the modifiers and diagnosis
  groups (first three characters of each ICD-10-CM code) frequent in the fitting history,
  as 0/1 columns of their own, so the model can learn a payer's preference that no rule
  names. Documentation that is not known (an ingested 837) is -1, a value of its own, not
  absent (0); not missing either, so a history with none known still trains.

All of it reads the table being scored (never labels) and works per distinct value.
"""

from __future__ import annotations

import numpy as np

from denial_model.rules.engine import RuleResult
from denial_model.rules.pack import CATEGORIES
from denial_model.table import DOCUMENTATION_TOKENS, ClaimFrame

__all__ = [
    "CONTEXT_NUMERIC",
    "LINE_KINDS",
    "claim_context",
    "claim_max",
    "line_kinds",
    "multi_hot",
    "multi_hot_names",
    "vocabulary",
]

LINE_KINDS = ("drug", "administration", "visit", "other")
# CPT ranges: drug administration 96360-96549; evaluation and management 99202-99499
_ADMINISTRATION = (96360, 96549)
_VISIT = (99202, 99499)
CONTEXT_NUMERIC = (
    "claim_lines",
    "claim_other_drug_lines",
    "claim_prior_auth",
    "claim_billed_amount",
    *(f"claim_other_{c}" for c in CATEGORIES),
)


def _code_number(code: object) -> float:
    """A code as a number (CPT codes are digits), NaN for any other (HCPCS J-codes...)."""
    try:
        return float(str(code))
    except ValueError:
        return np.nan


def line_kinds(frame: ClaimFrame, drug_line: np.ndarray) -> np.ndarray:
    """Index into LINE_KINDS per line: drug where the engine says so, else by CPT range."""
    numeric = frame.per_value("hcpcs_code", _code_number)
    kind = np.select(
        [
            (numeric >= _ADMINISTRATION[0]) & (numeric <= _ADMINISTRATION[1]),
            (numeric >= _VISIT[0]) & (numeric <= _VISIT[1]),
        ],
        [1, 2],
        default=3,
    )
    return np.where(drug_line, 0, kind)


def claim_max(frame: ClaimFrame, values: np.ndarray) -> np.ndarray:
    """Per line, the largest of `values` over the lines of its claim."""
    claim = frame.factor("claim_id")[0]
    if not frame.n:
        return np.zeros(0)
    top = np.full(int(claim.max()) + 1, -np.inf)
    np.maximum.at(top, claim, values)
    return top[claim]


def claim_context(frame: ClaimFrame, result: RuleResult) -> dict[str, np.ndarray]:
    """CONTEXT_NUMERIC columns: each line's view of the other lines of its claim."""
    claim = frame.factor("claim_id")[0]
    n_claims = int(claim.max()) + 1 if len(claim) else 0

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(claim, weights=values.astype(float), minlength=n_claims)[claim]

    drug = result.drug_line.astype(float)
    has_pa = frame.filled("prior_auth_number")
    out = {
        "claim_lines": total(np.ones(frame.n)),
        "claim_other_drug_lines": total(drug) - drug,
        "claim_prior_auth": (total(has_pa) > 0).astype(float),
        "claim_billed_amount": total(frame.values("billed_amount", float)),
    }
    cats = result.categories
    for k, c in enumerate(CATEGORIES):
        own = cats[:, k].astype(float)
        out[f"claim_other_{c}"] = total(own) - own if own.any() else np.zeros(frame.n)
    return out


# ----------------------------------------------------------------------------- multi-hot


def _tokens_of(text: str) -> list[str]:
    return [t for t in str(text).split(";") if t]


def _diagnosis_groups(text: str) -> list[str]:
    return list(dict.fromkeys(c[:3] for c in _tokens_of(text)))


# multi-hot family -> (column it reads, its items of one cell, feature-name prefix)
_FAMILIES = {
    "modifier": ("modifiers", _tokens_of, "mod_"),
    "diagnosis_group": ("diagnosis_codes", _diagnosis_groups, "dxg_"),
}
# modifiers with a feature of their own already (ClaimFeatures' mod_jw, mod_jz, mod_25, mod_59)
_KNOWN_MODIFIERS = ("JW", "JZ", "25", "59")


def vocabulary(frame: ClaimFrame, max_items: int, min_lines: int) -> dict[str, list[str]]:
    """Per family, the items on at least `min_lines` lines of the fitting table (the
    `max_items` most frequent, ties by value), sorted."""
    out = {}
    for family, (col, items_of, _) in _FAMILIES.items():
        codes, uniques = frame.factor(col)
        counts: dict[str, int] = {}
        for u, k in zip(uniques, np.bincount(codes, minlength=len(uniques)), strict=True):
            for item in items_of(u):
                counts[item] = counts.get(item, 0) + int(k)
        if family == "modifier":
            counts = {m: k for m, k in counts.items() if m not in _KNOWN_MODIFIERS}
        ranked = sorted((item for item, k in counts.items() if k >= min_lines), key=lambda i: (-counts[i], i))
        out[family] = sorted(ranked[:max_items])
    return out


def multi_hot_names(vocab: dict[str, list[str]]) -> list[str]:
    names = [f"doc_{t}" for t in DOCUMENTATION_TOKENS]
    for family, (_, _, prefix) in _FAMILIES.items():
        names += [f"{prefix}{item.lower()}" for item in vocab[family]]
    return names


def multi_hot(frame: ClaimFrame, vocab: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """0/1 per documentation token and per vocabulary item (documentation unknown: -1)."""
    mask = frame.documentation_mask
    unknown = frame.documentation_unknown
    out: dict[str, np.ndarray] = {}
    for i, t in enumerate(DOCUMENTATION_TOKENS):
        out[f"doc_{t}"] = np.where(unknown, -1.0, ((mask >> i) & 1).astype(float))
    for family, (col, items_of, prefix) in _FAMILIES.items():
        items = vocab[family]
        codes, uniques = frame.factor(col)
        table = np.zeros((len(uniques) + 1, len(items)))  # the last row: a missing value
        where = {item: j for j, item in enumerate(items)}
        for i, u in enumerate(uniques):
            for item in items_of(u):
                if item in where:
                    table[i, where[item]] = 1.0
        per_line = table[codes] if frame.n else np.zeros((0, len(items)))
        for j, item in enumerate(items):
            out[f"{prefix}{item.lower()}"] = per_line[:, j]
    return out
