"""Temporal evaluation: the model beside the oracle and simple baselines on the same lines.

Every figure is given for the whole test slice and for segments where a model that only
re-learns the rules falls behind (`segments`): each payer type, each kind of line (drug,
administration, visit), and the months since a known change of a payer's behaviour. On a
simulated history the generalization table puts the model beside the oracle per segment.

Metrics: AUROC, average precision, log loss, Brier, expected
calibration error (equal-count bins), recall of denials in the top 10% of scores, precision
at the model's high-risk threshold, and the share of denied dollars the flagged lines hold.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from denial_model.features.claim import as_claim_frame
from denial_model.features.context import LINE_KINDS, line_kinds
from denial_model.metrics import rules_only_probability, score_metrics
from denial_model.scorer import Scorer
from denial_model.table import denied_labels

__all__ = [
    "all_metrics",
    "comparison_table",
    "expected_calibration_error",
    "generalization_table",
    "group_metrics",
    "group_table",
    "metrics_dict",
    "permutation_importance",
    "segments",
]


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
    cats = _categorical(features_train)
    nums = [c for c in features_train.columns if c not in cats]
    prep = ColumnTransformer(
        [
            ("cat", OneHotEncoder(handle_unknown="ignore", min_frequency=20), cats),
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), nums),
        ]
    )
    model = make_pipeline(prep, LogisticRegression(max_iter=300, C=1.0))
    return model.fit(_as_lr_input(features_train), y_train)


def _categorical(features: pd.DataFrame) -> list[str]:
    return [c for c in features.columns if isinstance(features[c].dtype, pd.CategoricalDtype)]


def _as_lr_input(features: pd.DataFrame) -> pd.DataFrame:
    X = features.copy()
    for c in _categorical(features):
        X[c] = X[c].astype(object).where(X[c].notna(), "missing")
    return X


def segments(
    scorer: Scorer, test: pd.DataFrame, since: str | date | None = None
) -> list[tuple[str, np.ndarray]]:
    """The slices of the test months the table reports: all lines; each payer type; each kind
    of line (`drug_lines`, `administration_lines`, `visit_lines`, `other_lines`); and, given a
    date a payer's behaviour changed, the lines served on or after it (`since_<date>`)."""
    out = [("all", np.ones(len(test), dtype=bool))]
    out += [(t, (test["payer_type"] == t).to_numpy()) for t in sorted(test["payer_type"].unique())]
    frame = as_claim_frame(test)  # validated: the rules and the kinds read the normalized form
    kinds = line_kinds(frame, scorer.rules.evaluate(frame).drug_line)
    out += [(f"{k}_lines", kinds == i) for i, k in enumerate(LINE_KINDS) if (kinds == i).any()]
    if since is not None:
        day = pd.Timestamp(since)
        out.append((f"since_{day.date()}", (pd.to_datetime(test["service_date"]) >= day).to_numpy()))
    return out


def comparison_table(
    scorer: Scorer,
    earlier: pd.DataFrame,
    test: pd.DataFrame,
    include_logistic: bool = True,
    since: str | date | None = None,
) -> pd.DataFrame:
    """Rows: (model, segment) with every metric, for the segments of `segments` ('all' for
    the whole test slice, then payer types, line kinds, and the months since `since`).

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
    groups = segments(scorer, test, since)
    for name, p in scores.items():
        for g, m in groups:
            rows.append(
                {
                    "model": name,
                    "segment": g,
                    "lines": int(m.sum()),
                    **all_metrics(y[m], p[m], amount[m], threshold),
                }
            )
    return pd.DataFrame(rows)


def generalization_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per segment, the model beside the oracle: AUROC and log loss of each, the AUROC gap
    and the log loss excess (model / oracle - 1). Empty without an oracle (real history)."""
    metrics = table.set_index(["model", "segment"])[["auroc", "log_loss"]]
    if "oracle" not in metrics.index.get_level_values(0):
        return pd.DataFrame(
            columns=[
                "segment",
                "lines",
                "auroc",
                "oracle_auroc",
                "auroc_gap",
                "log_loss",
                "oracle_log_loss",
                "log_loss_excess",
            ]
        )
    model, oracle = metrics.loc["model"], metrics.loc["oracle"]
    lines = table[table["model"] == "model"].set_index("segment")["lines"]
    out = pd.DataFrame(
        {
            "lines": lines,
            "auroc": model["auroc"],
            "oracle_auroc": oracle["auroc"],
            "auroc_gap": oracle["auroc"] - model["auroc"],
            "log_loss": model["log_loss"],
            "oracle_log_loss": oracle["log_loss"],
            "log_loss_excess": model["log_loss"] / oracle["log_loss"] - 1,
        }
    )
    return out.reset_index(names="segment")


