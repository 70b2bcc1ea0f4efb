"""Risk tiers: the cut points that turn a calibrated probability into low / medium / high.

Chosen once, on the calibration months, and stored with the model, so every place that
scores (batch, service, Spark) tiers a line the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TIERS", "Thresholds", "choose_thresholds"]

TIERS: tuple[str, ...] = ("low", "medium", "high")


@dataclass
class Thresholds:
    """Risk tiers: medium from `medium`, high from `high` (probabilities)."""

    medium: float
    high: float
    rule: str = (
        "medium: the cut that maximizes sum(recovery_rate * billed_amount * denied - rework_cost) "
        "over flagged calibration lines (reviewing pays off), raised so that at most 20% of the "
        "calibration lines are medium (a tier a team can work); high: the lowest cut above which "
        "at least half of the calibration lines were denied (denial more likely than not)"
    )

    def tier_index(self, p: np.ndarray) -> np.ndarray:
        """0 low, 1 medium, 2 high (an index into `TIERS`)."""
        return np.where(p >= self.high, 2, np.where(p >= self.medium, 1, 0)).astype(np.int8)

    def tier(self, p: np.ndarray) -> np.ndarray:
        return np.array(TIERS, dtype=object)[self.tier_index(p)]


# at most this share of lines is medium: drug lines are expensive, so the net-savings cut
# alone flags nearly every one of them (64% of the demo batch), which no team can work
MAX_MEDIUM_SHARE = 0.2


def choose_thresholds(
    y: np.ndarray,
    p: np.ndarray,
    amount: np.ndarray,
    recovery_rate: float,
    rework_cost: float,
    max_medium_share: float = MAX_MEDIUM_SHARE,
) -> Thresholds:
    """Cut points on calibration lines (labels `y`, probabilities `p`, billed `amount`)."""
    y = np.asarray(y, dtype=bool)
    order = np.argsort(-p, kind="stable")
    gain = np.cumsum(recovery_rate * amount[order] * y[order] - rework_cost)
    medium = float(p[order][int(np.argmax(gain))])
    precision = np.cumsum(y[order]) / np.arange(1, len(y) + 1)
    above = np.flatnonzero(precision >= 0.5)
    high = float(p[order][above.max()]) if len(above) else 1.0
    if len(p):  # raised to the lowest score with at most `max_medium_share` between it and high
        values, ranked = np.unique(p), np.sort(p)
        share = 1.0 - np.searchsorted(ranked, values, side="left") / len(p)  # of lines >= each value
        high_share = 1.0 - np.searchsorted(ranked, high, side="left") / len(p)
        allowed = values[share <= high_share + max_medium_share]
        medium = max(medium, float(allowed.min()) if len(allowed) else high)
    return Thresholds(medium=min(medium, high), high=high)
