"""Batch scoring: accounting, reasons and fixes that really help, streaming, tracking."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from denial_model.artifact import load_artifact, save_artifact
from denial_model.cli import app
from denial_model.errors import ClaimTableError
from denial_model.jobs import run_training
from denial_model.samples import clean_claim
from denial_model.score import SCORE_COLUMNS, score_file, score_frame
from denial_model.simulate import SimConfig, simulate
from denial_model.train import TrainConfig


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    history = simulate(SimConfig(lines=40_000, seed=31))
    out = run_training(history, str(folder / "model.joblib"), TrainConfig(max_iter=80), track=False)
    assert "drift_reference" in out.manifest
    return folder / "model.joblib"


@pytest.fixture(scope="module")
def batch():
    df = simulate(SimConfig(lines=12_000, seed=77, start=pd.Timestamp("2025-10-01").date(), months=1))
    return df.sort_values(["service_date", "claim_id", "line_number"], kind="stable").reset_index(drop=True)


def test_score_columns_are_added_and_input_columns_kept(model_path, batch):
    loaded = load_artifact(model_path)
    scored, rejects = score_frame(batch, loaded)
    assert len(rejects) == 0 and len(scored) == len(batch)
    assert list(scored.columns[: len(batch.columns)]) == list(batch.columns)
    assert set(SCORE_COLUMNS) <= set(scored.columns)
    assert scored["denial_probability"].between(0, 1).all()
    assert set(scored["risk_tier"]) <= {"low", "medium", "high"}
    high = scored[scored["risk_tier"] == "high"]
    assert len(high) and (high["reasons"] != "").all()
    flagged = scored[scored["rule_hits"] != ""]
    assert (flagged["reasons"] != "").all()
    pairs = flagged["fixes"].str.extractall(r"(\d\.\d\d) -> (\d\.\d\d)").astype(float)
    assert len(pairs) and (pairs[1] < pairs[0]).all(), "a fix is offered only when it lowers the score"
    assert np.allclose(
        scored["dollars_at_risk"], (scored["denial_probability"] * scored["billed_amount"]).round(2)
    )


def test_scoring_leaves_the_callers_frame_as_it_was(model_path, batch):
    """Validation and the corrected claims work on shallow copies: what they change (columns
    renamed, repairs written) must never reach the frame the caller passed, whether it is a
    whole batch or one claim (every line then concerned by a repair) with a header to mend."""
    loaded = load_artifact(model_path)
    claim = batch[batch["claim_id"] == batch.loc[batch["prior_auth_number"] == "", "claim_id"].iloc[0]]
    claim = claim.rename(columns={"claim_id": " Claim_ID "}).reset_index(drop=True)
    for frame in (batch.head(2_000), claim):
        before = frame.copy(deep=True)
        scored, _ = score_frame(frame, loaded)
        assert len(scored) == len(frame)
        pd.testing.assert_frame_equal(frame, before)


@pytest.mark.parametrize(
    ("change", "rule", "fix"),
    [
        ({"prior_auth_number": ""}, "esketamine.prior_auth", {"prior_auth_number": "PA-123"}),
        ({"hcpcs_code": "J3031"}, "esketamine.document_code", {"hcpcs_code": "S0013"}),
        ({"place_of_service": "12"}, "esketamine.place_of_service", {"place_of_service": "11"}),
    ],
)
def test_fixes_really_lower_the_score_when_applied_and_rescored(model_path, pack, change, rule, fix):
    loaded = load_artifact(model_path)
    claim = clean_claim("esketamine", "commercial", service_date=pd.Timestamp("2025-10-06").date())
    broken = claim.copy()
    for k, v in change.items():
        broken.loc[0, k] = v
    scored, _ = score_frame(broken, loaded)
    assert rule in scored.loc[0, "rule_hits"].split(";")
    fixes = scored.loc[0, "fixes"].split(" | ")
    text = next(r.fix for r in pack.rules if r.id == rule).rstrip(". ")
    promised = float(next(f for f in fixes if f.startswith(text)).rsplit("-> ", 1)[1])
    repaired = broken.copy()
    for kk, v in fix.items():
        repaired.loc[0, kk] = v
    after, _ = score_frame(repaired, loaded)
    assert after.loc[0, "denial_probability"] < scored.loc[0, "denial_probability"]
    assert promised <= round(
        scored.loc[0, "denial_probability"], 2
    )  # the reported fix never raises the score


def test_rows_in_equal_scored_plus_rejected_with_bad_rows(tmp_path, model_path, batch):
    raw = batch.head(3000).copy().astype(str).replace({"nan": "", "NaT": ""})
    for c in ("service_date", "submission_date", "adjudication_date"):
        raw[c] = raw[c].str[:10]
    raw.loc[10, "units"] = "-1"
    raw.loc[2500, "ndc"] = "12345678"
    raw.loc[2999, "payer_type"] = "tricare"
    src = tmp_path / "in.csv"
    raw.to_csv(src, index=False)
    out, rej = tmp_path / "out.csv", tmp_path / "rej.csv"
    s = score_file(src, out, load_artifact(model_path), rej, chunk_lines=700)
    scored, rejects = pd.read_csv(out), pd.read_csv(rej)
    assert len(scored) + len(rejects) == len(raw) == s.rows_in
    assert sorted(rejects["row"]) == [10, 2500, 2999]
    assert dict(zip(rejects["row"], rejects["column"], strict=True)) == {
        10: "units",
        2500: "ndc",
        2999: "payer_type",
    }


def test_output_does_not_depend_on_chunk_size(tmp_path, model_path, batch):
    src = tmp_path / "b.parquet"
    batch.to_parquet(src)
    loaded = load_artifact(model_path)
    a, b = tmp_path / "a.parquet", tmp_path / "b_out.parquet"
    score_file(src, a, loaded, chunk_lines=1_000)
    score_file(src, b, loaded, chunk_lines=50_000)
    pd.testing.assert_frame_equal(pd.read_parquet(a), pd.read_parquet(b))
    whole, _ = score_frame(batch, loaded)
    pd.testing.assert_frame_equal(pd.read_parquet(a)[list(SCORE_COLUMNS)], whole[list(SCORE_COLUMNS)])


def test_a_failed_job_leaves_no_output_that_looks_complete(tmp_path, model_path, batch):
    src = tmp_path / "in.parquet"
    batch.drop(columns=["payer_type"]).to_parquet(src)
    out = tmp_path / "out.parquet"
    with pytest.raises(ValueError, match="payer_type"):
        score_file(src, out, load_artifact(model_path))
    assert not out.exists()


@pytest.mark.slow
def test_cli_score_records_a_tracked_batch_run(tmp_path, model_path, batch, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    src = tmp_path / "b.parquet"
    batch.to_parquet(src)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = CliRunner().invoke(
        app,
        ["score", str(src), "--output", "scored.parquet", "--model", str(model_path), "--tracking-uri", uri],
    )
    assert res.exit_code == 0, res.output
    assert len(pd.read_parquet(tmp_path / "scored.parquet")) == len(batch)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name("denial-model-scoring")
    run = client.search_runs([exp.experiment_id])[0]
    m = run.data.metrics
    assert m["lines_scored"] == len(batch) and m["lines_rejected"] == 0
    assert {
        "score_q50",
        "tier_high",
        "dollars_at_risk",
        "psi.score",
        "rule_hit_rate.prior_auth_missing",
    } <= set(m)
    assert "drift_warning" in run.data.tags
    assert [a.path for a in client.list_artifacts(run.info.run_id, "plots")] == ["plots/score_histogram.png"]
    assert not client.list_artifacts(run.info.run_id, "scored")  # PHI is not uploaded by default


def test_model_without_drift_reference_still_scores(tmp_path, model_path, batch):
    loaded = load_artifact(model_path)
    path = tmp_path / "old.joblib"
    save_artifact(path, loaded.model, loaded.thresholds, {}, "x")
    src = tmp_path / "b.parquet"
    batch.head(500).to_parquet(src)
    s = score_file(src, tmp_path / "o.parquet", load_artifact(path))
    assert s.scored == 500 and s.features == {}


def test_binned_predictor_equals_public_predict_proba_with_unseen_values(model_path, batch):

    from denial_model.predict import BinnedPredictor
    from denial_model.table import ClaimFrame, validate

    loaded = load_artifact(model_path)
    odd = batch.head(3000).copy()
    odd.loc[odd.index[:50], "payer_id"] = "NEVER-SEEN"
    odd.loc[odd.index[50:100], "place_of_service"] = "99"
    odd.loc[odd.index[100:150], "dose_mg"] = np.nan
    odd.loc[odd.index[150:200], "units"] = 1e6
    scorer = loaded.scorer
    X, res = scorer.features.transform_with_rules(ClaimFrame(validate(odd).lines))
    public = scorer.proba_of_features(X)
    fast = BinnedPredictor(scorer.classifier)
    score_frame(odd, loaded)
    assert isinstance(scorer.predictor, BinnedPredictor)
    assert "equal to predict_proba" in scorer.predictor_check
    np.testing.assert_array_equal(fast(X), public)
    np.testing.assert_array_equal(fast.proba(fast.prepare(X, binary=(res.ids, res.hits))), public)


def test_walking_every_tree_at_once_gives_what_each_trees_own_walk_gives(model_path, batch, monkeypatch):
    """`leaf_values` walks a few rows through all trees in NumPy: pinned to scikit-learn's
    `predict_binned`, bit for bit, on bins of real lines and on random bins (missing bins,
    categorical splits' bitsets), for the denial booster and the group booster; a claim
    scored at a time and the whole batch get the same probabilities."""
    from denial_model import predict
    from denial_model.predict import WALK_ROWS
    from denial_model.table import ClaimFrame, validate

    scorer = load_artifact(model_path).scorer
    frame = ClaimFrame(validate(batch.head(400)).lines)
    res = scorer.rules.evaluate(frame)
    attrs = scorer.features.attributes(frame, res)
    rng = np.random.default_rng(5)
    for pred in (scorer.predictor, scorer.group_predictor):
        trees = [t for ts in pred.iterations for t in ts]
        real = pred.prepare(attrs, binary=(res.ids, res.hits))
        noise = rng.integers(0, 256, size=real.shape).astype(np.uint8)
        noise[rng.random(noise.shape) < 0.2] = pred.missing_bin
        for Xb in (real, noise):
            for rows in (slice(0, 1), slice(0, WALK_ROWS)):
                part = np.asfortranarray(Xb[rows])
                own = np.column_stack([t.predict_binned(part, pred.missing_bin, 1) for t in trees])
                np.testing.assert_array_equal(pred.leaf_values(part, trees), own)
    loaded = load_artifact(model_path)
    claims = [g for _, g in batch.head(60).groupby("claim_id", sort=False)]
    walked = [score_frame(g, loaded)[0] for g in claims]
    monkeypatch.setattr(predict, "WALK_ROWS", 0)  # every tree walked by scikit-learn
    for g, got in zip(claims, walked, strict=True):
        pd.testing.assert_frame_equal(got, score_frame(g, loaded)[0])


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_binned_predictor_equals_public_predict_proba_for_either_calibration(model_path, batch, method):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    from denial_model.predict import BinnedPredictor
    from denial_model.table import ClaimFrame, denied_labels, validate

    scorer = load_artifact(model_path).scorer
    booster = scorer.classifier.calibrated_classifiers_[0].estimator
    X, res = scorer.features.transform_with_rules(ClaimFrame(validate(batch).lines))
    classifier = CalibratedClassifierCV(booster, method=method).fit(X, denied_labels(batch))
    assert isinstance(booster, FrozenEstimator)
    fast = BinnedPredictor(classifier)
    public = classifier.predict_proba(X)[:, 1]
    np.testing.assert_array_equal(fast.proba(fast.prepare(X, binary=(res.ids, res.hits))), public)


def test_predictor_falls_back_to_public_predict_proba_for_other_classifiers(model_path, batch):
    from sklearn.linear_model import LogisticRegression

    from denial_model.predict import PublicPredictor, make_predictor

    X = np.random.default_rng(0).normal(size=(200, 3))
    y = X[:, 0] > 0
    clf = LogisticRegression().fit(X, y)
    with pytest.warns(RuntimeWarning, match="fast binned prediction unavailable"):
        pred = make_predictor(clf)
    assert isinstance(pred, PublicPredictor)
    np.testing.assert_array_equal(pred(X), clf.predict_proba(X)[:, 1])


def test_carried_context_keeps_only_lines_a_later_line_can_reach(batch, pack):
    """The last day's lines (same-day rules) and doses within a dosing interval travel on."""
    from denial_model.rules import evaluate
    from denial_model.score import carry_context
    from denial_model.table import validate

    lines = validate(batch).lines
    result = evaluate(lines, pack)
    ctx = carry_context(None, lines, result.relevant_until)
    last = lines["service_date"].max()
    day = ctx.lines["service_date"]
    assert 0 < len(ctx.lines) < len(lines) / 5
    assert (day == last).sum() == (lines["service_date"] == last).sum()  # every line of the last day
    intervals = [r.params["days"] for r in pack.rules if r.kind == "min_days_between_doses"]
    assert ((last - day).dt.days < max(intervals)).all()  # nothing older than the longest interval
    earlier = ctx.until[(day < last).to_numpy()]
    assert len(earlier) and (earlier >= last.to_datetime64().astype("datetime64[D]").astype(int)).all()


def test_history_of_earlier_lines_gives_the_scores_of_the_whole_batch(tmp_path, model_path, batch):
    """A batch scored with the lines before it as `history` scores as it would inside them."""
    loaded = load_artifact(model_path)
    cut = batch["service_date"].quantile(0.5)
    first, second = batch[batch["service_date"] < cut], batch[batch["service_date"] >= cut]
    src = tmp_path / "second.parquet"
    second.to_parquet(src)
    score_file(src, tmp_path / "o.parquet", loaded, history=first, chunk_lines=1_500)
    whole, _ = score_frame(batch, loaded)
    expected = whole[(batch["service_date"] >= cut).to_numpy()].reset_index(drop=True)
    got = pd.read_parquet(tmp_path / "o.parquet")
    pd.testing.assert_frame_equal(got[list(SCORE_COLUMNS)], expected[list(SCORE_COLUMNS)])
    assert (got["rule_hits"].str.contains("duplicate|frequency|interval", regex=True)).any()


def test_a_gzip_csv_batch_scores_like_the_same_batch_in_parquet(tmp_path, model_path, batch):
    from denial_model.files import write_table

    loaded = load_artifact(model_path)
    part = batch.head(2_000)
    write_table(part, tmp_path / "b.csv.gz")
    part.to_parquet(tmp_path / "b.parquet")
    score_file(tmp_path / "b.csv.gz", tmp_path / "o.csv.gz", loaded)
    score_file(tmp_path / "b.parquet", tmp_path / "o.parquet", loaded)
    gz = pd.read_csv(tmp_path / "o.csv.gz")
    pq = pd.read_parquet(tmp_path / "o.parquet")
    np.testing.assert_allclose(gz["denial_probability"], pq["denial_probability"], atol=1e-12)
    assert (gz["reasons"].fillna("") == pq["reasons"]).all()


def test_a_job_that_fails_midway_leaves_neither_output_nor_rejects_nor_temporary_files(
    tmp_path, model_path, batch, monkeypatch
):
    from denial_model.scorer import Scorer

    loaded = load_artifact(model_path)
    src = tmp_path / "in" / "b.parquet"
    src.parent.mkdir()
    bad = batch.head(3_000).copy()
    bad.loc[bad.index[:5], "units"] = -1  # some rejects, so the rejects file is being written too
    bad.to_parquet(src)
    real = Scorer.score_lines
    calls = {"n": 0}

    def fail_on_second_chunk(self, lines, earlier=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("power cut")
        return real(self, lines, earlier)

    monkeypatch.setattr(Scorer, "score_lines", fail_on_second_chunk)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="power cut"):
        score_file(src, out / "scored.parquet", loaded, chunk_lines=1_000)
    assert calls["n"] == 2
    assert not out.exists() or list(out.iterdir()) == []


def test_a_fast_path_that_disagrees_with_predict_proba_is_dropped_with_a_warning(model_path, batch):
    loaded = load_artifact(model_path)
    scorer = loaded.scorer
    fast = scorer.predictor
    fast.calibrate = lambda raw: np.clip(fast.calibrator.predict(raw) + 0.01, 0, 1)  # a broken fast path
    with pytest.warns(RuntimeWarning, match="differs from predict_proba"):
        scored, _ = score_frame(batch.head(500), loaded)
    assert "disagreed" in scorer.predictor_check
    expected = loaded.model.predict_proba(batch.head(500))[:, 1]
    np.testing.assert_allclose(scored["denial_probability"], expected, atol=1e-12)


def test_claims_split_across_chunks_are_refused_with_the_reason_not_scored_wrong(tmp_path, model_path, batch):
    shuffled = batch.sample(frac=1.0, random_state=0)
    src = tmp_path / "shuffled.parquet"
    shuffled.to_parquet(src)
    with pytest.raises(ClaimTableError, match="must be together in the file"):
        score_file(src, tmp_path / "o.parquet", load_artifact(model_path), chunk_lines=2_000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shuffled.parquet"]
    scored = score_file(src, tmp_path / "o.parquet", load_artifact(model_path), chunk_lines=50_000)
    assert scored.scored == len(batch)  # one chunk holds every claim whole: scored exactly


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from([f"C{k}" for k in range(30)] + [""]), max_size=12), max_size=8))
def test_a_claim_seen_in_an_earlier_chunk_is_named_at_its_first_row_as_a_set_would_find_it(chunks):
    """The claims seen so far stay one sorted array that each chunk is looked up in and
    inserted into: pinned to a plain set over chunks of made-up ids (blank ids are no claim)."""
    from denial_model.score import _ClaimsSeen

    seen, before, row = _ClaimsSeen(Path("f.csv")), set(), 0
    for ids in chunks:
        table = pa.table({"claim_id": pa.array(ids, pa.string())})
        rows = np.arange(row, row + len(ids))
        row += len(ids)
        again = [(r, c) for r, c in zip(rows, ids, strict=True) if c and c in before]
        if again:
            first = again[0][1]  # the first such claim in the chunk, named at its first row there
            at = int(rows[ids.index(first)])
            with pytest.raises(ClaimTableError, match=f"claim '{first}' continues at row {at} "):
                seen.add(table, rows)
            return
        seen.add(table, rows)
        before |= {c for c in ids if c}
    assert len(seen.hashes) == len(before) and np.all(np.diff(seen.hashes.astype(np.float64)) >= 0)


