"""What runs on a Spark executor: blocks of whole patients through the same code as `score_file`.

The driver (`denial_model.spark.scoring`) partitions the lines by patient and sorts each
partition by patient, so a patient's lines arrive one after the other, in Arrow batches
that may cut a patient in two. `blocks` gathers batches into blocks of whole patients
(the last patient of a block is held back until the next batch shows where it ends), and
each block is scored by `score.score_block` (validate, rules, model, reasons and fixes) or
checked by the rules alone: the cross-line rules see every line of each patient, so the
answers are those of `score_frame` on the whole table.

One Arrow schema carries the three kinds of output row, told apart by which internal
column is set: scored (or checked) lines, rejects (`__reject__`) and one partial summary
per block (`__summary__`, the block's additive totals as JSON, merged on the driver).

The model arrives as the joblib bytes of the verified estimator in a Spark broadcast; each
executor process unpickles it once (after checking the bytes' sha256 against the digest
the driver verified) and keeps it for every later task (`_model`).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from denial_model.errors import ArtifactError

__all__ = ["EARLIER", "KEY", "REJECT", "REJECT_TYPE", "ROW", "SUMMARY", "Job", "run_partition"]

KEY = "__patient__"  # the partition key: patient id as validation reads it
ROW = "__row__"  # the line's identity in the input (what a reject names)
EARLIER = "__earlier__"  # true for look-back lines (history): read by the rules, not scored
REJECT = "__reject__"
SUMMARY = "__summary__"
INTERNAL = (KEY, ROW, EARLIER)
REJECT_TYPE = pa.struct(
    [
        ("claim_id", pa.string()),
        ("line_number", pa.string()),
        ("column", pa.string()),
        ("reason", pa.string()),
    ]
)

_MODELS: dict[str, object] = {}  # sha256 -> DenialModel, per executor process


@dataclass(frozen=True)
class Job:
    """What every task of one job needs (pickled with the task; the model is a broadcast)."""

    mode: str  # "score" or "check"
    model: object | None  # Broadcast of the estimator's joblib bytes (score)
    model_sha256: str
    reference: dict | None  # the training drift profile (score)
    pack: object | None  # the RulePack (check)
    schema: pa.Schema  # the Arrow schema Spark expects back
    block_lines: int
    date_format: str | None


def _model(job: Job):
    """The job's estimator, unpickled once per process after its bytes are checked."""
    found = _MODELS.get(job.model_sha256)
    if found is None:
        import joblib

        payload = job.model.value
        if hashlib.sha256(payload).hexdigest() != job.model_sha256:
            raise ArtifactError("the model bytes broadcast to this executor do not match the driver's digest")
        found = _MODELS[job.model_sha256] = joblib.load(io.BytesIO(payload))
    return found


def blocks(batches: Iterator[pa.RecordBatch], block_lines: int) -> Iterator[pa.Table]:
    """Tables of whole patients from batches sorted by patient: a block is cut once it holds
    `block_lines` rows, before the patient it ends in (who starts the next block)."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        if not batch.num_rows:
            continue
        pending.append(batch)
        held += batch.num_rows
        if held < block_lines:
            continue
        table = pa.Table.from_batches(pending)
        key = table.column(KEY)
        last = pc.equal(key, key[len(table) - 1])
        cut = len(table) - pc.sum(last).as_py()  # rows before the last patient
        if cut == 0:  # one patient so far: wait for the next one
            continue
        yield table.slice(0, cut)
        rest = table.slice(cut)
        pending, held = rest.to_batches(), len(rest)
    if held:
        yield pa.Table.from_batches(pending)


def run_partition(batches: Iterator[pa.RecordBatch], job: Job) -> Iterator[pa.RecordBatch]:
    """The mapInArrow function: every block of the partition scored (or checked)."""
    for table in blocks(batches, job.block_lines):
        yield from _outputs(table, job)


def _outputs(table: pa.Table, job: Job) -> Iterator[pa.RecordBatch]:
    from denial_model.score import ScoreSummary

    earlier_mask = pc.fill_null(table.column(EARLIER), False)
    lines = table.filter(pc.invert(earlier_mask))
    rows = lines.column(ROW).to_numpy().astype(np.int64)
    inputs = lines.drop_columns(list(INTERNAL))
    summary = ScoreSummary()
    summary.rows_in = len(lines)
    if job.mode == "score":
        from denial_model.score import score_block

        history = table.filter(earlier_mask).drop_columns(list(INTERNAL))
        block = score_block(
            inputs,
            rows,
            _model(job).scorer,
            summary,
            job.reference,
            _validated(history, job),
            job.date_format,
        )
        output, kept, rejects = block.output, block.rows, block.rejects
    else:
        from denial_model.rules.pack import CATEGORIES
        from denial_model.scrub import check_block

        output, kept, rejects, result = check_block(inputs, rows, job.pack, job.date_format)
        cats = result.category_hits()
        for c in CATEGORIES:
            summary.category_lines[c] += int(cats[c].sum())
        summary.scored += len(output)
        summary.rejected += len(rejects)
    if len(output):
        yield _batch(job, len(output), {**_columns(output, job), ROW: pa.array(kept, pa.int64())})
    if len(rejects):
        struct = pa.StructArray.from_arrays(
            [rejects.column(c).combine_chunks().cast(pa.string()) for c in REJECT_TYPE.names],
            fields=list(REJECT_TYPE),
        )
        yield _batch(job, len(rejects), {ROW: rejects.column("row").combine_chunks(), REJECT: struct})
    yield _batch(job, 1, {SUMMARY: pa.array([json.dumps(summary.partial())], pa.string())})


def _validated(history: pa.Table, job: Job):
    """The block's look-back lines, validated (bad ones are passed over, as `score_frame`
    passes over a bad history line)."""
    if not len(history):
        return None
    from denial_model.table import frame_from_arrow, validate

    return validate(frame_from_arrow(history), keep_extra=False, date_format=job.date_format).lines


def _columns(output: pa.Table, job: Job) -> dict[str, pa.Array]:
    output = output.combine_chunks()
    return {
        f.name: output.column(f.name).chunk(0).cast(f.type)
        for f in job.schema
        if f.name in output.column_names
    }


def _batch(job: Job, n: int, present: dict[str, pa.Array]) -> pa.RecordBatch:
    """A batch of the job's schema: the `present` columns, nulls in the others."""
    arrays = [present[f.name] if f.name in present else pa.nulls(n, f.type) for f in job.schema]
    return pa.RecordBatch.from_arrays(arrays, schema=job.schema)
