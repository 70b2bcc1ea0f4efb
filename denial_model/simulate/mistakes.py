"""Stage 4, mistakes as people make them: an ordered list of planters.

Each planter changes some clean claims the way a biller slips (a missing NDC, units from the
wrong billing unit, a forgotten authorization, ...), with a probability of the configured
error rate times the provider's own multiplier for that category, and records the category
it planted. Which lines a slip makes wrong (which payer types need authorization, which
documentation every line needs, ...) comes from the rule pack (`PackFacts`), so the rules
flag exactly what was planted. The order matters (a later planter sees earlier changes) and
is fixed: same seed, same history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from denial_model.rules.kinds import filing_deadline, filing_limits
from denial_model.rules.pack import CATEGORIES
from denial_model.simulate.claims import Claims
from denial_model.simulate.config import SimConfig
from denial_model.simulate.facts import DOCUMENT_CODE, WRONG_DX, WRONG_MODIFIER, PackFacts
from denial_model.simulate.world import World

__all__ = ["PLANTERS", "Slips", "plant_mistakes"]

_CAT_INDEX = {c: i for i, c in enumerate(CATEGORIES)}


@dataclass
class Slips:
    """What a planter needs beside the claims: the settings, the world, the pack's facts and
    the block's random stream."""

    cfg: SimConfig
    world: World
    facts: PackFacts
    rng: np.random.Generator

    def chance(self, c: Claims, category: str, eligible: np.ndarray) -> np.ndarray:
        """Eligible claims whose provider slips on `category` this time."""
        rate = (
            self.cfg.error_rates.get(category, 0.0) * self.world.prov_mult[c.provider, _CAT_INDEX[category]]
        )
        return eligible & (self.rng.random(c.n) < rate)


def _prev(values: np.ndarray, k: np.ndarray) -> np.ndarray:
    prev = np.r_[values[0], values[:-1]]
    return np.where(k > 0, prev, values)


