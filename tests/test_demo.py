"""`make demo` run small, as a user runs it (a fresh process in an empty folder), and what it
leaves behind read for protected health information.

The demo is the job every user runs first: it must work end to end (scrub, simulate, train,
track, register, score, report), and neither its console output nor the MLflow store it
writes may hold the claims it learned from or scored: no patient id of the history or the
batch anywhere, no diagnosis code outside the model's input example, which is the
toolkit's own made-up sample claims.
"""

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from denial_model.samples import DRUG_LINES
from denial_model.serve.auth import new_key
from tests.servers import free_port, wait_healthy

_DEMO = """
from pathlib import Path
from denial_model.demo import main
main(Path("demo_output"), history_lines=20_000, batch_lines=2_000, tracking_uri="sqlite:///mlflow.db")
"""


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    folder = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(
        [sys.executable, "-c", _DEMO], cwd=folder, capture_output=True, text=True, timeout=600, check=False
    )
    return folder, proc


def test_the_demo_runs_end_to_end_in_an_empty_folder(demo_run):
    folder, proc = demo_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for section in (
        "claim scrubber",
        "simulated claim history",
        "train, evaluate, track",
        "score a fresh batch",
    ):
        assert section in out, section
    assert re.search(r"MLflow scoring run\s+[0-9a-f]{32}", out)
    scored = pd.read_parquet(folder / "demo_output" / "batch_scored.parquet")
    rejects = pd.read_csv(folder / "demo_output" / "batch_rejects.csv")
    assert len(scored) + len(rejects) == len(pd.read_parquet(folder / "demo_output" / "batch.parquet"))
    assert scored["denial_probability"].between(0, 1).all()


def _store_texts(folder: Path) -> dict[str, str]:
    """Every text the run left outside its own outputs: console, the SQLite store (params,
    tags, metric names, registry), and every artifact that is not a pickled model or a plot."""
    texts = {}
    with sqlite3.connect(folder / "mlflow.db") as con:
        texts["mlflow.db"] = "\n".join(con.iterdump())
    for path in (folder / "mlruns").rglob("*"):
        if path.is_file() and path.suffix not in (".pkl", ".joblib", ".png"):
            texts[str(path.relative_to(folder))] = path.read_text(errors="replace")
    return texts


def test_no_claim_of_the_history_or_batch_reaches_the_console_or_the_mlflow_store(demo_run):
    folder, proc = demo_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    claims = pd.concat(
        [pd.read_parquet(folder / "demo_output" / f) for f in ("history.parquet", "batch.parquet")],
        ignore_index=True,
    )
    patients = set(claims["patient_id"])
    diagnoses = set(";".join(claims["diagnosis_codes"]).split(";")) - {""}
    texts = {"stdout": proc.stdout, "stderr": proc.stderr, **_store_texts(folder)}
    assert "mlflow.db" in texts and any("input_example" in name for name in texts)  # the scan saw the store
    for name, text in texts.items():
        ids = set(re.findall(r"P\d+-\d+", text)) & patients
        assert not ids, (name, sorted(ids)[:5])
        if name.endswith("input_example.json"):
            example = json.loads(text)
            rows = example.get("dataframe_split", example)
            assert {r[0] for r in rows["data"]} <= {f"EXAMPLE-{d}" for d in DRUG_LINES}, rows["data"][0][:2]
            continue
        found = {d for d in diagnoses if re.search(r"(?<![\w.])" + re.escape(d) + r"(?![\w.])", text)}
        assert not found, (name, sorted(found)[:5])


# README lines that are documented but not run here: the two set-up commands (CI runs them),
# the MLflow UI (a server), the benchmarks (minutes each; they print their own figures),
# `mlflow models serve` (test_serve.py runs it), the key exports (the test sets the same
# variables), curl (the Python block before it makes the same request), `tune` (twelve
# boosters; tests/test_generalization.py runs the command on a smaller search) and the cluster
# recipe (tests/test_spark.py builds nothing but runs the same spark-submit on local[2]).
_NOT_RUN = (
    "make ",
    "mlflow ui",
    "python benchmarks/",
    "mlflow models serve",
    "export ",
    "curl ",
    "denial-model tune ",
    "python -m build",
    "spark-submit ",
)


def _readme_steps() -> list[tuple[str, str]]:
    """("shell" | "python", text) for every command line and Python block of the README, in
    order: continuation lines joined, comments and [optional] parts dropped."""
    text = (Path(__file__).parents[1] / "README.md").read_text()
    steps = []
    for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M):
        if lang == "python":
            steps.append(("python", body))
            continue
        if not re.search(r"^(denial-model|make|mlflow|python) ", body, flags=re.M):
            continue  # not commands (the layout tree)
        lines: list[str] = []
        for line in body.splitlines():
            if line.startswith((" ", "\t")) and lines and lines[-1].startswith("denial-model"):
                lines[-1] += " " + line.strip()
            else:
                lines.append(line)
        for line in lines:
            command = re.sub(r"\s*\[[^\]]*\]", "", line.split("  #")[0]).strip()
            if command.startswith(_NOT_RUN):
                continue
            if command.startswith("denial-model "):
                steps.append(("shell", command))
            else:
                assert not command, command  # a command this test forgot
    return steps


def test_the_readme_commands_and_snippets_run_as_written(demo_run):
    """Every `denial-model` command and Python block of the README, in order, in the folder
    `make demo` left (the snippets read demo_output/): each exits 0."""
    folder, proc = demo_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = _readme_steps()
    assert sum(kind == "shell" for kind, _ in steps) >= 10 and sum(kind == "python" for kind, _ in steps) >= 2
    cli = Path(sys.executable).parent / "denial-model"
    key, key_digest = new_key()
    port = str(free_port())
    env = {**os.environ, "DENIAL_MODEL_API_KEYS": key_digest, "DENIAL_MODEL_API_KEY": key}
    server = None
    try:
        for kind, text in steps:
            text = text.replace("--port 8000", f"--port {port}").replace(
                "127.0.0.1:8000", f"127.0.0.1:{port}"
            )
            args = [str(cli), *text.split()[1:]] if kind == "shell" else [sys.executable, "-c", text]
            if text.startswith("denial-model serve"):  # runs until the steps are done
                out = subprocess.DEVNULL
                server = subprocess.Popen(args, cwd=folder, env=env, stdout=out, stderr=out)
                wait_healthy(f"http://127.0.0.1:{port}/readyz", server)
                continue
            done = subprocess.run(args, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, (text, done.stdout[-2000:], done.stderr[-2000:])
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
    assert server is not None, "the README no longer starts the service"
