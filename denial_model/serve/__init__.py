"""Serving: the HTTP service (`app`, `auth`, `metrics`) and MLflow's pyfunc (`pyfunc`).

Both answer from the same `DenialModel` (denial_model.estimator), so a line gets the same
probability, tier, reasons and fixes from `denial-model score`, `denial-model serve`,
`mlflow models serve` and Spark.
"""
