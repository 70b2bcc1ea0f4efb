"""Scoring processes: how `denial-model serve --workers N` uses N cores.

The service is one HTTP process whose batcher has N lanes, each a thread talking to its own
scoring process over a pipe. Why not N copies of the whole server (uvicorn's workers): a
keep-alive connection stays with the process that accepted it, and a server whose scoring
runs in a thread goes on accepting while it scores, so a caller's few connections tend to
land on one process while the other core idles (the serving benchmark saw every batch on one
of two workers in 4 runs of 5); a reload or `/metrics` also reached only the worker that
answered. Here any request can be scored on any core, one reload reaches every process, and
`/metrics` counts them all.

A scoring process gets the model from the service (pickled from memory: the service has
already verified the file, so the process never reads one) and keeps the last two it was
sent, so requests taken before a reload finish on the model they were taken with. A
process that dies is started again (it gets the model then) and the batch it was given is
sent once more (scoring has no side effects); a batch it dies on twice fails its requests
only.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import threading
import traceback
from multiprocessing.connection import Connection

from denial_model.artifact import LoadedModel
from denial_model.serve.batcher import Answer, Request, score_requests
from denial_model.serve.holder import Served, warm

__all__ = ["ScoringProcess", "scoring_processes"]

log = logging.getLogger("denial_model.serve")
KEPT_MODELS = 2  # the one serving and the one before it (requests taken before a reload)


def _model_key(current: Served) -> str:
    """Which model a batch is for: the same file (digest) is the same model."""
    return current.sha256 or f"id-{id(current.loaded)}"


def _lane_main(conn: Connection) -> None:
    """A scoring process: load the models it is sent, score the batches it is sent."""
    models: dict[str, LoadedModel] = {}
    while True:
        try:
            kind, key, payload = conn.recv()
        except (EOFError, OSError):  # the service is gone
            return
        if kind == "model":
            loaded = pickle.loads(payload)  # from the service that verified it, not from a file
            warm(loaded)
            models.pop(key, None)  # the newest last: the oldest is the one let go
            models[key] = loaded
            while len(models) > KEPT_MODELS:
                models.pop(next(iter(models)))
            conn.send(("ok", None))
        elif key not in models:
            conn.send(("missing", None))
        else:
            conn.send(("ok", [_portable(a) for a in score_requests(models[key], payload)]))


def _portable(answer: Answer | BaseException) -> Answer | BaseException:
    """An exception the service can unpickle (its own type when it can, else its text)."""
    if isinstance(answer, Answer):
        return answer
    try:
        pickle.loads(pickle.dumps(answer))
        return answer
    except Exception:
        text = "".join(traceback.format_exception_only(answer)).strip()
        return RuntimeError(f"in a scoring process: {text}")


class ScoringProcess:
    """One scoring process and the pipe to it; one conversation at a time."""

    def __init__(self, name: str):
        self.name = name
        self._lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork of a threaded server
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_lane_main, args=(child,), name=self.name, daemon=True)
        self._proc.start()
        child.close()

    def _ask(self, message: tuple) -> tuple:
        """Send a message and wait for the answer. Scoring has no side effects, so a process
        found dead (before or while it works on the message) is started again and asked once
        more; a second death on the same message (a batch that kills it) fails the message."""
        for attempt in (1, 2):
            try:
                self._conn.send(message)
                return self._conn.recv()
            except (EOFError, OSError):
                code = self._restart()
                log.error("%s exited (code %s); started again (attempt %d of 2)", self.name, code, attempt)
        raise RuntimeError(f"{self.name} exited (code {code}) twice on one batch; started again")

    def _restart(self) -> int | None:
        self._proc.join(timeout=5)
        code = self._proc.exitcode
        self._conn.close()
        self._start()
        return code

    def _send_model(self, current: Served) -> None:
        status, _ = self._ask(("model", _model_key(current), pickle.dumps(current.loaded, protocol=5)))
        if status != "ok":
            raise RuntimeError(f"{self.name} did not take the model: {status}")

    def load(self, current: Served) -> None:
        """Send the model now (at start and on reload, before it serves), and warm it there."""
        with self._lock:
            self._send_model(current)

    def score(self, current: Served, requests: list[Request]) -> list[Answer | BaseException]:
        with self._lock:
            status, answers = self._ask(("score", _model_key(current), requests))
            if status == "missing":  # started again since, or the model is older than it keeps
                self._send_model(current)
                status, answers = self._ask(("score", _model_key(current), requests))
            return answers

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            self._proc.join(timeout=10)
            if self._proc.is_alive():
                self._proc.terminate()


def scoring_processes(n: int) -> list[ScoringProcess]:
    return [ScoringProcess(f"denial-model-scoring-{k}") for k in range(n)]
