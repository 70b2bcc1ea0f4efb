"""Hand-sized example claims: a clean claim per drug, and a claim that breaks one rule.

Used by `make demo`, the docs and the tests. A clean claim passes every rule of the shipped
pack; `broken_claim(rule)` changes the one thing that rule checks, so a coder can see each
rule fire on a claim that is otherwise right.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from denial_model.reference import billable_example
from denial_model.rules.kinds import KINDS
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
        admin="99213",  # the visit of a supervised session (commercial: S0013 plus an E/M)
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
# A drug no policy describes, billed under J3490 as a careful biller would (a new product).
UNLISTED_DRUG = dict(
    hcpcs_code="J3490",
    ndc="70121199901",
    ndc_quantity=1.0,
    ndc_unit="UN",
    drug_description="newdrugumab 10 mg/mL IV",
    dose_mg=10.0,
    units=1.0,
)
ADMIN_AMOUNT = 40.0
# Codes a rule may scope to, and the drug whose clean line fits that code.
CODE_DRUG = {
    "J3490": "ketamine",
    "C9399": "anakinra",
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


def _base_for(rule: Rule) -> pd.DataFrame:
    """A clean claim inside the rule's `applies_to` (drug, code, payer type, dates, ...)."""
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
    unlisted = False
    if "not_drugs" in a and drug in a["not_drugs"]:
        unlisted = "naltrexone" in a["not_drugs"]
        drug = "ketamine" if unlisted else "naltrexone"
    payer = a.get("payer_types", ["commercial"])[0]
    svc = date(2025, 3, 4)
    if "service_from" in a:
        svc = max(svc, a["service_from"])
    if "service_to" in a:
        svc = min(svc, a["service_to"])
    pos = "24" if code == "C9399" else "11"
    claim = clean_claim(drug, payer, code=code, service_date=svc, place_of_service=pos)
    if unlisted:
        for column, value in UNLISTED_DRUG.items():
            claim.loc[0, column] = value
    if rule.kind == "billed_with":  # the claim must not already hold what the rule pairs with
        named = set(rule.params.get("codes", []))
        in_range = claim["hcpcs_code"].map(
            lambda c: c in named or any(lo <= c <= hi for lo, hi in rule.params.get("ranges", []))
        )
        claim = claim[~in_range | (claim.index == 0)].reset_index(drop=True)
    if "containers" in a:
        drug_of = {"multiple_dose": "ketamine", "single_dose": "naltrexone"}
        if drug != drug_of[a["containers"][0]]:
            claim = clean_claim(drug_of[a["containers"][0]], payer, service_date=svc)
    if a.get("diagnosis_any_of"):
        claim["diagnosis_codes"] = billable_example(a["diagnosis_any_of"][0])
    if a.get("modifiers_any_of"):
        claim.loc[0, "modifiers"] = a["modifiers_any_of"][0]
    if "place_of_service" in a:
        claim["place_of_service"] = a["place_of_service"][0]
    return claim


def break_claim(claim: pd.DataFrame, rule: Rule) -> pd.DataFrame:
    """Change the drug line (row 0) of a clean claim so that `rule` fires on it: the rule's
    check kind says how (`rules/kinds.py`)."""
    return KINDS[rule.kind].breaks(claim.copy(), rule.params)


def claim_for_rule(rule: Rule) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(passing claim, failing claim) for one rule. For an `excluded` rule the passing claim
    is the same drug billed to a payer type the exclusion does not name."""
    base = _base_for(rule)
    broken = break_claim(base, rule)
    if rule.kind == "excluded" and "payer_types" in rule.applies_to:
        others = [t for t in ("commercial", "medicaid") if t not in rule.applies_to["payer_types"]]
        base = base.assign(payer_type=others[0], payer_id=others[0].upper() + "-01")
    elif rule.kind == "excluded" and "place_of_service" in rule.applies_to:
        base = base.assign(place_of_service="11")
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
        _, broken = claim_for_rule(rule)
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
