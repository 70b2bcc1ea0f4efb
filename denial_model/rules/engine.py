"""Vectorized evaluation of a rule pack over a whole claim-line table.

Each check kind is one function over whole columns (numpy/pandas); cross-line kinds
(administration on the claim, duplicates, days since the previous dose, daily maximum)
group the table with sorted arrays, never a Python loop over rows. The result is a boolean
hit matrix with one column per rule id.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from denial_model.reference import Reference, icd10_billable, load_reference
from denial_model.rules.pack import CATEGORIES, Rule, RulePack, load_pack
from denial_model.table import DOC_BIT, ClaimFrame

_NUMERIC_FIELDS = {"dose_mg", "ndc_quantity"}


class Context:
    """Per-table facts shared by all rules: drug identity, code facts, groupings."""

    def __init__(self, frame: ClaimFrame, pack: RulePack, ref: Reference):
        self.frame = frame
        self.pack = pack
        self.ref = ref
        self.df = frame.df
        self.n = frame.n

    def col(self, name: str) -> np.ndarray:
        return self.df[name].to_numpy()

    @cached_property
    def code(self) -> np.ndarray:
        return self.df["hcpcs_code"].to_numpy(dtype=object)

    @cached_property
    def code_factor(self) -> tuple[np.ndarray, pd.Index]:
        codes, uniques = pd.factorize(self.code)
        return codes, pd.Index(uniques)

    def per_code(self, mapping: pd.Series, default) -> np.ndarray:
        """Look a per-code value up for every line via the unique codes."""
        codes, uniques = self.code_factor
        vals = mapping.reindex(uniques).to_numpy()
        vals = np.where(pd.isna(vals), default, vals) if len(vals) else vals
        return vals[codes] if self.n else np.zeros(0, dtype=object)

    @cached_property
    def ndc_code(self) -> np.ndarray:
        """HCPCS code the line's NDC is a product of, '' when unknown to the crosswalk."""
        ndc = self.df["ndc"].to_numpy(dtype=object)
        codes, uniques = pd.factorize(ndc)
        vals = self.ref.ndc_codes().reindex(uniques).fillna("").to_numpy(dtype=object)
        return vals[codes] if self.n else np.zeros(0, dtype=object)

    @cached_property
    def drug(self) -> np.ndarray:
        """Drug policy of each line ('' for none): NDC first, then description, then code."""
        out = np.full(self.n, "", dtype=object)
        ndc = self.df["ndc"].to_numpy(dtype=object)
        desc = self.df["drug_description"].astype(str)
        drug_policies = [p for p in self.pack.policies if p.is_drug]
        by_code = np.full(self.n, "", dtype=object)
        by_desc = np.full(self.n, "", dtype=object)
        by_ndc = np.full(self.n, "", dtype=object)
        d_codes, d_uniques = pd.factorize(desc.to_numpy(dtype=object))
        for p in drug_policies:
            if p.match_codes:
                by_code[np.isin(self.code, p.match_codes) & (by_code == "")] = p.name
                by_ndc[np.isin(self.ndc_code, p.match_codes) & (by_ndc == "")] = p.name
            if p.match_ndcs:
                by_ndc[np.isin(ndc, p.match_ndcs) & (by_ndc == "")] = p.name
            if p.match_description:
                rx = re.compile(r"\b(?:" + "|".join(map(re.escape, p.match_description)) + r")\b", re.I)
                hit_u = np.array([bool(rx.search(str(u))) for u in d_uniques], dtype=bool)
                if len(hit_u):
                    by_desc[hit_u[d_codes] & (by_desc == "")] = p.name
        out[:] = by_code
        out = np.where(by_desc != "", by_desc, out)
        out = np.where(by_ndc != "", by_ndc, out)
        return out

    @cached_property
    def unit_mg(self) -> np.ndarray:
        return self.per_code(self.ref.hcpcs["unit_mg"], np.nan).astype(float)

    @cached_property
    def is_drug_line(self) -> np.ndarray:
        drug_codes = set(self.ref.crosswalk["hcpcs_code"]) | set(self.pack.noc_codes)
        for p in self.pack.policies:
            drug_codes |= set(p.match_codes) | {p.document_code.code, p.official_code.code} - {None}
        known = pd.Series(True, index=sorted(drug_codes))
        listed = self.per_code(known, False).astype(bool)
        first = np.array([c[:1] == "J" for c in self.code_factor[1]], dtype=bool)
        return listed | (first[self.code_factor[0]] if self.n else np.zeros(0, bool))

    @cached_property
    def claim_codes(self) -> np.ndarray:
        return pd.factorize(self.df["claim_id"].to_numpy(dtype=object))[0]

    @cached_property
    def patient_codes(self) -> np.ndarray:
        return pd.factorize(self.df["patient_id"].to_numpy(dtype=object))[0]

    @cached_property
    def service_day(self) -> np.ndarray:
        return self.df["service_date"].to_numpy().astype("datetime64[D]").astype(np.int64)

    @cached_property
    def submission_day(self) -> np.ndarray:
        return self.df["submission_date"].to_numpy().astype("datetime64[D]").astype(np.int64)


