"""Spark's cost on one machine: `score_spark` on local[2] beside `score_file`, same lines.

    python benchmarks/bench_spark.py [--lines 5000000] [--train-lines 200000] [--partitions 4]

Trains a model on a simulated history, simulates a later batch (sorted by service date, as
`bench_score.py` makes it) and scores it twice, each in a fresh process:

- `score_file`: Parquet -> Parquet, streamed in chunks on this machine;
- Spark: `read_claims` -> `score_spark` -> `write_together` (scored part files and the
  rejects) -> the job's summary, on a `local[2]` session (its start-up timed apart).

Prints lines/s of each, the ratio (Spark's overhead on one machine: the shuffle by patient,
Arrow transfers to and from the Python workers, the persisted output read twice), and checks
the two outputs agree line by line (largest probability difference, tiers that differ).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_score import SCORE, child, make_batch

SPARK = """
import json, sys, time
t0 = time.perf_counter()
from denial_model.artifact import load_artifact
from denial_model.spark import read_claims, score_spark, spark_session, write_together
spark = spark_session("local[2]", settings={"spark.sql.shuffle.partitions": sys.argv[5]})
t1 = time.perf_counter()
loaded = load_artifact(sys.argv[1])
res = score_spark(read_claims(spark, sys.argv[2]), loaded)
write_together([(res.scored, sys.argv[3]), (res.rejects, sys.argv[4])])
s = res.summary()
res.unpersist()
print(json.dumps({"lines": s.scored + s.rejected, "seconds": time.perf_counter() - t1,
                  "startup": t1 - t0, "hwm": 0}))
"""


def compare(local: Path, spark: Path) -> tuple[float, int, int]:
    """(largest |p difference|, lines whose tier differs, lines compared), matched by line."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    cols = ["claim_id", "line_number", "denial_probability", "risk_tier"]
    keys = [("claim_id", "ascending"), ("line_number", "ascending")]
    a = ds.dataset(local).to_table(columns=cols).sort_by(keys)
    b = ds.dataset(spark).to_table(columns=cols).sort_by(keys)
    if len(a) != len(b) or not a.column("claim_id").equals(b.column("claim_id")):
        return float("inf"), len(a), min(len(a), len(b))
    diff = pc.max(pc.abs(pc.subtract(a.column("denial_probability"), b.column("denial_probability")))).as_py()
    tiers = pc.sum(pc.not_equal(a.column("risk_tier"), b.column("risk_tier"))).as_py()
    return float(diff or 0.0), int(tiers or 0), len(a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=5_000_000)
    ap.add_argument("--train-lines", type=int, default=200_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    from denial_model.jobs import run_training
    from denial_model.simulate import SimConfig, simulate

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tmp / "model.joblib"
        run_training(simulate(SimConfig(lines=args.train_lines, seed=args.seed)), str(model), track=False)
        batch = tmp / "batch.parquet"
        t0 = time.perf_counter()
        make_batch(args.lines, args.seed + 1, batch)
        print(f"batch of {args.lines:,} lines simulated in {time.perf_counter() - t0:.0f} s")
        one = child(SCORE, str(model), str(batch), str(tmp / "local.parquet"), "200000")
        print(
            f"score_file           {one['lines']:>9,} lines  {one['rate']:>9,.0f} lines/s"
            f"  {one['seconds']:7.1f} s"
        )
        out, rejects = tmp / "spark.parquet", tmp / "spark.rejects.parquet"
        two = child(SPARK, str(model), str(batch), str(out), str(rejects), str(args.partitions))
        print(
            f"score_spark local[2] {two['lines']:>9,} lines  {two['rate']:>9,.0f} lines/s"
            f"  {two['seconds']:7.1f} s"
            f"  (+ {two['startup']:.1f} s session start; {args.partitions} partitions)"
        )
        print(f"ratio score_file / score_spark lines/s: {one['rate'] / two['rate']:.2f}x")
        diff, tiers, n = compare(tmp / "local.parquet", out)
        print(
            f"agreement on {n:,} lines: largest probability difference {diff:.3g}, tiers that differ {tiers}"
        )
        print(json.dumps({"score_file": one, "score_spark": two}))


if __name__ == "__main__":
    main()
