"""X12 interchanges as a table of segments: the separators each ISA declares, the envelopes
checked, every segment placed in its transaction.

An X12 file is one or more interchanges (ISA ... IEA), each holding functional groups
(GS ... GE) of transactions (ST ... SE). The ISA segment is fixed-width (106 characters):
its 4th character is the element separator, ISA16 the component separator and the
character after it the segment terminator, so every interchange says how to split itself.
Line breaks after terminators are tolerated.

The file is split once (Python's `str.split`) and the segments become a pandas table
(`Segments.frame`: id, the text after the id, 1-based position, transaction number): the
837 and 835 readers find their loops with column operations over that table, not a Python
loop per segment. Envelope problems (a truncated file, an SE count that does not match, an
ST without SE, a segment outside any transaction) are `X12Error`s naming the file, the
segment position and the problem.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from denial_model.errors import X12Error

__all__ = ["Segments", "iter_segments", "join_groups", "read_segments", "transaction_sets"]

_ISA_LENGTH = 106
_ENVELOPE = ("ISA", "GS", "ST", "SE", "GE", "IEA")


@dataclass
class Segments:
    """The segments of one file inside transactions (envelope segments removed), and per
    transaction its kind (ST01), version and separators."""

    path: Path
    frame: pd.DataFrame  # id, rest (text after 'ID<sep>'), position, tx
    transactions: pd.DataFrame  # tx -> kind, version, element, component
    notes: list[str] = field(default_factory=list)  # what was read leniently, reported by ingest

    def error(self, position: int | None, problem: str) -> X12Error:
        if position is None:
            return X12Error(f"{self.path}: {problem}")
        seg_id = self.frame.loc[self.frame["position"] == position, "id"]
        name = f" ({seg_id.iloc[0]})" if len(seg_id) else ""
        return X12Error(f"{self.path}: segment {position}{name}: {problem}")

    def elements(self, rows: pd.DataFrame, count: int) -> pd.DataFrame:
        """Elements 1..count of `rows` (columns 1..count, '' when absent), split by each
        row's transaction's element separator."""
        seps = rows["tx"].map(self.transactions["element"])
        return _split_columns(rows["rest"], seps, count)

    def components(self, values: pd.Series, txs: pd.Series, count: int) -> pd.DataFrame:
        """Components 1..count of composite `values` by each transaction's separator."""
        return _split_columns(values, txs.map(self.transactions["component"]), count)


def _split_arrow(arr: pa.Array, sep: str, count: int, max_splits: int) -> list[pa.Array]:
    """`arr` split on `sep` into `count` string arrays ('' where a value has fewer parts)."""
    lists = pc.split_pattern(arr, pattern=sep, max_splits=max_splits)
    offsets = lists.offsets.to_numpy()
    flat = lists.flatten()
    lengths = np.diff(offsets)
    out = []
    for k in range(count):
        index = np.where(lengths > k, offsets[:-1] + k, -1)
        taken = flat.take(pa.array(index, mask=index < 0))
        out.append(pc.fill_null(taken, ""))
    return out


def _as_arrow(values: pd.Series) -> pa.Array:
    if isinstance(values.dtype, pd.ArrowDtype):
        return pa.array(values.array).cast(pa.string())
    return pa.array(values.astype(object).fillna("").to_numpy(), pa.string())


def _split_columns(
    values: pd.Series, seps: pd.Series, count: int, max_splits: int | None = None
) -> pd.DataFrame:
    """`values` split on `seps` into columns 1..count ('' when absent; what lies beyond is
    dropped, or kept whole in the last column with `max_splits=count - 1`), by Arrow's
    string kernels: no Python call per value."""
    out = pd.DataFrame(index=values.index, columns=range(1, count + 1), dtype=object)
    out[:] = ""
    for sep in pd.unique(seps):
        mask = (seps == sep).to_numpy()
        rows = np.flatnonzero(mask)
        parts = _split_arrow(_as_arrow(values[mask]), sep, count, count if max_splits is None else max_splits)
        for k, part in enumerate(parts):
            out.iloc[rows, k] = part.to_numpy(zero_copy_only=False)
    return out


def join_groups(keys: pd.Series | np.ndarray, values: pd.Series | np.ndarray, sep: str) -> pd.Series:
    """The `values` of each key joined with `sep`, in their order (a Series indexed by the
    distinct keys, sorted): one Arrow kernel instead of a Python call per group."""
    keys = np.asarray(keys)
    values = pd.Series(np.asarray(values, dtype=object)).fillna("").astype(str).to_numpy(dtype=object)
    if not len(keys):
        return pd.Series(dtype=object)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.r_[0, np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1]
    offsets = np.r_[starts, len(keys)].astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values[order], pa.string()))
    joined = pc.binary_join(lists, sep).to_numpy(zero_copy_only=False)
    return pd.Series(joined, index=sorted_keys[starts])


