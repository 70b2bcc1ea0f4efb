"""Where the shipped rule pack and reference data live, in a wheel or in a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_CHECKOUT = {
    "rules": _PACKAGE_DIR.parent / "rules",
    "reference": _PACKAGE_DIR.parent / "data" / "reference",
}


def bundled_path(name: str) -> Path:
    """Path of a bundled resource (`rules` or `reference`).

    A built wheel carries them under `denial_model/_bundled/`; an editable install or a
    checkout reads them from the project tree, so an analyst's YAML edit takes effect at once.
    """
    inside = _PACKAGE_DIR / "_bundled" / name
    if inside.is_dir():
        return inside
    if _CHECKOUT[name].is_dir():
        return _CHECKOUT[name]
    raise FileNotFoundError(f"bundled resource {name!r} not found (looked in {inside})")
