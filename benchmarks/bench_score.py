"""Batch scoring speed and memory, beside the floor of read + predict + write.

    python benchmarks/bench_score.py [--lines 1000000 5000000] [--train-lines 300000] [--busy-core]

Trains a model on a simulated history (default settings), simulates a later batch of each
size, sorts it by service date (as a nightly export is) and writes it as Parquet. Each
measurement runs in a fresh process, so its peak RSS is its own:

- end to end: `score_file` Parquet -> Parquet (validation, rules, features, prediction,
  counterfactual reasons and fixes, drift counts, atomic write);
- floor, public: the same file read with pyarrow in the same batches, `predict_proba` of the
  bare classifier step on features computed beforehand (not timed), written back;
- floor, binned: the same with the booster's own binned prediction (what the scorer uses)
  on bins computed beforehand.

The floors run at the smallest size (`--floor-lines`); ratios divide the floor's lines/s by
the end-to-end lines/s at each size. Targets on the 2-core machine: >= 75,000 lines/s end
to end, within 2x of the floor, peak RSS under 1.5 GB at 5M lines.

`--busy-core` measures each end-to-end run a second time while another process keeps one
core busy (a bounded spin loop, stopped after the run) and prints the ratio busy / idle:
the scorer must not fall apart on a shared machine (target: within 1.5x).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from denial_model.files import CHUNK_LINES

HWM = """
def hwm():  # this process's own peak RSS in kB (rusage would carry the parent's over exec)
    return int(next(x for x in open("/proc/self/status") if x.startswith("VmHWM")).split()[1])
"""

SCORE = (
    HWM
    + """
import json, sys, time
t0 = time.perf_counter()
from denial_model.artifact import load_artifact
from denial_model.score import score_file
loaded = load_artifact(sys.argv[1])
s = score_file(sys.argv[2], sys.argv[3], loaded, chunk_lines=int(sys.argv[4]))
print(json.dumps({"lines": s.scored + s.rejected, "seconds": time.perf_counter() - t0, "hwm": hwm()}))
"""
)

FLOOR = (
    HWM
    + """
import json, sys, time
import pyarrow as pa, pyarrow.parquet as pq
from denial_model.artifact import load_artifact
from denial_model.table import ClaimFrame, validate
loaded = load_artifact(sys.argv[1])
scorer = loaded.scorer
feats, clf = scorer.features, scorer.classifier
binned = sys.argv[5] == "binned"
pred = scorer.predictor
pf = pq.ParquetFile(sys.argv[2])
inputs = []  # features (or bins) computed before the clock starts
for batch in pf.iter_batches(batch_size=int(sys.argv[4])):
    X, res = feats.transform_with_rules(ClaimFrame(validate(batch.to_pandas()).lines))
    inputs.append(pred.prepare(X, binary=(res.ids, res.hits)) if binned else X)
t0 = time.perf_counter()
writer = None
for batch, x in zip(pq.ParquetFile(sys.argv[2]).iter_batches(batch_size=int(sys.argv[4])), inputs):
    p = pred.proba(x) if binned else clf.predict_proba(x)[:, 1]
    table = pa.Table.from_batches([batch]).append_column("denial_probability", pa.array(p))
    if writer is None:
        writer = pq.ParquetWriter(sys.argv[3], table.schema)
    writer.write_table(table)
writer.close()
n = sum(len(x) for x in inputs)
print(json.dumps({"lines": n, "seconds": time.perf_counter() - t0, "hwm": hwm()}))
"""
)


def child(code: str, *args: str) -> dict:
    """Run `code` in a fresh interpreter; it reports its own peak RSS (VmHWM)."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, capture_output=True, text=True
    ).stdout
    res = json.loads(out.strip().splitlines()[-1])
    res["peak_rss_mb"] = res["hwm"] / 1024
    res["rate"] = res["lines"] / res["seconds"]
    return res


BURNER = """
import sys, time
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    pass
"""


def busy_core(seconds: float = 900.0) -> subprocess.Popen:
    """A process that keeps one core busy for at most `seconds` (the caller stops it sooner)."""
    return subprocess.Popen([sys.executable, "-c", BURNER, str(seconds)])


def make_batch(lines: int, seed: int, path: Path) -> None:
    import pyarrow.parquet as pq

    from denial_model.simulate import SimConfig, write_history

    raw = path.with_name("raw_" + path.name)
    write_history(SimConfig(lines=lines, seed=seed, start=pd.Timestamp("2025-07-01").date(), months=3), raw)
    table = pq.read_table(raw).sort_by([("service_date", "ascending"), ("claim_id", "ascending")])
    pq.write_table(table, path, row_group_size=200_000)
    raw.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, nargs="+", default=[1_000_000, 5_000_000])
    ap.add_argument("--floor-lines", type=int, default=None, help="size for the floors (default: smallest)")
    ap.add_argument("--train-lines", type=int, default=300_000)
    ap.add_argument("--chunk-lines", type=int, default=CHUNK_LINES)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--busy-core", action="store_true", help="also measure with one core kept busy")
    args = ap.parse_args()

    from denial_model.jobs import run_training
    from denial_model.simulate import SimConfig, simulate

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tmp / "model.joblib"
        t0 = time.perf_counter()
        run_training(simulate(SimConfig(lines=args.train_lines, seed=args.seed)), str(model), track=False)
        print(f"model trained on {args.train_lines:,} simulated lines in {time.perf_counter() - t0:.0f} s")
        floor_at = args.floor_lines or min(args.lines)
        floors: dict[str, dict] = {}
        chunk = str(args.chunk_lines)
        for n in sorted(args.lines):
            batch = tmp / f"batch_{n}.parquet"
            make_batch(n, args.seed + 1, batch)
            if n == floor_at:
                for kind in ("binned", "public"):
                    floors[kind] = child(FLOOR, str(model), str(batch), str(tmp / "f.parquet"), chunk, kind)
                    f = floors[kind]
                    print(
                        f"floor ({kind:6}) {f['lines']:>10,} lines  {f['rate']:>9,.0f} lines/s  "
                        f"{f['seconds']:6.1f} s  peak RSS {f['peak_rss_mb']:5.0f} MB (features precomputed)"
                    )
            r = child(SCORE, str(model), str(batch), str(tmp / "scored.parquet"), chunk)
            ratios = "  ".join(
                f"{k} floor / end-to-end {f['rate'] / r['rate']:.2f}x" for k, f in floors.items()
            )
            print(
                f"end to end      {r['lines']:>10,} lines  {r['rate']:>9,.0f} lines/s  "
                f"{r['seconds']:6.1f} s  "
                f"peak RSS {r['peak_rss_mb']:5.0f} MB  {ratios}"
            )
            if args.busy_core:
                burner = busy_core()
                try:
                    b = child(SCORE, str(model), str(batch), str(tmp / "scored.parquet"), chunk)
                finally:
                    burner.kill()
                    burner.wait()
                print(
                    f"end to end, one core busy {b['lines']:>10,} lines  {b['rate']:>9,.0f} lines/s  "
                    f"{b['seconds']:6.1f} s  busy / idle time {b['seconds'] / r['seconds']:.2f}x"
                )
            batch.unlink()


if __name__ == "__main__":
    main()
