"""X12 ingest speed and memory: a simulated history written as 837P + 835, read back into
the labeled claim-line table and written to Parquet.

    python benchmarks/bench_ingest.py [--lines 1000000] [--quality 200000]

The history is simulated and written as X12 first (timed apart: it is the fixture, not
the job); then a fresh process runs `denial-model ingest`'s Python API on the two files
and writes Parquet, and its lines/s and peak RSS are printed. Targets on the 2-core
machine: 1M lines in under 2 minutes and under 2 GB peak RSS.

`--quality N` also trains the model (default settings) three ways on one simulated history
of N lines and scores the same test months: from the Parquet history, from its 837 + 835
after `ingest`, and from the Parquet history with what an 837 does not carry removed
(documentation unknown, dose from the NDC). The last two should agree within noise: the
ingest loses nothing an 837 carries.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, sys, time
from denial_model.files import write_table
from denial_model.x12 import ingest
t = time.perf_counter()
res = ingest([sys.argv[1]], [sys.argv[2]])
write_table(res.lines, sys.argv[3])
hwm = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM"))
took = time.perf_counter() - t
print(json.dumps({"lines": len(res.lines), "seconds": took, "counts": res.counts, "hwm_kb": hwm}))
"""


def run(lines: int) -> dict:
    from denial_model.simulate import SimConfig, simulate
    from denial_model.x12.writers import write_835, write_837

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        history = simulate(SimConfig(lines=lines, seed=1))
        write_837(history, folder / "claims.837")
        write_835(history, folder / "remits.835")
        written = time.perf_counter() - t
        sizes = sum((folder / f).stat().st_size for f in ("claims.837", "remits.835")) / 1e6
        del history
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                str(folder / "claims.837"),
                str(folder / "remits.835"),
                str(folder / "h.parquet"),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    res = json.loads(out.strip().splitlines()[-1])
    # the child's own VmHWM: a forked child's ru_maxrss also counts the parent's pages it was
    # forked with (the simulated history), which exec then drops
    res.update(peak_rss_mb=res["hwm_kb"] / 1024, x12_mb=sizes, simulate_and_write_s=written)
    return res


def quality(lines: int) -> None:
    from sklearn.metrics import log_loss, roc_auc_score

    from denial_model.scorer import Scorer
    from denial_model.simulate import SimConfig, simulate
    from denial_model.train import TrainConfig, train_model
    from denial_model.x12 import dose_from_ndc, ingest, write_x12

    history = simulate(SimConfig(lines=lines, seed=7))
    with tempfile.TemporaryDirectory() as tmp:
        claims, remits = write_x12(history, tmp)
        ingested = ingest([claims], [remits]).lines
    blind = history.assign(documentation="unknown", dose_mg=dose_from_ndc(history))
    for name, data in (
        ("Parquet history", history),
        ("837 + 835, ingested", ingested),
        ("Parquet, 837 fields only", blind),
    ):
        result = train_model(data, TrainConfig())
        test = result.splits.test
        p = Scorer(result.model, result.thresholds).predict_proba(test)
        y = test["denied"].astype(bool).to_numpy()
        print(
            f"{name:<26} AUROC {roc_auc_score(y, p):.4f}  log loss {log_loss(y, p):.4f}  "
            f"test lines {len(test):,}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--quality", type=int, default=0, help="also compare models trained on N lines")
    args = ap.parse_args()
    for n in sorted(args.lines):
        r = run(n)
        matched = r["counts"].get("claim lines matched to a remit", 0)
        print(
            f"{r['lines']:>12,} lines  {r['lines'] / r['seconds']:>9,.0f} lines/s  {r['seconds']:6.1f} s  "
            f"peak RSS {r['peak_rss_mb']:6.0f} MB  X12 {r['x12_mb']:5.0f} MB  matched {matched:,}  "
            f"(simulate + write X12: {r['simulate_and_write_s']:.1f} s)"
        )
    if args.quality:
        quality(args.quality)


if __name__ == "__main__":
    main()
