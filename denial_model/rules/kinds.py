"""The check kinds: every kind a rule can use, each registered once with all it needs.

A registration (`@kind(...)` on the check function) declares together:
- `params`: the parameters a rule of this kind takes (required or not, what each must be);
  the pack loader validates every rule against them;
- the check itself: whole columns in, one bool per line out (no loop over rows);
- `lookback`, for kinds that compare a line with the patient's other lines: how many days
  before a line another line can still count (0: the same day); the streaming scorer
  carries earlier lines that far;
- `breaks`: how to change a clean claim so the check fires (the samples, the docs and the
  tests use it), and `example`: the parameters of a rule to show it on.

Adding a kind is one registration here plus the rules that use it in the YAML. The per-row
reference evaluator in the tests is written separately on purpose: it is the independent
oracle the vectorized checks are pinned to.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from denial_model.errors import PackError
from denial_model.reference import billable_example, icd10_billable
from denial_model.rules.context import Context
from denial_model.table import DOC_BIT, DOCUMENTATION_TOKENS, PAYER_TYPES, SMALL_FACTORIZE, _categorical_of

__all__ = ["KINDS", "CheckKind", "LineEdits", "Param", "kind"]

# ----------------------------------------------------------------------------- parameter validators

_CODE_RE = re.compile(r"^[A-Z0-9]{5}$")
_MOD_RE = re.compile(r"^[A-Z0-9]{2}$")
_DX_PREFIX_RE = re.compile(r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{0,4})?$")
_POS_RE = re.compile(r"^\d{2}$")


def str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) and x for x in v) and len(v) > 0


def codes(v: Any) -> bool:
    return str_list(v) and all(_CODE_RE.match(x) for x in v)


def modifiers(v: Any) -> bool:
    return str_list(v) and all(_MOD_RE.match(x) for x in v)


def diagnoses(v: Any) -> bool:
    return str_list(v) and all(_DX_PREFIX_RE.match(x) for x in v)


def tokens(v: Any) -> bool:
    return str_list(v) and all(x in DOCUMENTATION_TOKENS for x in v)


def places(v: Any) -> bool:
    return str_list(v) and all(_POS_RE.match(x) for x in v)


def positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


def code_ranges(v: Any) -> bool:
    return isinstance(v, list) and all(
        isinstance(r, list) and len(r) == 2 and all(_CODE_RE.match(str(x)) for x in r) for r in v
    )


def regex(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    try:
        re.compile(v)
    except re.error:
        return False
    return True


# ----------------------------------------------------------------------------- the registry

Check = Callable[[Context, dict, np.ndarray], np.ndarray]
Breaker = Callable[[pd.DataFrame, dict], pd.DataFrame]
# A repair corrects the flagged lines of a table (`edits`: a `LineEdits` over the validated
# lines, `rows`: the positions of the lines the rule flagged; the rule's params and the pack's
# policies say how): what the claim looks like once the finding's fix is made, for
# re-scoring it (`Scorer.after_fixes`). Kinds without one (a dose, an NDC, a diagnosis, which
# only the chart can tell) are corrected at the feature level.
Repair = Callable[["LineEdits", np.ndarray, dict, Any], None]


@dataclass(frozen=True)
class Param:
    """One parameter of a check kind: required or not, and what a valid value is."""

    required: bool
    valid: Callable[[Any], bool]
    what: str


@dataclass(frozen=True)
class CheckKind:
    name: str
    check: Check
    breaks: Breaker
    params: dict[str, Param] = field(default_factory=dict)
    example: dict = field(default_factory=dict)
    lookback: Callable[[dict], int] | None = None
    repairs: Repair | None = None

    @property
    def cross_line(self) -> bool:
        return self.lookback is not None


KINDS: dict[str, CheckKind] = {}


def kind(
    name: str,
    *,
    breaks: Breaker,
    params: dict[str, Param] | None = None,
    example: dict | None = None,
    lookback: Callable[[dict], int] | None = None,
    repairs: Repair | None = None,
) -> Callable[[Check], Check]:
    """Register the decorated check function as kind `name` (once)."""

    def register(fn: Check) -> Check:
        if name in KINDS:
            raise PackError(f"check kind {name!r} is registered twice")
        KINDS[name] = CheckKind(name, fn, breaks, dict(params or {}), dict(example or {}), lookback, repairs)
        return fn

    return register


def same_day(params: dict) -> int:
    return 0


# Breakers change the drug line (row 0) of a clean claim; they return a new frame.


def _set(**values: Any) -> Breaker:
    def breaker(c: pd.DataFrame, p: dict) -> pd.DataFrame:
        c = c.copy()
        for col, v in values.items():
            c[col] = v
        return c

    return breaker


def _set_line(column: str, value: Callable[[pd.DataFrame, dict], Any]) -> Breaker:
    def breaker(c: pd.DataFrame, p: dict) -> pd.DataFrame:
        c = c.copy()
        c.loc[0, column] = value(c, p)
        return c

    return breaker


def _join_mods(*mods: str) -> str:
    return ";".join(m for m in mods if m)


def _listed(values: np.ndarray, add: list[str] = (), drop: list[str] = ()) -> np.ndarray:
    """';'-lists with `add` appended (when absent) and `drop` taken out, per distinct list."""

    def edit(text: str) -> str:
        items = [x for x in str(text).split(";") if x and x not in drop]
        return ";".join([*items, *(a for a in add if a not in items)])

    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    edited = np.array([edit("" if pd.isna(u) else u) for u in uniques], dtype=object)
    return edited[codes]


class LineEdits:
    """The repairs of one table, gathered: each repaired column is edited as an array of
    values and written back once, in the validated form scoring reads (a categorical column
    gets new values as categories, its codes set directly), so a corrected claim is scored
    without validating again. Repairs see each other's edits, in the order they are made."""

    def __init__(self, lines: pd.DataFrame):
        self.lines = lines
        self._values: dict[str, np.ndarray] = {}
        self._changed: dict[str, np.ndarray] = {}

    def _column(self, column: str) -> np.ndarray:
        if column not in self._values:
            self._values[column] = self.lines[column].to_numpy(dtype=object, copy=True)
            self._changed[column] = np.zeros(len(self.lines), dtype=bool)
        return self._values[column]

    def get(self, column: str, rows: np.ndarray) -> np.ndarray:
        """The column's values at `rows`, with the edits made so far."""
        return self._column(column)[rows]

    def set(self, column: str, rows: np.ndarray, values: Any) -> None:
        self._column(column)[rows] = values
        self._changed[column][rows] = True

    def frame(self) -> pd.DataFrame:
        """The lines with every edit written (the frame given, changed in place)."""
        for column, values in self._values.items():
            rows = np.flatnonzero(self._changed[column])
            if len(rows):
                self._write(column, rows, values[rows])
        return self.lines

    def _write(self, column: str, rows: np.ndarray, values: np.ndarray) -> None:
        col = self.lines[column]
        if not isinstance(col.dtype, pd.CategoricalDtype):
            self.lines.iloc[rows, self.lines.columns.get_loc(column)] = values
            return
        cats = col.array.categories
        distinct, inverse = np.unique(values.astype(str), return_inverse=True)
        pos = cats.get_indexer(pd.Index(distinct, dtype=object))
        if (pos < 0).any():  # values not yet categories: appended (distinct, so no check is needed)
            pos[pos < 0] = len(cats) + np.arange(int((pos < 0).sum()))
            cats = cats.append(pd.Index(distinct[pos >= len(cats)], dtype=cats.dtype))
        codes = np.array(col.array.codes)
        codes[rows] = pos[inverse.reshape(-1)]
        self.lines[column] = pd.Series(_categorical_of(codes, cats), index=self.lines.index)


