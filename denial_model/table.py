"""The claim-line table (docs/claim-lines.md): validate and normalize.

Every column is checked at once over the whole table (no loop over rows). A row with a bad
value goes to the rejects table (`row`, `claim_id`, `line_number`, `column`, `reason`) and
the rest go on, so rows in = rows checked + rows rejected. Extra columns pass through.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, reduce
from operator import or_

import numpy as np
import pandas as pd
import pyarrow as pa

from denial_model.errors import ClaimTableError, ConfigError

PAYER_TYPES: tuple[str, ...] = ("medicare", "medicare_advantage", "medicaid", "commercial")
NDC_UNITS: tuple[str, ...] = ("ME", "ML", "UN", "GR", "F2")
DOCUMENTATION_TOKENS: tuple[str, ...] = (
    "medical_necessity",
    "prior_therapy_failure",
    "dose_and_route",
    "administration_notes",
    "monitoring",
    "adverse_events",
    "rems_enrollment",
    "patient_consent",
    "invoice",
    "wastage",
    "progress_notes",
    "fda_approval",
    "counseling_compliance",
    "lab_results",
    "infection_screening",
)
DOC_BIT = {tok: 1 << i for i, tok in enumerate(DOCUMENTATION_TOKENS)}
# `documentation` = "unknown": the line's documentation is not known (an 837 does not carry
# it), which is not "none": rules that need a document do not fire on such a line
# (`ClaimFrame.documentation_mask` holds every bit) and the model sees it (features).
DOC_UNKNOWN = "unknown"

# The claim-line table's columns in the order docs/claim-lines.md lists them.
INPUT_COLUMNS: tuple[str, ...] = (
    "claim_id",
    "line_number",
    "patient_id",
    "provider_npi",
    "payer_id",
    "payer_type",
    "service_date",
    "submission_date",
    "place_of_service",
    "hcpcs_code",
    "modifiers",
    "units",
    "billed_amount",
    "dose_mg",
    "ndc",
    "ndc_quantity",
    "ndc_unit",
    "drug_description",
    "diagnosis_codes",
    "prior_auth_number",
    "documentation",
)
OPTIONAL: tuple[str, ...] = (
    "modifiers",
    "dose_mg",
    "ndc",
    "ndc_quantity",
    "ndc_unit",
    "drug_description",
    "prior_auth_number",
    "documentation",
)
REQUIRED: tuple[str, ...] = tuple(c for c in INPUT_COLUMNS if c not in OPTIONAL)
# The column in which the file reader (files.py) marks a row it could not take as it stood
# (wrong number of fields, bytes that are not UTF-8) as "column<TAB>reason": the row keeps
# its place and `validate` rejects it with that reason. It never reaches an output.
READ_PROBLEM = "__read_problem__"
LABEL_COLUMNS: tuple[str, ...] = (
    "denied",
    "carc_codes",
    "paid_amount",
    "adjudication_date",
    "p_true",
)
REJECT_COLUMNS: tuple[str, ...] = ("row", "claim_id", "line_number", "column", "reason")
REJECTS_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("claim_id", pa.string()),
        ("line_number", pa.string()),
        ("column", pa.string()),
        ("reason", pa.string()),
    ]
)

_STRING_COLS = (
    "claim_id",
    "patient_id",
    "provider_npi",
    "payer_id",
    "payer_type",
    "place_of_service",
    "hcpcs_code",
    "modifiers",
    "ndc",
    "ndc_unit",
    "drug_description",
    "diagnosis_codes",
    "prior_auth_number",
    "documentation",
)
_ICD_RE = r"[A-Z][0-9][0-9A-Z](?:\.?[0-9A-Z]{1,4})?"
_MOD_PATTERN = r"[A-Z0-9]{2}(?:;[A-Z0-9]{2}){0,3}"
_DX_PATTERN = rf"{_ICD_RE}(?:;{_ICD_RE})*"
_DOC_PATTERN = "(?:{0})(?:;(?:{0}))*|{1}".format("|".join(DOCUMENTATION_TOKENS), DOC_UNKNOWN)
_HCPCS_PATTERN = r"[A-Z]\d{4}|\d{4}[0-9A-Z]"


def _factorize(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes, uniques as an object array); missing values are a value of their own.

    Validated text columns are categorical: their codes and categories are used as they are
    (categories may include values no row uses any more)."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        codes = np.asarray(s.cat.codes, dtype=np.intp)
        uniques = np.asarray(s.cat.categories, dtype=object)
        if len(codes) and codes.min() < 0:
            codes = np.where(codes < 0, len(uniques), codes)
            uniques = np.append(uniques, np.nan)
        return codes, uniques
    codes, uniques = s.factorize(use_na_sentinel=False)
    return np.asarray(codes, dtype=np.intp), np.asarray(uniques, dtype=object)


def _fast_categorical(codes: np.ndarray, cats: pd.Index) -> pd.Categorical:
    from pandas.core.dtypes.cast import coerce_indexer_dtype

    dtype = pd.CategoricalDtype._from_fastpath(cats, False)
    return pd.Categorical._simple_new(coerce_indexer_dtype(codes, cats), dtype)


def _categorical(codes: np.ndarray, categories: np.ndarray) -> pd.Categorical:
    """Categorical from codes (-1: missing) and categories known to be distinct and non-null
    (they come from a factorize), without pandas checking them again: that check hashes every
    category, which for ids costs more than the work it guards."""
    cats = pd.Index(categories, dtype=object)
    try:
        return _fast_categorical(codes, cats)
    except (ImportError, AttributeError, TypeError):  # pandas without the internal fast path
        return pd.Categorical.from_codes(codes, categories=cats, validate=False)


# A table of a few lines (a claim sent to the service) is dominated by pandas' fixed cost
# per call, not by the values: `per_unique` answers its few distinct values from what the
# same function gave the same value before (functions are told apart by their code and the
# values they close over), and asks the function only for values it has not seen.
MEMO_UNIQUES = 64
MEMO_SIZE = 20_000
_MEMO: dict[tuple, dict] = {}


def _memo_apply(fn, uniques: np.ndarray) -> np.ndarray | None:
    """fn's results for `uniques`, in the dtype fn gives them (None: answer without the memo,
    for a function that cannot be told apart or whose result type varies with its input)."""
    try:
        cells = tuple(c.cell_contents for c in fn.__closure__ or ())
        memo = _MEMO.setdefault((fn.__code__, cells), {"dtype": None, "seen": {}})
    except (AttributeError, TypeError, ValueError):  # not a plain function, or unhashable closure
        return None
    seen = memo["seen"]
    if not len(uniques):
        return None
    keys = [(type(u), u) for u in uniques]  # 1, 1.0, '1' and True are different inputs
    missing = [i for i, k in enumerate(keys) if k not in seen]
    if missing:
        got = np.asarray(fn(pd.Series(uniques[missing], dtype=object)).to_numpy())
        if memo["dtype"] is None and got.dtype.kind in "biufO":
            memo["dtype"] = got.dtype
        if got.dtype != memo["dtype"]:
            return None
        if len(seen) > MEMO_SIZE:
            seen.clear()
        seen.update(zip((keys[i] for i in missing), got.tolist(), strict=True))
    out = np.array([seen[k] for k in keys], dtype=object)
    return out if memo["dtype"].kind == "O" else out.astype(memo["dtype"])


def per_unique(s: pd.Series, fn) -> pd.Series:
    """Apply a Series -> Series function to the distinct values only, then spread back.

    Claim columns repeat a few values many times (codes, payer types, modifier lists), so
    string work on the distinct values is far cheaper than on every row. Text results come
    back categorical (codes per row, each distinct text once); others as plain arrays.
    """
    codes, uniques = _factorize(s)
    vals = _memo_apply(fn, uniques) if len(uniques) <= MEMO_UNIQUES else None
    if vals is None:
        vals = np.asarray(fn(pd.Series(uniques, dtype=object)).to_numpy())
    if vals.dtype == object:
        rcodes, runiques = pd.factorize(vals)  # distinct results (normalizing can merge values)
        return pd.Series(
            _categorical(np.asarray(rcodes)[codes], np.asarray(runiques, dtype=object)), index=s.index
        )
    return pd.Series(vals[codes], index=s.index)


def separate_groups(lines: pd.DataFrame, groups: np.ndarray) -> pd.DataFrame:
    """Validated lines whose claim and patient ids are made distinct per group (`groups`: an
    integer a line), so lines of different groups never meet as one claim or one patient in
    the rules, whatever their ids: several requests scored as one table answer as if each
    were scored alone. The ids become `"<group>\x1f<id>"` (built per distinct pair, by column)."""
    out = lines.copy(deep=False)
    groups = np.asarray(groups, dtype=np.int64)
    for c in ("claim_id", "patient_id"):
        codes, cats = _factorize(out[c])
        width = len(cats) + 1
        pairs, inverse = np.unique(groups * width + codes, return_inverse=True)
        names = pd.Series(pairs // width).astype(str) + "\x1f" + pd.Series(cats[pairs % width]).astype(str)
        ids = _categorical(inverse.reshape(-1), names.to_numpy(dtype=object))
        out[c] = pd.Series(ids, index=out.index)
    return out


def concat_lines(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Stack validated tables, keeping text columns categorical (union of the categories)."""
    frames = [f for f in frames if len(f)] or frames[:1]
    if len(frames) == 1:
        return frames[0].reset_index(drop=True)
    out = {}
    for c in [c for c in frames[0].columns if all(c in f.columns for f in frames[1:])]:
        parts = [f[c] for f in frames]
        if all(isinstance(p.dtype, pd.CategoricalDtype) for p in parts):
            out[c] = _union_categorical(parts)
        else:
            out[c] = pd.concat(parts, ignore_index=True)
    return pd.DataFrame(out)


