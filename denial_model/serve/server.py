"""Starting the service: settings checked, model loaded and verified, then uvicorn.

Everything that can be wrong at start (no key configured, a digest that is not one, a model
that fails its check) is a one-line error before the port is opened, so a service that is
listening is a service that can answer. With `workers` above 1 the scoring processes
(`serve.lanes`) are started and hold the model before the port opens too.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

from denial_model.errors import ArtifactError, ConfigError
from denial_model.serve.app import ServeSettings, create_app
from denial_model.serve.auth import KEYS_ENV, load_digests
from denial_model.serve.holder import ModelHolder, Served
from denial_model.serve.lanes import ScoringProcess, scoring_processes

__all__ = ["build_app", "run_server"]

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_app(
    model: str | None,
    *,
    host: str = "127.0.0.1",
    api_keys: str | Path | None = None,
    insecure_no_auth: bool = False,
    model_sha256: str | None = None,
    tracking_uri: str | None = None,
    max_body_bytes: int = 16 * 2**20,
    max_lines: int = 10_000,
    timeout_seconds: float = 30.0,
    workers: int = 1,
):
    """The ASGI app `denial-model serve` runs, with the model loaded and verified (and, with
    `workers` > 1, sent to that many scoring processes)."""
    digests = load_digests(api_keys)
    if insecure_no_auth:
        if digests:
            raise ConfigError("--insecure-no-auth given, but API keys are configured: use one or the other")
        if not _is_loopback(host):
            raise ConfigError(
                f"--insecure-no-auth serves only on loopback (127.0.0.1, ::1); --host is {host!r}"
            )
        key_digests = None
    elif not digests:
        raise ConfigError(
            f"no API key configured: set {KEYS_ENV} or pass --api-keys FILE with sha256 digests "
            "(`denial-model keygen` makes a key), or --insecure-no-auth for a loopback-only trial"
        )
    else:
        key_digests = digests
    for name, value in (("--max-body-bytes", max_body_bytes), ("--max-lines", max_lines)):
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    if timeout_seconds <= 0:
        raise ConfigError(f"--timeout must be above 0 seconds, got {timeout_seconds}")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    holder = ModelHolder(model, sha256=model_sha256, tracking_uri=tracking_uri)
    lanes: list[ScoringProcess] = []
    if model is not None:
        result = holder.reload()
        if not result["reloaded"]:
            raise ArtifactError(f"--model {model}: {result['reason']}")
        if workers > 1:
            lanes = _started(workers, holder)
    settings = ServeSettings(
        key_digests=key_digests,
        max_body_bytes=max_body_bytes,
        max_lines=max_lines,
        timeout_seconds=timeout_seconds,
    )
    return create_app(settings, holder, lanes)


def _started(workers: int, holder: ModelHolder) -> list[ScoringProcess]:
    """The scoring processes, each holding the served model; later models reach them all
    before they serve."""
    lanes = scoring_processes(workers)
    try:
        assert holder.current is not None
        _send_to(lanes, holder.current)
    except Exception:
        for lane in lanes:
            lane.close()
        raise
    holder.prepare = lambda new: _send_to(lanes, new)
    return lanes


def _send_to(lanes: list[ScoringProcess], current: Served) -> None:
    for lane in lanes:
        lane.load(current)


def run_server(app, host: str = "127.0.0.1", port: int = 8000):
    """Serve until stopped (SIGINT/SIGTERM end it; SIGHUP reloads the model)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    common = {
        "host": host,
        "port": port,
        "access_log": False,
        "log_level": "info",
        "timeout_graceful_shutdown": 30,
    }
    uvicorn.run(app, **common)
