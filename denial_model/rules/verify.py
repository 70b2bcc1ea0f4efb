"""Review the rule pack against the code set in force.

Every disagreement between what the pack (and the documents it encodes) says about a code
and what the HCPCS file says is listed, one per line, so a coder can re-review the pack
whenever CMS publishes a new release. Nothing is silently corrected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from denial_model.reference import Reference, descriptor_unit_mg, load_reference
from denial_model.rules.pack import Policy, RulePack, load_pack

_STOP = {"injection", "for", "of", "the", "in", "and", "per", "mg", "or", "with"}
# names the documents and the code set write differently
_SYNONYMS = (("not otherwise classified", "unclassified"), ("hcl", "hydrochloride"))


@dataclass(frozen=True)
class Disagreement:
    kind: str  # document_code | document_unit | similar_code | terminated_code | unknown_code | official_code
    source: str
    code: str
    detail: str

    def line(self) -> str:
        return f"{self.kind}\t{self.code}\t{self.source}\t{self.detail}"


def _words(text: str) -> set[str]:
    """The significant words of a drug name, singular ("drugs" -> "drug")."""
    text = text.lower()
    for a, b in _SYNONYMS:
        text = re.sub(rf"\b{a}\b", b, text)
    return {w.removesuffix("s") for w in re.findall(r"[a-z]+", text) if len(w) > 2 and w not in _STOP}


def _names(says: str, descriptor: str) -> bool:
    """Every word of the name the document gives is in the descriptor: a shared word is not
    enough ("buprenorphine hydrochloride" is not "buprenorphine implant")."""
    return _words(says) <= _words(descriptor)


def _codes_named(ref: Reference, says: str) -> list[str]:
    """Codes of the code set whose descriptor names what the document says (its candidates)."""
    h = ref.hcpcs
    procs = h[(h["kind"] == "procedure") & h["termination_date"].isna()]
    return [c for c, d in zip(procs["code"], procs["long_description"], strict=True) if _names(says, d)][:5]


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
    for pol in pack.policies:
        out += _policy_codes(pol, ref)
        out += _similar_codes(pol, ref)
    out += _rule_codes_findings(pack, ref, documented={(d.code, d.kind) for d in out})
    out += _newer_codes(ref)
    return out


def _ended(info: dict, source: str, code: str, what: str, hcpcs_name: str) -> list[Disagreement]:
    """A terminated-code finding when the code set has ended `code`."""
    term = info["termination_date"]
    if term != term or term is None:
        return []
    detail = f"{what} ended {term.date().isoformat()} in {hcpcs_name}"
    return [Disagreement("terminated_code", source, code, detail)]


def _policy_codes(pol: Policy, ref: Reference) -> list[Disagreement]:
    """The document's code and unit, and the pack's official code, against the code set."""
    out: list[Disagreement] = []
    hcpcs_name = ref.hcpcs_file
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
                official = pol.official_code.code or "no code of its own (" + ", ".join(pol.billed_as) + ")"
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
            out += _ended(info, pol.document, doc.code, "document code", hcpcs_name)
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
    return out


def _similar_codes(pol: Policy, ref: Reference) -> list[Disagreement]:
    """The codes a document says not to confuse, named as the document names them."""
    out: list[Disagreement] = []
    hcpcs_name = ref.hcpcs_file
    for sim in pol.similar_codes:
        code, says = sim["code"], sim.get("document_says", "")
        info = ref.code_info(code)
        if info is None:
            out.append(Disagreement("similar_code", pol.document, code, f"not in {hcpcs_name}"))
            continue
        desc = info["long_description"]
        if says and not _names(says, desc):
            named = _codes_named(ref, says)
            hint = f"; codes named so: {', '.join(named)}" if named else ""
            out.append(
                Disagreement(
                    "similar_code",
                    pol.document,
                    code,
                    f"document calls {code} '{says}'; {hcpcs_name} has '{desc}'{hint}",
                )
            )
        out += _ended(info, pol.document, code, "similar code", hcpcs_name)
    return out


def _rule_codes_findings(pack: RulePack, ref: Reference, documented: set) -> list[Disagreement]:
    """Codes the rules name that the code set does not have, or has ended."""
    out: list[Disagreement] = []
    hcpcs_name = ref.hcpcs_file
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


def _newer_codes(ref: Reference) -> list[Disagreement]:
    """Level II codes a newer shipped file prices that the HCPCS file does not list yet: the
    rules treat them as valid from that file's quarter."""
    newer = ref.priced_from
    return [
        Disagreement(
            "newer_code",
            f"{ref.crosswalk_file},{ref.payment_file}",
            code,
            f"priced from {start.date().isoformat()}; not in {ref.hcpcs_file}: valid from then",
        )
        for code, start in newer.items()
        if not code[0].isdigit()
    ]
