"""The model as one scikit-learn estimator: what `joblib.load("model.joblib")` returns.

`DenialModel` holds the fitted Pipeline (claim features -> calibrated booster), the risk
thresholds and the metadata (version, training date, metrics, rule pack hash) as fitted
attributes, so generic scikit-learn servers (KServe, Seldon, a plain `joblib.load`) can call
`predict_proba(lines)` on claim lines without knowing this toolkit's file layout. The
toolkit's own scoring (batch, service, MLflow, Spark) asks the same object for the richer
answer: `explain` gives probability, tier, rule hits, reasons, fixes and dollars at risk,
with invalid rows as rejects instead of an error.

`predict_proba` follows scikit-learn: an input it cannot score whole is an error
(`ClaimTableError` naming the first bad row, column and value); `explain` is the forgiving
path that scores the good rows and returns the others as rejects.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from denial_model.errors import ClaimTableError
from denial_model.score import score_frame
from denial_model.scorer import NUMBER_COLUMNS, SCORE_COLUMNS, Scorer
from denial_model.table import INPUT_COLUMNS, _factorize, validate
from denial_model.thresholds import Thresholds

__all__ = ["ROW_COLUMNS", "DenialModel", "aligned_rows", "as_claim_table", "line_ids", "text_or_none"]

ROW_COLUMNS = ("row", "claim_id", "line_number", "status", *SCORE_COLUMNS, "reject_column", "reject_reason")


def as_claim_table(X) -> pd.DataFrame:
    """Claim lines as a DataFrame: a DataFrame as it is, a list of dicts (one per line),
    or a 2-D array whose columns are the claim-line table's columns in contract order."""
    if isinstance(X, pd.DataFrame):
        return X
    if isinstance(X, (list, tuple)) and all(isinstance(r, dict) for r in X):
        return pd.DataFrame.from_records(list(X))
    arr = np.asarray(X, dtype=object)
    if arr.ndim == 2 and arr.shape[1] == len(INPUT_COLUMNS):
        return pd.DataFrame(arr, columns=list(INPUT_COLUMNS))
    raise ClaimTableError(
        f"claim lines must be a DataFrame, a list of dicts or a 2-D array of {len(INPUT_COLUMNS)} "
        f"columns ({', '.join(INPUT_COLUMNS)}); got {type(X).__name__} of shape {arr.shape!r}"
    )


def text_or_none(s: pd.Series) -> pd.Series:
    """Values as text (an id sent as a number is still an id), missing as None."""
    return pd.Series(_texts(s), index=s.index, dtype=object)


def _texts(s: pd.Series) -> np.ndarray:
    """`text_or_none`'s values as an object array, worked out per distinct value."""
    codes, uniques = _factorize(s)
    missing = pd.isna(uniques)
    texts = np.array(
        [None if gone else str(v) for v, gone in zip(uniques.tolist(), missing, strict=True)] + [None]
    )
    return texts[codes] if len(codes) else np.zeros(0, dtype=object)


