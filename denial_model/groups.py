"""Denial reason groups: what a denial is about, and which team works it.

A payer says why it denied a line with a claim adjustment reason code (CARC). A billing
team does not work 300 CARCs; it works a handful of kinds of problem, each owned by a team.
The groups gather the CARCs (by reason number, whatever the group code: CO-96 and PR-96
are one reason) into seven, and each group has one owner (the lists are `CARC_GROUPS`):

- coding_and_units (modifier, code or units wrong; bundled): coding
- authorization (no or invalid prior authorization): authorization
- medical_necessity (diagnosis does not support it, not medically necessary, place of
  service, benefit maximum): clinical_documentation
- missing_information (information or attachment missing, CO-16): clinical_documentation
- timely_filing (CO-29): front_desk
- duplicate (CO-18): coding
- not_covered (not covered, nothing allowed under the contract, CO-45 / CO-96): front_desk

All fixes together (`probability_after_fixes`) correct every finding but those of
`UNFIXABLE_CATEGORIES`. A CARC outside the map has no group: such denials are left out of
the group model's training, never guessed. A rule's group is its CARC's, so the rules-only
answer to "why will it be denied" is the group of the line's first fired deny rule
(`rules_group`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "CARC_GROUPS",
    "REASON_GROUPS",
    "TEAMS",
    "UNFIXABLE_CATEGORIES",
    "carc_group",
    "group_labels",
    "group_proba",
    "rules_group",
    "team_of",
]

REASON_GROUPS: tuple[str, ...] = (
    "coding_and_units",
    "authorization",
    "medical_necessity",
    "missing_information",
    "timely_filing",
    "duplicate",
    "not_covered",
)
TEAMS: dict[str, str] = {
    "coding_and_units": "coding",
    "authorization": "authorization",
    "medical_necessity": "clinical_documentation",
    "missing_information": "clinical_documentation",
    "timely_filing": "front_desk",
    "duplicate": "coding",
    "not_covered": "front_desk",
}
CARC_GROUPS: dict[str, tuple[int, ...]] = {
    "coding_and_units": (4, 5, 6, 7, 8, 9, 10, 97, 146, 151, 181, 182, 189, 234, 236),
    "authorization": (15, 62, 197, 198, 243),
    "medical_necessity": (11, 50, 55, 56, 58, 119, 150, 152, 167),
    "missing_information": (16, 226, 251, 252),
    "timely_filing": (29,),
    "duplicate": (18,),
    "not_covered": (27, 31, 45, 96, 109, 204),
}
# findings no change to the claim can cure before it goes out: the filing date has passed,
# the plan does not cover the service (the front desk works these: an ABN, the patient's share)
UNFIXABLE_CATEGORIES: tuple[str, ...] = ("timely_filing", "not_covered")
_BY_NUMBER: dict[int, str] = {}
for _group, _numbers in CARC_GROUPS.items():
    for _n in _numbers:
        _BY_NUMBER[_n] = _group


def _group_of_text(codes: pd.Series) -> pd.Series:
    first = codes.astype(str).str.split(r"[;,\s]+", regex=True).str[0].str.strip().str.upper()
    number = pd.to_numeric(first.str.extract(r"^(?:[A-Z]{2}-?)?(\d+)$")[0], errors="coerce")
    return number.map(_BY_NUMBER).fillna("").astype(object)


def carc_group(carc_codes: pd.Series | np.ndarray | list) -> np.ndarray:
    """The reason group of each line's first CARC ('' for none or one outside the map);
    worked out once per distinct value."""
    s = pd.Series(carc_codes, dtype=object).fillna("")
    codes, uniques = pd.factorize(s)
    groups = _group_of_text(pd.Series(uniques, dtype=object)).to_numpy(dtype=object)
    out = np.full(len(s), "", dtype=object)
    known = codes >= 0
    out[known] = groups[codes[known]]
    return out


def team_of(groups: np.ndarray) -> np.ndarray:
    """The owner team of each group ('' for none)."""
    lut = np.array([*(TEAMS[g] for g in REASON_GROUPS), ""], dtype=object)
    idx = pd.Index(REASON_GROUPS).get_indexer(pd.Series(groups, dtype=object))
    return lut[np.where(idx < 0, len(REASON_GROUPS), idx)]


def group_labels(df: pd.DataFrame) -> np.ndarray:
    """Per line: the index in `REASON_GROUPS` of its denial's group, -1 for a line that was
    not denied or whose CARC has no group (the group model learns from the others)."""
    from denial_model.table import denied_labels

    denied = denied_labels(df)
    groups = carc_group(df["carc_codes"]) if "carc_codes" in df.columns else np.full(len(df), "", object)
    idx = pd.Index(REASON_GROUPS).get_indexer(pd.Series(groups, dtype=object))
    return np.where(denied & (idx >= 0), idx, -1)


def group_proba(model, X: pd.DataFrame) -> np.ndarray:
    """P(group | denied) of each line, one column per `REASON_GROUPS` (a group the model never
    saw in training gets 0), from the fitted group classifier (`train.fit_reason_groups`)."""
    out = np.zeros((len(X), len(REASON_GROUPS)))
    if len(X):
        out[:, np.asarray(model.classes_, dtype=np.int64)] = model.predict_proba(X)
    return out


def rules_group(result) -> np.ndarray:
    """The rules' answer to "denied for what": per line, the reason group (`groups.carc_group`)
    of its first fired deny rule in pack order, else of its first risk rule, '' for none."""
    hits = np.asarray(result.hits, dtype=bool)
    out = np.full(len(hits), "", dtype=object)
    carcs = np.array([r.carc for r in result.rules], dtype=object)
    for severity in ("risk", "deny"):  # deny last: it overwrites
        cols = np.array([r.severity == severity for r in result.rules], dtype=bool)
        sub = hits[:, cols]
        has = sub.any(axis=1)
        out[has] = carc_group(carcs[cols][np.argmax(sub[has], axis=1)])
    return out
