"""X12 interchanges as segments: the separators each ISA declares, the envelopes checked.

An X12 file is one or more interchanges (ISA ... IEA), each holding functional groups
(GS ... GE) of transactions (ST ... SE). The ISA segment is fixed-width (106 characters):
its 4th character is the element separator, ISA11 the repetition separator, ISA16 the
component separator and the character after it the segment terminator, so every
interchange says how to split itself. Line breaks after terminators are tolerated.

Envelope problems (a truncated file, an SE count that does not match, an ST without SE, a
GS/ST control number echoed wrong) are `X12Error`s naming the file, the 1-based segment
position and the problem. The loops inside a transaction are read by `claims.py` (837P)
and `remits.py` (835); this module only splits and checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from denial_model.errors import X12Error

__all__ = ["Segment", "Transaction", "read_transactions"]

_ISA_LENGTH = 106


@dataclass(frozen=True)
class Segment:
    """One segment: its id, its elements (element 1 first; composites left as text), and
    its 1-based position in the file, for messages."""

    id: str
    elements: tuple[str, ...]
    position: int

    def get(self, i: int) -> str:
        """Element `i` (1-based, as the implementation guides number them), '' when absent."""
        return self.elements[i - 1] if 0 < i <= len(self.elements) else ""


@dataclass(frozen=True)
class Transaction:
    """One ST ... SE transaction set with the separators of its interchange."""

    path: Path
    kind: str  # ST01: "837" or "835"
    version: str  # GS08 / ST03: "005010X222A1", "005010X221A1", ...
    segments: tuple[Segment, ...]  # between ST and SE, exclusive
    component: str  # the component separator (ISA16)
    repetition: str  # the repetition separator (ISA11)
    notes: list[str] = field(default_factory=list)  # what was read leniently, reported by ingest

    def components(self, value: str) -> list[str]:
        return value.split(self.component)

    def procedure(self, segment: Segment, value: str, qualifiers: tuple[str, ...]) -> list[str]:
        """A product/service composite (SV101, SVC01). A composite written with another
        common separator than the ISA declares (some generators always write '>') is read,
        and noted, when that is the only way it starts with a product qualifier."""
        parts = self.components(value)
        if parts[0] in qualifiers:
            return parts
        for other in (">", ":", "^", "|"):
            alt = value.split(other)
            if other != self.component and len(alt) > 1 and alt[0] in qualifiers:
                self.notes.append(
                    f"{self.path.name}: segment {segment.position} ({segment.id}): {value!r} is split on "
                    f"{other!r} where the ISA declares {self.component!r}"
                )
                return alt
        raise self.error(
            segment,
            f"{value!r} is not a composite starting with a product qualifier ({', '.join(qualifiers)})",
        )

    def error(self, segment: Segment | None, problem: str) -> X12Error:
        where = f"segment {segment.position} ({segment.id})" if segment is not None else "transaction"
        return X12Error(f"{self.path}: {where}: {problem}")


def _separators(path: Path, text: str, start: int) -> tuple[str, str, str, str]:
    """(element, repetition, component, terminator) declared by the ISA at `start`."""
    isa = text[start : start + _ISA_LENGTH]
    if len(isa) < _ISA_LENGTH:
        raise X12Error(f"{path}: the ISA segment is truncated ({len(isa)} of {_ISA_LENGTH} characters)")
    element = isa[3]
    fields = isa.split(element)
    if len(fields) < 17:
        raise X12Error(f"{path}: the ISA segment has {len(fields) - 1} elements, not 16 (wrong separators?)")
    component, terminator = isa[104], isa[105]
    repetition = fields[11] if len(fields[11]) == 1 and not fields[11].isalnum() else ""
    if len({element, component, terminator}) < 3 or terminator.isalnum():
        raise X12Error(
            f"{path}: the ISA declares separators that cannot be told apart "
            f"(element {element!r}, component {component!r}, terminator {terminator!r})"
        )
    return element, repetition, component, terminator


def read_transactions(path: str | Path) -> Iterator[Transaction]:
    """Every transaction set in the file, in order, its envelopes checked."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("latin-1")
    except OSError as exc:
        raise X12Error(f"{path}: cannot read: {exc.strerror or exc}") from None
    start = text.find("ISA")
    if start < 0 or text[:start].strip():
        raise X12Error(f"{path}: not an X12 file (it does not start with an ISA segment)")
    position = 0
    while True:
        element, repetition, component, terminator = _separators(path, text, start)
        segments, consumed = _interchange(path, text, start, element, terminator, position)
        position += len(segments)
        yield from _transactions(path, segments, component, repetition)
        start += consumed
        rest = text[start:].lstrip()
        if not rest:
            return
        if not rest.startswith("ISA"):
            raise X12Error(f"{path}: segment {position + 1}: text after an IEA is not another interchange")
        start = len(text) - len(rest)