def _separators(path: Path, text: str, start: int) -> tuple[str, str, str]:
    """(element, component, terminator) declared by the ISA at `start`."""
    isa = text[start : start + _ISA_LENGTH]
    if len(isa) < _ISA_LENGTH:
        raise X12Error(f"{path}: the ISA segment is truncated ({len(isa)} of {_ISA_LENGTH} characters)")
    element = isa[3]
    fields = isa.split(element)
    if len(fields) < 17:
        raise X12Error(f"{path}: the ISA segment has {len(fields) - 1} elements, not 16 (wrong separators?)")
    component, terminator = isa[104], isa[105]
    if len({element, component, terminator}) < 3 or terminator.isalnum():
        raise X12Error(
            f"{path}: the ISA declares separators that cannot be told apart "
            f"(element {element!r}, component {component!r}, terminator {terminator!r})"
        )
    return element, component, terminator


PIECE = 4 << 20  # characters of a file read at a time (cut after an SE: whole transactions)


def _segments(text: str, terminator: str) -> pa.Array:
    """The text split on the terminator, trimmed of line breaks, empty ones dropped: in
    Arrow memory, no Python string per segment."""
    parts = pc.split_pattern(pa.array([text], pa.large_string()), pattern=terminator).flatten()
    parts = pc.utf8_trim(parts, "\r\n ")
    return parts.filter(pc.not_equal(parts, "")).cast(pa.string())


def _pieces(text: str, element: str, terminator: str) -> Iterator[tuple[int, int]]:
    """(start, end) of pieces of about `PIECE` characters, each ending after an SE segment
    (so a piece holds whole transactions), the last one at the end of the text."""
    se = re.compile(re.escape(terminator) + r"\s*SE" + re.escape(element))
    start = 0
    while start < len(text):
        found = se.search(text, min(start + PIECE, len(text)))
        end = text.find(terminator, found.end()) + 1 if found else 0
        end = len(text) if end <= 0 else end
        yield start, end
        start = end


def iter_segments(path: str | Path) -> Iterator[Segments]:
    """The file's segments in pieces of whole transactions (bounded memory whatever the
    file's size), each piece's envelopes checked; loops never cross a transaction, so a
    reader reads each piece as it would read the whole."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("latin-1")
    except OSError as exc:
        raise X12Error(f"{path}: cannot read: {exc.strerror or exc}") from None
    start = text.find("ISA")
    if start < 0 or text[:start].strip():
        raise X12Error(f"{path}: not an X12 file (it does not start with an ISA segment)")
    element, component, terminator = _separators(path, text, start)
    text = text[start:]
    position = tx_offset = 0
    version = ""  # of the functional group still open when a piece ends
    ends = list(_pieces(text, element, terminator))
    for k, (a, b) in enumerate(ends):
        seg_id, rest = _split_arrow(_segments(text[a:b], terminator), element, 2, 1)
        ids = pc.dictionary_encode(seg_id)
        frame = pd.DataFrame(
            {
                "id": pd.Categorical.from_codes(ids.indices.to_numpy(), ids.dictionary.to_pylist()),
                "rest": pd.arrays.ArrowExtensionArray(rest),
                "position": np.arange(position + 1, position + len(rest) + 1, dtype=np.int64),
            }
        )
        position += len(frame)
        _same_separators(path, frame, element, component)
        body, tx = _envelopes(
            path, frame, element, component, tx_offset, last=k == len(ends) - 1, group_version=version
        )
        tx_offset += len(tx)
        version = tx["version"].iloc[-1] if len(tx) else version
        yield Segments(path, body, tx)


def _same_separators(path: Path, frame: pd.DataFrame, element: str, component: str) -> None:
    isa = frame[frame["id"] == "ISA"]
    for pos, rest in zip(isa["position"], isa["rest"], strict=True):
        if len(rest) < 101 or rest[-1] != component:
            raise X12Error(
                f"{path}: segment {pos} (ISA): its separators differ from the file's first ISA "
                f"({element!r}, {component!r}); split the file by interchange"
            )


def read_segments(path: str | Path) -> Segments:
    """The whole file's segments at once (for small files and tests; readers iterate)."""
    pieces = list(iter_segments(path))
    frame = pd.concat([p.frame for p in pieces], ignore_index=True)
    return Segments(Path(path), frame, pd.concat([p.transactions for p in pieces]))


