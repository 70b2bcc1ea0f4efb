"""Starting the service: settings checked, model loaded and verified, then uvicorn.

Everything that can be wrong at start (no key configured, a digest that is not one, a model
that fails its check) is a one-line error before the port is opened, so a service that is
listening is a service that can answer.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from pathlib import Path

from denial_model.errors import ArtifactError, ConfigError
from denial_model.serve.app import ServeSettings, create_app
from denial_model.serve.auth import KEYS_ENV, load_digests
from denial_model.serve.holder import ModelHolder

__all__ = ["CONFIG_ENV", "app_from_env", "build_app", "run_server"]

CONFIG_ENV = "DENIAL_MODEL_SERVE_CONFIG"  # build_app's arguments, for worker processes
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
):
    """The ASGI app `denial-model serve` runs, with the model loaded and verified."""
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
    holder = ModelHolder(model, sha256=model_sha256, tracking_uri=tracking_uri)
    if model is not None:
        result = holder.reload()
        if not result["reloaded"]:
            raise ArtifactError(f"--model {model}: {result['reason']}")
    settings = ServeSettings(
        key_digests=key_digests,
        max_body_bytes=max_body_bytes,
        max_lines=max_lines,
        timeout_seconds=timeout_seconds,
    )
    return create_app(settings, holder)


def app_from_env():
    """The app of one worker process (`--workers` > 1): built from the arguments the main
    process checked (`CONFIG_ENV`), so every worker loads and verifies the model itself."""
    return build_app(**json.loads(os.environ[CONFIG_ENV]))


def run_server(app, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, config: dict | None = None):
    """Serve until stopped (SIGINT/SIGTERM end it). One process: `app`, and SIGHUP reloads
    the model. Several: each worker builds its own app from `config`; SIGHUP to the main
    process restarts the workers one by one, each loading the model anew."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    common = {
        "host": host,
        "port": port,
        "access_log": False,
        "log_level": "info",
        "timeout_graceful_shutdown": 30,
    }
    if workers <= 1:
        uvicorn.run(app, **common)
        return
    os.environ[CONFIG_ENV] = json.dumps(
        {k: (str(v) if isinstance(v, Path) else v) for k, v in (config or {}).items()}
    )
    uvicorn.run("denial_model.serve.server:app_from_env", factory=True, workers=workers, **common)
