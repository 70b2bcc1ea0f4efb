"""Hand-sized example claims: a clean claim per drug, and a claim that breaks one rule.

Used by `make demo`, the docs and the tests. A clean claim passes every rule of the shipped
pack; `broken_claim(rule)` changes the one thing that rule checks, so a coder can see each
rule fire on a claim that is otherwise right.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import cache

import numpy as np
import pandas as pd

from denial_model.rules.pack import CATEGORIES, Rule, RulePack, load_pack
from denial_model.table import DOCUMENTATION_TOKENS

ALL_DOCS = ";".join(t for t in DOCUMENTATION_TOKENS)

# One clean drug line per drug (policy) or bare code; the dose fits the code's billing unit.
DRUG_LINES: dict[str, dict] = {
    "esketamine": dict(
        hcpcs_code="S0013",
        units=84.0,
        dose_mg=84.0,
        ndc="50458002803",
        ndc_quantity=1.0,
        ndc_unit="UN",
        drug_description="esketamine (Spravato) nasal spray 84 mg",
        diagnosis_codes="F33.2",
        billed_amount=1050.0,
        admin="G2083",
    ),
    "ketamine": dict(
        hcpcs_code="J3490",
        units=1.0,
        dose_mg=50.0,
        ndc="67457010810",
        ndc_quantity=0.5,
        ndc_unit="ML",
        drug_description="ketamine HCl 100 mg/mL IV",
        diagnosis_codes="S52.501A",
        billed_amount=45.0,
        admin="96374",
    ),
    "naltrexone": dict(
        hcpcs_code="J2315",
        units=380.0,
        dose_mg=380.0,
        ndc="65757030001",
        ndc_quantity=1.0,
        ndc_unit="UN",
        drug_description="naltrexone ER (Vivitrol) 380 mg IM",
        diagnosis_codes="F11.20",
        billed_amount=1900.0,
        admin="96372",
    ),
    "anakinra": dict(
        hcpcs_code="J3590",
        units=1.0,
        dose_mg=100.0,
        ndc="66658023407",
        ndc_quantity=0.67,
        ndc_unit="ML",
        drug_description="anakinra (Kineret) 100 mg/0.67 mL SC",
        diagnosis_codes="M05.79",
        billed_amount=220.0,
        admin="96372",
    ),
}
ADMIN_AMOUNT = 40.0
# Well-formed but non-existent ICD-10-CM codes in the same family as a clean line's diagnosis.
_INVALID_DX = {"F11": "F11.2Z", "F33": "F33.Z", "M05": "M05.7Z", "S52": "S52.5ZZ"}
# Codes a rule may scope to, and the drug whose clean line fits that code.
CODE_DRUG = {
    "J3490": "ketamine",
    "C9399": "ketamine",
    "J9999": "ketamine",
    "J3590": "anakinra",
    "S0013": "esketamine",
    "J2315": "naltrexone",
}


def clean_claim(
    drug: str = "naltrexone",
    payer_type: str = "commercial",
    claim_id: str = "C1",
    patient_id: str = "P1",
    service_date: date = date(2025, 3, 4),
    code: str | None = None,
    place_of_service: str = "11",
) -> pd.DataFrame:
    """A claim (drug line + administration line) that no rule of the shipped pack flags."""
    spec = dict(DRUG_LINES[drug])
    admin = spec.pop("admin")
    if code:
        spec["hcpcs_code"] = code
    sub = service_date + timedelta(days=7)
    common = dict(
        claim_id=claim_id,
        patient_id=patient_id,
        provider_npi="1234567893",
        payer_id=f"{payer_type.upper()}-01",
        payer_type=payer_type,
        service_date=service_date.isoformat(),
        submission_date=sub.isoformat(),
        place_of_service=place_of_service,
        prior_auth_number="PA-" + claim_id,
    )
    mods = "JZ" if spec["hcpcs_code"] == "J2315" else ""
    drug_line = dict(common, line_number=1, modifiers=mods, documentation=ALL_DOCS, **spec)
    admin_line = dict(
        common,
        line_number=2,
        hcpcs_code=admin,
        modifiers="",
        units=1.0,
        billed_amount=ADMIN_AMOUNT,
        dose_mg=np.nan,
        ndc="",
        ndc_quantity=np.nan,
        ndc_unit="",
        drug_description="",
        diagnosis_codes=spec["diagnosis_codes"],
        documentation="",
    )
    return pd.DataFrame([drug_line, admin_line])


@cache
def _billable_example(prefix: str) -> str:
    """A billable ICD-10-CM code starting with `prefix` (the prefix itself if billable)."""
    import simple_icd_10_cm as cm

    candidates = [prefix] if cm.is_valid_item(prefix) else []
    if not candidates:
        parent = prefix.rstrip(".")
        while parent and not cm.is_valid_item(parent):
            parent = parent[:-1]
        candidates = [c for c in cm.get_descendants(parent) if c.startswith(prefix)] if parent else []
    else:
        candidates += cm.get_descendants(prefix)
    for c in candidates:
        if cm.is_leaf(c):
            return c
    raise ValueError(f"no billable ICD-10-CM code under {prefix}")


def _base_for(rule: Rule, pack: RulePack) -> tuple[pd.DataFrame, bool]:
    """Clean claim inside the rule's applies_to; second value: the claim matches applies_to."""
    a = rule.applies_to
    drug = "naltrexone"
    code = None
    if a.get("drugs"):
        drug = a["drugs"][0]
    elif a.get("codes"):
        code = a["codes"][0]
        drug = CODE_DRUG.get(code, "naltrexone")
        if drug == "naltrexone" and code != "J2315":
            code = "J2315" if code in ("J3262", "J3358", "J1745") else code
    elif a.get("code_prefixes"):
        drug = "esketamine"
    if "not_drugs" in a and drug in a["not_drugs"]:
        drug = "naltrexone"
    payer = a.get("payer_types", ["commercial"])[0]
    svc = date(2025, 3, 4)
    if "service_from" in a:
        svc = max(svc, a["service_from"])
    if "service_to" in a:
        svc = min(svc, a["service_to"])
    pos = "22" if code == "C9399" else "11"
    claim = clean_claim(drug, payer, code=code, service_date=svc, place_of_service=pos)
    if a.get("diagnosis_any_of"):
        claim["diagnosis_codes"] = _billable_example(a["diagnosis_any_of"][0])
    if a.get("modifiers_any_of"):
        claim.loc[0, "modifiers"] = a["modifiers_any_of"][0]
    if "place_of_service" in a:
        claim["place_of_service"] = a["place_of_service"][0]
    return claim, True


