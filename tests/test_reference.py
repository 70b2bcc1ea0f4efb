"""The cached list of billable ICD-10-CM codes answers exactly as the package does."""

import numpy as np
import pytest

from denial_model import reference
from denial_model.reference import _billable_one, _icd_module, billable_icd10_codes, icd10_billable


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(reference.ENV_CACHE_DIR, str(tmp_path / "cache"))
    billable_icd10_codes.cache_clear()
    yield tmp_path / "cache"
    billable_icd10_codes.cache_clear()


def test_cached_billable_list_equals_the_packages_answer_on_every_code(fresh_cache):
    cm = _icd_module()
    codes = [*cm.get_all_codes(with_dots=True), "F32.", "Z99.99", "A00.00", "XYZ", "F32.A9", "U07.1"]
    ours = icd10_billable(np.array(codes, dtype=object))
    theirs = np.array([_billable_one(c) for c in codes])
    assert ours.sum() > 70_000
    assert np.array_equal(ours, theirs)


def test_billable_list_is_written_once_and_read_back(fresh_cache):
    first = billable_icd10_codes()
    (cached,) = fresh_cache.glob("icd10cm-billable-*.txt")
    billable_icd10_codes.cache_clear()
    cached.write_text("F32.9\n")  # the file, not the package, answers a later process
    assert billable_icd10_codes() == frozenset({"F32.9"})
    assert "F32.9" in first and "F32" not in first


def test_unwritable_cache_folder_still_answers(fresh_cache, monkeypatch):
    fresh_cache.parent.joinpath("blocker").write_text("a file, not a folder")
    monkeypatch.setenv(reference.ENV_CACHE_DIR, str(fresh_cache.parent / "blocker" / "sub"))
    assert list(icd10_billable(["F32.9", "F32"])) == [True, False]


def test_code_lookups_are_built_once_and_equal_reindex():
    """`Reference.positions` keys its dicts by the identity of an index's array: scoring the
    same table again adds no entry (a pandas where a column's index stopped sharing its
    array would rebuild and keep a dict per call), and the lookup equals `reindex`."""
    import pandas as pd

    from denial_model.rules.engine import evaluate
    from denial_model.rules.pack import load_pack
    from denial_model.simulate import SimConfig, simulate
    from denial_model.table import ClaimFrame, validate

    ref = reference.load_reference()
    pack = load_pack()
    lines = validate(simulate(SimConfig(lines=300, seed=3))).lines
    evaluate(ClaimFrame(lines), pack, ref=ref)
    kept = len(ref.__dict__["_derived"])
    evaluate(ClaimFrame(lines), pack, ref=ref)
    assert len(ref.__dict__["_derived"]) == kept
    keys = [*lines["hcpcs_code"].astype(str).unique()[:20], "ZZZZZ"]
    units = ref.hcpcs["unit_mg"]
    pos = ref.positions(units.index, keys)
    expected = units.index.get_indexer(pd.Index(keys))
    assert pos.tolist() == expected.tolist() and (pos == -1).sum() >= 1