def _union_categorical(parts: list[pd.Series]) -> pd.Series:
    """Stack categorical Series: the categories are merged by hashing (object, no sort)."""
    cats = [np.asarray(p.cat.categories, dtype=object) for p in parts]
    merged, uniques = pd.factorize(np.concatenate(cats))
    merged = np.asarray(merged)
    starts = np.cumsum([0, *(len(c) for c in cats)])
    codes = []
    for k, p in enumerate(parts):
        old = np.asarray(p.cat.codes, dtype=np.intp)
        lut = np.append(merged[starts[k] : starts[k + 1]], -1)  # code -1 (missing) stays -1
        codes.append(lut[old])
    return pd.Series(_categorical(np.concatenate(codes), np.asarray(uniques, dtype=object)))


def compact_lines(lines: pd.DataFrame) -> pd.DataFrame:
    """Drop categories no row uses (a carried table must not grow with the job)."""
    out = {}
    for c in lines.columns:
        s = lines[c]
        if isinstance(s.dtype, pd.CategoricalDtype):
            codes = np.asarray(s.cat.codes, dtype=np.intp)
            used = np.flatnonzero(np.bincount(codes[codes >= 0], minlength=len(s.cat.categories)))
            lut = np.full(len(s.cat.categories) + 1, -1, dtype=np.intp)
            lut[used] = np.arange(len(used))
            cats = np.asarray(s.cat.categories, dtype=object)[used]
            out[c] = pd.Series(_categorical(lut[codes], cats))
        else:
            out[c] = s.reset_index(drop=True)
    return pd.DataFrame(out)


