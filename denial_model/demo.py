"""`make demo`: the main job on embedded defaults.

1. write the sample claim file (a clean claim per drug, a broken claim per category), scrub
   it with the shipped rule pack and print every finding with its CARC and fix;
2. simulate a 200,000-line claim history;
3. train the model on its earlier months, calibrate, evaluate on the last months beside the
   oracle (p_true) and the baselines, save the artifact, track the run in MLflow
   (sqlite:///mlflow.db) and register the model (alias `champion` if it wins);
4. simulate a fresh batch from the month after the history, score it with the artifact
   (reasons and fixes), record the batch as an MLflow run, print the ten riskiest lines and
   the top of the work queue (the most valuable lines to fix per team, `queue.py`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from denial_model.files import read_table, write_table
from denial_model.jobs import load_model, run_scoring, run_training
from denial_model.queue import build_queue
from denial_model.report import (
    console,
    print_by_segment,
    print_check_summary,
    print_findings,
    print_group_table,
    print_history_summary,
    print_metric_table,
    print_queue,
    print_score_summary,
    print_top_lines,
)
from denial_model.rules import load_pack
from denial_model.samples import sample_table
from denial_model.scrub import check_file
from denial_model.simulate import SimConfig, write_history
from denial_model.table import LABEL_COLUMNS
from denial_model.tracking import DEFAULT_TRACKING_URI

OUT = Path("demo_output")
QUEUE_CAPACITY = 25  # lines a team works before the batch goes out


def main(
    out_dir: Path = OUT,
    history_lines: int = 200_000,
    batch_lines: int = 20_000,
    tracking_uri: str = DEFAULT_TRACKING_URI,
) -> None:
    """The demo as `make demo` runs it; the sizes and places are arguments so a test can run
    the same job small (tests/test_demo.py)."""
    out_dir.mkdir(exist_ok=True)
    pack = load_pack()
    sample = out_dir / "sample_claims.csv"
    write_table(sample_table(pack), sample)
    res = check_file(sample, out_dir / "sample_checked.csv", out_dir / "sample_rejects.csv", pack)
    console.rule("[bold]denial-model demo: claim scrubber")
    console.print(f"rule pack: {len(pack.rules)} rules from {pack.folder} (sha256 {pack.sha256[:12]})")
    print_check_summary(res.summary(), title=f"Scrubbed {sample}")
    print_findings(res.checked, pack)
    console.print(
        f"outputs in {out_dir}/ (checked lines, rejects); review the pack: denial-model rules verify"
    )

    console.rule("[bold]denial-model demo: simulated claim history")
    cfg = SimConfig(lines=history_lines, seed=7)
    history_path = out_dir / "history.parquet"
    with console.status("simulating"):
        summary = write_history(cfg, history_path)
    print_history_summary(summary, title=f"Simulated history -> {history_path}")

    console.rule("[bold]denial-model demo: train, evaluate, track in MLflow")
    with console.status("training") as status:
        out = run_training(
            read_table(history_path),
            out_dir / "model.joblib",
            tracking_uri=tracking_uri,
            data_params={"simulator.seed": cfg.seed, "simulator.lines": cfg.lines},
            progress=lambda text: status.update(text),
        )
    split = out.manifest["split"]
    print_metric_table(
        out.table,
        f"Test months {split['test_from']} to {split['test_to']}: the model beside the oracle and baselines",
    )
    print_by_segment(out.table)
    if out.groups is not None and len(out.groups):
        print_group_table(
            out.groups, "Reason groups of the test months' denied lines: the model beside the rules"
        )
    tr = out.tracking
    th = out.manifest["thresholds"]
    console.print(f"risk tiers stored with the model: medium >= {th['medium']:.4f}, high >= {th['high']:.4f}")
    console.print(
        f"artifact: {out_dir / 'model.joblib'} (+ manifest); MLflow run {tr['run_id']}, registered model "
        f"'denial-model' version {tr['model_version']}: {tr['decision']}"
    )
    console.print(f"see the runs, plots and registered model: mlflow ui --backend-store-uri {tracking_uri}")
    score_fresh_batch(out_dir / "model.joblib", cfg, out_dir, batch_lines, tracking_uri)


def score_fresh_batch(
    model_path: Path, history_cfg: SimConfig, out_dir: Path, lines: int, tracking_uri: str
) -> None:
    """What a billing team runs every night: score tomorrow's claims before they go out."""
    console.rule("[bold]denial-model demo: score a fresh batch")
    start = (pd.Timestamp(history_cfg.start) + pd.DateOffset(months=history_cfg.months)).date()
    batch_cfg = SimConfig(lines=lines, seed=history_cfg.seed + 1, start=start, months=1)
    raw = out_dir / "batch_simulated.parquet"
    write_history(batch_cfg, raw)
    # a batch before submission has no outcomes: drop the simulator's answers
    batch = read_table(raw)
    batch = batch.drop(columns=[c for c in (*LABEL_COLUMNS, "planted_categories") if c in batch.columns])
    batch = batch.sort_values(["service_date", "claim_id", "line_number"], kind="stable")
    src, out = out_dir / "batch.parquet", out_dir / "batch_scored.parquet"
    write_table(batch, src)
    with console.status("scoring and tracking the batch"):
        run = run_scoring(
            src,
            out,
            load_model(model_path),
            model_ref=str(model_path),
            rejects_path=out_dir / "batch_rejects.csv",
            tracking_uri=tracking_uri,
        )
    print_score_summary(run.summary, f"Scored {src}")
    scored = read_table(out)
    print_top_lines(scored)
    queue = build_queue(scored, capacity=QUEUE_CAPACITY, by="team")
    print_queue(queue, f"Tomorrow's work queue: the {QUEUE_CAPACITY} most valuable lines per team", n=10)
    console.print(
        f"queued {len(queue):,} lines worth ${queue['value'].sum():,.0f}; the whole queue: "
        f"denial-model queue {out} --capacity {QUEUE_CAPACITY} --by team --output {out_dir / 'queue.csv'}"
    )
    if run.tracking["drift_warning"]:
        console.print(f"[yellow]drift warning (PSI > 0.2):[/] {', '.join(run.tracking['drift_warning'])}")
    console.print(
        f"scored file: {out}; MLflow scoring run {run.tracking['run_id']} (experiment denial-model-scoring)"
    )


if __name__ == "__main__":
    main()
