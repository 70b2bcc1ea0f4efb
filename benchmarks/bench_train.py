"""Training speed and model quality on the default simulator.

    python benchmarks/bench_train.py [--lines 1000000] [--seed 7]

Simulates a history, then times `train_model` (features, gradient boosting, the chosen
calibration on the next months) and prints the test-months metric table of the model beside
the oracle and the baselines. Targets: training 1M lines in under 3 minutes; AUROC within
0.01 of the oracle, log loss within 3% of the oracle's, ECE below 0.01.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from denial_model.evaluate import comparison_table
from denial_model.scorer import Scorer
from denial_model.simulate import SimConfig, simulate
from denial_model.train import train_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    history = simulate(SimConfig(lines=args.lines, seed=args.seed))
    t0 = time.perf_counter()
    res = train_model(history)
    seconds = time.perf_counter() - t0
    s = res.splits
    print(
        f"history {len(history):,} lines; train {len(s.train):,}, calibration {len(s.calib):,}, "
        f"test {len(s.test):,}"
    )
    print(f"training (features + boosting + calibration): {seconds:.1f} s; calibration {res.calibration}")
    table = comparison_table(Scorer(res.model, res.thresholds), s.earlier, s.test)
    cols = ["model", "auroc", "average_precision", "log_loss", "brier", "ece", "recall_top10"]
    with pd.option_context("display.width", 200):
        print(table[table["segment"] == "all"][cols].round(4).to_string(index=False))
    m = table[(table["model"] == "model") & (table["segment"] == "all")].iloc[0]
    o = table[(table["model"] == "oracle") & (table["segment"] == "all")].iloc[0]
    print(
        f"AUROC gap to oracle {o['auroc'] - m['auroc']:.4f}; "
        f"log loss {100 * (m['log_loss'] / o['log_loss'] - 1):.2f}% above the oracle's; ECE {m['ece']:.4f}"
    )


if __name__ == "__main__":
    main()
