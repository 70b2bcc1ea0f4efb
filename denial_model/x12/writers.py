"""A claim-line history written as the X12 a practice would hold: 837P claims and 835
remittances (HIPAA 5010, X222A1 / X221A1), so the readers can be tested at scale and a
simulated history can be fed to anything that reads X12.

`write_837`: one transaction per submission date; each claim a billing provider (HL 20)
and subscriber (HL 22, the patient is the subscriber) with its CLM, the claim's diagnoses
(HI, the lines pointing at theirs), the prior authorization (REF*G1) and one LX per line
(SV1, DTP*472, LIN/CTP for the NDC, REF*6R = `<claim>-<line>`). `write_835`: one
transaction per payer and adjudication date; a CLP per claim with the lines adjudicated
that day (SVC, DTM*472, CAS with the line's CARCs, REF*6R). The 837 does not carry the
documentation or the dose; the 835 carries what the labels need (`history.labels`).

Segments are built column-wise (pandas string operations over all lines at once), then
laid out in order: no Python loop over lines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from denial_model.files import atomic_output
from denial_model.table import denied_labels
from denial_model.x12.segments import join_groups

__all__ = ["FILING_INDICATORS", "write_835", "write_837"]

# payer type -> SBR09 / CLP06 claim filing indicator (the reader maps them back)
FILING_INDICATORS = {"medicare": "MB", "medicaid": "MC", "medicare_advantage": "16", "commercial": "CI"}
# CLP06 has no code for commercial in general: 12 (PPO) stands for it (the reader does not read CLP06)
_CLP06 = {**FILING_INDICATORS, "commercial": "12"}
_T = "~\n"


def _isa(kind: str, version: str, control: int, day: str) -> list[str]:
    isa = (
        f"ISA*00*          *00*          *ZZ*{'DENIALMODEL':<15}*ZZ*{'RECEIVER':<15}*{day[2:]}*1200*^*00501*"
        f"{control:09d}*0*T*:"
    )
    return [
        isa,
        f"GS*{'HC' if kind == '837' else 'HP'}*DENIALMODEL*RECEIVER*{day}*1200*{control}*X*{version}",
    ]


def _text(s: pd.Series) -> pd.Series:
    return s.fillna("").astype(str)


def _number(s: pd.Series, decimals: int) -> pd.Series:
    """Numbers as X12 writes them: no trailing zeros ('380', '12.5'), '' for missing (the
    table caps values far below where Python would write an exponent)."""
    values = pd.to_numeric(s, errors="coerce").round(decimals)
    text = values.astype(str).str.replace(r"\.0$", "", regex=True)
    return text.where(values.notna(), "").astype(object)


def _ccyymmdd(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s).dt.strftime("%Y%m%d")


def _write(path: str | Path, blocks: list[str]) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", encoding="ascii", errors="replace") as f:
        for block in blocks:
            f.write(block)


def _envelope(kind: str, version: str, control: int, day: str, tx: pd.DataFrame) -> list[str]:
    """An interchange around its transactions: `tx` has per transaction the segments that
    open it (`header`, text), its loops (`text`) and their segment count (`n`)."""
    number = pd.Series(np.arange(1, len(tx) + 1)).map("{:04d}".format).to_numpy()
    count = (tx["n"].to_numpy() + tx["header"].str.count(_T).to_numpy() + 2).astype(str)
    sets = (
        f"ST*{kind}*" + number + (f"*{version}" if kind == "837" else "") + _T  # ST03: 837 only
        + tx["header"].to_numpy() + tx["text"].to_numpy()
        + "SE*" + count + "*" + number + _T
    )  # fmt: skip
    head = "".join(s + _T for s in _isa(kind, version, control, day))
    return [head, *sets, f"GE*{len(tx)}*{control}{_T}IEA*1*{control:09d}{_T}"]


def _claim_diagnoses(lines: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(HI segment per claim, SV107 pointers per line): a claim's distinct diagnoses in
    order of first use (at most 12), each line pointing at its own (at most 4)."""
    dx = _text(lines["diagnosis_codes"]).str.split(";").explode()
    dx = dx[dx != ""].str.replace(".", "", regex=False)
    long = pd.DataFrame(
        {"line": dx.index, "claim": lines["claim_id"].to_numpy()[dx.index], "code": dx.to_numpy()}
    )
    firsts = long.drop_duplicates(["claim", "code"]).copy()
    firsts["pos"] = firsts.groupby("claim").cumcount() + 1
    firsts = firsts[firsts["pos"] <= 12]
    qualifier = np.where(firsts["pos"] == 1, "ABK:", "ABF:")
    firsts["hi"] = qualifier + firsts["code"]
    hi = "HI*" + join_groups(firsts["claim"].to_numpy(), firsts["hi"], "*")
    long = long.merge(firsts[["claim", "code", "pos"]], on=["claim", "code"]).drop_duplicates(["line", "pos"])
    long = long[long.groupby("line").cumcount() < 4]
    pointers = join_groups(long["line"].to_numpy(), long["pos"].astype(str), ":")
    return hi, pointers.reindex(range(len(lines)), fill_value="")


