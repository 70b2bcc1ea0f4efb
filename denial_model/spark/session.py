"""The Spark session a job runs in: the one `spark-submit` made, or a local one of our own.

Under `spark-submit` (or in a notebook whose session is already up) the running session
is used as it is: its master, its resources, its Java. Otherwise a session is started with
the given master (default `local[*]`, every core of this machine) on the Java that
`java.java_home` finds, with the settings a scoring job wants on one machine: UTC session
time (dates are read as the wall-clock dates they are written as), no progress bars on the
console, no web UI, shuffle partitions matched to the cores, and Python workers that run
this interpreter (the one with denial-model installed).
"""

from __future__ import annotations

import os
import sys

from denial_model.errors import SparkError
from denial_model.spark.java import java_home

__all__ = ["spark_session"]

LOCAL_SETTINGS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.driver.memory": "4g",
}


def _pyspark():
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkError("pyspark is not installed: pip install 'denial-model[spark]'") from None
    return SparkSession


def spark_session(master: str | None = None, java: str = "auto", settings: dict | None = None):
    """The active session if there is one (and no other master was asked for), else a new
    local one. `java`: which Java a new session runs on (`java.java_home`); `settings`:
    more Spark settings for a new session."""
    session_cls = _pyspark()
    active = session_cls.getActiveSession()
    if active is not None and (master is None or active.sparkContext.master == master):
        return active
    if active is None and os.environ.get("PYSPARK_GATEWAY_PORT"):  # started by spark-submit
        return session_cls.builder.getOrCreate()
    if active is not None:
        raise SparkError(
            f"a Spark session with master {active.sparkContext.master!r} is running; "
            f"stop it before asking for {master!r}"
        )
    os.environ["JAVA_HOME"] = str(java_home(java))
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers: this Python, with the package
    master = master or "local[*]"
    cores = os.cpu_count() or 2
    builder = session_cls.builder.master(master).appName("denial-model")
    for key, value in {
        **LOCAL_SETTINGS,
        "spark.sql.shuffle.partitions": str(2 * cores),
        **(settings or {}),
    }.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # the JVM did not start: say which Java it was
        raise SparkError(f"Spark did not start with JAVA_HOME={os.environ['JAVA_HOME']}: {exc}") from None
    spark.sparkContext.setLogLevel("ERROR")
    return spark