def frame_from_arrow(table) -> pd.DataFrame:
    """The input columns of an Arrow table as pandas, text dictionary-encoded by Arrow.

    `validate` then works on each distinct value once and keeps the codes, so no per-row
    Python string is ever made on the scoring path."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cols = [c for c in (*INPUT_COLUMNS, READ_PROBLEM) if c in table.column_names]
    arrays = []
    for c in cols:
        col = table.column(c)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            col = pc.dictionary_encode(col)
        arrays.append(col)
    return pa.table(arrays, names=cols).to_pandas(date_as_object=False)


def _as_text(s: pd.Series) -> pd.Series:
    """Column as stripped text with '' for missing, whatever its stored type."""
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.dt.strftime("%Y-%m-%d").fillna("")
    if pd.api.types.is_float_dtype(s):
        present = s.dropna()
        whole = (present == np.floor(present)).all() and (present.abs() < 2**53).all()  # exact as int64
        out = s.astype("Int64").astype(str) if whole else s.astype(str)
        return out.where(s.notna(), "").astype(object)
    if pd.api.types.is_integer_dtype(s) or pd.api.types.is_bool_dtype(s):
        return s.astype(str).astype(object)
    if s.dtype == object and _holds_lists(s):
        s = s.map(_joined)  # a list-typed column (Parquet lists): its items ';'-separated
    return per_unique(s, lambda u: u.where(u.notna(), "").astype(str).str.strip().astype(object))


def _holds_lists(s: pd.Series) -> bool:
    """A column whose cells are lists (judged by its first non-missing cell: no row loop)."""
    present = s.dropna()
    return bool(len(present)) and isinstance(present.iloc[0], (list, tuple, np.ndarray))


def _joined(v: object) -> object:
    return ";".join(map(str, v)) if isinstance(v, (list, tuple, np.ndarray)) else v


# The longest text a cell may hold (a claim id, a description, a list of diagnoses): longer
# is an export gone wrong, and a row reject.
MAX_CELL = 10_000
# The largest value a column may hold: above it a number is a data error (a unit typed into
# an amount, 1e308 from an export), not a claim (docs/claim-lines.md).
NUMBER_LIMITS = {"line_number": 1e6, "units": 1e6, "billed_amount": 1e8, "dose_mg": 1e6, "ndc_quantity": 1e6}


def _number(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(values as float, True where a non-empty cell is not a finite number)."""
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        vals = s.astype(float)
        bad = pd.Series(False, index=s.index)
    else:
        text = _as_text(s)
        vals = pd.to_numeric(text.where(text != "", None), errors="coerce").astype(float)
        bad = (text != "") & vals.isna()
    infinite = vals.notna() & ~np.isfinite(vals.to_numpy())
    return vals.where(~infinite), bad | infinite


