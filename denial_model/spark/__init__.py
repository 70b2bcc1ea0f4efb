"""Score claim lines on Apache Spark: the same scores, reasons and fixes as one machine's.

`score_spark(df, model)` and `check_spark(df)` take a Spark DataFrame of claim lines and
give the scored (or checked) lines and the rejects, computed by the code `score_file`
runs, on blocks of whole patients (`scoring`, `worker`). `read_claims` reads Parquet with
each line's position; `write_spark` writes a folder of part files in full or not at all;
`spark_session` starts a local session on a Java it finds or brings (`java`), or uses the
one `spark-submit` made. Needs the `spark` extra: `pip install 'denial-model[spark]'`.
"""

from denial_model.spark.java import java_home
from denial_model.spark.scoring import (
    SparkScores,
    check_spark,
    read_claims,
    score_spark,
    write_spark,
    write_together,
)
from denial_model.spark.session import spark_session

__all__ = [
    "SparkScores",
    "check_spark",
    "java_home",
    "read_claims",
    "score_spark",
    "spark_session",
    "write_spark",
    "write_together",
]
