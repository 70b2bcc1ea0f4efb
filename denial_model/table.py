"""The claim-line table (docs/claim-lines.md): validate and normalize.

Every column is checked at once over the whole table (no loop over rows). A row with a bad
value goes to the rejects table (`row`, `claim_id`, `line_number`, `column`, `reason`) and
the rest go on, so rows in = rows checked + rows rejected. Extra columns pass through.
"""

from __future__ import annotations

import re
from collections.abc import Callable
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


# Up to this many rows, text is factorized by a dict over the cells: pandas' factorize costs
# about 100 us whatever the length, the dict a microsecond a cell (a claim sent to the
# service has two lines, and a scoring call factorizes some hundred columns).
SMALL_FACTORIZE = 64


def _factorize(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes, uniques as an object array); missing values are a value of their own.

    Validated text columns are categorical: their codes and categories are used as they are
    (categories may include values no row uses any more). Read through the Categorical
    itself (`.array`): the `.cat` accessor builds a Series per attribute."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return _factorize_categorical(s.array)
    if len(s) <= SMALL_FACTORIZE and (s.dtype == object or isinstance(s.dtype, pd.StringDtype)):
        return _factorize_small(s.to_numpy(dtype=object))
    codes, uniques = s.factorize(use_na_sentinel=False)
    return np.asarray(codes, dtype=np.intp), np.asarray(uniques, dtype=object)


def factorize_objects(values: np.ndarray | list) -> tuple[np.ndarray, np.ndarray]:
    """`_factorize` of an array or list of values (a few without building a Series)."""
    values = np.asarray(values, dtype=object)
    if len(values) <= SMALL_FACTORIZE:
        return _factorize_small(values)
    return _factorize(pd.Series(values, dtype=object))


def _factorize_categorical(cat: pd.Categorical) -> tuple[np.ndarray, np.ndarray]:
    """`_factorize` of a Categorical: its own codes and categories."""
    codes = np.asarray(cat.codes, dtype=np.intp)
    uniques = np.asarray(cat.categories, dtype=object)
    if len(codes) and codes.min() < 0:
        codes = np.where(codes < 0, len(uniques), codes)
        uniques = np.append(uniques, np.nan)
    return codes, uniques


