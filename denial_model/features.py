"""scikit-learn face of the toolkit: transformers that turn claim-line tables into features.

`RuleFeaturizer` wraps the rule engine so the whole model is one `Pipeline` that joblib and
MLflow persist as one object. The fitted featurizer carries its rule pack, so an artifact
scores with the rules it was trained with even if the YAML on disk changes later.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from denial_model.errors import ClaimTableError
from denial_model.rules.engine import RuleResult, evaluate
from denial_model.rules.pack import RulePack, load_pack
from denial_model.table import ClaimFrame, _factorize, denied_labels, validate


def as_claim_frame(X: pd.DataFrame | ClaimFrame) -> ClaimFrame:
    """Validated, normalized view of `X`; any bad row is an error naming row and column."""
    if isinstance(X, ClaimFrame):
        return X
    v = validate(X)
    if len(v.rejects):
        first = v.rejects.iloc[0]
        raise ClaimTableError(
            f"{len(v.rejects)} row(s) failed validation; first: row {first['row']} "
            f"(claim {first['claim_id']}), column {first['column']}: {first['reason']}"
        )
    return ClaimFrame(v.lines)


class RuleFeaturizer(TransformerMixin, BaseEstimator):
    """One 0/1 feature per rule of the pack (rule id as the feature name).

    Parameters
    ----------
    pack_dir : folder of a rule pack; None uses the pack shipped with the package.
    """

    def __init__(self, pack_dir: str | Path | None = None):
        self.pack_dir = pack_dir

    def fit(self, X, y=None):
        self.pack_: RulePack = load_pack(self.pack_dir)
        self.rule_ids_ = np.array(self.pack_.ids, dtype=object)
        self.pack_sha256_ = self.pack_.sha256
        return self

    def evaluate(self, X: pd.DataFrame | ClaimFrame, earlier: pd.DataFrame | None = None) -> RuleResult:
        """Full rule result (hit matrix, rule_hits strings, CARCs) for `X`; `earlier`:
        validated lines before `X` that the cross-line rules read (see `rules.engine`)."""
        check_is_fitted(self, "pack_")
        return evaluate(as_claim_frame(X), self.pack_, earlier=earlier)

    def transform(self, X):
        hits = self.evaluate(X).hits
        return pd.DataFrame(hits.astype(np.float32), columns=list(self.rule_ids_))

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "pack_")
        return self.rule_ids_.copy()


# ----------------------------------------------------------------------------- claim features

HISTORY_KEYS = {
    "provider": ("provider_npi",),
    "payer_code": ("payer_id", "hcpcs_code"),
    "payer": ("payer_id",),
}
CATEGORICAL = ("payer_id", "payer_type", "hcpcs_code", "place_of_service", "drug", "dx_group", "provider_npi")
NUMERIC = (
    "units",
    "billed_amount",
    "dose_mg",
    "days_to_submission",
    "n_modifiers",
    "n_diagnoses",
    "n_documentation",
    "has_ndc",
    "has_prior_auth",
    "has_description",
    "mod_jw",
    "mod_jz",
    "mod_25",
    "mod_59",
)


def _factorized(values) -> tuple[np.ndarray, list[str]]:
    """(codes, distinct values as text): string work happens on the distinct values only."""
    codes, uniques = _factorize(values if isinstance(values, pd.Series) else pd.Series(values, dtype=object))
    return codes, [str(u) for u in uniques]


def _per_value(s: pd.Series, fn) -> np.ndarray:
    """float fn(text) for every line, computed once per distinct value."""
    codes, uniques = _factorize(s)
    return np.array([float(fn(str(u))) for u in uniques], dtype=float)[codes] if len(codes) else np.zeros(0)


def _key(df: pd.DataFrame, cols: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """Composite key of `cols` as (codes, 'a|b' text per distinct key)."""
    codes, keys = _factorized(df[cols[0]])
    for c in cols[1:]:
        c2, u2 = _factorized(df[c])
        width = max(len(u2), 1)
        pair, firsts = pd.factorize(codes * width + c2)
        keys = [keys[f // width] + "|" + u2[f % width] for f in firsts]
        codes = np.asarray(pair, dtype=np.int64)
    return codes, keys


class _History:
    """Daily denial counts per key, cumulated, for 'rate among lines adjudicated before t'."""

    def __init__(self, key: tuple[np.ndarray, list[str]], adj_day: np.ndarray, denied: np.ndarray):
        codes, names = key
        keys = np.asarray(names, dtype=object)[codes]
        g = (
            pd.DataFrame({"k": keys, "d": adj_day, "y": denied.astype(float)})
            .groupby(["k", "d"], sort=True)["y"]
            .agg(["size", "sum"])
            .reset_index()
        )
        self.index = {k: i for i, k in enumerate(pd.unique(g["k"]))}
        kid = g["k"].map(self.index).to_numpy(dtype=np.int64)
        self.combined = kid * 1_000_000 + g["d"].to_numpy(dtype=np.int64)
        self.cum_n = np.r_[0, np.cumsum(g["size"].to_numpy())]
        self.cum_y = np.r_[0.0, np.cumsum(g["sum"].to_numpy())]
        starts = np.searchsorted(self.combined, np.arange(len(self.index)) * 1_000_000)
        self.key_start = starts

    def before(self, key: tuple[np.ndarray, list[str]], day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lines, denials) of each key adjudicated strictly before `day`."""
        codes, uniques = key
        uid = np.array([self.index.get(u, -1) for u in uniques], dtype=np.int64)
        kid = uid[codes] if len(codes) else np.zeros(0, np.int64)
        known = kid >= 0
        pos = np.searchsorted(self.combined, np.where(known, kid, 0) * 1_000_000 + day, side="left")
        start = self.key_start[np.where(known, kid, 0)]
        n = np.where(known, self.cum_n[pos] - self.cum_n[start], 0)
        y = np.where(known, self.cum_y[pos] - self.cum_y[start], 0.0)
        return n, y