def _pick_outside(allowed: list[str], candidates: list[str]) -> str:
    return next(c for c in candidates if c not in allowed)


def break_claim(claim: pd.DataFrame, rule: Rule) -> pd.DataFrame:
    """Change the drug line (row 0) of a clean claim so that `rule` fires on it."""
    c = claim.copy()
    p = rule.params
    k = rule.kind
    if k == "field_required":
        f = p["fields"][0]
        c.loc[0, f] = np.nan if f in ("dose_mg", "ndc_quantity") else ""
    elif k == "modifier_required":
        c.loc[0, "modifiers"] = ""
    elif k == "modifier_forbidden":
        c.loc[0, "modifiers"] = ";".join(filter(None, [c.loc[0, "modifiers"], p["any_of"][0]]))
    elif k == "modifier_conflict":
        c.loc[0, "modifiers"] = ";".join(p["all_of"])
    elif k == "units_vs_dose":
        units = float(c.loc[0, "units"])
        c.loc[0, "units"] = units - 1 if units > 1 else units + 1
    elif k == "max_per_day":
        fld = p.get("field", "units")
        c.loc[0, fld] = float(p["max"]) + 10
        if fld == "dose_mg" and c.loc[0, "hcpcs_code"] == "S0013":
            c.loc[0, "units"] = float(p["max"]) + 10
    elif k == "diagnosis_required":
        c["diagnosis_codes"] = "I10"
    elif k == "diagnosis_flagged":
        c["diagnosis_codes"] = _billable_example(p["any_of"][0])
    elif k == "diagnosis_valid":
        c.loc[0, "diagnosis_codes"] = _INVALID_DX.get(c.loc[0, "diagnosis_codes"][:3], "I10.Z")
    elif k == "documentation_required":
        keep = [t for t in str(c.loc[0, "documentation"]).split(";") if t not in p["all_of"]]
        c.loc[0, "documentation"] = ";".join(keep)
    elif k == "prior_auth_required":
        c["prior_auth_number"] = ""
    elif k == "min_days_between_doses":
        again = c.copy()
        svc = date.fromisoformat(c.loc[0, "service_date"]) - timedelta(days=max(int(p["days"]) - 1, 0))
        again["claim_id"] = c.loc[0, "claim_id"] + "-earlier"
        again["service_date"] = svc.isoformat()
        again["submission_date"] = (svc + timedelta(days=1)).isoformat()
        c = pd.concat([c, again], ignore_index=True)
    elif k == "place_of_service_allowed":
        c["place_of_service"] = _pick_outside(p["allowed"], ["12", "81", "31", "11"])
    elif k == "timely_filing":
        limit = p["limit_days"].get(c.loc[0, "payer_type"], p.get("default_days", 365))
        sub = date.fromisoformat(c.loc[0, "service_date"]) + timedelta(days=int(limit) + 30)
        c["submission_date"] = sub.isoformat()
    elif k == "duplicate_line":
        first = c.copy()
        first["claim_id"] = c.loc[0, "claim_id"] + "-first"
        first["submission_date"] = (
            date.fromisoformat(c.loc[0, "submission_date"]) - timedelta(days=1)
        ).isoformat()
        c = pd.concat([c, first], ignore_index=True)
    elif k == "code_valid_on_date":
        c.loc[0, "hcpcs_code"] = "J9998"  # not in the code set
        c.loc[0, "ndc"] = ""
    elif k == "ndc_matches_code":
        c.loc[0, "ndc"] = "00143950125"  # a J1630 (haloperidol) product
    elif k == "specific_code_exists":
        c.loc[0, "hcpcs_code"] = "J3490"
        c.loc[0, "ndc"] = "65757030001"  # Vivitrol: its own code is J2315
        c.loc[0, "drug_description"] = "naltrexone ER 380 mg"
    elif k == "billed_under":
        c.loc[0, "hcpcs_code"] = p["codes"][0]
    elif k == "administration_present":
        c = c.iloc[[0]].reset_index(drop=True)
    elif k == "description_matches":
        c.loc[0, "drug_description"] = "investigational agent 10 mg/mL"
    elif k == "excluded":
        pass  # fires wherever it applies
    else:  # pragma: no cover - a new kind must say how to break it
        raise ValueError(f"no break for kind {k}")
    return c


