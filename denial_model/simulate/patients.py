"""Stage 2, patients and their courses of treatment.

Each patient has a provider, a drug fitting the provider's specialty, a payer (anakinra is
rarely billed to Medicare), a diagnosis (some off-label), and a course of repeat doses on
the drug's schedule starting anywhere in the period. Every dose becomes one claim.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from denial_model.simulate.config import SimConfig
from denial_model.simulate.facts import DIAGNOSES, DRUGS, SCHEDULE
from denial_model.simulate.world import SPECIALTIES, World
from denial_model.table import PAYER_TYPES

__all__ = ["Course", "Patients", "draw_courses", "draw_patients"]


def pick(rng: np.random.Generator, options: dict, n: int) -> np.ndarray:
    """`n` draws from {value: weight}."""
    keys = np.array(list(options), dtype=object)
    p = np.array(list(options.values()), dtype=float)
    return keys[rng.choice(len(keys), n, p=p / p.sum())]


@dataclass
class Patients:
    provider: np.ndarray  # index into the world's providers
    specialty: np.ndarray
    drug: np.ndarray
    payer: np.ndarray  # index into the world's payers
    diagnosis: np.ndarray


def draw_patients(cfg: SimConfig, world: World, rng: np.random.Generator) -> Patients:
    """One block of `cfg.block_patients` patients."""
    n = cfg.block_patients
    provider = (
        rng.integers(0, len(world.prov_npi), n)
        if world.prov_volume is None
        else rng.choice(len(world.prov_npi), n, p=world.prov_volume)
    )
    specialty = world.prov_spec[provider]
    drug = np.empty(n, dtype=object)
    for s in SPECIALTIES:
        m = specialty == s
        drug[m] = pick(rng, cfg.drugs[s], int(m.sum()))
    ptype = pick(rng, cfg.payer_type_mix, n)
    for d, mix in cfg.payer_type_mix_by_drug.items():
        m = drug == d
        ptype[m] = pick(rng, mix, int(m.sum()))
    payer = np.empty(n, dtype=np.int64)
    for t in PAYER_TYPES:
        m = ptype == t
        idx = np.flatnonzero(world.payer_type == t)
        payer[m] = idx[rng.integers(0, len(idx), int(m.sum()))]
    dx = np.empty(n, dtype=object)
    for d in DRUGS:
        m = drug == d
        opts = DIAGNOSES[d]
        if isinstance(opts, dict):
            psych = m & (specialty == "psychiatry")
            dx[psych] = np.array(opts["psychiatry"], dtype=object)[rng.integers(0, 2, int(psych.sum()))]
            other = m & (specialty != "psychiatry")
            dx[other] = np.array(opts["default"], dtype=object)[rng.integers(0, 3, int(other.sum()))]
        else:
            dx[m] = np.array(opts, dtype=object)[rng.integers(0, len(opts), int(m.sum()))]
    off = (drug == "anakinra") & (rng.random(n) < cfg.off_label_share.get("anakinra", 0))
    dx[off] = "M06.1"  # adult-onset Still's disease: off-label
    return Patients(provider, specialty, drug, payer, dx)


def _cumsum_by_group(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    total = np.cumsum(values)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    offset = np.repeat(total[starts] - values[starts], sizes)
    return total - offset


@dataclass
class Course:
    """One row per dose (claim): whose it is, which dose of the course, on which day."""

    patient: np.ndarray  # index into the block's patients
    dose_index: np.ndarray  # 0 for the first dose of the course
    day: np.ndarray  # days since cfg.start


def draw_courses(cfg: SimConfig, patients: Patients, rng: np.random.Generator) -> Course:
    days_total = (pd.Timestamp(cfg.end) - pd.Timestamp(cfg.start)).days
    drug = patients.drug
    n_doses = 1 + rng.poisson(np.array([SCHEDULE[d][0] for d in drug]) - 1)
    patient = np.repeat(np.arange(len(drug)), n_doses)
    first = np.r_[0, np.cumsum(n_doses)[:-1]]
    dose_index = np.arange(len(patient)) - np.repeat(first, n_doses)
    interval = np.array([SCHEDULE[d][1] for d in drug])[patient]
    jitter = np.array([SCHEDULE[d][2] for d in drug])[patient]
    n = len(patient)
    gaps = np.where(dose_index == 0, 0, interval + rng.integers(-1, 2, n) * rng.integers(0, jitter + 1))
    start_day = rng.integers(0, days_total, len(drug))
    day = np.repeat(start_day, n_doses) + _cumsum_by_group(gaps, n_doses)
    return Course(patient=patient, dose_index=dose_index, day=day)