def _factorize_small(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`pd.factorize(use_na_sentinel=False)` of a few object cells (at most
    `SMALL_FACTORIZE`: a bounded path, not a row loop): codes in order of first appearance,
    every missing value (None, NaN, NA) one unique NaN, and values equal in Python (1, 1.0,
    True) one unique, the first seen, as pandas' object hash table does."""
    keys = values.copy()
    keys[pd.isna(values)] = _MISSING
    first = dict.fromkeys(keys.tolist())  # distinct keys, first-seen order and objects
    code_of = {k: i for i, k in enumerate(first)}
    codes = np.fromiter((code_of[k] for k in keys.tolist()), dtype=np.intp, count=len(keys))
    uniques = np.empty(len(first), dtype=object)
    uniques[:] = [np.nan if k is _MISSING else k for k in first]
    return codes, uniques


_MISSING = object()


def _fast_categorical(codes: np.ndarray, cats: pd.Index) -> pd.Categorical:
    from pandas.core.dtypes.cast import coerce_indexer_dtype

    dtype = pd.CategoricalDtype._from_fastpath(cats, False)
    return pd.Categorical._simple_new(coerce_indexer_dtype(codes, cats), dtype)


def _categorical(codes: np.ndarray, categories: np.ndarray) -> pd.Categorical:
    """Categorical from codes (-1: missing) and categories known to be distinct and non-null
    (they come from a factorize), without pandas checking them again: that check hashes every
    category, which for ids costs more than the work it guards."""
    return _categorical_of(codes, _categories_index(categories))


# A claim's columns hold a few values, mostly the same codes, payers and places as the last
# claim's: their categories Index (an immutable object pandas shares between Categoricals) is
# built once per distinct list of a few values, not once per column per call.
_INDEX_MEMO: dict[tuple, pd.Index] = {}
INDEX_MEMO_SIZE = 4096  # ids make new lists every claim: bounded (a few MB)


def _categories_index(categories: np.ndarray) -> pd.Index:
    if len(categories) > SMALL_FACTORIZE:
        return pd.Index(categories, dtype=object)
    key = tuple((type(c), c) for c in categories.tolist())  # 1, 1.0 and '1' apart
    index = _INDEX_MEMO.get(key)
    if index is None:
        if len(_INDEX_MEMO) >= INDEX_MEMO_SIZE:
            _INDEX_MEMO.clear()
        index = _INDEX_MEMO[key] = pd.Index(categories, dtype=object)
    return index


def _categorical_of(codes: np.ndarray, cats: pd.Index) -> pd.Categorical:
    """`_categorical` with the categories an Index already (kept in its dtype)."""
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
    # read once into a local dict: another thread may clear `seen` meanwhile
    found = {k: seen.get(k, _MISSING) for k in keys}
    missing = [i for i, k in enumerate(keys) if found[k] is _MISSING]
    if missing:
        got = np.asarray(fn(pd.Series(uniques[missing], dtype=object)).to_numpy())
        if memo["dtype"] is None and got.dtype.kind in "biufO":
            memo["dtype"] = got.dtype
        if got.dtype != memo["dtype"]:
            return None
        fresh = dict(zip((keys[i] for i in missing), got.tolist(), strict=True))
        found.update(fresh)
        if len(seen) > MEMO_SIZE:
            seen.clear()
        seen.update(fresh)
    out = np.array([found[k] for k in keys], dtype=object)
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
        names = [
            f"{g}\x1f{c}"
            for g, c in zip((pairs // width).tolist(), cats[pairs % width].tolist(), strict=True)
        ]
        ids = _categorical(inverse.reshape(-1), np.array(names, dtype=object))
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
    cells = _text_cells(s)
    return per_unique(cells, _stripped) if _holds_text(s) else cells


def _holds_text(s: pd.Series) -> bool:
    """Text, mixed values or categorical: stripped per distinct value (other types are
    written as text by `_text_cells`, already without spaces)."""
    return not (
        pd.api.types.is_datetime64_any_dtype(s)
        or pd.api.types.is_float_dtype(s)
        or pd.api.types.is_integer_dtype(s)
        or pd.api.types.is_bool_dtype(s)
    )


def _text_cells(s: pd.Series) -> pd.Series:
    """A column whose cells are text once stripped: numbers, dates and booleans written as
    text (row by row, vectorized: they are not text to begin with), lists joined by ';'; a
    column of text (or of mixed values, or categorical) is returned as it is."""
    if isinstance(s.dtype, pd.StringDtype):  # text already (checked first: the common case)
        return s
    if s.dtype == object:
        return s.map(_joined) if _holds_lists(s) else s  # a list-typed column (Parquet lists)
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.dt.strftime("%Y-%m-%d").fillna("")
    if pd.api.types.is_float_dtype(s):
        present = s.dropna()
        whole = (present == np.floor(present)).all() and (present.abs() < 2**53).all()  # exact as int64
        out = s.astype("Int64").astype(str) if whole else s.astype(str)
        return out.where(s.notna(), "").astype(object)
    if pd.api.types.is_integer_dtype(s) or pd.api.types.is_bool_dtype(s):
        return s.astype(str).astype(object)
    return s


def _stripped(u: pd.Series) -> pd.Series:
    """Distinct cells as stripped text, '' for missing."""
    return pd.Series(_stripped_values(u.to_numpy(dtype=object)), index=u.index, dtype=object)


# Text work on distinct values goes through Python's str and re, a value at a time: pandas'
# string methods cost 60-300 us a call whatever the length, which for the few new values of
# a claim sent to the service is most of the work, and a column's distinct values are few
# beside its rows (ids are the exception, and they only get stripped and compared to '').
def _each(fn: Callable, values: np.ndarray, dtype=object) -> np.ndarray:
    """`fn` of each of `values` (distinct values, not rows)."""
    return np.fromiter((fn(v) for v in values.tolist()), dtype=dtype, count=len(values))


def _stripped_values(values: np.ndarray) -> np.ndarray:
    """Stripped text of each value, '' for a missing one (None, NaN, NA, NaT)."""
    missing = pd.isna(values)
    return _each(lambda v: str(v).strip(), np.where(missing, "", values).astype(object))


def _holds_lists(s: pd.Series) -> bool:
    """A column whose cells are lists (judged by its first non-missing cell: no row loop)."""
    values = s.to_numpy()
    missing = pd.isna(values)
    first = int(np.argmin(missing)) if len(values) else 0
    return bool(len(values)) and not missing[first] and isinstance(values[first], (list, tuple, np.ndarray))


def _joined(v: object) -> object:
    return ";".join(map(str, v)) if isinstance(v, (list, tuple, np.ndarray)) else v


# The longest text a cell may hold (a claim id, a description, a list of diagnoses): longer
# is an export gone wrong, and a row reject.
MAX_CELL = 10_000
# The largest value a column may hold: above it a number is a data error (a unit typed into
# an amount, 1e308 from an export), not a claim (docs/claim-lines.md).
NUMBER_LIMITS = {"line_number": 1e6, "units": 1e6, "billed_amount": 1e8, "dose_mg": 1e6, "ndc_quantity": 1e6}


# what `pd.api.types.infer_dtype` calls an object column of numbers only (JSON numbers, and
# nulls): read as floats at once, as a float column is
_NUMBER_CELLS = frozenset({"integer", "floating", "mixed-integer-float", "empty"})


def _json_numbers(s: pd.Series) -> np.ndarray | None:
    """An object column holding numbers and nulls only (JSON numbers) as floats, else None
    (text, booleans, an integer too large for a float: read as text, cell by distinct cell)."""
    cells = s.to_numpy()
    if pd.api.types.infer_dtype(cells, skipna=True) not in _NUMBER_CELLS:
        return None
    try:
        return np.where(pd.isna(cells), np.nan, cells).astype(np.float64)
    except OverflowError:
        return None


def _number(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(values as float, True where a non-empty cell is not a finite number)."""
    if s.dtype == object and (json := _json_numbers(s)) is not None:
        vals = json
    elif pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        vals = s.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        vals = per_unique(_text_cells(s), _parsed_number).to_numpy(dtype=np.float64)
    bad = ~np.isnan(vals) & ~np.isfinite(vals)
    return np.where(bad, np.nan, vals), bad


def _parsed_number(u: pd.Series) -> pd.Series:
    """Distinct cells as numbers: NaN when empty, infinite when not a number (a bad value
    either way, as an infinite one is)."""
    text = _stripped(u)
    vals = pd.to_numeric(text.where(text != "", None), errors="coerce").astype(float)
    return vals.where(vals.notna() | (text == ""), np.inf)


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


_DATE_RX = re.compile(_DATE_RE, re.ASCII)
_MIDNIGHT_RX = re.compile(_MIDNIGHT_RE, re.ASCII)


def _iso_facts(text: str) -> tuple[int, bool]:
    """(day number or `_NO_DAY`, has a time of day other than midnight) of an ISO text."""
    m = _DATE_RX.match(text)
    if m is None:
        return _NO_DAY, False
    try:
        day = int(np.datetime64(m[1], "D").astype(np.int64))
    except ValueError:  # 2025-02-30
        return _NO_DAY, False
    return day, m[2] is not None and _MIDNIGHT_RX.fullmatch(m[2]) is None


def _date_facts(u: pd.Series, date_format: str | None) -> pd.Series:
    """Per distinct text: day number * 4 + 2 if it has a time of day other than midnight
    + 1 if it is not empty (`_NO_DAY` for the day when it is not a date): one integer, so
    `per_unique` can spread (and remember) all three facts at once."""
    text = u.to_numpy(dtype=object)
    facts = [_iso_facts(v) for v in text.tolist()]  # distinct values
    day = np.array([f[0] for f in facts], dtype=np.int64)
    timed = np.array([f[1] for f in facts], dtype=bool)
    present = text != ""
    if date_format is not None and (other := (day == _NO_DAY) & present).any():
        parsed = pd.to_datetime(pd.Series(text[other]), format=date_format, errors="coerce").to_numpy()
        day[other] = np.where(np.isnat(parsed), _NO_DAY, parsed.astype("datetime64[D]").astype(np.int64))
    return pd.Series(day * 4 + timed.astype(np.int64) * 2 + present.astype(np.int64))


def _date(s: pd.Series, date_format: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
        packed = per_unique(_text_cells(s), lambda u: _date_facts(_stripped(u), date_format)).to_numpy()
        present, timed = (packed & 1).astype(bool), (packed & 2).astype(bool)
        day = packed >> 2
        days = np.where(day == _NO_DAY, np.datetime64("NaT"), day.astype("datetime64[D]"))
    in_range = ~np.isnat(days) & (days >= _FIRST_DAY) & (days < _END_DAY)
    vals = np.where(in_range, days, np.datetime64("NaT")).astype("datetime64[ns]")
    bad = present & ~in_range
    return vals, bad, timed & ~bad


@dataclass
class Validated:
    """Result of validation: normalized good rows, and one rejects row per bad input row."""

    lines: pd.DataFrame
    rejects: pd.DataFrame
    rows_in: int
    rows: np.ndarray  # input position of each row of `lines`
    # the arrays `lines` was built from, when every row was kept (None otherwise): a
    # ClaimFrame reads them instead of reading each column back out of `lines`
    columns: dict[str, object] | None = None

    def claim_frame(self) -> ClaimFrame:
        """The lines as a ClaimFrame."""
        return ClaimFrame(self.lines, self.columns)

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

    def __init__(self, n: int) -> None:
        self.n = n
        self.found: list[tuple[str, np.ndarray, str, pd.Series | None]] = []

    def flag(self, col: str, bad, reason: str, value: pd.Series | None = None) -> None:
        """`bad`: a mask of the rows (array or Series, missing as not bad)."""
        hit = (
            bad.to_numpy(dtype=bool, na_value=False) if isinstance(bad, pd.Series) else np.asarray(bad, bool)
        )
        if hit.any():
            self.found.append((col, hit, reason, value))

    def unreadable(self, read: pd.Series) -> None:
        """Rows the file reader could not take: their reader problem is their only reason
        (their cells are empty placeholders, not values worth reporting)."""
        hit = (read.notna() & (read.astype(object) != "")).to_numpy()
        if not hit.any():
            return
        self.found = [(c, bad & ~hit, r, v) for c, bad, r, v in self.found]
        for problem in pd.unique(read[hit].astype(str)):
            col, why = problem.split("\t", 1)
            self.found.append((col, (read.astype(object) == problem).to_numpy() & hit, why, None))

    def any_row(self) -> np.ndarray:
        bad_any = np.zeros(self.n, dtype=bool)
        for _, bad, *_ in self.found:
            bad_any |= bad
        return bad_any


_LIST_SEPARATORS = re.compile(r"[\s,;]+")  # any space, a no-break space from a spreadsheet too


def _split_list(x: np.ndarray) -> np.ndarray:
    return _each(lambda v: _LIST_SEPARATORS.sub(";", v).strip(";"), x)


def _upper(x: np.ndarray) -> np.ndarray:
    return _each(str.upper, x)


def _lower(x: np.ndarray) -> np.ndarray:
    return _each(str.lower, x)


def _not_matching(pattern: str) -> Callable[[np.ndarray], np.ndarray]:
    rx = re.compile(pattern, re.ASCII)  # ASCII: \d is 0-9, not every script's digits
    return lambda x: _each(lambda v: rx.fullmatch(v) is None, x, bool)


def _not_in(allowed: tuple[str, ...]) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: _each(lambda v: v not in allowed, x, bool)


def _listed_and(bad: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """A check on a list column that an empty cell passes."""
    return lambda x: (x != "") & bad(x)


def _unknown_tokens(x: np.ndarray) -> np.ndarray:
    def unknown(text: str) -> str:
        tokens = text.split(";")
        stray = ", ".join(k for k in tokens if k not in DOC_BIT)
        return stray + (f" ({DOC_UNKNOWN!r} stands alone)" if DOC_UNKNOWN in tokens else "")

    return _each(unknown, x)


_DASHED_NDC = re.compile(r"\d{5}-\d{4}-\d{2}", re.ASCII)
_UNDOTTED_DX = re.compile(r"(?:^|(?<=;))([A-Z][0-9][0-9A-Z])([0-9A-Z])", re.ASCII)

_Values = Callable[[np.ndarray], np.ndarray]  # distinct values (object array of str) -> one per value


@dataclass(frozen=True)
class _Check:
    """One problem a text cell can have, judged on the column's normalized distinct values.
    `quote`: what the reason quotes: "value" (normalized), "text" (as sent, stripped), a
    function of the normalized values, or None."""

    reason: str
    bad: _Values
    quote: str | _Values | None = "value"


@dataclass(frozen=True)
class _Text:
    """A text column: how its stripped text is normalized, the checks on the normalized
    value, and (`stored`) the form kept after the checks. One registration per column."""

    normalize: _Values | None = None
    checks: tuple[_Check, ...] = ()
    stored: _Values | None = None


_EMPTY = _Check("is empty", lambda x: x == "", None)
_IDENTITY: dict[str, _Text] = {
    "claim_id": _Text(checks=(_EMPTY,)),
    "patient_id": _Text(checks=(_EMPTY,)),
    "payer_id": _Text(checks=(_EMPTY,)),
    "provider_npi": _Text(checks=(_Check("must be 10 digits, got", _not_matching(r"\d{10}")),)),
    "payer_type": _Text(
        _lower,
        (_Check(f"must be one of {', '.join(PAYER_TYPES)}, got", _not_in(PAYER_TYPES)),),
    ),
    "place_of_service": _Text(
        lambda x: _each(lambda v: "0" + v if len(v) == 1 else v, x),
        (_Check("must be a 2-digit code, got", _not_matching(r"\d{2}")),),
    ),
    "hcpcs_code": _Text(
        _upper,
        (_Check("is not a 5-character HCPCS/CPT code:", _not_matching(_HCPCS_PATTERN)),),
    ),
    "modifiers": _Text(
        lambda x: _split_list(_upper(x)),
        (
            _Check(
                "must be up to four 2-character modifiers separated by ';', got",
                _listed_and(_not_matching(_MOD_PATTERN)),
            ),
        ),
    ),
}
_CLINICAL: dict[str, _Text] = {
    "ndc": _Text(
        lambda x: _each(lambda v: v.replace("-", "") if _DASHED_NDC.fullmatch(v) else v, x),
        (_Check("must be 11 digits (5-4-2, no dashes), got", _listed_and(_not_matching(r"\d{11}")), "text"),),
    ),
    "ndc_unit": _Text(
        _upper,
        (_Check(f"must be one of {', '.join(NDC_UNITS)}, got", _listed_and(_not_in(NDC_UNITS))),),
    ),
    "drug_description": _Text(),
    "diagnosis_codes": _Text(
        lambda x: _split_list(_upper(x)),
        (
            _Check("is empty: at least one ICD-10-CM code is required", lambda x: x == "", None),
            _Check("is not ICD-10-CM codes separated by ';':", _listed_and(_not_matching(_DX_PATTERN))),
        ),
        lambda x: _each(lambda v: _UNDOTTED_DX.sub(r"\1.\2", v), x),
    ),
    "prior_auth_number": _Text(),
    "documentation": _Text(
        lambda x: _split_list(_lower(x)),
        (_Check("has unknown token(s):", _listed_and(_not_matching(_DOC_PATTERN)), _unknown_tokens),),
    ),
}


@dataclass
class _Facts:
    """A text column's facts per distinct input value (`codes`: each row's value), each
    computed once: stripped text, normalized value, stored form, and the problems found as
    bits (bit 0: longer than MAX_CELL, bit i + 1: check i)."""

    codes: np.ndarray
    text: np.ndarray
    value: np.ndarray
    stored: np.ndarray
    bits: np.ndarray

    def rows(self, bit: int) -> np.ndarray:
        return ((self.bits >> bit) & 1).astype(bool)[self.codes]


# A column's facts per distinct input value, kept across calls (`_text_facts`): a service
# scoring a claim at a time sees the same codes, payers and places again and again.
_TEXT_MEMO: dict[str, dict] = {}


def _distinct_facts(spec: _Text, uniques: np.ndarray) -> list[np.ndarray]:
    """[text, value, stored, bits] of distinct cells."""
    text = _stripped_values(uniques)
    value = spec.normalize(text) if spec.normalize else text
    bits = (_each(len, text, np.int64) > MAX_CELL).astype(np.int64)
    for i, check in enumerate(spec.checks):
        bits |= np.asarray(check.bad(value), dtype=bool).astype(np.int64) << (i + 1)
    stored = spec.stored(value) if spec.stored else value
    return [text, value, stored, bits]


def _text_facts(name: str, spec: _Text, s: pd.Series) -> _Facts:
    """The facts of a column's distinct values; a few distinct values are answered from what
    the same column gave them before (`_TEXT_MEMO`), and only the new ones computed."""
    codes, uniques = _factorize(_text_cells(s))
    if len(uniques) > MEMO_UNIQUES:
        return _Facts(codes, *_distinct_facts(spec, uniques))
    seen = _TEXT_MEMO.setdefault(name, {})
    keys = [_MISSING if u is np.nan or (isinstance(u, float) and u != u) else (type(u), u) for u in uniques]
    found = {k: seen.get(k) for k in keys}  # a local copy: another thread may clear `seen`
    new = [i for i, k in enumerate(keys) if found[k] is None]
    if new:
        got = _distinct_facts(spec, uniques[new])
        fresh = dict(zip((keys[i] for i in new), zip(*(g.tolist() for g in got), strict=True), strict=True))
        found.update(fresh)
        if len(seen) > MEMO_SIZE:
            seen.clear()
        seen.update(fresh)
    rows = [found[k] for k in keys]
    facts = [np.empty(len(rows), dtype=object) for _ in range(3)]
    for j in range(3):
        facts[j][:] = [r[j] for r in rows]
    return _Facts(codes, *facts, np.array([r[3] for r in rows], dtype=np.int64))


def _stored(facts: _Facts) -> pd.Categorical:
    """The column as validated: categorical of the stored forms (normalizing can merge
    distinct inputs into one value)."""
    if len(facts.stored) <= SMALL_FACTORIZE:
        rcodes, runiques = _factorize_small(facts.stored)
    else:
        rcodes, runiques = _factorize(pd.Series(facts.stored, dtype=object))
    return _categorical(rcodes[facts.codes], runiques)


def _quoted(facts: _Facts, quote: str | _Values | None) -> pd.Series | None:
    """Each row's quoted value for a reason (see `_Check.quote`), built only for a problem found."""
    if quote is None:
        return None
    if callable(quote):
        return pd.Series(quote(facts.value)[facts.codes], dtype=object)
    return pd.Series((facts.value if quote == "value" else facts.text)[facts.codes], dtype=object)


def _text_columns(
    out: dict[str, pd.Series], specs: dict[str, _Text], problems: _Problems
) -> dict[str, _Facts]:
    """Each text column's facts, its checks' problems flagged in the registry's order."""
    facts = {}
    for col, spec in specs.items():
        f = facts[col] = _text_facts(col, spec, out[col])
        if not f.bits.any():
            continue
        for i, check in enumerate(spec.checks):
            bad = f.rows(i + 1)
            if bad.any():
                problems.flag(col, bad, check.reason, _quoted(f, check.quote))
    return facts


def _numbers_and_dates(
    out: dict[str, pd.Series], problems: _Problems, date_format: str | None = None
) -> dict[str, np.ndarray]:
    line_no, bad_ln = _number(out["line_number"])
    with np.errstate(invalid="ignore"):
        bad_ln = bad_ln | np.isnan(line_no) | (line_no < 1) | (line_no != np.floor(line_no))
    problems.flag("line_number", bad_ln, "must be an integer >= 1, got", out["line_number"])
    units, bad = _number(out["units"])
    problems.flag("units", bad | ~(units > 0), "must be a number > 0, got", out["units"])
    billed, bad = _number(out["billed_amount"])
    problems.flag(
        "billed_amount",
        bad | np.isnan(billed) | (billed < 0),
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
        shape = "YYYY-MM-DD" + (f" or {date_format}" if date_format else "")
        problems.flag(
            col, bad | np.isnat(dates[col]), f"is not an ISO date ({shape}, years 1900-2262):", out[col]
        )
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
        "line_number": np.where(np.abs(line_no) <= NUMBER_LIMITS["line_number"], line_no, 0).astype("int64"),
        "units": units,
        "billed_amount": billed,
        "dose_mg": dose,
        "ndc_quantity": ndc_qty,
        **dates,
    }


def own_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A frame of `df`'s rows numbered 0.. that can be changed without changing `df` (a
    shallow copy: pandas copies a column on write)."""
    numbered = isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1
    return df.copy(deep=False) if numbered else df.reset_index(drop=True)


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
    names = check_required_columns(df.columns)
    out = own_frame(df)
    if names != list(df.columns):
        out.columns = names
    read = out.pop(READ_PROBLEM) if READ_PROBLEM in out.columns else None
    if not keep_extra and (wanted := [c for c in INPUT_COLUMNS if c in out.columns]) != list(out.columns):
        out = out[wanted]
    for col in OPTIONAL:
        if col not in out.columns:
            out[col] = pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[""])
    # each column read out of the frame once: a pandas column access builds a new Series
    columns = {c: out[c] for c in out.columns}
    problems = _Problems(n)
    length_problems = _Problems(n)  # listed first: a cell too long is the first thing to say
    facts = _text_columns(columns, _IDENTITY, problems)
    numbers = _numbers_and_dates(columns, problems, check_date_format(date_format))
    facts.update(_text_columns(columns, _CLINICAL, problems))
    for col in _STRING_COLS:
        too_long = facts[col].rows(0)
        if too_long.any():
            length_problems.flag(
                col, too_long, f"is longer than {MAX_CELL:,} characters:", _quoted(facts[col], "text")
            )
    problems.found = length_problems.found + problems.found
    if read is not None:
        problems.unreadable(read)
    bad_any = problems.any_row()
    rejects = _rejects(problems.found, bad_any, facts["claim_id"], columns, row_offset)
    normalized = {**columns, **{c: _stored(f) for c, f in facts.items()}, **numbers}
    lines = pd.DataFrame({c: normalized[c] for c in out.columns}, copy=False)
    keep = ~bad_any
    good = lines if keep.all() else lines.iloc[np.flatnonzero(keep)].reset_index(drop=True)
    rows = np.flatnonzero(keep).astype(np.int64) + row_offset
    kept = {c: normalized[c] for c in out.columns} if keep.all() else None
    return Validated(lines=good, rejects=rejects, rows_in=n, rows=rows, columns=kept)


def _shown(value: str, width: int = 60) -> str:
    """A bad value as a reason quotes it: in full when short, else its start and its length."""
    return repr(value) if len(value) <= width else f"{value[:width]!r}... ({len(value):,} characters)"


_NO_REJECTS = pd.DataFrame({c: pd.Series(dtype="int64" if c == "row" else object) for c in REJECT_COLUMNS})


def _rejects(
    problems, bad_any: np.ndarray, claim: _Facts, raw: dict[str, pd.Series], row_offset: int
) -> pd.DataFrame:
    if not bad_any.any():
        return _NO_REJECTS.copy()
    idx = np.flatnonzero(bad_any)
    columns = pd.Series("", index=idx, dtype=object)
    reasons = pd.Series("", index=idx, dtype=object)
    for col, bad, reason, value in problems:
        hit = np.flatnonzero(bad)
        text_reason = col + " " + reason
        if value is not None:
            shown = _as_text(value.iloc[hit]).map(_shown)
            text_reason = text_reason + " " + shown.astype(str)
        else:
            text_reason = pd.Series(text_reason, index=hit)
        sep_c = np.where(columns[hit] == "", "", ",")
        sep_r = np.where(reasons[hit] == "", "", "; ")
        columns[hit] = columns[hit] + sep_c + col
        reasons[hit] = reasons[hit] + sep_r + text_reason.to_numpy()
    return pd.DataFrame(
        {
            "row": (idx + row_offset).astype("int64"),
            "claim_id": claim.text[claim.codes[idx]],
            "line_number": _as_text(raw["line_number"]).to_numpy()[idx],
            "column": columns.to_numpy(),
            "reason": reasons.to_numpy(),
        }
    )


def rejects_table(rejects: pd.DataFrame, rows: np.ndarray) -> pa.Table:
    """A block's rejects (from `validate`) as Arrow, each naming its row in the whole input."""
    rej = rejects.assign(row=rows[rejects["row"].to_numpy(dtype=np.int64)])
    return pa.Table.from_pandas(rej[list(REJECT_COLUMNS)], schema=REJECTS_SCHEMA, preserve_index=False)


def _read_only(a: np.ndarray) -> np.ndarray:
    """A read-only view of `a` (`a` itself, maybe pandas' own data, keeps its flags)."""
    view = a.view()
    view.flags.writeable = False
    return view


class ClaimFrame:
    """A validated table with the columnar forms the rules read, each computed once.

    Lists in a cell (`modifiers`, `diagnosis_codes`, `documentation`) are parsed per unique
    value, not per row: `pd.factorize` maps the many rows onto the few distinct strings.
    """

    def __init__(self, lines: pd.DataFrame, columns: dict[str, object] | None = None):
        """`columns`: the arrays (or Categoricals, or Series) `lines` was built from, by name
        (`Validated.columns`), read instead of `lines`' columns."""
        self.df = lines
        self.n = len(lines)
        self._read: dict[tuple, object] = {}
        self._source = columns or {}

    # Columns are read through these, each once per table: a pandas column access builds a new
    # Series every time (25-60 us, more than a claim's whole rule), and the rules and features
    # read the same few columns dozens of times. What they return is shared: read-only.

    def column(self, name: str) -> pd.Series:
        """Column `name` of the lines."""
        key = ("column", name)
        if key not in self._read:
            self._read[key] = self.df[name]
        return self._read[key]

    def values(self, name: str, dtype: type | None = None) -> np.ndarray:
        """Column `name` as a read-only NumPy array (`dtype`: as `Series.to_numpy`'s)."""
        key = ("values", name, dtype)
        if key not in self._read:
            source = self._source.get(name)
            if isinstance(source, np.ndarray) and (dtype is None or source.dtype == dtype):
                values = source
            elif isinstance(source, pd.Categorical) and dtype is None and source.categories.dtype == object:
                codes, uniques = self.factor(name)  # the categories by code, as pandas would give them
                values = uniques[codes]
            else:
                values = self.column(name).to_numpy(dtype=dtype)
            self._read[key] = _read_only(values)
        return self._read[key]

    def factor(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(codes, distinct values) of column `name` (`_factorize`), read-only."""
        key = ("factor", name)
        if key not in self._read:
            source = self._source.get(name)
            if isinstance(source, pd.Categorical):
                codes, uniques = _factorize_categorical(source)
            else:
                codes, uniques = _factorize(self.column(name))
            self._read[key] = (_read_only(codes), _read_only(uniques))
        return self._read[key]

    def days(self, name: str) -> np.ndarray:
        """Date column `name` as whole days since 1970-01-01 (int64), read-only."""
        key = ("days", name)
        if key not in self._read:
            days = self.values(name).astype("datetime64[D]").astype(np.int64)
            self._read[key] = _read_only(days)
        return self._read[key]

    def per_value(self, name: str, fn: Callable[[object], object], dtype: type = float) -> np.ndarray:
        """`fn(value)` of every line of column `name` (as `dtype`), computed per distinct value."""
        codes, uniques = self.factor(name)
        if not self.n:
            return np.zeros(0, dtype=dtype)
        return np.fromiter((fn(u) for u in uniques), dtype=dtype, count=len(uniques))[codes]

    def filled(self, name: str) -> np.ndarray:
        """1.0 where text column `name` is filled in, 0.0 where it is empty."""
        return self.per_value(name, lambda u: u != "")

    @cached_property
    def modifier_matrix(self) -> np.ndarray:
        """(n, 4) array of modifier strings, '' where absent."""
        codes, uniques = self.factor("modifiers")
        parsed = np.full((len(uniques) + 1, 4), "", dtype=object)
        for i, u in enumerate(uniques):
            toks = [t for t in str(u).split(";") if t][:4]
            parsed[i, : len(toks)] = toks
        return parsed[codes]

    def has_modifier(self, modifiers: list[str] | tuple[str, ...]) -> np.ndarray:
        """True where the line carries any of `modifiers`."""
        wanted = set(modifiers)
        return self.per_value("modifiers", lambda u: bool(set(str(u).split(";")) & wanted), bool)

    @cached_property
    def diagnosis_long(self) -> tuple[np.ndarray, np.ndarray]:
        """(row index, code) pairs of every diagnosis on every line: the table in long form."""
        codes, uniques = self.factor("diagnosis_codes")
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
        pre = tuple(prefixes)
        return self.per_value(
            "diagnosis_codes", lambda u: any(c.startswith(pre) for c in str(u).split(";")), bool
        )

    @cached_property
    def documentation_mask(self) -> np.ndarray:
        """Bit mask of documentation tokens present (bit i = DOCUMENTATION_TOKENS[i]); every
        bit for documentation that is not known (`DOC_UNKNOWN`), so no rule finds one missing."""
        codes, uniques = self.factor("documentation")
        masks = np.zeros(len(uniques) + 1, dtype=np.int64)
        for i, u in enumerate(uniques):
            if u == DOC_UNKNOWN:
                masks[i] = sum(DOC_BIT.values())
                continue
            masks[i] = reduce(or_, (DOC_BIT[t] for t in str(u).split(";") if t in DOC_BIT), 0)
        return masks[codes]

    @cached_property
    def documentation_unknown(self) -> np.ndarray:
        return self.per_value("documentation", lambda u: u == DOC_UNKNOWN, bool)

    @cached_property
    def is_jw(self) -> np.ndarray:
        return self.has_modifier(["JW"])
