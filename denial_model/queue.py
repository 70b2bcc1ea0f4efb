"""The work queue: which scored lines a billing team should work first, how, and who.

A line is worth working when fixing it before it goes out saves more than the rework
costs. Its value is the probability all its fixable findings together take off
(`denial_probability - probability_after_fixes`), times its billed amount, times the share
of a denied charge that fixing it first recovers, minus the cost of reworking one line:

    value = (denial_probability - probability_after_fixes) x billed_amount x recovery_rate - rework_cost

Lines of positive value with a reason are ranked by value and the top `capacity` taken:
overall, per owner team (`by="team"`: each team's own capacity) or per submission day
(`by="day"`), ranked within each (and listed rank by rank: every team's first line, then
every team's second, ...). Each queued line carries its most costly reason, its
best single fix, what all its fixes together buy, its reason group and owner team
(`groups.py`). A line whose fixes
take nothing off (a finding no change can cure, or one the payer does not weigh) is never
queued: there is nothing to do to it before it goes out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from denial_model.errors import ClaimTableError, ConfigError

__all__ = ["BY", "QUEUE_COLUMNS", "RECOVERY_RATE", "REWORK_COST", "build_queue", "line_value"]

BY = ("team", "day")
RECOVERY_RATE = 0.7  # share of a denied charge that fixing the line first recovers (TrainConfig's)
REWORK_COST = 15.0  # cost of reworking one line before it goes out ($)
NEEDED = (
    "claim_id",
    "line_number",
    "billed_amount",
    "denial_probability",
    "probability_after_fixes",
    "reasons",
    "fixes",
    "reason_group",
    "owner_team",
)
QUEUE_COLUMNS = (
    "rank",
    "owner_team",
    "reason_group",
    "claim_id",
    "line_number",
    "patient_id",
    "payer_id",
    "hcpcs_code",
    "submission_date",
    "billed_amount",
    "denial_probability",
    "probability_after_fixes",
    "value",
    "reason",
    "fix",
    "fixes",
)
SEP = " | "


def _first(s: pd.Series) -> pd.Series:
    """The first ' | '-separated piece of each text (the most important one)."""
    return s.fillna("").astype(str).str.split(SEP, n=1, regex=False).str[0]


def line_value(
    p: np.ndarray,
    after: np.ndarray,
    billed: np.ndarray,
    recovery_rate: float = RECOVERY_RATE,
    rework_cost: float = REWORK_COST,
) -> np.ndarray:
    """The value of working each line before it goes out (the module docstring's formula),
    in dollars rounded to the cent."""
    return np.round((np.asarray(p) - np.asarray(after)) * np.asarray(billed) * recovery_rate - rework_cost, 2)


def build_queue(
    scored: pd.DataFrame,
    capacity: int,
    by: str | None = None,
    recovery_rate: float = RECOVERY_RATE,
    rework_cost: float = REWORK_COST,
) -> pd.DataFrame:
    """The queue (`QUEUE_COLUMNS`) of a scored table (what `score` writes): the `capacity`
    most valuable lines overall, per team (`by="team"`) or per submission day (`by="day"`)."""
    if not isinstance(capacity, (int, np.integer)) or capacity < 1:
        raise ConfigError(f"capacity must be a whole number >= 1, got {capacity!r}")
    if by is not None and by not in BY:
        raise ConfigError(f"by must be one of {', '.join(BY)}, got {by!r}")
    if not 0 <= recovery_rate <= 1 or rework_cost < 0:
        raise ConfigError(
            f"recovery_rate must be in [0, 1] and rework_cost >= 0, got {recovery_rate!r}, {rework_cost!r}"
        )
    missing = [c for c in NEEDED if c not in scored.columns]
    if missing:
        raise ClaimTableError(
            f"not a scored table of denial-model 0.6 or later (missing {', '.join(missing)}): "
            "score it with `denial-model score` first"
        )
    p = pd.to_numeric(scored["denial_probability"], errors="coerce").to_numpy(dtype=float)
    after = pd.to_numeric(scored["probability_after_fixes"], errors="coerce").to_numpy(dtype=float)
    billed = pd.to_numeric(scored["billed_amount"], errors="coerce").to_numpy(dtype=float)
    value = line_value(p, after, billed, recovery_rate, rework_cost)
    has_reason = scored["reasons"].fillna("").astype(str).to_numpy() != ""
    keep = np.flatnonzero((value > 0) & has_reason & ~np.isnan(value))
    lines = scored.iloc[keep].assign(value=value[keep])
    lines = lines.sort_values(
        ["value", "claim_id", "line_number"], ascending=[False, True, True], kind="stable"
    )
    if by is None:
        lines = lines.head(capacity)
        rank = np.arange(1, len(lines) + 1)
    else:
        key = lines["owner_team"] if by == "team" else pd.to_datetime(lines["submission_date"]).dt.date
        groups = lines.groupby(key.to_numpy(), sort=False)
        lines = groups.head(capacity)
        rank = lines.groupby(key.loc[lines.index].to_numpy(), sort=False).cumcount().to_numpy() + 1
    out = lines.assign(reason=_first(lines["reasons"]), fix=_first(lines["fixes"]), rank=rank)
    if by is not None:  # each team's (day's) first line, then each one's second, ...
        out = out.sort_values(["rank", "value"], ascending=[True, False], kind="stable")
    return out[[c for c in QUEUE_COLUMNS if c in out.columns]].reset_index(drop=True)
