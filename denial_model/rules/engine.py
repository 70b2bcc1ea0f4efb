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
from denial_model.table import DOC_BIT, ClaimFrame, _factorize, concat_lines

_NUMERIC_FIELDS = {"dose_mg", "ndc_quantity"}


class Context:
    """Per-table facts shared by all rules: drug identity, code facts, groupings."""

    def __init__(self, frame: ClaimFrame, pack: RulePack, ref: Reference):
        self.frame = frame
        self.pack = pack
        self.ref = ref
        self.df = frame.df
        self.n = frame.n

    @cached_property
    def _factors(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {}

    def factor(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(codes, uniques) of a column or derived array, computed once per table."""
        if name not in self._factors:
            if name == "drug":
                codes, uniques = pd.factorize(self.drug, use_na_sentinel=False)
                self._factors[name] = (codes, np.asarray(uniques, dtype=object))
            else:
                self._factors[name] = _factorize(self.df[name])
        return self._factors[name]

    def isin(self, name: str, values) -> np.ndarray:
        """`column in values` for every line, tested on the column's distinct values only."""
        codes, uniques = self.factor(name)
        return np.isin(uniques, list(values))[codes] if self.n else np.zeros(0, bool)

    def startswith(self, name: str, prefixes) -> np.ndarray:
        codes, uniques = self.factor(name)
        hit = np.array([str(u).startswith(tuple(prefixes)) for u in uniques], dtype=bool)
        return hit[codes] if self.n else np.zeros(0, bool)

    @cached_property
    def code(self) -> np.ndarray:
        codes, uniques = self.factor("hcpcs_code")
        return uniques[codes]

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
        codes, uniques = self.factor("ndc")
        vals = self.ref.ndc_codes().reindex(uniques).fillna("").to_numpy(dtype=object)
        return vals[codes] if self.n else np.zeros(0, dtype=object)

    @cached_property
    def drug(self) -> np.ndarray:
        """Drug policy of each line ('' for none): NDC first, then description, then code."""
        policies = [p for p in self.pack.policies if p.is_drug]
        names = np.array(["", *[p.name for p in policies]], dtype=object)
        ndc_codes, ndc_u = self.factor("ndc")
        ndc_hcpcs_u = self.ref.ndc_codes().reindex(ndc_u).fillna("").to_numpy(dtype=object)
        desc_codes, desc_u = self.factor("drug_description")
        by = {k: np.zeros(self.n, dtype=np.int16) for k in ("ndc", "desc", "code")}
        for k, p in enumerate(policies, start=1):
            hit_ndc = np.isin(ndc_u, p.match_ndcs) | np.isin(ndc_hcpcs_u, p.match_codes)
            self._first(by["ndc"], hit_ndc[ndc_codes], k)
            if p.match_description:
                rx = re.compile(r"\b(?:" + "|".join(map(re.escape, p.match_description)) + r")\b", re.I)
                hit_desc = np.array([bool(rx.search(str(u))) for u in desc_u], dtype=bool)
                self._first(by["desc"], hit_desc[desc_codes], k)
            self._first(by["code"], self.isin("hcpcs_code", p.match_codes), k)
        best = np.where(by["ndc"] > 0, by["ndc"], np.where(by["desc"] > 0, by["desc"], by["code"]))
        return names[best]

    @staticmethod
    def _first(target: np.ndarray, hit: np.ndarray, k: int) -> None:
        """Mark policy k where it matches and no earlier policy did."""
        target[hit & (target == 0)] = k

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
        return self.factor("claim_id")[0]

    @cached_property
    def patient_codes(self) -> np.ndarray:
        return self.factor("patient_id")[0]

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
        m &= ctx.isin("drug", a["drugs"])
    if "not_drugs" in a:
        m &= ~ctx.isin("drug", a["not_drugs"])
    if "codes" in a:
        m &= ctx.isin("hcpcs_code", a["codes"])
    if "not_codes" in a:
        m &= ~ctx.isin("hcpcs_code", a["not_codes"])
    if "code_prefixes" in a:
        m &= ctx.startswith("hcpcs_code", a["code_prefixes"])
    if a.get("drug_lines"):
        m &= ctx.is_drug_line
    if "payer_types" in a:
        m &= ctx.isin("payer_type", a["payer_types"])
    if "service_from" in a:
        m &= ctx.df["service_date"].to_numpy() >= np.datetime64(a["service_from"])
    if "service_to" in a:
        m &= ctx.df["service_date"].to_numpy() <= np.datetime64(a["service_to"])
    if "modifiers_any_of" in a:
        m &= ctx.frame.has_modifier(a["modifiers_any_of"])
    if "diagnosis_any_of" in a:
        m &= ctx.frame.diagnosis_matches(a["diagnosis_any_of"])
    if "place_of_service" in a:
        m &= ctx.isin("place_of_service", a["place_of_service"])
    return m


# ---------------------------------------------------------------------------- check kinds

Check = Callable[[Context, dict, np.ndarray], np.ndarray]
CHECKS: dict[str, Check] = {}
# kinds that compare a line with other lines of the patient, so earlier lines matter: kind ->
# how many days before a line's service day another line can still count (0: the same day)
CROSS_LINE: dict[str, Callable[[dict], int]] = {}


def check(kind: str, lookback: Callable[[dict], int] | None = None) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        CHECKS[kind] = fn
        if lookback is not None:
            CROSS_LINE[kind] = lookback
        return fn

    return register


def _same_day(params: dict) -> int:
    return 0


def _empty(ctx: Context, field: str) -> np.ndarray:
    if field in _NUMERIC_FIELDS:
        return ctx.df[field].isna().to_numpy()
    return ctx.isin(field, [""])


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


@check("max_per_day", lookback=_same_day)
def _max_per_day(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    field = p.get("field", "units")
    val = np.nan_to_num(ctx.df[field].to_numpy(dtype=float))
    active = m & ~ctx.frame.is_jw
    if not active.any():
        return np.zeros(ctx.n, dtype=bool)
    idx = np.flatnonzero(active)
    # exact duplicates (same patient, code, day, units) are the duplicate rule's finding
    units = ctx.df["units"].to_numpy(dtype=float)
    first = (
        ~pd.DataFrame(
            {
                "p": ctx.patient_codes[idx],
                "c": ctx.code[idx],
                "d": ctx.service_day[idx],
                "u": units[idx],
            }
        )
        .duplicated()
        .to_numpy()
    )
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
    codes, lists = ctx.frame._diagnosis_factor  # each distinct diagnosis list checked once
    split = [str(u).split(";") for u in lists]
    ok = icd10_billable([c for s in split for c in s])
    ends = np.cumsum([len(s) for s in split])
    bad_u = np.array([not ok[e - len(s) : e].all() for s, e in zip(split, ends, strict=True)], dtype=bool)
    return bad_u[codes] if ctx.n else np.zeros(0, dtype=bool)


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


@check("min_days_between_doses", lookback=lambda p: int(p["days"]) - 1)
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
    return ~ctx.isin("place_of_service", p["allowed"])


@check("timely_filing")
def _timely_filing(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    default = float(p.get("default_days", 365))
    codes, uniques = ctx.factor("payer_type")
    limits = np.array([float(p["limit_days"].get(u, default)) for u in uniques])[codes]
    return (ctx.submission_day - ctx.service_day) > limits


@check("duplicate_line", lookback=_same_day)
def _duplicate(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    exempt = ctx.frame.has_modifier(p.get("exempt_modifiers", ["76", "77"]))
    idx = np.flatnonzero(m & ~exempt)
    out = np.zeros(ctx.n, dtype=bool)
    if len(idx) == 0:
        return out
    claim_codes, claim_u = ctx.factor("claim_id")
    claim_rank = np.empty(len(claim_u), dtype=np.int64)
    claim_rank[np.argsort(claim_u.astype(str), kind="stable")] = np.arange(len(claim_u))
    key = (
        ctx.patient_codes[idx],
        ctx.factor("hcpcs_code")[0][idx],
        ctx.service_day[idx],
        ctx.df["units"].to_numpy(dtype=float)[idx],
        ctx.frame.is_jw[idx],
    )
    # within a key, the earliest submitted (then claim id, line number) is the original
    tiebreak = (ctx.df["line_number"].to_numpy()[idx], claim_rank[claim_codes[idx]], ctx.submission_day[idx])
    order = np.lexsort(tiebreak + key[::-1])
    same = np.ones(len(idx) - 1, dtype=bool)
    for k in key:
        ks = k[order]
        same &= ks[1:] == ks[:-1]
    out[idx[order[1:][same]]] = True
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
    return (nc != "") & (nc != ctx.code) & ~ctx.isin("hcpcs_code", ctx.pack.noc_codes)


@check("specific_code_exists")
def _specific_code(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    noc = set(ctx.pack.noc_codes)
    specific = {
        pol.name: pol.official_code.code
        for pol in ctx.pack.policies
        if pol.is_drug and pol.official_code.code and pol.official_code.code not in noc
    }
    has_ndc_code = (ctx.ndc_code != "") & ~np.isin(ctx.ndc_code, list(noc))
    drug_has_code = ctx.isin("drug", specific)
    return ctx.isin("hcpcs_code", noc) & (has_ndc_code | drug_has_code)


@check("billed_under")
def _billed_under(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    return ctx.isin("hcpcs_code", p["codes"])


@check("administration_present")
def _administration(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    is_admin = np.isin(ctx.code, p.get("codes", []))
    code_s = ctx.code.astype(str)
    for lo, hi in p.get("ranges", []):
        is_admin |= (code_s >= str(lo)) & (code_s <= str(hi))
    claim_has = (
        np.bincount(ctx.claim_codes, weights=is_admin.astype(float)) > 0 if ctx.n else np.zeros(0, bool)
    )
    return ~claim_has[ctx.claim_codes] if ctx.n else np.zeros(0, bool)


@check("description_matches")
def _description(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    rx = re.compile(p["pattern"], re.I)
    codes, uniques = _factorize(ctx.df["drug_description"])
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
    # per line, the last service day (days since 1970) on which a later line can still be
    # compared with it by a cross-line rule; -1 where no cross-line rule applies to it
    relevant_until: np.ndarray | None = None

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.rules]

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.hits, columns=self.ids)

    @cached_property
    def _combos(self) -> tuple[np.ndarray, np.ndarray]:
        """(inverse, unique rows) of the hit matrix: per-line strings are built per combo.

        Each row's hits are packed into 64-bit words and the words factorized (hashing, no
        sort), so this stays linear in the lines."""
        n, r = self.hits.shape
        if n == 0:
            return np.zeros(0, np.intp), np.zeros((0, r), bool)
        words = -(-r // 64)
        packed = np.zeros((n, words * 8), dtype=np.uint8)
        packed[:, : -(-r // 8)] = np.packbits(self.hits, axis=1)
        packed = packed.view(np.uint64)
        inv = np.zeros(n, dtype=np.intp)
        for k in range(words):
            codes, uniq = pd.factorize(packed[:, k])
            inv, _ = pd.factorize(inv * len(uniq) + codes)
        inv = np.asarray(inv, dtype=np.intp)
        # factorize numbers values by first appearance: a row is a combo's first where its
        # code exceeds every code before it
        first = np.flatnonzero(np.r_[True, inv[1:] > np.maximum.accumulate(inv)[:-1]])
        return inv, self.hits[first]

    def per_line_codes(self, text: Callable[[list[Rule]], str]) -> tuple[np.ndarray, np.ndarray]:
        """(code per line, distinct strings): `text` of each line's fired rules, built once per
        distinct combination of hits."""
        inv, combos = self._combos
        strings = np.array(
            [text([r for r, h in zip(self.rules, row, strict=True) if h]) for row in combos],
            dtype=object,
        )
        return inv, strings

    def _per_line(self, text: Callable[[list[Rule]], str]) -> np.ndarray:
        inv, strings = self.per_line_codes(text)
        return strings[inv] if len(inv) else np.zeros(0, dtype=object)

    @staticmethod
    def hit_ids(rules: list[Rule]) -> str:
        return ";".join(r.id for r in rules)

    @cached_property
    def rule_hits(self) -> np.ndarray:
        """Rule ids that fired on each line, ';'-separated ('' for none)."""
        return self._per_line(self.hit_ids)

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
    earlier: pd.DataFrame | None = None,
) -> RuleResult:
    """Evaluate every rule of `pack` over a validated table, all lines at once.

    `earlier`: validated lines before these (a previous chunk's look-back) that the
    cross-line kinds read; they get no result of their own, and the other kinds never see
    them."""
    pack = pack or load_pack()
    ref = ref or load_reference()
    frame = lines if isinstance(lines, ClaimFrame) else ClaimFrame(lines)
    ctx = Context(frame, pack, ref)
    n_earlier = 0 if earlier is None else len(earlier)
    wide = ctx
    if n_earlier and frame.n and any(r.kind in CROSS_LINE for r in pack.rules):
        wide = Context(ClaimFrame(concat_lines([earlier, frame.df])), pack, ref)
    hits = np.zeros((frame.n, len(pack.rules)), dtype=bool, order="F")  # column writes stay contiguous
    until = np.full(frame.n, -1, dtype=np.int64)
    for j, rule in enumerate(pack.rules):
        c = wide if rule.kind in CROSS_LINE else ctx
        mask = applies_mask(rule, c)
        if mask.any():
            hit = mask & CHECKS[rule.kind](c, rule.params, mask)
            hits[:, j] = hit[c.n - frame.n :]
            if rule.kind in CROSS_LINE:
                reach = ctx.service_day + CROSS_LINE[rule.kind](rule.params)
                until = np.where(mask[c.n - frame.n :], np.maximum(until, reach), until)
    return RuleResult(hits=hits, rules=pack.rules, drug=ctx.drug, relevant_until=until)
