"""Claim history simulator (shared/spec/history.md): a model of providers, patients, payers
and time that writes claim-line tables with outcomes and the true denial probability.

The generative story, in order:
1. **World** (fixed by the seed): providers of five specialties, each with its own error
   propensities and submission habits; payers of four types, each with its own base denial
   rate, strictness per category, filing limit; one payer that starts enforcing prior
   authorization mid-period; one payer with a behaviour no rule names (it denies one
   specialty's drug lines at a high rate).
2. **Patients** (in fixed-size blocks, each with its own random stream, so the output does not
   depend on how blocks are grouped into chunks): a provider, a drug fitting the specialty,
   a payer, diagnoses, and a course of repeat doses over time.
3. **Claims**: per dose a drug line with real codes, NDCs and units from the reference
   tables, an administration line, sometimes an E/M visit and a JW wastage line.
4. **Mistakes**: rule breaks planted per provider propensity (missing NDC, wrong billing unit,
   document codes, missing documentation or authorization, late filing, ...); the planted
   categories are kept in `planted_categories` (simulator truth, never a feature).
5. **Outcomes**: `p_true = 1 - (1 - base) * prod(1 - strictness of each planted category)
   * (1 - hidden behaviour)`; `denied ~ Bernoulli(p_true)`; `carc_codes` from the category
   drawn as the driver; `paid_amount` from the ASP payment limit where the code has one;
   `adjudication_date`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from denial_model.errors import ConfigError
from denial_model.reference import Reference, load_reference
from denial_model.rules.pack import CATEGORIES
from denial_model.samples import DRUG_LINES
from denial_model.table import PAYER_TYPES

CAT_BIT = {c: 1 << i for i, c in enumerate(CATEGORIES)}
CARC = {
    "code_invalid": "CO-181",
    "code_drug_mismatch": "CO-16",
    "ndc_missing": "CO-16",
    "noc_information_missing": "CO-16",
    "noc_specific_code_exists": "CO-16",
    "units_dose_mismatch": "CO-16",
    "units_exceed_maximum": "CO-151",
    "wastage_modifier": "CO-4",
    "modifier_invalid": "CO-4",
    "diagnosis_not_supported": "CO-11",
    "off_label_use": "CO-50",
    "prior_auth_missing": "CO-197",
    "documentation_missing": "CO-16",
    "frequency_exceeded": "CO-119",
    "place_of_service_invalid": "CO-58",
    "not_covered": "CO-96",
    "timely_filing": "CO-29",
    "duplicate_line": "CO-18",
    "administration_missing": "CO-16",
}
# Denials no planted break explains draw their CARC from this mix (most are information requests).
BASE_CARCS = {"CO-16": 0.45, "CO-50": 0.2, "CO-197": 0.15, "CO-4": 0.1, "CO-45": 0.1}
SPECIALTIES = ("psychiatry", "addiction_medicine", "rheumatology", "oncology_infusion", "anesthesia_pain")


def _d(**kw: Any) -> Any:
    """A dict-valued dataclass field whose default is a fresh deep copy."""
    return field(default_factory=lambda: copy.deepcopy(kw))


@dataclass
class SimConfig:
    """Every knob of the simulator with its default. Any field can be set from YAML."""

    lines: int = 200_000  # stop after about this many lines (whole claims only)
    seed: int = 0
    start: date = date(2023, 1, 1)  # first service date
    months: int = 33  # service dates span this many months (default through Sep 2025)
    block_patients: int = 2_000  # patients per random-stream block (fixes the output)
    chunk_blocks: int = 8  # blocks written per chunk (memory only; output does not change)
    n_providers: int = 120
    specialty_mix: dict = _d(
        psychiatry=0.3, addiction_medicine=0.25, rheumatology=0.2, oncology_infusion=0.1, anesthesia_pain=0.15
    )
    # drug mix per specialty
    drugs: dict = _d(
        psychiatry={"esketamine": 0.65, "ketamine": 0.35},
        addiction_medicine={"naltrexone": 1.0},
        rheumatology={"anakinra": 1.0},
        oncology_infusion={"ketamine": 0.5, "anakinra": 0.5},
        anesthesia_pain={"ketamine": 1.0},
    )
    # payer-type mix of patients
    payer_type_mix: dict = _d(medicare=0.25, medicare_advantage=0.2, medicaid=0.2, commercial=0.35)
    # drugs whose patients' payers differ (self-injected anakinra is rarely billed to Medicare)
    payer_type_mix_by_drug: dict = _d(
        anakinra={"medicare": 0.03, "medicare_advantage": 0.2, "medicaid": 0.17, "commercial": 0.6}
    )
    payers_per_type: dict = _d(medicare=2, medicare_advantage=3, medicaid=3, commercial=5)
    # payers' base rate of denials no rule explains, by type (each payer varies around it)
    base_denial: dict = _d(medicare=0.02, medicare_advantage=0.055, medicaid=0.05, commercial=0.04)
    # how often a payer denies a line with a planted break, by category (payers vary around it)
    strictness: dict = _d(
        code_invalid=0.95,
        code_drug_mismatch=0.85,
        ndc_missing=0.8,
        noc_information_missing=0.7,
        noc_specific_code_exists=0.7,
        units_dose_mismatch=0.6,
        units_exceed_maximum=0.8,
        wastage_modifier=0.5,
        modifier_invalid=0.35,
        diagnosis_not_supported=0.8,
        off_label_use=0.12,
        prior_auth_missing=0.85,
        documentation_missing=0.45,
        frequency_exceeded=0.75,
        place_of_service_invalid=0.6,
        not_covered=0.9,
        timely_filing=0.95,
        duplicate_line=0.95,
        administration_missing=0.3,
    )
    # payer types scale every strictness (Medicare pays more rule breaks than Medicaid does)
    strictness_scale: dict = _d(medicare=0.6, medicare_advantage=1.0, medicaid=1.0, commercial=0.9)
    strictness_spread: float = 0.8  # payer-to-payer spread of strictness (logit scale sd)
    # mean probability that a drug line of an eligible claim carries each mistake
    error_rates: dict = _d(
        code_drug_mismatch=0.012,
        ndc_missing=0.03,
        noc_information_missing=0.02,
        noc_specific_code_exists=0.006,
        units_dose_mismatch=0.02,
        units_exceed_maximum=0.008,
        wastage_modifier=0.06,
        modifier_invalid=0.04,
        diagnosis_not_supported=0.02,
        prior_auth_missing=0.05,
        documentation_missing=0.07,
        frequency_exceeded=0.02,
        place_of_service_invalid=0.008,
        not_covered=0.006,
        timely_filing=0.006,
        duplicate_line=0.008,
        administration_missing=0.02,
        code_invalid=0.004,
    )
    provider_error_shape: float = 1.5  # gamma shape of provider multipliers (lower: more uneven)
    document_code_providers: float = 0.1  # share of providers who bill the documents' codes
    document_code_rate: float = 0.5  # how often those providers do
    em_visit_rate: float = 0.2
    off_label_share: dict = _d(anakinra=0.12)  # share of patients with an off-label diagnosis
    filing_limit_days: dict = _d(
        medicare=[365, 365], medicare_advantage=[180, 365], medicaid=[180, 365], commercial=[90, 180]
    )
    # a payer that starts enforcing a category from a date
    enforcement_change: dict = _d(
        payer="COMMERCIAL-2", category="prior_auth_missing", start=date(2024, 7, 1), before=0.1, after=0.97
    )
    # a behaviour no rule names: this payer denies this specialty's drug lines at this rate
    hidden_behaviour: dict = _d(payer="COMMERCIAL-3", specialty="anesthesia_pain", rate=0.45)
    # provider-level quality no rule sees (log-odds sd on the base rate)
    provider_base_sd: float = 0.5

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> SimConfig:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        known = {f.name for f in dataclasses.fields(cls)}
        bad = set(raw) - known
        if bad:
            raise ConfigError(f"{path}: unknown simulator setting(s): {sorted(bad)}")
        base = cls()
        for k, v in raw.items():
            cur = getattr(base, k)
            if isinstance(cur, dict) and isinstance(v, dict):
                v = {**cur, **v}
            setattr(base, k, v)
        return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict:
        return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in dataclasses.asdict(self).items()}

    @property
    def end(self) -> date:
        return (pd.Timestamp(self.start) + pd.DateOffset(months=self.months) - pd.Timedelta(days=1)).date()


# ----------------------------------------------------------------------------- the world


@dataclass
class World:
    prov_npi: np.ndarray
    prov_spec: np.ndarray
    prov_mult: np.ndarray  # (providers, categories) error multipliers
    prov_doc_code: np.ndarray  # bills documents' codes
    prov_lag: np.ndarray  # mean submission lag, days
    prov_base_logit: np.ndarray
    prov_pos: np.ndarray
    payer_id: np.ndarray
    payer_type: np.ndarray
    payer_base: np.ndarray
    payer_strict: np.ndarray  # (payers, categories)
    payer_limit: np.ndarray


def _npi(rng: np.random.Generator, n: int) -> np.ndarray:
    """Valid NPIs (Luhn check digit over the 80840 prefix)."""
    body = rng.integers(100_000_000, 199_999_999, n)
    out = []
    for b in body:
        digits = [int(c) for c in "80840" + str(b)]
        total = 0
        for i, dgt in enumerate(reversed(digits)):
            if i % 2 == 0:
                dgt *= 2
                dgt = dgt - 9 if dgt > 9 else dgt
            total += dgt
        out.append(f"{b}{(10 - total % 10) % 10}")
    return np.array(out, dtype=object)


def build_world(cfg: SimConfig) -> World:
    rng = np.random.default_rng([cfg.seed, 0])
    n = cfg.n_providers
    specs = np.array(list(cfg.specialty_mix), dtype=object)
    weights = np.array(list(cfg.specialty_mix.values()), dtype=float)
    prov_spec = specs[rng.choice(len(specs), n, p=weights / weights.sum())]
    k = cfg.provider_error_shape
    prov_mult = rng.gamma(k, 1.0 / k, size=(n, len(CATEGORIES)))
    payer_ids, payer_types, bases, limits = [], [], [], []
    for t in PAYER_TYPES:
        for i in range(cfg.payers_per_type[t]):
            payer_ids.append(f"{t.upper()}-{i + 1}")
            payer_types.append(t)
            bases.append(cfg.base_denial[t] * rng.uniform(0.7, 1.3))
            lo, hi = cfg.filing_limit_days[t]
            limits.append(int(rng.choice([lo, hi])) if lo != hi else lo)
    strict_mean = np.array([cfg.strictness[c] for c in CATEGORIES])
    logit = np.log(strict_mean / (1 - strict_mean))
    strict = 1 / (
        1 + np.exp(-(logit + rng.normal(0, cfg.strictness_spread, (len(payer_ids), len(CATEGORIES)))))
    )
    strict = np.clip(strict * np.array([cfg.strictness_scale[t] for t in payer_types])[:, None], 0, 0.99)
    strict[np.array(payer_types) == "medicare", CATEGORIES.index("prior_auth_missing")] = 0.0
    return World(
        prov_npi=_npi(rng, n),
        prov_spec=prov_spec,
        prov_mult=prov_mult,
        prov_doc_code=rng.random(n) < cfg.document_code_providers,
        prov_lag=rng.uniform(3, 20, n),
        prov_base_logit=rng.normal(0, cfg.provider_base_sd, n),
        prov_pos=np.where(rng.random(n) < 0.8, "11", np.where(rng.random(n) < 0.5, "22", "19")).astype(
            object
        ),
        payer_id=np.array(payer_ids, dtype=object),
        payer_type=np.array(payer_types, dtype=object),
        payer_base=np.array(bases),
        payer_strict=strict,
        payer_limit=np.array(limits),
    )


# ----------------------------------------------------------------------------- drugs

DRUGS = ("esketamine", "ketamine", "naltrexone", "anakinra")
# dosing: (doses mean, interval days, interval jitter)
SCHEDULE = {"esketamine": (10, 4, 1), "ketamine": (6, 7, 2), "naltrexone": (6, 28, 3), "anakinra": (7, 30, 5)}
DIAGNOSES = {
    "esketamine": ["F33.2", "F32.2", "F33.1", "F32.9"],
    "ketamine": {"psychiatry": ["F33.2", "F32.2"], "default": ["G89.4", "G90.50", "S52.501A"]},
    "naltrexone": ["F11.20", "F10.20", "F11.21", "F10.21"],
    "anakinra": ["M05.79", "M06.9", "M04.2", "M05.9"],
}
WRONG_DX = {"esketamine": "F41.1", "ketamine": "Z00.00", "naltrexone": "F17.210", "anakinra": "M19.90"}
DOCUMENT_CODE = {"esketamine": "J3031", "ketamine": "J3000", "naltrexone": "J2311", "anakinra": "J3246"}
DOC_NEEDED = {
    "esketamine": [
        "prior_therapy_failure",
        "rems_enrollment",
        "medical_necessity",
        "dose_and_route",
        "administration_notes",
        "monitoring",
        "adverse_events",
        "patient_consent",
        "progress_notes",
    ],
    "ketamine": [
        "medical_necessity",
        "dose_and_route",
        "administration_notes",
        "monitoring",
        "adverse_events",
        "prior_therapy_failure",
        "invoice",
        "fda_approval",
    ],
    "naltrexone": [
        "lab_results",
        "medical_necessity",
        "dose_and_route",
        "administration_notes",
        "prior_therapy_failure",
        "counseling_compliance",
    ],
    "anakinra": [
        "prior_therapy_failure",
        "infection_screening",
        "medical_necessity",
        "dose_and_route",
        "administration_notes",
        "adverse_events",
    ],
}
# payer types whose prior-authorization rule applies, per drug (mirrors the pack)
DROP_N = {"esketamine": 9, "ketamine": 5, "naltrexone": 4, "anakinra": 6}
PA_TYPES = {
    "esketamine": {"commercial", "medicare_advantage", "medicaid"},
    "ketamine": {"commercial", "medicare_advantage", "medicaid"},
    "naltrexone": {"commercial", "medicare_advantage"},
    "anakinra": {"commercial", "medicare_advantage", "medicaid"},
}


def _pick(rng: np.random.Generator, options: dict, n: int) -> np.ndarray:
    keys = np.array(list(options), dtype=object)
    p = np.array(list(options.values()), dtype=float)
    return keys[rng.choice(len(keys), n, p=p / p.sum())]


# ----------------------------------------------------------------------------- blocks


def _block(cfg: SimConfig, world: World, ref: Reference, b: int) -> pd.DataFrame:
    """All claims of one block of patients, with planted mistakes and outcomes."""
    rng = np.random.default_rng([cfg.seed, 1, b])
    P = cfg.block_patients
    n_prov = len(world.prov_npi)
    prov = rng.integers(0, n_prov, P)
    spec = world.prov_spec[prov]
    drug = np.empty(P, dtype=object)
    for s in SPECIALTIES:
        m = spec == s
        drug[m] = _pick(rng, cfg.drugs[s], int(m.sum()))
    ptype = _pick(rng, cfg.payer_type_mix, P)
    for d, mix in cfg.payer_type_mix_by_drug.items():
        m = drug == d
        ptype[m] = _pick(rng, mix, int(m.sum()))
    payer = np.empty(P, dtype=np.int64)
    for t in PAYER_TYPES:
        m = ptype == t
        idx = np.flatnonzero(world.payer_type == t)
        payer[m] = idx[rng.integers(0, len(idx), int(m.sum()))]
    dx = np.empty(P, dtype=object)
    for d in DRUGS:
        m = drug == d
        opts = DIAGNOSES[d]
        if isinstance(opts, dict):
            psych = m & (spec == "psychiatry")
            dx[psych] = np.array(opts["psychiatry"], dtype=object)[rng.integers(0, 2, int(psych.sum()))]
            other = m & (spec != "psychiatry")
            dx[other] = np.array(opts["default"], dtype=object)[rng.integers(0, 3, int(other.sum()))]
        else:
            dx[m] = np.array(opts, dtype=object)[rng.integers(0, len(opts), int(m.sum()))]
    off = (drug == "anakinra") & (rng.random(P) < cfg.off_label_share.get("anakinra", 0))
    dx[off] = "M06.1"  # adult-onset Still's disease: off-label

    # doses: a course starting anywhere in the period
    days_total = (pd.Timestamp(cfg.end) - pd.Timestamp(cfg.start)).days
    mean_doses = np.array([SCHEDULE[d][0] for d in drug])
    n_doses = 1 + rng.poisson(mean_doses - 1)
    claim_pat = np.repeat(np.arange(P), n_doses)
    C = len(claim_pat)
    first = np.r_[0, np.cumsum(n_doses)[:-1]]
    k_in_course = np.arange(C) - np.repeat(first, n_doses)
    interval = np.array([SCHEDULE[d][1] for d in drug])[claim_pat]
    jitter = np.array([SCHEDULE[d][2] for d in drug])[claim_pat]
    gaps = np.where(k_in_course == 0, 0, interval + rng.integers(-1, 2, C) * rng.integers(0, jitter + 1))
    start_day = rng.integers(0, days_total, P)
    day = np.repeat(start_day, n_doses) + _cumsum_by_group(gaps, n_doses)

    c_prov = prov[claim_pat]
    c_drug = drug[claim_pat]
    c_payer = payer[claim_pat]
    c_ptype = world.payer_type[c_payer]
    mult = world.prov_mult[c_prov]
    cat_ix = {c: i for i, c in enumerate(CATEGORIES)}

    def chance(cat: str, eligible: np.ndarray) -> np.ndarray:
        p = cfg.error_rates.get(cat, 0.0) * mult[:, cat_ix[cat]]
        return eligible & (rng.random(C) < p)

    planted = np.zeros(C, dtype=np.int64)

    def plant(cat: str, where: np.ndarray) -> None:
        planted[where] |= CAT_BIT[cat]

    # frequency: a dose brought forward to right after the previous one
    freq_ok = (k_in_course > 0) & (
        ((c_drug == "esketamine") & np.isin(c_ptype, ["commercial", "medicare_advantage"]))
        | (c_drug == "naltrexone")
    )
    early = chance("frequency_exceeded", freq_ok)
    early &= ~np.r_[False, early[:-1]]  # never two early doses in a row
    short = np.where(c_drug == "naltrexone", 12, 1)
    day = np.where(early, _prev(day, k_in_course) + short, day)
    plant("frequency_exceeded", early)
    ok_day = day < days_total
    keep_claim = ok_day
    svc = np.datetime64(cfg.start) + day.astype("timedelta64[D]")

    # Medicare esketamine: the supervised session G2082/G2083, no separate drug line
    medicare_esk = (c_drug == "esketamine") & (c_ptype == "medicare")

    spec_lines = {d: DRUG_LINES[d] for d in DRUGS}
    code = np.array([spec_lines[d]["hcpcs_code"] for d in c_drug], dtype=object)
    dose = np.array([spec_lines[d]["dose_mg"] for d in c_drug], dtype=float)
    esk_dose = np.where(rng.random(C) < 0.5, 56.0, 84.0)
    dose = np.where(c_drug == "esketamine", esk_dose, dose)
    ket_dose = np.round(rng.uniform(30, 80, C) / 5) * 5
    dose = np.where(c_drug == "ketamine", ket_dose, dose)
    caps = (c_drug == "anakinra") & (dx[claim_pat] == "M04.2")  # weight-based CAPS dosing
    dose = np.where(caps, np.round(rng.uniform(30, 90, C) / 5) * 5, dose)
    units = np.where(np.isin(c_drug, ["esketamine", "naltrexone"]), dose, 1.0)
    ndc = np.array([spec_lines[d]["ndc"] for d in c_drug], dtype=object)
    ndc = np.where((c_drug == "esketamine") & (dose == 56.0), "50458002802", ndc).astype(object)
    desc = np.array([spec_lines[d]["drug_description"] for d in c_drug], dtype=object)
    admin = np.array([spec_lines[d]["admin"] for d in c_drug], dtype=object)
    code = np.where(medicare_esk, np.where(dose > 56, "G2083", "G2082"), code).astype(object)
    units = np.where(medicare_esk, 1.0, units)
    ndc = np.where(medicare_esk, "", ndc).astype(object)  # the session code carries no drug detail
    desc = np.where(medicare_esk, "", desc).astype(object)
    dose = np.where(medicare_esk, np.nan, dose)
    c_dx = dx[claim_pat].copy()
    docs_needed = {d: ";".join(dict.fromkeys([*DOC_NEEDED[d], "invoice", "fda_approval"])) for d in DRUGS}
    docs = np.array([docs_needed[d] for d in c_drug], dtype=object)
    mods = np.where(code == "J2315", "JZ", "").astype(object)  # single-dose kit, nothing discarded
    pa_number = "PA" + (claim_pat + b * P).astype(str).astype(object)
    pos = world.prov_pos[c_prov].copy()
    pos = np.where(c_drug == "esketamine", np.where(pos == "22", "22", "11"), pos).astype(object)
    drug_line = ~medicare_esk  # claims whose first line is a billable drug line

    # --- mistakes, as people make them
    doc_code = drug_line & world.prov_doc_code[c_prov] & (rng.random(C) < cfg.document_code_rate)
    doc_code |= chance("code_drug_mismatch", drug_line & ~doc_code)
    code = np.where(doc_code, np.array([DOCUMENT_CODE[d] for d in c_drug], dtype=object), code).astype(object)
    ket_j3000 = doc_code & (c_drug == "ketamine")
    units = np.where(ket_j3000, np.ceil(dose / 10), units)  # the document's 10 mg unit
    anak_j3246 = doc_code & (c_drug == "anakinra")
    units = np.where(anak_j3246, dose, units)  # the document's 1 mg unit
    plant("code_drug_mismatch", doc_code)
    j2311_late = doc_code & (code == "J2311") & (svc > np.datetime64("2025-06-30"))
    plant("code_invalid", j2311_late)
    # the document's unit disagrees with the code's own descriptor (J3000, J3246)
    plant("units_dose_mismatch", ket_j3000 | anak_j3246)
    is_noc = np.isin(code, ["J3490", "J3590"])
    is_mdcd_drug = drug_line & (c_ptype == "medicaid")

    bad = chance("code_invalid", drug_line & (c_drug == "naltrexone") & ~doc_code)
    code = np.where(bad, "J2316", code).astype(object)  # a transposed digit: no such code
    plant("code_invalid", bad)
    plant("code_drug_mismatch", bad)  # and the Vivitrol NDC belongs to J2315
    typo = bad

    bad = chance(
        "noc_specific_code_exists",
        drug_line & np.isin(c_drug, ["esketamine", "naltrexone"]) & ~doc_code & ~typo,
    )
    code = np.where(bad, "J3490", code).astype(object)
    mods = np.where(bad, "", mods).astype(object)
    plant("noc_specific_code_exists", bad)
    is_noc = np.isin(code, ["J3490", "J3590"])

    bad = chance("ndc_missing", drug_line & (is_noc | is_mdcd_drug))
    ndc = np.where(bad, "", ndc).astype(object)
    plant("ndc_missing", bad)

    noc_drug = drug_line & np.isin(c_drug, ["ketamine", "anakinra"])
    bad = chance("noc_information_missing", noc_drug)
    dose = np.where(bad, np.nan, dose)
    plant("noc_information_missing", bad)

    units_rule = drug_line & np.isin(code, ["S0013", "J2315"])
    bad = chance("units_dose_mismatch", units_rule)
    units = np.where(bad, np.ceil(dose / 10), units)  # the billing unit taken as 10 mg
    plant("units_dose_mismatch", bad)

    bad = chance(
        "units_exceed_maximum",
        drug_line
        & (c_drug == "esketamine")
        & ~np.isnan(dose)
        & ~(planted & CAT_BIT["units_dose_mismatch"]).astype(bool),
    )
    dose = np.where(bad, 112.0, dose)
    units = np.where(bad, 112.0, units)
    plant("units_exceed_maximum", bad)

    medicare_jz = (
        drug_line & (code == "J2315") & (c_ptype == "medicare") & (svc >= np.datetime64("2023-07-01"))
    )
    bad = chance("wastage_modifier", medicare_jz)
    mods = np.where(bad, "", mods).astype(object)
    plant("wastage_modifier", bad)

    mod_bad = {"esketamine": "25", "ketamine": "59", "naltrexone": "GN", "anakinra": "RT"}
    bad = chance("modifier_invalid", drug_line)
    extra = np.array([mod_bad[d] for d in c_drug], dtype=object)
    mods = np.where(bad, np.where(mods == "", extra, mods + ";" + extra), mods).astype(object)
    plant("modifier_invalid", bad)

    bad = chance("diagnosis_not_supported", drug_line & (c_drug != "ketamine"))
    wrong = np.array([WRONG_DX[d] for d in c_drug], dtype=object)
    truncated = np.array([str(x)[:3] for x in c_dx], dtype=object)  # a non-billable category header
    trunc = bad & (rng.random(C) < 0.5)
    c_dx = np.where(bad, np.where(trunc, truncated, wrong), c_dx).astype(object)
    plant("diagnosis_not_supported", bad)

    # prior authorization where a rule of the pack asks for it
    off_label_dx = np.array([bool(x) for x in pd.Series(c_dx).str.match(r"F3[1-3]|F41|F43\.1|G89|G90\.5")])
    pa_types = np.array([t in PA_TYPES[d] for d, t in zip(c_drug, c_ptype, strict=True)])
    pa_required = drug_line & pa_types & ((c_drug != "ketamine") | off_label_dx)
    pa_required |= (
        drug_line & (code == "J3490") & np.isin(c_ptype, ["commercial", "medicare_advantage", "medicaid"])
    )
    pa = np.where(pa_required, pa_number, "").astype(object)

    bad = chance("prior_auth_missing", drug_line & (pa != ""))
    pa = np.where(bad, "", pa).astype(object)
    plant("prior_auth_missing", bad)

    bad = chance("documentation_missing", drug_line & ~medicare_esk)
    drop_n = np.array([DROP_N[d] for d in c_drug])  # tokens every line of the drug needs
    drop_ix = rng.integers(0, drop_n)
    dropped = np.array(
        [
            ";".join(t for i, t in enumerate(s.split(";")) if i != k)
            for s, k in zip(docs, drop_ix, strict=True)
        ],
        dtype=object,
    )
    docs = np.where(bad, dropped, docs).astype(object)
    plant("documentation_missing", bad)

    bad = chance("place_of_service_invalid", drug_line & np.isin(c_drug, ["esketamine", "ketamine"]))
    pos = np.where(bad, "12", pos).astype(object)
    plant("place_of_service_invalid", bad)

    bad = chance("not_covered", drug_line & (c_drug == "anakinra") & (c_ptype != "medicare"))
    mdcr = np.flatnonzero(world.payer_type == "medicare")
    c_payer = np.where(bad, mdcr[rng.integers(0, len(mdcr), C)], c_payer)
    c_ptype = world.payer_type[c_payer]
    pa = np.where(bad, "", pa).astype(object)
    plant("not_covered", bad)
    # anakinra to Medicare is excluded whether or not it was a slip
    plant("not_covered", drug_line & (c_drug == "anakinra") & (c_ptype == "medicare"))
    planted &= ~np.where(bad, CAT_BIT["prior_auth_missing"], 0)  # Medicare asks for none

    lag = np.maximum(0, rng.poisson(world.prov_lag[c_prov])).astype(np.int64)
    limit = world.payer_limit[c_payer]
    late = chance("timely_filing", np.ones(C, dtype=bool))
    lag = np.where(late, np.maximum(limit, 365) + rng.integers(5, 60, C), lag)
    rule_limit = np.array([{"commercial": 90}.get(t, 365) for t in c_ptype])
    plant("timely_filing", lag > rule_limit)

    planted &= ~np.where(np.isnan(dose), CAT_BIT["units_dose_mismatch"], 0)  # no dose: nothing to compare
    no_admin = chance("administration_missing", drug_line & (c_drug != "esketamine"))
    plant("administration_missing", no_admin)
    em = rng.random(C) < cfg.em_visit_rate
    # JW wastage line for weight-based doses from a 100 mg syringe, on otherwise clean claims
    jw = caps & drug_line & (planted == 0) & (dose < 100)
    claim_level = CAT_BIT["timely_filing"] | CAT_BIT["duplicate_line"]
    other_planted = (planted & claim_level) | np.where(trunc, CAT_BIT["diagnosis_not_supported"], 0)
    dup = chance("duplicate_line", np.ones(C, dtype=bool))

    # --- lines: drug line, admin line, E/M line, JW line (in that order)
    claim_no = (claim_pat.astype(np.int64) + b * P) * 1000 + k_in_course
    claim_id = np.array([f"S{cfg.seed}-{x:011d}" for x in claim_no], dtype=object)
    sub = svc + lag.astype("timedelta64[D]")
    parts = []
    base = dict(
        claim_id=claim_id,
        patient_id=np.array([f"P{b}-{p}" for p in claim_pat], dtype=object),
        provider_npi=world.prov_npi[c_prov],
        payer_id=world.payer_id[c_payer],
        payer_type=c_ptype,
        service_date=svc,
        submission_date=sub,
        place_of_service=pos,
        prior_auth_number=pa,
        diagnosis_codes=c_dx,
        _planted=planted,
        _prov=c_prov,
        _payer=c_payer,
        _drug=c_drug,
        _keep=keep_claim,
    )
    parts.append(
        dict(
            base,
            line_number=1,
            hcpcs_code=code,
            modifiers=mods,
            units=units,
            dose_mg=dose,
            ndc=ndc,
            ndc_quantity=np.where(ndc != "", 1.0, np.nan),
            ndc_unit=np.where(ndc != "", "UN", ""),
            drug_description=desc,
            documentation=docs,
            _drugline=drug_line,
            _sel=np.ones(C, bool),
        )
    )
    empty = np.full(C, "", dtype=object)
    other = dict(
        modifiers=empty,
        dose_mg=np.full(C, np.nan),
        ndc=empty,
        ndc_quantity=np.full(C, np.nan),
        ndc_unit=empty,
        drug_description=empty,
        documentation=empty,
        units=np.ones(C),
        _drugline=np.zeros(C, bool),
        _planted=other_planted,
    )
    parts.append(dict(base, **other, line_number=2, hcpcs_code=admin, _sel=drug_line & ~no_admin))
    parts.append(
        dict(
            base,
            **dict(other, modifiers=np.full(C, "25", dtype=object)),
            line_number=3,
            hcpcs_code=np.full(C, "99214", dtype=object),
            _sel=em,
        )
    )
    wasted = np.where(jw, 100.0 - np.minimum(dose, 100.0), np.nan)
    parts.append(
        dict(
            base,
            line_number=4,
            hcpcs_code=code,
            modifiers=np.full(C, "JW", dtype=object),
            units=np.ones(C),
            dose_mg=wasted,
            ndc=ndc,
            ndc_quantity=np.where(ndc != "", 1.0, np.nan),
            ndc_unit=np.where(ndc != "", "UN", ""),
            drug_description=desc,
            documentation=docs + ";wastage",
            _drugline=np.zeros(C, bool),
            _sel=jw & (wasted > 0),
            _planted=other_planted,
        )
    )
    frames = []
    for part in parts:
        sel = part["_sel"] & part["_keep"]
        frames.append(
            pd.DataFrame(
                {
                    k: (v[sel] if isinstance(v, np.ndarray) else v)
                    for k, v in part.items()
                    if k not in ("_sel",)
                }
            )
        )
    df = pd.concat(frames, ignore_index=True)
    order = np.lexsort((df["line_number"].to_numpy(), df["claim_id"].to_numpy().astype(str)))
    df = df.iloc[order].reset_index(drop=True)
    # duplicates: the whole claim sent again a few days later under a new claim id
    dup_claims = set(claim_id[dup & keep_claim])
    if dup_claims:
        again = df[df["claim_id"].isin(dup_claims)].copy()
        again["claim_id"] = again["claim_id"] + "-R"
        again["submission_date"] = again["submission_date"] + np.timedelta64(3, "D")
        again["_planted"] = again["_planted"] | CAT_BIT["duplicate_line"]
        df = pd.concat([df, again], ignore_index=True)
    return _outcomes(cfg, world, ref, df, rng)


def _cumsum_by_group(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    total = np.cumsum(values)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    offset = np.repeat(total[starts] - values[starts], sizes)
    return total - offset


def _prev(values: np.ndarray, k: np.ndarray) -> np.ndarray:
    prev = np.r_[values[0], values[:-1]]
    return np.where(k > 0, prev, values)


def _outcomes(
    cfg: SimConfig, world: World, ref: Reference, df: pd.DataFrame, rng: np.random.Generator
) -> pd.DataFrame:
    n = len(df)
    payer = df["_payer"].to_numpy()
    prov = df["_prov"].to_numpy()
    planted = df["_planted"].to_numpy()
    bits = ((planted[:, None] >> np.arange(len(CATEGORIES))) & 1).astype(bool)
    strict = world.payer_strict[payer].copy()
    ec = cfg.enforcement_change
    if ec:
        m = world.payer_id[payer] == ec["payer"]
        after = df["service_date"].to_numpy() >= np.datetime64(ec["start"])
        j = CATEGORIES.index(ec["category"])
        strict[m, j] = np.where(after[m], ec["after"], ec["before"])
    # off-label use is a property of the diagnosis, not a slip: the payer weighs it
    off_label = df["_drugline"].to_numpy() & (
        (df["_drug"].to_numpy() == "anakinra") & (df["diagnosis_codes"].to_numpy() == "M06.1")
        | (
            (df["_drug"].to_numpy() == "ketamine")
            & df["diagnosis_codes"].str.match(r"F3[23]|G89|G90").to_numpy()
        )
    )
    bits[:, CATEGORIES.index("off_label_use")] |= off_label
    planted = planted | np.where(off_label, CAT_BIT["off_label_use"], 0)
    hazards = np.where(bits, strict, 0.0)
    base = world.payer_base[payer]
    base_logit = np.log(base / (1 - base)) + world.prov_base_logit[prov]
    base = 1 / (1 + np.exp(-base_logit))
    hb = cfg.hidden_behaviour
    hidden = np.zeros(n)
    if hb:
        m = (
            (world.payer_id[payer] == hb["payer"])
            & (world.prov_spec[prov] == hb["specialty"])
            & df["_drugline"].to_numpy()
        )
        hidden[m] = hb["rate"]
    keep = (1 - base) * (1 - hidden) * np.prod(1 - hazards, axis=1)
    p_true = 1 - keep
    denied = rng.random(n) < p_true
    # the driver: one of the causes, in proportion to its hazard
    causes = np.column_stack([base, hidden, hazards])
    cum = np.cumsum(causes, axis=1)
    pick = (rng.random(n) * cum[:, -1])[:, None] < cum
    driver = np.argmax(pick, axis=1)
    base_carc = np.array(list(BASE_CARCS), dtype=object)[
        rng.choice(len(BASE_CARCS), n, p=np.array(list(BASE_CARCS.values())))
    ]
    cat_carc = np.array(["", "CO-45"] + [CARC[c] for c in CATEGORIES], dtype=object)
    carc = np.where(driver == 0, base_carc, cat_carc[driver]).astype(object)
    carc = np.where(denied, carc, "").astype(object)

    code = df["hcpcs_code"].to_numpy(dtype=object)
    units = df["units"].to_numpy(dtype=float)
    limit = ref.payment_limit().reindex(code).to_numpy(dtype=float)
    dose = df["dose_mg"].to_numpy(dtype=float)
    noc_price = np.where(df["_drug"].to_numpy() == "anakinra", 2.2, 0.9) * np.nan_to_num(dose, nan=50.0)
    fee = {
        "96372": 25.0,
        "96374": 40.0,
        "96365": 70.0,
        "99214": 120.0,
        "G2082": 650.0,
        "G2083": 900.0,
        "S0013": 11.0,
    }
    fixed = pd.Series(fee).reindex(code).to_numpy(dtype=float)
    allowed = np.where(
        ~np.isnan(limit),
        limit * units,
        np.where(code == "S0013", 11.0 * units, np.where(~np.isnan(fixed), fixed, noc_price)),
    )
    billed = np.round(allowed * rng.uniform(1.4, 2.0, n), 2)
    paid = np.where(denied, 0.0, np.round(allowed * 0.8, 2))
    adj = df["submission_date"].to_numpy() + rng.integers(10, 45, n).astype("timedelta64[D]")

    out = df.drop(columns=[c for c in df.columns if c.startswith("_")])
    out["billed_amount"] = billed
    out["denied"] = denied
    out["carc_codes"] = carc
    out["paid_amount"] = paid
    out["adjudication_date"] = adj
    out["p_true"] = p_true
    out["planted_categories"] = _mask_strings(planted)
    return out


def _mask_strings(mask: np.ndarray) -> np.ndarray:
    uniq, inv = np.unique(mask, return_inverse=True)
    names = np.array([";".join(c for c in CATEGORIES if u & CAT_BIT[c]) for u in uniq], dtype=object)
    return names[inv.ravel()]


COLUMN_ORDER = [
    "claim_id",
    "line_number",
    "patient_id",
    "provider_npi",
    "payer_id",
    "payer_type",
    "service_date",
    "submission_date",
    "place_of_service",
    "hcpcs_code",
    "modifiers",
    "units",
    "billed_amount",
    "dose_mg",
    "ndc",
    "ndc_quantity",
    "ndc_unit",
    "drug_description",
    "diagnosis_codes",
    "prior_auth_number",
    "documentation",
    "denied",
    "carc_codes",
    "paid_amount",
    "adjudication_date",
    "p_true",
    "planted_categories",
]


def iter_chunks(cfg: SimConfig, ref: Reference | None = None) -> Iterator[pd.DataFrame]:
    """Chunks of the history (whole claims), `cfg.chunk_blocks` blocks each, until ~cfg.lines."""
    ref = ref or load_reference()
    world = build_world(cfg)
    done, b = 0, 0
    while done < cfg.lines:
        frames = []
        for _ in range(cfg.chunk_blocks):
            frames.append(_block(cfg, world, ref, b))
            b += 1
            done += len(frames[-1])
            if done >= cfg.lines:
                break
        chunk = pd.concat(frames, ignore_index=True)
        if done > cfg.lines:  # stop at the last whole claim within the requested lines
            cut = len(chunk) - (done - cfg.lines)
            ids = chunk["claim_id"].to_numpy()
            if cut < len(chunk) and cut > 0 and ids[cut] == ids[cut - 1]:
                cut = int(np.flatnonzero(ids[:cut] != ids[cut - 1]).max(initial=-1)) + 1
            chunk = chunk.iloc[:cut]
        yield chunk[COLUMN_ORDER].reset_index(drop=True)


def simulate(cfg: SimConfig | None = None, ref: Reference | None = None) -> pd.DataFrame:
    """The whole history in memory (for tests and notebooks; use `write_history` at scale)."""
    return pd.concat(list(iter_chunks(cfg or SimConfig(), ref)), ignore_index=True)


# ----------------------------------------------------------------------------- writing

DENIAL_GROUPS = {
    "CO-16": "missing information",
    "CO-197": "authorization",
    "CO-50": "medical necessity",
    "CO-11": "medical necessity",
    "CO-4": "coding error",
    "CO-181": "coding error",
    "CO-151": "coding error",
    "CO-29": "timely filing",
    "CO-18": "duplicate",
    "CO-119": "frequency",
    "CO-96": "not covered",
    "CO-58": "place of service",
    "CO-45": "contract / fee schedule",
}


@dataclass
class HistorySummary:
    """Running totals a simulation prints: lines, claims, denial rates, denial causes."""

    lines: int = 0
    claims: int = 0
    denied: int = 0
    by_payer_type: dict = field(default_factory=dict)  # type -> [lines, denied]
    by_carc: dict = field(default_factory=dict)
    by_group: dict = field(default_factory=dict)
    planted_lines: int = 0

    def add(self, chunk: pd.DataFrame) -> None:
        self.lines += len(chunk)
        self.claims += chunk["claim_id"].nunique()
        self.denied += int(chunk["denied"].sum())
        self.planted_lines += int((chunk["planted_categories"] != "").sum())
        g = chunk.groupby("payer_type", observed=True)["denied"].agg(["size", "sum"])
        for t, row in g.iterrows():
            cur = self.by_payer_type.setdefault(t, [0, 0])
            cur[0] += int(row["size"])
            cur[1] += int(row["sum"])
        for carc, n in chunk.loc[chunk["denied"], "carc_codes"].value_counts().items():
            self.by_carc[carc] = self.by_carc.get(carc, 0) + int(n)
            grp = DENIAL_GROUPS.get(carc, "other")
            self.by_group[grp] = self.by_group.get(grp, 0) + int(n)

    @property
    def denial_rate(self) -> float:
        return self.denied / self.lines if self.lines else 0.0

    def payer_rates(self) -> dict[str, float]:
        return {t: d / n for t, (n, d) in sorted(self.by_payer_type.items())}

    def to_dict(self) -> dict:
        return {
            "lines": self.lines,
            "claims": self.claims,
            "denial_rate": self.denial_rate,
            "denial_rate_by_payer_type": self.payer_rates(),
            "denials_by_carc": self.by_carc,
            "denials_by_group": self.by_group,
            "lines_with_planted_breaks": self.planted_lines,
        }


def _arrow_table(chunk: pd.DataFrame):
    import pyarrow as pa

    return pa.Table.from_pandas(chunk, preserve_index=False, schema=_schema())


def _schema():
    import pyarrow as pa

    s, f, d = pa.string(), pa.float64(), pa.timestamp("ns")
    types = {
        "claim_id": s,
        "line_number": pa.int64(),
        "patient_id": s,
        "provider_npi": s,
        "payer_id": s,
        "payer_type": s,
        "service_date": d,
        "submission_date": d,
        "place_of_service": s,
        "hcpcs_code": s,
        "modifiers": s,
        "units": f,
        "billed_amount": f,
        "dose_mg": f,
        "ndc": s,
        "ndc_quantity": f,
        "ndc_unit": s,
        "drug_description": s,
        "diagnosis_codes": s,
        "prior_auth_number": s,
        "documentation": s,
        "denied": pa.bool_(),
        "carc_codes": s,
        "paid_amount": f,
        "adjudication_date": d,
        "p_true": f,
        "planted_categories": s,
    }
    return pa.schema([(c, types[c]) for c in COLUMN_ORDER])


def write_history(
    cfg: SimConfig,
    path: str | Path,
    ref: Reference | None = None,
    on_chunk: Any = None,
) -> HistorySummary:
    """Simulate and write in chunks (Parquet row groups or CSV appends); memory stays flat.

    The file appears under its name only when complete (written to a temporary name first).
    """
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    summary = HistorySummary()
    parquet = path.suffix.lower() in (".parquet", ".pq")
    writer = pq.ParquetWriter(tmp, _schema()) if parquet else None
    try:
        for i, chunk in enumerate(iter_chunks(cfg, ref)):
            if writer is not None:
                writer.write_table(_arrow_table(chunk))
            else:
                chunk.to_csv(
                    tmp, mode="w" if i == 0 else "a", header=i == 0, index=False, date_format="%Y-%m-%d"
                )
            summary.add(chunk)
            if on_chunk is not None:
                on_chunk(summary)
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(path)
    return summary