def metrics_dict(table: pd.DataFrame) -> dict[str, float]:
    """Flatten the comparison table: `<metric>` for the model overall, `<metric>_<segment>`,
    and `<baseline>.<metric>` / `<baseline>.<metric>_<segment>` for the others."""
    out = {}
    metric_cols = [c for c in table.columns if c not in ("model", "segment", "lines")]
    for row in table.to_dict("records"):
        prefix = "" if row["model"] == "model" else f"{row['model']}."
        suffix = "" if row["segment"] == "all" else f"_{row['segment']}"
        for m in metric_cols:
            v = row[m]
            if v == v:  # skip NaN
                out[f"{prefix}{m}{suffix}"] = float(v)
    return out


def group_table(scorer: Scorer, earlier: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """How well each answer names the reason group of the test months' denied lines (those
    whose CARC has a group): log loss of P(group | denied) and top-1 accuracy, for the
    group model, the rules (their group, calibrated into a distribution on `earlier`: P(true
    group | the rules' group), add-one smoothed) and the groups' shares in `earlier`."""
    from denial_model.groups import REASON_GROUPS, group_labels, rules_group

    k = len(REASON_GROUPS)
    y, y_earlier = group_labels(test), group_labels(earlier)
    test_d, earlier_d = test[y >= 0].reset_index(drop=True), earlier[y_earlier >= 0].reset_index(drop=True)
    y, y_earlier = y[y >= 0], y_earlier[y_earlier >= 0]
    if not len(test_d) or not len(earlier_d):
        return pd.DataFrame(columns=["model", "lines", "log_loss", "top1_accuracy"])
    prior = (np.bincount(y_earlier, minlength=k) + 1.0) / (len(y_earlier) + k)
    answers: dict[str, np.ndarray] = {"prior": np.tile(prior, (len(y), 1))}
    frame = as_claim_frame(test_d)
    rk = scorer.rules.evaluate(frame)
    named_earlier = rules_group(scorer.rules.evaluate(earlier_d))
    named_test = rules_group(rk)
    lookup = pd.crosstab(pd.Series(named_earlier, name="named"), pd.Series(y_earlier, name="true"))
    lookup = lookup.reindex(columns=range(k), fill_value=0) + 1.0
    lookup = lookup.div(lookup.sum(axis=1), axis=0)
    answers["rules_only"] = lookup.reindex(pd.Index(named_test, dtype=object)).fillna(1.0 / k).to_numpy()
    if scorer.groups is not None:
        answers["model"] = scorer.group_proba(rk.ids, rk.hits, scorer.features.attribute_columns(frame, rk))
    rows = []
    for name, proba in answers.items():
        p_true = np.clip(proba[np.arange(len(y)), y], 1e-15, 1.0)
        rows.append(
            {
                "model": name,
                "lines": len(y),
                "log_loss": float(-np.log(p_true).mean()),
                "top1_accuracy": float((np.argmax(proba, axis=1) == y).mean()),
            }
        )
    return pd.DataFrame(rows)


def group_metrics(table: pd.DataFrame) -> dict[str, float]:
    """`reason_groups.<metric>` for the group model, `reason_groups.<baseline>.<metric>` beside."""
    out = {}
    for row in table.to_dict("records"):
        prefix = "reason_groups." if row["model"] == "model" else f"reason_groups.{row['model']}."
        out.update({f"{prefix}{m}": float(row[m]) for m in ("log_loss", "top1_accuracy", "lines")})
    return out


def permutation_importance(
    scorer: Scorer, lines: pd.DataFrame, n_repeats: int = 2, seed: int = 0
) -> pd.Series:
    """How much the log loss of labeled `lines` grows when one feature's values are shuffled
    across them, the mean of `n_repeats` shuffles, per feature (largest first): scikit-learn's
    `permutation_importance` with `neg_log_loss`, on the fast predictor. The lines' features are
    computed and binned once, and each shuffle re-walks only the trees that split on the
    feature (a feature no tree uses: exactly 0). Shuffles are drawn per repeat, feature after
    feature in the model's order, from `numpy.random.default_rng(seed)`."""
    from sklearn.metrics import log_loss

    frame = as_claim_frame(lines)
    y = denied_labels(frame.df)
    predictor, prepared = scorer.prepared(frame.df)
    raw = predictor.raw(prepared)

    def loss(r: np.ndarray) -> float:
        return float(log_loss(y, np.clip(predictor.calibrate(r), 1e-15, 1 - 1e-15), labels=[False, True]))

    base = loss(raw)
    names = scorer.feature_names()
    rng = np.random.default_rng(seed)
    grown = np.zeros((n_repeats, len(names)))
    for r in range(n_repeats):
        for j, name in enumerate(names):
            grown[r, j] = loss(predictor.raw_permuted(prepared, raw, name, rng.permutation(len(y)))) - base
    return pd.Series(grown.mean(axis=0), index=names).sort_values(ascending=False)
