"""MLflow tracking: the one module that talks to MLflow (estimators and jobs never do).

Embedded default: a SQLite store under the working directory (`sqlite:///mlflow.db`) with
local artifacts; `--tracking-uri` or `MLFLOW_TRACKING_URI` points at a team server.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from denial_model.artifact import load_artifact
from denial_model.drift import DRIFT_WARNING, MIN_DRIFT_LINES, drift_report
from denial_model.errors import ArtifactError, TrackingError
from denial_model.table import INPUT_COLUMNS, denied_labels

if TYPE_CHECKING:
    from denial_model.scorer import Scorer

# MLflow itself is imported when a run is logged (`_mlflow`), not with this module: a job
# that is not tracked never pays for it.

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "denial-model"
REGISTERED_MODEL = "denial-model"
DIGEST_TAG = "artifact_sha256"  # model version tag: the joblib's sha256, set at registration
CHAMPION = "champion"


def resolve_uri(uri: str | None = None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def _mlflow(uri: str | None):
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # a tracking server that is down fails a job in seconds, not after minutes of retries
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    import mlflow

    exported = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(resolve_uri(uri))
    # MLflow also exports the URI to the environment (for child processes): one job's store
    # must not become the process's default, or a later job given no URI (a notebook's next
    # cell, a test's subprocess) would track to it, even after that server is gone
    if exported is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = exported
    return mlflow


def check_tracking(uri: str | None = None) -> None:
    """Refuse a job up front when its tracking store cannot be reached (one cheap query), so
    a job that must be tracked does no work it could not record."""
    mlflow = _mlflow(uri)
    try:
        mlflow.MlflowClient().search_experiments(max_results=1)
    except Exception as exc:  # any store failure: unreachable server, unwritable file, bad URI
        why = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        raise TrackingError(f"MLflow tracking at {resolve_uri(uri)} cannot be reached ({why})") from None


def _plots(folder: Path, y: np.ndarray, p: np.ndarray, importance: pd.Series) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve, roc_curve

    paths = []

    def save(fig, name):
        path = folder / name
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)

    fpr, tpr, _ = roc_curve(y, p)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr)
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test months")
    save(fig, "roc.png")
    prec, rec, _ = precision_recall_curve(y, p)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(rec, prec)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, test months")
    save(fig, "precision_recall.png")
    obs, pred = calibration_curve(y, p, n_bins=15, strategy="quantile")
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(pred, obs, "o-")
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(
        xlabel="mean predicted probability", ylabel="observed denial rate", title="Calibration, test months"
    )
    save(fig, "calibration.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist([p[~y], p[y]], bins=40, label=["paid", "denied"], stacked=False, density=True, alpha=0.7)
    ax.set(xlabel="denial probability", ylabel="density", title="Scores by outcome, test months")
    ax.legend()
    save(fig, "score_distribution.png")
    top = importance.sort_values().tail(25)
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.barh(top.index.astype(str), top.to_numpy())
    ax.set(xlabel="log-loss increase when permuted", title="Feature importance (permutation, test sample)")
    save(fig, "feature_importance.png")
    return paths


def permutation_importance_table(
    scorer: Scorer, test: pd.DataFrame, sample: int = 5000, seed: int = 0
) -> pd.Series:
    """Permutation importance of each feature on a sample of the test lines
    (`evaluate.permutation_importance`)."""
    from denial_model.evaluate import permutation_importance

    return permutation_importance(scorer, test.sample(min(sample, len(test)), random_state=seed), seed=seed)


def log_training(
    *,
    scorer: Scorer,
    table: pd.DataFrame,
    test: pd.DataFrame,
    params: dict,
    manifest: dict,
    groups: pd.DataFrame | None = None,
    artifact_path: str | Path,
    tracking_uri: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    registered_model: str = REGISTERED_MODEL,
    progress=None,
) -> dict:
    """One MLflow run for a training: params, metrics, plots, the model (registered), and the
    champion decision (the alias moves only if the new model has lower log loss on the same
    test lines than the current champion). `progress(text)` hears each step.

    No claim from the history reaches the store: the model's input example is the toolkit's
    own made-up sample claims, and the params name files and sizes, not values."""
    step = progress or (lambda text: None)
    step("MLflow: opening the run")
    mlflow = _mlflow(tracking_uri)
    from mlflow import MlflowClient

    mlflow.set_experiment(experiment)
    from denial_model.evaluate import generalization_table, group_metrics, metrics_dict

    y = denied_labels(test)
    p = scorer.predict_proba(test)
    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params(
            {k: (json.dumps(v, default=str) if isinstance(v, (dict, list)) else v) for k, v in params.items()}
        )
        mlflow.log_metrics(metrics_dict(table))
        folder = Path(tmp)
        if groups is not None and len(groups):  # reason groups: the model beside the rules
            mlflow.log_metrics(group_metrics(groups))
            groups.to_csv(folder / "reason_groups.csv", index=False)
            mlflow.log_artifact(str(folder / "reason_groups.csv"))
        step("MLflow: permutation importance on the test months")
        importance = permutation_importance_table(scorer, test)
        step("MLflow: plots, tables and the manifest")
        for path in _plots(folder, y, p, importance):
            mlflow.log_artifact(str(path), artifact_path="plots")
        table.to_csv(folder / "metrics_table.csv", index=False)
        importance.rename("importance").to_csv(folder / "feature_importance.csv")
        mlflow.log_artifact(str(folder / "metrics_table.csv"))
        gap = generalization_table(table)
        if len(gap):  # a simulated history: the model beside the oracle per segment
            gap.to_csv(folder / "generalization.csv", index=False)
            mlflow.log_artifact(str(folder / "generalization.csv"))
        mlflow.log_artifact(str(folder / "feature_importance.csv"))
        mlflow.log_dict(manifest, "manifest.json")
        mlflow.log_artifact(str(artifact_path), artifact_path="joblib")
        step("MLflow: logging and registering the model")
        info = _log_pyfunc(mlflow, scorer, manifest, artifact_path, registered_model)
        version = str(info.registered_model_version)
        client = MlflowClient()
        # the digest the registry vouches for: `load_registered` checks the file against it
        client.set_model_version_tag(registered_model, version, DIGEST_TAG, manifest["sha256"])
        step("MLflow: champion or not (both models on the same test lines)")
        decision = _champion(mlflow, client, registered_model, version, test, y, p, tracking_uri)
        mlflow.set_tags({"champion_decision": decision["decision"], "model_version": version})
        if decision.get("champion_log_loss") is not None:
            mlflow.log_metrics(
                {
                    "champion.log_loss_same_test": decision["champion_log_loss"],
                    "candidate.log_loss_same_test": decision["candidate_log_loss"],
                }
            )
        return {
            "run_id": run.info.run_id,
            "experiment": experiment,
            "model_version": version,
            "tracking_uri": resolve_uri(tracking_uri),
            **decision,
        }


def _log_pyfunc(mlflow, scorer: Scorer, manifest: dict, artifact_path: str | Path, name: str):
    """Log the model as a pyfunc (denial_model.serve.pyfunc) over the verified joblib artifact,
    with its signature and a made-up input example, and register it."""
    from mlflow.models import ModelSignature

    from denial_model.serve import pyfunc

    example = _input_example()
    signature = ModelSignature(inputs=pyfunc.input_schema(), outputs=pyfunc.output_schema())
    path = Path(artifact_path)
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=pyfunc.__file__,  # models from code: nothing of ours is pickled
        artifacts={pyfunc.ARTIFACT_KEY: str(path), pyfunc.MANIFEST_KEY: f"{path}.manifest.json"},
        model_config={pyfunc.DIGEST_KEY: manifest["sha256"]},
        signature=signature,
        input_example=example,
        registered_model_name=name,
        pip_requirements=pyfunc_requirements(),
    )


# what the pyfunc's `predict` imports, beside the toolkit itself
_PYFUNC_LIBRARIES = ("mlflow", "numpy", "pandas", "pyarrow", "scikit-learn", "scipy", "cloudpickle")


def pyfunc_requirements() -> list[str]:
    """The registered model's pip requirements, pinned to what is installed: the toolkit and
    the libraries its predict imports. Said outright: MLflow's inference would import the
    model in a subprocess to find them, seconds per training run."""
    from importlib.metadata import PackageNotFoundError, version

    from denial_model import __version__

    pins = [f"denial-model=={__version__}"]
    for lib in _PYFUNC_LIBRARIES:
        try:
            pins.append(f"{lib}=={version(lib)}")
        except PackageNotFoundError:
            continue
    return pins


def _input_example() -> pd.DataFrame:
    """Five made-up claim lines (`samples.clean_claim`), typed as a claim file holds them:
    the signature's example, never a line of the history the model learned from."""
    from denial_model.samples import DRUG_LINES, clean_claim

    lines = pd.concat(
        [clean_claim(drug, claim_id=f"EXAMPLE-{drug}") for drug in DRUG_LINES], ignore_index=True
    )
    example = lines[list(INPUT_COLUMNS)].head(5).copy()
    for c in ("service_date", "submission_date"):
        example[c] = pd.to_datetime(example[c]).dt.strftime("%Y-%m-%d")
    return example


