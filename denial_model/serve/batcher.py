"""Dynamic batching: the scoring requests waiting at one moment are scored as one table.

Scoring a table has a fixed cost per call (validation and the rules run column by column,
whatever the number of lines) that dwarfs the cost of a claim's two lines, so a service
answering one claim per call spends most of its time on that fixed cost, and under load
requests queue behind each other. The batcher's one thread takes every request waiting
(up to `max_lines` lines), scores them in one `score_frame` call and hands each request its
own rows back, already serialized (pandas writes the JSON of the whole batch in one call).
Requests never see each other: they are scored as separate groups
(`table.separate_groups`), so each answer equals the answer to that request alone (a test
sends the same claim in concurrent requests). A batch that fails is scored again request
by request, so one bad request cannot fail the others.

Where a batch is scored is a lane: `InProcess` (the batcher's own thread, one core) or a
scoring process (`serve.lanes`, `--workers N`). The batcher runs one thread per lane, and a
lane takes the requests waiting as soon as it is free, so N lanes keep N cores busy whatever
connection a request came on.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from denial_model.artifact import LoadedModel
from denial_model.estimator import line_ids, text_or_none
from denial_model.score import score_frame
from denial_model.serve.holder import Served
from denial_model.table import INPUT_COLUMNS, REJECT_COLUMNS

__all__ = ["Answer", "Batcher", "InProcess", "Lane", "Request", "frame_of", "reject_table", "score_requests"]

Records = list[dict[str, Any]]
Request = tuple[Records, Records | None]  # a request's lines and its history


@dataclass
class Answer:
    """One request's part of a batch, serialized: its results and rejects as JSON arrays
    (rows numbered in the request) and their counts."""

    results: str
    rejects: str
    scored: int
    rejected: int


@dataclass
class _Job:
    current: Served
    lines: Records
    history: Records | None
    future: Future = field(default_factory=Future)


def frame_of(records: Records) -> pd.DataFrame:
    """Claim lines sent as JSON objects, as one table in the contract's column order, every
    column of the values as sent (object: validation reads text, numbers and nulls as they
    are, a column of JSON numbers at once; pandas' own type inference would cost more than
    the checks)."""
    if records:
        return pd.DataFrame(records, columns=list(INPUT_COLUMNS), dtype=object)
    return pd.DataFrame({c: pd.Series(dtype=object) for c in INPUT_COLUMNS})


class Lane(Protocol):
    """Where a batch is scored: one answer (or the exception it raised) per request, in order."""

    def score(self, current: Served, requests: list[Request]) -> list[Answer | BaseException]: ...

    def close(self) -> None: ...


class InProcess:
    """Scores in the calling thread, in this process (one worker)."""

    def score(self, current: Served, requests: list[Request]) -> list[Answer | BaseException]:
        return score_requests(current.loaded, requests)

    def close(self) -> None:
        pass


class Batcher:
    def __init__(self, max_lines: int = 10_000, lanes: Sequence[Lane] | None = None):
        self.max_lines = max_lines
        self.lanes = list(lanes) if lanes else [InProcess()]
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._taking = threading.Lock()  # one lane takes from the queue at a time
        for k, lane in enumerate(self.lanes):
            name = f"denial-model-batcher-{k}"
            threading.Thread(target=self._run, args=(lane,), name=name, daemon=True).start()

    def close(self) -> None:
        """Let the lanes go (scoring processes end); at shutdown, after the last request."""
        for lane in self.lanes:
            lane.close()

    def submit(self, current: Served, lines: Records, history: Records | None) -> Future:
        job = _Job(current, lines, history)
        self._queue.put(job)
        return job.future

    def _next(self, block: bool) -> _Job | None:
        """The next job still wanted (a request that timed out has cancelled its future)."""
        while True:
            try:
                job = self._queue.get(block=block)
            except queue.Empty:
                return None
            if job.future.set_running_or_notify_cancel():
                return job

    def _take(self) -> list[_Job]:
        """The next job and every job waiting behind it, up to max_lines."""
        with self._taking:
            first = self._next(block=True)
            assert first is not None
            jobs, size = [first], len(first.lines)
            while size < self.max_lines and (job := self._next(block=False)) is not None:
                jobs.append(job)
                size += len(job.lines)
        return jobs

    def _run(self, lane: Lane) -> None:
        while True:
            jobs = self._take()
            # a reload in between: each model's jobs are scored with that model
            for _, same in itertools.groupby(jobs, key=lambda j: id(j.current)):
                self._finish(lane, list(same))

    @staticmethod
    def _finish(lane: Lane, jobs: list[_Job]) -> None:
        try:
            answers = lane.score(jobs[0].current, [(j.lines, j.history) for j in jobs])
            if len(answers) != len(jobs):
                raise RuntimeError(f"a lane answered {len(answers)} requests of {len(jobs)}")
        except Exception as exc:  # the lane itself failed (a scoring process died)
            answers = [exc] * len(jobs)
        for job, answer in zip(jobs, answers, strict=True):
            if isinstance(answer, BaseException):
                job.future.set_exception(answer)
            else:
                job.future.set_result(answer)


def score_requests(loaded: LoadedModel, requests: list[Request]) -> list[Answer | BaseException]:
    """The requests scored as one table; if that fails, each alone, so a failure is only its
    own request's."""
    try:
        return _score_together(loaded, requests)
    except Exception as exc:
        if len(requests) == 1:
            return [exc]
        return [score_requests(loaded, [r])[0] for r in requests]


