"""837P (005010X222A1/A2) professional claims as claim-line rows.

One row per service line (loop 2400), in the claim-line table's columns
(docs/claim-lines.md), read from the loops the implementation guide defines:

| column | from |
|---|---|
| claim_id | CLM01 (the patient control number the 835 echoes in CLP01) |
| line_number | LX01 |
| patient_id | subscriber NM1*IL NM109; a dependent (2000C) adds a digest of NM1*QC name and DMG birth date |
| provider_npi | billing provider NM1*85 NM109 (XX) |
| payer_id | payer NM1*PR NM109 |
| payer_type | SBR09 claim filing indicator (`PAYER_TYPES`); `payer_map` overrides per payer id |
| service_date | line DTP*472 (D8, or the start of RD8), else a claim DTP*472 |
| submission_date | BHT04 |
| place_of_service | SV105, else CLM05-1 |
| hcpcs_code, modifiers | SV101-2, SV101-3..6 |
| billed_amount, units | SV102, SV104 |
| drug_description | SV101-7 (the description an unlisted code carries) |
| ndc, ndc_quantity, ndc_unit | LIN03 (LIN02 = N4), CTP04, CTP05-1 |
| diagnosis_codes | the HI codes the line's SV107 pointers name, ICD-10 dotted |
| prior_auth_number | REF*G1 of the line, else of the claim |
| documentation | unknown: an 837 does not carry it (`UNKNOWN_DOCUMENTATION`) |
| dose_mg | unknown (empty): an 837 carries the NDC quantity, not the dose |

and, beyond the table's columns, `line_control_number` (REF*6R, what the 835 echoes),
`claim_frequency` (CLM05-3: 1 original, 7 replacement, 8 void) and `source` (file and the
LX segment's position), so every row can be traced to its segments.

Other payers' loops inside a claim (2320/2330, coordination of benefits) and line
adjudication (2430) are passed over: they describe someone else's decision.

How the loops are found without a loop over segments (`loops.py`): every segment knows
the last HL, CLM and LX before it in its transaction, so "inside a claim" is "a CLM came
after the last HL" and "inside a line" is "an LX came after that CLM"; each field is then
the matching segments of its loop, joined on the HL, claim or line row.
"""

from __future__ import annotations

import hashlib
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

__all__ = ["PAYER_TYPES", "UNKNOWN_DOCUMENTATION", "read_837"]

# SBR09 claim filing indicator -> payer type. The table has four payer types; federal
# programs other than Medicare and Medicaid (TRICARE, VA, other federal) are read as
# commercial, the nearest in how they adjudicate drugs; `payer_map` overrides any payer.
PAYER_TYPES: dict[str, str] = {
    "MA": "medicare",
    "MB": "medicare",
    "MC": "medicaid",
    "16": "medicare_advantage",
    **dict.fromkeys(
        ("09", "10", "11", "12", "13", "14", "15", "17", "AM", "BL", "CH", "CI", "DS", "FI", "HM", "LM",
         "OF", "TV", "VA", "WC", "ZZ"),
        "commercial",
    ),
}  # fmt: skip
# What the documentation column holds for a line whose documentation is not known (an 837
# does not carry it): rules that need a document do not fire on it (table.ClaimFrame).
UNKNOWN_DOCUMENTATION = "unknown"


def read_837(
    paths: list[str | Path], payer_map: dict[str, str] | None = None, notes: list[str] | None = None
) -> pd.DataFrame:
    """Every service line of every 837P claim in `paths`, as claim-line rows (text cells,
    as a CSV export holds them; `validate` types them)."""
    parts = []
    for path in paths:
        for segs in transaction_sets(path, "837", "X222", "837P (005010X222A1/A2)"):
            parts.append(_lines(segs, payer_map or {}))
            if notes is not None:
                notes.extend(segs.notes)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=_COLUMNS)


_COLUMNS = [
    "claim_id", "line_number", "patient_id", "provider_npi", "payer_id", "payer_type", "service_date",
    "submission_date", "place_of_service", "hcpcs_code", "modifiers", "units", "billed_amount", "dose_mg",
    "ndc", "ndc_quantity", "ndc_unit", "drug_description", "diagnosis_codes", "prior_auth_number",
    "documentation", "line_control_number", "claim_frequency", "source",
]  # fmt: skip


