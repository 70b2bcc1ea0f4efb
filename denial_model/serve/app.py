"""The HTTP service: FastAPI routes over the same `DenialModel` batch scoring uses.

Routes: `POST /v1/score` (model), `POST /v1/check` (rules only), `GET /v1/model`,
`POST /v1/admin/reload`, `GET /metrics` (all behind an API key), `GET /healthz` and
`GET /readyz` (open, for orchestrators). Every scoring answer accounts for every line:
lines in = results + rejects.

What protects the service (the `Guard` middleware and the handlers):
- keys: `Authorization: Bearer KEY`, checked against sha256 digests (`serve.auth`);
- size: a body over `max_body_bytes` is a 413 whether or not it declared its length, and a
  request over `max_lines` lines is a 413, both naming the limit;
- time: past `timeout_seconds` the caller gets a 503 (a request still waiting for its
  batch is dropped from it; one being scored finishes, its answer unsent);
- load: the requests waiting at one moment are scored as one table, each as if alone
  (`serve.batcher`): the fixed cost of a scoring call is paid once per batch;
- shape: malformed JSON, wrong types, unknown or missing columns are 422 with the field
  path; a value the claim-line contract refuses is a reject for that line only;
- logs: request id, route, status, line counts and latency; never a claim value.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import numpy as np
import pandas as pd
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

import denial_model
from denial_model.estimator import line_ids
from denial_model.rules.pack import load_pack
from denial_model.scrub import check_frame
from denial_model.serve.auth import KeyCheck
from denial_model.serve.batcher import Batcher, frame_of, reject_table
from denial_model.serve.holder import ModelHolder, Served
from denial_model.serve.lanes import ScoringProcess
from denial_model.serve.metrics import CONTENT_TYPE, ServiceMetrics
from denial_model.serve.schemas import (
    CheckRequest,
    CheckResponse,
    ModelInfo,
    ScoreRequest,
    ScoreResponse,
)

__all__ = ["ServeSettings", "create_app"]

log = logging.getLogger("denial_model.serve")
ROUTES = ("/v1/score", "/v1/check", "/v1/model", "/v1/admin/reload", "/metrics", "/healthz", "/readyz")


@dataclass(frozen=True)
class ServeSettings:
    """What `denial-model serve` configures. `key_digests` None: no authentication (the CLI
    allows it only with --insecure-no-auth, bound to loopback)."""

    key_digests: frozenset[str] | None
    max_body_bytes: int = 16 * 2**20
    max_lines: int = 10_000
    timeout_seconds: float = 30.0
    threads: int = 4  # threads for the scrubber route (scoring runs in the batcher's thread)


class _Problem(Exception):
    """An answer other than 200 from inside a handler: status and message."""

    def __init__(self, status: int, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


def _json(body: dict, status: int = 200, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


# A refused body is read (and dropped) up to this many times the body limit before the 413 is
# sent (`Guard`): no memory is kept, only the client's write is let finish.
DRAIN_FACTOR = 4


class Guard:
    """Pure ASGI middleware around the app: request id, body size cap (counting what
    arrives, so a body without Content-Length is capped too), metrics and the log line."""

    def __init__(self, app, settings: ServeSettings, metrics: ServiceMetrics):
        self.app, self.limit, self.metrics = app, settings.max_body_bytes, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if given.isalnum() and len(given) <= 64 else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        route = scope["path"] if scope["path"] in ROUTES else "other"
        state = {"received": 0, "too_large": False, "status": 500, "ended": False}
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            state["too_large"] = True

        async def capped_receive():
            if state["too_large"]:
                return {"type": "http.request", "body": b"", "more_body": False}
            msg = await receive()
            if msg["type"] == "http.request":
                state["received"] += len(msg.get("body", b""))
                state["ended"] = not msg.get("more_body", False)
                if state["received"] > self.limit:
                    state["too_large"] = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return msg

        async def drain():
            """Read and drop the rest of a refused body, up to `DRAIN_FACTOR` times the
            limit: a client that writes its whole body before it reads the answer (most do)
            then gets the 413 instead of a broken pipe; a body beyond that is cut off."""
            while not state["ended"] and state["received"] <= DRAIN_FACTOR * self.limit:
                msg = await receive()
                if msg["type"] != "http.request":
                    break
                state["received"] += len(msg.get("body", b""))
                state["ended"] = not msg.get("more_body", False)
            state["ended"] = True

        async def marked_send(msg):
            if msg["type"] == "http.response.start":
                if state["too_large"]:
                    await drain()
                    msg = {**msg, "status": 413, "headers": [(b"content-type", b"application/json")]}
                state["status"] = msg["status"]
                msg = {**msg, "headers": [*msg.get("headers", []), (b"x-request-id", rid.encode())]}
            elif msg["type"] == "http.response.body" and state["too_large"]:
                if msg.get("more_body"):
                    return
                detail = f"request body over the limit of {self.limit:,} bytes"
                msg = {"type": "http.response.body", "body": json.dumps({"detail": detail}).encode()}
            await send(msg)

        try:
            await self.app(scope, capped_receive, marked_send)
        finally:
            took = time.perf_counter() - start
            self.metrics.request(route, state["status"], took)
            lines = scope["state"].get("lines", "")
            log.info(
                "request_id=%s method=%s route=%s status=%s lines=%s ms=%.1f",
                rid,
                scope["method"],
                route,
                state["status"],
                lines,
                took * 1000,
            )


def _records(df: pd.DataFrame) -> str:
    return df.to_json(orient="records") if len(df) else "[]"


def _raw_json(parts: dict[str, Any], raw: dict[str, str]) -> Response:
    """A JSON object from plain values and already serialized JSON arrays (the result
    tables, serialized by pandas in one call each instead of one object per line)."""
    head = json.dumps(parts)[:-1]
    tail = "".join(f', "{k}": {v}' for k, v in raw.items())
    return Response(head + tail + "}", media_type="application/json")


class _Service:
    """What the handlers share: settings, the model holder, keys, metrics, the batcher."""

    def __init__(self, settings: ServeSettings, holder: ModelHolder, lanes: Sequence[ScoringProcess] = ()):
        self.settings, self.holder = settings, holder
        self.metrics = ServiceMetrics()
        self.keys = KeyCheck(settings.key_digests) if settings.key_digests is not None else None
        self.limiter = anyio.CapacityLimiter(settings.threads)
        self.batcher = Batcher(settings.max_lines, lanes)
        self.rules_only_pack = load_pack() if holder.ref is None else None

    def reload(self) -> dict:
        result = self.holder.reload()
        if self.holder.current is not None:
            self.metrics.serving(self.holder.current.version, self.holder.current.sha256)
        log.info("reload: %s", {k: v for k, v in result.items() if k != "sha256"})
        return result

    def authorized(self, request: Request) -> None:
        if self.keys is not None and not self.keys.allows(request.headers.get("authorization")):
            raise _Problem(
                401, "a valid API key is required: Authorization: Bearer KEY", {"WWW-Authenticate": "Bearer"}
            )

    def served(self) -> Served:
        if self.holder.current is None:
            raise _Problem(503, "no model is loaded: start the service with --model to score")
        return self.holder.current

    def line_cap(self, request: Request, n_lines: int, n_history: int) -> None:
        request.state.lines = n_lines
        if n_lines + n_history > self.settings.max_lines:
            raise _Problem(
                413,
                f"{n_lines + n_history:,} lines in one request; the limit is "
                f"{self.settings.max_lines:,} (lines + history)",
            )

    async def in_thread(self, fn, *args):
        return await anyio.to_thread.run_sync(fn, *args, abandon_on_cancel=True, limiter=self.limiter)

    @contextlib.contextmanager
    def deadline(self):
        try:
            with anyio.fail_after(self.settings.timeout_seconds):
                yield
        except TimeoutError:
            raise _Problem(503, f"scoring took longer than {self.settings.timeout_seconds:g} s") from None

    def counted(self, route: str, outcome: str, lines: int, done: int) -> None:
        self.metrics.counted(route, outcome, done)
        self.metrics.counted(route, "rejected", lines - done)


def create_app(settings: ServeSettings, holder: ModelHolder, lanes: Sequence[ScoringProcess] = ()) -> FastAPI:
    """The service over a `ModelHolder` (loaded by the caller, so a bad model fails the start),
    scoring in the batcher's thread, or in `lanes` (scoring processes holding the model)."""
    svc = _Service(settings, holder, lanes)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if holder.current is not None:
            svc.metrics.serving(holder.current.version, holder.current.sha256)
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, svc.reload))
        yield
        svc.batcher.close()

    app = FastAPI(
        title="denial-model",
        version=denial_model.__version__,
        description="P(denied), reasons and fixes for drug claim lines before they are sent.",
        lifespan=lifespan,
    )

    @app.exception_handler(_Problem)
    async def problem(request: Request, exc: _Problem):
        return _json({"detail": exc.detail}, exc.status, exc.headers)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception):
        rid = request.scope.get("state", {}).get("request_id", "")
        log.exception("request_id=%s internal error (a bug in denial-model)", rid)
        return _json({"detail": f"internal error (a bug in denial-model); request id {rid}"}, 500)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return _json({"detail": _field_errors(exc.errors())}, 422)

    _operation_routes(app, svc)
    _scoring_routes(app, svc)
    return Guard(app, settings, svc.metrics)  # type: ignore[return-value]


