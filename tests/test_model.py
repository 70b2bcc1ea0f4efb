"""The denial model: one Pipeline, labels never features, artifact integrity, MLflow tracking."""

import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.metrics import log_loss
from sklearn.pipeline import Pipeline
from typer.testing import CliRunner

import denial_model
from denial_model.artifact import ArtifactError, load_artifact, manifest_path, save_artifact
from denial_model.cli import app
from denial_model.evaluate import permutation_importance
from denial_model.features import ClaimFeatures
from denial_model.jobs import load_model, run_training
from denial_model.scorer import Scorer
from denial_model.simulate import SimConfig, simulate
from denial_model.table import LABEL_COLUMNS, denied_labels
from denial_model.train import TrainConfig, train_model
from tests.servers import free_port, running

CFG = TrainConfig(max_iter=60, half_life_days=45.0)


@pytest.fixture(scope="module")
def history():
    return simulate(SimConfig(lines=40_000, seed=21))


@pytest.fixture(scope="module")
def small_history():
    """Enough lines for every tracked metric and plot: the tracking tests pin what is
    recorded and read back, not how good the model is."""
    return simulate(SimConfig(lines=10_000, seed=21))


@pytest.fixture(scope="module")
def trained(history):
    return train_model(history, CFG)


def test_model_is_one_pipeline_of_features_and_calibrated_classifier(trained):
    assert isinstance(trained.model, Pipeline)
    assert [name for name, _ in trained.model.steps] == ["features", "classifier"]
    assert trained.model.named_steps["features"].half_life_days == CFG.half_life_days  # the config's
    p = trained.model.predict_proba(trained.splits.test)[:, 1]
    assert ((p >= 0) & (p <= 1)).all() and len(p) == len(trained.splits.test)
    assert 0 < trained.thresholds.medium <= trained.thresholds.high < 1


def test_calibration_is_the_method_with_the_lower_out_of_fold_log_loss(trained):
    chosen = trained.calibration
    assert chosen["method"] == min(("isotonic", "sigmoid"), key=lambda m: chosen[f"{m}_log_loss"])
    assert trained.model.steps[1][1].method == chosen["method"]
    # the out-of-fold losses are losses of the calibration lines, near their base rate's
    calib = trained.splits.calib
    base = calib["denied"].mean()
    floor = -(base * np.log(base) + (1 - base) * np.log(1 - base))
    assert 0.5 * floor < chosen["sigmoid_log_loss"] < floor


def test_a_named_calibration_is_used_and_an_unknown_one_is_refused_quoting_it(history):
    from denial_model.errors import ConfigError
    from denial_model.train import choose_calibration

    fixed = train_model(history, TrainConfig(max_iter=20, calibration="sigmoid", reason_groups=False))
    assert fixed.model.steps[1][1].method == "sigmoid" and fixed.calibration == {"method": "sigmoid"}
    with pytest.raises(ConfigError, match="'platt'"):
        choose_calibration(None, None, None, "platt")


def test_labels_and_p_true_are_never_features(trained):
    test = trained.splits.test
    feats = Scorer(trained.model, trained.thresholds).features
    before = feats.transform(test)
    rng = np.random.default_rng(0)
    shuffled = test.copy()
    for col in [*LABEL_COLUMNS, "planted_categories"]:
        shuffled[col] = shuffled[col].to_numpy()[rng.permutation(len(shuffled))]
    pd.testing.assert_frame_equal(before, feats.transform(shuffled))
    assert not set(LABEL_COLUMNS) & set(feats.get_feature_names_out())
    dropped = test.drop(columns=[*LABEL_COLUMNS, "planted_categories"])
    pd.testing.assert_frame_equal(before, feats.transform(dropped))


def test_history_features_use_only_lines_adjudicated_before_submission(history):
    f = ClaimFeatures().fit(history)
    first_day = history.sort_values("submission_date").head(50)
    out = f.transform(first_day)
    assert (out["hist_provider_lines"] == 0).all()  # nothing was adjudicated before the first submissions
    assert np.allclose(out["hist_provider_rate"], f.prior_)


