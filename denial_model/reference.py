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


@cache
def _icd_module():
    import simple_icd_10_cm as cm

    return cm


def icd10_billable(codes: np.ndarray | list[str]) -> np.ndarray:
    """True where an ICD-10-CM code exists and is billable (a leaf of the classification).

    Call it on unique codes: the package answers one code at a time.
    """
    _icd_module()
    return np.fromiter((_billable_one(str(c)) for c in codes), dtype=bool, count=len(codes))


@cache
def _billable_one(code: str) -> bool:
    cm = _icd_module()
    try:
        return bool(cm.is_valid_item(code) and cm.is_leaf(code))
    except (ValueError, KeyError):
        return False