def _champion(
    mlflow,
    client,
    name: str,
    version: str,
    test: pd.DataFrame,
    y: np.ndarray,
    p: np.ndarray,
    tracking_uri: str | None,
) -> dict:
    from mlflow.exceptions import MlflowException
    from sklearn.metrics import log_loss

    cand = float(log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), labels=[False, True]))
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        current = None
    if current is None:
        client.set_registered_model_alias(name, CHAMPION, version)
        return {
            "decision": f"first model: version {version} is champion",
            "champion_moved": True,
            "candidate_log_loss": cand,
            "champion_log_loss": None,
        }
    champ = float(
        log_loss(
            y,
            np.clip(_champion_proba(mlflow, name, test, tracking_uri), 1e-6, 1 - 1e-6),
            labels=[False, True],
        )
    )
    moved = cand < champ
    if moved:
        client.set_registered_model_alias(name, CHAMPION, version)
    text = (
        f"version {version} log loss {cand:.5f} vs champion version {current.version} {champ:.5f} "
        f"on the same test lines: {'alias moved' if moved else 'champion kept'}"
    )
    return {"decision": text, "champion_moved": moved, "candidate_log_loss": cand, "champion_log_loss": champ}


def _champion_proba(mlflow, name: str, test: pd.DataFrame, tracking_uri: str | None) -> np.ndarray:
    """The current champion's P(denied) on the test lines. A champion registered by 0.3 or
    earlier (scikit-learn flavor, no digest tag) is read as that release read it, for this
    comparison only: serving it needs `load_registered`, which refuses it."""
    ref = f"models:/{name}@{CHAMPION}"
    try:
        return load_registered(ref, tracking_uri).predict_proba(test)
    except LegacyRegistration:
        return mlflow.sklearn.load_model(ref).predict_proba(test)[:, 1]


