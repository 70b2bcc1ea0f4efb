"""What the fitting history says about a line: leakage-safe denial rates of its entities.

A rate is read "as of" the line's submission date: only lines of the fitting history
adjudicated strictly before it count, so a line never sees its own outcome or any outcome
its biller could not have known. Two readings of the same counts:

- cumulative (`_History.before`): every earlier outcome weighs the same;
- recent (`_History.recent`): an outcome `d` days old weighs `2 ** (-d / half_life)`, so a
  payer that starts (or stops) enforcing something shows up within a few months.

Rates are smoothed towards a prior with `smoothing` pseudo-lines, so an entity seen a handful
of times keeps a little of its signal and none of its noise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from denial_model.rules.pack import CATEGORIES
from denial_model.table import ClaimFrame, factorize_objects

__all__ = [
    "FINDINGS",
    "HISTORY_KEYS",
    "composite_key",
    "entity_key",
    "factorized",
    "finding_pairs",
    "gamma_poisson_prior",
    "per_line_any",
    "per_line_max",
    "smoothed",
]

# entity -> the columns that name it
HISTORY_KEYS = {
    "provider": ("provider_npi",),
    "payer_code": ("payer_id", "hcpcs_code"),
    "payer": ("payer_id",),
}
_DAY = 1_000_000  # key * _DAY + day orders (key, day) pairs; days since 1970 stay far below


def factorized(values: ClaimFrame | np.ndarray, column: str | None = None) -> tuple[np.ndarray, list[str]]:
    """(codes, distinct values as text) of a ClaimFrame's `column` or of an array: string
    work happens on the distinct values only."""
    if isinstance(values, ClaimFrame):
        codes, uniques = values.factor(column)
    else:
        codes, uniques = factorize_objects(values)
    return codes, [str(u) for u in uniques]


def composite_key(parts: list[tuple[np.ndarray, list[str]]]) -> tuple[np.ndarray, list[str]]:
    """Factorized parts combined into one key: (codes, 'a|b' text per distinct combination)."""
    codes, keys = parts[0]
    for c2, u2 in parts[1:]:
        width = max(len(u2), 1)
        pair, firsts = pd.factorize(codes * width + c2)
        keys = [keys[f // width] + "|" + u2[f % width] for f in firsts]
        codes = np.asarray(pair, dtype=np.int64)
    return codes, keys


def entity_key(frame: ClaimFrame, cols: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """Composite key of `cols` as (codes, 'a|b' text per distinct key)."""
    return composite_key([factorized(frame, c) for c in cols])


def smoothed(n: np.ndarray, y: np.ndarray, prior: np.ndarray | float, strength: float) -> np.ndarray:
    """(y + strength * prior) / (n + strength): a rate pulled towards `prior` where `n` is small."""
    return (y + strength * prior) / (n + strength)


def gamma_poisson_prior(
    exposure: np.ndarray, observed: np.ndarray, min_exposure: float = 0.5
) -> tuple[float, float]:
    """(mean, strength) of the spread of entities' observed / expected ratios, estimated from
    their totals by the method of moments: an entity's ratio drawn from a gamma with mean R and
    variance v, its observed count Poisson around exposure x ratio, so the exposure-weighted
    spread of the raw ratios is v plus R / exposure of noise. (observed + strength x R) /
    (exposure + strength), strength = R / v, is then the ratio's posterior mean: little
    smoothing where entities differ a lot, much where they hardly differ. Entities with less
    than `min_exposure` carry almost only noise and are left out of the estimate."""
    e, o = np.asarray(exposure, dtype=float), np.asarray(observed, dtype=float)
    m = e >= min_exposure
    if not m.any() or e[m].sum() <= 0:
        return 1.0, 1.0
    e, o = e[m], o[m]
    mean = float(o.sum() / e.sum())
    if mean <= 0:
        return 1.0, 1.0
    spread = float((e * (o / e - mean) ** 2).sum() - mean * len(e)) / float(e.sum())
    # no spread beyond the noise: smooth as if the entities had hardly a hundredth of it
    return mean, mean / max(spread, 1e-2 * mean * mean)


class _History:
    """Daily denial counts per key, cumulated, for 'rate among lines adjudicated before t'.

    `half_life` (days) also keeps exponentially weighted sums per key for `recent`; artifacts
    fitted before 0.5 hold none and are only asked `before`. `exposure`: what a line counts
    for in the "lines" sums (default 1; the expected denials of a line for an observed /
    expected ratio)."""

    def __init__(
        self,
        key: tuple[np.ndarray, list[str]],
        adj_day: np.ndarray,
        denied: np.ndarray,
        half_life: float | None = None,
        exposure: np.ndarray | None = None,
    ):
        codes, names = key
        keys = np.asarray(names, dtype=object)[codes]
        w = np.ones(len(keys)) if exposure is None else np.asarray(exposure, dtype=float)
        g = (
            pd.DataFrame({"k": keys, "d": adj_day, "w": w, "y": denied.astype(float)})
            .groupby(["k", "d"], sort=True)
            .agg(size=("w", "sum"), sum=("y", "sum"))
            .reset_index()
        )
        self.index = {k: i for i, k in enumerate(pd.unique(g["k"]))}
        kid = g["k"].map(self.index).to_numpy(dtype=np.int64)
        self.combined = kid * _DAY + g["d"].to_numpy(dtype=np.int64)
        self.cum_n = np.r_[0, np.cumsum(g["size"].to_numpy())]
        self.cum_y = np.r_[0.0, np.cumsum(g["sum"].to_numpy())]
        starts = np.searchsorted(self.combined, np.arange(len(self.index)) * _DAY)
        self.key_start = starts
        if half_life is not None:
            # per key, running sums of 2 ** ((d - day0) / half_life) * counts: read at day t and
            # scaled by 2 ** (-(t - day0) / half_life), they are the decayed counts before t
            self.half_life = float(half_life)
            self.day0 = int(g["d"].min()) if len(g) else 0
            w = np.exp2((g["d"].to_numpy(dtype=float) - self.day0) / self.half_life)
            by_key = pd.Series(kid)
            self.decayed_n = pd.Series(w * g["size"].to_numpy()).groupby(by_key).cumsum().to_numpy()
            self.decayed_y = pd.Series(w * g["sum"].to_numpy()).groupby(by_key).cumsum().to_numpy()

    def totals(self) -> tuple[np.ndarray, np.ndarray]:
        """(lines, denials) of each key over the whole history, in key order."""
        ends = np.r_[self.key_start[1:], len(self.combined)]
        return self.cum_n[ends] - self.cum_n[self.key_start], self.cum_y[ends] - self.cum_y[self.key_start]

    def _positions(self, key: tuple[np.ndarray, list[str]], day: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per line: whether its key is known, its key's first row, and the first row on or after `day`."""
        codes, uniques = key
        uid = np.array([self.index.get(u, -1) for u in uniques], dtype=np.int64)
        kid = uid[codes] if len(codes) else np.zeros(0, np.int64)
        known = kid >= 0
        safe = np.where(known, kid, 0)
        pos = np.searchsorted(self.combined, safe * _DAY + day, side="left")
        return known, self.key_start[safe], pos

    def before(self, key: tuple[np.ndarray, list[str]], day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lines, denials) of each key adjudicated strictly before `day`."""
        return self._before(*self._positions(key, day))

    def _before(self, known: np.ndarray, start: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = np.where(known, self.cum_n[pos] - self.cum_n[start], 0)
        y = np.where(known, self.cum_y[pos] - self.cum_y[start], 0.0)
        return n, y

    def recent(self, key: tuple[np.ndarray, list[str]], day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lines, denials) adjudicated before `day`, each weighted by its age's decay."""
        return self._recent(day, *self._positions(key, day))

    def before_and_recent(self, key: tuple[np.ndarray, list[str]], day: np.ndarray) -> tuple[tuple, tuple]:
        """`before` and `recent` of the same lines, the keys looked up once."""
        where = self._positions(key, day)
        return self._before(*where), self._recent(day, *where)

    def _recent(
        self, day: np.ndarray, known: np.ndarray, start: np.ndarray, pos: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        seen = known & (pos > start)
        last = np.where(seen, pos - 1, 0)
        scale = np.exp2(-(day.astype(float) - self.day0) / self.half_life)
        n = np.where(seen, self.decayed_n[last] * scale, 0.0) if len(self.decayed_n) else np.zeros(len(day))
        y = np.where(seen, self.decayed_y[last] * scale, 0.0) if len(self.decayed_y) else np.zeros(len(day))
        return n, y


# what a line can be found with: a rule category, or nothing ("clean")
FINDINGS = [*CATEGORIES, "clean"]


def finding_pairs(categories: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(line, finding) pairs sorted by line: one per category the line has a finding of, and
    (line, 'clean') for a line with none, so every line has at least one pair."""
    rows, cols = np.nonzero(categories)
    clean = np.flatnonzero(~categories.any(axis=1))
    rows = np.r_[rows, clean]
    cols = np.r_[cols, np.full(len(clean), len(CATEGORIES))]
    order = np.argsort(rows, kind="stable")
    return rows[order], cols[order]


def per_line_max(rows: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """The largest of each line's pair values (`rows` sorted, every line present)."""
    if not n:
        return np.zeros(0)
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    return np.maximum.reduceat(values, starts)


def per_line_any(rows: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per line, 1 - the product of (1 - value) over its pairs: the chance that any of them
    happens if they are independent (`rows` sorted, every line present)."""
    if not n:
        return np.zeros(0)
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    return -np.expm1(np.add.reduceat(np.log1p(-np.clip(values, 0.0, 1.0 - 1e-12)), starts))
