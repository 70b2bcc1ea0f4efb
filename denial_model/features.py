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

from denial_model.rules.engine import RuleResult, evaluate
from denial_model.rules.pack import RulePack, load_pack
from denial_model.table import ClaimFrame, validate


def as_claim_frame(X: pd.DataFrame | ClaimFrame) -> ClaimFrame:
    """Validated, normalized view of `X`; any bad row is an error naming row and column."""
    if isinstance(X, ClaimFrame):
        return X
    v = validate(X)
    if len(v.rejects):
        first = v.rejects.iloc[0]
        raise ValueError(
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

    def evaluate(self, X: pd.DataFrame | ClaimFrame) -> RuleResult:
        """Full rule result (hit matrix, rule_hits strings, CARCs) for `X`."""
        check_is_fitted(self, "pack_")
        return evaluate(as_claim_frame(X), self.pack_)

    def transform(self, X):
        hits = self.evaluate(X).hits
        return pd.DataFrame(hits.astype(np.float32), columns=list(self.rule_ids_))

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "pack_")
        return self.rule_ids_.copy()
