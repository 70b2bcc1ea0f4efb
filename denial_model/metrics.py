"""Measuring against the best possible model: metrics of `p_true` (the oracle) and of
simple baselines on the same lines. The model evaluation builds on these."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from denial_model.rules.engine import evaluate
from denial_model.rules.pack import RulePack, load_pack
from denial_model.table import ClaimFrame, denied_labels, labeled_lines, validate


def score_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUROC, average precision, log loss and Brier score of probabilities `p` for labels `y`."""
    y = np.asarray(y, dtype=bool)
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return {
        "auroc": float(roc_auc_score(y, p)),
        "average_precision": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, p, labels=[False, True])),
        "brier": float(brier_score_loss(y, p)),
    }


@dataclass
class Splits:
    """A history cut by month of service date: train, then calibration, then test."""

    train: pd.DataFrame
    calib: pd.DataFrame
    test: pd.DataFrame
    bounds: dict = field(default_factory=dict)

    @property
    def earlier(self) -> pd.DataFrame:
        """Everything before the test months (what baselines without a calibration step learn on)."""
        return pd.concat([self.train, self.calib], ignore_index=True)


def time_split(history: pd.DataFrame, test_months: int = 4, calib_months: int = 2) -> Splits:
    """The one split of the toolkit: the last `test_months` months of service dates are the
    test, the `calib_months` before them the calibration slice, the rest the training slice.
    Training, evaluation and the oracle report all cut a history with it. Lines with no
    outcome yet (`denied` empty: an ingested claim not remitted) are pending: left out."""
    history = labeled_lines(history)
    svc = pd.to_datetime(history["service_date"])
    last = svc.max().to_period("M").to_timestamp()
    test_from = last - pd.DateOffset(months=test_months - 1)
    calib_from = test_from - pd.DateOffset(months=calib_months)
    masks = (
        (svc < calib_from).to_numpy(),
        ((svc >= calib_from) & (svc < test_from)).to_numpy(),
        (svc >= test_from).to_numpy(),
    )
    bounds = {
        "train_to": str((calib_from - pd.Timedelta(days=1)).date()),
        "calib_from": str(calib_from.date()),
        "test_from": str(test_from.date()),
        "test_to": str(svc.max().date()),
    }
    train, calib, test = (history.loc[m].reset_index(drop=True) for m in masks)
    return Splits(train, calib, test, bounds)


def rules_only_probability(
    train: pd.DataFrame, test: pd.DataFrame, pack: RulePack | None = None
) -> np.ndarray:
    """Rules-only baseline: a line's probability is the earlier denial rate of lines with the
    same answer to 'did any deny-severity rule fire?'."""
    pack = pack or load_pack()
    hit_tr = evaluate(ClaimFrame(validate(train).lines), pack).deny_hit()
    hit_te = evaluate(ClaimFrame(validate(test).lines), pack).deny_hit()
    y = denied_labels(train)
    rate_hit = y[hit_tr].mean() if hit_tr.any() else y.mean()
    rate_clean = y[~hit_tr].mean() if (~hit_tr).any() else y.mean()
    return np.where(hit_te, rate_hit, rate_clean)


def oracle_and_rules_report(
    history: pd.DataFrame, test_months: int = 4, calib_months: int = 2, pack: RulePack | None = None
) -> dict:
    """Oracle (`p_true`) and rules-only metrics on the test months of a history, split as
    training splits it (the rules-only baseline learns on all earlier months)."""
    sp = time_split(history, test_months, calib_months)
    train, test = sp.earlier, sp.test
    y = denied_labels(test)
    oracle = score_metrics(y, test["p_true"].to_numpy())
    rules = score_metrics(y, rules_only_probability(train, test, pack))
    return {
        "test_lines": len(test),
        "test_denial_rate": float(y.mean()),
        "oracle": oracle,
        "rules_only": rules,
    }
