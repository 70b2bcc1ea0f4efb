"""The HTTP service under a bounded load on loopback: latency and throughput.

    python benchmarks/bench_serve.py [--model model.joblib] [--rate 50] [--seconds 20]

Starts `denial-model serve` (a real uvicorn process, API key required) on a model (trained
here on a simulated history unless `--model` is given), then runs two phases with an httpx
client in this process:

- single claims (a drug line and its administration line) sent open loop at `--rate`
  requests/s: each request's latency counts from the moment it was due, so a server that
  falls behind shows it (no coordinated omission);
- 500-line batches sent closed loop by `--clients` clients at once (default two per
  scoring process, on new connections): lines/s, and each scoring process's share of the
  CPU they took (even shares: the batcher's lanes spread the load whatever the connections).
  With one client per process, each process idles while its client reads an answer and
  sends the next; two keep every process busy, which is what a throughput figure means;
- last, in this process without HTTP, one `score_frame` call on each of 400 distinct
  claims (median, p90, p99) and on 500 lines: the cost per call.

Targets on the 2-core machine: p99 under 50 ms for single claims at 50 requests/s; at least
20,000 lines/s in 500-line batches. The ratios printed are measured / target in this run.
The load generator shares the machine's two cores with the server, as a sidecar would.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers import free_port, running, scoring_processes

TARGET_P99_MS = 50.0
TARGET_LINES_PER_S = 20_000


def _train(folder: Path, lines: int) -> Path:
    from denial_model.jobs import run_training
    from denial_model.simulate import SimConfig, simulate

    path = folder / "model.joblib"
    run_training(simulate(SimConfig(lines=lines, seed=11)), path, track=False)
    return path


def _claims(n_lines: int) -> list[dict]:
    """Made-up claim lines of the simulator, as a claim system would send them (JSON)."""
    from denial_model.simulate import SimConfig, simulate
    from denial_model.table import INPUT_COLUMNS

    batch = simulate(SimConfig(lines=n_lines, seed=12))[list(INPUT_COLUMNS)]
    return json.loads(batch.to_json(orient="records", date_format="iso"))


def _per_call(model: Path, pairs: list[list[dict]], batch: list[dict]) -> dict:
    """In this process, no HTTP: one `score_frame` call on each of up to 400 distinct claims
    (median, p90, p99: new ids each time, as in real traffic) and on 500 lines (median of
    15): the cost per call that batching spreads over requests."""
    import pandas as pd

    from denial_model.artifact import load_artifact
    from denial_model.score import score_frame

    loaded = load_artifact(model)

    def took(lines: list[dict]) -> float:
        df = pd.DataFrame(lines)
        t = time.perf_counter()
        score_frame(df, loaded)
        return (time.perf_counter() - t) * 1000

    for claim in pairs[:5]:  # warm
        took(claim)
    claims = np.array([took(claim) for claim in pairs[5:405]])
    took(batch)
    lines = np.array([took(batch) for _ in range(15)])
    return {
        "claims": len(claims),
        **{f"claim_p{q}_ms": float(np.percentile(claims, q)) for q in (50, 90, 99)},
        "lines_500_ms": float(np.median(lines)),
    }


def _pairs(lines: list[dict]) -> list[list[dict]]:
    """Two-line claims (a drug line and the next line of its claim) for the single-claim phase."""
    by_claim: dict[str, list[dict]] = {}
    for line in lines:
        by_claim.setdefault(line["claim_id"], []).append(line)
    return [c[:2] for c in by_claim.values() if len(c) >= 2]


async def _open_loop(client, url: str, bodies: list[bytes], rate: float, seconds: float) -> dict:
    n = int(rate * seconds)
    start = time.perf_counter() + 0.2
    latencies = np.zeros(n)
    statuses: list[int] = []

    async def one(i: int) -> None:
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        r = await client.post(url, content=bodies[i % len(bodies)])
        latencies[i] = time.perf_counter() - due
        statuses.append(r.status_code)

    await asyncio.gather(*(one(i) for i in range(n)))
    took = time.perf_counter() - start
    return {
        "requests": n,
        "achieved_rps": n / took,
        "non_200": sum(s != 200 for s in statuses),
        **{f"p{q}_ms": float(np.percentile(latencies, q) * 1000) for q in (50, 95, 99)},
    }


async def _closed_loop(client, url: str, body: bytes, lines: int, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    statuses: list[int] = []
    end = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < end:
            t = time.perf_counter()
            r = await client.post(url, content=body)
            latencies.append(time.perf_counter() - t)
            statuses.append(r.status_code)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    took = time.perf_counter() - t0
    return {
        "requests": len(latencies),
        "lines_per_s": len(latencies) * lines / took,
        "non_200": sum(s != 200 for s in statuses),
        **{f"p{q}_ms": float(np.percentile(latencies, q) * 1000) for q in (50, 95, 99)},
    }


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _worker_cpu(server_pid: int) -> dict[int, float]:
    """CPU seconds so far of each scoring process of the server (the server itself when it
    scores in its own process), by pid, read from /proc."""
    out = {}
    for pid in scoring_processes(server_pid):
        with contextlib.suppress(OSError):
            out[pid] = _cpu_seconds(pid)
    return out or {server_pid: _cpu_seconds(server_pid)}


async def _run(base: str, key: str, args, pairs: list[list[dict]], batch: list[dict], server: int) -> dict:
    import httpx

    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    url = base + "/v1/score"
    singles = [json.dumps({"lines": p}).encode() for p in pairs]
    big = json.dumps({"lines": batch}).encode()
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as client:
        for body in singles[:20]:  # warm the connection pool and the server
            await client.post(url, content=body)
        single = await _open_loop(client, url, singles, args.rate, args.seconds)
    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as client:
        before = _worker_cpu(server)
        batches = await _closed_loop(client, url, big, len(batch), args.clients, args.seconds)
        after = _worker_cpu(server)
    used = {pid: after[pid] - before[pid] for pid in after if pid in before}
    if sum(used.values()) > 0:
        shares = (round(u / sum(used.values()), 2) for u in used.values())
        batches["worker_cpu_share"] = sorted(shares, reverse=True)
    return {"single_claims": single, "batches_500": batches}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="model.joblib (default: train one here)")
    ap.add_argument("--train-lines", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=50.0, help="single-claim requests per second")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    ap.add_argument("--workers", type=int, default=2, help="scoring processes (denial-model serve --workers)")
    ap.add_argument("--clients", type=int, help="concurrent clients sending batches (default: 2 a worker)")
    args = ap.parse_args()
    args.clients = args.clients or 2 * args.workers
    from denial_model.serve.auth import new_key

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # absolute: the server runs in `folder`
        model = args.model.resolve() if args.model else _train(folder, args.train_lines)
        lines = _claims(4_000)
        pairs, batch = _pairs(lines), lines[:500]
        key, digest = new_key()
        port = free_port()
        cmd = [sys.executable, "-m", "denial_model.cli", "serve", "--model", str(model), "--port", str(port)]
        cmd += ["--workers", str(args.workers)]
        env = {"DENIAL_MODEL_API_KEYS": digest}
        with running(cmd, f"http://127.0.0.1:{port}/readyz", folder, folder / "serve.log", env=env) as server:
            result = asyncio.run(_run(f"http://127.0.0.1:{port}", key, args, pairs, batch, server.pid))
        result["score_frame_per_call"] = _per_call(model, pairs, batch)
    s, b = result["single_claims"], result["batches_500"]
    print(json.dumps({"workers": args.workers, **result}, indent=2))
    ratio = s["p99_ms"] / TARGET_P99_MS
    print(
        f"single claims at {args.rate:g}/s: p50 {s['p50_ms']:.1f} ms, p95 {s['p95_ms']:.1f} ms, "
        f"p99 {s['p99_ms']:.1f} ms (target < {TARGET_P99_MS:g} ms: p99/target {ratio:.2f})"
    )
    c = result["score_frame_per_call"]
    print(
        f"one score_frame call, no HTTP: a claim p50 {c['claim_p50_ms']:.1f} / p90 {c['claim_p90_ms']:.1f} / "
        f"p99 {c['claim_p99_ms']:.1f} ms ({c['claims']} distinct claims), "
        f"500 lines {c['lines_500_ms']:.1f} ms"
    )
    ratio = b["lines_per_s"] / TARGET_LINES_PER_S
    print(
        f"500-line batches, {args.clients} clients: {b['lines_per_s']:,.0f} lines/s, "
        f"p50 {b['p50_ms']:.1f} ms (target >= {TARGET_LINES_PER_S:,}: measured/target {ratio:.2f}); "
        f"workers' CPU shares {b.get('worker_cpu_share', 'n/a')}"
    )


if __name__ == "__main__":
    main()