def _lines(segs: Segments, payer_map: dict[str, str]) -> pd.DataFrame:
    """The service lines of one file, every field from its loop (see the module docstring)."""
    f = segs.frame
    ids = f["id"].to_numpy()
    hl = f[ids == "HL"]
    hl_el = segs.elements(hl, 3)
    bad_level = ~hl_el[3].isin(["20", "22", "23"])
    if bad_level.any():
        row = hl_el.index[int(np.flatnonzero(bad_level.to_numpy())[0])]
        raise segs.error(int(f.at[row, "position"]), f"HL03 {hl_el.at[row, 3]!r} is not 20, 22 or 23")
    level = pd.Series("", index=f.index)
    level[hl.index] = hl_el[3]
    is_hl = ids == "HL"
    last_hl = last_where(segs, is_hl)
    claim_row = last_where(segs, ids == "CLM", is_hl)
    line_row = last_where(segs, ids == "LX", is_hl | (ids == "CLM"))
    in_claim, in_line = claim_row >= 0, line_row >= 0
    hl_of = {lv: last_where(segs, level.to_numpy() == lv) for lv in ("20", "22", "23")}

    # header and hierarchy (outside claims)
    bht = f[ids == "BHT"]
    submitted = loop_values(
        bht, bht["tx"].to_numpy(), x12_dates(segs, pd.Series("D8", index=bht.index), segs.elements(bht, 4)[4])
    )
    nm1 = f[(ids == "NM1") & ~in_claim]
    nm1_el = segs.elements(nm1, 9)
    names = {e: nm1_el[4].index[nm1_el[1] == e] for e in ("85", "IL", "PR", "QC")}
    provider = loop_values(nm1.loc[names["85"]], last_hl[names["85"]], nm1_el.loc[names["85"], 9])
    subscriber = loop_values(nm1.loc[names["IL"]], last_hl[names["IL"]], nm1_el.loc[names["IL"], 9])
    payer = loop_values(nm1.loc[names["PR"]], last_hl[names["PR"]], nm1_el.loc[names["PR"], 9])
    qc = names["QC"]
    patient = loop_values(nm1.loc[qc], last_hl[qc], nm1_el.loc[qc, 3] + "^" + nm1_el.loc[qc, 4])
    sbr = f[(ids == "SBR") & ~in_claim]
    filing = loop_values(sbr, last_hl[sbr.index], segs.elements(sbr, 9)[9])
    dmg = f[(ids == "DMG") & ~in_claim & (level.to_numpy()[np.maximum(last_hl, 0)] == "23")]
    born = loop_values(dmg, last_hl[dmg.index], segs.elements(dmg, 2)[2])

    # claims
    clm = f[ids == "CLM"]
    clm_el = segs.elements(clm, 5)
    empty = clm.index.difference(pd.Index(claim_row[(ids == "LX") & in_claim]))
    if len(empty):
        row = int(empty[0])
        raise segs.error(int(f.at[row, "position"]), f"claim {clm_el.at[row, 1]!r} has no service lines")
    place = segs.components(clm_el[5], clm["tx"], 3)
    rows_of = clm.index.to_numpy()
    sub_hl, pat_hl = hl_of["22"][rows_of], hl_of["23"][rows_of]
    pat_hl = np.where(pat_hl > sub_hl, pat_hl, -1)
    claims = pd.DataFrame(
        {
            "claim_id": clm_el[1].to_numpy(),
            "provider_npi": provider.reindex(hl_of["20"][rows_of]).fillna("").to_numpy(),
            "subscriber": subscriber.reindex(sub_hl).fillna("").to_numpy(),
            "payer_id": payer.reindex(sub_hl).fillna("").to_numpy(),
            "filing": filing.reindex(sub_hl).fillna("").to_numpy(),
            "patient": (
                patient.reindex(pat_hl).fillna("") + "^" + born.reindex(pat_hl).fillna("")
            ).to_numpy(),
            "dependent": pat_hl >= 0,
            "submission_date": submitted.reindex(clm["tx"]).fillna("").to_numpy(),
            "claim_place": place[1].to_numpy(),
            "claim_frequency": place[3].to_numpy(),
        },
        index=rows_of,
    )
    mapped = claims["payer_id"].map(payer_map)
    claims["payer_type"] = mapped.fillna(claims["filing"].map(PAYER_TYPES))
    unknown = claims["payer_type"].isna()
    if unknown.any():
        row = claims.index[int(np.flatnonzero(unknown.to_numpy())[0])]
        raise segs.error(
            int(f.at[row, "position"]),
            f"claim filing indicator SBR09 {claims.at[row, 'filing']!r} is not in the X12 code list",
        )
    claims["patient_id"] = _patient_ids(claims)
    return _claim_lines(segs, claims, claim_row, line_row, in_claim, in_line)


