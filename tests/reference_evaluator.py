"""Plain per-row evaluation of a rule pack: the slow, obvious reference the vectorized
engine is checked against. Written independently of the engine, one row at a time."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from denial_model.reference import Reference, icd10_billable
from denial_model.rules.pack import Rule, RulePack
from denial_model.table import DOCUMENTATION_TOKENS


def _mods(row) -> list[str]:
    return [m for m in str(row["modifiers"]).split(";") if m]


def _dx(row) -> list[str]:
    return [d for d in str(row["diagnosis_codes"]).split(";") if d]


def _docs(row) -> set[str]:
    """The documents on the line; documentation that is not known ("unknown") counts as every
    document, so no rule finds one missing (docs/claim-lines.md)."""
    if str(row["documentation"]) == "unknown":
        return set(DOCUMENTATION_TOKENS)
    return {t for t in str(row["documentation"]).split(";") if t in DOCUMENTATION_TOKENS}


def _missing(row, field) -> bool:
    v = row[field]
    return v is None or (isinstance(v, float) and math.isnan(v)) or v == ""


def ndc_codes_of(ref: Reference) -> dict[str, set[str]]:
    """NDC -> every HCPCS code the crosswalk lists it under."""
    out: dict[str, set[str]] = {}
    for ndc, code in zip(ref.crosswalk["ndc"], ref.crosswalk["hcpcs_code"], strict=True):
        out.setdefault(ndc, set()).add(code)
    return out


def drug_of(row, pack: RulePack, ref: Reference) -> str:
    codes = ndc_codes_of(ref).get(row["ndc"], set())
    for p in pack.policies:
        if p.is_drug and ((row["ndc"] and row["ndc"] in p.match_ndcs) or codes & set(p.match_codes)):
            return p.name
    for p in pack.policies:
        if p.is_drug and p.match_description:
            for word in p.match_description:
                if re.search(rf"\b{re.escape(word)}\b", str(row["drug_description"]), re.I):
                    return p.name
    for p in pack.policies:
        if p.is_drug and row["hcpcs_code"] in p.match_codes:
            return p.name
    return ""


def reference_hits(df: pd.DataFrame, pack: RulePack, ref: Reference) -> np.ndarray:
    rows = df.to_dict("records")
    n = len(rows)
    drugs = [drug_of(r, pack, ref) for r in rows]
    xw = ndc_codes_of(ref)
    drug_codes = set(ref.crosswalk["hcpcs_code"]) | set(pack.noc_codes)
    for p in pack.policies:
        drug_codes |= set(p.match_codes) | {p.document_code.code, p.official_code.code} - {None}
    out = np.zeros((n, len(pack.rules)), dtype=bool)
    for j, rule in enumerate(pack.rules):
        for i, row in enumerate(rows):
            if applies(rule, row, drugs[i], drug_codes, pack):
                out[i, j] = fires(rule, i, rows, drugs, xw, ref, pack, drug_codes)
    return out


def product_of(row, pack: RulePack):
    for pol in pack.policies:
        for p in pol.products:
            if p.ndc == row["ndc"]:
                return p
    return None


def applies(rule: Rule, row, drug: str, drug_codes: set, pack: RulePack | None = None) -> bool:
    a = rule.applies_to
    code = row["hcpcs_code"]
    if "containers" in a:
        product = product_of(row, pack)
        if product is None or product.container not in a["containers"]:
            return False
    if "drugs" in a and drug not in a["drugs"]:
        return False
    if "not_drugs" in a and drug in a["not_drugs"]:
        return False
    if "codes" in a and code not in a["codes"]:
        return False
    if "not_codes" in a and code in a["not_codes"]:
        return False
    if "code_prefixes" in a and not any(code.startswith(p) for p in a["code_prefixes"]):
        return False
    if a.get("drug_lines") and not (code in drug_codes or code.startswith("J")):
        return False
    if "payer_types" in a and row["payer_type"] not in a["payer_types"]:
        return False
    svc = pd.Timestamp(row["service_date"])
    if "service_from" in a and svc < pd.Timestamp(a["service_from"]):
        return False
    if "service_to" in a and svc > pd.Timestamp(a["service_to"]):
        return False
    if "modifiers_any_of" in a and not set(_mods(row)) & set(a["modifiers_any_of"]):
        return False
    if "diagnosis_any_of" in a and not any(d.startswith(tuple(a["diagnosis_any_of"])) for d in _dx(row)):
        return False
    return not ("place_of_service" in a and row["place_of_service"] not in a["place_of_service"])


def units_vs_ndc(row, rows, p, ref: Reference, pack: RulePack) -> bool:
    """Units against what the NDC quantity holds, for a line without a dose."""
    if not _missing(row, "dose_mg") or "JW" in _mods(row):
        return False
    code = row["hcpcs_code"]
    for o in rows:
        if o["claim_id"] == row["claim_id"] and o["hcpcs_code"] == code and "JW" in _mods(o):
            return False
    unit = p.get("unit_mg")
    if unit is None:
        unit = ref.hcpcs["unit_mg"].get(code, float("nan")) if code in ref.hcpcs.index else float("nan")
    qty, kind = row["ndc_quantity"], row["ndc_unit"]
    expected = float("nan")
    if kind in ("ME", "GR") and unit == unit and not _missing(row, "ndc_quantity"):
        expected = math.ceil(qty * (1000.0 if kind == "GR" else 1.0) / unit - 1e-9)
    elif kind == "UN" and not _missing(row, "ndc_quantity"):
        product = product_of(row, pack)
        if product is not None and product.container == "multiple_dose":
            return False
        x = ref.crosswalk
        listed = x[(x["ndc"] == row["ndc"]) & (x["hcpcs_code"] == code)]
        if len(listed) and listed.iloc[0]["pkg_qty"] > 0:
            first = listed.iloc[0]
            expected = math.ceil(qty * first["bill_units_per_pkg"] / first["pkg_qty"] - 1e-9)
        elif product is not None and product.mg_per_item and unit == unit:
            expected = math.ceil(qty * product.mg_per_item / unit - 1e-9)
    if expected != expected or expected <= 0:
        return False
    return abs(row["units"] - expected) > 1e-9


def fires(
    rule: Rule,
    i: int,
    rows: list,
    drugs: list,
    xw: dict,
    ref: Reference,
    pack: RulePack,
    drug_codes,
) -> bool:
    hc = ref.hcpcs
    row = rows[i]
    p = rule.params
    k = rule.kind
    code = row["hcpcs_code"]
    if k == "field_required":
        return any(_missing(row, f) for f in p["fields"])
    if k == "modifier_required":
        return not set(_mods(row)) & set(p["any_of"])
    if k == "modifier_forbidden":
        return bool(set(_mods(row)) & set(p["any_of"]))
    if k == "modifier_conflict":
        return set(p["all_of"]) <= set(_mods(row))
    if k == "units_vs_dose":
        unit = p.get("unit_mg")
        if unit is None:
            unit = hc["unit_mg"].get(code, float("nan")) if code in hc.index else float("nan")
        dose = row["dose_mg"]
        if _missing(row, "dose_mg") or not dose > 0 or unit != unit:
            return False
        return abs(row["units"] - math.ceil(dose / unit - 1e-9)) > 1e-9
    if k == "units_vs_ndc":
        return units_vs_ndc(row, rows, p, ref, pack)
    if k == "dose_in_code_band":
        if code not in hc.index or _missing(row, "dose_mg"):
            return False
        above, upto = hc.loc[code, "band_above_mg"], hc.loc[code, "band_upto_mg"]
        return above == above and not (above < row["dose_mg"] <= upto)
    if k == "documentation_any_of":
        return not set(p["any_of"]) & _docs(row)
    if k == "billed_with":
        if set(_mods(row)) & set(p.get("unless_modifiers", [])):
            return False
        for j, o in enumerate(rows):
            if j == i or o["patient_id"] != row["patient_id"] or o["service_date"] != row["service_date"]:
                continue
            c = o["hcpcs_code"]
            if c in p.get("codes", []) or any(lo <= c <= hi for lo, hi in p.get("ranges", [])):
                return True
        return False
    if k == "max_per_day":
        if "JW" in _mods(row):
            return False
        fld = p.get("field", "units")
        key = drugs[i] or code
        total, seen = 0.0, set()
        for j, other in enumerate(rows):
            if "JW" in _mods(other) or other["patient_id"] != row["patient_id"]:
                continue
            if other["service_date"] != row["service_date"] or (drugs[j] or other["hcpcs_code"]) != key:
                continue
            if not applies(rule, other, drugs[j], drug_codes, pack):
                continue
            dup_key = (other["hcpcs_code"], other["units"])
            if dup_key in seen:
                continue
            seen.add(dup_key)
            v = other[fld]
            total += 0.0 if v != v else v
        return total > p["max"] + 1e-9
    if k == "diagnosis_required":
        return not any(d.startswith(tuple(p["any_of"])) for d in _dx(row))
    if k == "diagnosis_flagged":
        hit = any(d.startswith(tuple(p["any_of"])) for d in _dx(row))
        unless = (
            any(d.startswith(tuple(p.get("unless_any_of", []))) for d in _dx(row))
            if p.get("unless_any_of")
            else False
        )
        return hit and not unless
    if k == "diagnosis_valid":
        return not all(icd10_billable([d])[0] for d in _dx(row))
    if k == "documentation_required":
        return not set(p["all_of"]) <= _docs(row)
    if k == "prior_auth_required":
        return _missing(row, "prior_auth_number")
    if k == "min_days_between_doses":
        if "JW" in _mods(row):
            return False
        svc = pd.Timestamp(row["service_date"])
        earlier = [
            pd.Timestamp(o["service_date"])
            for j, o in enumerate(rows)
            if o["patient_id"] == row["patient_id"]
            and "JW" not in _mods(o)
            and applies(rule, o, drugs[j], drug_codes, pack)
            and pd.Timestamp(o["service_date"]) < svc
        ]
        return bool(earlier) and (svc - max(earlier)).days < p["days"]
    if k == "place_of_service_allowed":
        return row["place_of_service"] not in p["allowed"]
    if k == "timely_filing":
        limit = (
            p.get("payers", {}).get(row["payer_id"])
            or p["limits"].get(row["payer_type"])
            or p.get("default", "365 days")
        )
        n, unit = limit.split()
        svc = pd.Timestamp(row["service_date"])
        if unit.startswith("day"):
            deadline = svc + pd.Timedelta(days=int(n))
        else:
            deadline = svc + pd.DateOffset(months=int(n) * (12 if unit.startswith("year") else 1))
        return pd.Timestamp(row["submission_date"]) > deadline
    if k == "duplicate_line":
        exempt = set(p.get("exempt_modifiers", ["76", "77"]))
        if set(_mods(row)) & exempt:
            return False

        def key(r):
            return (
                r["patient_id"],
                r["hcpcs_code"],
                r["service_date"],
                r["units"],
                "JW" in _mods(r),
                r["ndc"],
                r["drug_description"],
            )

        def order(r):
            return (pd.Timestamp(r["submission_date"]), r["claim_id"], r["line_number"])

        for j, o in enumerate(rows):
            if j == i or set(_mods(o)) & exempt or not applies(rule, o, drugs[j], drug_codes, pack):
                continue
            if key(o) == key(row) and (order(o), j) < (order(row), i):
                return True
        return False
    if k == "code_valid_on_date":
        if code[0].isdigit():
            return False
        procs = hc[hc["kind"] == "procedure"]
        svc = pd.Timestamp(row["service_date"])
        if code not in procs.index:
            priced = ref.priced_from.get(code)
            return priced is None or svc < priced
        add, term = procs.loc[code, "add_date"], procs.loc[code, "termination_date"]
        return (pd.notna(add) and svc < add) or (pd.notna(term) and svc > term)
    if k == "ndc_matches_code":
        listed = xw.get(row["ndc"], set())
        return bool(listed) and code not in listed and code not in pack.noc_codes
    if k == "specific_code_exists":
        if code not in pack.noc_codes:
            return False
        if xw.get(row["ndc"], set()) - set(pack.noc_codes):
            return True
        for pol in pack.policies:
            if pol.is_drug and pol.name == drugs[i]:
                return bool(pol.official_code.code) and pol.official_code.code not in pack.noc_codes
        return False
    if k == "billed_under":
        return code in p["codes"]
    if k == "administration_present":
        for o in rows:
            if o["claim_id"] != row["claim_id"]:
                continue
            c = o["hcpcs_code"]
            if c in p.get("codes", []) or any(lo <= c <= hi for lo, hi in p.get("ranges", [])):
                return False
        return True
    if k == "description_matches":
        return bool(re.search(p["pattern"], str(row["drug_description"]), re.I))
    if k == "excluded":
        return True
    raise AssertionError(f"reference evaluator has no kind {k}")