def _popcount(mask: np.ndarray, bits: int = 16) -> np.ndarray:
    return sum(((mask >> i) & 1) for i in range(bits)).astype(float)


class ClaimFeatures(TransformerMixin, BaseEstimator):
    """Rule hits plus claim attributes plus leakage-safe history, as one DataFrame.

    History features are denial rates of the line's provider, payer and payer-code pair among
    lines of the fitting history adjudicated before the line's submission date (smoothed
    towards the overall rate). Labels of the table being transformed are never read.
    Categorical columns keep their `max_levels` most frequent values (others become missing)
    so HistGradientBoosting can split on them natively.
    """

    def __init__(self, pack_dir: str | Path | None = None, max_levels: int = 250, smoothing: float = 20.0):
        self.pack_dir = pack_dir
        self.max_levels = max_levels
        self.smoothing = smoothing

    def fit(self, X, y=None):
        frame = as_claim_frame(X)
        df = frame.df
        self.rules_ = RuleFeaturizer(self.pack_dir).fit(frame)
        base = self._attributes(frame, self.rules_.evaluate(frame).drug)
        self.levels_ = {c: self._levels(*base[c], self.max_levels) for c in CATEGORICAL}
        if y is None:
            if "denied" not in df.columns:
                raise ClaimTableError("ClaimFeatures.fit needs outcomes: a 'denied' column or y")
            y = denied_labels(df)
        y = np.asarray(y, dtype=bool)
        if "adjudication_date" not in df.columns:
            raise ClaimTableError("ClaimFeatures.fit needs 'adjudication_date' for leakage-safe history")
        adj = pd.to_datetime(df["adjudication_date"]).to_numpy().astype("datetime64[D]").astype(np.int64)
        self.prior_ = float(y.mean())
        self.history_ = {name: _History(_key(df, cols), adj, y) for name, cols in HISTORY_KEYS.items()}
        self.feature_names_out_ = np.array(
            [
                *self.rules_.get_feature_names_out(),
                *NUMERIC,
                *CATEGORICAL,
                *[f"hist_{k}_{s}" for k in HISTORY_KEYS for s in ("rate", "lines")],
            ],
            dtype=object,
        )
        return self

    @staticmethod
    def _attributes(frame: ClaimFrame, drug: np.ndarray) -> dict[str, tuple[np.ndarray, list[str]]]:
        """Categorical attributes as (codes, distinct values as text), without per-row strings."""
        df = frame.df
        out = {c: _factorized(df[c]) for c in ("payer_id", "payer_type", "hcpcs_code", "place_of_service")}
        out["provider_npi"] = _factorized(df["provider_npi"])
        out["drug"] = _factorized(drug)
        dx_codes, dx = _factorized(df["diagnosis_codes"])
        first3, groups = pd.factorize(pd.Series([d[:3] for d in dx], dtype=object))
        out["dx_group"] = (np.asarray(first3, dtype=np.int64)[dx_codes], [str(g) for g in groups])
        return out

    @staticmethod
    def _levels(codes: np.ndarray, names: list[str], max_levels: int) -> list[str]:
        """The `max_levels` most frequent values (ties by value), sorted."""
        counts = pd.Series(np.bincount(codes, minlength=len(names)), index=names).groupby(level=0).sum()
        counts = counts[counts > 0]  # categories of rejected rows are not levels
        top = counts.sort_index().sort_values(ascending=False, kind="stable").index[:max_levels]
        return sorted(top.tolist())

    def transform(self, X):
        return self.transform_with_rules(as_claim_frame(X))[0]

    def transform_with_rules(self, frame: ClaimFrame) -> tuple[pd.DataFrame, RuleResult]:
        """Features and the rule result they were built from (scoring needs both)."""
        check_is_fitted(self, "history_")
        result = self.rules_.evaluate(frame)
        return self.assemble(result.hits, self.attributes(frame, result.drug)), result

    def assemble(self, hits: np.ndarray, attributes: pd.DataFrame) -> pd.DataFrame:
        """The full feature frame from the rule hit matrix and `attributes`."""
        rules = pd.DataFrame(hits.astype(np.float32), columns=list(self.rules_.rule_ids_))
        return pd.concat([rules, attributes.reset_index(drop=True)], axis=1)[list(self.feature_names_out_)]

    def attributes(self, frame: ClaimFrame, drug: np.ndarray) -> pd.DataFrame:
        """The features that are not rule hits: claim attributes and history rates.

        Batch scoring keeps the rule hits as the engine's bool matrix and reads only these
        from a frame (92 float columns of 0/1 would cost more to build than to score)."""
        check_is_fitted(self, "history_")
        df = frame.df
        num = {
            "units": df["units"].to_numpy(dtype=float),
            "billed_amount": df["billed_amount"].to_numpy(dtype=float),
            "dose_mg": df["dose_mg"].to_numpy(dtype=float),
            "days_to_submission": (df["submission_date"] - df["service_date"]).dt.days.to_numpy(dtype=float),
            "n_modifiers": _per_value(df["modifiers"], lambda m: m.count(";") + (m != "")),
            "n_diagnoses": _per_value(df["diagnosis_codes"], lambda d: d.count(";") + 1),
            # -1: not known (an ingested 837), a value of its own, not "none" (0)
            "n_documentation": np.where(
                frame.documentation_unknown, -1.0, _popcount(frame.documentation_mask)
            ),
            "has_ndc": (df["ndc"] != "").to_numpy(dtype=float),
            "has_prior_auth": (df["prior_auth_number"] != "").to_numpy(dtype=float),
            "has_description": (df["drug_description"] != "").to_numpy(dtype=float),
        }
        for m in ("JW", "JZ", "25", "59"):
            num[f"mod_{m.lower()}"] = frame.has_modifier([m]).astype(float)
        out: dict[str, object] = num
        attrs = self._attributes(frame, drug)
        for c in CATEGORICAL:
            codes, names = attrs[c]
            lut = np.append(
                pd.Index(self.levels_[c], dtype=object).get_indexer(pd.Index(names, dtype=object)), -1
            )
            out[c] = pd.Categorical.from_codes(lut[codes], categories=self.levels_[c])
        sub = df["submission_date"].to_numpy().astype("datetime64[D]").astype(np.int64)
        for name, cols in HISTORY_KEYS.items():
            n, y = self.history_[name].before(_key(df, cols), sub)
            out[f"hist_{name}_rate"] = (y + self.smoothing * self.prior_) / (n + self.smoothing)
            out[f"hist_{name}_lines"] = n.astype(float)
        return pd.DataFrame(out, index=pd.RangeIndex(frame.n))

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "history_")
        return self.feature_names_out_.copy()