def _patient_ids(claims: pd.DataFrame) -> pd.Series:
    """The subscriber's member id; a dependent (2000C) adds a digest of name and birth date
    (an 837 gives a dependent no id of its own), never the name itself."""
    digest = claims.loc[claims["dependent"], "patient"].map(
        lambda p: hashlib.sha256(p.encode()).hexdigest()[:10]  # per distinct dependent
    )
    out = claims["subscriber"].copy()
    out[digest.index] = out[digest.index] + "/" + digest
    return out


def _diagnoses(segs: Segments, claim_row: np.ndarray, in_line: np.ndarray) -> pd.DataFrame:
    """(claim row, 1-based order, dotted code) of each claim's HI diagnoses, in order."""
    f = segs.frame
    hi = f[(f["id"].to_numpy() == "HI") & (claim_row >= 0) & ~in_line]
    el = segs.elements(hi, 12)
    long = el.stack()
    long = long[long != ""]
    parts = long.str.split(r"[:>^|]", n=1, regex=True)  # qualifier, code
    qualifier, code = parts.str[0], parts.str[1].fillna("")
    keep = qualifier.isin(["ABK", "ABF", "BK", "BF"]).to_numpy()
    rows = long.index.get_level_values(0).to_numpy()[keep]
    code = code[keep]
    dotted = code.where(code.str.len() <= 3, code.str[:3] + "." + code.str[3:])
    out = pd.DataFrame({"claim": claim_row[rows], "code": dotted.to_numpy()})
    out["order"] = out.groupby("claim").cumcount() + 1
    return out


