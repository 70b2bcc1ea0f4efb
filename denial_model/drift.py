"""Drift: is this batch like the data the model learned from?

At training, `reference_profile` records the distributions of the score and the main
features (deciles of the numbers, the 20 most frequent values of the categories); it is
stored in the artifact's manifest. A scoring job counts its own lines into the same bins
(`drift_counts`, chunk by chunk, added up) and `drift_report` gives the population
stability index (PSI) of each against the reference. PSI above 0.2 is the usual warning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from denial_model.table import _factorize

if TYPE_CHECKING:
    from denial_model.features.claim import FeatureColumns

__all__ = ["DRIFT_WARNING", "MIN_DRIFT_LINES", "drift_counts", "drift_report", "psi", "reference_profile"]

DRIFT_WARNING = 0.2
# below this many scored lines a PSI measures the sample's noise, not drift: none is reported
MIN_DRIFT_LINES = 500
NUMERIC = ("units", "billed_amount", "days_to_submission", "dose_mg")
CATEGORICAL = ("payer_type", "hcpcs_code", "place_of_service", "drug")


def reference_profile(features: pd.DataFrame, p: np.ndarray) -> dict:
    """Distributions of the score and main features on the training data, for drift (PSI)."""
    edges = np.unique(np.quantile(p, np.linspace(0, 1, 11)))
    edges[0], edges[-1] = 0.0, 1.0
    prof: dict = {"score": {"edges": edges.tolist(), "counts": np.histogram(p, bins=edges)[0].tolist()}}
    prof["numeric"] = {}
    for name in NUMERIC:
        v = np.asarray(features[name], dtype=float)
        v = v[~np.isnan(v)]
        e = np.unique(np.quantile(v, np.linspace(0, 1, 11))) if len(v) else np.zeros(0)
        if len(e) < 2:
            continue
        prof["numeric"][name] = {"edges": e.tolist(), "counts": np.histogram(v, bins=e)[0].tolist()}
    prof["categorical"] = {}
    for name in CATEGORICAL:
        vals = features[name].astype(object).where(features[name].notna(), "__missing__")
        counts = vals.value_counts().head(20)
        prof["categorical"][name] = {
            "levels": [str(x) for x in counts.index],
            "counts": [*counts.tolist(), int(len(vals) - counts.sum())],
        }
    return prof


def drift_counts(
    features: pd.DataFrame | FeatureColumns, p: np.ndarray, reference: dict
) -> dict[str, np.ndarray]:
    """Counts of this block's lines in the reference's bins (add them up over chunks)."""
    out = {"score": np.histogram(p, bins=reference["score"]["edges"])[0]}
    for name, ref in reference.get("numeric", {}).items():
        v = np.asarray(features[name], dtype=float)
        v = v[~np.isnan(v)]
        out[name] = np.histogram(np.clip(v, ref["edges"][0], ref["edges"][-1]), bins=ref["edges"])[0]
    for name, ref in reference.get("categorical", {}).items():
        codes, uniques = _factorize(pd.Series(features[name]))  # per distinct value, not per line
        names = ["__missing__" if pd.isna(u) else str(u) for u in uniques]
        counts = pd.Series(np.bincount(codes, minlength=len(names)), index=names).groupby(level=0).sum()
        known = [int(counts.get(k, 0)) for k in ref["levels"]]
        out[name] = np.array([*known, len(codes) - sum(known)])
    return out


def psi(expected: np.ndarray, actual: np.ndarray, eps: float = 1e-4) -> float:
    """Population stability index between two count vectors over the same bins."""
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    e = np.maximum(e / max(e.sum(), 1), eps)
    a = np.maximum(a / max(a.sum(), 1), eps)
    return float(np.sum((a - e) * np.log(a / e)))


def drift_report(reference: dict | None, counts: dict[str, np.ndarray]) -> dict[str, float]:
    """PSI of every profiled quantity this job counted (empty without a reference, or with
    fewer than `MIN_DRIFT_LINES` scored lines)."""
    if not reference or int(np.asarray(counts.get("score", 0)).sum()) < MIN_DRIFT_LINES:
        return {}
    refs = {"score": reference["score"], **reference.get("numeric", {}), **reference.get("categorical", {})}
    return {
        name: psi(np.asarray(refs[name]["counts"]), np.asarray(c))
        for name, c in counts.items()
        if name in refs and np.asarray(c).sum() > 0
    }
