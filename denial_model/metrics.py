"""Measuring against the best possible model: metrics of `p_true` (the oracle) and of
simple baselines on the same lines. The model evaluation builds on these."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from denial_model.rules.engine import evaluate
from denial_model.rules.pack import RulePack, load_pack
from denial_model.table import ClaimFrame, validate


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


def time_split(df: pd.DataFrame, test_months: int = 6) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(earlier, later): the later part holds the last `test_months` months of service dates."""
    svc = pd.to_datetime(df["service_date"])
    cut = svc.max().to_period("M").to_timestamp() - pd.DateOffset(months=test_months - 1)
    later = (svc >= cut).to_numpy()
    return df.loc[~later].reset_index(drop=True), df.loc[later].reset_index(drop=True)


def rules_only_probability(
    train: pd.DataFrame, test: pd.DataFrame, pack: RulePack | None = None
) -> np.ndarray:
    """Rules-only baseline: a line's probability is the earlier denial rate of lines with the
    same answer to 'did any deny-severity rule fire?'."""
    pack = pack or load_pack()
    hit_tr = evaluate(ClaimFrame(validate(train).lines), pack).deny_hit()
    hit_te = evaluate(ClaimFrame(validate(test).lines), pack).deny_hit()
    y = train["denied"].to_numpy(dtype=bool)
    rate_hit = y[hit_tr].mean() if hit_tr.any() else y.mean()
    rate_clean = y[~hit_tr].mean() if (~hit_tr).any() else y.mean()
    return np.where(hit_te, rate_hit, rate_clean)


def oracle_and_rules_report(
    history: pd.DataFrame, test_months: int = 6, pack: RulePack | None = None
) -> dict:
    """Oracle (`p_true`) and rules-only metrics on the later `test_months` of a history."""
    train, test = time_split(history, test_months)
    y = test["denied"].to_numpy(dtype=bool)
    oracle = score_metrics(y, test["p_true"].to_numpy())
    rules = score_metrics(y, rules_only_probability(train, test, pack))
    return {
        "test_lines": len(test),
        "test_denial_rate": float(y.mean()),
        "oracle": oracle,
        "rules_only": rules,
    }
