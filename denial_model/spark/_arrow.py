"""Arrow and Spark types: the one place that maps between them for the worker's output.

`mapInArrow` checks the batches a function returns against the Arrow form of the declared
Spark schema, which depends on the session (its time zone for timestamps, whether it sends
large strings), so the worker is given that exact Arrow schema and casts to it.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = ["arrow_schema", "spark_type"]


def spark_type(arrow_type: pa.DataType):
    """The Spark type of an Arrow type (structs of simple fields included)."""
    from pyspark.sql.pandas.types import from_arrow_type

    return from_arrow_type(arrow_type)


def arrow_schema(spark, schema) -> pa.Schema:
    """The Arrow schema Spark expects a `mapInArrow` function to return for `schema`."""
    from pyspark.sql.pandas.types import to_arrow_schema

    large = spark.conf.get("spark.sql.execution.arrow.useLargeVarTypes", "false").lower() == "true"
    return to_arrow_schema(
        schema, timezone=spark.conf.get("spark.sql.session.timeZone"), prefers_large_types=large
    )