def test_artifact_loads_in_a_fresh_process_and_scores(tmp_path, trained):
    path = tmp_path / "model.joblib"
    save_artifact(path, trained.model, trained.thresholds, {"auroc": 0.5}, "abc")
    data = tmp_path / "lines.parquet"
    trained.splits.test.head(200).to_parquet(data)
    code = (
        "import sys; from denial_model.artifact import load_artifact; import pandas as pd;"
        "m = load_artifact(sys.argv[1]); p = m.predict_proba(pd.read_parquet(sys.argv[2]));"
        "print(len(p), float(p.min()) >= 0, float(p.max()) <= 1)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), str(data)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["200", "True", "True"]
    expected = trained.model.predict_proba(trained.splits.test.head(200))[:, 1]
    assert np.allclose(load_artifact(path).predict_proba(pd.read_parquet(data)), expected)


def test_tampered_artifact_is_refused_and_version_mismatch_warns(tmp_path, trained):
    path = tmp_path / "model.joblib"
    save_artifact(path, trained.model, trained.thresholds, {}, "abc")
    manifest = json.loads(manifest_path(path).read_text())
    assert {
        "sha256",
        "sklearn_version",
        "rule_pack_sha256",
        "feature_schema",
        "thresholds",
        "training_data_fingerprint",
        "metrics",
    } <= set(manifest)
    manifest["sklearn_version"] = "0.0.1"
    manifest_path(path).write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="sklearn 0.0.1"):
        load_artifact(path)
    blob = joblib.load(path)
    blob.thresholds_.high = 0.99  # the artifact is one DenialModel estimator
    tampered = tmp_path / "tampered.joblib"
    joblib.dump(blob, tampered)
    manifest_path(tampered).write_text(manifest_path(path).read_text())
    with pytest.raises(ArtifactError, match="does not match"):
        load_artifact(tampered)
    (tmp_path / "bare.joblib").write_bytes(path.read_bytes())
    with pytest.raises(ArtifactError, match="no manifest"):
        load_artifact(tmp_path / "bare.joblib")


def _run_and_check(uri, history, tmp_path, experiment, challenger: bool = True):
    """Train tracked at `uri` and read the run, the plots, the champion and the registered
    pyfunc back; `challenger`: also train a clearly worse model, which must not take the
    alias (store-independent logic: one of the two tracked tests pins it)."""
    import mlflow
    from mlflow import MlflowClient

    out1 = run_training(history, str(tmp_path / "m1.joblib"), CFG, tracking_uri=uri, experiment=experiment)
    tr = out1.tracking
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    run = client.get_run(tr["run_id"])
    assert {
        "auroc",
        "log_loss",
        "ece",
        "oracle.auroc",
        "rules_only.auroc",
        "logistic_regression.auroc",
        "auroc_medicare",
        "dollars_at_risk_caught",
    } <= set(run.data.metrics)
    assert run.data.params["data.fingerprint"] == out1.manifest["training_data_fingerprint"]
    assert "rule_pack.sha256" in run.data.params
    plots = {a.path for a in client.list_artifacts(tr["run_id"], "plots")}
    assert {
        "plots/roc.png",
        "plots/precision_recall.png",
        "plots/calibration.png",
        "plots/score_distribution.png",
        "plots/feature_importance.png",
    } <= plots
    champion = client.get_model_version_by_alias("denial-model", "champion")
    assert str(champion.version) == tr["model_version"]
    if challenger:
        # a clearly worse candidate (one two-leaf tree) on the same test lines does not take
        # the alias; the comparison is logged
        out2 = run_training(
            history,
            str(tmp_path / "m2.joblib"),
            TrainConfig(max_iter=1, learning_rate=0.001, max_leaf_nodes=2),
            tracking_uri=uri,
            experiment=experiment,
        )
        assert out2.tracking["champion_moved"] is False
        champion = client.get_model_version_by_alias("denial-model", "champion")
        assert str(champion.version) == tr["model_version"]
        run2 = client.get_run(out2.tracking["run_id"])
        assert "champion.log_loss_same_test" in run2.data.metrics
    # the registered pyfunc answers probabilities (not labels), and the toolkit loads the
    # champion's joblib only after checking it against the version's digest tag
    expected = out1.result.model.predict_proba(history.tail(50))[:, 1]
    rows = mlflow.pyfunc.load_model("models:/denial-model@champion").predict(history.tail(50))
    assert np.allclose(rows["denial_probability"].to_numpy(dtype=float), expected)
    needs = Path(mlflow.pyfunc.get_model_dependencies("models:/denial-model@champion")).read_text().split()
    assert f"denial-model=={denial_model.__version__}" in needs
    assert f"scikit-learn=={sklearn.__version__}" in needs
    verified = load_model("models:/denial-model@champion", uri)
    assert verified.trust.startswith("registry tag artifact_sha256")
    assert np.allclose(verified.predict_proba(history.tail(50)), expected)


