"""The denial model: one scikit-learn Pipeline (claim features -> calibrated gradient boosting).

Time is respected: the classifier learns on the earlier months, the calibration on the next
`calib_months`, and the last `test_months` are kept for evaluation
(`metrics.time_split`). The features' history holds the outcomes of both slices before the
test, each line reading only those adjudicated before its own submission. Risk-tier cut
points are chosen on the calibration slice and stored with the model. This module is model
code only; the training *job* (evaluate, save, track) is `jobs.run_training`.

Calibration is isotonic or sigmoid (Platt), chosen by default on the calibration months
themselves (`choose_calibration`): isotonic bends to any shape but, fitted on a short slice,
its steps cost log loss and tie scores that the booster ranked apart; the sigmoid keeps the
booster's order and needs few lines. Each is fitted on four fifths of the slice's claims and
scored on the rest, and the lower out-of-fold log loss wins.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import log_loss
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline

from denial_model.errors import ClaimTableError, ConfigError
from denial_model.features import ClaimFeatures
from denial_model.features.claim import GROUPS
from denial_model.groups import group_labels
from denial_model.metrics import Splits, time_split
from denial_model.scorer import CLASSIFIER, FEATURES
from denial_model.table import denied_labels
from denial_model.thresholds import Thresholds, choose_thresholds

# `Thresholds` is re-exported: artifacts saved before 0.2 pickled it as `denial_model.train.Thresholds`.
__all__ = [
    "Thresholds",
    "TrainConfig",
    "TrainResult",
    "build_classifier",
    "build_features",
    "check_calibration",
    "choose_calibration",
    "fit_reason_groups",
    "train_model",
]


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
    feature_groups: tuple[str, ...] = GROUPS  # ClaimFeatures' groups (fewer: an ablation)
    # the recent rates' half-life (0.8: 60 days; 120 before): payers that change what they
    # enforce show within a couple of months (generalization.py, policy_changes and all)
    half_life_days: float = 60.0
    reason_groups: bool = True  # also learn P(reason group | denied) from the CARCs (groups.py)
    group_max_iter: int = 150
    # "isotonic", "sigmoid", or "auto": the one with the lower out-of-fold log loss on the
    # calibration months (choose_calibration)
    calibration: str = "auto"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def build_features(cfg: TrainConfig) -> ClaimFeatures:
    return ClaimFeatures(groups=tuple(cfg.feature_groups), half_life_days=cfg.half_life_days)


def build_classifier(cfg: TrainConfig) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(
        learning_rate=cfg.learning_rate,
        max_iter=cfg.max_iter,
        max_leaf_nodes=cfg.max_leaf_nodes,
        min_samples_leaf=cfg.min_samples_leaf,
        l2_regularization=cfg.l2_regularization,
        categorical_features="from_dtype",
        early_stopping=cfg.early_stopping,
        random_state=cfg.random_state,
    )


@dataclass
class TrainResult:
    model: Pipeline
    thresholds: Thresholds
    splits: Splits
    config: TrainConfig
    groups: object | None = None  # the calibrated reason-group classifier (fit_reason_groups)
    calibration: dict = dataclasses.field(default_factory=dict)  # choose_calibration's answer


# fewer denied lines with a known group than this in the training or calibration months,
# and no group model is fitted (the queue then routes by the rules' groups)
MIN_GROUP_LINES = 200


def fit_reason_groups(features: ClaimFeatures, splits: Splits, cfg: TrainConfig):
    """P(reason group | denied): a multiclass booster on the denied training lines (their
    first CARC's group, `groups.group_labels`), calibrated (sigmoid per group, normalized)
    on the denied calibration lines. None when there are too few of either."""
    y_train, y_calib = group_labels(splits.train), group_labels(splits.calib)
    train, calib = splits.train[y_train >= 0], splits.calib[y_calib >= 0]
    if min(len(train), len(calib)) < MIN_GROUP_LINES or len(np.unique(y_train[y_train >= 0])) < 2:
        return None
    booster = HistGradientBoostingClassifier(
        learning_rate=cfg.learning_rate,
        max_iter=cfg.group_max_iter,
        max_leaf_nodes=15,
        min_samples_leaf=20,
        l2_regularization=cfg.l2_regularization,
        categorical_features="from_dtype",
        early_stopping=True,
        random_state=cfg.random_state,
    ).fit(features.transform(train), y_train[y_train >= 0])
    seen = np.isin(y_calib[y_calib >= 0], booster.classes_)
    calibrated = CalibratedClassifierCV(FrozenEstimator(booster), method="sigmoid")
    return calibrated.fit(features.transform(calib[seen]), y_calib[y_calib >= 0][seen])


def train_model(history: pd.DataFrame, cfg: TrainConfig | None = None) -> TrainResult:
    """Fit features and classifier on the train slice, calibrate on the next slice."""
    cfg = cfg or TrainConfig()
    splits = time_split(history, cfg.test_months, cfg.calib_months)
    if min(len(splits.train), len(splits.calib), len(splits.test)) == 0:
        raise ClaimTableError(
            f"history too short for the split {splits.bounds}: need train, calibration and test months"
        )
    # the history the features read is every outcome before the test months: each line still
    # sees only outcomes adjudicated before its own submission, so the calibration lines (and,
    # scored later, new lines) read the freshest outcomes there are, with no leak
    features = build_features(cfg).fit(splits.earlier)
    booster = build_classifier(cfg).fit(features.transform(splits.train), denied_labels(splits.train))
    x_calib = features.transform(splits.calib)
    calibration = choose_calibration(booster, x_calib, splits.calib, cfg.calibration)
    calibrated = CalibratedClassifierCV(FrozenEstimator(booster), method=calibration["method"])
    calibrated.fit(x_calib, denied_labels(splits.calib))
    model = Pipeline([(FEATURES, features), (CLASSIFIER, calibrated)])
    thresholds = choose_thresholds(
        denied_labels(splits.calib),
        calibrated.predict_proba(x_calib)[:, 1],
        splits.calib["billed_amount"].to_numpy(dtype=float),
        recovery_rate=cfg.recovery_rate,
        rework_cost=cfg.rework_cost,
    )
    groups = fit_reason_groups(features, splits, cfg) if cfg.reason_groups else None
    return TrainResult(
        model=model, thresholds=thresholds, splits=splits, config=cfg, groups=groups, calibration=calibration
    )


CALIBRATIONS = ("isotonic", "sigmoid")


def check_calibration(method: str) -> str:
    """`method` if it names a calibration ("auto" or one of CALIBRATIONS), else a ConfigError quoting it."""
    if method != "auto" and method not in CALIBRATIONS:
        raise ConfigError(f"calibration {method!r}: expected one of {['auto', *CALIBRATIONS]}")
    return method


class _RawScores(ClassifierMixin, BaseEstimator):
    """A classifier whose decision function is its input's one column: the booster's scores,
    computed once, for calibrators fitted again and again on parts of them."""

    def fit(self, X, y):
        self.scores_ = np.asarray(X, dtype=float)
        self.classes_ = np.unique(y)
        return self

    def decision_function(self, X) -> np.ndarray:
        return np.asarray(X, dtype=float)[:, 0]

    def predict(self, X) -> np.ndarray:
        return self.classes_[(self.decision_function(X) > 0).astype(int)]


CALIBRATION_FOLDS = 5


def choose_calibration(booster, x_calib: pd.DataFrame, calib: pd.DataFrame, method: str = "auto") -> dict:
    """{"method": the calibration to fit, and for "auto" the out-of-fold log loss of each}.

    "auto": each method is fitted on the lines of four fifths of the calibration slice's
    claims and scored on the fifth left out (a claim's lines stay together), five times; the
    lower summed log loss wins, isotonic on a tie."""
    if check_calibration(method) in CALIBRATIONS:
        return {"method": method}
    y = denied_labels(calib)
    claims = calib["claim_id"].astype(str).to_numpy()
    folds = min(CALIBRATION_FOLDS, len(np.unique(claims)))
    # the booster's scores once: the calibrators see nothing else
    raw = _RawScores().fit(booster.decision_function(x_calib).reshape(-1, 1), y)
    out: dict = {}
    for m in CALIBRATIONS:
        p = np.zeros(len(y))
        for fit, held in GroupKFold(n_splits=folds).split(raw.scores_, y, claims):
            if y[fit].all() or not y[fit].any():
                p[held] = y[fit].mean()
                continue
            cc = CalibratedClassifierCV(FrozenEstimator(raw), method=m).fit(raw.scores_[fit], y[fit])
            p[held] = cc.predict_proba(raw.scores_[held])[:, 1]
        out[f"{m}_log_loss"] = float(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[False, True]))
    out["method"] = min(CALIBRATIONS, key=lambda m: (out[f"{m}_log_loss"], CALIBRATIONS.index(m)))
    return out