class LegacyRegistration(ArtifactError):
    """A model version registered before the registry vouched for its file's digest."""


def load_registered(ref: str, tracking_uri: str | None = None):
    """A model by MLflow URI (`models:/denial-model@champion`, `models:/denial-model/3`) with its
    thresholds and manifest from the training run."""
    uri = resolve_uri(tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        # MLflow would create an empty store here and then not find the model in it
        raise ArtifactError(
            f"{ref}: no tracking store at {uri} (looked in {Path.cwd()}); "
            "pass --tracking-uri or set MLFLOW_TRACKING_URI"
        )
    mlflow = _mlflow(tracking_uri)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    name_ver = ref.removeprefix("models:/")
    try:
        if "@" in name_ver:
            name, alias = name_ver.split("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
        elif "/" in name_ver:
            name, version = name_ver.split("/", 1)
            mv = client.get_model_version(name, version)
        else:
            raise ArtifactError(f"{ref}: use models:/NAME@ALIAS or models:/NAME/VERSION")
        digest = (mv.tags or {}).get(DIGEST_TAG)
        if not digest:
            raise LegacyRegistration(
                f"{ref} (version {mv.version}) was registered by denial-model 0.3 or earlier, without "
                f"the {DIGEST_TAG} tag that vouches for its file; re-train with `denial-model train` "
                "to register a verifiable version"
            )
        with tempfile.TemporaryDirectory(prefix="denial-model-") as tmp:
            folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=tmp))
            found = sorted(folder.rglob("*.joblib"))
            if len(found) != 1:
                raise ArtifactError(
                    f"{ref}: expected one joblib file in the registered model, found {len(found)}"
                )
            loaded = load_artifact(found[0], sha256=digest)
    except MlflowException as exc:
        raise ArtifactError(f"{ref} at {uri}: {exc.message}") from None
    loaded.trust = f"registry tag {DIGEST_TAG} of {mv.name} version {mv.version}"
    loaded.manifest.setdefault("registered_version", str(mv.version))
    return loaded


