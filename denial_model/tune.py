"""Hyperparameters chosen on time, never on the test months.

The history is cut as training cuts it (`metrics.time_split`); the calibration and test months
are left untouched. The training slice is cut once more: the booster of each candidate learns
on its earlier months and is early-stopped and judged on its last `valid_months` months, the
way it will be used (on months after the ones it learned from). The candidate with the lowest
log loss on those months wins; `denial-model train --params` trains with it.

Cost: one feature fit, then one booster per candidate (`SEARCH_SPACE` has 12), each about as
long as the booster step of a training run on the same history.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

from denial_model.errors import ClaimTableError, ConfigError
from denial_model.metrics import time_split
from denial_model.table import denied_labels
from denial_model.train import TrainConfig, build_classifier, build_features

__all__ = ["SEARCH_SPACE", "TUNED", "TuneResult", "load_params", "tune"]

SEARCH_SPACE: dict[str, tuple] = {
    "max_leaf_nodes": (15, 31, 63),
    "min_samples_leaf": (20, 100),
    "l2_regularization": (0.0, 1.0),
}
TUNED = ("learning_rate", "max_iter", "max_leaf_nodes", "min_samples_leaf", "l2_regularization")


@dataclass
class TuneResult:
    """Every candidate with its validation figures (best first), the chosen settings and the months."""

    candidates: pd.DataFrame
    best: TrainConfig
    bounds: dict

    def params(self) -> dict:
        """The chosen settings, as `denial-model train --params` reads them."""
        return {k: getattr(self.best, k) for k in TUNED}


def _grid(space: dict[str, tuple]) -> list[dict]:
    names = list(space)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(space[n] for n in names))]


def tune(
    history: pd.DataFrame,
    cfg: TrainConfig | None = None,
    valid_months: int = 2,
    space: dict[str, tuple] | None = None,
) -> TuneResult:
    """Search `space` (default SEARCH_SPACE) on the last `valid_months` of the training slice."""
    cfg = cfg or TrainConfig()
    space = SEARCH_SPACE if space is None else space
    unknown = set(space) - set(TUNED)
    if unknown:
        raise ConfigError(f"cannot tune {sorted(unknown)}: tunable settings are {list(TUNED)}")
    outer = time_split(history, cfg.test_months, cfg.calib_months)
    inner = time_split(outer.train, valid_months, 0)
    if min(len(inner.train), len(inner.test)) == 0:
        raise ClaimTableError(
            f"history too short to tune: the training slice {outer.bounds} leaves no "
            f"{valid_months} validation month(s) after a fitting period"
        )
    features = build_features(cfg).fit(inner.train)
    x_fit, y_fit = features.transform(inner.train), denied_labels(inner.train)
    x_val, y_val = features.transform(inner.test), denied_labels(inner.test)
    rows = []
    for params in _grid(space):
        candidate = dataclasses.replace(cfg, **params)
        t0 = time.perf_counter()
        booster = build_classifier(candidate).fit(x_fit, y_fit, X_val=x_val, y_val=y_val)
        p = booster.predict_proba(x_val)[:, 1]
        rows.append(
            {
                **params,
                "valid_log_loss": float(log_loss(y_val, p, labels=[False, True])),
                "valid_auroc": float(roc_auc_score(y_val, p))
                if 0 < y_val.sum() < len(y_val)
                else float("nan"),
                "iterations": int(booster.n_iter_),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    table = pd.DataFrame(rows).sort_values("valid_log_loss", kind="stable").reset_index(drop=True)
    best = dataclasses.replace(cfg, **{k: table.at[0, k] for k in space})
    bounds = {
        "fit_to": str((pd.Timestamp(inner.bounds["test_from"]) - pd.Timedelta(days=1)).date()),
        "valid_from": inner.bounds["test_from"],
        "valid_to": inner.bounds["test_to"],
        "untouched_from": outer.bounds["calib_from"],
    }
    return TuneResult(candidates=table, best=_native(best), bounds=bounds)


def _native(cfg: TrainConfig) -> TrainConfig:
    """Settings as plain Python numbers (a pandas cell is a NumPy scalar)."""
    return dataclasses.replace(
        cfg, **{k: getattr(cfg, k).item() for k in TUNED if hasattr(getattr(cfg, k), "item")}
    )


def load_params(path: str | Path, cfg: TrainConfig | None = None) -> TrainConfig:
    """TrainConfig with the settings of a `denial-model tune --output` file."""
    raw = json.loads(Path(path).read_text())
    params = raw.get("params", raw)
    unknown = set(params) - set(TUNED)
    if unknown:
        raise ConfigError(f"{path}: unknown training setting(s) {sorted(unknown)}; known: {list(TUNED)}")
    return dataclasses.replace(cfg or TrainConfig(), **params)