def dose_too_soon(c: Claims, s: Slips) -> None:
    """A dose brought forward to right after the previous one, where the pack sets a minimum
    interval for the drug and payer type (never two early doses in a row)."""
    eligible = np.zeros(c.n, dtype=bool)
    gap = np.ones(c.n, dtype=np.int64)
    for drug, (types, days) in s.facts.min_days.items():
        m = (c.drug == drug) & np.isin(c.payer_type, list(types))
        eligible |= m
        gap[m] = max(1, days // 2)
    early = s.chance(c, "frequency_exceeded", eligible & (c.course.dose_index > 0))
    early &= ~np.r_[False, early[:-1]]
    c.course.day = np.where(early, _prev(c.course.day, c.course.dose_index) + gap, c.course.day)
    c.plant("frequency_exceeded", early)


def document_code(c: Claims, s: Slips) -> None:
    """The code the source document names instead of the official one (some providers do so
    half the time): a code/drug mismatch; J2311 after it ended is also invalid; J3000 and
    J3246 are billed in the document's unit, which their descriptors contradict."""
    doc = c.drug_line & s.world.prov_doc_code[c.provider] & (s.rng.random(c.n) < s.cfg.document_code_rate)
    doc |= s.chance(c, "code_drug_mismatch", c.drug_line & ~doc)
    c.code = np.where(doc, np.array([DOCUMENT_CODE[d] for d in c.drug], dtype=object), c.code).astype(object)
    ketamine, anakinra = doc & (c.drug == "ketamine"), doc & (c.drug == "anakinra")
    c.units = np.where(ketamine, np.ceil(c.dose / 10), c.units)  # the document's 10 mg unit
    c.units = np.where(anakinra, c.dose, c.units)  # the document's 1 mg unit
    c.plant("code_drug_mismatch", doc)
    c.plant("code_invalid", doc & (c.code == "J2311") & (c.service_date > np.datetime64("2025-06-30")))
    c.plant("units_dose_mismatch", ketamine | anakinra)
    c.document_code = doc


def code_typo(c: Claims, s: Slips) -> None:
    """A transposed digit in the naltrexone code (J2316: no such code, and the NDC belongs to J2315)."""
    bad = s.chance(c, "code_invalid", c.drug_line & (c.drug == "naltrexone") & ~c.document_code)
    c.code = np.where(bad, "J2316", c.code).astype(object)
    c.plant("code_invalid", bad)
    c.plant("code_drug_mismatch", bad)
    c.typo = bad


def unclassified_for_specific(c: Claims, s: Slips) -> None:
    """A drug with a code of its own billed under the unclassified J3490."""
    eligible = c.drug_line & np.isin(c.drug, ["esketamine", "naltrexone"]) & ~c.document_code & ~c.typo
    bad = s.chance(c, "noc_specific_code_exists", eligible)
    c.code = np.where(bad, "J3490", c.code).astype(object)
    c.modifiers = np.where(bad, "", c.modifiers).astype(object)
    c.plant("noc_specific_code_exists", bad)


def ndc_missing(c: Claims, s: Slips) -> None:
    """No NDC where one is required: unclassified codes, and every Medicaid drug line."""
    is_noc = np.isin(c.code, ["J3490", "J3590"])
    bad = s.chance(c, "ndc_missing", c.drug_line & (is_noc | (c.payer_type == "medicaid")))
    c.ndc = np.where(bad, "", c.ndc).astype(object)
    c.plant("ndc_missing", bad)


def dose_missing(c: Claims, s: Slips) -> None:
    """No dose on a drug without a code of its own (unclassified: cannot be priced); with no
    dose, a unit error planted before has nothing to be compared with."""
    bad = s.chance(c, "noc_information_missing", c.drug_line & np.isin(c.drug, ["ketamine", "anakinra"]))
    c.dose = np.where(bad, np.nan, c.dose)
    c.plant("noc_information_missing", bad)
    c.unplant("units_dose_mismatch", np.isnan(c.dose))
    # without a dose the NDC tells the amount: a syringe of anakinra (100 mg) billed in the
    # document's 1 mg unit under J3246 (tirofiban, 0.25 mg) is still the wrong number of units
    c.plant(
        "units_dose_mismatch", np.isnan(c.dose) & c.document_code & (c.drug == "anakinra") & (c.ndc != "")
    )


def wrong_billing_unit(c: Claims, s: Slips) -> None:
    """Units computed as if the billing unit were 10 mg."""
    bad = s.chance(c, "units_dose_mismatch", c.drug_line & np.isin(c.code, ["S0013", "J2315"]))
    c.units = np.where(bad, np.ceil(c.dose / 10), c.units)
    c.plant("units_dose_mismatch", bad & ~np.isnan(c.dose))


def overdose(c: Claims, s: Slips) -> None:
    """An esketamine session above the pack's daily maximum (a third more)."""
    maximum, _ = s.facts.max_per_day["esketamine"]
    units_ok = (c.planted & (1 << _CAT_INDEX["units_dose_mismatch"])) == 0
    eligible = c.drug_line & (c.drug == "esketamine") & ~np.isnan(c.dose) & units_ok
    bad = s.chance(c, "units_exceed_maximum", eligible)
    c.dose = np.where(bad, maximum * 4 / 3, c.dose)
    c.units = np.where(bad, maximum * 4 / 3, c.units)
    c.plant("units_exceed_maximum", bad)


def jz_missing(c: Claims, s: Slips) -> None:
    """No JW/JZ on a single-dose container where the pack requires one (Medicare, from its date)."""
    f = s.facts
    required = (
        c.drug_line
        & np.isin(c.code, list(f.jz_codes))
        & np.isin(c.payer_type, list(f.jz_payer_types))
        & (c.service_date >= np.datetime64(f.jz_from))
    )
    bad = s.chance(c, "wastage_modifier", required)
    c.modifiers = np.where(bad, "", c.modifiers).astype(object)
    c.plant("wastage_modifier", bad)


def wrong_modifier(c: Claims, s: Slips) -> None:
    """A modifier that does not belong on the drug line."""
    bad = s.chance(c, "modifier_invalid", c.drug_line)
    extra = np.array([WRONG_MODIFIER[d] for d in c.drug], dtype=object)
    mods = np.where(c.modifiers == "", extra, c.modifiers + ";" + extra)
    c.modifiers = np.where(bad, mods, c.modifiers).astype(object)
    c.plant("modifier_invalid", bad)


def unsupported_diagnosis(c: Claims, s: Slips) -> None:
    """A diagnosis no indication covers, or (half the time) the category header alone, which
    is not billable (that one is wrong on every line of the claim)."""
    bad = s.chance(c, "diagnosis_not_supported", c.drug_line & (c.drug != "ketamine"))
    wrong = np.array([WRONG_DX[d] for d in c.drug], dtype=object)
    header = np.array([str(x)[:3] for x in c.diagnosis], dtype=object)
    c.truncated_dx = bad & (s.rng.random(c.n) < 0.5)
    c.diagnosis = np.where(bad, np.where(c.truncated_dx, header, wrong), c.diagnosis).astype(object)
    c.plant("diagnosis_not_supported", bad)


def obtain_prior_auth(c: Claims, s: Slips) -> None:
    """Not a slip: the careful biller gets an authorization number wherever the pack requires
    one for the drug, payer type and diagnosis as billed (so after the diagnosis slips)."""
    required = np.zeros(c.n, dtype=bool)
    dx = pd.Series(c.diagnosis, dtype=object)
    for drug, (types, prefixes) in s.facts.prior_auth.items():
        m = (c.drug == drug) & np.isin(c.payer_type, list(types))
        if prefixes:
            m &= dx.str.startswith(tuple(prefixes)).to_numpy()
        required |= m
    required |= (c.code == "J3490") & np.isin(c.payer_type, list(s.facts.noc_prior_auth))
    number = "PA" + (c.course.patient + c.block * c.cfg.block_patients).astype(str).astype(object)
    c.prior_auth = np.where(c.drug_line & required, number, "").astype(object)


def prior_auth_missing(c: Claims, s: Slips) -> None:
    """The authorization number left off a line that needs one."""
    bad = s.chance(c, "prior_auth_missing", c.drug_line & (c.prior_auth != ""))
    c.prior_auth = np.where(bad, "", c.prior_auth).astype(object)
    c.plant("prior_auth_missing", bad)


def documentation_missing(c: Claims, s: Slips) -> None:
    """One documentation element every line of the drug needs is not in the record."""
    bad = s.chance(c, "documentation_missing", c.drug_line)
    always = np.array([len(s.facts.documentation_always[d]) for d in c.drug])
    drop = s.rng.integers(0, np.maximum(always, 1))
    dropped = np.array(
        [
            ";".join(t for i, t in enumerate(doc.split(";")) if i != k)
            for doc, k in zip(c.documentation, drop, strict=True)
        ],
        dtype=object,
    )
    bad &= always > 0
    c.documentation = np.where(bad, dropped, c.documentation).astype(object)
    c.plant("documentation_missing", bad)


def home_setting(c: Claims, s: Slips) -> None:
    """Given at home (12) where the drug's place-of-service rule does not allow it."""
    eligible = np.zeros(c.n, dtype=bool)
    for drug, allowed in s.facts.places.items():
        if "12" not in allowed:
            eligible |= c.drug == drug
    bad = s.chance(c, "place_of_service_invalid", c.drug_line & eligible)
    c.place = np.where(bad, "12", c.place).astype(object)
    c.plant("place_of_service_invalid", bad)


def inpatient_setting(c: Claims, s: Slips) -> None:
    """A drug given during an inpatient stay (21) billed on the professional claim."""
    if "21" not in s.facts.inpatient_places:
        return
    eligible = c.drug_line & (c.place != "12")
    bad = s.chance(c, "place_of_service_invalid", eligible) & (s.rng.random(c.n) < 0.25)
    c.place = np.where(bad, "21", c.place).astype(object)
    c.plant("place_of_service_invalid", bad)


def excluded_payer(c: Claims, s: Slips) -> None:
    """A drug billed to a payer type that excludes it (anakinra, self-administered, to
    Medicare): as a slip, and always where the patient's payer is that type."""
    for drug, types in s.facts.excluded.items():
        eligible = c.drug_line & (c.drug == drug) & ~np.isin(c.payer_type, list(types))
        bad = s.chance(c, "not_covered", eligible)
        targets = np.flatnonzero(np.isin(s.world.payer_type, list(types)))
        c.payer = np.where(bad, targets[s.rng.integers(0, len(targets), c.n)], c.payer)
        c.payer_type = s.world.payer_type[c.payer]
        c.prior_auth = np.where(bad, "", c.prior_auth).astype(object)
        c.unplant("prior_auth_missing", bad)  # the excluding payer asks for none
        c.plant("not_covered", c.drug_line & (c.drug == drug) & np.isin(c.payer_type, list(types)))


def late_filing(c: Claims, s: Slips) -> None:
    """Submission lag from the provider's habit; a slip sends it after the payer's limit."""
    c.lag = np.maximum(0, s.rng.poisson(s.world.prov_lag[c.provider])).astype(np.int64)
    limit = s.world.payer_limit[c.payer]
    late = s.chance(c, "timely_filing", np.ones(c.n, dtype=bool))
    c.lag = np.where(late, np.maximum(limit, 365) + s.rng.integers(5, 60, c.n), c.lag)
    days, months = filing_limits(s.facts.filing, s.world.payer_id[c.payer], c.payer_type)
    service_day = c.service_date.astype("datetime64[D]").astype(np.int64)
    c.plant("timely_filing", service_day + c.lag > filing_deadline(service_day, days, months))


def administration_missing(c: Claims, s: Slips) -> None:
    """The administration line left off the claim (not for a supervised session)."""
    c.no_admin = s.chance(c, "administration_missing", c.drug_line & (c.drug != "esketamine"))
    c.plant("administration_missing", c.no_admin)


def em_without_25(c: Claims, s: Slips) -> None:
    """An E/M visit billed beside the drug's administration without modifier 25 (bundled);
    the visit line is added to the claim (see `to_lines`), where the rule flags it."""
    eligible = (
        c.drug_line & ~c.no_admin & s.facts.admin_bundles_em(c.admin_code) & ("99214" in s.facts.em_codes)
    )
    c.em_no25 = s.chance(c, "modifier_invalid", eligible)


def jw_on_multi_dose(c: Claims, s: Slips) -> None:
    """A JW wastage line added for what is left in a multiple-dose vial (ketamine), on an
    otherwise clean claim (so the JW line carries that one finding); see `to_lines`."""
    eligible = c.drug_line & np.isin(c.drug, list(s.facts.multi_dose_drugs)) & (c.planted == 0)
    c.jw_multi = s.chance(c, "wastage_modifier", eligible & ~c.truncated_dx)


def sent_twice(c: Claims, s: Slips) -> None:
    """The whole claim sent again a few days later (the resubmission is the duplicate)."""
    c.sent_twice = s.chance(c, "duplicate_line", np.ones(c.n, dtype=bool))


Planter = Callable[[Claims, Slips], None]
PLANTERS: tuple[Planter, ...] = (
    dose_too_soon,
    document_code,
    code_typo,
    unclassified_for_specific,
    ndc_missing,
    dose_missing,
    wrong_billing_unit,
    overdose,
    jz_missing,
    wrong_modifier,
    unsupported_diagnosis,
    obtain_prior_auth,
    prior_auth_missing,
    documentation_missing,
    home_setting,
    inpatient_setting,
    excluded_payer,
    late_filing,
    administration_missing,
    em_without_25,
    jw_on_multi_dose,
    sent_twice,
)


def plant_mistakes(c: Claims, slips: Slips) -> Claims:
    """Run every planter, in order."""
    for planter in PLANTERS:
        planter(c, slips)
    return c