# ---------------------------------------------------------------------------- selectors


def applies_mask(rule: Rule, ctx: Context) -> np.ndarray:
    """Lines a rule applies to: every selector of `applies_to` must hold."""
    a = rule.applies_to
    m = np.ones(ctx.n, dtype=bool)
    if "drugs" in a:
        m &= np.isin(ctx.drug, a["drugs"])
    if "not_drugs" in a:
        m &= ~np.isin(ctx.drug, a["not_drugs"])
    if "codes" in a:
        m &= np.isin(ctx.code, a["codes"])
    if "not_codes" in a:
        m &= ~np.isin(ctx.code, a["not_codes"])
    if "code_prefixes" in a:
        m &= ctx.df["hcpcs_code"].str.startswith(tuple(a["code_prefixes"])).to_numpy(dtype=bool)
    if a.get("drug_lines"):
        m &= ctx.is_drug_line
    if "payer_types" in a:
        m &= ctx.df["payer_type"].isin(a["payer_types"]).to_numpy()
    if "service_from" in a:
        m &= ctx.df["service_date"].to_numpy() >= np.datetime64(a["service_from"])
    if "service_to" in a:
        m &= ctx.df["service_date"].to_numpy() <= np.datetime64(a["service_to"])
    if "modifiers_any_of" in a:
        m &= ctx.frame.has_modifier(a["modifiers_any_of"])
    if "diagnosis_any_of" in a:
        m &= ctx.frame.diagnosis_matches(a["diagnosis_any_of"])
    if "place_of_service" in a:
        m &= ctx.df["place_of_service"].isin(a["place_of_service"]).to_numpy()
    return m


# ---------------------------------------------------------------------------- check kinds

Check = Callable[[Context, dict, np.ndarray], np.ndarray]
CHECKS: dict[str, Check] = {}


