"""The jobs a user runs: train, evaluate, score. Each loads what it needs, runs, tracks the
run in MLflow and returns what a report prints.

The CLI (`cli.py`), `make demo` (`demo.py`) and notebooks call these functions; they hold
the wiring (which model, which split, what is tracked) so it is written once. The model
code they call (`train`, `evaluate`, `score`) knows nothing of MLflow; `tracking` is the
only module that talks to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from denial_model.artifact import LoadedModel, data_fingerprint, load_artifact, save_artifact
from denial_model.errors import ConfigError
from denial_model.files import CHUNK_LINES, default_rejects_path
from denial_model.score import ScoreSummary, score_file
from denial_model.tracking import DEFAULT_EXPERIMENT

if TYPE_CHECKING:
    from denial_model.train import TrainConfig, TrainResult

# Training, evaluation and MLflow are imported by the jobs that use them: scoring a handful
# of lines should not wait for scikit-learn's linear models or MLflow's import (seconds).

__all__ = [
    "Evaluation",
    "ScoringRun",
    "TrainingRun",
    "load_model",
    "require_tracking_store",
    "run_evaluation",
    "run_scoring",
    "run_training",
    "track_scoring",
]

Progress = Callable[[str], None] | None


def _step(progress: Progress, text: str) -> None:
    if progress is not None:
        progress(text)


@dataclass
class TrainingRun:
    """What a training job produced: the comparison table, the manifest, the MLflow run."""

    table: pd.DataFrame
    manifest: dict
    tracking: dict | None
    result: TrainResult
    groups: pd.DataFrame | None = None  # reason groups: the model beside the rules (evaluate.group_table)


def run_training(
    history: pd.DataFrame,
    output: str | Path,
    cfg: TrainConfig | None = None,
    *,
    track: bool = True,
    tracking_uri: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    data_params: dict | None = None,
    progress: Progress = None,
) -> TrainingRun:
    """Fit, evaluate against the baselines, save the artifact, track the run in MLflow."""
    from denial_model.drift import reference_profile
    from denial_model.evaluate import comparison_table, group_metrics, group_table, metrics_dict
    from denial_model.scorer import Scorer
    from denial_model.tracking import log_training
    from denial_model.train import TrainConfig, train_model

    cfg = cfg or TrainConfig()
    _step(progress, "fitting features and classifier, calibrating")
    result = train_model(history, cfg)
    scorer = Scorer(result.model, result.thresholds, result.groups)
    _step(progress, "evaluating on the test months beside the baselines")
    table = comparison_table(scorer, result.splits.earlier, result.splits.test)
    groups = group_table(scorer, result.splits.earlier, result.splits.test)
    fingerprint = data_fingerprint(history)
    _step(progress, "profiling the training data for drift, saving the artifact")
    x_train = scorer.transform(result.splits.train)
    manifest = save_artifact(
        output,
        result.model,
        result.thresholds,
        {**metrics_dict(table), **group_metrics(groups)},
        fingerprint,
        extra={
            "split": result.splits.bounds,
            "train_config": cfg.to_dict(),
            "calibration": result.calibration,
            "drift_reference": reference_profile(x_train, scorer.proba_of_features(x_train)),
        },
        groups=result.groups,
    )
    tracked = None
    if track:
        _step(progress, "tracking the run in MLflow and registering the model")
        params = {
            **{f"train.{k}": v for k, v in cfg.to_dict().items()},
            **{f"split.{k}": v for k, v in result.splits.bounds.items()},
            "data.lines": len(history),
            "data.train_lines": len(result.splits.train),
            "data.calib_lines": len(result.splits.calib),
            "data.test_lines": len(result.splits.test),
            "data.fingerprint": fingerprint,
            "rule_pack.sha256": scorer.pack_sha256,
            "threshold.medium": result.thresholds.medium,
            "threshold.high": result.thresholds.high,
            **{f"calibration.{k}": v for k, v in result.calibration.items()},
            **{f"data.{k}": v for k, v in (data_params or {}).items()},
        }
        tracked = log_training(
            scorer=scorer,
            table=table,
            groups=groups,
            test=result.splits.test,
            params=params,
            manifest=manifest,
            artifact_path=output,
            tracking_uri=tracking_uri,
            experiment=experiment,
            progress=progress,
        )
    return TrainingRun(table=table, manifest=manifest, tracking=tracked, result=result, groups=groups)


def load_model(ref: str | Path, tracking_uri: str | None = None, sha256: str | None = None) -> LoadedModel:
    """A model by artifact path or by MLflow registry URI (`models:/denial-model@champion`,
    `models:/denial-model/3`), verified before it is unpickled: a path against `sha256` when
    pinned, else its (signed) manifest; a registered version against its registry tag."""
    ref = str(ref)
    if ref.startswith("models:/"):
        if sha256 is not None:
            raise ConfigError(
                "--model-sha256 pins a file; a registered model is checked against its registry tag"
            )
        from denial_model.tracking import load_registered

        return load_registered(ref, tracking_uri)
    return load_artifact(ref, sha256=sha256)


@dataclass
class Evaluation:
    table: pd.DataFrame
    bounds: dict


def run_evaluation(loaded: LoadedModel, history: pd.DataFrame, since: str | None = None) -> Evaluation:
    """The comparison table of a trained model on the test months of `history`, split as the
    model's training split its own history (same figures as the training run on the same data);
    `since`: a date a payer's behaviour changed, reported as a segment of its own."""
    from denial_model.evaluate import comparison_table
    from denial_model.metrics import time_split
    from denial_model.train import TrainConfig

    cfg = loaded.manifest.get("train_config", {})
    defaults = TrainConfig()
    sp = time_split(
        history,
        cfg.get("test_months", defaults.test_months),
        cfg.get("calib_months", defaults.calib_months),
    )
    return Evaluation(
        table=comparison_table(loaded.scorer, sp.earlier, sp.test, since=since), bounds=sp.bounds
    )


