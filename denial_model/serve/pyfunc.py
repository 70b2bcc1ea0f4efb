"""The model as an MLflow pyfunc: what `mlflow models serve`, `mlflow.pyfunc.load_model` and
`mlflow.pyfunc.spark_udf` run.

`predict` answers per line what the service's `/v1/score` answers (probability, tier, rule
hits, reasons, fixes, dollars at risk; `denial_model.estimator.ROW_COLUMNS`), one output
row per input row, and a line that fails the claim-line contract comes back as a
`rejected` row naming column and reason instead of failing the request. The input schema
takes every claim-line column as optional and of any type, so MLflow's schema enforcement
passes each value to `validate`, which judges it line by line.

The model is logged from code (this file, MLflow's "models from code"), so MLflow unpickles
nothing of ours; `load_context` loads the joblib artifact logged beside it only after
checking it against the digest recorded at logging time (`model_config`).
"""

from __future__ import annotations

import mlflow.models
import mlflow.pyfunc
import pandas as pd

from denial_model.artifact import load_artifact
from denial_model.estimator import ROW_COLUMNS
from denial_model.scorer import NUMBER_COLUMNS
from denial_model.table import INPUT_COLUMNS

__all__ = ["ARTIFACT_KEY", "DenialModelPyfunc", "input_schema", "output_schema"]

ARTIFACT_KEY = "estimator"
MANIFEST_KEY = "manifest"
DIGEST_KEY = "artifact_sha256"


def input_schema():
    """Every claim-line column, optional, any type: values are judged by `validate`."""
    from mlflow.types.schema import AnyType, ColSpec, Schema

    return Schema([ColSpec(AnyType(), c, required=False) for c in INPUT_COLUMNS])


def output_schema():
    """One row per input line (`ROW_COLUMNS`): what is empty depends on the row's status."""
    from mlflow.types.schema import ColSpec, Schema

    types = {"row": "long", **dict.fromkeys(NUMBER_COLUMNS, "double")}
    always = {"row", "status"}
    return Schema([ColSpec(types.get(c, "string"), c, required=c in always) for c in ROW_COLUMNS])


class DenialModelPyfunc(mlflow.pyfunc.PythonModel):
    """Probability, tier, reasons and fixes per claim line, rejects in line."""

    def load_context(self, context) -> None:
        digest = (context.model_config or {}).get(DIGEST_KEY)
        self.loaded = load_artifact(context.artifacts[ARTIFACT_KEY], sha256=digest)

    def predict(self, context, model_input, params=None):
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        frame = frame[[c for c in frame.columns if c in INPUT_COLUMNS]]
        out = self.loaded.estimator.explain_rows(frame)
        return out[list(ROW_COLUMNS)]


mlflow.models.set_model(DenialModelPyfunc())  # this file is the logged model's code