def transaction_sets(path: str | Path, kind: str, guide: str, name: str) -> Iterator[Segments]:
    """The file's pieces when every transaction is a `kind` (ST01) of the implementation
    guide `guide` (e.g. "X222"); a file of another kind or version is refused naming it."""
    for segs in iter_segments(path):
        tx = segs.transactions
        wrong = tx[tx["kind"] != kind]
        if len(wrong):
            raise segs.error(None, f"a {wrong['kind'].iloc[0]} transaction where an {kind} was expected")
        old = tx[~tx["version"].str.contains(guide)]
        if len(old):
            raise segs.error(None, f"version {old['version'].iloc[0]!r} is not an {name}")
        yield segs


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _envelopes(
    path: Path,
    frame: pd.DataFrame,
    element: str,
    component: str,
    tx_offset: int,
    last: bool = True,
    group_version: str = "",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check ISA/IEA, GS/GE, ST/SE (counts and control numbers) with column operations;
    return the transaction segments with their transaction number, and the transactions."""
    cat = frame["id"].cat
    ids = np.asarray(cat.categories, dtype=object)[cat.codes.to_numpy()]  # shared strings: 8 bytes a segment
    codes = cat.codes.to_numpy()
    code_of = {name: i for i, name in enumerate(cat.categories)}
    pos = frame["position"].to_numpy()
    if last and ids[-1] != "IEA":
        raise X12Error(
            f"{path}: segment {pos[-1]}: the interchange has no IEA "
            f"(truncated, or segments not ended by the declared terminator)"
        )
    st, se = ids == "ST", ids == "SE"
    depth = np.cumsum(st.astype(int) - se.astype(int))
    opened = depth - st.astype(int)  # transactions open before each segment
    if (depth > 1).any():
        i = _first(depth > 1)
        raise X12Error(f"{path}: segment {pos[i]} (ST): the transaction before it has no SE")
    if (depth < 0).any():
        i = _first(depth < 0)
        raise X12Error(f"{path}: segment {pos[i]} (SE): no ST opens it")
    envelope = np.isin(codes, [code_of[e] for e in _ENVELOPE if e in code_of])
    outside = (opened == 0) & ~st & ~envelope
    if outside.any():
        i = _first(outside)
        raise X12Error(f"{path}: segment {pos[i]} ({ids[i]}): outside any transaction")
    enders = envelope & ~st & ~se & (opened > 0)
    if enders.any():
        i = _first(enders)
        raise X12Error(
            f"{path}: segment {pos[i]} ({ids[i]}): a transaction is still open (its SE is missing)"
        )
    st_at, se_at = np.flatnonzero(st), np.flatnonzero(se)
    rest = frame["rest"]

    def split(at: np.ndarray, count: int) -> pd.DataFrame:
        part = rest.iloc[at]
        return _split_columns(part, pd.Series(element, index=part.index), count).set_axis(
            range(count), axis=1
        )

    st_el, se_el = split(st_at, 3), split(se_at, 2)
    counts = se_at - st_at + 1
    wrong = se_el[0].to_numpy() != counts.astype(str)
    if wrong.any():
        k = _first(wrong)
        raise X12Error(
            f"{path}: segment {pos[se_at[k]]} (SE): SE01 says {se_el[0].iloc[k]!r} segments, "
            f"the transaction has {counts[k]} (truncated or spliced?)"
        )
    mismatch = se_el[1].to_numpy() != st_el[1].to_numpy()
    if mismatch.any():
        k = _first(mismatch)
        raise X12Error(
            f"{path}: segment {pos[se_at[k]]} (SE): control number {se_el[1].iloc[k]!r} "
            f"does not match ST02 {st_el[1].iloc[k]!r}"
        )
    gs_at = np.flatnonzero(ids == "GS")
    gs_version = np.r_[np.array([group_version], dtype=object), split(gs_at, 8)[7].to_numpy()]
    group_of_st = np.searchsorted(gs_at, st_at)  # 0: the group opened in an earlier piece
    version = np.where(st_el[2].to_numpy() != "", st_el[2].to_numpy(), gs_version[group_of_st])
    tx_no = tx_offset + np.cumsum(st) - 1
    inside = (opened > 0) & ~se
    body = frame[inside].assign(tx=tx_no[inside].astype(np.int32))
    transactions = pd.DataFrame(
        {"kind": st_el[0].to_numpy(), "version": version, "element": element, "component": component},
        index=pd.RangeIndex(tx_offset, tx_offset + len(st_at), name="tx"),
    )
    return body.reset_index(drop=True), transactions