def _safe(s: pd.Series) -> pd.Series:
    """Text with the separators this writer declares replaced, so a value cannot split a
    segment (a description with '*' or ':')."""
    return _text(s).str.replace(r"[~*:^]", " ", regex=True)


def _short_procedure(h: pd.DataFrame) -> pd.Series:
    """HC:code[:modifiers] (SVC01, and SV101 without a description)."""
    code, mods = _text(h["hcpcs_code"]), _text(h["modifiers"])
    return "HC:" + code + np.where(mods != "", ":" + mods.str.replace(";", ":", regex=False), "")


def _procedure(h: pd.DataFrame) -> pd.Series:
    """SV101: the short form or, with a description, all four modifier slots then SV101-7."""
    code, desc = _text(h["hcpcs_code"]), _safe(h["drug_description"])
    mods = _text(h["modifiers"])
    short = _short_procedure(h)
    slots = mods.str.split(";", expand=True).reindex(columns=range(4)).fillna("")
    full = "HC:" + code + ":" + slots[0] + ":" + slots[1] + ":" + slots[2] + ":" + slots[3] + ":" + desc
    return short.where(desc == "", full)


def _line_blocks(h: pd.DataFrame, pointers: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(the 2400 loop of each line as text, its segment count)."""
    ndc = _text(h["ndc"])
    drug = np.where(
        ndc != "",
        "LIN**N4*" + ndc + _T + "CTP****" + _number(h["ndc_quantity"], 3) + "*" + _text(h["ndc_unit"]) + _T,
        "",
    )
    position = h.groupby("claim_id", sort=False).cumcount() + 1  # LX01 counts the claim's lines
    text = (
        "LX*" + position.astype(str) + _T
        + "SV1*" + _procedure(h) + "*" + _number(h["billed_amount"], 2) + "*UN*" + _number(h["units"], 3)
        + "*" + _text(h["place_of_service"]) + "**" + pointers.to_numpy() + _T
        + "DTP*472*D8*" + _ccyymmdd(h["service_date"]) + _T
        + "REF*6R*" + h["claim_id"].astype(str) + "-" + h["line_number"].astype(str) + _T
        + drug
    )  # fmt: skip
    return text, 4 + 2 * (ndc != "").astype(int)


def _claim_blocks(h: pd.DataFrame, hi: pd.Series) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """(the claims: one row each, the 2000A-2300 loops of each as text, their segment counts);
    HL ids count claims within a submission day (each claim its own provider and subscriber)."""
    claims = h[~h["claim_id"].duplicated().to_numpy()].reset_index(drop=True)
    day = _ccyymmdd(claims["submission_date"])
    k = claims.groupby(day).cumcount()
    hl1, hl2 = (2 * k + 1).astype(str), (2 * k + 2).astype(str)
    total = (
        h.groupby("claim_id", sort=False)["billed_amount"]
        .sum()
        .reindex(claims["claim_id"])
        .reset_index(drop=True)
    )
    pa = _text(claims["prior_auth_number"])
    patient = _safe(claims["patient_id"])
    npi, payer = _safe(claims["provider_npi"]), _safe(claims["payer_id"])
    text = (
        "HL*" + hl1 + "**20*1" + _T
        + "NM1*85*2*PROVIDER " + npi + "*****XX*" + npi + _T
        + "N3*1 MAIN STREET" + _T + "N4*SPRINGFIELD*IL*62701" + _T + "REF*EI*123456789" + _T
        + "HL*" + hl2 + "*" + hl1 + "*22*0" + _T
        + "SBR*P*18*******" + claims["payer_type"].map(FILING_INDICATORS) + _T
        + "NM1*IL*1*PATIENT*" + patient + "****MI*" + patient + _T
        + "N3*1 ELM STREET" + _T + "N4*SPRINGFIELD*IL*62701" + _T + "DMG*D8*19700101*U" + _T
        + "NM1*PR*2*PAYER " + payer + "*****PI*" + payer + _T
        + "CLM*" + _safe(claims["claim_id"]) + "*" + _number(total, 2)
        + "***" + _text(claims["place_of_service"]) + ":B:1*Y*A*Y*Y" + _T
        + np.where(pa != "", "REF*G1*" + pa + _T, "")
        + hi.reindex(claims["claim_id"]).to_numpy() + _T
    )  # fmt: skip
    return claims.assign(_day=day), text, 14 + (pa != "").astype(int)


def write_837(history: pd.DataFrame, path: str | Path) -> None:
    """The claims of a claim-line history as one 837P file (a transaction per submission day)."""
    h = history.sort_values(["submission_date", "claim_id", "line_number"], kind="stable").reset_index(
        drop=True
    )
    hi, pointers = _claim_diagnoses(h)
    line_text, line_n = _line_blocks(h, pointers)
    claims, claim_text, claim_n = _claim_blocks(h, hi)
    claim_no = h["claim_id"].ne(h["claim_id"].shift()).cumsum() - 1
    blocks = pd.DataFrame(
        {
            "day": claims["_day"].to_numpy(),
            "text": claim_text.to_numpy() + join_groups(claim_no.to_numpy(), line_text, "").to_numpy(),
            "n": claim_n.to_numpy() + line_n.groupby(claim_no).sum().to_numpy(),
        }
    )
    tx = blocks.groupby("day", sort=True).agg(text=("text", "".join), n=("n", "sum")).reset_index()
    tx["header"] = (
        "BHT*0019*00*" + tx["day"] + "*" + tx["day"] + "*1200*CH" + _T
        + "NM1*41*2*DENIAL MODEL*****46*DENIALMODEL" + _T + "PER*IC*BILLING*TE*5555555555" + _T
        + "NM1*40*2*RECEIVER*****46*RECEIVER" + _T
    )  # fmt: skip
    first_day = str(blocks["day"].min()) if len(blocks) else "20000101"
    _write(path, _envelope("837", "005010X222A1", 1, first_day, tx))


def write_835(history: pd.DataFrame, path: str | Path) -> None:
    """The outcomes of a claim-line history as one 835 file: a transaction per payer and
    adjudication day, a CLP per claim with the lines adjudicated that day. A line's CARCs
    become one CAS each (the first carries billed - paid, the others 0)."""
    h = history.sort_values(["payer_id", "adjudication_date", "claim_id", "line_number"], kind="stable")
    h = h.reset_index(drop=True)
    denied = denied_labels(h)
    billed = pd.to_numeric(h["billed_amount"]).fillna(0.0)
    paid = pd.to_numeric(h["paid_amount"]).fillna(0.0)
    carcs = _text(h["carc_codes"]).str.split(";").explode()
    carcs = carcs[carcs != ""]
    group_reason = carcs.str.split("-", n=1)
    first = ~carcs.index.duplicated()
    amount = np.where(first, (billed - paid).to_numpy()[carcs.index], 0.0)
    cas = (
        "CAS*"
        + group_reason.str[0]
        + "*"
        + group_reason.str[1]
        + "*"
        + _number(pd.Series(amount, index=carcs.index), 2)
        + _T
    )
    cas_text = join_groups(cas.index.to_numpy(), cas, "").reindex(h.index, fill_value="")
    cas_n = cas.groupby(level=0).size().reindex(h.index, fill_value=0)
    units = _number(h["units"], 3)
    proc = _short_procedure(h)
    line_text = (
        "SVC*" + proc + "*" + _number(billed, 2) + "*" + _number(paid, 2) + "**" + units + _T
        + "DTM*472*" + _ccyymmdd(h["service_date"]) + _T
        + cas_text
        + "REF*6R*" + h["claim_id"].astype(str) + "-" + h["line_number"].astype(str) + _T
    )  # fmt: skip
    line_n = 3 + cas_n
    day = _ccyymmdd(h["adjudication_date"])
    key = h["payer_id"].astype(str) + "|" + day + "|" + h["claim_id"].astype(str)
    claim_no = key.ne(key.shift()).cumsum() - 1
    per_claim = pd.DataFrame({"billed": billed, "paid": paid, "denied": denied, "no": claim_no}).groupby("no")
    sums = per_claim[["billed", "paid"]].sum()
    all_denied = per_claim["denied"].all()
    firsts = h[key.ne(key.shift()).to_numpy()].reset_index(drop=True)
    status = np.where(all_denied.to_numpy(), "4", "1")
    clp = (
        "CLP*" + _safe(firsts["claim_id"]) + "*" + status
        + "*" + _number(sums["billed"], 2).to_numpy() + "*" + _number(sums["paid"], 2).to_numpy()
        + "**" + firsts["payer_type"].map(_CLP06).to_numpy()
        + "*" + _safe(firsts["claim_id"]) + "-PAYER" + _T
        + "NM1*QC*1*PATIENT*" + _safe(firsts["patient_id"]) + "****MI*" + _safe(firsts["patient_id"]) + _T
    )  # fmt: skip
    blocks = pd.DataFrame(
        {
            "tx": (firsts["payer_id"].astype(str) + "|" + _ccyymmdd(firsts["adjudication_date"])).to_numpy(),
            "text": clp.to_numpy() + join_groups(claim_no.to_numpy(), line_text, "").to_numpy(),
            "n": 2 + line_n.groupby(claim_no).sum().to_numpy(),
            "paid": sums["paid"].to_numpy(),
            "payer": firsts["payer_id"].astype(str).to_numpy(),
            "npi": firsts["provider_npi"].astype(str).to_numpy(),
        }
    )
    agg = {"text": ("text", "".join), "n": ("n", "sum"), "paid": ("paid", "sum")}
    tx = (
        blocks.groupby("tx", sort=True)
        .agg(**agg, payer=("payer", "first"), npi=("npi", "first"))
        .reset_index()
    )
    day = tx["tx"].str.split("|").str[1]
    tx["header"] = (
        "BPR*I*" + _number(tx["paid"], 2) + "*C*CHK************" + day + _T
        + "TRN*1*" + day + pd.Series(np.arange(1, len(tx) + 1)).map("{:06d}".format) + "*1999999999" + _T
        + "DTM*405*" + day + _T + "N1*PR*PAYER " + _safe(tx["payer"]) + _T
        + "N3*1 PAYER WAY" + _T + "N4*SPRINGFIELD*IL*62701" + _T + "PER*BL*TECHNICAL*TE*5555555555" + _T
        + "N1*PE*PROVIDER*XX*" + tx["npi"] + _T + "LX*1" + _T
    )  # fmt: skip
    first_day = str(day.min()) if len(tx) else "20000101"
    _write(path, _envelope("835", "005010X221A1", 2, first_day, tx))