def _claim_lines(
    segs: Segments,
    claims: pd.DataFrame,
    claim_row: np.ndarray,
    line_row: np.ndarray,
    in_claim: np.ndarray,
    in_line: np.ndarray,
) -> pd.DataFrame:
    f = segs.frame
    ids = f["id"].to_numpy()
    lx = f[(ids == "LX") & in_claim]
    lines = pd.DataFrame(
        {
            "claim": claim_row[lx.index],
            "line_number": segs.elements(lx, 1)[1].to_numpy(),
            "position": lx["position"],
        },
        index=lx.index,
    )
    sv1 = f[(ids == "SV1") & in_line]
    sv1_el = segs.elements(sv1, 7)
    proc = procedures(segs, sv1, sv1_el[1], ("HC", "WK"))
    line_of = line_row[sv1.index]
    sv = pd.DataFrame(
        {
            "hcpcs_code": proc[2].to_numpy(),
            "modifiers": modifiers_of(proc),
            "drug_description": proc[7].to_numpy(),
            "billed_amount": sv1_el[2].to_numpy(),
            "units": sv1_el[4].to_numpy(),
            "place_of_service": sv1_el[5].to_numpy(),
            "pointers": sv1_el[7].to_numpy(),
        },
        index=line_of,
    )
    sv = sv[~sv.index.duplicated(keep="last")]
    missing = lines.index.difference(sv.index)
    if len(missing):
        raise segs.error(int(f.at[int(missing[0]), "position"]), "a service line (LX) without SV1")
    lines = lines.join(sv)

    ref = f[(ids == "REF") & in_claim]
    ref_el = segs.elements(ref, 2)
    g1, r6 = (ref_el[1] == "G1").to_numpy(), (ref_el[1] == "6R").to_numpy()
    ref_line = in_line[ref.index]
    claim_pa = loop_values(
        ref[g1 & ~ref_line], claim_row[ref.index[g1 & ~ref_line]], ref_el.loc[g1 & ~ref_line, 2]
    )
    line_pa = loop_values(
        ref[g1 & ref_line], line_row[ref.index[g1 & ref_line]], ref_el.loc[g1 & ref_line, 2]
    )
    control = loop_values(
        ref[r6 & ref_line], line_row[ref.index[r6 & ref_line]], ref_el.loc[r6 & ref_line, 2]
    )
    dtp = f[(ids == "DTP") & in_claim]
    dtp_el = segs.elements(dtp, 3)
    service = dtp_el[1] == "472"
    days = x12_dates(segs, dtp_el.loc[service, 2], dtp_el.loc[service, 3])
    dtp_line = in_line[days.index]
    claim_day = loop_values(dtp.loc[days.index[~dtp_line]], claim_row[days.index[~dtp_line]], days[~dtp_line])
    line_day = loop_values(dtp.loc[days.index[dtp_line]], line_row[days.index[dtp_line]], days[dtp_line])
    lin = f[(ids == "LIN") & in_line]
    lin_el = segs.elements(lin, 3)
    n4 = lin_el[2] == "N4"
    ndc = loop_values(lin[n4.to_numpy()], line_row[lin.index[n4.to_numpy()]], lin_el.loc[n4, 3])
    ctp = f[(ids == "CTP") & in_line]
    ctp_el = segs.elements(ctp, 5)
    qty = loop_values(ctp, line_row[ctp.index], ctp_el[4])
    unit = loop_values(ctp, line_row[ctp.index], segs.components(ctp_el[5], ctp["tx"], 1)[1])

    c = claims.loc[lines["claim"].to_numpy()].set_index(lines.index)
    out = pd.DataFrame(
        {
            "claim_id": c["claim_id"],
            "line_number": lines["line_number"],
            "patient_id": c["patient_id"],
            "provider_npi": c["provider_npi"],
            "payer_id": c["payer_id"],
            "payer_type": c["payer_type"],
            "service_date": line_or_claim(line_day, claim_day, lines.index, lines["claim"]),
            "submission_date": c["submission_date"],
            "place_of_service": lines["place_of_service"].where(
                lines["place_of_service"] != "", c["claim_place"]
            ),
            "hcpcs_code": lines["hcpcs_code"],
            "modifiers": lines["modifiers"],
            "units": lines["units"],
            "billed_amount": lines["billed_amount"],
            "dose_mg": "",
            "ndc": ndc.reindex(lines.index).fillna(""),
            "ndc_quantity": qty.reindex(lines.index).fillna(""),
            "ndc_unit": unit.reindex(lines.index).fillna(""),
            "drug_description": lines["drug_description"],
            "diagnosis_codes": _pointed(segs, lines, _diagnoses(segs, claim_row, in_line)),
            "prior_auth_number": line_or_claim(line_pa, claim_pa, lines.index, lines["claim"]),
            "documentation": UNKNOWN_DOCUMENTATION,
            "line_control_number": control.reindex(lines.index).fillna(""),
            "claim_frequency": c["claim_frequency"],
            "source": segs.path.name + "#" + lines["position"].astype(str),
        }
    )
    return out.reset_index(drop=True).astype({c: "str" for c in out.columns})  # Arrow memory, not objects


def _pointed(segs: Segments, lines: pd.DataFrame, dx: pd.DataFrame) -> pd.Series:
    """Each line's diagnoses: the HI codes its SV107 pointers name (the claim's first when it
    names none), `;`-separated; a pointer that names no code is an error at the LX."""
    pointers = segs.components(lines["pointers"], segs.frame.loc[lines.index, "tx"], 4).stack()
    pointers = pointers[pointers != ""]
    long = pd.DataFrame(
        {
            "line": pointers.index.get_level_values(0),
            "claim": lines.loc[pointers.index.get_level_values(0), "claim"].to_numpy(),
            "pointer": pointers.to_numpy(),
        }
    )
    number = pd.to_numeric(long["pointer"], errors="coerce")
    long["order"] = number.fillna(0).astype(int)
    named = long.merge(dx, on=["claim", "order"], how="left")
    bad = named["code"].isna()
    if bad.any():
        first = named[bad].iloc[0]
        n = int((dx["claim"] == first["claim"]).sum())
        raise segs.error(
            int(segs.frame.at[int(first["line"]), "position"]),
            f"diagnosis pointer {first['pointer']!r} names no HI code (the claim has {n})",
        )
    joined = join_groups(named["line"].to_numpy(), named["code"], ";")
    first_dx = dx[dx["order"] == 1].set_index("claim")["code"]
    default = first_dx.reindex(lines["claim"]).fillna("").set_axis(lines.index)
    return joined.reindex(lines.index).fillna(default)
