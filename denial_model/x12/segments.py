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

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from denial_model.errors import X12Error

__all__ = ["Segments", "join_groups", "read_segments", "read_transaction_set"]

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

    def batches(self, segments: int = 400_000) -> list[Segments]:
        """The file in pieces of whole transactions (about `segments` segments each), so a
        reader's working arrays stay bounded whatever the file's size. Loops never cross a
        transaction, so a piece reads exactly as it would in the whole."""
        tx = self.frame["tx"].to_numpy()
        if len(tx) <= segments:
            return [self]
        starts = np.r_[0, np.flatnonzero(tx[1:] != tx[:-1]) + 1]
        cuts = [0]
        for start in starts:
            if start - cuts[-1] >= segments:
                cuts.append(int(start))
        cuts.append(len(tx))
        return [
            Segments(self.path, self.frame.iloc[a:b].reset_index(drop=True), self.transactions, self.notes)
            for a, b in itertools.pairwise(cuts)
        ]

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


_PIECE = 32 << 20  # characters split at a time: the split's working memory stays small


def _segments(text: str, terminator: str) -> pa.Array:
    """The text split on the terminator, trimmed of line breaks, empty ones dropped: in
    Arrow memory, no Python string per segment; a piece at a time, cut after a terminator."""
    pieces = []
    start = 0
    while start < len(text):
        end = text.find(terminator, min(start + _PIECE, len(text)) - 1)
        end = len(text) if end < 0 else end + 1
        parts = pc.split_pattern(pa.array([text[start:end]], pa.large_string()), pattern=terminator).flatten()
        parts = pc.utf8_trim(parts, "\r\n ")
        pieces.append(parts.filter(pc.not_equal(parts, "")).cast(pa.string()))
        start = end
    return pa.concat_arrays(pieces) if pieces else pa.array([], pa.string())


def _split(path: Path, text: str) -> list[tuple[pa.Array, str, str]]:
    """(segments, element, component) per run of interchanges sharing separators."""
    runs = []
    start = text.find("ISA")
    if start < 0 or text[:start].strip():
        raise X12Error(f"{path}: not an X12 file (it does not start with an ISA segment)")
    while True:
        element, component, terminator = _separators(path, text, start)
        raw = _segments(text[start:], terminator)
        isa_at = np.flatnonzero(pc.starts_with(raw, "ISA").to_numpy(zero_copy_only=False))
        isas = raw.take(pa.array(isa_at)).to_pylist()
        other = [
            i
            for i, isa in zip(isa_at[1:], isas[1:], strict=True)
            if (isa[3:4], isa[-1:]) != (element, component)
        ]
        if not other:
            runs.append((raw, element, component))
            return runs
        runs.append((raw.slice(0, other[0]), element, component))
        start = text.find(isas[list(isa_at).index(other[0])], start + 1)


def read_segments(path: str | Path) -> Segments:
    """The file's segments, its envelopes checked."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("latin-1")
    except OSError as exc:
        raise X12Error(f"{path}: cannot read: {exc.strerror or exc}") from None
    frames, txs = [], []
    offset = 0
    for raw, element, component in _split(path, text):
        seg_id, rest = _split_arrow(raw, element, 2, 1)
        ids = pc.dictionary_encode(seg_id)
        frame = pd.DataFrame(
            {
                "id": pd.Categorical.from_codes(ids.indices.to_numpy(), ids.dictionary.to_pylist()),
                "rest": pd.arrays.ArrowExtensionArray(rest),
            }
        )
        frame["position"] = np.arange(offset + 1, offset + len(frame) + 1, dtype=np.int64)
        offset += len(frame)
        frame, tx = _envelopes(path, frame, element, component, len(txs) and sum(len(t) for t in txs))
        frames.append(frame)
        txs.append(tx)
    transactions = (
        pd.concat(txs) if txs else pd.DataFrame(columns=["kind", "version", "element", "component"])
    )
    return Segments(path, pd.concat(frames, ignore_index=True), transactions)


def read_transaction_set(path: str | Path, kind: str, guide: str, name: str) -> Segments:
    """The file's segments when every transaction is a `kind` (ST01) of the implementation
    guide `guide` (e.g. "X222"); a file of another kind or version is refused naming it."""
    segs = read_segments(path)
    tx = segs.transactions
    wrong = tx[tx["kind"] != kind]
    if len(wrong):
        raise segs.error(None, f"a {wrong['kind'].iloc[0]} transaction where an {kind} was expected")
    old = tx[~tx["version"].str.contains(guide)]
    if len(old):
        raise segs.error(None, f"version {old['version'].iloc[0]!r} is not an {name}")
    return segs


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _envelopes(
    path: Path, frame: pd.DataFrame, element: str, component: str, tx_offset: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check ISA/IEA, GS/GE, ST/SE (counts and control numbers) with column operations;
    return the transaction segments with their transaction number, and the transactions."""
    ids = frame["id"].to_numpy()
    pos = frame["position"].to_numpy()
    if ids[-1] != "IEA":
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
    outside = (opened == 0) & ~st & ~np.isin(ids, _ENVELOPE)
    if outside.any():
        i = _first(outside)
        raise X12Error(f"{path}: segment {pos[i]} ({ids[i]}): outside any transaction")
    enders = np.isin(ids, ("GE", "IEA", "GS", "ISA")) & (opened > 0)
    if enders.any():
        i = _first(enders)
        raise X12Error(
            f"{path}: segment {pos[i]} ({ids[i]}): a transaction is still open (its SE is missing)"
        )
    st_at, se_at = np.flatnonzero(st), np.flatnonzero(se)
    rest = frame["rest"]
    sep = pd.Series(element, index=frame.index)
    st_el = _split_columns(rest.iloc[st_at], sep.iloc[st_at], 3).set_axis(range(3), axis=1)
    se_el = _split_columns(rest.iloc[se_at], sep.iloc[se_at], 2).set_axis(range(2), axis=1)
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
    gs_version = _split_columns(rest.iloc[gs_at], sep.iloc[gs_at], 8)[8].to_numpy()
    group_of_st = np.searchsorted(gs_at, st_at) - 1
    version = np.where(st_el[2].to_numpy() != "", st_el[2].to_numpy(), gs_version[np.maximum(group_of_st, 0)])
    tx_no = tx_offset + np.cumsum(st) - 1
    inside = (opened > 0) & ~se
    body = frame[inside].assign(tx=tx_no[inside])
    transactions = pd.DataFrame(
        {"kind": st_el[0].to_numpy(), "version": version, "element": element, "component": component},
        index=pd.RangeIndex(tx_offset, tx_offset + len(st_at), name="tx"),
    )
    return body.reset_index(drop=True), transactions
