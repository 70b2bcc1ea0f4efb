"""Train the denial model: one scikit-learn Pipeline (features -> calibrated gradient boosting).

Time is respected: the classifier learns on the earlier months, the isotonic calibration on
the next `calib_months`, and the last `test_months` are kept for evaluation. Risk-tier cut
points are chosen on the calibration slice and stored with the model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline

from denial_model.features import ClaimFeatures


@dataclass
class TrainConfig:
    """Model and split settings, logged as parameters of every training run."""

    test_months: int = 4
    calib_months: int = 2
    learning_rate: float = 0.1
    max_iter: int = 400
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 50
    l2_regularization: float = 1.0
    early_stopping: bool = True
    random_state: int = 0
    rework_cost: float = 15.0  # cost of reviewing and fixing one flagged line before it goes out
    recovery_rate: float = 0.7  # share of a denied line's charge that fixing it first saves

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Thresholds:
    """Risk tiers: medium from `medium`, high from `high` (probabilities)."""

    medium: float
    high: float
    rule: str = (
        "medium: the cut that maximizes sum(recovery_rate * billed_amount * denied - rework_cost) "
        "over flagged calibration lines (reviewing pays off); high: the lowest cut above which "
        "at least half of the calibration lines were denied (denial more likely than not)"
    )

    names = ("low", "medium", "high")

    def tier_index(self, p: np.ndarray) -> np.ndarray:
        """0 low, 1 medium, 2 high (an index into `names`)."""
        return np.where(p >= self.high, 2, np.where(p >= self.medium, 1, 0)).astype(np.int8)

    def tier(self, p: np.ndarray) -> np.ndarray:
        return np.array(self.names, dtype=object)[self.tier_index(p)]


@dataclass
class Splits:
    train: pd.DataFrame
    calib: pd.DataFrame
    test: pd.DataFrame
    bounds: dict = field(default_factory=dict)


def split_periods(history: pd.DataFrame, test_months: int, calib_months: int) -> Splits:
    """Train / calibration / test by month of service date, in that order in time."""
    svc = pd.to_datetime(history["service_date"])
    last = svc.max().to_period("M").to_timestamp()
    test_from = last - pd.DateOffset(months=test_months - 1)
    calib_from = test_from - pd.DateOffset(months=calib_months)
    tr = (svc < calib_from).to_numpy()
    ca = ((svc >= calib_from) & (svc < test_from)).to_numpy()
    te = (svc >= test_from).to_numpy()
    bounds = {
        "train_to": str((calib_from - pd.Timedelta(days=1)).date()),
        "calib_from": str(calib_from.date()),
        "test_from": str(test_from.date()),
        "test_to": str(svc.max().date()),
    }
    pick = lambda m: history.loc[m].reset_index(drop=True)  # noqa: E731
    return Splits(pick(tr), pick(ca), pick(te), bounds)


def build_pipeline(cfg: TrainConfig) -> Pipeline:
    return Pipeline(
        [
            ("features", ClaimFeatures()),
            (
                "classifier",
                HistGradientBoostingClassifier(
                    learning_rate=cfg.learning_rate,
                    max_iter=cfg.max_iter,
                    max_leaf_nodes=cfg.max_leaf_nodes,
                    min_samples_leaf=cfg.min_samples_leaf,
                    l2_regularization=cfg.l2_regularization,
                    categorical_features="from_dtype",
                    early_stopping=cfg.early_stopping,
                    random_state=cfg.random_state,
                ),
            ),
        ]
    )


def choose_thresholds(y: np.ndarray, p: np.ndarray, amount: np.ndarray, cfg: TrainConfig) -> Thresholds:
    y = np.asarray(y, dtype=bool)
    order = np.argsort(-p, kind="stable")
    gain = np.cumsum(cfg.recovery_rate * amount[order] * y[order] - cfg.rework_cost)
    medium = float(p[order][int(np.argmax(gain))])
    precision = np.cumsum(y[order]) / np.arange(1, len(y) + 1)
    above = np.flatnonzero(precision >= 0.5)
    high = float(p[order][above.max()]) if len(above) else 1.0
    return Thresholds(medium=min(medium, high), high=high)


@dataclass
class TrainResult:
    model: Pipeline
    thresholds: Thresholds
    splits: Splits
    config: TrainConfig


def train_model(history: pd.DataFrame, cfg: TrainConfig | None = None) -> TrainResult:
    """Fit features and classifier on the train slice, calibrate on the next slice."""
    cfg = cfg or TrainConfig()
    splits = split_periods(history, cfg.test_months, cfg.calib_months)
    if min(len(splits.train), len(splits.calib), len(splits.test)) == 0:
        raise ValueError(
            f"history too short for the split {splits.bounds}: need train, calibration and test months"
        )
    pipe = build_pipeline(cfg)
    pipe.fit(splits.train, splits.train["denied"].to_numpy(dtype=bool))
    feats = pipe.named_steps["features"]
    calibrated = CalibratedClassifierCV(FrozenEstimator(pipe.named_steps["classifier"]), method="isotonic")
    calibrated.fit(feats.transform(splits.calib), splits.calib["denied"].to_numpy(dtype=bool))
    model = Pipeline([("features", feats), ("classifier", calibrated)])
    p_cal = model.predict_proba(splits.calib)[:, 1]
    thresholds = choose_thresholds(
        splits.calib["denied"].to_numpy(dtype=bool),
        p_cal,
        splits.calib["billed_amount"].to_numpy(dtype=float),
        cfg,
    )
    return TrainResult(model=model, thresholds=thresholds, splits=splits, config=cfg)


def run_training(
    history: pd.DataFrame,
    output: str,
    cfg: TrainConfig | None = None,
    *,
    track: bool = True,
    tracking_uri: str | None = None,
    experiment: str = "denial-model",
    data_params: dict | None = None,
    progress=None,
) -> dict:
    """The training job: fit, evaluate against baselines, save the artifact, track in MLflow.

    Returns the comparison table (as records), the manifest and the tracking result.
    """
    from denial_model.artifact import data_fingerprint, save_artifact
    from denial_model.evaluate import comparison_table
    from denial_model.tracking import metrics_dict

    def step(text: str) -> None:
        if progress is not None:
            progress(text)

    cfg = cfg or TrainConfig()
    step("fitting features and classifier, calibrating")
    result = train_model(history, cfg)
    step("evaluating on the test months beside the baselines")
    table = comparison_table(result.model, result.splits.train, result.splits.test, result.thresholds.high)
    fingerprint = data_fingerprint(history)
    params = {
        **{f"train.{k}": v for k, v in cfg.to_dict().items()},
        **{f"split.{k}": v for k, v in result.splits.bounds.items()},
        "data.lines": len(history),
        "data.train_lines": len(result.splits.train),
        "data.calib_lines": len(result.splits.calib),
        "data.test_lines": len(result.splits.test),
        "data.fingerprint": fingerprint,
        "rule_pack.sha256": result.model.named_steps["features"].rules_.pack_sha256_,
        "threshold.medium": result.thresholds.medium,
        "threshold.high": result.thresholds.high,
        **{f"data.{k}": v for k, v in (data_params or {}).items()},
    }
    step("saving the artifact")
    from denial_model.score import reference_profile

    feats = result.model.named_steps["features"]
    x_train = feats.transform(result.splits.train)
    drift_reference = reference_profile(
        x_train, result.model.named_steps["classifier"].predict_proba(x_train)[:, 1]
    )
    manifest = save_artifact(
        output,
        result.model,
        result.thresholds,
        metrics_dict(table),
        fingerprint,
        extra={
            "split": result.splits.bounds,
            "train_config": cfg.to_dict(),
            "drift_reference": drift_reference,
        },
    )
    tracked = None
    if track:
        from denial_model.tracking import log_training

        step("tracking the run in MLflow and registering the model")
        tracked = log_training(
            model=result.model,
            thresholds=result.thresholds,
            table=table,
            test=result.splits.test,
            params=params,
            manifest=manifest,
            artifact_path=output,
            tracking_uri=tracking_uri,
            experiment=experiment,
        )
    return {"table": table, "manifest": manifest, "tracking": tracked, "result": result}