def test_a_scored_file_scored_again_gets_fresh_score_columns_not_duplicates(tmp_path, model_path, batch):
    loaded = load_artifact(model_path)
    src = tmp_path / "b.parquet"
    batch.head(1_000).to_parquet(src)
    score_file(src, tmp_path / "once.parquet", loaded)
    score_file(tmp_path / "once.parquet", tmp_path / "twice.parquet", loaded)
    once, twice = pd.read_parquet(tmp_path / "once.parquet"), pd.read_parquet(tmp_path / "twice.parquet")
    assert list(twice.columns) == list(once.columns)
    pd.testing.assert_frame_equal(once, twice)


def test_check_output_then_score_works(tmp_path, model_path, batch):
    src = tmp_path / "b.csv"
    batch.head(500).to_csv(src, index=False)
    runner = CliRunner()
    res = runner.invoke(app, ["check", str(src), "--output", str(tmp_path / "checked.csv")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        [
            "score",
            str(tmp_path / "checked.csv"),
            "-o",
            str(tmp_path / "s.csv"),
            "--model",
            str(model_path),
            "--no-tracking",
        ],
    )
    assert res.exit_code == 0, res.output
    out = pd.read_csv(tmp_path / "s.csv")
    assert len(out) == 500 and list(out.columns).count("rule_hits") == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("args", [["--chunk-lines", "0"], ["--chunk-lines", "-5"], ["--output", "SRC"]])
def test_options_out_of_range_are_one_line_errors(tmp_path, model_path, batch, args):
    src = tmp_path / "b.parquet"
    batch.head(100).to_parquet(src)
    args = [str(src) if a == "SRC" else a for a in args]
    base = ["score", str(src), "--model", str(model_path), "--no-tracking"]
    if "--output" not in args:
        base += ["--output", str(tmp_path / "o.parquet")]
    res = CliRunner().invoke(app, base + args)
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert len(pd.read_parquet(src)) == 100  # the input is untouched


def test_score_quantiles_are_exact(tmp_path, model_path, batch):
    src = tmp_path / "b.parquet"
    batch.head(3_000).to_parquet(src)
    summary = score_file(src, tmp_path / "o.parquet", load_artifact(model_path), chunk_lines=700)
    p = pd.read_parquet(tmp_path / "o.parquet")["denial_probability"].to_numpy()
    assert summary.quantiles()["q50"] == pytest.approx(float(np.quantile(p.astype(np.float32), 0.5)))


@pytest.mark.slow
def test_a_tracked_batch_where_every_row_is_rejected_reports_zero_scored(tmp_path, model_path, batch):
    import mlflow
    from mlflow import MlflowClient

    src = tmp_path / "bad.parquet"
    batch.head(200).assign(units=-1.0).to_parquet(src)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = CliRunner().invoke(
        app,
        [
            "score",
            str(src),
            "-o",
            str(tmp_path / "o.parquet"),
            "--model",
            str(model_path),
            "--tracking-uri",
            uri,
        ],
    )
    assert res.exit_code == 0, res.output
    assert len(pd.read_parquet(tmp_path / "o.parquet")) == 0
    assert len(pd.read_csv(tmp_path / "o.rejects.csv")) == 200
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    run = client.search_runs([client.get_experiment_by_name("denial-model-scoring").experiment_id])[0]
    assert run.data.metrics["lines_scored"] == 0 and run.data.metrics["lines_rejected"] == 200


def test_a_tracking_server_that_is_down_loses_the_run_not_the_scores_unless_tracking_is_required(
    tmp_path, model_path, batch, monkeypatch
):
    import socket

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    src = tmp_path / "b.parquet"
    batch.head(300).to_parquet(src)
    out = tmp_path / "o.parquet"
    args = ["score", str(src), "-o", str(out), "--model", str(model_path)]
    args += ["--tracking-uri", f"http://127.0.0.1:{port}"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 3, res.output
    assert "NOT tracked" in res.output and "Traceback" not in res.output
    assert len(pd.read_parquet(out)) == 300
    out.unlink()
    (tmp_path / "o.rejects.csv").unlink()
    res = CliRunner().invoke(app, [*args, "--require-tracking"])
    assert res.exit_code == 2, res.output  # refused up front: nothing scored, nothing written
    assert "cannot be reached" in res.output and "Traceback" not in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.parquet"]


def test_a_registry_uri_without_a_store_here_is_refused_and_creates_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    src = tmp_path / "b.csv"
    clean_claim().to_csv(src, index=False)
    res = CliRunner().invoke(
        app, ["score", str(src), "-o", "o.csv", "--model", "models:/denial-model@champion", "--no-tracking"]
    )
    assert res.exit_code == 2 and "no tracking store" in res.output, res.output
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_a_job_stopped_by_sigterm_or_sigkill_leaves_nothing_a_rerun_trips_over(tmp_path, model_path, batch):
    import signal
    import subprocess
    import sys
    import time

    src = tmp_path / "b.parquet"
    pd.concat([batch] * 2, ignore_index=True).assign(
        claim_id=lambda d: d["claim_id"] + "-" + (d.index // len(batch)).astype(str)
    ).sort_values(["service_date", "claim_id", "line_number"], kind="stable").to_parquet(src)
    out = tmp_path / "out" / "o.parquet"
    cmd = [
        sys.executable,
        "-m",
        "denial_model.cli",
        "score",
        str(src),
        "-o",
        str(out),
        "--model",
        str(model_path),
        "--no-tracking",
        "--chunk-lines",
        "500",
    ]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        tmp = out.with_name(f".{out.name}.tmp")
        deadline = time.time() + 120
        while not tmp.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(1.0)  # well inside the job (it runs for tens of seconds)
        assert proc.poll() is None, "the job ended before it could be stopped"
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
        why = (sig, code, proc.stderr.read().decode()[-2000:])
        assert code == (143 if sig == signal.SIGTERM else -9), why
        assert not out.exists(), why  # nothing that looks complete
        if sig == signal.SIGTERM:
            assert list(out.parent.iterdir()) == [], "SIGTERM cleans up like Ctrl-C"
    subprocess.run(cmd, check=True, capture_output=True)  # the rerun is not tripped by SIGKILL's leftovers
    first = out.read_bytes()
    subprocess.run(cmd, check=True, capture_output=True)
    assert out.read_bytes() == first
    assert sorted(p.name for p in out.parent.iterdir()) == ["o.parquet", "o.rejects.csv"]


def test_a_batch_too_small_to_measure_drift_reports_none(model_path, batch):
    from denial_model.drift import MIN_DRIFT_LINES, drift_report
    from denial_model.score import ScoreSummary

    loaded = load_artifact(model_path)
    ref = loaded.drift_reference
    small = {"score": np.array([10, 5] + [0] * (len(ref["score"]["counts"]) - 2))}
    assert drift_report(ref, small) == {}
    big = {"score": np.asarray(ref["score"]["counts"]) * 0 + MIN_DRIFT_LINES}
    assert "score" in drift_report(ref, big)
    assert ScoreSummary().quantiles() == {}


def test_an_output_that_cannot_be_written_is_one_message_naming_it_and_leaves_nothing(
    tmp_path, model_path, batch
):
    """A real write failure, not a mocked one: the job runs under a file-size limit (what a
    full disk does to a write: the bytes do not fit), mid-way through writing its output."""
    import resource
    import signal
    import subprocess
    import sys
    from pathlib import Path

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    src = tmp_path / "in" / "b.parquet"
    src.parent.mkdir()
    batch.to_parquet(src)
    out = tmp_path / "out"
    cli = Path(sys.executable).parent / "denial-model"
    cmd = [str(cli), "score", str(src), "-o", str(out / "s.csv"), "--model", str(model_path), "--no-tracking"]
    done = subprocess.run(cmd, preexec_fn=limit, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2, (done.stdout[-1000:], done.stderr[-2000:])
    message = done.stderr.strip()
    assert "s.csv: cannot write: File too large" in " ".join(message.split()), message
    assert len(message.splitlines()) <= 3 and "Traceback" not in message, message
    assert not out.exists() or list(out.iterdir()) == []
