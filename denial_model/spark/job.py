"""The Spark scoring job: what `denial-model score --engine spark` runs.

Like `jobs.run_scoring`, it loads nothing itself (the CLI passes the verified model),
scores, writes the outputs together, and records the batch as one MLflow run
(`jobs.track_scoring`: the same metrics, from the totals aggregated on the cluster).
"""

from __future__ import annotations

from pathlib import Path

from denial_model.artifact import LoadedModel
from denial_model.files import default_rejects_path, refuse_overwriting_input
from denial_model.jobs import ScoringRun, require_tracking_store, track_scoring
from denial_model.spark.scoring import read_claims, score_spark, write_together
from denial_model.spark.session import spark_session

__all__ = ["run_spark_scoring"]


def run_spark_scoring(
    input_path: str | Path,
    output_path: str | Path,
    loaded: LoadedModel,
    *,
    model_ref: str = "",
    rejects_path: str | Path | None = None,
    history_path: str | Path | None = None,
    master: str | None = None,
    partitions: int | None = None,
    track: bool = True,
    require_tracking: bool = False,
    tracking_uri: str | None = None,
    date_format: str | None = None,
    spark=None,
) -> ScoringRun:
    """`run_scoring` on Spark (`denial_model.spark`): Parquet in (a file or a folder of part
    files), a folder of part files out (and the rejects, one CSV part for a `.csv` name),
    the same MLflow run with the totals aggregated on the cluster. `master`: a new local
    session's (default: the running session, e.g. spark-submit's, else `local[*]`)."""
    require_tracking_store(require_tracking, track, tracking_uri)
    rejects = Path(rejects_path) if rejects_path else default_rejects_path(output_path)
    refuse_overwriting_input(input_path, output_path, rejects)
    spark = spark or spark_session(master)
    history = read_claims(spark, history_path) if history_path else None
    res = score_spark(
        read_claims(spark, input_path),
        loaded,
        history=history,
        partitions=partitions,
        date_format=date_format,
    )
    try:
        write_together([(res.scored, output_path), (res.rejects, rejects)])
        summary = res.summary()
    finally:
        res.unpersist()
    tracked, error = None, None
    if track:
        params = {
            "input": str(input_path),
            "model": model_ref or loaded.manifest.get("artifact", ""),
            "engine": "spark",
            "master": spark.sparkContext.master,
            "partitions": partitions or spark.conf.get("spark.sql.shuffle.partitions"),
        }
        tracked, error = track_scoring(
            summary, loaded, params, tracking_uri=tracking_uri, output_path=output_path
        )
    return ScoringRun(
        summary=summary, output=Path(output_path), rejects=rejects, tracking=tracked, tracking_error=error
    )
