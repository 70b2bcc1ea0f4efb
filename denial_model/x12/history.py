"""837 lines meet their 835 remit lines: the labeled claim-line history `train` takes.

**Which adjudication counts.** A claim can be remitted more than once (a reversal, CLP02 =
22, then a corrected payment). The latest remit of each claim wins (adjudication date, then
input order); a claim whose latest remit is a reversal is pending again. An 837 claim sent
more than once (CLM05-3 = 7, a replacement) is read from its latest submission; a void (8)
withdraws it.

**Which remit line is which claim line**, within a claim (CLP01 = CLM01): the line item
control number (REF*6R) when both carry it; else the procedure code, modifiers and service
date, the n-th such remit line meeting the n-th such claim line; else code and date; else
code. A claim remitted without service lines gives its outcome to all its lines.

**The labels** (docs/claim-lines.md): `paid_amount` is SVC03; `carc_codes` every
`GROUP-CARC` of the line's adjustments (CAS), in order, once each; `denied` is true when
the claim is denied (CLP02 = 4) or the line is paid nothing and an adjustment gives a reason
other than what the patient owes or a contract reduces (`NOT_DENIALS`: PR-1/2/3, CO-45,
CO-253, OA-23, ...), so a line whose zero payment is the deductible is not a denial.
`adjudication_date` is the remit's production date.

Claim lines with no remit yet are kept, unlabeled (`denied` empty): pending, scored but not
trained on. Remit lines that meet no claim line go to the rejects with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from denial_model.table import REJECT_COLUMNS

__all__ = ["NOT_DENIALS", "Joined", "join_remits", "labels", "latest_claims"]

# Adjustment reasons that do not make a zero-paid line a denial: what the patient owes
# (1 deductible, 2 coinsurance, 3 copay), contract and fee-schedule reductions (45, 42),
# sequestration (253), another payer's earlier adjudication (23), and processing in
# excess of charges (94).
NOT_DENIALS = frozenset({"1", "2", "3", "23", "42", "45", "94", "253"})
_REVERSAL, _DENIED = "22", "4"


@dataclass
class Joined:
    """The claim lines with their labels (pending lines unlabeled), the remit lines that
    met no claim line (as rejects), and the counts ingest prints."""

    lines: pd.DataFrame
    rejects: pd.DataFrame
    counts: dict[str, int]


def labels(remits: pd.DataFrame) -> pd.DataFrame:
    """`denied`, `carc_codes`, `paid_amount`, `adjudication_date` of each remit line."""
    adj = remits["adjustments"].fillna("")
    codes = adj.str.replace(r":[^;]*", "", regex=True)
    carcs = codes.map(lambda c: ";".join(dict.fromkeys(x for x in c.split(";") if x)))  # per distinct text
    reasons = codes.str.split(";").explode()
    reasons = reasons[reasons.fillna("") != ""].str.split("-", n=1).str[1]
    denial_reason = (
        (~reasons.isin(NOT_DENIALS)).groupby(level=0).any().reindex(remits.index, fill_value=False)
    )
    paid = pd.to_numeric(remits["paid_amount"], errors="coerce").fillna(0.0)
    denied = (remits["claim_status"] == _DENIED) | ((paid == 0) & denial_reason)
    return pd.DataFrame(
        {
            "denied": denied,
            "carc_codes": carcs,
            "paid_amount": paid,
            "adjudication_date": remits["adjudication_date"],
        },
        index=remits.index,
    )


def latest_claims(claims: pd.DataFrame) -> pd.DataFrame:
    """Each claim as last sent: the lines of its latest submission; a void withdraws it."""
    sent = claims.assign(_order=np.arange(len(claims)))
    last = sent.groupby("claim_id")["submission_date"].transform("max")
    sent = sent[sent["submission_date"] == last]
    sent = sent[sent["claim_frequency"] != "8"]
    return sent.drop_duplicates(["claim_id", "line_number"], keep="last").drop(columns="_order")


def _latest_remits(remits: pd.DataFrame) -> pd.DataFrame:
    """The remit lines of each claim's latest adjudication; none for a claim reversed last."""
    order = remits.sort_values(["adjudication_date", "order"], kind="stable")
    latest = order.groupby("claim_id")["remit"].last()
    r = remits[remits["remit"].to_numpy() == latest.reindex(remits["claim_id"]).to_numpy()]
    return r[r["claim_status"] != _REVERSAL]


