"""Stage 1, the world (fixed by the seed): providers and payers.

Providers of five specialties, each with error multipliers per category (gamma-distributed),
a submission lag, a usual place of service, a base quality no rule sees, and whether they
bill the documents' codes. Payers of four types, each with a base denial rate, a strictness
per category spread around the configured default, and a filing limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from denial_model.rules.pack import CATEGORIES
from denial_model.simulate.config import SimConfig
from denial_model.table import PAYER_TYPES

__all__ = ["SPECIALTIES", "World", "build_world"]

SPECIALTIES = ("psychiatry", "addiction_medicine", "rheumatology", "oncology_infusion", "anesthesia_pain")


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
    prov_volume: np.ndarray | None = None  # patient share per provider; None: all equal


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
    world = World(
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
    if cfg.provider_volume_shape > 0:  # drawn last: the default world does not change
        volume = rng.gamma(cfg.provider_volume_shape, 1.0, n)
        world.prov_volume = volume / volume.sum()
    return world