def line_ids(
    df: pd.DataFrame, rows: np.ndarray | None = None, numbered: np.ndarray | None = None
) -> pd.DataFrame:
    """`row` (0-based position), `claim_id` and `line_number` as text, one row per line of `df`
    (`rows`: of those lines only, in that order; `numbered`: their `row` values, if not their
    positions in `df`)."""
    rows = np.arange(len(df), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    out: dict[str, np.ndarray] = {"row": rows if numbered is None else np.asarray(numbered, dtype=np.int64)}
    for c in ("claim_id", "line_number"):
        out[c] = _texts(df[c])[rows] if c in df.columns else np.full(len(rows), None, dtype=object)
    return pd.DataFrame(out)


def aligned_rows(df: pd.DataFrame, scored: pd.DataFrame, rejects: pd.DataFrame) -> pd.DataFrame:
    """`score_frame`'s (scored, rejects) as one row per input row of `df` (ROW_COLUMNS)."""
    bad = rejects["row"].to_numpy(dtype=np.int64) if len(rejects) else np.zeros(0, np.int64)
    good = np.setdiff1d(np.arange(len(df)), bad)
    out = line_ids(df)
    out["status"] = "scored"
    out.loc[bad, "status"] = "rejected"
    for c in SCORE_COLUMNS:
        numeric = c in NUMBER_COLUMNS
        col = pd.Series(np.nan if numeric else None, index=out.index, dtype=float if numeric else object)
        col.iloc[good] = scored[c].to_numpy()
        out[c] = col
    for c, src in (("reject_column", "column"), ("reject_reason", "reason")):
        col = pd.Series(None, index=out.index, dtype=object)
        col.iloc[bad] = rejects[src].astype(str).to_numpy() if len(bad) else []
        out[c] = col
    return out


class DenialModel(ClassifierMixin, BaseEstimator):
    """P(denied) of claim lines, calibrated, with the risk tiers the model was trained with.

    Parameters
    ----------
    config : `TrainConfig` used by `fit` (None: the defaults).

    Fitted attributes
    -----------------
    pipeline_ : the fitted `Pipeline` (`features` -> `classifier`).
    thresholds_ : `Thresholds`, the risk-tier cut points chosen on the calibration months.
    groups_ : the calibrated classifier of P(reason group | denied) over the same features
        (`groups.REASON_GROUPS`), or None (too few denials with a known CARC; models before 0.6).
    metadata_ : dict: package and scikit-learn versions, training date, metrics, rule pack
        hash, feature schema, split, drift reference (the artifact manifest minus its hash).
    classes_ : array([False, True]).
    """

    def __init__(self, config=None):
        self.config = config

    def fit(self, X, y=None):
        """Train on a claim history (the claim-line table with its `denied` labels; `y`, if
        given, replaces them), split by time as `train.train_model` does."""
        from denial_model.train import train_model

        history = as_claim_table(X)
        if y is not None:
            history = history.assign(denied=np.asarray(y))
        result = train_model(history, self.config)
        metadata = {"train_config": result.config.to_dict()}
        return self._set_fitted(result.model, result.thresholds, metadata, result.groups)

    @classmethod
    def from_fitted(
        cls, pipeline, thresholds: Thresholds, metadata: dict | None = None, config=None, groups=None
    ):
        """Wrap an already fitted Pipeline, its thresholds and (from 0.6) its reason-group
        classifier (what training and old artifacts give)."""
        return cls(config=config)._set_fitted(pipeline, thresholds, metadata or {}, groups)

    def _set_fitted(self, pipeline, thresholds: Thresholds, metadata: dict, groups=None) -> DenialModel:
        self.pipeline_ = pipeline
        self.thresholds_ = thresholds
        self.groups_ = groups
        self.metadata_ = dict(metadata)
        self.classes_ = np.array([False, True])
        self.feature_names_in_ = np.array(INPUT_COLUMNS, dtype=object)
        self.n_features_in_ = len(INPUT_COLUMNS)
        self.__dict__.pop("scorer", None)
        return self

    @cached_property
    def scorer(self) -> Scorer:
        """The fitted model ready to score (built once, never pickled)."""
        check_is_fitted(self, "pipeline_")
        return Scorer(self.pipeline_, self.thresholds_, getattr(self, "groups_", None))  # none before 0.6

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("scorer", None)
        return state

    def predict_proba(self, X) -> np.ndarray:
        """(n, 2) array: P(paid), P(denied) per line. Any row that fails the claim-line
        contract is an error naming it (use `explain` to score the others)."""
        v = validate(as_claim_table(X), keep_extra=False)
        if len(v.rejects):
            first = v.rejects.iloc[0]
            raise ClaimTableError(
                f"{len(v.rejects)} of {v.rows_in} line(s) cannot be scored; first: row {first['row']} "
                f"(claim {first['claim_id']!r}), column {first['column']}: {first['reason']}"
            )
        p = self.scorer.proba_lines(v.lines) if len(v.lines) else np.zeros(0)
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        """True where the line is in the high tier (denial more likely than not on the
        calibration months: `thresholds_.high`)."""
        return self.predict_proba(X)[:, 1] >= self.thresholds_.high

    def explain(
        self, X, history: pd.DataFrame | None = None, date_format: str | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(scored rows with probability, tier, rule hits, reasons, fixes and dollars at risk;
        rejects: row, claim_id, line_number, column, reason). `history`: earlier lines of the
        same patients for the cross-line rules (not scored)."""
        return score_frame(as_claim_table(X), self, history=history, date_format=date_format)

    def explain_rows(self, X, history: pd.DataFrame | None = None) -> pd.DataFrame:
        """One row per input line, in input order: `row`, `claim_id`, `line_number`, `status`
        (`scored` or `rejected`), the score columns (empty for a rejected line) and
        `reject_column` / `reject_reason` (empty for a scored line). What MLflow's server and
        Spark return, where the answer must line up with the question row by row."""
        df = as_claim_table(X)
        scored, rejects = self.explain(df, history=history)
        return aligned_rows(df, scored, rejects)

    @property
    def drift_reference(self) -> dict | None:
        return self.metadata_.get("drift_reference")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        tags.input_tags.allow_nan = True
        return tags
