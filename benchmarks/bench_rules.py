"""Rule engine throughput: vectorized engine vs the plain per-row reference.

    python benchmarks/bench_rules.py [--lines 1000000] [--reference-lines 2000] [--seed 0]

Generates claim lines by tiling the sample claims (every drug policy and every category)
with new claim, patient and date keys, validates them once, then times `evaluate` on the
whole table and the per-row reference evaluator (tests/reference_evaluator.py) on a sample.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from denial_model.reference import load_reference
from denial_model.rules import evaluate, load_pack
from denial_model.samples import sample_table
from denial_model.table import ClaimFrame, validate


def make_lines(n: int, seed: int) -> pd.DataFrame:
    """n claim lines built from the sample claims, with varied keys and dates."""
    base = validate(sample_table()).lines
    reps = int(np.ceil(n / len(base)))
    rng = np.random.default_rng(seed)
    df = pd.concat([base] * reps, ignore_index=True).iloc[:n].copy()
    block = np.repeat(np.arange(reps), len(base))[:n]
    df["claim_id"] = df["claim_id"].to_numpy(dtype=object) + "-" + block.astype(str).astype(object)
    df["patient_id"] = "P" + (rng.integers(0, max(n // 8, 1), n)).astype(str).astype(object)
    shift = pd.to_timedelta(rng.integers(0, 700, n), unit="D")
    df["service_date"] = df["service_date"] + shift
    df["submission_date"] = df["submission_date"] + shift
    return df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--reference-lines", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    pack, ref = load_pack(), load_reference()
    df = make_lines(args.lines, args.seed)
    evaluate(validate(df.head(1000)).lines, pack, ref)  # warm caches (ICD-10 look-ups, code tables)

    t0 = time.perf_counter()
    v = validate(df)
    t_validate = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = evaluate(ClaimFrame(v.lines), pack, ref)
    _ = res.rule_hits
    t_engine = time.perf_counter() - t0

    from tests.reference_evaluator import reference_hits

    sample = v.lines.head(args.reference_lines).reset_index(drop=True)
    t0 = time.perf_counter()
    reference_hits(sample, pack, ref)
    t_ref = time.perf_counter() - t0

    fast = len(v.lines) / t_engine
    slow = len(sample) / t_ref
    print(f"lines                 {len(v.lines):,} ({len(pack.rules)} rules)")
    print(f"validate              {len(v.lines) / t_validate:,.0f} lines/s")
    print(f"vectorized engine     {fast:,.0f} lines/s ({t_engine:.2f} s, rule_hits strings included)")
    print(f"per-row reference     {slow:,.0f} lines/s (on {len(sample):,} lines)")
    print(f"ratio                 {fast / slow:,.0f}x")
    print(f"lines with findings   {(res.rule_hits != '').mean():.1%}")


if __name__ == "__main__":
    main()
