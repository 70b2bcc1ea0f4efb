"""The model artifact: a joblib file holding one `DenialModel` estimator, and a manifest.

`joblib.load("model.joblib")` gives the fitted `DenialModel` (see `denial_model.estimator`),
so any scikit-learn server can load it. The manifest (`<artifact>.manifest.json`) records
the file's sha256, package and scikit-learn versions, rule pack hash, feature schema,
metrics, thresholds, the training data fingerprint and the drift reference.

Loading a joblib runs code, so the file is checked before it is unpickled, against a digest
from the most trusted place given (`Trust`):

- a pinned digest (`sha256=`, `--model-sha256`): the operator says which file to run;
- a signed manifest: the manifest carries an HMAC-SHA256 made with a key the operator holds
  (`DENIAL_MODEL_SIGNING_KEY`); with the key set, an unsigned or badly signed manifest is
  refused;
- the MLflow model version's `artifact_sha256` tag (`tracking.load_registered`);
- otherwise only the manifest beside the file, which catches a damaged or swapped file by
  accident, not a deliberate one (whoever can rewrite the file can rewrite its manifest).

Artifacts of release 0.3 and earlier (a dict of Pipeline and thresholds) still load: they
are wrapped in a `DenialModel` on the way in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import sklearn

import denial_model
from denial_model.errors import ArtifactError
from denial_model.estimator import DenialModel
from denial_model.files import atomic_output
from denial_model.scorer import Scorer
from denial_model.table import INPUT_COLUMNS, LABEL_COLUMNS
from denial_model.thresholds import Thresholds

__all__ = [
    "SIGNING_KEY_ENV",
    "LoadedModel",
    "data_fingerprint",
    "load_artifact",
    "manifest_path",
    "save_artifact",
    "sign_manifest",
]

SIGNING_KEY_ENV = "DENIAL_MODEL_SIGNING_KEY"
_NOT_METADATA = ("artifact", "sha256", "signature")


def manifest_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".manifest.json")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def data_fingerprint(df: pd.DataFrame) -> str:
    """sha256 over the claim and label columns' row hashes: same table, same fingerprint."""
    cols = [c for c in (*INPUT_COLUMNS, *LABEL_COLUMNS) if c in df.columns]
    hashed = pd.util.hash_pandas_object(df[cols].astype(str), index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


@dataclass
class LoadedModel:
    """A fitted `DenialModel` with its manifest and how its file was verified (`trust`)."""

    estimator: DenialModel
    manifest: dict = field(default_factory=dict)
    trust: str = ""

    @property
    def model(self):
        """The fitted Pipeline (features -> classifier)."""
        return self.estimator.pipeline_

    @property
    def thresholds(self) -> Thresholds:
        return self.estimator.thresholds_

    @property
    def scorer(self) -> Scorer:
        """The model ready to score (built once; see `denial_model.scorer`)."""
        return self.estimator.scorer

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        """P(denied) of claim lines (public path)."""
        return self.scorer.predict_proba(df)

    @property
    def drift_reference(self) -> dict | None:
        return self.manifest.get("drift_reference")


def _signing_key(key: str | bytes | None) -> bytes | None:
    key = key if key is not None else os.environ.get(SIGNING_KEY_ENV) or None
    return key.encode() if isinstance(key, str) else key


def _manifest_mac(manifest: dict, key: bytes) -> str:
    body = {k: v for k, v in manifest.items() if k != "signature"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return "hmac-sha256:" + hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def sign_manifest(path: str | Path, key: str | bytes | None = None) -> dict:
    """Sign the manifest of the artifact at `path` with `key` (default: the environment's
    `DENIAL_MODEL_SIGNING_KEY`) after checking the file against it; returns the manifest."""
    key_bytes = _signing_key(key)
    if not key_bytes:
        raise ArtifactError(f"no signing key: set {SIGNING_KEY_ENV}")
    manifest = _read_manifest(Path(path))
    _check_digest(Path(path), str(manifest.get("sha256")), "its manifest")
    manifest["signature"] = _manifest_mac(manifest, key_bytes)
    with atomic_output(manifest_path(path)) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


def save_artifact(
    path: str | Path,
    model,
    thresholds: Thresholds,
    metrics: dict,
    training_fingerprint: str,
    extra: dict | None = None,
    signing_key: str | bytes | None = None,
    groups=None,
) -> dict:
    """Dump the model as one `DenialModel` and write its manifest (both atomically, the
    manifest signed when a key is given or set in the environment); returns the manifest.
    `groups`: the reason-group classifier (`train.fit_reason_groups`), if any."""
    path = Path(path)
    scorer = Scorer(model, thresholds)
    metadata = {
        "denial_model_version": denial_model.__version__,
        "sklearn_version": sklearn.__version__,
        "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "rule_pack_sha256": scorer.pack_sha256,
        "feature_schema": {"input_columns": list(INPUT_COLUMNS), "features": scorer.feature_names()},
        "thresholds": asdict(thresholds),
        "metrics": metrics,
        "training_data_fingerprint": training_fingerprint,
        **(extra or {}),
    }
    estimator = DenialModel.from_fitted(
        model, thresholds, json.loads(json.dumps(metadata, default=str)), groups=groups
    )
    with atomic_output(path) as tmp:
        joblib.dump(estimator, tmp, compress=3)
        digest = file_sha256(tmp)
    manifest = {"artifact": path.name, "sha256": digest, **metadata}
    key = _signing_key(signing_key)
    if key:
        manifest["signature"] = _manifest_mac(manifest, key)
    with atomic_output(manifest_path(path)) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


def _read_manifest(path: Path) -> dict:
    mpath = manifest_path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: no such model file")
    if not mpath.exists():
        raise ArtifactError(
            f"{path}: no manifest ({mpath.name}); refusing an unverified model "
            "(pin its digest with --model-sha256 to load it without one)"
        )
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{mpath}: not a readable manifest: {exc}") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{mpath}: not a readable manifest (expected a JSON object)")
    return manifest


def _check_digest(path: Path, expected: str, source: str) -> str:
    actual = file_sha256(path)
    if not hmac.compare_digest(actual, expected.lower()):
        raise ArtifactError(
            f"{path}: sha256 {actual[:12]}... does not match {source} ({expected[:12]}...); "
            "the file was changed after training or is not the model you meant"
        )
    return actual


def _verify(path: Path, sha256: str | None, key: bytes | None) -> tuple[dict, str]:
    """(manifest, trust) once the file is verified; refuses anything it cannot verify."""
    if sha256 is not None:
        expected = sha256.strip().lower()
        if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
            raise ArtifactError(f"--model-sha256 {sha256!r}: not a sha256 hex digest (64 hex digits)")
        if not path.exists():
            raise ArtifactError(f"{path}: no such model file")
        _check_digest(path, expected, "the pinned digest")
        manifest = _read_manifest(path) if manifest_path(path).exists() else {}
        if manifest and manifest.get("sha256") != expected:
            raise ArtifactError(f"{manifest_path(path)}: describes another file than the pinned digest")
        return manifest, "pinned sha256"
    manifest = _read_manifest(path)
    if key:
        sig = str(manifest.get("signature", ""))
        if not sig:
            raise ArtifactError(
                f"{manifest_path(path)}: not signed, and {SIGNING_KEY_ENV} is set; sign it with "
                "`denial-model sign` or pin the file's digest"
            )
        if not hmac.compare_digest(sig, _manifest_mac(manifest, key)):
            raise ArtifactError(f"{manifest_path(path)}: signature does not match (wrong key or edited)")
        _check_digest(path, str(manifest.get("sha256")), "its signed manifest")
        return manifest, "signed manifest"
    _check_digest(path, str(manifest.get("sha256")), "its manifest")
    return manifest, "manifest beside the file (catches accidents, not tampering)"


def load_artifact(
    path: str | Path, *, sha256: str | None = None, signing_key: str | bytes | None = None
) -> LoadedModel:
    """Load an artifact after verifying it (see the module docstring for the order)."""
    path = Path(path)
    manifest, trust = _verify(path, sha256, _signing_key(signing_key))
    return _unpickle(path, manifest, trust)


def _unpickle(path: Path, manifest: dict, trust: str) -> LoadedModel:
    """The verified file's estimator (a 0.3-era dict is wrapped) with its manifest."""
    for key, installed in (
        ("sklearn_version", sklearn.__version__),
        ("denial_model_version", denial_model.__version__),
    ):
        if manifest and manifest.get(key) != installed:
            warnings.warn(
                f"{path} was built with {key.split('_version')[0]} {manifest.get(key)}, "
                f"installed is {installed}",
                stacklevel=3,
            )
    blob = joblib.load(path)
    metadata = {k: v for k, v in manifest.items() if k not in _NOT_METADATA}
    if isinstance(blob, dict) and {"model", "thresholds"} <= blob.keys():
        estimator = DenialModel.from_fitted(blob["model"], blob["thresholds"], metadata)
    elif isinstance(blob, DenialModel):
        estimator = blob
    else:
        raise ArtifactError(
            f"{path}: holds a {type(blob).__name__}, not a denial-model model; re-train it with "
            "`denial-model train`"
        )
    if not manifest:  # pinned digest, no manifest: the estimator carries its own metadata
        manifest = {"artifact": path.name, "sha256": file_sha256(path), **estimator.metadata_}
    return LoadedModel(estimator=estimator, manifest=manifest, trust=trust)