# dates, or date-times at midnight (what databases and pandas export); a zone offset may
# follow, and the date is the one in that zone
_DATE_RE = r"^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?))?(?:Z|[+-]\d{2}:?\d{2})?$"
_MIDNIGHT_RE = r"00:00(?::00(?:\.0+)?)?"
_FIRST_DAY, _END_DAY = np.datetime64("1900-01-01", "D"), np.datetime64("2262-04-11", "D")


def check_date_format(date_format: str | None) -> str | None:
    """A `--date-format` (strftime directives, e.g. `%m/%d/%Y`) that reads back the date it
    writes (so it names day, month and year); anything else is refused quoting it."""
    if date_format is None:
        return None
    probe = pd.Timestamp("2031-12-25")
    try:
        ok = pd.to_datetime(probe.strftime(date_format), format=date_format) == probe
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise ConfigError(
            f"date format {date_format!r} does not name a day, month and year (e.g. '%m/%d/%Y')"
        )
    return date_format


_NO_DAY = np.iinfo(np.int64).min // 8  # "not a date" in `_date_facts`' packed numbers


def _date_facts(u: pd.Series, date_format: str | None) -> pd.Series:
    """Per distinct text: day number * 4 + 2 if it has a time of day other than midnight
    + 1 if it is not empty (`_NO_DAY` for the day when it is not a date): one integer, so
    `per_unique` can spread (and remember) all three facts at once."""
    u = u.fillna("").astype(str)
    parts = u.str.extract(_DATE_RE)
    parsed = pd.to_datetime(parts[0], format="%Y-%m-%d", errors="coerce")
    if date_format is not None and (other := parsed.isna() & (u != "")).any():
        parsed[other] = pd.to_datetime(u[other], format=date_format, errors="coerce")
    raw = parsed.to_numpy()
    day = np.where(np.isnat(raw), _NO_DAY, raw.astype("datetime64[D]").astype(np.int64))
    timed = (parts[1].notna() & ~parts[1].fillna("").str.fullmatch(_MIDNIGHT_RE)).to_numpy()
    return pd.Series(day * 4 + timed.astype(np.int64) * 2 + (u != "").to_numpy().astype(np.int64))