def _operation_routes(app: FastAPI, svc: _Service) -> None:
    holder, key = svc.holder, [Depends(svc.authorized)]

    @app.get("/healthz", tags=["operations"], summary="The process is up")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="A model is loaded and warmed (or rules only)")
    async def readyz():
        if holder.ref is not None and holder.current is None:
            return _json({"status": "not ready", "reason": holder.last_error or "loading"}, 503)
        return {"status": "ready", "model_version": holder.current.version if holder.current else None}

    @app.get("/metrics", tags=["operations"], dependencies=key, response_class=Response, summary="Prometheus")
    async def prometheus():
        return Response(svc.metrics.text(), media_type=CONTENT_TYPE)

    @app.get("/v1/model", response_model=ModelInfo, dependencies=key, summary="The model being served")
    async def model_info():
        return _model_info(svc.served())

    @app.post(
        "/v1/admin/reload",
        dependencies=key,
        tags=["operations"],
        summary="Load the model again (an alias resolved anew); swap it in without dropping requests",
    )
    async def admin_reload():
        return await anyio.to_thread.run_sync(svc.reload)


def _scoring_routes(app: FastAPI, svc: _Service) -> None:
    key = [Depends(svc.authorized)]

    @app.post(
        "/v1/score",
        response_model=ScoreResponse,
        dependencies=key,
        summary="P(denied), risk tier, rule hits, reasons, fixes, dollars at risk per line",
    )
    async def score(body: ScoreRequest, request: Request):
        svc.line_cap(request, len(body.lines), len(body.history or []))
        current = svc.served()
        with svc.deadline():
            part = await asyncio.wrap_future(svc.batcher.submit(current, body.lines, body.history))
        svc.counted("/v1/score", "scored", len(body.lines), part.scored)
        parts = {
            "model": {"version": current.version, "sha256": current.sha256},
            "lines_in": len(body.lines),
            "lines_scored": part.scored,
            "lines_rejected": part.rejected,
        }
        return _raw_json(parts, {"results": part.results, "rejects": part.rejects})

    @app.post(
        "/v1/check",
        response_model=CheckResponse,
        dependencies=key,
        summary="The rule pack's findings per line (the scrubber; no model involved)",
    )
    async def check(body: CheckRequest, request: Request):
        svc.line_cap(request, len(body.lines), 0)
        current = svc.holder.current
        pack = current.loaded.scorer.rules.pack_ if current is not None else svc.rules_only_pack
        with svc.deadline():
            response, done = await svc.in_thread(_check, pack, body)
        svc.counted("/v1/check", "checked", len(body.lines), done)
        return response


