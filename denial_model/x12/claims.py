"""837P (005010X222A1/A2) professional claims as claim-line rows.

One row per service line (loop 2400), in the claim-line table's columns
(docs/claim-lines.md), read from the loops the implementation guide defines:

| column | from |
|---|---|
| claim_id | CLM01 (the patient control number the 835 echoes in CLP01) |
| line_number | LX01 |
| patient_id | subscriber NM1*IL NM109; a dependent (2000C) adds a digest of NM1*QC name and DMG birth date |
| provider_npi | billing provider NM1*85 NM109 (XX) |
| payer_id | payer NM1*PR NM109 |
| payer_type | SBR09 claim filing indicator (`PAYER_TYPES`); `payer_map` overrides per payer id |
| service_date | line DTP*472 (D8, or the start of RD8), else a claim DTP*472 |
| submission_date | BHT04 |
| place_of_service | SV105, else CLM05-1 |
| hcpcs_code, modifiers | SV101-2, SV101-3..6 |
| billed_amount, units | SV102, SV104 |
| drug_description | SV101-7 (the description an unlisted code carries) |
| ndc, ndc_quantity, ndc_unit | LIN03 (LIN02 = N4), CTP04, CTP05-1 |
| diagnosis_codes | the HI codes the line's SV107 pointers name, ICD-10 dotted |
| prior_auth_number | REF*G1 of the line, else of the claim |
| documentation | unknown: an 837 does not carry it (`UNKNOWN_DOCUMENTATION`) |
| dose_mg | unknown (empty): an 837 carries the NDC quantity, not the dose |

and, beyond the table's columns, `line_control_number` (REF*6R, what the 835 echoes),
`claim_frequency` (CLM05-3: 1 original, 7 replacement, 8 void) and `source` (file and the
LX segment's position), so every row can be traced to its segments.

Other payers' loops inside a claim (2320/2330, coordination of benefits) and line
adjudication (2430) are passed over: they describe someone else's decision.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from denial_model.x12.segments import Segment, Transaction, read_transactions

__all__ = ["PAYER_TYPES", "UNKNOWN_DOCUMENTATION", "read_837"]

# SBR09 claim filing indicator -> payer type. The table has four payer types; federal
# programs other than Medicare and Medicaid (TRICARE, VA, other federal) are read as
# commercial, the nearest in how they adjudicate drugs; `payer_map` overrides any payer.
PAYER_TYPES: dict[str, str] = {
    "MA": "medicare",
    "MB": "medicare",
    "MC": "medicaid",
    "16": "medicare_advantage",
    **dict.fromkeys(
        (
            "09",
            "10",
            "11",
            "12",
            "13",
            "14",
            "15",
            "17",
            "AM",
            "BL",
            "CH",
            "CI",
            "DS",
            "FI",
            "HM",
            "LM",
            "OF",
            "TV",
            "VA",
            "WC",
            "ZZ",
        ),
        "commercial",
    ),
}
# What the documentation column holds for a line whose documentation is not known (an 837
# does not carry it): rules that need a document do not fire on it (table.ClaimFrame).
UNKNOWN_DOCUMENTATION = "unknown"


def read_837(
    paths: list[str | Path], payer_map: dict[str, str] | None = None, notes: list[str] | None = None
) -> pd.DataFrame:
    """Every service line of every 837P claim in `paths`, as claim-line rows (text cells,
    as a CSV export holds them; `validate` types them)."""
    rows: list[dict] = []
    for path in paths:
        for tx in read_transactions(path):
            if tx.kind != "837":
                raise tx.error(None, f"is a {tx.kind} transaction where an 837 was expected")
            if "X222" not in tx.version:
                raise tx.error(None, f"version {tx.version!r} is not an 837P (005010X222A1/A2)")
            rows.extend(_Claims(tx, payer_map or {}).rows())
            if notes is not None:
                notes.extend(tx.notes)
    return pd.DataFrame(rows, columns=_COLUMNS)


_COLUMNS = [
    "claim_id", "line_number", "patient_id", "provider_npi", "payer_id", "payer_type", "service_date",
    "submission_date", "place_of_service", "hcpcs_code", "modifiers", "units", "billed_amount", "dose_mg",
    "ndc", "ndc_quantity", "ndc_unit", "drug_description", "diagnosis_codes", "prior_auth_number",
    "documentation", "line_control_number", "claim_frequency", "source",
]  # fmt: skip


def _date(tx: Transaction, seg: Segment) -> str:
    """DTP03 as YYYY-MM-DD (D8, or the first day of an RD8 range)."""
    qualifier, value = seg.get(2), seg.get(3)
    day = value[:8] if qualifier == "RD8" else value
    if qualifier not in ("D8", "RD8") or len(day) != 8 or not day.isdigit():
        raise tx.error(seg, f"date {value!r} ({qualifier}) is not D8 or RD8 CCYYMMDD")
    return f"{day[:4]}-{day[4:6]}-{day[6:]}"


def _icd10(code: str) -> str:
    return code if len(code) <= 3 or "." in code else f"{code[:3]}.{code[3:]}"


class _Claims:
    """The loop state of one transaction, read segment by segment."""

    def __init__(self, tx: Transaction, payer_map: dict[str, str]):
        self.tx, self.payer_map = tx, payer_map
        self.submitted = ""
        self.provider = self.payer_id = self.filing = self.subscriber = self.patient = ""
        self.hl_level = ""
        self.claim: dict | None = None
        self.line: dict | None = None
        self.out: list[dict] = []

    def rows(self) -> list[dict]:
        for seg in self.tx.segments:
            handler = getattr(self, f"_{seg.id.lower()}", None)
            if handler is not None:
                handler(seg)
        self._close_claim(None)
        return self.out

    # -- header and hierarchy -------------------------------------------------------------
    def _bht(self, seg: Segment) -> None:
        self.submitted = _date(self.tx, Segment("DTP", ("", "D8", seg.get(4)), seg.position))

    def _hl(self, seg: Segment) -> None:
        self._close_claim(seg)
        self.hl_level = seg.get(3)
        if self.hl_level == "22":
            self.patient = ""
        elif self.hl_level not in ("20", "23"):
            raise self.tx.error(seg, f"HL03 {self.hl_level!r} is not 20, 22 or 23")

    def _sbr(self, seg: Segment) -> None:
        if self.claim is None and self.hl_level == "22":  # 2000B, not another payer's 2320
            self.filing = seg.get(9)

    def _nm1(self, seg: Segment) -> None:
        entity = seg.get(1)
        if self.claim is not None:
            return  # 2310/2320/2330/2420 names: not ours
        if entity == "85":
            self.provider = seg.get(9)
        elif entity == "IL":
            self.subscriber = seg.get(9)
        elif entity == "PR":
            self.payer_id = seg.get(9)
        elif entity == "QC":
            self.patient = f"{seg.get(3)}^{seg.get(4)}"

    def _dmg(self, seg: Segment) -> None:
        if self.claim is None and self.hl_level == "23":
            self.patient += f"^{seg.get(2)}"

    def _patient_id(self) -> str:
        """The subscriber's member id; a dependent (2000C) adds a digest of name and birth
        date (the 837 gives a dependent no id of its own), not the name itself."""
        if not self.patient:
            return self.subscriber
        return f"{self.subscriber}/{hashlib.sha256(self.patient.encode()).hexdigest()[:10]}"

    # -- claim ----------------------------------------------------------------------------
    def _clm(self, seg: Segment) -> None:
        self._close_claim(seg)
        place, _, frequency = ([*self.tx.components(seg.get(5)), "", "", ""])[:3]
        filing = self.filing
        payer_type = self.payer_map.get(self.payer_id) or PAYER_TYPES.get(filing)
        if payer_type is None:
            raise self.tx.error(seg, f"claim filing indicator SBR09 {filing!r} is not in the X12 code list")
        self.claim = {
            "claim_id": seg.get(1),
            "patient_id": self._patient_id(),
            "provider_npi": self.provider,
            "payer_id": self.payer_id,
            "payer_type": payer_type,
            "submission_date": self.submitted,
            "place_of_service": place,
            "claim_frequency": frequency,
            "service_date": "",
            "prior_auth_number": "",
            "diagnoses": [],
            "segment": seg,
            "lines": [],
        }

    def _hi(self, seg: Segment) -> None:
        if self.claim is None or self.line is not None:
            return
        for element in seg.elements:
            if element:
                qualifier, code = ([*self.tx.components(element), ""])[:2]
                if qualifier not in ("ABK", "ABF", "BK", "BF"):
                    continue  # other HI segments: conditions, occurrence codes
                self.claim["diagnoses"].append(_icd10(code))

    def _ref(self, seg: Segment) -> None:
        target = self.line if self.line is not None else self.claim
        if target is None:
            return
        if seg.get(1) == "G1":
            target["prior_auth_number"] = seg.get(2)
        elif seg.get(1) == "6R" and self.line is not None:
            self.line["line_control_number"] = seg.get(2)

    def _dtp(self, seg: Segment) -> None:
        target = self.line if self.line is not None else self.claim
        if target is not None and seg.get(1) == "472":
            target["service_date"] = _date(self.tx, seg)

    # -- lines ----------------------------------------------------------------------------
    def _lx(self, seg: Segment) -> None:
        if self.claim is None:
            raise self.tx.error(seg, "a service line (LX) outside a claim")
        self.line = {"line_number": seg.get(1), "lx": seg, "service_date": "", "prior_auth_number": ""}
        self.claim["lines"].append(self.line)

    def _sv1(self, seg: Segment) -> None:
        if self.line is None:
            raise self.tx.error(seg, "SV1 without an LX")
        procedure = self.tx.procedure(seg, seg.get(1), ("HC", "WK"))
        procedure += [""] * (8 - len(procedure))
        self.line.update(
            hcpcs_code=procedure[1],
            modifiers=";".join(m for m in procedure[2:6] if m),
            drug_description=procedure[6],
            billed_amount=seg.get(2),
            units=seg.get(4),
            place_of_service=seg.get(5),
            pointers=[p for p in self.tx.components(seg.get(7)) if p],
        )

    def _lin(self, seg: Segment) -> None:
        if self.line is not None and seg.get(2) == "N4":
            self.line["ndc"] = seg.get(3)

    def _ctp(self, seg: Segment) -> None:
        if self.line is not None:
            self.line["ndc_quantity"] = seg.get(4)
            self.line["ndc_unit"] = self.tx.components(seg.get(5))[0]

    def _close_claim(self, seg: Segment | None) -> None:
        claim, self.claim, self.line = self.claim, None, None
        if claim is None:
            return
        if not claim["lines"]:
            raise self.tx.error(claim["segment"], f"claim {claim['claim_id']!r} has no service lines")
        dx = claim["diagnoses"]
        for line in claim["lines"]:
            if "hcpcs_code" not in line:
                raise self.tx.error(line["lx"], "a service line (LX) without SV1")
            pointed = []
            for p in line["pointers"]:
                if not p.isdigit() or not 1 <= int(p) <= len(dx):
                    raise self.tx.error(
                        line["lx"], f"diagnosis pointer {p!r} names no HI code (the claim has {len(dx)})"
                    )
                pointed.append(dx[int(p) - 1])
            self.out.append(
                {
                    "claim_id": claim["claim_id"],
                    "line_number": line["line_number"],
                    "patient_id": claim["patient_id"],
                    "provider_npi": claim["provider_npi"],
                    "payer_id": claim["payer_id"],
                    "payer_type": claim["payer_type"],
                    "service_date": line["service_date"] or claim["service_date"],
                    "submission_date": claim["submission_date"],
                    "place_of_service": line["place_of_service"] or claim["place_of_service"],
                    "hcpcs_code": line["hcpcs_code"],
                    "modifiers": line["modifiers"],
                    "units": line["units"],
                    "billed_amount": line["billed_amount"],
                    "dose_mg": "",
                    "ndc": line.get("ndc", ""),
                    "ndc_quantity": line.get("ndc_quantity", ""),
                    "ndc_unit": line.get("ndc_unit", ""),
                    "drug_description": line["drug_description"],
                    "diagnosis_codes": ";".join(pointed or dx[:1]),
                    "prior_auth_number": line["prior_auth_number"] or claim["prior_auth_number"],
                    "documentation": UNKNOWN_DOCUMENTATION,
                    "line_control_number": line.get("line_control_number", ""),
                    "claim_frequency": claim["claim_frequency"],
                    "source": f"{self.tx.path.name}#{line['lx'].position}",
                }
            )
