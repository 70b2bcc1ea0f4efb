"""The rule pack: YAML files a billing analyst reviews, loaded and validated into `Rule`s.

Layout of a pack folder:
- `common.yaml`: cross-cutting rules for every drug line (code set, NDC, units, JW/JZ, ...).
- `policies/*.yaml`: one drug policy per source document, with the document's code and unit
  beside the official ones, and the rules that document's sections require.

A pack that fails validation is refused with the file, the rule id and the field at fault.
A rule's `check` is validated against its kind's registration in `rules/kinds.py` (the one
place a kind's parameters are declared). The format is documented in docs/rule-pack.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from denial_model.errors import PackError
from denial_model.resources import bundled_path
from denial_model.rules.kinds import KINDS, codes, diagnoses, modifiers, places, str_list
from denial_model.table import PAYER_TYPES

CATEGORIES: tuple[str, ...] = (
    "code_invalid",
    "code_drug_mismatch",
    "ndc_missing",
    "noc_information_missing",
    "noc_specific_code_exists",
    "units_dose_mismatch",
    "units_exceed_maximum",
    "wastage_modifier",
    "modifier_invalid",
    "diagnosis_not_supported",
    "off_label_use",
    "prior_auth_missing",
    "documentation_missing",
    "frequency_exceeded",
    "place_of_service_invalid",
    "not_covered",
    "timely_filing",
    "duplicate_line",
    "administration_missing",
)
SEVERITIES = ("deny", "risk")
CONTAINERS = ("single_dose", "multiple_dose")
DOCUMENT_SECTIONS = (
    "Definition",
    "Clinical Context",
    "Common Modifiers",
    "Documentation Requirements",
    "Common Denial Reasons",
    "Special Considerations for Commercial Insurers",
    "Similar Codes",
)
_CARC_RE = re.compile(r"^(CO|PR|OA|PI|CR)-[A-Z0-9]{1,4}$")
_REMARK_RE = re.compile(r"^[A-Z]{1,2}\d{1,3}$")
_ID_RE = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")

APPLIES_TO_KEYS: dict[str, tuple[Any, str]] = {
    "drugs": (str_list, "a list of drug policy names"),
    "not_drugs": (str_list, "a list of drug policy names"),
    "codes": (codes, "a list of 5-character HCPCS codes"),
    "not_codes": (codes, "a list of 5-character HCPCS codes"),
    "code_prefixes": (str_list, "a list of code prefixes"),
    "drug_lines": (lambda v: isinstance(v, bool), "true or false"),
    "payer_types": (
        lambda v: str_list(v) and set(v) <= set(PAYER_TYPES),
        f"a list from {PAYER_TYPES}",
    ),
    "service_from": (lambda v: isinstance(v, date), "an ISO date"),
    "service_to": (lambda v: isinstance(v, date), "an ISO date"),
    "modifiers_any_of": (modifiers, "a list of 2-character modifiers"),
    "diagnosis_any_of": (diagnoses, "a list of ICD-10-CM codes or prefixes"),
    "place_of_service": (places, "a list of 2-digit place-of-service codes"),
    "containers": (
        lambda v: str_list(v) and set(v) <= set(CONTAINERS),
        f"a list from {CONTAINERS} (the container of the line's NDC, from the policies' products)",
    ),
}


@dataclass(frozen=True)
class Rule:
    """One deterministic check; `kind` + `params` say what it tests, `applies_to` on which lines."""

    id: str
    category: str
    carc: str
    severity: str
    message: str
    fix: str
    source: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    applies_to: dict[str, Any] = field(default_factory=dict)
    remark: str | None = None
    policy: str | None = None
    note: str | None = None
    file: str = ""

    @cached_property
    def selector(self) -> str:
        """`applies_to` as one key: rules with the same key apply to the same lines."""
        return json.dumps(self.applies_to, sort_keys=True, default=str)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "category": self.category,
            "carc": self.carc,
            "remark": self.remark,
            "severity": self.severity,
            "policy": self.policy,
            "kind": self.kind,
            "params": self.params,
            "applies_to": {
                k: (v.isoformat() if isinstance(v, date) else v) for k, v in self.applies_to.items()
            },
            "message": self.message,
            "fix": self.fix,
            "source": self.source,
            "note": self.note,
        }


@dataclass(frozen=True)
class CodeClaim:
    """A code as a document states it (code, unit), kept for review against the code set."""

    code: str | None
    unit: str | None


@dataclass(frozen=True)
class Product:
    """One package (NDC) of a policy's drug, as its label describes it: milligrams in one item
    (a device, a kit, a syringe, a vial) and whether the container is single- or multiple-dose.
    The crosswalk carries neither for drugs without a code of their own."""

    ndc: str
    what: str
    mg_per_item: float | None
    container: str


@dataclass(frozen=True)
class Policy:
    """Everything one source document requires of its drug."""

    name: str
    document: str
    drug: str
    document_code: CodeClaim
    official_code: CodeClaim
    billed_as: list[str]
    note: str
    match_codes: list[str]
    match_ndcs: list[str]
    match_description: list[str]
    scope_codes: list[str]
    similar_codes: list[dict[str, str]]
    file: str
    products: tuple[Product, ...] = ()

    @property
    def is_drug(self) -> bool:
        """Drug policies apply by drug identity; code policies (unclassified) by billed code."""
        return not self.scope_codes


@dataclass(frozen=True)
class RulePack:
    rules: tuple[Rule, ...]
    policies: tuple[Policy, ...]
    noc_codes: tuple[str, ...]
    folder: Path
    sha256: str

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.rules]

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def policy(self, name: str) -> Policy:
        for p in self.policies:
            if p.name == name:
                return p
        raise KeyError(name)


def _err(file: str, rule_id: str | None, fld: str, problem: str) -> PackError:
    where = f"{file}: rule {rule_id}" if rule_id else f"{file}"
    return PackError(f"{where}: field '{fld}': {problem}")


def _parse_rule(raw: Any, file: str, policy: Policy | None, known_drugs: set[str]) -> Rule:
    if not isinstance(raw, dict):
        raise _err(file, None, "rules", "each rule must be a mapping")
    rid = raw.get("id")
    if not isinstance(rid, str) or not _ID_RE.match(rid):
        raise _err(file, rid, "id", "must look like 'policy.name' (lower case, one dot)")
    prefix = policy.name if policy else "common"
    if not rid.startswith(prefix + "."):
        raise _err(file, rid, "id", f"must start with '{prefix}.'")
    allowed = {
        "id",
        "category",
        "carc",
        "remark",
        "severity",
        "message",
        "fix",
        "source",
        "check",
        "applies_to",
        "note",
    }
    for key in raw:
        if key not in allowed:
            raise _err(file, rid, key, f"unknown field (allowed: {sorted(allowed)})")
    for key in ("category", "carc", "severity", "message", "fix", "source", "check"):
        if key not in raw or raw[key] in (None, ""):
            raise _err(file, rid, key, "is required")
    if raw["category"] not in CATEGORIES:
        raise _err(file, rid, "category", f"'{raw['category']}' is not in the vocabulary")
    if not _CARC_RE.match(str(raw["carc"])):
        raise _err(file, rid, "carc", f"'{raw['carc']}' is not GROUP-CODE (e.g. CO-16)")
    if raw.get("remark") is not None and not _REMARK_RE.match(str(raw["remark"])):
        raise _err(file, rid, "remark", f"'{raw['remark']}' is not a remark code (e.g. M119)")
    if raw["severity"] not in SEVERITIES:
        raise _err(file, rid, "severity", f"must be one of {SEVERITIES}")
    source = str(raw["source"])
    if policy is not None and source.startswith(policy.document):
        section = source[len(policy.document) :].lstrip(" §:,-")
        if not any(section.startswith(s) for s in DOCUMENT_SECTIONS):
            raise _err(
                file,
                rid,
                "source",
                f"must name a section of {policy.document}: {DOCUMENT_SECTIONS}",
            )

    check = raw["check"]
    if not isinstance(check, dict) or "kind" not in check:
        raise _err(file, rid, "check", "must be a mapping with a 'kind'")
    kind = check["kind"]
    if kind not in KINDS:
        raise _err(file, rid, "check.kind", f"'{kind}' is not one of {sorted(KINDS)}")
    spec = KINDS[kind].params
    params = {k: v for k, v in check.items() if k != "kind"}
    for key in params:
        if key not in spec:
            raise _err(file, rid, f"check.{key}", f"not a parameter of '{kind}' ({sorted(spec)})")
    for key, param in spec.items():
        if key not in params:
            if param.required:
                raise _err(file, rid, f"check.{key}", f"is required by '{kind}'")
            continue
        if not param.valid(params[key]):
            raise _err(file, rid, f"check.{key}", f"must be {param.what}: got {params[key]!r}")

    applies = dict(raw.get("applies_to") or {})
    for key, val in applies.items():
        if key not in APPLIES_TO_KEYS:
            raise _err(file, rid, f"applies_to.{key}", f"unknown selector ({sorted(APPLIES_TO_KEYS)})")
        ok, what = APPLIES_TO_KEYS[key]
        if not ok(val):
            raise _err(file, rid, f"applies_to.{key}", f"must be {what}")
        if key in ("drugs", "not_drugs") and not set(val) <= known_drugs:
            raise _err(file, rid, f"applies_to.{key}", f"unknown drug policy in {val}")
    if policy is not None and not ({"drugs", "codes"} & set(applies)):
        if policy.is_drug:
            applies["drugs"] = [policy.name]
        else:
            applies["codes"] = list(policy.scope_codes)
    return Rule(
        id=rid,
        category=raw["category"],
        carc=str(raw["carc"]),
        remark=raw.get("remark"),
        severity=raw["severity"],
        message=str(raw["message"]).strip(),
        fix=str(raw["fix"]).strip(),
        source=source,
        kind=kind,
        params=params,
        applies_to=applies,
        policy=policy.name if policy else None,
        note=(str(raw["note"]).strip() if raw.get("note") else None),
        file=file,
    )


def _parse_policy(raw: dict, file: str) -> Policy:
    for key in ("policy", "document", "drug", "document_code", "official_code", "note", "match"):
        if key not in raw:
            raise _err(file, None, key, "is required in a policy file")
    match = raw["match"] or {}

    def claim(key: str) -> CodeClaim:
        v = raw[key] or {}
        return CodeClaim(code=v.get("code"), unit=v.get("unit"))

    products = tuple(_parse_product(x, file) for x in raw.get("products") or [])
    return Policy(
        products=products,
        name=str(raw["policy"]),
        document=str(raw["document"]),
        drug=str(raw["drug"]),
        document_code=claim("document_code"),
        official_code=claim("official_code"),
        billed_as=list(raw.get("billed_as") or []),
        note=str(raw["note"]).strip(),
        match_codes=list(match.get("codes") or []),
        match_ndcs=list(
            dict.fromkeys([*(str(x).zfill(11) for x in match.get("ndcs") or []), *(p.ndc for p in products)])
        ),
        match_description=list(match.get("description") or []),
        scope_codes=list(raw.get("scope_codes") or []),
        similar_codes=list(raw.get("similar_codes") or []),
        file=file,
    )


def _parse_product(raw: Any, file: str) -> Product:
    if not isinstance(raw, dict) or not re.fullmatch(r"\d{11}", str(raw.get("ndc", ""))):
        raise _err(file, None, "products", f"each product needs an 11-digit 'ndc': got {raw!r}")
    unknown = set(raw) - {"ndc", "what", "mg_per_item", "container"}
    if unknown:
        raise _err(file, None, "products", f"unknown keys {sorted(unknown)} in {raw!r}")
    mg = raw.get("mg_per_item")
    if mg is not None and not (isinstance(mg, (int, float)) and not isinstance(mg, bool) and mg > 0):
        raise _err(file, None, "products", f"'mg_per_item' must be a positive number: got {mg!r}")
    if raw.get("container") not in CONTAINERS:
        raise _err(
            file, None, "products", f"'container' must be one of {CONTAINERS}: got {raw.get('container')!r}"
        )
    return Product(str(raw["ndc"]), str(raw.get("what", "")), float(mg) if mg else None, raw["container"])


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise PackError(f"{path.name}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PackError(f"{path.name}: must be a mapping at top level")
    return data


def _pack_files(folder: Path) -> list[Path]:
    return [folder / "common.yaml", *sorted((folder / "policies").glob("*.yaml"))]


def pack_sha256(folder: Path) -> str:
    """Hash of the pack's YAML, recorded with every model so a changed pack is visible."""
    h = hashlib.sha256()
    for path in _pack_files(folder):
        if path.exists():
            h.update(path.relative_to(folder).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def load_pack(folder: str | Path | None = None) -> RulePack:
    """Load and validate a rule pack (default: the one shipped with the package)."""
    folder = Path(folder) if folder else bundled_path("rules")
    common_path = folder / "common.yaml"
    if not common_path.exists():
        raise PackError(f"{folder}: no common.yaml")
    policies: list[Policy] = []
    policy_raw: list[tuple[Policy, dict]] = []
    for path in _pack_files(folder)[1:]:
        raw = _read_yaml(path)
        pol = _parse_policy(raw, path.name)
        policies.append(pol)
        policy_raw.append((pol, raw))
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise PackError(f"{folder}: duplicate policy names in {names}")
    drugs = {p.name for p in policies if p.is_drug}

    common = _read_yaml(common_path)
    rules: list[Rule] = []
    for raw in common.get("rules") or []:
        rules.append(_parse_rule(raw, "common.yaml", None, drugs))
    for pol, raw in policy_raw:
        for r in raw.get("rules") or []:
            rules.append(_parse_rule(r, pol.file, pol, drugs))
    seen: dict[str, str] = {}
    for r in rules:
        if r.id in seen:
            raise _err(r.file, r.id, "id", f"duplicate (also in {seen[r.id]})")
        seen[r.id] = r.file
    noc = tuple(common.get("noc_codes") or [])
    if not codes(list(noc)):
        raise _err("common.yaml", None, "noc_codes", "must be a list of HCPCS codes")
    return RulePack(
        rules=tuple(rules),
        policies=tuple(policies),
        noc_codes=noc,
        folder=folder.resolve(),
        sha256=pack_sha256(folder),
    )