def _field_errors(errors) -> list[dict]:
    """pydantic's errors as {loc, msg}: one per field (a value of the wrong JSON type fails
    each member of the scalar union: reported once), never the offending value (PHI)."""
    out, seen = [], set()
    for e in errors:
        loc = [p for p in e.get("loc", ()) if p not in ("str", "int", "float", "bool", "none")]
        key = tuple(map(str, loc))
        if key in seen:
            continue
        seen.add(key)
        msg = e.get("msg", "invalid")
        if e.get("type") in ("string_type", "int_type", "float_type", "bool_type"):
            msg = "must be a JSON string, number, boolean or null"
        out.append({"loc": loc, "msg": msg, "type": e.get("type", "")})
    return out


def _model_info(current: Served) -> dict:
    m = current.loaded.manifest
    return {
        "ref": current.ref,
        "version": current.version,
        "sha256": current.sha256,
        "trust": current.loaded.trust,
        "trained_at": m.get("trained_at"),
        "denial_model_version": m.get("denial_model_version"),
        "sklearn_version": m.get("sklearn_version"),
        "rule_pack_sha256": m.get("rule_pack_sha256"),
        "thresholds": m.get("thresholds", {}),
        "metrics": m.get("metrics", {}),
        "loaded_at": current.loaded_at,
    }


def _check(pack, body: CheckRequest) -> tuple[Response, int]:
    df = frame_of(body.lines)
    res = check_frame(df, pack)
    good = np.setdiff1d(np.arange(len(df)), res.rejects["row"].to_numpy(dtype=np.int64))
    results = (
        line_ids(df)
        .iloc[good]
        .assign(
            rule_hits=res.checked["rule_hits"].to_numpy(), rule_carcs=res.checked["rule_carcs"].to_numpy()
        )
    )
    parts = {
        "rule_pack_sha256": pack.sha256,
        "lines_in": len(df),
        "lines_checked": len(results),
        "lines_rejected": len(res.rejects),
    }
    raw = {"results": _records(results), "rejects": _records(reject_table(res.rejects))}
    return _raw_json(parts, raw), len(results)
