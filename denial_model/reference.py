"""Official reference data: the HCPCS Level II code set, the ASP NDC-HCPCS crosswalk and
the ASP payment limits, plus ICD-10-CM validity from the `simple_icd_10_cm` package.

Code identity always comes from here, never from the guidance documents. The files ship
with the package under their CMS release names; a user points at a newer release with
`DENIAL_MODEL_REFERENCE_DIR` (a folder holding files of the same three kinds) or by
calling `load_reference(folder)`. The newest release of each kind in the folder wins.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from denial_model.files import atomic_output
from denial_model.resources import bundled_path

ENV_REFERENCE_DIR = "DENIAL_MODEL_REFERENCE_DIR"

# A mass in a descriptor: "1 mg", "10 micrograms", "up to 1 gm", "0.25 mg".
_MASS = r"(\d+(?:\.\d+)?)\s*(mg|mcg|micrograms?|milligrams?|gm|grams?|g)\b"
_MASS_RE = re.compile(_MASS, re.IGNORECASE)
_TO_MG = {
    "mg": 1.0,
    "milligram": 1.0,
    "mcg": 0.001,
    "microgram": 0.001,
    "gm": 1000.0,
    "gram": 1000.0,
    "g": 1000.0,
}
# "0.9 mg, provided in 1.1 mg vial": the vial size is not the billing unit
_PROVIDED_IN_RE = re.compile(r"provided in\s+" + _MASS + r"[^,;]*", re.IGNORECASE)
# "7.5 mg/2.5 mg (10 mg)": a combination billed per its stated total
_TOTAL_RE = re.compile(r"\(\s*" + _MASS + r"\s*\)", re.IGNORECASE)
# dose bands: "greater than 56 mg", "less than or equal to 100 mg", "up to 56 mg of <drug>"
_ABOVE_RE = re.compile(r"greater than\s+" + _MASS, re.IGNORECASE)
_UPTO_RE = re.compile(
    r"(?:less than or equal to\s+" + _MASS + r"|up to\s+" + _MASS + r"(?=\s+of\s))", re.IGNORECASE
)


def _mg(amount: str, unit: str) -> float:
    unit = unit.lower()
    return float(amount) * _TO_MG[unit if unit in _TO_MG else unit[:-1]]


def descriptor_band_mg(descriptor: str) -> tuple[float, float]:
    """(above, up to) in mg for a code billed once per service whose descriptor gives a dose
    band ("... up to 56 mg of esketamine ...", "greater than 56 mg"); (nan, nan) otherwise.

    A band code has no per-mg billing unit: one unit per service, and the dose given must lie
    in the band (G2082 vs G2083, Q9991 vs Q9992)."""
    d = descriptor or ""
    above, upto = _ABOVE_RE.search(d), _UPTO_RE.search(d)
    if not (above or upto) or len(_MASS_RE.findall(d)) > 2:
        return float("nan"), float("nan")
    high = float("inf")
    if upto:
        amount, unit = upto.groups()[:2] if upto.group(1) else upto.groups()[2:]
        high = _mg(amount, unit)
    return (_mg(*above.groups()) if above else 0.0, high)


def descriptor_unit_mg(descriptor: str) -> float:
    """Milligrams in one billing unit of a code, read off its long descriptor (NaN if none).

    The unit is the descriptor's one mass ("Injection, naltrexone, depot form, 1 mg"; "1
    microgram"); a vial size after "provided in" is not the unit; a combination product with
    a stated total "(10 mg)" is billed per that total; a combination without one, and a code
    billed per service for a dose band (see `descriptor_band_mg`), have no mg unit (NaN).
    """
    d = descriptor or ""
    band = descriptor_band_mg(d)
    if band[0] == band[0]:
        return float("nan")
    total = _TOTAL_RE.search(d)
    if total:
        return _mg(*total.groups())
    masses = _MASS_RE.findall(_PROVIDED_IN_RE.sub("", d))
    if len(masses) != 1:
        return float("nan")
    return _mg(*masses[0])


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_RELEASE_RE = re.compile(r"_(\d{4})(q[1-4]|" + "|".join(_MONTHS) + r")\b", re.IGNORECASE)


def release_start(file_name: str) -> pd.Timestamp | None:
    """First day a reference file applies, from its CMS release name (`..._2026q1.csv`,
    `..._2025oct.csv`); None when the name carries no release."""
    m = _RELEASE_RE.search(Path(file_name).stem + "\b")
    if not m:
        return None
    year, part = int(m.group(1)), m.group(2).lower()
    month = 3 * (int(part[1]) - 1) + 1 if part.startswith("q") else _MONTHS.index(part) + 1
    return pd.Timestamp(year=year, month=month, day=1)


def _newest(folder: Path, prefix: str) -> Path:
    found = sorted(folder.glob(f"{prefix}*.csv"))
    if not found:
        raise FileNotFoundError(f"no reference file {prefix}*.csv in {folder}")
    return found[-1]


@dataclass(frozen=True, eq=False)
class Reference:
    """The code set and drug tables in force, indexed for vectorized lookups."""

    folder: Path
    hcpcs_file: str
    crosswalk_file: str
    payment_file: str
    hcpcs: pd.DataFrame = field(repr=False)
    crosswalk: pd.DataFrame = field(repr=False)
    payment_limits: pd.DataFrame = field(repr=False)

    @property
    def release(self) -> dict[str, str]:
        return {
            "hcpcs": self.hcpcs_file,
            "crosswalk": self.crosswalk_file,
            "payment_limits": self.payment_file,
        }

    def code_info(self, code: str) -> dict | None:
        """The code set's row for one code, or None when the code is not in the file."""
        if code not in self.hcpcs.index:
            return None
        return self.hcpcs.loc[code].to_dict()

    def ndc_codes(self) -> pd.Series:
        """NDC -> the HCPCS code it is a product of (first listed when several; see
        `ndc_code_pairs` for all of them)."""
        return self._ndc_first_code

    @cached_property
    def _ndc_first_code(self) -> pd.Series:
        return self.crosswalk.drop_duplicates("ndc").set_index("ndc")["hcpcs_code"]

    def positions(self, index: pd.Index, keys) -> np.ndarray:
        """Position in `index` of each of `keys` (-1: not in it). Text indexes of this
        Reference's tables and `derived` facts are looked up in a dict built once per index
        (a column's Series is a new object at each access, but its index shares one Arrow
        array, whose identity keys the dict; the cache holds the array, so the identity
        cannot be reused). A few codes cost microseconds so, against a hundred or more for
        `get_indexer` on the whole code set. Other indexes use `get_indexer`."""
        if not isinstance(index.dtype, pd.StringDtype):
            return index.get_indexer(pd.Index(keys, dtype=object))
        values = index.array
        _, position = self.derived(
            ("positions", id(values)), lambda: (values, {v: i for i, v in enumerate(index)})
        )
        return np.fromiter((position.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))

    @cached_property
    def ndc_code_rows(self) -> dict[tuple[str, str], int]:
        """(ndc, hcpcs_code) -> its row of `ndc_code_pairs`."""
        pairs = self.ndc_code_pairs
        return {k: i for i, k in enumerate(zip(pairs["ndc"], pairs["hcpcs_code"], strict=True))}

    def hcpcs_column(self, name: str) -> pd.Series:
        """Column `name` of the code set, one Series object per process (lookups read its
        values once per object: see `Context._lookup`)."""
        return self.derived(("hcpcs", name), lambda: self.hcpcs[name])

    def derived(self, key: tuple, build):
        """A fact of these tables combined with something fixed (a rule pack, keyed by its
        hash), built once per process: scoring a claim at a time must not rebuild lookups
        from the whole crosswalk on every call."""
        cache = self.__dict__.setdefault("_derived", {})
        if key not in cache:
            cache[key] = build()
        return cache[key]

    @cached_property
    def ndc_code_pairs(self) -> pd.DataFrame:
        """Every (NDC, HCPCS code) pair the crosswalk lists, with the code's billing units in
        one item of the package (`units_per_item`: a vial, a syringe, a kit). An NDC listed
        under several codes (saline J7030/J7040/J7050, ESRD and non-ESRD pairs) is right
        under any of them."""
        x = self.crosswalk.drop_duplicates(["ndc", "hcpcs_code"])
        per_item = x["bill_units_per_pkg"] / x["pkg_qty"].where(x["pkg_qty"] > 0)
        return pd.DataFrame(
            {"ndc": x["ndc"], "hcpcs_code": x["hcpcs_code"], "units_per_item": per_item.to_numpy()}
        ).reset_index(drop=True)

    @cached_property
    def priced_from(self) -> pd.Series:
        """Codes the HCPCS file does not list that a newer shipped file (crosswalk, payment
        limits) prices -> the first day of that file's quarter. Such a code is valid from
        then: CMS prices new codes a quarter before the annual code file lists them."""
        hcpcs_release = release_start(self.hcpcs_file)
        out: dict[str, pd.Timestamp] = {}
        for name, table in ((self.crosswalk_file, self.crosswalk), (self.payment_file, self.payment_limits)):
            start = release_start(name)
            if start is None or (hcpcs_release is not None and start <= hcpcs_release):
                continue
            for code in set(table["hcpcs_code"]) - set(self.hcpcs.index):
                out[code] = min(out.get(code, start), start)
        return pd.Series(out, dtype="datetime64[ns]").sort_index()

    def payment_limit(self) -> pd.Series:
        return self.payment_limits.set_index("hcpcs_code")["payment_limit"]


