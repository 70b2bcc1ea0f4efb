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
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from denial_model.files import atomic_output
from denial_model.resources import bundled_path

ENV_REFERENCE_DIR = "DENIAL_MODEL_REFERENCE_DIR"

# A billing unit in a descriptor: "1 mg", "per 10 mg", "up to 1 gm", "0.25 mg".
_UNIT_RE = re.compile(r"(?:per\s+|up\s+to\s+)?(\d+(?:\.\d+)?)\s*(mg|mcg|gm|g)\b", re.IGNORECASE)
_TO_MG = {"mg": 1.0, "mcg": 0.001, "gm": 1000.0, "g": 1000.0}


def descriptor_unit_mg(descriptor: str) -> float:
    """Milligrams in one billing unit of a code, read off its long descriptor (NaN if none).

    The last mass in the descriptor is the unit ("Injection, naltrexone, depot form, 1 mg").
    """
    matches = _UNIT_RE.findall(descriptor or "")
    if not matches:
        return float("nan")
    amount, unit = matches[-1]
    return float(amount) * _TO_MG[unit.lower()]


def _newest(folder: Path, prefix: str) -> Path:
    found = sorted(folder.glob(f"{prefix}*.csv"))
    if not found:
        raise FileNotFoundError(f"no reference file {prefix}*.csv in {folder}")
    return found[-1]


@dataclass(frozen=True)
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
        """NDC -> the HCPCS code it is a product of (first listed when several)."""
        return self.crosswalk.drop_duplicates("ndc").set_index("ndc")["hcpcs_code"]

    def payment_limit(self) -> pd.Series:
        return self.payment_limits.set_index("hcpcs_code")["payment_limit"]


def load_reference(folder: str | Path | None = None) -> Reference:
    """Load the three reference tables from `folder` (default: env var, then bundled)."""
    if folder is None:
        folder = os.environ.get(ENV_REFERENCE_DIR) or bundled_path("reference")
    return _load(Path(folder).resolve())


@cache
def _load(folder: Path) -> Reference:
    hcpcs_path = _newest(folder, "hcpcs_level2_")
    xwalk_path = _newest(folder, "asp_ndc_hcpcs_crosswalk_")
    pay_path = _newest(folder, "asp_payment_limits_")

    hcpcs = pd.read_csv(hcpcs_path, dtype=str, keep_default_na=False)
    for col in ("add_date", "effective_date", "termination_date"):
        hcpcs[col] = pd.to_datetime(hcpcs[col].replace("", None), format="ISO8601")
    hcpcs["unit_mg"] = hcpcs["long_description"].map(descriptor_unit_mg)
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
