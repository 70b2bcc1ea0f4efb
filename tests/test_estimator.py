"""The artifact is one scikit-learn estimator, and it is verified against a trusted digest
before it is unpickled."""

import json
import warnings
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone, is_classifier

from denial_model.artifact import SIGNING_KEY_ENV, load_artifact, manifest_path, save_artifact, sign_manifest
from denial_model.errors import ArtifactError, ClaimTableError
from denial_model.estimator import ROW_COLUMNS, DenialModel
from denial_model.score import score_frame
from denial_model.table import INPUT_COLUMNS

LEGACY = Path(__file__).parent / "data" / "legacy_artifact"


@pytest.fixture(scope="module")
def legacy():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_artifact(LEGACY / "model.joblib")


@pytest.fixture()
def artifact(tmp_path, legacy, monkeypatch):
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    path = tmp_path / "model.joblib"
    save_artifact(path, legacy.model, legacy.thresholds, {"auroc": 0.5}, "fingerprint")
    return path


@pytest.fixture(scope="module")
def lines():
    return pd.read_parquet(LEGACY / "lines.parquet")


def test_joblib_load_gives_one_estimator_whose_predict_proba_scores_claim_lines(artifact, lines):
    est = joblib.load(artifact)
    assert isinstance(est, DenialModel) and is_classifier(est)
    expected = np.array(json.loads((LEGACY / "expected_p.json").read_text()))
    proba = est.predict_proba(lines)
    assert proba.shape == (len(lines), 2)
    np.testing.assert_allclose(proba[:, 1], expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert list(est.classes_) == [False, True]
    assert (est.predict(lines) == (expected >= est.thresholds_.high)).all()
    assert {"denial_model_version", "rule_pack_sha256", "thresholds", "metrics", "trained_at"} <= set(
        est.metadata_
    )
    # what generic servers send: records, or a 2-D array in the contract's column order
    records = lines[list(INPUT_COLUMNS)].to_dict(orient="records")
    np.testing.assert_allclose(est.predict_proba(records)[:, 1], expected, rtol=0, atol=1e-12)
    array = lines[list(INPUT_COLUMNS)].to_numpy(dtype=object)
    np.testing.assert_allclose(est.predict_proba(array)[:, 1], expected, rtol=0, atol=1e-12)
    fresh = clone(est)
    assert isinstance(fresh, DenialModel) and not hasattr(fresh, "pipeline_")


def test_predict_proba_refuses_a_bad_line_naming_row_column_and_value(artifact, lines):
    est = joblib.load(artifact)
    bad = lines.copy()
    bad["units"] = bad["units"].astype(object)
    bad.loc[3, "units"] = "abc"
    with pytest.raises(ClaimTableError, match=r"row 3 .*units.*'abc'"):
        est.predict_proba(bad)
    with pytest.raises(ClaimTableError, match="2-D array of 21 columns"):
        est.predict_proba(np.zeros((2, 3)))


def test_explain_rows_answers_every_input_row_in_order_with_rejects_in_line(artifact, lines):
    est = joblib.load(artifact)
    bad = lines.head(6).copy()
    bad["service_date"] = bad["service_date"].astype(object)
    bad.loc[2, "service_date"] = "not a date"
    rows = est.explain_rows(bad)
    assert list(rows.columns) == list(ROW_COLUMNS)
    assert list(rows["row"]) == list(range(6))
    assert list(rows["status"]) == ["scored", "scored", "rejected", "scored", "scored", "scored"]
    assert rows.loc[2, "reject_column"] == "service_date" and np.isnan(rows.loc[2, "denial_probability"])
    scored, _ = score_frame(bad, est)
    np.testing.assert_allclose(rows["denial_probability"].drop(index=2), scored["denial_probability"])


def _rehash(path: Path) -> None:
    """What an attacker who can write the folder does: change the pickle, re-hash the manifest."""
    est = joblib.load(path)
    est.thresholds_.high = 0.99
    joblib.dump(est, path)
    import hashlib

    manifest = json.loads(manifest_path(path).read_text())
    manifest["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest_path(path).write_text(json.dumps(manifest))


def test_a_re_hashed_manifest_passes_only_the_manifest_check_not_a_pinned_digest(artifact):
    digest = json.loads(manifest_path(artifact).read_text())["sha256"]
    assert load_artifact(artifact, sha256=digest).trust == "pinned sha256"
    _rehash(artifact)
    assert "not tampering" in load_artifact(artifact).trust  # the manifest alone is fooled, and says so
    with pytest.raises(ArtifactError, match="does not match the pinned digest"):
        load_artifact(artifact, sha256=digest)


def test_a_signed_manifest_is_required_and_checked_wherever_the_signing_key_is_set(artifact, monkeypatch):
    monkeypatch.setenv(SIGNING_KEY_ENV, "operator-secret")
    with pytest.raises(ArtifactError, match="not signed"):
        load_artifact(artifact)
    sign_manifest(artifact)
    assert load_artifact(artifact).trust == "signed manifest"
    _rehash(artifact)  # re-hashing the manifest breaks its signature
    with pytest.raises(ArtifactError, match="signature does not match"):
        load_artifact(artifact)
    monkeypatch.setenv(SIGNING_KEY_ENV, "another-key")
    with pytest.raises(ArtifactError, match="signature does not match"):
        load_artifact(artifact)


def test_training_signs_the_manifest_when_the_key_is_set(tmp_path, legacy, monkeypatch):
    monkeypatch.setenv(SIGNING_KEY_ENV, "operator-secret")
    path = tmp_path / "signed.joblib"
    manifest = save_artifact(path, legacy.model, legacy.thresholds, {}, "x")
    assert manifest["signature"].startswith("hmac-sha256:")
    assert load_artifact(path).trust == "signed manifest"


def test_a_pinned_digest_loads_a_file_without_manifest_and_refuses_a_malformed_one(artifact, tmp_path):
    import hashlib

    bare = tmp_path / "bare.joblib"
    bare.write_bytes(artifact.read_bytes())
    digest = hashlib.sha256(bare.read_bytes()).hexdigest()
    loaded = load_artifact(bare, sha256=digest.upper())
    assert loaded.manifest["sha256"] == digest and loaded.manifest["rule_pack_sha256"]
    with pytest.raises(ArtifactError, match="'abc123': not a sha256"):
        load_artifact(bare, sha256="abc123")
    with pytest.raises(ArtifactError, match="no manifest"):
        load_artifact(bare)


def test_a_file_that_is_not_a_model_is_refused_after_its_digest_checks(tmp_path):
    import hashlib

    path = tmp_path / "other.joblib"
    joblib.dump({"something": 1}, path)
    with pytest.raises(ArtifactError, match="not a denial-model model"):
        load_artifact(path, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
