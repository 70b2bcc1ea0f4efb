"""The model artifact: a joblib file (fitted Pipeline + risk thresholds) and a manifest.

The manifest (`<artifact>.manifest.json`) records the artifact's sha256, package and
scikit-learn versions, rule pack hash, feature schema, metrics, thresholds and the training
data fingerprint. Loading refuses a file whose hash does not match its manifest and warns
when the installed versions differ from the ones it was trained with.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import sklearn

import denial_model
from denial_model.table import INPUT_COLUMNS, LABEL_COLUMNS
from denial_model.train import Thresholds


class ArtifactError(ValueError):
    """The artifact cannot be trusted (missing manifest, hash mismatch)."""


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
    model: object
    thresholds: Thresholds
    manifest: dict

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(df)[:, 1]

    @property
    def predictor(self):
        """The classifier step's fast exact predictor (built once; see `denial_model.predict`)."""
        if getattr(self, "_predictor", None) is None:
            from denial_model.predict import make_predictor

            self._predictor = make_predictor(self.model.named_steps["classifier"])
        return self._predictor


def save_artifact(
    path: str | Path,
    model,
    thresholds: Thresholds,
    metrics: dict,
    training_fingerprint: str,
    extra: dict | None = None,
) -> dict:
    """Dump the model and write its manifest; returns the manifest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    joblib.dump({"model": model, "thresholds": thresholds}, tmp, compress=3)
    tmp.replace(path)
    feats = model.named_steps["features"]
    names = feats.get_feature_names_out()
    manifest = {
        "artifact": path.name,
        "sha256": file_sha256(path),
        "denial_model_version": denial_model.__version__,
        "sklearn_version": sklearn.__version__,
        "rule_pack_sha256": feats.rules_.pack_sha256_,
        "feature_schema": {"input_columns": list(INPUT_COLUMNS), "features": [str(n) for n in names]},
        "thresholds": asdict(thresholds),
        "metrics": metrics,
        "training_data_fingerprint": training_fingerprint,
        **(extra or {}),
    }
    manifest_path(path).write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


def load_artifact(path: str | Path) -> LoadedModel:
    """Load an artifact after checking it against its manifest."""
    path = Path(path)
    mpath = manifest_path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: no such model file")
    if not mpath.exists():
        raise ArtifactError(f"{path}: no manifest ({mpath.name}); refusing an unverified model")
    manifest = json.loads(mpath.read_text())
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
