"""Temporal evaluation: the model beside the oracle and simple baselines on the same lines.

Metrics, overall and per payer type: AUROC, average precision, log loss, Brier, expected
calibration error (equal-count bins), recall of denials in the top 10% of scores, precision
at the model's high-risk threshold, and the share of denied dollars the flagged lines hold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from denial_model.features import CATEGORICAL
from denial_model.metrics import rules_only_probability, score_metrics
from denial_model.scorer import Scorer
from denial_model.table import denied_labels

__all__ = ["all_metrics", "comparison_table", "expected_calibration_error", "metrics_dict"]


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 15) -> float:
    """Mean |observed rate - mean score| over equal-count bins, weighted by bin size."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    bins = np.array_split(order, n_bins)
    return float(sum(len(b) * abs(y[b].mean() - p[b].mean()) for b in bins if len(b)) / len(p))


def all_metrics(y: np.ndarray, p: np.ndarray, amount: np.ndarray, threshold: float) -> dict[str, float]:
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=float)
    out = (
        score_metrics(y, p)
        if 0 < y.sum() < len(y)
        else {k: float("nan") for k in ("auroc", "average_precision", "log_loss", "brier")}
    )
    out["ece"] = expected_calibration_error(y, p)
    top = p >= np.quantile(p, 0.9)
    out["recall_top10"] = float(y[top].sum() / max(y.sum(), 1))
    flag = p >= threshold
    out["precision_at_threshold"] = float(y[flag].mean()) if flag.any() else float("nan")
    out["flagged_share"] = float(flag.mean())
    denied_dollars = amount[y].sum()
    out["dollars_at_risk_caught"] = (
        float(amount[y & flag].sum() / denied_dollars) if denied_dollars else float("nan")
    )
    return out


def logistic_baseline(features_train: pd.DataFrame, y_train: np.ndarray) -> Pipeline:
    """Logistic regression on the same features (one-hot categoricals, scaled numerics)."""
    cats = [c for c in CATEGORICAL if c in features_train.columns]
    nums = [c for c in features_train.columns if c not in cats]
    prep = ColumnTransformer(
        [
            ("cat", OneHotEncoder(handle_unknown="ignore", min_frequency=20), cats),
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), nums),
        ]
    )
    model = make_pipeline(prep, LogisticRegression(max_iter=300, C=1.0))
    return model.fit(_as_lr_input(features_train), y_train)


def _as_lr_input(features: pd.DataFrame) -> pd.DataFrame:
    X = features.copy()
    for c in CATEGORICAL:
        if c in X.columns:
            X[c] = X[c].astype(object).where(X[c].notna(), "missing")
    return X


def comparison_table(
    scorer: Scorer,
    earlier: pd.DataFrame,
    test: pd.DataFrame,
    include_logistic: bool = True,
) -> pd.DataFrame:
    """Rows: (model, payer_type) with every metric; payer_type 'all' for the whole test slice.

    The baselines learn on `earlier` (all months before the test: `Splits.earlier`), so
    training and `evaluate` report the same figures for the same model and data."""
    train = earlier
    threshold = scorer.thresholds.high
    y = denied_labels(test)
    y_train = denied_labels(train)
    amount = test["billed_amount"].to_numpy(dtype=float)
    scores: dict[str, np.ndarray] = {"model": scorer.predict_proba(test)}
    scores["rules_only"] = rules_only_probability(train, test)
    payer_rate = pd.Series(y_train).groupby(train["payer_id"].astype(str).to_numpy()).mean()
    scores["payer_base_rate"] = (
        test["payer_id"].astype(str).map(payer_rate).fillna(y_train.mean()).to_numpy(dtype=float)
    )
    if include_logistic:
        lr = logistic_baseline(scorer.transform(train), y_train)
        scores["logistic_regression"] = lr.predict_proba(_as_lr_input(scorer.transform(test)))[:, 1]
    if "p_true" in test.columns:
        scores["oracle"] = test["p_true"].to_numpy(dtype=float)
    rows = []
    groups = [("all", np.ones(len(test), dtype=bool))] + [
        (t, (test["payer_type"] == t).to_numpy()) for t in sorted(test["payer_type"].unique())
    ]
    for name, p in scores.items():
        for g, m in groups:
            rows.append(
                {
                    "model": name,
                    "payer_type": g,
                    "lines": int(m.sum()),
                    **all_metrics(y[m], p[m], amount[m], threshold),
                }
            )
    return pd.DataFrame(rows)


def metrics_dict(table: pd.DataFrame) -> dict[str, float]:
    """Flatten the comparison table: `<metric>` for the model overall, `<metric>_<payer_type>`,
    and `<baseline>.<metric>` / `<baseline>.<metric>_<payer_type>` for the others."""
    out = {}
    metric_cols = [c for c in table.columns if c not in ("model", "payer_type", "lines")]
    for row in table.to_dict("records"):
        prefix = "" if row["model"] == "model" else f"{row['model']}."
        suffix = "" if row["payer_type"] == "all" else f"_{row['payer_type']}"
        for m in metric_cols:
            v = row[m]
            if v == v:  # skip NaN
                out[f"{prefix}{m}{suffix}"] = float(v)
    return out