_PASSES = (
    ("line_control_number",),
    ("hcpcs_code", "modifiers", "service_date"),
    ("hcpcs_code", "service_date"),
    ("hcpcs_code",),
)


def join_remits(claims: pd.DataFrame, remits: pd.DataFrame) -> Joined:
    """Claim lines (`latest_claims` of read_837) with the labels of their remit lines (read_835)."""
    lines = claims.reset_index(drop=True)
    todo = _latest_remits(remits)
    lab = labels(todo)
    todo = todo.assign(_row=np.arange(len(todo)))
    lab.index = todo["_row"].to_numpy()
    matched = pd.Series(-1, index=lines.index, dtype=np.int64)
    line_level, claim_level = todo[~todo["claim_level"]], todo[todo["claim_level"]]
    for keys in _PASSES:
        free = lines[matched.to_numpy() < 0]
        if not len(free) or not len(line_level):
            break
        cols = ["claim_id", *keys]
        usable = line_level[(line_level[list(keys)] != "").all(axis=1)]
        left = free[cols].assign(_n=free.groupby(cols).cumcount(), _line=free.index)
        right = usable[[*cols, "_row"]].assign(_n=usable.groupby(cols).cumcount())
        pairs = left.merge(right, on=[*cols, "_n"])
        matched[pairs["_line"].to_numpy()] = pairs["_row"].to_numpy()
        line_level = line_level[~line_level["_row"].isin(pairs["_row"])]
    free = lines[matched.to_numpy() < 0]
    whole = (
        free[["claim_id"]].reset_index().merge(claim_level[["claim_id", "_row"]].drop_duplicates("claim_id"))
    )
    matched[whole["index"].to_numpy()] = whole["_row"].to_numpy()
    claim_level = claim_level[~claim_level["claim_id"].isin(lines["claim_id"])]
    got = matched.to_numpy()
    out = lines.assign(
        denied=pd.Series(pd.NA, index=lines.index, dtype="boolean"),
        carc_codes="",
        paid_amount=np.nan,
        adjudication_date="",
    )
    hit = got >= 0
    for col in ("denied", "carc_codes", "paid_amount", "adjudication_date"):
        out.loc[hit, col] = lab.loc[got[hit], col].to_numpy()
    orphans = pd.concat([line_level, claim_level]).sort_values("order")
    rejects = pd.DataFrame(
        {
            "row": orphans["order"].astype("int64").to_numpy(),
            "claim_id": orphans["claim_id"].to_numpy(),
            "line_number": "",
            "column": "(remit line)",
            "reason": np.where(
                orphans["claim_id"].isin(lines["claim_id"]),
                "remit line "
                + orphans["source"]
                + " ("
                + orphans["hcpcs_code"]
                + " on "
                + orphans["service_date"]
                + ") meets no line of claim "
                + orphans["claim_id"],
                "remit line "
                + orphans["source"]
                + ": claim "
                + orphans["claim_id"]
                + " is in none of the 837 files",
            ),
        },
        columns=list(REJECT_COLUMNS),
    )
    counts = {
        "claim lines matched to a remit": int(hit.sum()),
        "claim lines pending (no remit yet)": int((~hit).sum()),
        "remit lines": len(remits),
        "superseded remit lines (a later adjudication or a reversal)": len(remits) - len(todo),
        "orphan remit lines (rejects)": len(rejects),
    }
    return Joined(out, rejects, counts)