def _date(s: pd.Series, date_format: str | None = None) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(dates as datetime64[ns], True where a non-empty cell is not a date in 1900-2262,
    True where it has a time of day other than midnight). Text is ISO; with `date_format`,
    text that is not ISO is read with that format too (`03/04/2025` by `%m/%d/%Y`)."""
    if pd.api.types.is_datetime64_any_dtype(s):
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_localize(None)  # the wall-clock date in the value's own zone
        raw = s.to_numpy()
        days = raw.astype("datetime64[D]")
        present = ~np.isnat(raw)
        timed = present & (raw != days.astype(raw.dtype))
    else:
        packed = per_unique(_as_text(s), lambda u: _date_facts(u, date_format)).to_numpy()
        present, timed = (packed & 1).astype(bool), (packed & 2).astype(bool)
        day = packed >> 2
        days = np.where(day == _NO_DAY, np.datetime64("NaT"), day.astype("datetime64[D]"))
    in_range = ~np.isnat(days) & (days >= _FIRST_DAY) & (days < _END_DAY)
    vals = np.where(in_range, days, np.datetime64("NaT")).astype("datetime64[ns]")
    bad = present & ~in_range
    idx = s.index
    return pd.Series(vals, index=idx), pd.Series(bad, index=idx), pd.Series(timed & ~bad, index=idx)


@dataclass
class Validated:
    """Result of validation: normalized good rows, and one rejects row per bad input row."""

    lines: pd.DataFrame
    rejects: pd.DataFrame
    rows_in: int
    rows: np.ndarray  # input position of each row of `lines`

    @property
    def accounted(self) -> bool:
        return len(self.lines) + len(self.rejects) == self.rows_in


_TRUE = frozenset({"true", "t", "1", "1.0", "yes", "y"})
_FALSE = frozenset({"false", "f", "0", "0.0", "no", "n"})


def labeled_lines(df: pd.DataFrame) -> pd.DataFrame:
    """The lines with an outcome: a missing `denied` (null, NaN or empty text) is a line not
    adjudicated yet (pending), which no model can learn from."""
    if "denied" not in df.columns:
        return df
    s = df["denied"]
    if s.dtype == object:  # text or mixed: judged per distinct value
        pending = s.isna() | (per_unique(s, lambda u: u.astype(str).str.strip()) == "")
    else:
        pending = s.isna()
    return df if not pending.any() else df.loc[~pending.to_numpy()].reset_index(drop=True)


def denied_labels(df: pd.DataFrame) -> np.ndarray:
    """The `denied` label as bool, whatever the file stored: booleans, 0/1, or text
    (`true`/`false`, `1`/`0`, `yes`/`no`, any case; a CSV history is all text, and
    `bool("False")` is True, so text is never cast directly). Anything else is an error
    naming the first bad row and value."""
    if "denied" not in df.columns:
        raise ClaimTableError("missing label column: denied (training and evaluation need outcomes)")
    s = df["denied"]
    if pd.api.types.is_bool_dtype(s) and not s.isna().any():
        return s.to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        bad = ~s.isin([0, 1])
    else:
        text = per_unique(s, lambda u: u.astype(str).str.strip().str.lower())
        bad = ~text.isin(_TRUE | _FALSE)
        s = text.isin(_TRUE)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ClaimTableError(
            f"row {row}: column denied: {df['denied'].iloc[row]!r} is not a yes/no value "
            "(true/false, 1/0, yes/no)"
        )
    return s.to_numpy(dtype=bool)


_KNOWN_COLUMNS = frozenset((*INPUT_COLUMNS, *LABEL_COLUMNS, "planted_categories"))


def canonical_columns(columns: list | pd.Index) -> list:
    """Header names as the table spells them: a known column differing only in case or
    surrounding spaces (` Claim_ID `) gets its spec name; other columns are kept as they
    are. A name that appears twice (after that) is an error naming it."""
    out = []
    for c in columns:
        name = c.strip() if isinstance(c, str) else c
        out.append(name.lower() if isinstance(name, str) and name.lower() in _KNOWN_COLUMNS else c)
    seen: dict = {}
    for raw, name in zip(columns, out, strict=True):
        if name in seen:
            raise ClaimTableError(
                f"column {name!r} appears twice in the header (as {seen[name]!r} and {raw!r})"
            )
        seen[name] = raw
    return out


def check_required_columns(columns: list | pd.Index) -> list:
    """The canonical header (see `canonical_columns`); a missing required column is an error
    naming it."""
    columns = canonical_columns(columns)
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise ClaimTableError(
            "missing required column" + ("s" if len(missing) > 1 else "") + ": " + ", ".join(missing)
        )
    return columns


class _Problems:
    """Bad cells found so far: (column, bad mask, reason, offending values or None). Reasons
    are built later, for the bad rows only."""

    def __init__(self) -> None:
        self.found: list[tuple[str, pd.Series, str, pd.Series | None]] = []

    def flag(self, col: str, bad: pd.Series, reason: str, value: pd.Series | None = None) -> None:
        hit = bad.to_numpy(dtype=bool, na_value=False)  # one conversion; a Series only when needed
        if hit.any():
            self.found.append((col, pd.Series(hit, index=bad.index), reason, value))

    def unreadable(self, read: pd.Series) -> None:
        """Rows the file reader could not take: their reader problem is their only reason
        (their cells are empty placeholders, not values worth reporting)."""
        hit = read.notna() & (read.astype(object) != "")
        if not hit.any():
            return
        self.found = [(c, bad & ~hit, r, v) for c, bad, r, v in self.found]
        for problem in pd.unique(read[hit].astype(str)):
            col, why = problem.split("\t", 1)
            self.found.append((col, (read.astype(object) == problem) & hit, why, None))

    def any_row(self, index: pd.Index) -> pd.Series:
        bad_any = pd.Series(False, index=index)
        for _, bad, *_ in self.found:
            bad_any |= bad
        return bad_any


def _fullmatch(s: pd.Series, pattern: str) -> pd.Series:
    return per_unique(s, lambda x: x.str.fullmatch(pattern)).astype(bool)


def _split_list(x: pd.Series) -> pd.Series:
    return x.str.replace(r"[\s,;]+", ";", regex=True).str.strip(";")


def _identity_columns(text: dict[str, pd.Series], problems: _Problems) -> dict[str, pd.Series]:
    """Ids, payer type, place of service, code and modifiers, normalized."""
    for col in ("claim_id", "patient_id", "payer_id"):
        problems.flag(col, text[col] == "", "is empty")
    npi = text["provider_npi"]
    problems.flag("provider_npi", ~_fullmatch(npi, r"\d{10}"), "must be 10 digits, got", npi)
    ptype = per_unique(text["payer_type"], lambda x: x.str.lower())
    problems.flag(
        "payer_type", ~ptype.isin(PAYER_TYPES), f"must be one of {', '.join(PAYER_TYPES)}, got", ptype
    )
    pos = per_unique(text["place_of_service"], lambda x: x.where(x.str.len() != 1, "0" + x))
    problems.flag("place_of_service", ~_fullmatch(pos, r"\d{2}"), "must be a 2-digit code, got", pos)
    code = per_unique(text["hcpcs_code"], lambda x: x.str.upper())
    problems.flag(
        "hcpcs_code", ~_fullmatch(code, _HCPCS_PATTERN), "is not a 5-character HCPCS/CPT code:", code
    )
    mods = per_unique(text["modifiers"], lambda x: _split_list(x.str.upper()))
    problems.flag(
        "modifiers",
        (mods != "") & ~_fullmatch(mods, _MOD_PATTERN),
        "must be up to four 2-character modifiers separated by ';', got",
        mods,
    )
    return {
        **{c: text[c] for c in ("claim_id", "patient_id", "payer_id")},
        "provider_npi": npi,
        "payer_type": ptype,
        "place_of_service": pos,
        "hcpcs_code": code,
        "modifiers": mods,
    }


def _numbers_and_dates(
    out: pd.DataFrame, problems: _Problems, date_format: str | None = None
) -> dict[str, pd.Series]:
    line_no, bad_ln = _number(out["line_number"])
    bad_ln = bad_ln | line_no.isna() | (line_no < 1) | (line_no != np.floor(line_no))
    problems.flag("line_number", bad_ln, "must be an integer >= 1, got", out["line_number"])
    units, bad = _number(out["units"])
    problems.flag("units", bad | units.isna() | ~(units > 0), "must be a number > 0, got", out["units"])
    billed, bad = _number(out["billed_amount"])
    problems.flag(
        "billed_amount",
        bad | billed.isna() | (billed < 0),
        "must be a number >= 0, got",
        out["billed_amount"],
    )
    dose, bad = _number(out["dose_mg"])
    problems.flag("dose_mg", bad | (dose < 0), "must be a number >= 0, got", out["dose_mg"])
    ndc_qty, bad = _number(out["ndc_quantity"])
    problems.flag("ndc_quantity", bad | (ndc_qty <= 0), "must be a number > 0, got", out["ndc_quantity"])
    values = {"line_number": line_no, "units": units, "billed_amount": billed, "dose_mg": dose}
    for col, vals in {**values, "ndc_quantity": ndc_qty}.items():
        limit = NUMBER_LIMITS[col]
        problems.flag(
            col, vals > limit, f"is larger than {limit:,.0f} (a data error, not a claim), got", out[col]
        )
    dates = {}
    for col in ("service_date", "submission_date"):
        dates[col], bad, timed = _date(out[col], date_format)
        missing = dates[col].isna() & ~bad
        shape = "YYYY-MM-DD" + (f" or {date_format}" if date_format else "")
        problems.flag(col, bad | missing, f"is not an ISO date ({shape}, years 1900-2262):", out[col])
        problems.flag(
            col,
            timed,
            "has a time of day (dates, or date-times at midnight in any zone, are accepted):",
            out[col],
        )
    problems.flag(
        "submission_date", dates["submission_date"] < dates["service_date"], "is before service_date"
    )
    return {
        "line_number": line_no.fillna(0).astype("int64"),
        "units": units,
        "billed_amount": billed,
        "dose_mg": dose,
        "ndc_quantity": ndc_qty,
        **dates,
    }


def _drug_and_clinical(text: dict[str, pd.Series], problems: _Problems) -> dict[str, pd.Series]:
    """NDC and its unit, diagnoses (dotted ICD-10-CM), documentation tokens."""
    ndc_raw = text["ndc"]
    ndc = per_unique(
        ndc_raw, lambda x: x.where(~x.str.fullmatch(r"\d{5}-\d{4}-\d{2}"), x.str.replace("-", ""))
    )
    problems.flag(
        "ndc", (ndc != "") & ~_fullmatch(ndc, r"\d{11}"), "must be 11 digits (5-4-2, no dashes), got", ndc_raw
    )
    ndc_unit = per_unique(text["ndc_unit"], lambda x: x.str.upper())
    problems.flag(
        "ndc_unit",
        (ndc_unit != "") & ~ndc_unit.isin(NDC_UNITS),
        f"must be one of {', '.join(NDC_UNITS)}, got",
        ndc_unit,
    )
    dx = per_unique(text["diagnosis_codes"], lambda x: _split_list(x.str.upper()))
    problems.flag("diagnosis_codes", dx == "", "is empty: at least one ICD-10-CM code is required")
    problems.flag(
        "diagnosis_codes",
        (dx != "") & ~_fullmatch(dx, _DX_PATTERN),
        "is not ICD-10-CM codes separated by ';':",
        dx,
    )
    dotted = r"(?:^|(?<=;))([A-Z][0-9][0-9A-Z])([0-9A-Z])"
    dx = per_unique(dx, lambda x: x.str.replace(dotted, r"\1.\2", regex=True))
    docs = per_unique(text["documentation"], lambda x: _split_list(x.str.lower()))
    bad_doc = (docs != "") & ~_fullmatch(docs, _DOC_PATTERN)
    if bad_doc.any():
        unknown = per_unique(
            docs,
            lambda x: x.str.split(";").map(
                lambda t: (
                    ", ".join(k for k in t if k not in DOC_BIT)
                    + (f" ({DOC_UNKNOWN!r} stands alone)" if DOC_UNKNOWN in t else "")
                )
            ),
        )
        problems.flag("documentation", bad_doc, "has unknown token(s):", unknown)
    return {
        "ndc": ndc,
        "ndc_unit": ndc_unit,
        "drug_description": text["drug_description"],
        "diagnosis_codes": dx,
        "prior_auth_number": text["prior_auth_number"],
        "documentation": docs,
    }


def validate(
    df: pd.DataFrame, row_offset: int = 0, keep_extra: bool = True, date_format: str | None = None
) -> Validated:
    """Validate and normalize a raw claim-line table.

    Normalized types: dates are datetime64, numbers float64 (line_number int64), text columns
    categorical with codes upper case, `diagnosis_codes` dotted ICD-10-CM, NDCs 11 digits and
    '' for missing optional text. `row_offset` numbers rows when the table is one chunk of a
    larger file; `keep_extra=False` drops columns the spec does not name (scoring reads the
    input columns only and writes the raw rows back itself); `date_format` also reads text
    dates in that strftime format (`check_date_format`), e.g. US `%m/%d/%Y`.
    """
    n = len(df)
    out = df.reset_index(drop=True).set_axis(check_required_columns(df.columns), axis=1)
    read = out.pop(READ_PROBLEM) if READ_PROBLEM in out.columns else None
    if not keep_extra:
        out = out[[c for c in INPUT_COLUMNS if c in out.columns]]
    out = out.copy(deep=False)
    for col in OPTIONAL:
        if col not in out.columns:
            out[col] = pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[""])
    problems = _Problems()
    text: dict[str, pd.Series] = {c: _as_text(out[c]) for c in _STRING_COLS}
    for col, values in text.items():
        length = per_unique(values, lambda u: u.str.len())
        problems.flag(col, length > MAX_CELL, f"is longer than {MAX_CELL:,} characters:", values)
    normalized = {
        **_identity_columns(text, problems),
        **_numbers_and_dates(out, problems, check_date_format(date_format)),
        **_drug_and_clinical(text, problems),
    }
    if read is not None:
        problems.unreadable(read)
    bad_any = problems.any_row(out.index)
    rejects = _rejects(problems.found, bad_any, text, out, row_offset)
    for col in INPUT_COLUMNS:
        out[col] = normalized[col]
    keep = ~bad_any.to_numpy()
    good = out if keep.all() else out.iloc[np.flatnonzero(keep)].reset_index(drop=True)
    rows = np.flatnonzero(keep).astype(np.int64) + row_offset
    return Validated(lines=good, rejects=rejects, rows_in=n, rows=rows)


def _shown(value: str, width: int = 60) -> str:
    """A bad value as a reason quotes it: in full when short, else its start and its length."""
    return repr(value) if len(value) <= width else f"{value[:width]!r}... ({len(value):,} characters)"


def _rejects(
    problems, bad_any: pd.Series, text: dict[str, pd.Series], raw: pd.DataFrame, row_offset: int
) -> pd.DataFrame:
    if not bad_any.any():
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "row" else object) for c in REJECT_COLUMNS})
    idx = bad_any[bad_any].index
    columns = pd.Series("", index=idx, dtype=object)
    reasons = pd.Series("", index=idx, dtype=object)
    for col, bad, reason, value in problems:
        hit = bad[bad].index
        text_reason = col + " " + reason
        if value is not None:
            shown = _as_text(value[hit]).map(_shown)
            text_reason = text_reason + " " + shown.astype(str)
        else:
            text_reason = pd.Series(text_reason, index=hit)
        sep_c = np.where(columns[hit] == "", "", ",")
        sep_r = np.where(reasons[hit] == "", "", "; ")
        columns[hit] = columns[hit] + sep_c + col
        reasons[hit] = reasons[hit] + sep_r + text_reason
    return pd.DataFrame(
        {
            "row": (idx.to_numpy() + row_offset).astype("int64"),
            "claim_id": text["claim_id"][idx].to_numpy(),
            "line_number": _as_text(raw["line_number"])[idx].to_numpy(),
            "column": columns.to_numpy(),
            "reason": reasons.to_numpy(),
        }
    )


def rejects_table(rejects: pd.DataFrame, rows: np.ndarray) -> pa.Table:
    """A block's rejects (from `validate`) as Arrow, each naming its row in the whole input."""
    rej = rejects.assign(row=rows[rejects["row"].to_numpy(dtype=np.int64)])
    return pa.Table.from_pandas(rej[list(REJECT_COLUMNS)], schema=REJECTS_SCHEMA, preserve_index=False)


