"""The model artifact: a joblib file (fitted Pipeline + risk thresholds) and a manifest.

The manifest (`<artifact>.manifest.json`) records the artifact's sha256, package and
scikit-learn versions, rule pack hash, feature schema, metrics, thresholds, the training
data fingerprint and the drift reference. Loading refuses a file whose hash does not match
its manifest (unpickling runs code, so it is verified first) and warns when the installed
versions differ from the ones it was trained with.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import sklearn

import denial_model
from denial_model.errors import ArtifactError
from denial_model.files import atomic_output
from denial_model.scorer import Scorer
from denial_model.table import INPUT_COLUMNS, LABEL_COLUMNS
from denial_model.thresholds import Thresholds

__all__ = ["LoadedModel", "data_fingerprint", "load_artifact", "manifest_path", "save_artifact"]


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
    """A fitted model with its thresholds and manifest, as loaded from a file or a registry."""

    model: object
    thresholds: Thresholds
    manifest: dict = field(default_factory=dict)

    @cached_property
    def scorer(self) -> Scorer:
        """The model ready to score (built once; see `denial_model.scorer`)."""
        return Scorer(self.model, self.thresholds)

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        """P(denied) of claim lines (public path)."""
        return self.scorer.predict_proba(df)

    @property
    def drift_reference(self) -> dict | None:
        return self.manifest.get("drift_reference")


def save_artifact(
    path: str | Path,
    model,
    thresholds: Thresholds,
    metrics: dict,
    training_fingerprint: str,
    extra: dict | None = None,
) -> dict:
    """Dump the model and write its manifest (both atomically); returns the manifest."""
    path = Path(path)
    with atomic_output(path) as tmp:
        joblib.dump({"model": model, "thresholds": thresholds}, tmp, compress=3)
        digest = file_sha256(tmp)
    scorer = Scorer(model, thresholds)
    manifest = {
        "artifact": path.name,
        "sha256": digest,
        "denial_model_version": denial_model.__version__,
        "sklearn_version": sklearn.__version__,
        "rule_pack_sha256": scorer.pack_sha256,
        "feature_schema": {"input_columns": list(INPUT_COLUMNS), "features": scorer.feature_names()},
        "thresholds": asdict(thresholds),
        "metrics": metrics,
        "training_data_fingerprint": training_fingerprint,
        **(extra or {}),
    }
    with atomic_output(manifest_path(path)) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


def load_artifact(path: str | Path) -> LoadedModel:
    """Load an artifact after checking it against its manifest."""
    path = Path(path)
    mpath = manifest_path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: no such model file")
    if not mpath.exists():
        raise ArtifactError(f"{path}: no manifest ({mpath.name}); refusing an unverified model")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{mpath}: not a readable manifest: {exc}") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{mpath}: not a readable manifest (expected a JSON object)")
    actual = file_sha256(path)
    if actual != manifest.get("sha256"):
        raise ArtifactError(
            f"{path}: sha256 {actual[:12]}... does not match the manifest's "
            f"{str(manifest.get('sha256'))[:12]}...; the file was changed after training"
        )
    for key, installed in (
        ("sklearn_version", sklearn.__version__),
        ("denial_model_version", denial_model.__version__),
    ):
        if manifest.get(key) != installed:
            warnings.warn(
                f"{path} was built with {key.split('_version')[0]} {manifest.get(key)}, "
                f"installed is {installed}",
                stacklevel=2,
            )
    blob = joblib.load(path)
    return LoadedModel(model=blob["model"], thresholds=blob["thresholds"], manifest=manifest)
