"""The HTTP service, as a billing system meets it: a real `denial-model serve` process on
loopback (auth, limits, accounting, same answers as batch scoring, reload, logs), and
MLflow's own `mlflow models serve` on the registered pyfunc."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from denial_model.artifact import load_artifact
from denial_model.jobs import run_training
from denial_model.score import score_frame
from denial_model.serve.auth import KeyCheck, digest, load_digests, new_key
from denial_model.serve.schemas import example_lines
from denial_model.simulate import SimConfig, simulate
from denial_model.table import INPUT_COLUMNS
from denial_model.train import TrainConfig
from tests.servers import free_port, running, scoring_processes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A model trained, tracked and registered in a SQLite store, plus a batch to score."""
    folder = tmp_path_factory.mktemp("serve")
    history = simulate(SimConfig(lines=12_000, seed=5))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    run = run_training(history, folder / "model.joblib", TrainConfig(max_iter=40), tracking_uri=uri)
    batch = simulate(SimConfig(lines=600, seed=6))[list(INPUT_COLUMNS)]
    key, key_digest = new_key()
    (folder / "keys.txt").write_text(f"# service keys\n{key_digest}\n")
    return {
        "folder": folder,
        "uri": uri,
        "model": folder / "model.joblib",
        "sha256": run.manifest["sha256"],
        "key": key,
        "batch": batch,
    }


def _call(base: str, path: str, body=None, key: str | None = None, raw: bytes | None = None, headers=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, method="POST" if data is not None else "GET")
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            text = r.read().decode()
            return r.status, (
                json.loads(text) if r.headers.get_content_type() == "application/json" else text
            )
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        return e.code, (json.loads(text) if text.startswith("{") else text)


def _records(df: pd.DataFrame) -> list[dict]:
    return json.loads(df.to_json(orient="records", date_format="iso"))


def _serve(world, *extra: str, model: str | None = None, log_name: str = "serve.log"):
    port = free_port()
    cmd = [sys.executable, "-m", "denial_model.cli", "serve", "--port", str(port)]
    cmd += ["--model", model or str(world["model"])] if model != "" else []
    cmd += ["--tracking-uri", world["uri"], *extra]
    base = f"http://127.0.0.1:{port}"
    return base, running(cmd, base + "/readyz", world["folder"], world["folder"] / log_name)


@pytest.fixture(scope="module")
def server(world):
    base, ctx = _serve(
        world,
        "--api-keys",
        str(world["folder"] / "keys.txt"),
        "--model-sha256",
        world["sha256"],
        "--max-lines",
        "700",
        "--max-body-bytes",
        "2000000",
    )
    with ctx:
        yield base


def test_keys_are_stored_as_digests_and_checked_against_every_one():
    key, d = new_key()
    assert d == digest(key) and key not in d and len(d) == 64
    check = KeyCheck(frozenset({d, digest("other")}))
    assert check.allows(f"Bearer {key}") and check.allows(f"bearer {key}")
    assert not check.allows(key) and not check.allows("Bearer ") and not check.allows(None)
    assert not check.allows(f"Bearer {d}")  # the digest itself is not a key
    with pytest.raises(Exception, match="is not a sha256 hex digest"):
        load_digests(env="dmk_not-a-digest")


def test_health_and_readiness_are_open_and_every_other_route_needs_a_key(server, world):
    assert _call(server, "/healthz") == (200, {"status": "ok"})
    status, body = _call(server, "/readyz")
    assert status == 200 and body["status"] == "ready"
    for path, body in (("/v1/model", None), ("/metrics", None), ("/v1/score", {"lines": example_lines()})):
        assert _call(server, path, body)[0] == 401
        assert _call(server, path, body, key="dmk_wrong")[0] == 401
        assert _call(server, path, body, key=world["key"])[0] == 200
    status, info = _call(server, "/v1/model", key=world["key"])
    assert info["sha256"] == world["sha256"] and info["trust"] == "pinned sha256"
    assert {"medium", "high"} <= set(info["thresholds"]) and "auroc" in info["metrics"]
    assert info["trained_at"] and info["rule_pack_sha256"]


