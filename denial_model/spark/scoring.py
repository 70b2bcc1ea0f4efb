"""Scoring and checking a Spark DataFrame of claim lines: the plan on the driver.

The lines are repartitioned by patient and sorted by patient within each partition, then
`mapInArrow` runs `worker.run_partition` over them: blocks of whole patients through
`score.score_block` (or `scrub.check_block`), the code `score_file` runs. Every line of a
patient (and any look-back `history` lines of that patient) is in the same block, so the
cross-line rules (duplicates, daily totals, days since the previous dose) and the claim
context are exact whatever the partitioning: the answers equal `score_frame` on the whole
table. A claim whose lines name different patients is scored per patient.

The worker's output (scored lines, rejects and one partial summary per block, in one Arrow
schema) is persisted once and read three ways (`SparkScores`): the scored lines, the
rejects, and the job's summary, merged on the driver from the partial summaries and
quantiles Spark computes (`percentile_approx`): nothing of the lines is collected.

Row identity: a reject names its line by `row`. `read_claims` numbers the lines of Parquet
files by their position (files in name order, rows in file order, as `score_file` numbers
the rows of one file); a DataFrame of another origin gets `monotonically_increasing_id`
(unique, increasing in partition order), or pass `row_id=` naming a column of your own.
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

from denial_model.errors import SparkError
from denial_model.score import QUANTILES, SCORE_COLUMNS, ScoreSummary, quantile_name
from denial_model.spark.worker import EARLIER, KEY, REJECT, REJECT_TYPE, ROW, SUMMARY, Job, run_partition
from denial_model.table import READ_PROBLEM, check_date_format, check_required_columns

__all__ = ["SparkScores", "check_spark", "read_claims", "score_spark", "write_spark", "write_together"]

BLOCK_LINES = 50_000
CHECK_COLUMNS = ("rule_hits", "rule_carcs")
# percentile_approx's accuracy: a quantile's rank is off by at most lines / this
QUANTILE_ACCURACY = 1_000_000


@dataclass
class SparkScores:
    """A Spark job's answer: `scored` (input columns as they came + the score columns, or
    `rule_hits` and `rule_carcs` for a check), `rejects` (row, claim_id, line_number, column,
    reason). Unpacks as `scored, rejects = score_spark(...)`. Computed once, when first
    read, and kept (persisted) until `unpersist`."""

    scored: object  # pyspark DataFrame
    rejects: object
    _output: object
    _mode: str

    def __iter__(self):
        return iter((self.scored, self.rejects))

    def summary(self) -> ScoreSummary:
        """The job's totals (what a batch scoring run records), aggregated on the cluster:
        partial summaries per block merged here, score quantiles by `percentile_approx`."""
        from pyspark.sql import functions as F

        total = ScoreSummary()
        for row in self._output.where(F.col(SUMMARY).isNotNull()).select(SUMMARY).toLocalIterator():
            total.merge(json.loads(row[0]))
        if self._mode == "score" and total.scored:
            qs = self.scored.agg(
                F.percentile_approx("denial_probability", list(QUANTILES), QUANTILE_ACCURACY)
            ).first()[0]
            total.quantile_values = {quantile_name(q): float(v) for q, v in zip(QUANTILES, qs, strict=True)}
        return total

    def unpersist(self) -> None:
        self._output.unpersist()


def read_claims(spark, path: str | Path):
    """Parquet claim lines (a file or a folder of part files) with each line's position
    (`ROW`): files in name order, rows in file order."""
    from pyspark.sql import functions as F

    text = str(path)
    if not text.endswith(".parquet") and not _is_folder(spark, text):
        raise SparkError(f"{path}: the Spark engine reads Parquet (a .parquet file or a folder of them)")
    try:
        df = spark.read.parquet(text)
    except Exception as exc:
        if "TIMESTAMP(NANOS" not in str(exc):
            raise SparkError(f"{path}: Spark cannot read it as Parquet: {_first_line(exc)}") from None
        df = _read_nanos(spark, text)
    df = df.select(
        "*", F.col("_metadata.file_path").alias("__file__"), F.col("_metadata.row_index").alias(ROW)
    )
    counts = df.groupBy("__file__").count().orderBy("__file__").collect()
    starts, at = {}, 0
    for r in counts:
        starts[r["__file__"]] = at
        at += int(r["count"])
    offsets = spark.createDataFrame(list(starts.items()), "__file__ string, __start__ long")
    # position = the file's start + the row's index in it: a small broadcast join
    df = df.join(F.broadcast(offsets), "__file__").withColumn(ROW, F.col("__start__") + F.col(ROW))
    return df.drop("__file__", "__start__")


def _read_nanos(spark, text: str):
    """Parquet with nanosecond timestamps (pandas' default before 0.6; Spark refuses them):
    read them as numbers and make the date columns timestamps again."""
    from pyspark.sql import functions as F

    spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
    try:
        df = spark.read.parquet(text)
        df = df.select(*df.columns)  # resolve the schema while the setting holds
    finally:
        spark.conf.unset("spark.sql.legacy.parquet.nanosAsLong")
    dates = [c for c, t in df.dtypes if t == "bigint" and c.strip().lower().endswith("_date")]
    for c in dates:
        df = df.withColumn(c, F.timestamp_micros(F.floor(F.col(c) / 1000)).cast("timestamp_ntz"))
    return df


def _is_folder(spark, text: str) -> bool:
    jvm = spark.sparkContext._jvm
    target = jvm.org.apache.hadoop.fs.Path(text)
    fs = target.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return bool(fs.exists(target) and fs.getFileStatus(target).isDirectory())


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__


def _canonical(df):
    """The claim columns by their spec names (as `files.read_batches` names them), without
    the columns a scored file brings from an earlier run."""
    names = check_required_columns(list(df.columns))
    df = df.toDF(*names)
    drop = [c for c in (*SCORE_COLUMNS, *CHECK_COLUMNS, READ_PROBLEM, EARLIER, KEY) if c in df.columns]
    return df.drop(*drop)


def _with_rows(df, row_id: str | None):
    from pyspark.sql import functions as F

    if row_id is not None:
        if row_id not in df.columns:
            raise SparkError(f"row_id {row_id!r} is not a column of the DataFrame")
        return df.withColumn(ROW, F.col(row_id).cast("long"))
    if ROW in df.columns:  # numbered by read_claims
        return df
    return df.withColumn(ROW, F.monotonically_increasing_id())


def _prepared(df, history, row_id: str | None):
    """The lines (and look-back lines) with the partition key and flags, in the lines'
    columns and types."""
    from pyspark.sql import functions as F

    lines = _with_rows(_canonical(df), row_id).withColumn(EARLIER, F.lit(False))
    if history is not None:
        h = _canonical(history)
        cols = [
            (F.col(c) if c in h.columns else F.lit(None)).cast(t).alias(c)
            for c, t in lines.dtypes
            if c not in (ROW, EARLIER)
        ]
        h = h.select(*cols, F.lit(-1).cast("long").alias(ROW), F.lit(True).alias(EARLIER))
        lines = lines.unionByName(h)
    key = F.coalesce(F.trim(F.col("patient_id").cast("string")), F.lit(""))
    return lines.withColumn(KEY, key)


def _output_schema(prepared, extra):
    """Spark schema of the worker's output: the input columns, `extra`, then the row id,
    the reject and the partial summary."""
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    from denial_model.spark import _arrow

    fields = [f for f in prepared.schema.fields if f.name not in (KEY, ROW, EARLIER)]
    return StructType(
        [
            *fields,
            *extra,
            StructField(ROW, LongType()),
            StructField(REJECT, _arrow.spark_type(REJECT_TYPE)),
            StructField(SUMMARY, StringType()),
        ]
    )


def _run(
    prepared, extra, partitions: int | None, block_lines: int, date_format: str | None, **job
) -> SparkScores:
    """Plan the job over `prepared` lines: `extra` output columns; `job`: the rest of `Job`."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from denial_model.spark import _arrow

    spark = prepared.sparkSession
    mode = job["mode"]
    schema = _output_schema(prepared, extra)
    if not isinstance(block_lines, int) or block_lines < 1:
        raise SparkError(f"block_lines must be a whole number >= 1, got {block_lines!r}")
    job = Job(
        schema=_arrow.arrow_schema(spark, schema),
        block_lines=block_lines,
        date_format=check_date_format(date_format),
        **job,
    )
    n = partitions or int(spark.conf.get("spark.sql.shuffle.partitions"))
    planned = prepared.repartition(n, KEY).sortWithinPartitions(KEY, EARLIER, ROW)
    out = planned.mapInArrow(lambda it: run_partition(it, job), schema).persist(StorageLevel.MEMORY_AND_DISK)
    kept = [f.name for f in schema.fields if f.name not in (ROW, REJECT, SUMMARY)]
    scored = out.where(F.col(SUMMARY).isNull() & F.col(REJECT).isNull()).select(*kept)
    rejects = out.where(F.col(REJECT).isNotNull()).select(
        F.col(ROW).alias("row"), *(F.col(f"{REJECT}.{c}").alias(c) for c in REJECT_TYPE.names)
    )
    return SparkScores(scored=scored, rejects=rejects, _output=out, _mode=mode)


def _shipped(spark, model):
    """(broadcast of the verified estimator's joblib bytes, their sha256, drift reference)."""
    import joblib

    if isinstance(model, (str, Path)):
        from denial_model.jobs import load_model

        model = load_model(model)
    estimator = getattr(model, "estimator", model)
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    payload = buffer.getvalue()
    return spark.sparkContext.broadcast(payload), hashlib.sha256(payload).hexdigest(), model.drift_reference


def score_spark(
    df,
    model,
    *,
    history=None,
    row_id: str | None = None,
    partitions: int | None = None,
    block_lines: int = BLOCK_LINES,
    date_format: str | None = None,
) -> SparkScores:
    """Score a Spark DataFrame of claim lines (the claim-line table's columns) with `model`
    (an artifact path, a `models:/` URI, or a loaded model): the scored lines (input columns
    + `SCORE_COLUMNS`, as `score_file` writes them) and the rejects. `history`: earlier
    lines (a DataFrame) for the cross-line rules, not scored; `partitions`: how many
    partitions to spread the patients over (default `spark.sql.shuffle.partitions`);
    `block_lines`: lines per scoring call (memory per task, not results)."""
    from pyspark.sql.types import StructField

    from denial_model.scorer import SCORE_TYPES
    from denial_model.spark import _arrow

    spark = df.sparkSession
    broadcast, digest, reference = _shipped(spark, model)
    extra = [StructField(c, _arrow.spark_type(t)) for c, t in SCORE_TYPES.items()]
    return _run(
        _prepared(df, history, row_id),
        extra,
        partitions,
        block_lines,
        date_format,
        mode="score",
        model=broadcast,
        model_sha256=digest,
        reference=reference,
        pack=None,
    )


def check_spark(
    df,
    pack=None,
    *,
    row_id: str | None = None,
    partitions: int | None = None,
    block_lines: int = BLOCK_LINES,
    date_format: str | None = None,
) -> SparkScores:
    """The rules alone (the scrubber) over a Spark DataFrame: input columns + `rule_hits` and
    `rule_carcs`, as `check_frame` gives them, and the rejects. `pack`: a `RulePack` (default
    the shipped one)."""
    from pyspark.sql.types import StringType, StructField

    from denial_model.rules.pack import load_pack

    extra = [StructField(c, StringType()) for c in CHECK_COLUMNS]
    prepared = _prepared(df, None, row_id)
    return _run(
        prepared,
        extra,
        partitions,
        block_lines,
        date_format,
        mode="check",
        model=None,
        model_sha256="",
        reference=None,
        pack=pack or load_pack(),
    )


def write_spark(df, path: str | Path) -> None:
    """Write a DataFrame as a folder of part files (Parquet, or one CSV part with a header
    for a `.csv` name), in full or not at all (`write_together`)."""
    write_together([(df, path)])


def write_together(outputs: list[tuple[object, str | Path]]) -> None:
    """Write each DataFrame to its path (see `write_spark`), each into a sibling staging
    folder first; only when all are written are they renamed over their paths (an earlier
    output there is replaced), so a failed job leaves no output that passes for a result."""
    if not outputs:
        return
    spark = outputs[0][0].sparkSession
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    tag = uuid.uuid4().hex[:12]
    staged = []
    try:
        for df, path in outputs:
            text = str(path)
            staging = f"{text}.tmp-{tag}"
            staged.append((jvm.org.apache.hadoop.fs.Path(staging), jvm.org.apache.hadoop.fs.Path(text), path))
            if text.endswith(".csv"):
                df.coalesce(1).write.option("header", True).option("escape", '"').csv(staging)
            else:
                df.write.parquet(staging)
        for staging, target, path in staged:
            fs = target.getFileSystem(conf)
            if fs.exists(target):
                fs.delete(target, True)
            if not fs.rename(staging, target):
                raise SparkError(f"{path}: cannot move the finished output into place")
    finally:
        for staging, _, _ in staged:
            fs = staging.getFileSystem(conf)
            if fs.exists(staging):
                fs.delete(staging, True)
