"""835 (005010X221A1) remittances as remit-line rows: what the payer decided, per line.

One row per service payment (SVC, loop 2110); a claim paid without service lines (CLP with
no SVC) is one row with `claim_level` set, which the join applies to every line of the
claim. Columns:

| column | from |
|---|---|
| claim_id | CLP01 (the CLM01 the 837 sent) |
| claim_status | CLP02 (1-3 processed, 4 denied, 19-21 processed and forwarded, 22 reversal, ...) |
| payer_claim_number | CLP07 |
| hcpcs_code, modifiers | SVC01-2, SVC01-3..6 (the submitted SVC06 when the payer changed the code) |
| billed_amount, paid_amount, units_paid | SVC02, SVC03, SVC05 |
| service_date | DTM*472 or DTM*150 of the line, else DTM*232 of the claim |
| line_control_number | REF*6R of the line |
| adjustments | every CAS triplet of the line (of the claim for a claim-level row): `CO-45:50.00;PR-1:9` |
| remarks | LQ*HE remark codes of the line |
| adjudication_date | DTM*405 (production date), else BPR16 |

plus `remit` (file and CLP position: one adjudication of one claim), `source` (file and
the SVC segment's position) and `order` (position in the input, so the latest
adjudication can be told when dates tie).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from denial_model.x12.claims import _date
from denial_model.x12.segments import Segment, Transaction, read_transactions

__all__ = ["CAS_GROUPS", "read_835"]

CAS_GROUPS = ("CO", "CR", "OA", "PI", "PR")


def read_835(paths: list[str | Path], notes: list[str] | None = None) -> pd.DataFrame:
    """Every service payment of every 835 in `paths`, in input order."""
    rows: list[dict] = []
    for path in paths:
        for tx in read_transactions(path):
            if tx.kind != "835":
                raise tx.error(None, f"is a {tx.kind} transaction where an 835 was expected")
            if "X221" not in tx.version:
                raise tx.error(None, f"version {tx.version!r} is not an 835 (005010X221A1)")
            rows.extend(_Remits(tx, len(rows)).rows())
            if notes is not None:
                notes.extend(tx.notes)
    return pd.DataFrame(rows, columns=_COLUMNS)


_COLUMNS = [
    "claim_id", "claim_status", "payer_claim_number", "hcpcs_code", "modifiers", "billed_amount",
    "paid_amount", "units_paid", "service_date", "line_control_number", "adjustments", "remarks",
    "adjudication_date", "claim_level", "remit", "source", "order",
]  # fmt: skip


class _Remits:
    def __init__(self, tx: Transaction, order: int):
        self.tx, self.order = tx, order
        self.adjudicated = ""
        self.claim: dict | None = None
        self.line: dict | None = None
        self.out: list[dict] = []

    def rows(self) -> list[dict]:
        for seg in self.tx.segments:
            handler = getattr(self, f"_{seg.id.lower()}", None)
            if handler is not None:
                handler(seg)
        self._close_claim()
        return self.out

    def _bpr(self, seg: Segment) -> None:
        if seg.get(16):
            self.adjudicated = _date(self.tx, Segment("DTP", ("", "D8", seg.get(16)), seg.position))

    def _dtm(self, seg: Segment) -> None:
        qualifier = seg.get(1)
        day = _date(self.tx, Segment("DTP", ("", "D8", seg.get(2)), seg.position))
        if qualifier == "405" and self.claim is None:
            self.adjudicated = day
        elif self.line is not None and qualifier in ("472", "150"):
            self.line["service_date"] = day
        elif self.claim is not None and self.line is None and qualifier == "232":
            self.claim["service_date"] = day

    def _clp(self, seg: Segment) -> None:
        self._close_claim()
        if not seg.get(1):
            raise self.tx.error(seg, "CLP01 (the claim's patient control number) is empty")
        self.claim = {
            "claim_id": seg.get(1),
            "claim_status": seg.get(2),
            "payer_claim_number": seg.get(7),
            "billed_amount": seg.get(3),
            "paid_amount": seg.get(4),
            "service_date": "",
            "adjustments": [],
            "segment": seg,
            "lines": [],
        }

    def _svc(self, seg: Segment) -> None:
        if self.claim is None:
            raise self.tx.error(seg, "a service payment (SVC) outside a claim (CLP)")
        procedure = self.tx.procedure(
            seg, seg.get(6) or seg.get(1), ("HC", "AD", "ER", "IV", "N4", "NU", "WK")
        )
        procedure += [""] * (6 - len(procedure))
        self.line = {
            "hcpcs_code": procedure[1],
            "modifiers": ";".join(m for m in procedure[2:6] if m),
            "billed_amount": seg.get(2),
            "paid_amount": seg.get(3),
            "units_paid": seg.get(5) or "1",
            "service_date": "",
            "line_control_number": "",
            "adjustments": [],
            "remarks": [],
            "segment": seg,
        }
        self.claim["lines"].append(self.line)

    def _cas(self, seg: Segment) -> None:
        group = seg.get(1)
        if group not in CAS_GROUPS:
            raise self.tx.error(seg, f"CAS01 {group!r} is not a claim adjustment group code {CAS_GROUPS}")
        target = self.line if self.line is not None else self.claim
        if target is None:
            raise self.tx.error(seg, "an adjustment (CAS) outside a claim")
        for i in range(2, 20, 3):
            reason, amount = seg.get(i), seg.get(i + 1)
            if reason:
                target["adjustments"].append(f"{group}-{reason}:{amount or '0'}")

    def _ref(self, seg: Segment) -> None:
        if self.line is not None and seg.get(1) == "6R":
            self.line["line_control_number"] = seg.get(2)

    def _lq(self, seg: Segment) -> None:
        if self.line is not None and seg.get(1) == "HE":
            self.line["remarks"].append(seg.get(2))

    def _close_claim(self) -> None:
        claim, self.claim, self.line = self.claim, None, None
        if claim is None:
            return
        if not self.adjudicated:
            raise self.tx.error(
                claim["segment"], "no production date (DTM*405) or BPR16 date before the claim"
            )
        lines = claim["lines"] or [
            {
                "hcpcs_code": "",
                "modifiers": "",
                "billed_amount": claim["billed_amount"],
                "paid_amount": claim["paid_amount"],
                "units_paid": "",
                "service_date": "",
                "line_control_number": "",
                "adjustments": [],
                "remarks": [],
                "segment": claim["segment"],
            }
        ]
        for line in lines:
            adjustments = line["adjustments"] + (claim["adjustments"] if not claim["lines"] else [])
            self.out.append(
                {
                    "claim_id": claim["claim_id"],
                    "claim_status": claim["claim_status"],
                    "payer_claim_number": claim["payer_claim_number"],
                    "hcpcs_code": line["hcpcs_code"],
                    "modifiers": line["modifiers"],
                    "billed_amount": line["billed_amount"],
                    "paid_amount": line["paid_amount"],
                    "units_paid": line["units_paid"],
                    "service_date": line["service_date"] or claim["service_date"],
                    "line_control_number": line["line_control_number"],
                    "adjustments": ";".join(adjustments),
                    "remarks": ";".join(line["remarks"]),
                    "adjudication_date": self.adjudicated,
                    "claim_level": not claim["lines"],
                    "remit": f"{self.tx.path.name}#{claim['segment'].position}",
                    "source": f"{self.tx.path.name}#{line['segment'].position}",
                    "order": self.order + len(self.out),
                }
            )
