"""Claim history simulator (docs/simulator.md): a model of providers, patients, payers and
time that writes claim-line tables with outcomes and the true denial probability.

The story runs in stages, one module each, in this order:
1. `world`: providers and payers, fixed by the seed;
2. `patients`: per block of patients, their drug, payer, diagnosis and course of doses;
3. `claims`: a clean claim per dose (codes, NDCs, units from the reference tables);
4. `mistakes`: an ordered list of planters that break claims as people do, recording the
   categories they planted; whatever decides what a rule flags is read from the rule pack
   (`facts.PackFacts`), so the rules flag exactly what was planted;
5. `outcomes`: the payer's decision and `p_true`;
6. `writer`: blocks into chunks, chunks into a Parquet or CSV file, atomically.
`config.SimConfig` holds every knob with its default.
"""

from denial_model.simulate.config import STRESS_WORLDS, SimConfig
from denial_model.simulate.facts import PackFacts
from denial_model.simulate.world import World, build_world
from denial_model.simulate.writer import (
    DENIAL_GROUPS,
    HistorySummary,
    iter_chunks,
    simulate,
    simulate_block,
    write_history,
)

__all__ = [
    "DENIAL_GROUPS",
    "STRESS_WORLDS",
    "HistorySummary",
    "PackFacts",
    "SimConfig",
    "World",
    "build_world",
    "iter_chunks",
    "simulate",
    "simulate_block",
    "write_history",
]