def reject_table(rejects: pd.DataFrame) -> pd.DataFrame:
    """Rejects as the service answers them: ids as text (or null), whatever their input type."""
    out = rejects[list(REJECT_COLUMNS)].copy()
    if len(out):
        for c in ("claim_id", "line_number"):
            out[c] = text_or_none(out[c])
    return out


def _json_rows(df: pd.DataFrame) -> list[str]:
    """Each row of `df` as a JSON object, serialized by pandas in one call."""
    return df.to_json(orient="records", lines=True).split("\n")[: len(df)] if len(df) else []


def _score_together(loaded: LoadedModel, requests: list[Request]) -> list[Answer]:
    """Score the requests as one table, each as its own group; serialize once, slice per request."""
    sizes = np.array([len(lines) for lines, _ in requests])
    starts = np.concatenate([[0], np.cumsum(sizes)])
    df = frame_of(list(itertools.chain.from_iterable(lines for lines, _ in requests)))
    groups = np.repeat(np.arange(len(requests)), sizes)
    with_history = [k for k, (_, h) in enumerate(requests) if h]
    history = history_groups = None
    if with_history:
        history = frame_of(list(itertools.chain.from_iterable(requests[k][1] or () for k in with_history)))
        history_groups = np.repeat(with_history, [len(requests[k][1] or ()) for k in with_history])
    scored, rejects = score_frame(
        df,
        loaded,
        history=history,
        groups=groups,
        history_groups=history_groups,
        keep_input=False,
    )
    bad = rejects["row"].to_numpy(dtype=np.int64)
    good = np.setdiff1d(np.arange(len(df)), bad)
    ids = line_ids(df, good, numbered=good - starts[groups[good]])  # rows numbered in their own request
    results = _json_rows(pd.concat([ids, scored], axis=1))
    rejected = []
    if len(bad):
        rej = reject_table(rejects)
        rej["row"] -= starts[groups[bad]]
        rejected = _json_rows(rej)
    ok_at, bad_at = np.searchsorted(good, starts), np.searchsorted(bad, starts)
    return [
        Answer(
            results="[" + ",".join(results[ok_at[k] : ok_at[k + 1]]) + "]",
            rejects="[" + ",".join(rejected[bad_at[k] : bad_at[k + 1]]) + "]",
            scored=int(ok_at[k + 1] - ok_at[k]),
            rejected=int(bad_at[k + 1] - bad_at[k]),
        )
        for k in range(len(requests))
    ]