def test_every_line_is_scored_or_rejected_with_the_same_answers_as_batch_scoring(server, world):
    batch = world["batch"].head(400).copy()
    lines = _records(batch)
    lines[5]["units"] = "abc"
    lines[17]["service_date"] = "2025-02-30"
    lines[33]["hcpcs_code"] = None
    lines[34]["units"] = "2"  # a number sent as text is still a number
    status, body = _call(server, "/v1/score", {"lines": lines}, key=world["key"])
    assert status == 200
    assert body["lines_in"] == 400 == body["lines_scored"] + body["lines_rejected"]
    assert [r["row"] for r in body["rejects"]] == [5, 17, 33]
    assert {r["row"] for r in body["results"]} | {5, 17, 33} == set(range(400))
    assert body["rejects"][0]["column"] == "units" and "'abc'" in body["rejects"][0]["reason"]
    loaded = load_artifact(world["model"], sha256=world["sha256"])
    expected, rejects = score_frame(pd.DataFrame(lines), loaded)
    assert list(rejects["row"]) == [5, 17, 33]
    got = pd.DataFrame(body["results"])
    np.testing.assert_allclose(got["denial_probability"], expected["denial_probability"], rtol=0, atol=1e-9)
    for c in ("risk_tier", "rule_hits", "reasons", "fixes"):
        assert list(got[c]) == list(expected[c].astype(str)), c
    np.testing.assert_allclose(got["dollars_at_risk"], expected["dollars_at_risk"], atol=0.005)


