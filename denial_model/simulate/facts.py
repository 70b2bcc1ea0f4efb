"""What the simulated world knows: the drugs' clinical facts (its own story) and the billing
requirements (read from the loaded rule pack, never repeated here).

The simulator plants rule breaks that the rules must flag exactly (the planted categories
equal the flagged ones). Whatever decides whether a line breaks a rule (which payer types
need prior authorization for a drug, which documentation every line of a drug needs, when
Medicare starts requiring JW/JZ, the filing limits, the dosing intervals) is therefore
taken from the pack the engine evaluates, so a pack edit cannot silently desynchronize them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np

from denial_model.rules.kinds import codes_named
from denial_model.rules.pack import Rule, RulePack
from denial_model.table import PAYER_TYPES

__all__ = ["DRUGS", "PackFacts"]

DRUGS = ("esketamine", "ketamine", "naltrexone", "anakinra")
# dosing: (doses mean, interval days, interval jitter)
SCHEDULE = {"esketamine": (10, 4, 1), "ketamine": (6, 7, 2), "naltrexone": (6, 28, 3), "anakinra": (7, 30, 5)}
DIAGNOSES = {
    "esketamine": ["F33.2", "F32.2", "F33.1", "F32.9"],
    "ketamine": {"psychiatry": ["F33.2", "F32.2"], "default": ["G89.4", "G90.50", "S52.501A"]},
    "naltrexone": ["F11.20", "F10.20", "F11.21", "F10.21"],
    "anakinra": ["M05.79", "M06.9", "M04.2", "M05.9"],
}
# a diagnosis no indication of the drug covers
WRONG_DX = {"esketamine": "F41.1", "ketamine": "Z00.00", "naltrexone": "F17.210", "anakinra": "M19.90"}
# the code each source document names for its drug (what some providers bill)
DOCUMENT_CODE = {"esketamine": "J3031", "ketamine": "J3000", "naltrexone": "J2311", "anakinra": "J3246"}
# a modifier that does not belong on the drug's line
WRONG_MODIFIER = {"esketamine": "25", "ketamine": "59", "naltrexone": "GN", "anakinra": "RT"}


def _payer_types(rule: Rule) -> frozenset[str]:
    return frozenset(rule.applies_to.get("payer_types", PAYER_TYPES))


@dataclass(frozen=True)
class PackFacts:
    """The pack's requirements, in the form the simulator's planters ask for them."""

    # drug -> (payer types, diagnosis prefixes or ()) where its prior-authorization rule applies
    prior_auth: dict[str, tuple[frozenset[str], tuple[str, ...]]]
    # payer types where an unclassified J3490 line needs prior authorization
    noc_prior_auth: frozenset[str]
    # drug -> documentation tokens every line needs (no payer or diagnosis condition), then the rest
    documentation_always: dict[str, tuple[str, ...]]
    documentation_sometimes: dict[str, tuple[str, ...]]
    # tokens every unclassified (J3490) line needs
    noc_documentation: tuple[str, ...]
    # Medicare JW/JZ on single-dose containers: codes, payer types, first service date
    jz_codes: frozenset[str]
    jz_payer_types: frozenset[str]
    jz_from: date
    # the timely-filing rule's parameters (limits per payer type and per payer)
    filing: dict
    # drug -> (payer types, minimum days between doses)
    min_days: dict[str, tuple[frozenset[str], int]]
    # drug -> (maximum per day, the field it counts)
    max_per_day: dict[str, tuple[float, str]]
    # drug -> payer types that exclude it
    excluded: dict[str, frozenset[str]]
    # drug -> places of service allowed for every payer type (absent: no such rule)
    places: dict[str, frozenset[str]]
    # E/M codes that need modifier 25 beside a drug administration, and those administration
    # codes and ranges (empty: no such rule)
    em_codes: frozenset[str] = frozenset()
    # drugs whose every product is a multiple-dose container, where the pack refuses JW
    multi_dose_drugs: frozenset[str] = frozenset()
    # places where any drug line is refused (inpatient: the facility bills the drug)
    inpatient_places: frozenset[str] = frozenset()
    bundled_admin: dict = field(default_factory=dict)

    def admin_bundles_em(self, admin_code: np.ndarray) -> np.ndarray:
        """Administration codes beside which an E/M visit needs modifier 25."""
        return codes_named(admin_code, self.bundled_admin)

    def documentation(self, drug: str) -> tuple[str, ...]:
        """What a clean line of `drug` documents: first the tokens every line needs, then
        the conditional ones and what an unclassified code asks for."""
        tokens = (
            *self.documentation_always[drug],
            *self.documentation_sometimes[drug],
            *self.noc_documentation,
        )
        return tuple(dict.fromkeys(tokens))

    @classmethod
    def from_pack(cls, pack: RulePack) -> PackFacts:
        def rules(kind: str) -> list[Rule]:
            return [r for r in pack.rules if r.kind == kind]

        def drug_of(r: Rule) -> str | None:
            drugs = r.applies_to.get("drugs", [])
            return drugs[0] if len(drugs) == 1 else None

        prior_auth = {
            drug_of(r): (_payer_types(r), tuple(r.applies_to.get("diagnosis_any_of", ())))
            for r in rules("prior_auth_required")
            if drug_of(r)
        }
        noc = [r for r in rules("prior_auth_required") if "J3490" in r.applies_to.get("codes", [])]
        always: dict[str, list[str]] = {d: [] for d in DRUGS}
        sometimes: dict[str, list[str]] = {d: [] for d in DRUGS}
        for r in rules("documentation_required"):
            d = drug_of(r)
            if d in always:
                conditional = {"payer_types", "diagnosis_any_of"} & set(r.applies_to)
                (sometimes if conditional else always)[d].extend(r.params["all_of"])
        for r in rules("documentation_any_of"):  # a clean line documents every alternative
            d = drug_of(r)
            if d in sometimes:
                sometimes[d].extend(r.params["any_of"])
        noc_docs = [
            t
            for r in rules("documentation_required")
            if "J3490" in r.applies_to.get("codes", []) and "payer_types" not in r.applies_to
            for t in r.params["all_of"]
        ]
        jz = next(r for r in rules("modifier_required") if {"JW", "JZ"} <= set(r.params["any_of"]))
        filing = next(iter(rules("timely_filing")))
        em = next((r for r in rules("billed_with") if "25" in r.params.get("unless_modifiers", [])), None)
        return cls(
            prior_auth=prior_auth,
            noc_prior_auth=_payer_types(noc[0]) if noc else frozenset(),
            documentation_always={d: tuple(dict.fromkeys(v)) for d, v in always.items()},
            documentation_sometimes={
                d: tuple(t for t in dict.fromkeys(v) if t not in always[d]) for d, v in sometimes.items()
            },
            noc_documentation=tuple(dict.fromkeys(noc_docs)),
            jz_codes=frozenset(jz.applies_to.get("codes", ())),
            jz_payer_types=_payer_types(jz),
            jz_from=jz.applies_to.get("service_from", date.min),
            filing=dict(filing.params),
            em_codes=frozenset(em.applies_to.get("codes", ())) if em else frozenset(),
            multi_dose_drugs=frozenset(
                p.name
                for p in pack.policies
                if p.products and all(x.container == "multiple_dose" for x in p.products)
                if any(
                    "multiple_dose" in r.applies_to.get("containers", ())
                    and "JW" in r.params.get("any_of", ())
                    for r in rules("modifier_forbidden")
                )
            ),
            inpatient_places=frozenset(
                pos
                for r in rules("excluded")
                if r.applies_to.get("drug_lines") and set(r.applies_to) <= {"drug_lines", "place_of_service"}
                for pos in r.applies_to.get("place_of_service", ())
            ),
            bundled_admin=dict(em.params) if em else {},
            min_days={
                drug_of(r): (_payer_types(r), int(r.params["days"]))
                for r in rules("min_days_between_doses")
                if drug_of(r)
            },
            max_per_day={
                drug_of(r): (float(r.params["max"]), r.params.get("field", "units"))
                for r in rules("max_per_day")
                if drug_of(r) and "diagnosis_any_of" not in r.applies_to
            },
            excluded={drug_of(r): _payer_types(r) for r in rules("excluded") if drug_of(r)},
            places={
                drug_of(r): frozenset(r.params["allowed"])
                for r in rules("place_of_service_allowed")
                if drug_of(r) and "payer_types" not in r.applies_to
            },
        )
