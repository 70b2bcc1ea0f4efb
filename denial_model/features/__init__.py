"""scikit-learn face of the toolkit: transformers that turn claim-line tables into features.

- `claim`: `ClaimFeatures`, the model's one transformer (rule hits, attributes, context,
  history), and `RuleFeaturizer` (the rule engine as a transformer);
- `history`: leakage-safe denial rates from the fitting history, cumulative and recent;
- `context`: what a line's own hits do not carry (its claim's other lines, its kind, its
  raw attributes as multi-hot columns).

Artifacts saved before 0.5 pickled these classes as `denial_model.features.<name>`: the
names below keep them loading.
"""

from denial_model.features.claim import (
    CATEGORICAL,
    NUMERIC,
    ClaimFeatures,
    RuleFeaturizer,
    as_claim_frame,
)
from denial_model.features.context import LINE_KINDS
from denial_model.features.history import HISTORY_KEYS, _History

__all__ = [
    "CATEGORICAL",
    "HISTORY_KEYS",
    "LINE_KINDS",
    "NUMERIC",
    "ClaimFeatures",
    "RuleFeaturizer",
    "_History",
    "as_claim_frame",
]