def _interchange(
    path: Path, text: str, start: int, element: str, terminator: str, position: int
) -> tuple[list[Segment], int]:
    """The segments of the interchange at `start` up to its IEA, and the characters used."""
    parts = text[start:].split(terminator)
    segments = []
    for i, raw in enumerate(parts):
        raw = raw.strip("\r\n")
        if not raw:
            continue
        fields = raw.split(element)
        segments.append(Segment(fields[0], tuple(fields[1:]), position + len(segments) + 1))
        if fields[0] == "IEA":
            return segments, sum(len(p) + 1 for p in parts[: i + 1])
    raise X12Error(
        f"{path}: segment {position + len(segments)}: the interchange has no IEA "
        f"(truncated, or segments not ended by the declared terminator {terminator!r})"
    )


def _transactions(
    path: Path, segments: list[Segment], component: str, repetition: str
) -> Iterator[Transaction]:
    """Split one interchange's segments into transactions, checking GS/GE and ST/SE."""
    isa, iea = segments[0], segments[-1]
    groups = transactions = 0
    version = ""
    st: Segment | None = None
    body: list[Segment] = []
    for seg in segments[1:-1]:
        if seg.id == "GS":
            groups += 1
            version = seg.get(8)
        elif seg.id == "GE":
            if st is not None:
                raise X12Error(f"{path}: segment {seg.position} (GE): transaction {st.get(2)} has no SE")
        elif seg.id == "ST":
            if st is not None:
                raise X12Error(f"{path}: segment {seg.position} (ST): the transaction before has no SE")
            st, body = seg, []
        elif seg.id == "SE":
            if st is None:
                raise X12Error(f"{path}: segment {seg.position} (SE): no ST opens it")
            count = len(body) + 2
            if seg.get(1) != str(count):
                raise X12Error(
                    f"{path}: segment {seg.position} (SE): SE01 says {seg.get(1)!r} segments, "
                    f"the transaction has {count} (truncated or spliced?)"
                )
            if seg.get(2) != st.get(2):
                raise X12Error(
                    f"{path}: segment {seg.position} (SE): control number {seg.get(2)!r} "
                    f"does not match ST02 {st.get(2)!r}"
                )
            transactions += 1
            yield Transaction(path, st.get(1), st.get(3) or version, tuple(body), component, repetition)
            st = None
        elif st is not None:
            body.append(seg)
        else:
            raise X12Error(f"{path}: segment {seg.position} ({seg.id}): outside any transaction")
    if st is not None:
        raise X12Error(f"{path}: segment {st.position} (ST): transaction {st.get(2)} has no SE (truncated?)")
    if iea.id != "IEA" or iea.get(2) != isa.get(13):
        raise X12Error(f"{path}: segment {iea.position} ({iea.id}): IEA does not close ISA {isa.get(13)!r}")
    if iea.get(1) != str(groups):
        raise X12Error(
            f"{path}: segment {iea.position} (IEA): IEA01 says {iea.get(1)!r} groups, found {groups}"
        )
