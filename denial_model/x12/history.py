"""837 lines meet their 835 remit lines: the labeled claim-line history `train` takes.

**Which adjudication counts.** A claim can be remitted more than once: in parts (lines
adjudicated on different days), or reversed (CLP02 = 22) and paid again. A reversal
cancels every earlier adjudication of its claim; of what remains, each line takes the
latest adjudication that pays it (adjudication date, then input order); a claim whose
last word is a reversal is pending again. An 837 claim sent
more than once (CLM05-3 = 7, a replacement) is read from its latest submission; a void (8)
withdraws it.

**Which remit line is which claim line**, within a claim (CLP01 = CLM01): the line item
control number (REF*6R) when both carry it; else the procedure code, modifiers and service
date, the n-th such remit line meeting the n-th such claim line; else code and date; else
code. A claim remitted without service lines gives its outcome to all its lines.

**The labels** (docs/claim-lines.md): `paid_amount` is SVC03; `carc_codes` every
`GROUP-CARC` of the line's adjustments (CAS), in order, once each; `denied` is true when
the claim is denied (CLP02 = 4) or the line is paid nothing and some adjustment is not
one that leaves the line owed by someone else (`NOT_DENIALS`: the patient's deductible,
coinsurance or copay PR-1/2/3, another payer's earlier payment OA-23, sequestration
CO-253). So a contractual CO-45 on a paid line is no denial (the line was paid), a zero
payment that is the deductible is none either, and a line allowed nothing (CO-45 for the
whole charge, CO-16, CO-50, ...) is one. `adjudication_date` is the remit's production date.

Claim lines with no remit yet are kept, unlabeled (`denied` empty): pending, scored but not
trained on. Remit lines that meet no claim line go to the rejects with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from denial_model.table import REJECT_COLUMNS

__all__ = ["NOT_DENIALS", "Joined", "join_remits", "labels", "latest_claims"]

# Adjustments that leave a zero-paid line owed by someone else, so not denied: the patient's
# deductible, coinsurance, copay; another payer's earlier payment; sequestration.
NOT_DENIALS = frozenset({"PR-1", "PR-2", "PR-3", "OA-23", "CO-253"})
_REVERSAL, _DENIED = "22", "4"


@dataclass
class Joined:
    """The claim lines with their labels (pending lines unlabeled), the remit lines that
    met no claim line (as rejects), and the counts ingest prints."""

    lines: pd.DataFrame
    rejects: pd.DataFrame
    counts: dict[str, int]


def _carcs(codes: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(carc_codes, has a denial reason) of distinct `GROUP-CARC;...` texts."""
    carcs = codes.map(lambda c: ";".join(dict.fromkeys(x for x in c.split(";") if x)))
    denial = codes.map(lambda c: any(x not in NOT_DENIALS for x in c.split(";") if x))
    return carcs, denial.astype(bool)


def labels(remits: pd.DataFrame) -> pd.DataFrame:
    """`denied`, `carc_codes`, `paid_amount`, `adjudication_date` of each remit line. The
    adjustment codes are read once per distinct combination (amounts dropped, a few
    hundred combinations in a million lines), then spread back."""
    codes = remits["adjustments"].fillna("").astype(str).str.replace(r":[^;]*", "", regex=True)
    which, distinct = pd.factorize(codes)
    carcs, denial = _carcs(pd.Series(distinct, dtype=object))
    paid = pd.to_numeric(remits["paid_amount"], errors="coerce").fillna(0.0)
    denial_reason = denial.to_numpy()[which] if len(distinct) else np.zeros(len(remits), dtype=bool)
    denied = (remits["claim_status"] == _DENIED).to_numpy() | ((paid == 0).to_numpy() & denial_reason)
    return pd.DataFrame(
        {
            "denied": denied,
            "carc_codes": carcs.to_numpy(dtype=object)[which] if len(distinct) else "",
            "paid_amount": paid.to_numpy(),
            "adjudication_date": remits["adjudication_date"].to_numpy(),
        },
        index=remits.index,
    )


def latest_claims(claims: pd.DataFrame) -> pd.DataFrame:
    """Each claim as last sent: the lines of its latest submission; a void withdraws it."""
    last = claims.groupby("claim_id")["submission_date"].transform("max")
    sent = claims[(claims["submission_date"] == last) & (claims["claim_frequency"] != "8")]
    return sent.drop_duplicates(["claim_id", "line_number"], keep="last")