class ClaimFrame:
    """A validated table with the columnar forms the rules read, each computed once.

    Lists in a cell (`modifiers`, `diagnosis_codes`, `documentation`) are parsed per unique
    value, not per row: `pd.factorize` maps the many rows onto the few distinct strings.
    """

    def __init__(self, lines: pd.DataFrame):
        self.df = lines
        self.n = len(lines)

    @cached_property
    def modifier_matrix(self) -> np.ndarray:
        """(n, 4) array of modifier strings, '' where absent."""
        codes, uniques = _factorize(self.df["modifiers"])
        parsed = np.full((len(uniques) + 1, 4), "", dtype=object)
        for i, u in enumerate(uniques):
            toks = [t for t in str(u).split(";") if t][:4]
            parsed[i, : len(toks)] = toks
        return parsed[codes]

    def has_modifier(self, modifiers: list[str] | tuple[str, ...]) -> np.ndarray:
        """True where the line carries any of `modifiers`."""
        codes, uniques = self._modifier_factor
        hit = np.array([bool(set(str(u).split(";")) & set(modifiers)) for u in uniques], dtype=bool)
        return hit[codes] if self.n else np.zeros(0, bool)

    @cached_property
    def _modifier_factor(self) -> tuple[np.ndarray, np.ndarray]:
        return _factorize(self.df["modifiers"])

    @cached_property
    def diagnosis_long(self) -> tuple[np.ndarray, np.ndarray]:
        """(row index, code) pairs of every diagnosis on every line: the table in long form."""
        codes, uniques = _factorize(self.df["diagnosis_codes"])
        split = [str(u).split(";") for u in uniques]
        lens = np.array([len(s) for s in split], dtype=np.int64)
        flat = np.array([c for s in split for c in s], dtype=object)
        starts = np.concatenate([[0], np.cumsum(lens)[:-1]]) if len(lens) else np.zeros(0, np.int64)
        row_lens = lens[codes] if self.n else np.zeros(0, np.int64)
        rows = np.repeat(np.arange(self.n), row_lens)
        offs = np.arange(row_lens.sum()) - np.repeat(np.cumsum(row_lens) - row_lens, row_lens)
        pos = np.repeat(starts[codes], row_lens) + offs if self.n else np.zeros(0, np.int64)
        return rows, flat[pos] if len(pos) else np.zeros(0, dtype=object)

    def diagnosis_matches(self, prefixes: list[str]) -> np.ndarray:
        """True where any diagnosis of the line starts with any of `prefixes`."""
        codes, uniques = self.diagnosis_factor
        pre = tuple(prefixes)
        hit = np.array([any(c.startswith(pre) for c in str(u).split(";")) for u in uniques], dtype=bool)
        return hit[codes] if self.n else np.zeros(0, bool)

    @cached_property
    def diagnosis_factor(self) -> tuple[np.ndarray, np.ndarray]:
        return _factorize(self.df["diagnosis_codes"])

    @cached_property
    def documentation_mask(self) -> np.ndarray:
        """Bit mask of documentation tokens present (bit i = DOCUMENTATION_TOKENS[i]); every
        bit for documentation that is not known (`DOC_UNKNOWN`), so no rule finds one missing."""
        codes, uniques = _factorize(self.df["documentation"])
        masks = np.zeros(len(uniques) + 1, dtype=np.int64)
        for i, u in enumerate(uniques):
            if u == DOC_UNKNOWN:
                masks[i] = sum(DOC_BIT.values())
                continue
            masks[i] = reduce(or_, (DOC_BIT[t] for t in str(u).split(";") if t in DOC_BIT), 0)
        return masks[codes]

    @cached_property
    def documentation_unknown(self) -> np.ndarray:
        return (self.df["documentation"] == DOC_UNKNOWN).to_numpy()

    @cached_property
    def is_jw(self) -> np.ndarray:
        return self.has_modifier(["JW"])