def load_reference(folder: str | Path | None = None) -> Reference:
    """Load the three reference tables from `folder` (default: env var, then bundled)."""
    if folder is None:
        folder = os.environ.get(ENV_REFERENCE_DIR)
        if not folder:
            return _bundled()  # every rule evaluation asks: no path lookups each time
    return _load(Path(folder).resolve())


@cache
def _bundled() -> Reference:
    return _load(bundled_path("reference").resolve())


@cache
def _load(folder: Path) -> Reference:
    hcpcs_path = _newest(folder, "hcpcs_level2_")
    xwalk_path = _newest(folder, "asp_ndc_hcpcs_crosswalk_")
    pay_path = _newest(folder, "asp_payment_limits_")

    hcpcs = pd.read_csv(hcpcs_path, dtype=str, keep_default_na=False)
    for col in ("add_date", "effective_date", "termination_date"):
        hcpcs[col] = pd.to_datetime(hcpcs[col].replace("", None), format="ISO8601")
    hcpcs["unit_mg"] = hcpcs["long_description"].map(descriptor_unit_mg)
    bands = hcpcs["long_description"].map(descriptor_band_mg)
    hcpcs["band_above_mg"] = bands.str[0].astype(float)
    hcpcs["band_upto_mg"] = bands.str[1].astype(float)
    hcpcs = hcpcs.set_index("code", drop=False)

    xwalk = pd.read_csv(xwalk_path, dtype=str, keep_default_na=False)
    xwalk["ndc"] = xwalk["ndc"].str.zfill(11)
    for col in ("pkg_size", "pkg_qty", "bill_units", "bill_units_per_pkg"):
        xwalk[col] = pd.to_numeric(xwalk[col], errors="coerce")

    pay = pd.read_csv(pay_path, dtype={"hcpcs_code": str})
    return Reference(
        folder=folder,
        hcpcs_file=hcpcs_path.name,
        crosswalk_file=xwalk_path.name,
        payment_file=pay_path.name,
        hcpcs=hcpcs,
        crosswalk=xwalk,
        payment_limits=pay,
    )


