"""Stage 3, clean claims, and stage 5's input: the claims become claim lines.

`Claims` holds one row per claim (one dose) as arrays: the clean attributes of its drug line
(real codes, NDCs and units from the reference tables; Medicare esketamine as the G2082 /
G2083 session), then whatever the mistake planters change, and the categories they planted.
`to_lines` turns the claims into lines: the drug line, an administration line, sometimes an
E/M visit with modifier 25, and for weight-based anakinra doses a JW wastage line; claims
sent twice come back under a new claim id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from denial_model.rules.pack import CATEGORIES
from denial_model.samples import DRUG_LINES
from denial_model.simulate.config import SimConfig
from denial_model.simulate.facts import PackFacts
from denial_model.simulate.patients import Course, Patients
from denial_model.simulate.world import World

__all__ = ["CAT_BIT", "Claims", "clean_claims", "to_lines"]

CAT_BIT = {c: 1 << i for i, c in enumerate(CATEGORIES)}


@dataclass
class Claims:
    """One row per claim. Arrays of the same length; the stages fill and change them."""

    block: int
    cfg: SimConfig
    course: Course
    provider: np.ndarray
    drug: np.ndarray
    payer: np.ndarray
    payer_type: np.ndarray
    diagnosis: np.ndarray
    weight_based: np.ndarray  # anakinra for CAPS: dose by weight
    session: np.ndarray  # Medicare esketamine: the G-code session, no separate drug line
    code: np.ndarray = field(default=None)
    dose: np.ndarray = field(default=None)
    units: np.ndarray = field(default=None)
    ndc: np.ndarray = field(default=None)
    description: np.ndarray = field(default=None)
    admin_code: np.ndarray = field(default=None)
    documentation: np.ndarray = field(default=None)
    modifiers: np.ndarray = field(default=None)
    prior_auth: np.ndarray = field(default=None)
    place: np.ndarray = field(default=None)
    lag: np.ndarray = field(default=None)  # days from service to submission
    planted: np.ndarray = field(default=None)  # bit mask of CATEGORIES
    truncated_dx: np.ndarray = field(default=None)  # the diagnosis is a category header (every line)
    no_admin: np.ndarray = field(default=None)
    em_no25: np.ndarray = field(default=None)  # an E/M visit without 25 beside the administration
    jw_multi: np.ndarray = field(default=None)  # a JW line for a multiple-dose vial
    sent_twice: np.ndarray = field(default=None)
    document_code: np.ndarray = field(default=None)  # billed under the document's code
    typo: np.ndarray = field(default=None)  # billed under a mistyped code

    @property
    def n(self) -> int:
        return len(self.drug)

    @property
    def drug_line(self) -> np.ndarray:
        """Claims whose first line is a billable drug line."""
        return ~self.session

    @property
    def service_date(self) -> np.ndarray:
        return np.datetime64(self.cfg.start) + self.course.day.astype("timedelta64[D]")

    def plant(self, category: str, where: np.ndarray) -> None:
        self.planted[where] |= CAT_BIT[category]

    def unplant(self, category: str, where: np.ndarray) -> None:
        self.planted[where] &= ~CAT_BIT[category]


def clean_claims(
    cfg: SimConfig, world: World, facts: PackFacts, patients: Patients, course: Course, b: int, rng
) -> Claims:
    """Every claim as a careful biller would send it."""
    pat = course.patient
    drug = patients.drug[pat]
    payer = patients.payer[pat]
    ptype = world.payer_type[payer]
    session = (drug == "esketamine") & (ptype == "medicare")
    c = Claims(
        block=b,
        cfg=cfg,
        course=course,
        provider=patients.provider[pat],
        drug=drug,
        payer=payer,
        payer_type=ptype,
        diagnosis=patients.diagnosis[pat].copy(),
        weight_based=(drug == "anakinra") & (patients.diagnosis[pat] == "M04.2"),
        session=session,
    )
    n = c.n
    spec = {d: DRUG_LINES[d] for d in np.unique(drug)}
    dose = np.array([spec[d]["dose_mg"] for d in drug], dtype=float)
    dose = np.where(drug == "esketamine", np.where(rng.random(n) < 0.5, 56.0, 84.0), dose)
    dose = np.where(drug == "ketamine", np.round(rng.uniform(30, 80, n) / 5) * 5, dose)
    dose = np.where(c.weight_based, np.round(rng.uniform(30, 90, n) / 5) * 5, dose)
    ndc = np.array([spec[d]["ndc"] for d in drug], dtype=object)
    ndc = np.where((drug == "esketamine") & (dose == 56.0), "50458002802", ndc).astype(object)
    code = np.array([spec[d]["hcpcs_code"] for d in drug], dtype=object)
    c.code = np.where(session, np.where(dose > 56, "G2083", "G2082"), code).astype(object)
    c.units = np.where(session, 1.0, np.where(np.isin(drug, ["esketamine", "naltrexone"]), dose, 1.0))
    c.ndc = np.where(session, "", ndc).astype(object)  # the session code carries no drug detail
    desc = np.array([spec[d]["drug_description"] for d in drug], dtype=object)
    c.description = np.where(session, "", desc).astype(object)
    c.dose = np.where(session, np.nan, dose)
    c.admin_code = np.array([spec[d]["admin"] for d in drug], dtype=object)
    docs = {d: ";".join(facts.documentation(d)) for d in np.unique(drug)}
    c.documentation = np.array([docs[d] for d in drug], dtype=object)
    single_dose = np.isin(c.code, list(facts.jz_codes))
    c.modifiers = np.where(single_dose, "JZ", "").astype(object)  # nothing discarded
    c.prior_auth = np.full(n, "", dtype=object)  # obtained where required: see mistakes.obtain_prior_auth
    place = world.prov_pos[c.provider].copy()
    c.place = np.where(drug == "esketamine", np.where(place == "22", "22", "11"), place).astype(object)
    c.planted = np.zeros(n, dtype=np.int64)
    c.truncated_dx = np.zeros(n, dtype=bool)
    c.no_admin = np.zeros(n, dtype=bool)
    c.em_no25 = np.zeros(n, dtype=bool)
    c.jw_multi = np.zeros(n, dtype=bool)
    c.sent_twice = np.zeros(n, dtype=bool)
    c.lag = np.zeros(n, dtype=np.int64)
    return c


def _frame(columns: dict, select: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({k: (v[select] if isinstance(v, np.ndarray) else v) for k, v in columns.items()})


def to_lines(c: Claims, world: World, rng: np.random.Generator) -> pd.DataFrame:
    """The claims as claim lines (drug, administration, E/M visit, JW wastage; in that order
    within a claim), with the simulator's bookkeeping in `_`-prefixed columns."""
    n = c.n
    days_total = (pd.Timestamp(c.cfg.end) - pd.Timestamp(c.cfg.start)).days
    keep = c.course.day < days_total
    em = rng.random(n) < c.cfg.em_visit_rate
    # JW wastage line for weight-based doses from a 100 mg syringe, on otherwise clean claims
    jw = c.weight_based & c.drug_line & (c.planted == 0) & (c.dose < 100)
    claim_level = CAT_BIT["timely_filing"] | CAT_BIT["duplicate_line"]
    other_planted = (c.planted & claim_level) | np.where(
        c.truncated_dx, CAT_BIT["diagnosis_not_supported"], 0
    )
    block_patient = c.course.patient.astype(np.int64) + c.block * c.cfg.block_patients
    claim_no = block_patient * 1000 + c.course.dose_index
    claim_id = np.array([f"S{c.cfg.seed}-{x:011d}" for x in claim_no], dtype=object)
    svc = c.service_date
    base = dict(
        claim_id=claim_id,
        patient_id=np.array([f"P{c.block}-{p}" for p in c.course.patient], dtype=object),
        provider_npi=world.prov_npi[c.provider],
        payer_id=world.payer_id[c.payer],
        payer_type=c.payer_type,
        service_date=svc,
        submission_date=svc + c.lag.astype("timedelta64[D]"),
        place_of_service=c.place,
        prior_auth_number=c.prior_auth,
        diagnosis_codes=c.diagnosis,
        _planted=c.planted,
        _prov=c.provider,
        _payer=c.payer,
        _drug=c.drug,
    )
    drug_detail = dict(
        ndc=c.ndc,
        ndc_quantity=np.where(c.ndc != "", 1.0, np.nan),
        ndc_unit=np.where(c.ndc != "", "UN", ""),
        drug_description=c.description,
    )
    empty = np.full(n, "", dtype=object)
    service = dict(
        modifiers=empty,
        dose_mg=np.full(n, np.nan),
        ndc=empty,
        ndc_quantity=np.full(n, np.nan),
        ndc_unit=empty,
        drug_description=empty,
        documentation=empty,
        units=np.ones(n),
        _drugline=np.zeros(n, bool),
        _planted=other_planted,
    )
    wasted = np.where(jw, 100.0 - np.minimum(c.dose, 100.0), np.where(c.jw_multi, 10.0, np.nan))
    parts = [
        (
            dict(
                base,
                **drug_detail,
                line_number=1,
                hcpcs_code=c.code,
                modifiers=c.modifiers,
                units=c.units,
                dose_mg=c.dose,
                documentation=c.documentation,
                _drugline=c.drug_line,
            ),
            np.ones(n, bool),
        ),
        (dict(base, **service, line_number=2, hcpcs_code=c.admin_code), c.drug_line & ~c.no_admin),
        (
            dict(
                base,
                **dict(
                    service,
                    modifiers=np.where(c.em_no25, "", "25").astype(object),
                    _planted=other_planted | np.where(c.em_no25, CAT_BIT["modifier_invalid"], 0),
                ),
                line_number=3,
                hcpcs_code=np.full(n, "99214", dtype=object),
            ),
            em | c.em_no25,
        ),
        (
            dict(
                base,
                **drug_detail,
                line_number=4,
                hcpcs_code=c.code,
                modifiers=np.full(n, "JW", dtype=object),
                units=np.ones(n),
                dose_mg=wasted,
                documentation=c.documentation + ";wastage",
                _drugline=np.zeros(n, bool),
                _planted=other_planted | np.where(c.jw_multi, CAT_BIT["wastage_modifier"], 0),
            ),
            (jw | c.jw_multi) & (wasted > 0),
        ),
    ]
    df = pd.concat([_frame(cols, sel & keep) for cols, sel in parts], ignore_index=True)
    order = np.lexsort((df["line_number"].to_numpy(), df["claim_id"].to_numpy().astype(str)))
    df = df.iloc[order].reset_index(drop=True)
    # sent twice: the whole claim again a few days later under a new claim id
    resent = set(claim_id[c.sent_twice & keep])
    if resent:
        again = df[df["claim_id"].isin(resent)].copy()
        again["claim_id"] = again["claim_id"] + "-R"
        again["submission_date"] = again["submission_date"] + np.timedelta64(3, "D")
        again["_planted"] = again["_planted"] | CAT_BIT["duplicate_line"]
        df = pd.concat([df, again], ignore_index=True)
    return df
