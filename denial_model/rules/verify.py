"""Review the rule pack against the code set in force.

Every disagreement between what the pack (and the documents it encodes) says about a code
and what the HCPCS file says is listed, one per line, so a coder can re-review the pack
whenever CMS publishes a new release. Nothing is silently corrected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from denial_model.reference import Reference, descriptor_unit_mg, load_reference
from denial_model.rules.pack import RulePack, load_pack

_STOP = {
    "injection",
    "hcl",
    "hydrochloride",
    "drug",
    "drugs",
    "for",
    "of",
    "the",
    "in",
    "and",
    "per",
    "mg",
}


@dataclass(frozen=True)
class Disagreement:
    kind: str  # document_code | document_unit | similar_code | terminated_code | unknown_code | official_code
    source: str
    code: str
    detail: str

    def line(self) -> str:
        return f"{self.kind}\t{self.code}\t{self.source}\t{self.detail}"


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 3 and w not in _STOP}


def _names_drug(descriptor: str, names: list[str]) -> bool:
    d = descriptor.lower()
    return any(re.search(rf"\b{re.escape(n.lower())}\b", d) for n in names)


def _rule_codes(pack: RulePack) -> dict[str, list[str]]:
    """Codes that rules name (in checks or selectors) -> rule ids."""
    out: dict[str, list[str]] = {}
    for r in pack.rules:
        codes = list(r.params.get("codes", [])) + list(r.applies_to.get("codes", []))
        for c in codes:
            out.setdefault(c, []).append(r.id)
    return out


def verify(pack: RulePack | None = None, ref: Reference | None = None) -> list[Disagreement]:
    """All disagreements between the pack and the code set in force."""
    pack = pack or load_pack()
    ref = ref or load_reference()
    out: list[Disagreement] = []
    hcpcs_name = ref.hcpcs_file
    for pol in pack.policies:
        names = pol.match_description or [pol.drug]
        doc = pol.document_code
        if doc.code:
            info = ref.code_info(doc.code)
            if info is None:
                out.append(
                    Disagreement("document_code", pol.document, doc.code, f"{pol.name}: not in {hcpcs_name}")
                )
            else:
                desc = info["long_description"]
                if pol.is_drug and not _names_drug(desc, names):
                    official = (
                        pol.official_code.code or "no code of its own (" + ", ".join(pol.billed_as) + ")"
                    )
                    out.append(
                        Disagreement(
                            "document_code",
                            pol.document,
                            doc.code,
                            f"document bills {pol.drug} as {doc.code}; {hcpcs_name} has {doc.code} = "
                            f"'{desc}'; official: {official}",
                        )
                    )
                unit = descriptor_unit_mg(desc)
                doc_unit = descriptor_unit_mg(doc.unit or "")
                if doc_unit == doc_unit and unit == unit and abs(unit - doc_unit) > 1e-9:
                    out.append(
                        Disagreement(
                            "document_unit",
                            pol.document,
                            doc.code,
                            f"document unit {doc.unit}; {hcpcs_name} unit {unit:g} mg",
                        )
                    )
                term = info["termination_date"]
                if term == term and term is not None:
                    out.append(
                        Disagreement(
                            "terminated_code",
                            pol.document,
                            doc.code,
                            f"document code ended {term.date().isoformat()} in {hcpcs_name}",
                        )
                    )
        off = pol.official_code
        if off.code:
            info = ref.code_info(off.code)
            if info is None:
                out.append(
                    Disagreement(
                        "official_code",
                        pol.file,
                        off.code,
                        f"pack's official code not in {hcpcs_name}",
                    )
                )
            elif pol.is_drug and not _names_drug(info["long_description"], names):
                out.append(
                    Disagreement(
                        "official_code",
                        pol.file,
                        off.code,
                        f"pack's official code for {pol.drug} reads '{info['long_description']}'",
                    )
                )
        for sim in pol.similar_codes:
            code, says = sim["code"], sim.get("document_says", "")
            info = ref.code_info(code)
            if info is None:
                out.append(Disagreement("similar_code", pol.document, code, f"not in {hcpcs_name}"))
                continue
            desc = info["long_description"]
            if says and not (_words(says) & _words(desc)):
                out.append(
                    Disagreement(
                        "similar_code",
                        pol.document,
                        code,
                        f"document calls {code} '{says}'; {hcpcs_name} has '{desc}'",
                    )
                )
            term = info["termination_date"]
            if term == term and term is not None:
                out.append(
                    Disagreement(
                        "terminated_code",
                        pol.document,
                        code,
                        f"similar code ended {term.date().isoformat()} in {hcpcs_name}",
                    )
                )
    documented = {(d.code, d.kind) for d in out}
    for code, ids in sorted(_rule_codes(pack).items()):
        if code[0].isdigit():
            continue  # CPT codes are not in the Level II file
        info = ref.code_info(code)
        if info is None:
            out.append(
                Disagreement("unknown_code", ",".join(ids), code, f"rules name a code not in {hcpcs_name}")
            )
        elif (
            info["termination_date"] == info["termination_date"]
            and (code, "terminated_code") not in documented
        ):
            out.append(
                Disagreement(
                    "terminated_code",
                    ",".join(ids),
                    code,
                    f"rules name a code ended {info['termination_date'].date().isoformat()} in {hcpcs_name}",
                )
            )
    return out