def _live_remits(remits: pd.DataFrame) -> pd.DataFrame:
    """The remit lines still in force: a reversal (CLP02 = 22) cancels every earlier
    adjudication of its claim, and is no outcome itself."""
    when = remits["adjudication_date"] + "#" + remits["order"].map("{:012d}".format)
    reversed_at = when.where(remits["claim_status"] == _REVERSAL).groupby(remits["claim_id"]).transform("max")
    cancelled = reversed_at.notna() & (when <= reversed_at)
    return remits[~cancelled.to_numpy()]


_PASSES = (
    ("line_control_number",),
    ("hcpcs_code", "modifiers", "service_date"),
    ("hcpcs_code", "service_date"),
    ("hcpcs_code",),
)


def _pair_lines(lines: pd.DataFrame, remit_lines: pd.DataFrame) -> pd.DataFrame:
    """(line, _row) pairs: each line-level remit line with the claim line it adjudicates.

    Within one adjudication (`remit`) a claim line is paid once: the passes pair the n-th
    remit line with the n-th free claim line of the same claim and keys; a line another
    adjudication of the claim paid is free again for this one (a claim paid in parts)."""
    found: list[pd.DataFrame] = []
    todo = remit_lines
    # the candidate (adjudication, claim line) pairs: every line of each remitted claim
    slots = (
        lines[["claim_id"]].reset_index(names="_line").merge(todo[["claim_id", "remit"]].drop_duplicates())
    )
    for keys in _PASSES:
        if not len(todo) or not len(slots):
            break
        cols = ["remit", "claim_id", *keys]
        usable = todo[(todo[list(keys)] != "").all(axis=1)]
        free = slots.join(lines[list(keys)], on="_line")
        left = free.assign(_n=free.groupby(cols).cumcount())
        right = usable[[*cols, "_row"]].assign(_n=usable.groupby(cols).cumcount())
        pairs = left.merge(right, on=[*cols, "_n"])[["_line", "_row", "remit"]]
        found.append(pairs[["_line", "_row"]])
        todo = todo[~todo["_row"].isin(pairs["_row"])]
        taken = pd.MultiIndex.from_frame(pairs[["remit", "_line"]])
        slots = slots[~pd.MultiIndex.from_frame(slots[["remit", "_line"]]).isin(taken)]
    return (
        pd.concat(found, ignore_index=True)
        if found
        else pd.DataFrame({"_line": [], "_row": []}, dtype=np.int64)
    )


def join_remits(claims: pd.DataFrame, remits: pd.DataFrame) -> Joined:
    """Claim lines (`latest_claims` of read_837) with the labels of their remit lines
    (read_835): per line, the latest adjudication that pays it."""
    lines = claims.reset_index(drop=True)
    live = _live_remits(remits)
    live = live.assign(_row=np.arange(len(live)))
    lab = labels(live).set_axis(live["_row"].to_numpy())
    line_level, claim_level = live[~live["claim_level"]], live[live["claim_level"]]
    pairs = _pair_lines(lines, line_level)
    whole = (
        lines[["claim_id"]]
        .reset_index(names="_line")
        .merge(claim_level[["claim_id", "_row"]])[["_line", "_row"]]
    )
    pairs = pd.concat([pairs, whole], ignore_index=True).astype(np.int64)
    when = live.set_index("_row")[["adjudication_date", "order"]]
    pairs = pairs.join(when, on="_row").sort_values(["adjudication_date", "order"], kind="stable")
    latest = pairs.drop_duplicates("_line", keep="last")
    got = np.full(len(lines), -1, dtype=np.int64)
    got[latest["_line"].to_numpy()] = latest["_row"].to_numpy()
    out = lines.assign(
        denied=pd.Series(pd.NA, index=lines.index, dtype="boolean"),
        carc_codes="",
        paid_amount=np.nan,
        adjudication_date="",
    )
    hit = got >= 0
    for col in ("denied", "carc_codes", "paid_amount", "adjudication_date"):
        out.loc[hit, col] = lab.loc[got[hit], col].to_numpy()
    out["adjudication_date"] = pd.to_datetime(out["adjudication_date"].replace("", None), format="%Y-%m-%d")
    used = live["_row"].isin(pairs["_row"])
    line_level, claim_level = line_level[~used[line_level.index]], claim_level[~used[claim_level.index]]
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
        "superseded remit lines (reversed, or a later adjudication of the line)": len(remits)
        - len(live)
        + int(used.sum())
        - latest["_row"].nunique(),
        "orphan remit lines (rejects)": len(rejects),
    }
    return Joined(out, rejects, counts)