def test_concurrent_requests_batched_together_answer_as_if_each_came_alone(server, world):
    claim = example_lines()  # the same patient and claim in every request: duplicates if they met
    _, alone = _call(server, "/v1/score", {"lines": claim}, key=world["key"])
    answers: list = [None] * 24

    def ask(k: int) -> None:
        lines = claim if k % 3 else [*claim, dict(claim[0], units="abc")]  # some with a reject
        answers[k] = _call(server, "/v1/score", {"lines": lines}, key=world["key"])

    threads = [threading.Thread(target=ask, args=(k,)) for k in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, (status, body) in enumerate(answers):
        assert status == 200
        assert body["results"] == alone["results"]
        assert [r["row"] for r in body["rejects"]] == ([] if k % 3 else [2])


def _gone(pid: int, timeout: float = 10) -> None:
    """Wait until a killed process is dead: a zombie whose threads have all exited (the
    leader shows Z while its other threads are still closing the process's files)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields["State"].startswith(("Z", "X")) and fields["Threads"].strip() == "1":
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still alive {timeout} s after SIGKILL")


def test_with_workers_every_scoring_process_answers_as_one_process_and_a_dead_one_is_replaced(world):
    """--workers 2: one HTTP process, two scoring processes. Slices sent at once are scored in
    either and each answers as `score_frame` on that slice; a scoring process killed between
    batches is started again and the next requests are still answered (a process that dies
    on a batch is also started again, and the batch sent once more)."""
    lines = _records(world["batch"].head(300))
    loaded = load_artifact(world["model"], sha256=world["sha256"])
    slices = [lines[50 * k : 50 * k + 50] for k in range(6)]
    expected = pd.concat([score_frame(pd.DataFrame(s), loaded)[0] for s in slices], ignore_index=True)
    keys = str(world["folder"] / "keys.txt")
    base, ctx = _serve(world, "--api-keys", keys, "--workers", "2", log_name="serve_workers.log")
    with ctx as proc:
        children = set(scoring_processes(proc.pid))
        assert len(children) == 2
        answers: list = [None] * 6

        def ask(k: int) -> None:
            answers[k] = _call(base, "/v1/score", {"lines": slices[k]}, key=world["key"])

        threads = [threading.Thread(target=ask, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [status for status, _ in answers] == [200] * 6
        got = pd.DataFrame([r for _, body in answers for r in body["results"]])
        np.testing.assert_allclose(got["denial_probability"], expected["denial_probability"], atol=1e-9)
        assert list(got["reasons"]) == list(expected["reasons"].astype(str))

        os.kill(min(children), signal.SIGKILL)
        _gone(min(children))
        for _ in range(4):  # both lanes take requests; the dead one is started again first
            status, body = _call(base, "/v1/score", {"lines": slices[0]}, key=world["key"])
            assert status == 200 and [r["reasons"] for r in body["results"]] == list(got["reasons"][:50])
        after = set(scoring_processes(proc.pid))
        assert len(after) == 2 and min(children) not in after
        log = (world["folder"] / "serve_workers.log").read_text()
        assert "exited (code -9)" in log and "twice on one batch" not in log


def test_earlier_lines_sent_as_history_feed_the_cross_line_rules(server, world):
    claim = example_lines()
    earlier = [dict(line, claim_id="CLM-0999") for line in claim]  # the same services, billed before
    _, alone = _call(server, "/v1/score", {"lines": claim}, key=world["key"])
    _, with_history = _call(server, "/v1/score", {"lines": claim, "history": earlier}, key=world["key"])
    assert "common.duplicate_line" not in alone["results"][0]["rule_hits"]
    assert "common.duplicate_line" in with_history["results"][0]["rule_hits"]
    assert with_history["lines_in"] == 2  # history is read, not scored


def test_the_scrubber_route_checks_rules_and_rejects_bad_lines(server, world):
    lines = [*example_lines(), dict(example_lines()[0], units=-1)]
    status, body = _call(server, "/v1/check", {"lines": lines}, key=world["key"])
    assert status == 200 and body["lines_in"] == 3 == body["lines_checked"] + body["lines_rejected"]
    assert body["results"][0]["rule_hits"] == "naltrexone.prior_auth" and body["results"][0]["rule_carcs"]
    assert body["rejects"][0]["row"] == 2 and body["rejects"][0]["column"] == "units"


def test_limits_answer_413_naming_the_limit(server, world):
    too_many = {"lines": example_lines() * 351}
    status, body = _call(server, "/v1/score", too_many, key=world["key"])
    assert status == 413 and "limit is 700" in body["detail"]
    big = json.dumps({"lines": example_lines() * 300, "pad": "x" * 2_100_000}).encode()
    status, body = _call(server, "/v1/score", raw=big, key=world["key"])
    assert status == 413 and "2,000,000 bytes" in body["detail"]
    # a body that does not declare its length is counted as it arrives
    chunks = iter([big[i : i + 65536] for i in range(0, len(big), 65536)])
    req = urllib.request.Request(server + "/v1/score", data=chunks, method="POST")
    req.add_header("Authorization", f"Bearer {world['key']}")
    req.add_header("Content-Type", "application/json")
    req.add_header("Transfer-Encoding", "chunked")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=60)
    assert err.value.code == 413


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (b"{not json", ["body", 1]),
        (b'{"lines": {"claim_id": "x"}}', ["body", "lines"]),
        (
            json.dumps({"lines": [dict(example_lines()[0], colour="red")]}).encode(),
            ["body", "lines", 0, "colour"],
        ),
        (
            json.dumps({"lines": [dict(example_lines()[0], units=[1, 2])]}).encode(),
            ["body", "lines", 0, "units"],
        ),
        (json.dumps({"lines": [{"claim_id": "x"}]}).encode(), ["body", "lines", 0, "line_number"]),
        (json.dumps({"rows": []}).encode(), ["body", "lines"]),
    ],
)
def test_malformed_bodies_are_422_with_the_field_path_never_500(server, world, raw, where):
    status, body = _call(server, "/v1/score", raw=raw, key=world["key"])
    assert status == 422
    assert any(e["loc"][: len(where)] == where for e in body["detail"]), body


def test_metrics_count_requests_and_lines_and_logs_hold_no_claim_values(server, world):
    _call(server, "/v1/score", {"lines": example_lines()}, key=world["key"])
    _, text = _call(server, "/metrics", key=world["key"])
    assert 'denial_model_requests_total{route="/v1/score",status="200"}' in text
    assert 'denial_model_lines_total{outcome="scored",route="/v1/score"}' in text
    assert "denial_model_request_seconds_bucket" in text and "denial_model_model_info" in text
    log = (world["folder"] / "serve.log").read_text()
    assert "request_id=" in log and "route=/v1/score status=200" in log
    batch = world["batch"]
    for value in [*batch["patient_id"].head(400), *batch["claim_id"].head(400), "PT-EXAMPLE", "CLM-1001"]:
        assert str(value) not in log


def test_the_server_refuses_to_start_without_keys_or_with_a_model_that_fails_its_check(world, tmp_path):
    def start(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "denial_model.cli", "serve", "--port", str(free_port()), *args]
        env = {k: v for k, v in __import__("os").environ.items() if k != "DENIAL_MODEL_API_KEYS"}
        return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120, env=env)

    res = start("--model", str(world["model"]))
    assert res.returncode == 2 and "no API key configured" in res.stderr
    res = start("--insecure-no-auth", "--host", "0.0.0.0")
    assert res.returncode == 2 and "loopback" in res.stderr
    keys = str(world["folder"] / "keys.txt")
    res = start("--model", str(world["model"]), "--api-keys", keys, "--model-sha256", "0" * 64)
    assert res.returncode == 2 and "does not match the pinned digest" in res.stderr


def test_a_moved_alias_is_served_after_reload_without_dropping_requests(world):
    from mlflow import MlflowClient

    import denial_model.tracking as tracking
    from denial_model.scorer import Scorer

    loaded = load_artifact(world["model"], sha256=world["sha256"])
    base, ctx = _serve(
        world,
        "--api-keys",
        str(world["folder"] / "keys.txt"),
        "--workers",
        "2",
        model="models:/denial-model@champion",
        log_name="serve_alias.log",
    )
    with ctx:
        _, before = _call(base, "/v1/model", key=world["key"])
        assert before["version"] == "1" and before["trust"].startswith("registry tag")
        # a second version of the same model, registered beside the first, then promoted
        from denial_model.artifact import save_artifact

        path2 = world["folder"] / "model_v2.joblib"
        manifest2 = save_artifact(path2, loaded.model, loaded.thresholds, {}, "v2")
        mlflow = tracking._mlflow(world["uri"])
        with mlflow.start_run():
            info = tracking._log_pyfunc(
                mlflow, Scorer(loaded.model, loaded.thresholds), manifest2, path2, "denial-model"
            )
        client = MlflowClient()
        v2 = str(info.registered_model_version)
        client.set_model_version_tag("denial-model", v2, tracking.DIGEST_TAG, manifest2["sha256"])
        client.set_registered_model_alias("denial-model", "champion", v2)
        statuses: list[int] = []
        stop = threading.Event()

        def keep_asking():
            while not stop.is_set():
                statuses.append(_call(base, "/v1/score", {"lines": example_lines()}, key=world["key"])[0])

        asker = threading.Thread(target=keep_asking)
        asker.start()
        try:
            status, result = _call(base, "/v1/admin/reload", {}, key=world["key"])
        finally:
            stop.set()
            asker.join()
        assert status == 200 and result["reloaded"] and result["version"] == v2
        assert statuses and set(statuses) == {200}
        _, after = _call(base, "/v1/model", key=world["key"])
        assert after["version"] == v2 and after["sha256"] == manifest2["sha256"]


def test_a_registered_version_without_its_digest_tag_is_refused_with_how_to_fix(world):
    from mlflow import MlflowClient

    import denial_model.tracking as tracking
    from denial_model.errors import ArtifactError

    tracking._mlflow(world["uri"])
    client = MlflowClient()
    client.delete_model_version_tag("denial-model", "1", tracking.DIGEST_TAG)
    try:
        with pytest.raises(ArtifactError, match="re-train"):
            tracking.load_registered("models:/denial-model/1", world["uri"])
    finally:
        client.set_model_version_tag("denial-model", "1", tracking.DIGEST_TAG, world["sha256"])


def test_mlflow_models_serve_answers_probabilities_reasons_and_rejects_like_the_service(world, server):
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        "models:/denial-model/1",
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    lines = _records(world["batch"].head(40))
    lines[7]["units"] = "abc"
    with running(
        cmd,
        f"http://127.0.0.1:{port}/ping",
        world["folder"],
        world["folder"] / "mlflow_serve.log",
        env={"MLFLOW_TRACKING_URI": world["uri"]},
    ):
        status, body = _call(
            f"http://127.0.0.1:{port}",
            "/invocations",
            raw=json.dumps({"dataframe_records": lines}).encode().replace(b"NaN", b"null"),
        )
    assert status == 200
    rows = pd.DataFrame(body["predictions"])
    assert list(rows["row"]) == list(range(40))
    assert rows.loc[7, "status"] == "rejected" and rows.loc[7, "reject_column"] == "units"
    _, ours = _call(server, "/v1/score", {"lines": lines}, key=world["key"])
    scored = rows[rows["status"] == "scored"].reset_index(drop=True)
    np.testing.assert_allclose(
        scored["denial_probability"], [r["denial_probability"] for r in ours["results"]], rtol=0, atol=1e-9
    )
    assert list(scored["reasons"]) == [r["reasons"] for r in ours["results"]]
    assert set(rows["risk_tier"].dropna()) <= {"low", "medium", "high"}