def claim_for_rule(rule: Rule, pack: RulePack | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(passing claim, failing claim) for one rule. For an `excluded` rule the passing claim
    is the same drug billed to a payer type the exclusion does not name."""
    pack = pack or load_pack()
    base, _ = _base_for(rule, pack)
    broken = break_claim(base, rule)
    if rule.kind == "excluded":
        others = [t for t in ("commercial", "medicaid") if t not in rule.applies_to.get("payer_types", [])]
        base = base.assign(payer_type=others[0], payer_id=others[0].upper() + "-01")
    return base, broken


def sample_table(pack: RulePack | None = None) -> pd.DataFrame:
    """One clean claim per drug, then one broken claim per category (its first rule).

    Claim ids say what each claim is: `CLEAN-<drug>` or `BROKEN-<category>`.
    """
    pack = pack or load_pack()
    parts = []
    for i, drug in enumerate(DRUG_LINES):
        parts.append(clean_claim(drug, claim_id=f"CLEAN-{drug}", patient_id=f"PC{i}"))
    for i, cat in enumerate(CATEGORIES):
        rule = next(r for r in pack.rules if r.category == cat)
        _, broken = claim_for_rule(rule, pack)
        ids = broken["claim_id"].str.replace("C1", f"BROKEN-{cat}", regex=False)
        parts.append(
            broken.assign(
                claim_id=ids,
                patient_id=f"PB{i}",
                prior_auth_number=broken["prior_auth_number"].where(
                    broken["prior_auth_number"] == "", "PA-" + ids
                ),
            )
        )
    return pd.concat(parts, ignore_index=True)
