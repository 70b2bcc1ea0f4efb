"""How close the model gets to the oracle, on our simulator and on every stress world.

For each world (`SimConfig.stress`, docs/simulator.md "Stress worlds"): simulate LINES lines,
train as `denial-model train` does (`train_model`), and compare the model with `p_true` on
the test months, for all lines, drug lines and administration lines (and the lines served
since the world's first policy change, where it has one). The target (issue 13): AUROC
within 0.01 of the oracle and log loss within 3% of it, for drug and administration lines
separately.

    python benchmarks/generalization.py [--lines 1000000] [--worlds default,coupled,...] [--seed 11]

Prints one table per world, the training time, and a summary of the targets met.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from denial_model.evaluate import comparison_table, generalization_table
from denial_model.scorer import Scorer
from denial_model.simulate import STRESS_WORLDS, SimConfig, simulate
from denial_model.train import train_model

AUROC_GAP = 0.01
LOG_LOSS_EXCESS = 0.03
CHECKED = ("drug_lines", "administration_lines")


def world_config(world: str, lines: int, seed: int) -> SimConfig:
    if world == "default":
        return SimConfig(lines=lines, seed=seed)
    return SimConfig.stress(world, lines=lines, seed=seed)


def first_change(cfg: SimConfig) -> str | None:
    starts = [str(pd.Timestamp(c["start"]).date()) for c in cfg.policy_changes]
    return min(starts) if starts else None


def measure(world: str, lines: int, seed: int) -> tuple[pd.DataFrame, float]:
    cfg = world_config(world, lines, seed)
    history = simulate(cfg)
    t0 = time.perf_counter()
    result = train_model(history)
    seconds = time.perf_counter() - t0
    table = comparison_table(
        Scorer(result.model, result.thresholds),
        result.splits.earlier,
        result.splits.test,
        include_logistic=False,
        since=first_change(cfg),
    )
    return generalization_table(table), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--worlds", default=",".join(["default", *STRESS_WORLDS]))
    args = ap.parse_args()
    verdicts = []
    for world in args.worlds.split(","):
        gap, seconds = measure(world, args.lines, args.seed)
        show = gap[gap["segment"].isin(["all", *CHECKED]) | gap["segment"].str.startswith("since_")]
        print(f"\n== {world}: {args.lines:,} lines, training {seconds:.0f} s")
        print(show.round(4).to_string(index=False))
        checked = gap[gap["segment"].isin(CHECKED)]
        worst_gap, worst_excess = float(checked["auroc_gap"].max()), float(checked["log_loss_excess"].max())
        ok = worst_gap <= AUROC_GAP and worst_excess <= LOG_LOSS_EXCESS
        verdicts.append((world, ok, worst_gap, worst_excess))
    print("\nworld               target met   worst AUROC gap   worst log loss excess")
    for world, ok, g, e in verdicts:
        print(f"{world:20s}{'yes' if ok else 'no':>10s}{g:>18.4f}{e:>23.1%}")


if __name__ == "__main__":
    main()
