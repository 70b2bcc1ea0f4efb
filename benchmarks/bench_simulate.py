"""Simulator speed and memory.

    python benchmarks/bench_simulate.py [--lines 1000000 10000000]

Each size runs in a fresh process that writes Parquet; prints lines/s and the child's peak
RSS. Targets on the 2-core machine: 1M lines in under 60 s; 10M lines under 2 GB peak RSS.
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
from denial_model.simulate import SimConfig, write_history
t = time.perf_counter()
s = write_history(SimConfig(lines=int(sys.argv[1]), seed=1), sys.argv[2])
print(json.dumps({"lines": s.lines, "seconds": time.perf_counter() - t}))
"""


def run(lines: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(lines), str(Path(tmp) / "h.parquet")],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        size = (Path(tmp) / "h.parquet").stat().st_size
    res = json.loads(out.strip().splitlines()[-1])
    res["peak_rss_mb"] = max(peak_kb, before) / 1024
    res["file_mb"] = size / 1e6
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, nargs="+", default=[1_000_000, 10_000_000])
    args = ap.parse_args()
    for n in sorted(args.lines):  # ascending: RUSAGE_CHILDREN keeps the largest child so far
        t0 = time.perf_counter()
        r = run(n)
        print(
            f"{r['lines']:>12,} lines  {r['lines'] / r['seconds']:>10,.0f} lines/s  {r['seconds']:7.1f} s  "
            f"peak RSS {r['peak_rss_mb']:7.0f} MB  file {r['file_mb']:6.0f} MB  "
            f"(wall {time.perf_counter() - t0:.1f} s)"
        )


if __name__ == "__main__":
    main()
