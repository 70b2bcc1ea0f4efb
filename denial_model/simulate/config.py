"""Every knob of the simulator, with its documented default (docs/simulator.md).

Any field can be set from YAML (`denial-model simulate --config sim.yaml`); a dict-valued
field given in YAML is merged into its default, so a file names only what it changes.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from denial_model.errors import ConfigError

__all__ = ["STRESS_WORLDS", "SimConfig"]


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

    # --- stress-world knobs: off by default, switched on by the named worlds of STRESS_WORLDS
    # a claim-level denial of the drug line (authorization, diagnosis, coverage, documentation)
    # takes the claim's other lines with it with this probability
    claim_coupling: float = 0.0
    # payers that deny drug lines for an attribute no rule names, each a dict of `payer`,
    # `rate` and one condition: `lacks_documentation` (a token), `modifier`, `diagnosis_prefix`
    # or `place_of_service`
    payer_preferences: list = field(default_factory=list)
    # more enforcement changes, each shaped like `enforcement_change`
    policy_changes: list = field(default_factory=list)
    # > 0: providers' patient volumes are gamma(shape)-distributed (lower: a few large
    # providers and many with a handful of lines); 0: every provider equally likely
    provider_volume_shape: float = 0.0

    @classmethod
    def stress(cls, world: str, **overrides: Any) -> SimConfig:
        """A named stress world (`STRESS_WORLDS`): the defaults with that world's knobs on."""
        if world not in STRESS_WORLDS:
            raise ConfigError(f"unknown stress world {world!r}; known: {sorted(STRESS_WORLDS)}")
        return dataclasses.replace(cls(), **{**copy.deepcopy(STRESS_WORLDS[world]), **overrides})

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


# Worlds that break what the default simulator lets a model get away with (docs/simulator.md,
# "Stress worlds"); the model's gap to the oracle is measured on each
# (benchmarks/generalization.py).
_COUPLING: dict = {"claim_coupling": 0.85}
_PREFERENCES: dict = {
    "payer_preferences": [
        {"payer": "COMMERCIAL-1", "lacks_documentation": "progress_notes", "rate": 0.6},
        {"payer": "MEDICAID-2", "diagnosis_prefix": "F32", "rate": 0.35},
        {"payer": "MEDICARE_ADVANTAGE-1", "modifier": "JW", "rate": 0.5},
        {"payer": "COMMERCIAL-4", "place_of_service": "22", "rate": 0.4},
    ]
}
_CHANGES: dict = {
    "policy_changes": [
        {
            "payer": "MEDICAID-1",
            "category": "documentation_missing",
            "start": date(2025, 1, 1),
            "before": 0.1,
            "after": 0.95,
        },
        {
            "payer": "COMMERCIAL-5",
            "category": "units_dose_mismatch",
            "start": date(2025, 2, 1),
            "before": 0.9,
            "after": 0.05,
        },
        {
            "payer": "MEDICARE_ADVANTAGE-2",
            "category": "prior_auth_missing",
            "start": date(2025, 3, 1),
            "before": 0.2,
            "after": 0.95,
        },
    ]
}
_SPARSE: dict = {"n_providers": 3000, "provider_volume_shape": 0.3, "provider_base_sd": 0.9}
STRESS_WORLDS: dict[str, dict] = {
    "coupled": _COUPLING,
    "preferences": _PREFERENCES,
    "policy_changes": _CHANGES,
    "sparse_providers": _SPARSE,
    "all": {**_COUPLING, **_PREFERENCES, **_CHANGES, **_SPARSE},
}