ENV_CACHE_DIR = "DENIAL_MODEL_CACHE_DIR"


@cache
def _icd_module():
    import simple_icd_10_cm as cm

    return cm


def _cache_dir() -> Path:
    """Where derived data is cached: `DENIAL_MODEL_CACHE_DIR`, else the user's cache folder."""
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "denial-model"


@cache
def billable_icd10_codes() -> frozenset[str]:
    """Every billable ICD-10-CM code (a leaf of the classification), dotted.

    Derived from the installed `simple_icd_10_cm` package, whose import parses its XML
    classification (about 3 s, 180 MB). The derived list is cached per package version in
    the user's cache folder, so later processes read a 75k-line text file instead; where the
    folder cannot be written, the list is kept in memory only.
    """
    from importlib.metadata import version

    path = _cache_dir() / f"icd10cm-billable-{version('simple_icd_10_cm')}.txt"
    try:
        return frozenset(path.read_text(encoding="ascii").split())
    except (OSError, UnicodeDecodeError):
        pass
    cm = _icd_module()
    codes = sorted(c for c in cm.get_all_codes(with_dots=True) if cm.is_valid_item(c) and cm.is_leaf(c))
    try:
        with atomic_output(path) as tmp:
            tmp.write_text("\n".join(codes) + "\n", encoding="ascii")
    except OSError:
        pass
    return frozenset(codes)


@cache
def billable_example(prefix: str) -> str:
    """A billable ICD-10-CM code starting with `prefix` (the prefix itself when billable; else
    the first in sort order). For example claims: the samples and the check kinds' breakers."""
    billable = billable_icd10_codes()
    if prefix in billable:
        return prefix
    found = sorted(c for c in billable if c.startswith(prefix))
    if not found:
        raise ValueError(f"no billable ICD-10-CM code starts with {prefix!r}")
    return found[0]


def icd10_billable(codes: np.ndarray | list[str]) -> np.ndarray:
    """True where an ICD-10-CM code exists and is billable (a leaf of the classification).

    Codes are in the dotted form `validate` produces ("F32.9"; three-character codes have no
    dot)."""
    billable = billable_icd10_codes()
    return np.fromiter((str(c) in billable for c in codes), dtype=bool, count=len(codes))


def _billable_one(code: str) -> bool:
    """The package's own answer for one code (the cached list is checked against it)."""
    cm = _icd_module()
    try:
        return bool(cm.is_valid_item(code) and cm.is_leaf(code))
    except (ValueError, KeyError):
        return False
