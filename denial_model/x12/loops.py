"""Loops and fields found in a table of segments (`segments.Segments`) with column
operations, for the 837P and 835 readers alike.

An X12 loop is "the segments after an opening segment (HL, CLM, LX; CLP, SVC) until the
next one or a closing one". `last_where` gives every segment the row of the last opener
before it in its transaction (a forward fill), so membership in a loop is a comparison and
a field is the loop's matching segment keyed by that row (`loop_values`). Dates, product
composites and line-else-claim values are read the same way in both transactions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from denial_model.x12.segments import Segments

__all__ = ["last_where", "line_or_claim", "loop_values", "modifiers_of", "procedures", "x12_dates"]


def x12_dates(segs: Segments, qualifier: pd.Series, value: pd.Series) -> pd.Series:
    """D8 (CCYYMMDD) or RD8 (a range: its first day) as YYYY-MM-DD; anything else is an
    error naming the segment (the series are indexed by segment row)."""
    day = value.str[:8]
    parsed = pd.to_datetime(day, format="%Y%m%d", errors="coerce")
    ok = qualifier.isin(["D8", "RD8", ""]) & parsed.notna()
    if not ok.all():
        row = ok.index[int(np.flatnonzero(~ok.to_numpy())[0])]
        raise segs.error(
            int(segs.frame.at[row, "position"]),
            f"date {value[row]!r} ({qualifier[row] or 'D8'}) is not CCYYMMDD",
        )
    return day.str[:4] + "-" + day.str[4:6] + "-" + day.str[6:]


def last_where(segs: Segments, mask: np.ndarray, reset: np.ndarray | None = None) -> np.ndarray:
    """For each segment, the row of the last segment where `mask` holds, at or before it in
    its transaction and since the last `reset`; -1 when there is none."""
    f = segs.frame
    n = np.arange(len(f))
    tx = f["tx"].to_numpy()
    starts = np.r_[True, tx[1:] != tx[:-1]]
    resets = starts | (reset if reset is not None else False)
    mark = np.where(mask, n, np.where(resets, -1, -2)).astype(float)
    mark[mark == -2] = np.nan
    return pd.Series(mark).ffill().fillna(-1).to_numpy().astype(np.int64)


def line_or_claim(line: pd.Series, claim: pd.Series, rows: pd.Index, claims: pd.Series) -> pd.Series:
    """Per row, its line's value, else its claim's (`claims`: each row's claim key), else ''."""
    return line.reindex(rows).fillna(claim.reindex(claims).set_axis(rows)).fillna("")


def modifiers_of(proc: pd.DataFrame) -> np.ndarray:
    """The modifiers of split procedure composites (components 3-6), `;`-joined."""
    joined = proc[3] + ";" + proc[4] + ";" + proc[5] + ";" + proc[6]
    return joined.str.replace(r";+", ";", regex=True).str.strip(";").to_numpy()


def procedures(
    segs: Segments, rows: pd.DataFrame, element: pd.Series, qualifiers: tuple[str, ...]
) -> pd.DataFrame:
    """The product/service composite (SV101, SVC01) split: columns 1.. (1 the qualifier). A
    composite written with another common separator than the ISA declares (some generators
    always write '>') is read, and noted, when only that split starts with a qualifier."""
    parts = segs.components(element, rows["tx"], 8)
    bad = ~parts[1].isin(qualifiers)
    alt_index = pd.RangeIndex(1, 9)
    for other in (">", ":", "^", "|"):
        if not bad.any():
            break
        alt = element[bad].str.split(other, n=8, expand=True).reindex(columns=range(8)).fillna("")
        alt.columns = alt_index
        fits = alt[1].isin(qualifiers) & element[bad].str.contains(other, regex=False)
        fits &= rows.loc[bad[bad].index, "tx"].map(segs.transactions["component"]) != other
        idx = fits[fits].index
        if len(idx):
            parts.loc[idx] = alt.loc[idx].to_numpy()
            for i in idx:
                where = f"{segs.path.name}: segment {rows.at[i, 'position']} ({rows.at[i, 'id']})"
                segs.notes.append(
                    f"{where}: {element[i]!r} is split on {other!r} where the ISA declares "
                    f"{segs.transactions.at[rows.at[i, 'tx'], 'component']!r}"
                )
            bad = ~parts[1].isin(qualifiers)
    if bad.any():
        i = bad[bad].index[0]
        raise segs.error(
            int(rows.at[i, "position"]),
            f"{element[i]!r} is not a composite starting with a product qualifier ({', '.join(qualifiers)})",
        )
    return parts


def loop_values(rows: pd.DataFrame, key: np.ndarray, values: pd.Series) -> pd.Series:
    """`values` of `rows` keyed by `key` (the loop's row), the last one winning."""
    return pd.Series(values.to_numpy(), index=key).groupby(level=0).last()