def log_scoring(
    summary,
    *,
    params: dict,
    reference: dict | None = None,
    tracking_uri: str | None = None,
    experiment: str = "denial-model-scoring",
    output_path: str | Path | None = None,
    upload_output: bool = False,
) -> dict:
    """One MLflow run per scoring job: counts, score distribution, tiers, rule-hit rates,
    dollars at risk and drift (PSI) of the score and main features against `reference`
    (the training profile stored with the model)."""
    scored = max(summary.scored, 1)
    metrics = {
        "lines_in": summary.rows_in,
        "lines_scored": summary.scored,
        "lines_rejected": summary.rejected,
        "dollars_at_risk": summary.dollars_at_risk,
        "billed_amount": summary.billed,
        **{f"tier_{k}": v for k, v in summary.tiers.items()},
        **{f"score_{k}": v for k, v in summary.quantiles().items()},
        **{f"rule_hit_rate.{c}": n / scored for c, n in summary.category_lines.items()},
    }
    drift = drift_report(reference, summary.features)
    metrics.update({f"psi.{k}": v for k, v in drift.items()})
    drifted = sorted(k for k, v in drift.items() if v > DRIFT_WARNING)
    tags = {"drift_warning": ", ".join(drifted) if drifted else "none"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        batch = {"drift_psi": drift, "tiers": summary.tiers}
        (folder / "batch_summary.json").write_text(json.dumps(batch, indent=2))
        if summary.scored >= MIN_DRIFT_LINES:  # a histogram of a handful of lines says nothing
            _score_histogram(summary, folder / "plots")
        if summary.scored:  # the supervisor's page: open report.html in the run's artifacts
            from denial_model.batch_report import render_report

            title = f"Scoring run: {params.get('input', '')}"
            (folder / "report.html").write_text(render_report(summary, drift, reference, title=title))
        upload = Path(output_path) if upload_output and output_path is not None else None  # PHI: on request
        run_id = _log_run(tracking_uri, experiment, params, metrics, tags, folder, upload)
    return {"run_id": run_id, "drift": drift, "drift_warning": drifted}


def _log_run(
    uri: str | None,
    experiment: str,
    params: dict,
    metrics: dict,
    tags: dict,
    folder: Path,
    upload: Path | None = None,
) -> str:
    """One finished run in as few store calls as MLflow allows: the run, one batch of params,
    metrics and tags, one upload of the artifact folder (and `upload` under `scored/`), the end."""
    mlflow = _mlflow(uri)
    from mlflow.entities import Metric, Param, RunTag

    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(experiment)
    run = client.create_run(experiment_id)
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    try:
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )
        client.log_artifacts(run_id, str(folder))
        if upload is not None:
            client.log_artifact(run_id, str(upload), artifact_path="scored")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id)
    return run_id


def _score_histogram(summary, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir()
    counts, bins = summary.histogram()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(bins[:-1], counts, width=np.diff(bins), align="edge")
    ax.set(xlabel="denial probability", ylabel="lines", title="Scores of this batch")
    fig.tight_layout()
    fig.savefig(folder / "score_histogram.png", dpi=100)
    plt.close(fig)