def _repair_list(column: str, key: str, adding: bool, first_only: bool = False) -> Repair:
    def repair(edits: LineEdits, rows: np.ndarray, p: dict, policy) -> None:
        items = p[key][:1] if first_only else p[key]
        current = edits.get(column, rows)
        edits.set(column, rows, _listed(current, add=items) if adding else _listed(current, drop=items))

    return repair


def _repair_set(column: str, value: Callable[[dict], Any]) -> Repair:
    def repair(edits: LineEdits, rows: np.ndarray, p: dict, policy) -> None:
        edits.set(column, rows, value(p))

    return repair


def _repair_code(edits: LineEdits, rows: np.ndarray, p: dict, policy) -> None:
    """A drug billed under its document's wrong code goes under the policy's official code,
    or the code it is billed as when it has none of its own (anakinra: J3590); units that
    then disagree with the dose are the units rule's finding, fixed with it."""
    code = getattr(getattr(policy, "official_code", None), "code", None)
    code = code or next(iter(getattr(policy, "billed_as", None) or []), None)
    if code and code not in p["codes"]:  # else the right code is another policy's: a coder's call
        edits.set("hcpcs_code", rows, code)


# what a corrected claim carries where a prior authorization was obtained (any non-empty number)
AUTHORIZATION_ON_FILE = "AUTH-ON-FILE"


def _shift(day: str, days: int) -> str:
    return (date.fromisoformat(str(day)) + timedelta(days=days)).isoformat()


# ----------------------------------------------------------------------------- line checks

_NUMERIC_FIELDS = {"dose_mg", "ndc_quantity"}
_FIELDS = {"ndc", "ndc_quantity", "ndc_unit", "drug_description", "dose_mg", "prior_auth_number"}


def _empty(ctx: Context, column: str) -> np.ndarray:
    if column in _NUMERIC_FIELDS:
        return np.isnan(ctx.frame.values(column, float))
    return ctx.isin(column, [""])


