"""Artifacts saved before the package was restructured still load and score the same."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from denial_model.artifact import load_artifact
from denial_model.predict import BinnedPredictor
from denial_model.score import score_frame
from denial_model.thresholds import Thresholds

LEGACY = Path(__file__).parent / "data" / "legacy_artifact"


def test_an_artifact_saved_by_the_previous_layout_loads_and_scores_the_same():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # it may have been built with another scikit-learn
        loaded = load_artifact(LEGACY / "model.joblib")
    assert isinstance(loaded.thresholds, Thresholds)
    lines = pd.read_parquet(LEGACY / "lines.parquet")
    expected = np.array(json.loads((LEGACY / "expected_p.json").read_text()))
    np.testing.assert_allclose(loaded.predict_proba(lines), expected, rtol=0, atol=1e-12)
    scored, rejects = score_frame(lines, loaded)
    assert len(rejects) == 0
    np.testing.assert_allclose(scored["denial_probability"], expected, rtol=0, atol=1e-12)
    assert isinstance(loaded.scorer.predictor, BinnedPredictor)
    assert loaded.drift_reference is not None


def test_an_artifact_of_the_dict_era_is_wrapped_in_the_one_estimator():
    from denial_model.estimator import DenialModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        loaded = load_artifact(LEGACY / "model.joblib")
    assert isinstance(loaded.estimator, DenialModel)
    lines = pd.read_parquet(LEGACY / "lines.parquet")
    expected = np.array(json.loads((LEGACY / "expected_p.json").read_text()))
    np.testing.assert_allclose(loaded.estimator.predict_proba(lines)[:, 1], expected, rtol=0, atol=1e-12)


DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(
    ("folder", "has_expected"),
    [
        ("artifact_0_6", False),  # feature groups of 0.5 and 0.6 only, isotonic calibration
        ("artifact_0_7", True),  # 0.7's expected denials, its fixed smoothing, 120-day half-life
    ],
)
def test_an_artifact_of_an_earlier_release_scores_its_lines_as_that_release_did(folder, has_expected):
    """Each with a reason-group model; every probability, group and tier as its release gave them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        loaded = load_artifact(DATA / folder / "model.joblib")
    assert ("expected" in loaded.scorer.features.groups_) == has_expected
    expected = json.loads((DATA / folder / "expected.json").read_text())
    scored, rejects = score_frame(pd.read_parquet(DATA / folder / "lines.parquet"), loaded)
    assert len(rejects) == 0
    np.testing.assert_allclose(
        scored["denial_probability"], expected["denial_probability"], rtol=0, atol=1e-12
    )
    assert scored["reason_group"].tolist() == expected["reason_group"]
    assert scored["risk_tier"].tolist() == expected["risk_tier"]