@pytest.mark.slow
def test_training_is_tracked_in_an_embedded_sqlite_store(tmp_path, small_history, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _run_and_check(uri, small_history, tmp_path, "sqlite-test", challenger=False)


@pytest.mark.slow
def test_training_is_tracked_on_a_real_mlflow_server(tmp_path, small_history):
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination",
        str(tmp_path / "artifacts"),
        "--workers",
        "1",
    ]
    with running(cmd, f"http://127.0.0.1:{port}/health", tmp_path, tmp_path / "server.log", timeout=90):
        _run_and_check(f"http://127.0.0.1:{port}", small_history, tmp_path, "server-test")
        assert any((tmp_path / "artifacts").rglob("roc.png"))


def test_a_jobs_tracking_uri_does_not_become_the_process_default(tmp_path, monkeypatch):
    """MLflow exports the URI it is given to the environment; the toolkit puts the
    environment back, so a later job given no URI tracks to the default store, not to the
    last job's (a server that may be gone)."""
    from denial_model.tracking import DEFAULT_TRACKING_URI, check_tracking, resolve_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    check_tracking(f"sqlite:///{tmp_path / 'one.db'}")
    assert "MLFLOW_TRACKING_URI" not in os.environ and resolve_uri() == DEFAULT_TRACKING_URI
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'team.db'}")
    check_tracking(f"sqlite:///{tmp_path / 'two.db'}")
    assert os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'team.db'}"


def test_cli_train_and_evaluate(tmp_path, history, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "h.parquet"
    history.to_parquet(data)
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--data", str(data), "--output", "model.joblib", "--no-tracking"])
    assert res.exit_code == 0, res.output
    for words in ("oracle", "rules_only", "payer_base_rate", "logistic_regression", "risk tiers"):
        assert words in res.output
    assert "out-of-fold log loss on the calibration months: isotonic 0." in res.output
    res = runner.invoke(app, ["train", "--data", str(data), "--output", "x.joblib", "--calibration", "platt"])
    assert res.exit_code == 2 and "'platt'" in res.output and not (tmp_path / "x.joblib").exists()
    res = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            "model.joblib",
            "--data",
            str(data),
            "--json",
            "m.json",
            "--since",
            "2025-08-01",
        ],
    )
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "m.json").read_text())["rows"]
    models = {r["model"] for r in rows}
    assert {"model", "oracle", "rules_only", "payer_base_rate", "logistic_regression"} <= models
    segments = {r["segment"] for r in rows}
    assert segments >= {
        "all",
        "medicare",
        "commercial",
        "drug_lines",
        "administration_lines",
        "since_2025-08-01",
    }
    since = next(r for r in rows if r["model"] == "model" and r["segment"] == "since_2025-08-01")
    served = pd.to_datetime(history["service_date"])
    assert since["lines"] == int((served >= "2025-08-01").sum())  # all within the test months
    assert "administration_lines" in res.output


def test_a_csv_history_trains_the_same_model_as_parquet(tmp_path, history):
    """CSV cells are text: 'False' must not become True."""
    from denial_model.files import read_table, write_table

    small = history.head(20_000)
    write_table(small, tmp_path / "h.csv")
    write_table(small, tmp_path / "h.parquet")
    a = train_model(read_table(tmp_path / "h.csv"), TrainConfig(max_iter=20, test_months=2))
    b = train_model(read_table(tmp_path / "h.parquet"), TrainConfig(max_iter=20, test_months=2))
    lines = b.splits.test.head(300)
    np.testing.assert_allclose(a.model.predict_proba(lines), b.model.predict_proba(lines), atol=1e-9)


def test_permutation_importance_is_the_log_loss_growth_when_each_feature_is_shuffled(trained):
    """Pinned to a plain computation: the feature frame's column shuffled with the same
    permutations, scored by the public predict_proba; a feature no tree uses is exactly 0."""
    scorer = Scorer(trained.model, trained.thresholds)
    rows = trained.splits.test.head(600)
    got = permutation_importance(scorer, rows, n_repeats=2, seed=3)
    X, y = scorer.transform(rows), denied_labels(rows)

    def loss(p):
        return log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[False, True])

    base = loss(scorer.proba_of_features(X))
    names = list(X.columns)
    assert sorted(got.index) == sorted(names)
    checked = {*got.index[:6], *got.index[-3:], "units", "payer_id"}
    rng = np.random.default_rng(3)
    plain = {name: [] for name in checked}
    for _ in range(2):
        for name in names:
            order = rng.permutation(len(y))
            if name in checked:
                moved = X.copy()
                moved[name] = X[name].array.take(order)
                plain[name].append(loss(scorer.proba_of_features(moved)) - base)
    for name in checked:
        assert got[name] == pytest.approx(np.mean(plain[name]), abs=1e-9), name
    assert got.iloc[0] > 0.001  # something matters
    unused = [n for n in names if scorer.predictor.position[n] not in scorer.predictor.trees_using]
    assert unused and (got[unused] == 0).all()
