"""835 (005010X221A1) remittances as remit-line rows: what the payer decided, per line.

One row per service payment (SVC, loop 2110); a claim paid without service lines (CLP with
no SVC) is one row with `claim_level` set, which the join applies to every line of the
claim. Columns:

| column | from |
|---|---|
| claim_id | CLP01 (the CLM01 the 837 sent) |
| claim_status | CLP02 (1-3 processed, 4 denied, 19-21 processed and forwarded, 22 reversal, ...) |
| payer_claim_number | CLP07 |
| hcpcs_code, modifiers | SVC01-2, SVC01-3..6 (the submitted SVC06 when the payer changed the code) |
| billed_amount, paid_amount, units_paid | SVC02, SVC03, SVC05 (1 when absent) |
| service_date | DTM*472 or DTM*150 of the line, else DTM*232 of the claim |
| line_control_number | REF*6R of the line |
| adjustments | every CAS triplet of the line (of the claim, for a claim-level row): `CO-45:50.00;PR-1:9` |
| remarks | LQ*HE remark codes of the line |
| adjudication_date | DTM*405 (production date), else BPR16 |

plus `remit` (file and CLP position: one adjudication of one claim), `source` (file and
the SVC segment's position) and `order` (position in the input, so the latest
adjudication can be told when dates tie). The loops are found as in `claims.py`
(`loops.py`): each segment knows the last CLP and SVC before it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from denial_model.x12.loops import (
    last_where,
    line_or_claim,
    loop_values,
    modifiers_of,
    procedures,
    x12_dates,
)
from denial_model.x12.segments import Segments, join_groups, transaction_sets

__all__ = ["CAS_GROUPS", "read_835"]

CAS_GROUPS = ("CO", "CR", "OA", "PI", "PR")
_PRODUCTS = ("HC", "AD", "ER", "IV", "N4", "NU", "WK")


def read_835(paths: list[str | Path], notes: list[str] | None = None) -> pd.DataFrame:
    """Every service payment of every 835 in `paths`, in input order."""
    parts = []
    offset = 0
    for path in paths:
        for segs in transaction_sets(path, "835", "X221", "835 (005010X221A1)"):
            part = _remit_lines(segs)
            part["order"] = np.arange(offset, offset + len(part))
            offset += len(part)
            parts.append(part)
            if notes is not None:
                notes.extend(segs.notes)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=_COLUMNS)


_COLUMNS = [
    "claim_id", "claim_status", "payer_claim_number", "hcpcs_code", "modifiers", "billed_amount",
    "paid_amount", "units_paid", "service_date", "line_control_number", "adjustments", "remarks",
    "adjudication_date", "claim_level", "remit", "source", "order",
]  # fmt: skip


def _adjudicated(segs: Segments, clp_rows: np.ndarray) -> pd.Series:
    """Each claim's adjudication date: the transaction's DTM*405, else its BPR16."""
    f = segs.frame
    ids = f["id"].to_numpy()
    in_claim = last_where(segs, ids == "CLP") >= 0
    dtm = f[(ids == "DTM") & ~in_claim]
    el = segs.elements(dtm, 2)
    prod = el[1] == "405"
    produced = loop_values(
        dtm[prod.to_numpy()],
        dtm.loc[prod, "tx"].to_numpy(),
        x12_dates(segs, pd.Series("D8", index=el.index[prod]), el.loc[prod, 2]),
    )
    bpr = f[ids == "BPR"]
    bpr16 = segs.elements(bpr, 16)[16]
    tx = f.loc[clp_rows, "tx"]
    out = produced.reindex(tx).set_axis(clp_rows)
    need = out.isna()
    if need.any():  # BPR16 only where the production date is missing, and then it must be a date
        fallback_tx = set(tx[need.to_numpy()])
        used = bpr16[bpr.loc[bpr16.index, "tx"].isin(fallback_tx).to_numpy() & (bpr16 != "").to_numpy()]
        paid_on = loop_values(
            bpr.loc[used.index],
            bpr.loc[used.index, "tx"].to_numpy(),
            x12_dates(segs, pd.Series("D8", index=used.index), used),
        )
        out = out.fillna(paid_on.reindex(tx).set_axis(clp_rows))
    missing = out.isna()
    if missing.any():
        row = int(out.index[int(np.flatnonzero(missing.to_numpy())[0])])
        raise segs.error(
            int(f.at[row, "position"]), "no production date (DTM*405) or BPR16 date before the claim"
        )
    return out


def _adjustments(segs: Segments, owner: np.ndarray, in_claim: np.ndarray) -> pd.Series:
    """Every CAS triplet as `GROUP-CARC:amount`, `;`-joined per owner (an SVC row, or the
    CLP row for the claim's own adjustments), in file order."""
    f = segs.frame
    cas = f[(f["id"].to_numpy() == "CAS") & in_claim]
    cas_el = segs.elements(cas, 19)
    bad_group = ~cas_el[1].isin(CAS_GROUPS)
    if bad_group.any():
        row = int(cas_el.index[int(np.flatnonzero(bad_group.to_numpy())[0])])
        raise segs.error(
            int(f.at[row, "position"]),
            f"CAS01 {cas_el.at[row, 1]!r} is not a claim adjustment group code {CAS_GROUPS}",
        )
    triplets = [
        pd.DataFrame(
            {
                "owner": owner[cas.index],
                "seg": cas.index,
                "k": k,
                "group": cas_el[1],
                "reason": cas_el[i],
                "amount": cas_el[i + 1],
            }
        )
        for k, i in enumerate(range(2, 20, 3))
    ]
    adj = pd.concat(triplets, ignore_index=True)
    adj = adj[adj["reason"] != ""].sort_values(["seg", "k"], kind="stable")
    return join_groups(
        adj["owner"].to_numpy(),
        adj["group"] + "-" + adj["reason"] + ":" + adj["amount"].where(adj["amount"] != "", "0"),
        ";",
    )


def _remit_lines(segs: Segments) -> pd.DataFrame:
    f = segs.frame
    ids = f["id"].to_numpy()
    clp_row = last_where(segs, ids == "CLP")
    svc_row = last_where(segs, ids == "SVC", ids == "CLP")
    in_claim, in_svc = clp_row >= 0, svc_row >= 0
    clp = f[ids == "CLP"]
    clp_el = segs.elements(clp, 7)
    if (clp_el[1] == "").any():
        row = int(clp_el.index[int(np.flatnonzero((clp_el[1] == "").to_numpy())[0])])
        raise segs.error(int(f.at[row, "position"]), "CLP01 (the claim's patient control number) is empty")
    stray = ~in_claim & np.isin(ids, ("SVC", "CAS"))
    if stray.any():
        row = int(np.flatnonzero(stray)[0])
        raise segs.error(int(f.at[row, "position"]), f"{ids[row]} outside a claim (CLP)")
    svc = f[(ids == "SVC") & in_claim]
    svc_el = segs.elements(svc, 6)
    chosen = svc_el[6].where(svc_el[6] != "", svc_el[1])
    proc = procedures(segs, svc, chosen, _PRODUCTS)
    lines = pd.DataFrame(
        {
            "claim": clp_row[svc.index],
            "hcpcs_code": proc[2].to_numpy(),
            "modifiers": modifiers_of(proc),
            "billed_amount": svc_el[2].to_numpy(),
            "paid_amount": svc_el[3].to_numpy(),
            "units_paid": svc_el[5].where(svc_el[5] != "", "1").to_numpy(),
            "position": svc["position"].to_numpy(),
        },
        index=svc.index,
    )
    # claims paid without service lines: one claim-level row each
    bare = clp.index.difference(pd.Index(lines["claim"].unique()))
    whole = pd.DataFrame(
        {
            "claim": bare,
            "hcpcs_code": "",
            "modifiers": "",
            "billed_amount": clp_el.loc[bare, 3].to_numpy(),
            "paid_amount": clp_el.loc[bare, 4].to_numpy(),
            "units_paid": "",
            "position": f.loc[bare, "position"].to_numpy(),
        },
        index=bare,
    )
    # what belongs to a line (its row) or to the claim (the CLP row)
    adj_text = _adjustments(segs, np.where(in_svc, svc_row, clp_row), in_claim)
    dtm = f[(ids == "DTM") & in_claim]
    dtm_el = segs.elements(dtm, 2)
    dated = dtm_el[1].isin(["472", "150", "232"])
    days = x12_dates(segs, pd.Series("D8", index=dtm_el.index[dated]), dtm_el.loc[dated, 2])
    q = dtm_el.loc[dated, 1]
    line_dtm = (q.isin(["472", "150"])).to_numpy() & in_svc[days.index]
    claim_dtm = (q == "232").to_numpy() & ~in_svc[days.index]
    line_day = loop_values(dtm.loc[days.index[line_dtm]], svc_row[days.index[line_dtm]], days[line_dtm])
    claim_day = loop_values(dtm.loc[days.index[claim_dtm]], clp_row[days.index[claim_dtm]], days[claim_dtm])
    ref = f[(ids == "REF") & in_svc]
    ref_el = segs.elements(ref, 2)
    r6 = (ref_el[1] == "6R").to_numpy()
    control = loop_values(ref[r6], svc_row[ref.index[r6]], ref_el.loc[r6, 2])
    lq = f[(ids == "LQ") & in_svc]
    lq_el = segs.elements(lq, 2)
    he = (lq_el[1] == "HE").to_numpy()
    remarks = join_groups(svc_row[lq.index[he]], lq_el.loc[he, 2], ";")

    rows = pd.concat([lines, whole]).sort_values("position")
    c = clp_el.loc[rows["claim"].to_numpy()].set_index(rows.index)
    claim_level = rows.index.isin(bare)
    adjudicated = _adjudicated(segs, clp.index.to_numpy())
    out = pd.DataFrame(
        {
            "claim_id": c[1],
            "claim_status": c[2],
            "payer_claim_number": c[7],
            "hcpcs_code": rows["hcpcs_code"],
            "modifiers": rows["modifiers"],
            "billed_amount": rows["billed_amount"],
            "paid_amount": rows["paid_amount"],
            "units_paid": rows["units_paid"],
            "service_date": line_or_claim(line_day, claim_day, rows.index, rows["claim"]),
            "line_control_number": control.reindex(rows.index).fillna(""),
            "adjustments": adj_text.reindex(rows.index).fillna(""),
            "remarks": remarks.reindex(rows.index).fillna(""),
            "adjudication_date": adjudicated.reindex(rows["claim"]).to_numpy(),
            "claim_level": claim_level,
            "remit": segs.path.name + "#" + f.loc[rows["claim"], "position"].astype(str).to_numpy(),
            "source": segs.path.name + "#" + rows["position"].astype(str),
        }
    ).reset_index(drop=True)
    return out.astype({c: "str" for c in out.columns if out[c].dtype == object})  # Arrow memory
