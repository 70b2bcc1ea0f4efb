"""Real server processes for the tests: a free loopback port, start, wait until healthy, stop.

The MLflow tracking server, `denial-model serve` and `mlflow models serve` are all started
this way; their output goes to a log file the tests can read (and scan for claim values).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent  # the venv's scripts (uvicorn, mlflow) for servers that exec them


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode} before {url} answered") from None
            if time.time() > deadline:
                raise
            time.sleep(0.3)


@contextlib.contextmanager
def running(
    cmd: list[str], health_url: str, cwd: Path, log: Path, env: dict | None = None, timeout: float = 120
) -> Iterator[subprocess.Popen]:
    """Start `cmd`, yield once `health_url` answers 200, stop it (SIGTERM, then kill)."""
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_healthy(health_url, proc, timeout)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def scoring_processes(server_pid: int) -> list[int]:
    """The pids of `denial-model serve --workers N`'s scoring processes: the server's children
    that multiprocessing started (not its resource tracker), read from /proc."""
    children = (
        int(pid)
        for task in Path(f"/proc/{server_pid}/task").iterdir()
        for pid in (task / "children").read_text().split()
    )
    out = []
    for pid in children:
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(pid)
        except OSError:  # gone meanwhile
            continue
    return sorted(out)