def _clear_field(c: pd.DataFrame, p: dict) -> pd.DataFrame:
    c = c.copy()
    f = p["fields"][0]
    c.loc[0, f] = np.nan if f in _NUMERIC_FIELDS else ""
    return c


@kind(
    "field_required",
    params={
        "fields": Param(True, lambda v: str_list(v) and set(v) <= _FIELDS, f"a list from {sorted(_FIELDS)}")
    },
    example={"fields": ["ndc"]},
    breaks=_clear_field,
)
def _field_required(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    out = np.zeros(ctx.n, dtype=bool)
    for f in p["fields"]:
        out |= _empty(ctx, f)
    return out


_MODIFIER_LIST = Param(True, modifiers, "a list of 2-character modifiers")


@kind(
    "modifier_required",
    params={"any_of": _MODIFIER_LIST},
    example={"any_of": ["JZ", "JW"]},
    breaks=_set_line("modifiers", lambda c, p: ""),
    repairs=_repair_list("modifiers", "any_of", adding=True, first_only=True),
)
def _modifier_required(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    return ~ctx.frame.has_modifier(p["any_of"])


@kind(
    "modifier_forbidden",
    params={"any_of": _MODIFIER_LIST},
    example={"any_of": ["25"]},
    breaks=_set_line("modifiers", lambda c, p: _join_mods(c.loc[0, "modifiers"], p["any_of"][0])),
    repairs=_repair_list("modifiers", "any_of", adding=False),
)
def _modifier_forbidden(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    return ctx.frame.has_modifier(p["any_of"])


@kind(
    "modifier_conflict",
    params={"all_of": _MODIFIER_LIST},
    example={"all_of": ["JW", "JZ"]},
    breaks=_set_line("modifiers", lambda c, p: ";".join(p["all_of"])),
)
def _modifier_conflict(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    out = np.ones(ctx.n, dtype=bool)
    for mod in p["all_of"]:
        out &= ctx.frame.has_modifier([mod])
    return out


def expected_units(dose_mg: np.ndarray, unit_mg: np.ndarray) -> np.ndarray:
    """Billing units for a dose: the dose over the code's unit, rounded up."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.ceil(dose_mg / unit_mg - 1e-9)


def _off_by_one_unit(c: pd.DataFrame, p: dict) -> float:
    units = float(c.loc[0, "units"])
    return units - 1 if units > 1 else units + 1


@kind(
    "units_vs_dose",
    params={"unit_mg": Param(False, positive, "a positive number of mg per billing unit")},
    breaks=_set_line("units", _off_by_one_unit),
)
def _units_vs_dose(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    dose = ctx.frame.values("dose_mg", float)
    unit = np.full(ctx.n, float(p["unit_mg"])) if "unit_mg" in p else ctx.unit_mg
    exp = expected_units(dose, unit)
    units = ctx.frame.values("units", float)
    ok = ~np.isnan(exp) & (dose > 0)
    return ok & (np.abs(units - exp) > 1e-9)


def _units_from_ndc(ctx: Context, unit_mg: np.ndarray) -> np.ndarray:
    """Billing units the line's NDC quantity stands for (NaN where it cannot be told): a
    mass (ME mg, GR g) over the code's unit; items (UN) times the crosswalk's billing units
    per item, or the policy's milligrams per item over the code's unit. A multiple-dose
    container counted in items says nothing about the amount given."""
    qty = ctx.frame.values("ndc_quantity", float)
    unit = ctx.factor("ndc_unit")
    per_mass = {"ME": 1.0, "GR": 1000.0}
    mass_factor = np.array([per_mass.get(str(u), np.nan) for u in unit[1]], dtype=float)
    mass_factor = mass_factor[unit[0]] if ctx.n else np.zeros(0)
    items = ctx.isin("ndc_unit", ["UN"]) & (ctx.container != "multiple_dose")
    with np.errstate(invalid="ignore", divide="ignore"):
        from_mass = expected_units(qty * mass_factor, unit_mg)
        from_items = np.where(
            np.isnan(ctx.units_per_item),
            expected_units(qty * ctx.mg_per_item, unit_mg),
            np.ceil(qty * ctx.units_per_item - 1e-9),
        )
    return np.where(items, from_items, from_mass)


def _drop_dose_bill_tenth(c: pd.DataFrame, p: dict) -> pd.DataFrame:
    c = c.copy()
    c.loc[0, "dose_mg"] = np.nan
    c.loc[0, "units"] = max(1.0, np.floor(float(c.loc[0, "units"]) / 10))  # 380 mg billed as 38
    return c


@kind(
    "units_vs_ndc",
    params={"unit_mg": Param(False, positive, "a positive number of mg per billing unit")},
    breaks=_drop_dose_bill_tenth,
)
def _units_vs_ndc(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    # only where no dose is recorded (units_vs_dose compares with the dose), and not where
    # the claim splits the package between an administered and a JW line of the code
    unit = np.full(ctx.n, float(p["unit_mg"])) if "unit_mg" in p else ctx.unit_mg
    exp = _units_from_ndc(ctx, unit)
    units = ctx.frame.values("units", float)
    no_dose = np.isnan(ctx.frame.values("dose_mg", float))
    jw_code = np.zeros(ctx.n, dtype=bool)
    if ctx.frame.is_jw.any():
        g = _group_ids(ctx.claim_codes, ctx.code)
        jw_code = np.bincount(g, weights=ctx.frame.is_jw.astype(float))[g] > 0
    return no_dose & ~jw_code & ~np.isnan(exp) & (exp > 0) & (np.abs(units - exp) > 1e-9)


def _bill_band_code_for_other_dose(c: pd.DataFrame, p: dict) -> pd.DataFrame:
    c = c.copy()
    c.loc[0, ["hcpcs_code", "units", "dose_mg"]] = ["G2082", 1.0, 84.0]  # G2082 is up to 56 mg
    return c


@kind("dose_in_code_band", breaks=_bill_band_code_for_other_dose)
def _dose_band(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    above = ctx.per_code(ctx.ref.hcpcs_column("band_above_mg"), np.nan).astype(float)
    upto = ctx.per_code(ctx.ref.hcpcs_column("band_upto_mg"), np.nan).astype(float)
    dose = ctx.frame.values("dose_mg", float)
    banded = ~np.isnan(above) & ~np.isnan(dose)
    with np.errstate(invalid="ignore"):
        inside = (dose > above + 1e-9) & (dose <= upto + 1e-9)
    return banded & ~inside


_DX_LIST = "a list of ICD-10-CM codes or prefixes"


@kind(
    "diagnosis_required",
    params={"any_of": Param(True, diagnoses, _DX_LIST)},
    example={"any_of": ["F11"]},
    breaks=_set(diagnosis_codes="I10"),
)
def _diagnosis_required(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    return ~ctx.frame.diagnosis_matches(p["any_of"])


@kind(
    "diagnosis_flagged",
    params={"any_of": Param(True, diagnoses, _DX_LIST), "unless_any_of": Param(False, diagnoses, _DX_LIST)},
    example={"any_of": ["F41"]},
    breaks=lambda c, p: _set(diagnosis_codes=billable_example(p["any_of"][0]))(c, p),
)
def _diagnosis_flagged(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    hit = ctx.frame.diagnosis_matches(p["any_of"])
    if p.get("unless_any_of"):
        hit &= ~ctx.frame.diagnosis_matches(p["unless_any_of"])
    return hit


@kind(
    "diagnosis_valid",
    # a well-formed code in the line's own category that the classification does not have
    breaks=_set_line("diagnosis_codes", lambda c, p: str(c.loc[0, "diagnosis_codes"])[:3] + ".ZZ"),
)
def _diagnosis_valid(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    dx_codes, lists = ctx.frame.factor("diagnosis_codes")  # each distinct diagnosis list checked once
    split = [str(u).split(";") for u in lists]
    ok = icd10_billable([c for s in split for c in s])
    ends = np.cumsum([len(s) for s in split])
    bad_u = np.array([not ok[e - len(s) : e].all() for s, e in zip(split, ends, strict=True)], dtype=bool)
    return bad_u[dx_codes] if ctx.n else np.zeros(0, dtype=bool)


def _drop_tokens(c: pd.DataFrame, p: dict) -> str:
    return ";".join(t for t in str(c.loc[0, "documentation"]).split(";") if t not in p["all_of"])


@kind(
    "documentation_required",
    params={"all_of": Param(True, tokens, "documentation vocabulary tokens")},
    example={"all_of": ["medical_necessity"]},
    breaks=_set_line("documentation", _drop_tokens),
    repairs=_repair_list("documentation", "all_of", adding=True),
)
def _documentation_required(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    need = sum(DOC_BIT[t] for t in p["all_of"])
    return (ctx.frame.documentation_mask & need) != need


def _drop_any_tokens(c: pd.DataFrame, p: dict) -> str:
    return ";".join(t for t in str(c.loc[0, "documentation"]).split(";") if t not in p["any_of"])


@kind(
    "documentation_any_of",
    params={"any_of": Param(True, tokens, "documentation vocabulary tokens")},
    example={"any_of": ["prior_therapy_failure", "counseling_compliance"]},
    breaks=_set_line("documentation", _drop_any_tokens),
    repairs=_repair_list("documentation", "any_of", adding=True, first_only=True),
)
def _documentation_any_of(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    return (ctx.frame.documentation_mask & sum(DOC_BIT[t] for t in p["any_of"])) == 0


@kind(
    "prior_auth_required",
    breaks=_set(prior_auth_number=""),
    repairs=_repair_set("prior_auth_number", lambda p: AUTHORIZATION_ON_FILE),
)
def _prior_auth_required(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    return _empty(ctx, "prior_auth_number")


def _outside(allowed: list[str]) -> str:
    return next(c for c in ("12", "81", "31", "11") if c not in allowed)


@kind(
    "place_of_service_allowed",
    params={"allowed": Param(True, places, "a list of 2-digit place-of-service codes")},
    example={"allowed": ["11", "22"]},
    breaks=lambda c, p: _set(place_of_service=_outside(p["allowed"]))(c, p),
    repairs=_repair_set("place_of_service", lambda p: p["allowed"][0]),
)
def _pos_allowed(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    return ~ctx.isin("place_of_service", p["allowed"])


_PERIOD_RE = re.compile(r"^\s*(\d+)\s+(days?|months?|years?)\s*$")


def period(v: Any) -> bool:
    return isinstance(v, str) and bool(_PERIOD_RE.match(v)) and int(_PERIOD_RE.match(v).group(1)) > 0


def period_map(keys_ok: Callable[[str], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, dict) and all(keys_ok(str(k)) and period(x) for k, x in v.items())


def parse_period(v: str) -> tuple[int, int]:
    """(days, months) of a filing limit: "90 days" -> (90, 0), "1 year" -> (0, 12)."""
    n, unit = _PERIOD_RE.match(v).groups()
    if unit.startswith("day"):
        return int(n), 0
    return 0, int(n) * (12 if unit.startswith("year") else 1)


def filing_deadline(service_day: np.ndarray, days: np.ndarray, months: np.ndarray) -> np.ndarray:
    """Last day (days since 1970) a claim is on time: service day plus a number of days, or
    plus calendar months (the same day of the month; the month's last day where it has no
    such day: one year after 2024-02-29 is 2025-02-28)."""
    d = service_day.astype("datetime64[D]")
    start = d.astype("datetime64[M]")
    target = start + months.astype("timedelta64[M]")
    last = (target + np.timedelta64(1, "M")).astype("datetime64[D]") - np.timedelta64(1, "D")
    by_month = np.minimum(target.astype("datetime64[D]") + (d - start.astype("datetime64[D]")), last)
    by_days = d + days.astype("timedelta64[D]")
    return np.where(months > 0, by_month, by_days).astype(np.int64)


def _type_limits(p: dict) -> tuple[dict[str, str], str]:
    """(limit per payer type, default) as periods. Packs saved inside models before 0.3
    carry `limit_days` / `default_days` in days; they read as the same number of days."""
    by_type = dict(p.get("limits") or {t: f"{d} days" for t, d in p.get("limit_days", {}).items()})
    return by_type, p.get("default") or f"{int(p.get('default_days', 365))} days"


def filing_limits(p: dict, payer_id: np.ndarray, payer_type: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(days, months) of the filing limit of each line: its payer's own setting (`payers`),
    else its payer type's (`limits`), else the `default`; resolved per distinct payer."""
    g = _group_ids(pd.factorize(payer_id)[0], pd.factorize(payer_type)[0])
    first = np.unique(g, return_index=True)[1] if len(g) else np.zeros(0, int)
    by_type, default = _type_limits(p)
    limits = [
        parse_period(p.get("payers", {}).get(pid) or by_type.get(t) or default)
        for pid, t in zip(payer_id[first], payer_type[first], strict=True)
    ]
    days = np.array([x[0] for x in limits], dtype=np.int64)
    months = np.array([x[1] for x in limits], dtype=np.int64)
    return days[g], months[g]


def _file_late(c: pd.DataFrame, p: dict) -> pd.DataFrame:
    by_type, default = _type_limits(p)
    days, months = parse_period(by_type.get(c.loc[0, "payer_type"], default))
    return _set(submission_date=_shift(c.loc[0, "service_date"], days + 31 * months + 30))(c, p)


@kind(
    "timely_filing",
    params={
        "limits": Param(
            False, period_map(lambda k: k in PAYER_TYPES), "a map payer_type -> 'N days|months|years'"
        ),
        "default": Param(False, period, "a period like '365 days' or '12 months'"),
        "payers": Param(False, period_map(bool), "a map payer_id -> 'N days|months|years'"),
        "limit_days": Param(False, lambda v: isinstance(v, dict), "legacy (before 0.3): payer_type -> days"),
        "default_days": Param(False, positive, "legacy (before 0.3): days"),
    },
    example={"limits": {"medicare": "1 year", "commercial": "90 days"}},
    breaks=_file_late,
)
def _timely_filing(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    days, months = filing_limits(p, ctx.frame.values("payer_id"), ctx.frame.values("payer_type"))
    return ctx.submission_day > filing_deadline(ctx.service_day, days, months)


def _bill_unknown_code(c: pd.DataFrame, p: dict) -> pd.DataFrame:
    c = c.copy()
    c.loc[0, "hcpcs_code"] = "J9998"  # not in the code set
    c.loc[0, "ndc"] = ""
    return c


@kind("code_valid_on_date", breaks=_bill_unknown_code)
def _code_valid(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    procs = ctx.ref.derived(("procedures",), lambda: ctx.ref.hcpcs[ctx.ref.hcpcs["kind"] == "procedure"])
    add_date = ctx.ref.derived(("procedures", "add_date"), lambda: procs["add_date"])
    term_date = ctx.ref.derived(("procedures", "termination_date"), lambda: procs["termination_date"])
    add = ctx.per_code(add_date, np.datetime64("NaT")).astype("datetime64[ns]")
    term = ctx.per_code(term_date, np.datetime64("NaT")).astype("datetime64[ns]")
    listed = ctx.ref.derived(("procedure_listed",), lambda: pd.Series(True, index=procs.index))
    known = ctx.per_code(listed, False).astype(bool)
    numeric = np.array([c[:1].isdigit() for c in ctx.code_factor[1]], dtype=bool)
    numeric = numeric[ctx.code_factor[0]] if ctx.n else np.zeros(0, bool)
    svc = ctx.frame.values("service_date")
    before = ~np.isnat(add) & (svc < add)
    after = ~np.isnat(term) & (svc > term)
    # a code a newer shipped file prices is valid from that file's quarter
    priced = ctx.per_code(ctx.ref.priced_from, np.datetime64("NaT")).astype("datetime64[ns]")
    newer = ~known & ~np.isnat(priced) & (svc >= priced)
    return ~numeric & ~newer & (~known | before | after)


@kind("ndc_matches_code", breaks=_set_line("ndc", lambda c, p: "00143950125"))  # a J1630 (haloperidol) NDC
def _ndc_matches(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    # any code the crosswalk lists for the NDC is right (saline, ESRD / non-ESRD pairs)
    listed = ctx.ndc_code != ""
    return listed & (ctx.ndc_code != ctx.code) & ~ctx.isin("hcpcs_code", ctx.pack.noc_codes)


def _bill_vivitrol_as_noc(c: pd.DataFrame, p: dict) -> pd.DataFrame:
    c = c.copy()
    c.loc[0, "hcpcs_code"] = "J3490"
    c.loc[0, "ndc"] = "65757030001"  # Vivitrol: its own code is J2315
    c.loc[0, "drug_description"] = "naltrexone ER 380 mg"
    return c


@kind("specific_code_exists", breaks=_bill_vivitrol_as_noc)
def _specific_code(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    noc = set(ctx.pack.noc_codes)
    specific = {
        pol.name: pol.official_code.code
        for pol in ctx.pack.policies
        if pol.is_drug and pol.official_code.code and pol.official_code.code not in noc
    }
    pairs = ctx.ref.ndc_code_pairs
    specific_ndcs = ctx.ref.derived(
        ("specific_ndcs", ctx.pack.sha256),
        lambda: pd.Series(True, index=pairs.loc[~pairs["hcpcs_code"].isin(noc), "ndc"].unique()),
    )
    has_ndc_code = ctx.per_ndc(specific_ndcs, False).astype(bool)
    drug_has_code = ctx.isin("drug", specific)
    return ctx.isin("hcpcs_code", noc) & (has_ndc_code | drug_has_code)


@kind(
    "billed_under",
    params={"codes": Param(True, codes, "a list of 5-character HCPCS codes")},
    example={"codes": ["J3031"]},
    breaks=_set_line("hcpcs_code", lambda c, p: p["codes"][0]),
    repairs=_repair_code,
)
def _billed_under(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    return ctx.isin("hcpcs_code", p["codes"])


_DESCRIPTIONS = (
    "investigational agent 10 mg/mL",
    "ondansetron 8 mg oral tablet",
    "compounded ketamine/lidocaine 50 mg",
    "antineoplastic agent 100 mg IV",
)


def _matching_description(pattern: str) -> str:
    """A drug description the pattern finds (for the example claims)."""
    return next(d for d in _DESCRIPTIONS if re.search(pattern, d, re.I))


@kind(
    "description_matches",
    params={"pattern": Param(True, regex, "a regular expression")},
    example={"pattern": "investigational"},
    breaks=_set_line("drug_description", lambda c, p: _matching_description(p["pattern"])),
)
def _description(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    rx = re.compile(p["pattern"], re.I)
    desc_codes, uniques = ctx.factor("drug_description")
    hit_u = np.array([bool(rx.search(str(u))) for u in uniques], dtype=bool)
    return hit_u[desc_codes] if ctx.n and len(hit_u) else np.zeros(ctx.n, dtype=bool)


@kind("excluded", breaks=lambda c, p: c.copy())  # fires wherever it applies
def _excluded(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    return np.ones(ctx.n, dtype=bool)


# ----------------------------------------------------------------------------- cross-line checks


def _group_ids(*keys: np.ndarray) -> np.ndarray:
    """One integer per distinct tuple of keys, numbered in order of first appearance."""
    arrays = [np.asarray(k) for k in keys]
    n = len(arrays[0]) if arrays else 0
    if 0 < n <= SMALL_FACTORIZE and not any(a.dtype.kind == "f" and np.isnan(a).any() for a in arrays):
        return _group_ids_few(arrays)
    return _group_ids_many(arrays)


def _group_ids_few(arrays: list[np.ndarray]) -> np.ndarray:
    """`_group_ids` of a few lines (a claim): the tuples numbered in a dict, a bounded path
    (not a row loop) that skips pandas' fixed cost per factorize. NaN, which a dict does not
    match to itself, takes the vectorized path."""
    number: dict[tuple, int] = {}
    tuples = zip(*(a.tolist() for a in arrays), strict=True)
    return np.fromiter(
        (number.setdefault(t, len(number)) for t in tuples), dtype=np.int64, count=len(arrays[0])
    )


def _group_ids_many(arrays: list[np.ndarray]) -> np.ndarray:
    """`_group_ids`, vectorized: each key becomes small integer codes (an offset for a compact
    integer range, else a factorize) and the codes are combined a key at a time, so the
    combined number never exceeds lines x distinct values of one key."""
    n = len(arrays[0]) if arrays else 0
    ids = np.zeros(n, dtype=np.int64)
    if n == 0:
        return ids
    for a in arrays:
        if a.dtype.kind in "iub" and int(a.max()) - int(a.min()) <= 4 * n:
            codes = a.astype(np.int64) - int(a.min())
        else:
            codes = np.asarray(pd.factorize(a, use_na_sentinel=False)[0], dtype=np.int64)
        ids = np.asarray(pd.factorize(ids * (int(codes.max()) + 1) + codes)[0], dtype=np.int64)
    return ids


def _over_max(c: pd.DataFrame, p: dict) -> pd.DataFrame:
    c = c.copy()
    fld = p.get("field", "units")
    c.loc[0, fld] = float(p["max"]) + 10
    if fld == "dose_mg" and c.loc[0, "hcpcs_code"] == "S0013":
        c.loc[0, "units"] = float(p["max"]) + 10  # S0013 is per mg: units follow the dose
    return c


@kind(
    "max_per_day",
    params={
        "max": Param(True, positive, "a positive number"),
        "field": Param(False, lambda v: v in ("units", "dose_mg"), "units or dose_mg"),
    },
    example={"max": 400},
    lookback=same_day,
    breaks=_over_max,
)
def _max_per_day(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    val = np.nan_to_num(ctx.frame.values(p.get("field", "units"), float))
    active = m & ~ctx.frame.is_jw
    if not active.any():
        return np.zeros(ctx.n, dtype=bool)
    idx = np.flatnonzero(active)
    # exact duplicates (same patient, code, day, units) are the duplicate rule's finding
    units = ctx.frame.values("units", float)
    same = _group_ids(ctx.patient_codes[idx], ctx.code_factor[0][idx], ctx.service_day[idx], units[idx])
    first = np.zeros(len(idx), dtype=bool)
    first[np.unique(same, return_index=True)[1]] = True
    what = np.where(ctx.drug[idx] != "", ctx.drug[idx], ctx.code[idx])  # drug, else code
    g = _group_ids(ctx.patient_codes[idx], what, ctx.service_day[idx])
    totals = np.bincount(g, weights=val[idx] * first)
    out = np.zeros(ctx.n, dtype=bool)
    out[idx] = totals[g] > float(p["max"]) + 1e-9
    return out


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


def _dose_too_soon(c: pd.DataFrame, p: dict) -> pd.DataFrame:
    """The same claim given again `days - 1` days earlier, under its own claim id."""
    again = c.copy()
    svc = _shift(c.loc[0, "service_date"], -max(int(p["days"]) - 1, 0))
    again["claim_id"] = c.loc[0, "claim_id"] + "-earlier"
    again["service_date"] = svc
    again["submission_date"] = _shift(svc, 1)
    return pd.concat([c, again], ignore_index=True)


@kind(
    "min_days_between_doses",
    params={"days": Param(True, positive, "a positive number of days")},
    example={"days": 21},
    lookback=lambda p: int(p["days"]) - 1,
    breaks=_dose_too_soon,
)
def _min_days(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    active = m & ~ctx.frame.is_jw
    idx = np.flatnonzero(active)
    out = np.zeros(ctx.n, dtype=bool)
    if len(idx):
        gaps = days_since_previous_dose(ctx.patient_codes[idx], ctx.service_day[idx])
        out[idx] = gaps < float(p["days"])
    return out


def _sent_twice(c: pd.DataFrame, p: dict) -> pd.DataFrame:
    """The same claim sent a day earlier under another claim id: the later one duplicates it."""
    first = c.copy()
    first["claim_id"] = c.loc[0, "claim_id"] + "-first"
    first["submission_date"] = _shift(c.loc[0, "submission_date"], -1)
    return pd.concat([c, first], ignore_index=True)


@kind(
    "duplicate_line",
    params={"exempt_modifiers": Param(False, modifiers, "a list of modifiers")},
    lookback=same_day,
    breaks=_sent_twice,
)
def _duplicate(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    exempt = ctx.frame.has_modifier(p.get("exempt_modifiers", ["76", "77"]))
    idx = np.flatnonzero(m & ~exempt)
    out = np.zeros(ctx.n, dtype=bool)
    if len(idx) == 0:
        return out
    claim_codes, claim_u = ctx.factor("claim_id")
    claim_rank = np.empty(len(claim_u), dtype=np.int64)
    claim_rank[np.argsort(claim_u.astype(str), kind="stable")] = np.arange(len(claim_u))
    # the product tells two drugs under one code apart (two unclassified drugs on a day)
    ndc_codes, desc = ctx.factor("ndc")[0], ctx.factor("drug_description")
    product = ndc_codes[idx].astype(np.int64) * (len(desc[1]) + 1) + desc[0][idx]
    key = (
        ctx.patient_codes[idx],
        ctx.factor("hcpcs_code")[0][idx],
        ctx.service_day[idx],
        ctx.frame.values("units", float)[idx],
        ctx.frame.is_jw[idx],
        product,
    )
    # within a key, the earliest submitted (then claim id, line number) is the original
    tiebreak = (ctx.frame.values("line_number")[idx], claim_rank[claim_codes[idx]], ctx.submission_day[idx])
    order = np.lexsort(tiebreak + key[::-1])
    same = np.ones(len(idx) - 1, dtype=bool)
    for k in key:
        ks = k[order]
        same &= ks[1:] == ks[:-1]
    out[idx[order[1:][same]]] = True
    return out


def codes_named(codes: np.ndarray, p: dict) -> np.ndarray:
    """Which of `codes` are in the parameters' `codes` or within one of their `ranges`."""
    names = np.asarray(codes, dtype=str)
    hit = np.isin(names, p.get("codes", []))
    for lo, hi in p.get("ranges", []):
        hit |= (names >= str(lo)) & (names <= str(hi))
    return hit


def _in_codes(ctx: Context, p: dict) -> np.ndarray:
    """Lines whose code the parameters name (tested on the distinct codes)."""
    codes, uniques = ctx.code_factor
    return codes_named(uniques, p)[codes] if ctx.n else np.zeros(0, dtype=bool)


def _bill_alongside(c: pd.DataFrame, p: dict) -> pd.DataFrame:
    """Another line on the claim with the first code the rule names."""
    extra = c.iloc[[len(c) - 1]].copy()
    extra["hcpcs_code"] = (p.get("codes") or [p["ranges"][0][0]])[0]
    extra["line_number"] = int(c["line_number"].max()) + 1
    extra["modifiers"] = ""
    return pd.concat([c, extra], ignore_index=True)


@kind(
    "billed_with",
    params={
        "codes": Param(False, codes, "a list of 5-character codes"),
        "ranges": Param(False, code_ranges, "a list of [first, last] code ranges"),
        "unless_modifiers": Param(False, modifiers, "a list of modifiers that make the pair payable"),
    },
    example={"codes": ["G2083"]},
    lookback=same_day,
    breaks=_bill_alongside,
)
def _billed_with(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    """The line is billed for the same patient and day as another line with one of the codes
    (bundling: the other service already pays for this one)."""
    other = _in_codes(ctx, p)
    if not ctx.n or not (m.any() and other.any()):
        return np.zeros(ctx.n, dtype=bool)
    g = _group_ids(ctx.patient_codes, ctx.service_day)
    count = np.bincount(g, weights=other.astype(float))[g] - other  # not counting the line itself
    out = count > 0
    if p.get("unless_modifiers"):
        out &= ~ctx.frame.has_modifier(p["unless_modifiers"])
    return out


@kind(
    "administration_present",
    params={
        "codes": Param(False, codes, "a list of 5-character codes"),
        "ranges": Param(False, code_ranges, "a list of [first, last] code ranges"),
    },
    example={"codes": ["96372"], "ranges": [["96365", "96379"]]},
    breaks=lambda c, p: c.iloc[[0]].reset_index(drop=True),  # the drug line alone
)
def _administration(ctx: Context, p: dict, m: np.ndarray) -> np.ndarray:
    # whole-claim kind: a claim is never split across chunks, so it needs no look-back
    is_admin = _in_codes(ctx, p)
    if not ctx.n:
        return np.zeros(0, bool)
    claim_has = np.bincount(ctx.claim_codes, weights=is_admin.astype(float)) > 0
    return ~claim_has[ctx.claim_codes]