def check(kind: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        CHECKS[kind] = fn
        return fn

    return register


def _empty(ctx: Context, field: str) -> np.ndarray:
    if field in _NUMERIC_FIELDS:
        return ctx.df[field].isna().to_numpy()
    return (ctx.df[field].to_numpy(dtype=object) == "")


@check("field_required")
def _field_required(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    out = np.zeros(ctx.n, dtype=bool)
    for f in p["fields"]:
        out |= _empty(ctx, f)
    return out


@check("modifier_required")
def _modifier_required(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    return ~ctx.frame.has_modifier(p["any_of"])


@check("modifier_forbidden")
def _modifier_forbidden(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    return ctx.frame.has_modifier(p["any_of"])


@check("modifier_conflict")
def _modifier_conflict(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    out = np.ones(ctx.n, dtype=bool)
    for mod in p["all_of"]:
        out &= ctx.frame.has_modifier([mod])
    return out


def expected_units(dose_mg: np.ndarray, unit_mg: np.ndarray) -> np.ndarray:
    """Billing units for a dose: the dose over the code's unit, rounded up."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.ceil(dose_mg / unit_mg - 1e-9)


@check("units_vs_dose")
def _units_vs_dose(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    dose = ctx.df["dose_mg"].to_numpy(dtype=float)
    unit = np.full(ctx.n, float(p["unit_mg"])) if "unit_mg" in p else ctx.unit_mg
    exp = expected_units(dose, unit)
    units = ctx.df["units"].to_numpy(dtype=float)
    ok = ~np.isnan(exp) & (dose > 0)
    return ok & (np.abs(units - exp) > 1e-9)


def _group_ids(*keys: np.ndarray) -> np.ndarray:
    """One integer per distinct tuple of keys (vectorized)."""
    frame = pd.DataFrame({f"k{i}": k for i, k in enumerate(keys)})
    return frame.groupby(list(frame.columns), sort=False, dropna=False).ngroup().to_numpy()


@check("max_per_day")
def _max_per_day(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    field = p.get("field", "units")
    val = np.nan_to_num(ctx.df[field].to_numpy(dtype=float))
    active = m & ~ctx.frame.is_jw
    if not active.any():
        return np.zeros(ctx.n, dtype=bool)
    idx = np.flatnonzero(active)
    # exact duplicates (same patient, code, day, units) are the duplicate rule's finding
    units = ctx.df["units"].to_numpy(dtype=float)
    first = ~pd.DataFrame(
        {"p": ctx.patient_codes[idx], "c": ctx.code[idx], "d": ctx.service_day[idx], "u": units[idx]}
    ).duplicated().to_numpy()
    what = np.where(ctx.drug[idx] != "", ctx.drug[idx], ctx.code[idx])  # drug, else code
    g = _group_ids(ctx.patient_codes[idx], what, ctx.service_day[idx])
    totals = np.bincount(g, weights=val[idx] * first)
    out = np.zeros(ctx.n, dtype=bool)
    out[idx] = totals[g] > float(p["max"]) + 1e-9
    return out


@check("diagnosis_required")
def _diagnosis_required(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    return ~ctx.frame.diagnosis_matches(p["any_of"])


@check("diagnosis_flagged")
def _diagnosis_flagged(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    hit = ctx.frame.diagnosis_matches(p["any_of"])
    if p.get("unless_any_of"):
        hit &= ~ctx.frame.diagnosis_matches(p["unless_any_of"])
    return hit


@check("diagnosis_valid")
def _diagnosis_valid(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    rows, codes = ctx.frame.diagnosis_long
    out = np.zeros(ctx.n, dtype=bool)
    if len(codes):
        uniq, inv = np.unique(codes.astype(str), return_inverse=True)
        bad_u = ~icd10_billable(uniq)
        out[rows[bad_u[inv]]] = True
    return out


@check("documentation_required")
def _documentation_required(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    need = sum(DOC_BIT[t] for t in p["all_of"])
    return (ctx.frame.documentation_mask & need) != need


@check("prior_auth_required")
def _prior_auth_required(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    return _empty(ctx, "prior_auth_number")


def days_since_previous_dose(patient: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days from each line's service day back to the patient's previous distinct service day
    among the given lines (inf for the first). Vectorized with a lexsort."""
    n = len(day)
    out = np.full(n, np.inf)
    if n == 0:
        return out
    order = np.lexsort((day, patient))
    p_s, d_s = patient[order], day[order]
    new_pat = np.r_[True, p_s[1:] != p_s[:-1]]
    new_day = new_pat | np.r_[True, d_s[1:] != d_s[:-1]]
    # index (in sorted order) of the first line of each distinct (patient, day)
    first_of_day = np.maximum.accumulate(np.where(new_day, np.arange(n), 0))
    prev_day = np.r_[np.nan, d_s[:-1].astype(float)]
    gap_at_start = np.where(new_pat, np.inf, d_s - prev_day)
    out[order] = gap_at_start[first_of_day]
    return out


@check("min_days_between_doses")
def _min_days(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    active = m & ~ctx.frame.is_jw
    idx = np.flatnonzero(active)
    out = np.zeros(ctx.n, dtype=bool)
    if len(idx):
        gaps = days_since_previous_dose(ctx.patient_codes[idx], ctx.service_day[idx])
        out[idx] = gaps < float(p["days"])
    return out


@check("place_of_service_allowed")
def _pos_allowed(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    return ~ctx.df["place_of_service"].isin(p["allowed"]).to_numpy()


@check("timely_filing")
def _timely_filing(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    default = float(p.get("default_days", 365))
    limits = ctx.df["payer_type"].map(p["limit_days"]).astype(float).fillna(default).to_numpy()
    return (ctx.submission_day - ctx.service_day) > limits


@check("duplicate_line")
def _duplicate(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    exempt = ctx.frame.has_modifier(p.get("exempt_modifiers", ["76", "77"]))
    idx = np.flatnonzero(m & ~exempt)
    out = np.zeros(ctx.n, dtype=bool)
    if len(idx) == 0:
        return out
    df = ctx.df
    keys = pd.DataFrame(
        {
            "p": ctx.patient_codes[idx],
            "c": ctx.code[idx],
            "d": ctx.service_day[idx],
            "u": df["units"].to_numpy(dtype=float)[idx],
            "w": ctx.frame.is_jw[idx],
            "s": ctx.submission_day[idx],
            "claim": df["claim_id"].to_numpy(dtype=object)[idx],
            "line": df["line_number"].to_numpy()[idx],
        }
    )
    order = keys.sort_values(["s", "claim", "line"], kind="mergesort").index.to_numpy()
    dup = keys.iloc[order].duplicated(["p", "c", "d", "u", "w"], keep="first").to_numpy()
    out[idx[order]] = dup
    return out


@check("code_valid_on_date")
def _code_valid(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    h = ctx.ref.hcpcs
    procs = h[h["kind"] == "procedure"]
    add = ctx.per_code(procs["add_date"], np.datetime64("NaT")).astype("datetime64[ns]")
    term = ctx.per_code(procs["termination_date"], np.datetime64("NaT")).astype("datetime64[ns]")
    known = ctx.per_code(pd.Series(True, index=procs.index), False).astype(bool)
    numeric = np.array([c[:1].isdigit() for c in ctx.code_factor[1]], dtype=bool)
    numeric = numeric[ctx.code_factor[0]] if ctx.n else np.zeros(0, bool)
    svc = ctx.df["service_date"].to_numpy()
    before = ~np.isnat(add) & (svc < add)
    after = ~np.isnat(term) & (svc > term)
    return ~numeric & (~known | before | after)


@check("ndc_matches_code")
def _ndc_matches(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    nc = ctx.ndc_code
    return (nc != "") & (nc != ctx.code) & ~np.isin(ctx.code, ctx.pack.noc_codes)


@check("specific_code_exists")
def _specific_code(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    noc = set(ctx.pack.noc_codes)
    specific = {
        pol.name: pol.official_code.code
        for pol in ctx.pack.policies
        if pol.is_drug and pol.official_code.code and pol.official_code.code not in noc
    }
    has_ndc_code = (ctx.ndc_code != "") & ~np.isin(ctx.ndc_code, list(noc))
    drug_has_code = np.isin(ctx.drug, list(specific))
    return np.isin(ctx.code, list(noc)) & (has_ndc_code | drug_has_code)


@check("billed_under")
def _billed_under(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    return np.isin(ctx.code, p["codes"])


@check("administration_present")
def _administration(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    is_admin = np.isin(ctx.code, p.get("codes", []))
    code_s = ctx.code.astype(str)
    for lo, hi in p.get("ranges", []):
        is_admin |= (code_s >= str(lo)) & (code_s <= str(hi))
    claim_has = np.bincount(ctx.claim_codes, weights=is_admin.astype(float)) > 0 if ctx.n else np.zeros(0, bool)
    return ~claim_has[ctx.claim_codes] if ctx.n else np.zeros(0, bool)


@check("description_matches")
def _description(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    rx = re.compile(p["pattern"], re.I)
    codes, uniques = pd.factorize(ctx.df["drug_description"].to_numpy(dtype=object))
    hit_u = np.array([bool(rx.search(str(u))) for u in uniques], dtype=bool)
    return hit_u[codes] if ctx.n and len(hit_u) else np.zeros(ctx.n, dtype=bool)


@check("excluded")
def _excluded(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    return np.ones(ctx.n, dtype=bool)


# ---------------------------------------------------------------------------- results


@dataclass
class RuleResult:
    """Hit matrix of a pack over a table, with per-line summaries built from it."""

    hits: np.ndarray  # (n, R) bool
    rules: tuple[Rule, ...]
    drug: np.ndarray

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.rules]

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.hits, columns=self.ids)

    def _combos(self) -> tuple[np.ndarray, np.ndarray]:
        """(inverse, unique rows) of the hit matrix: per-line strings are built per combo."""
        if self.hits.shape[0] == 0:
            return np.zeros(0, np.int64), np.zeros((0, self.hits.shape[1]), bool)
        packed = np.packbits(self.hits, axis=1)
        void = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).ravel()
        _, first, inv = np.unique(void, return_index=True, return_inverse=True)
        return inv.ravel(), self.hits[first]

    def _per_line(self, text: Callable[[list[Rule]], str]) -> np.ndarray:
        inv, combos = self._combos()
        strings = np.array(
            [text([r for r, h in zip(self.rules, row, strict=True) if h]) for row in combos], dtype=object
        )
        return strings[inv] if len(inv) else np.zeros(0, dtype=object)

    @cached_property
    def rule_hits(self) -> np.ndarray:
        """Rule ids that fired on each line, ';'-separated ('' for none)."""
        return self._per_line(lambda rs: ";".join(r.id for r in rs))

    @cached_property
    def carcs(self) -> np.ndarray:
        """CARC codes the fired rules imply, deny-severity first, ';'-separated."""

        def carc(rs: list[Rule]) -> str:
            ordered = sorted(rs, key=lambda r: r.severity != "deny")
            return ";".join(dict.fromkeys(r.carc for r in ordered))

        return self._per_line(carc)

    def category_hits(self) -> pd.DataFrame:
        """(n, 19) bool: any rule of the category fired on the line."""
        out = {}
        for cat in CATEGORIES:
            cols = [i for i, r in enumerate(self.rules) if r.category == cat]
            out[cat] = self.hits[:, cols].any(axis=1) if cols else np.zeros(len(self.hits), bool)
        return pd.DataFrame(out)

    def deny_hit(self) -> np.ndarray:
        cols = [i for i, r in enumerate(self.rules) if r.severity == "deny"]
        return self.hits[:, cols].any(axis=1)


def evaluate(
    lines: pd.DataFrame | ClaimFrame,
    pack: RulePack | None = None,
    ref: Reference | None = None,
) -> RuleResult:
    """Evaluate every rule of `pack` over a validated table, all lines at once."""
    pack = pack or load_pack()
    ref = ref or load_reference()
    frame = lines if isinstance(lines, ClaimFrame) else ClaimFrame(lines)
    ctx = Context(frame, pack, ref)
    hits = np.zeros((frame.n, len(pack.rules)), dtype=bool)
    for j, rule in enumerate(pack.rules):
        mask = applies_mask(rule, ctx)
        if mask.any():
            hits[:, j] = mask & CHECKS[rule.kind](ctx, rule.params, mask)
    return RuleResult(hits=hits, rules=pack.rules, drug=ctx.drug)