@dataclass
class ScoringRun:
    """What a scoring job produced."""

    summary: ScoreSummary
    output: Path
    rejects: Path
    tracking: dict | None
    tracking_error: str | None = None  # the scores were written but the run could not be tracked


def require_tracking_store(require_tracking: bool, track: bool, tracking_uri: str | None) -> None:
    """With `require_tracking`, the store is tried before anything is read (`TrackingError`)."""
    if require_tracking:
        if not track:
            raise ConfigError("--require-tracking and --no-tracking contradict each other")
        from denial_model.tracking import check_tracking

        check_tracking(tracking_uri)


def track_scoring(
    summary: ScoreSummary,
    loaded: LoadedModel,
    params: dict,
    *,
    tracking_uri: str | None,
    output_path: str | Path,
    upload_output: bool = False,
) -> tuple[dict | None, str | None]:
    """(the MLflow run, None) or (None, why not): a store that is down loses the run, not the
    scores, which are written by then."""
    from denial_model.tracking import log_scoring

    params = {
        **params,
        "model_sha256": loaded.manifest.get("sha256", ""),
        "predictor": loaded.scorer.predictor_check,
    }
    try:
        tracked = log_scoring(
            summary,
            params=params,
            reference=loaded.drift_reference,
            tracking_uri=tracking_uri,
            output_path=output_path,
            upload_output=upload_output,
        )
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    return tracked, None


def run_scoring(
    input_path: str | Path,
    output_path: str | Path,
    loaded: LoadedModel,
    *,
    model_ref: str = "",
    rejects_path: str | Path | None = None,
    history: pd.DataFrame | None = None,
    chunk_lines: int = CHUNK_LINES,
    track: bool = True,
    require_tracking: bool = False,
    tracking_uri: str | None = None,
    upload_output: bool = False,
    on_chunk=None,
    date_format: str | None = None,
) -> ScoringRun:
    """Score a file (streamed), then record the batch as an MLflow run unless `track=False`.

    A store that fails at the end leaves the scores written and says so (`tracking_error`);
    with `require_tracking` the store is tried first and an unreachable one refuses the job
    (`TrackingError`) before anything is read or written."""
    require_tracking_store(require_tracking, track, tracking_uri)
    rejects = Path(rejects_path) if rejects_path else default_rejects_path(output_path)
    summary = score_file(
        input_path,
        output_path,
        loaded,
        rejects,
        history=history,
        chunk_lines=chunk_lines,
        on_chunk=on_chunk,
        date_format=date_format,
    )
    tracked, error = None, None
    if track:
        params = {
            "input": str(input_path),
            "model": model_ref or loaded.manifest.get("artifact", ""),
            "engine": "local",
            "chunk_lines": chunk_lines,
        }
        tracked, error = track_scoring(
            summary,
            loaded,
            params,
            tracking_uri=tracking_uri,
            output_path=output_path,
            upload_output=upload_output,
        )
    return ScoringRun(
        summary=summary, output=Path(output_path), rejects=rejects, tracking=tracked, tracking_error=error
    )
