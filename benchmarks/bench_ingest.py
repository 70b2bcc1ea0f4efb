"""X12 ingest speed and memory: a simulated history written as 837P + 835, read back into
the labeled claim-line table and written to Parquet.

    python benchmarks/bench_ingest.py [--lines 1000000]

The history is simulated and written as X12 first (timed apart: it is the fixture, not
the job); then a fresh process runs `denial-model ingest`'s Python API on the two files
and writes Parquet, and its lines/s and peak RSS are printed. Targets on the 2-core
machine: 1M lines in under 2 minutes and under 2 GB peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
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
print(json.dumps({"lines": len(res.lines), "seconds": time.perf_counter() - t, "counts": res.counts}))
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
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
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
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    res = json.loads(out.strip().splitlines()[-1])
    res.update(peak_rss_mb=max(peak_kb, before) / 1024, x12_mb=sizes, simulate_and_write_s=written)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, nargs="+", default=[1_000_000])
    args = ap.parse_args()
    for n in sorted(args.lines):  # ascending: RUSAGE_CHILDREN keeps the largest child so far
        r = run(n)
        matched = r["counts"].get("claim lines matched to a remit", 0)
        print(
            f"{r['lines']:>12,} lines  {r['lines'] / r['seconds']:>9,.0f} lines/s  {r['seconds']:6.1f} s  "
            f"peak RSS {r['peak_rss_mb']:6.0f} MB  X12 {r['x12_mb']:5.0f} MB  matched {matched:,}  "
            f"(simulate + write X12: {r['simulate_and_write_s']:.1f} s)"
        )


if __name__ == "__main__":
    main()
