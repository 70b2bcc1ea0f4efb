"""`make demo`: the main job on embedded defaults.

1. write the sample claim file (a clean claim per drug, a broken claim per category), scrub
   it with the shipped rule pack and print every finding with its CARC and fix;
2. simulate a 200,000-line claim history;
3. train the model on its earlier months, calibrate, evaluate on the last months beside the
   oracle (p_true) and the baselines, save the artifact, track the run in MLflow
   (sqlite:///mlflow.db) and register the model (alias `champion` if it wins);
4. simulate a fresh batch from the month after the history, score it with the artifact
   (reasons and fixes), record the batch as an MLflow run, and print the ten riskiest lines.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.table import Table

from denial_model.cli import (
    console,
    print_by_payer,
    print_check_summary,
    print_history_summary,
    print_metric_table,
)
from denial_model.rules import load_pack
from denial_model.samples import sample_table
from denial_model.scrub import check_file
from denial_model.simulate import SimConfig, write_history
from denial_model.table import write_table
from denial_model.tracking import DEFAULT_TRACKING_URI
from denial_model.train import run_training

OUT = Path("demo_output")


def main() -> None:
    OUT.mkdir(exist_ok=True)
    pack = load_pack()
    sample = OUT / "sample_claims.csv"
    write_table(sample_table(pack), sample)
    res = check_file(sample, OUT / "sample_checked.csv", OUT / "sample_rejects.csv", pack)
    console.rule("[bold]denial-model demo: claim scrubber")
    console.print(f"rule pack: {len(pack.rules)} rules from {pack.folder} (sha256 {pack.sha256[:12]})")
    print_check_summary(res.summary(), title=f"Scrubbed {sample}")
    t = Table(title="Findings", show_lines=False)
    for col in ("claim", "line", "code", "rule", "category", "CARC", "fix"):
        t.add_column(col, overflow="fold")
    rules = {r.id: r for r in pack.rules}
    for (_, row), hits in zip(res.checked.iterrows(), res.checked["rule_hits"], strict=True):
        for rid in filter(None, hits.split(";")):
            r = rules[rid]
            t.add_row(
                str(row["claim_id"]),
                str(row["line_number"]),
                str(row["hcpcs_code"]),
                rid,
                r.category,
                r.carc + (f" {r.remark}" if r.remark else ""),
                r.fix,
            )
    console.print(t)
    console.print(f"outputs in {OUT}/ (checked lines, rejects); review the pack: denial-model rules verify")

    console.rule("[bold]denial-model demo: simulated claim history")
    cfg = SimConfig(lines=200_000, seed=7)
    history_path = OUT / "history.parquet"
    summary = write_history(cfg, history_path)
    print_history_summary(summary, title=f"Simulated history -> {history_path}")

    console.rule("[bold]denial-model demo: train, evaluate, track in MLflow")
    history = pd.read_parquet(history_path)
    with console.status("training") as status:
        out = run_training(
            history,
            str(OUT / "model.joblib"),
            tracking_uri=DEFAULT_TRACKING_URI,
            data_params={"simulator.seed": cfg.seed, "simulator.lines": cfg.lines},
            progress=lambda text: status.update(text),
        )
    split = out["manifest"]["split"]
    print_metric_table(
        out["table"],
        f"Test months {split['test_from']} to {split['test_to']}: the model beside the oracle and baselines",
    )
    print_by_payer(out["table"])
    tr = out["tracking"]
    th = out["manifest"]["thresholds"]
    console.print(f"risk tiers stored with the model: medium >= {th['medium']:.4f}, high >= {th['high']:.4f}")
    console.print(
        f"artifact: {OUT / 'model.joblib'} (+ manifest); MLflow run {tr['run_id']}, registered model "
        f"'denial-model' version {tr['model_version']}: {tr['decision']}"
    )
    console.print(
        f"see the runs, plots and registered model: mlflow ui --backend-store-uri {DEFAULT_TRACKING_URI}"
    )
    score_fresh_batch(OUT / "model.joblib", cfg)


def score_fresh_batch(model_path: Path, history_cfg: SimConfig) -> None:
    """What a billing team runs every night: score tomorrow's claims before they go out."""
    from denial_model.artifact import load_artifact
    from denial_model.score import score_file
    from denial_model.table import LABEL_COLUMNS
    from denial_model.tracking import log_scoring

    console.rule("[bold]denial-model demo: score a fresh batch")
    start = (pd.Timestamp(history_cfg.start) + pd.DateOffset(months=history_cfg.months)).date()
    batch_cfg = SimConfig(lines=20_000, seed=history_cfg.seed + 1, start=start, months=1)
    raw = OUT / "batch_simulated.parquet"
    write_history(batch_cfg, raw)
    # a batch before submission has no outcomes: drop the simulator's answers
    batch = pd.read_parquet(raw)
    batch = batch.drop(columns=[c for c in (*LABEL_COLUMNS, "planted_categories") if c in batch.columns])
    batch = batch.sort_values(["service_date", "claim_id", "line_number"], kind="stable")
    src, out = OUT / "batch.parquet", OUT / "batch_scored.parquet"
    write_table(batch, src)
    loaded = load_artifact(model_path)
    summary = score_file(src, out, loaded, rejects_path=OUT / "batch_rejects.csv")
    tracked = log_scoring(
        summary,
        params={
            "input": str(src),
            "model": str(model_path),
            "drift_reference": loaded.manifest.get("drift_reference"),
        },
        tracking_uri=DEFAULT_TRACKING_URI,
        output_path=out,
    )
    t = Table(title=f"Scored {src}: {summary.scored:,} lines, {summary.rejected:,} rejected")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for k, v in summary.tiers.items():
        t.add_row(f"tier {k}", f"{v:,}")
    t.add_row("dollars at risk", f"${summary.dollars_at_risk:,.0f} of ${summary.billed:,.0f} billed")
    console.print(t)
    scored = pd.read_parquet(out)
    top = scored.sort_values(["denial_probability", "dollars_at_risk"], ascending=False, kind="stable").head(
        10
    )
    t = Table(title="The ten riskiest lines: why, and what to change", show_lines=True)
    for col in ("claim / line", "code", "payer", "p(denied)", "reasons", "fixes (p before -> after)"):
        t.add_column(col, overflow="fold")
    for _, r in top.iterrows():
        t.add_row(
            f"{r['claim_id']} / {r['line_number']}",
            str(r["hcpcs_code"]),
            f"{r['payer_id']} ({r['payer_type']})",
            f"{r['denial_probability']:.2f}",
            str(r["reasons"]).replace(" | ", "\n"),
            str(r["fixes"]).replace(" | ", "\n"),
        )
    console.print(t)
    if tracked["drift_warning"]:
        console.print(f"[yellow]drift warning (PSI > 0.2):[/] {', '.join(tracked['drift_warning'])}")
    console.print(
        f"scored file: {out}; MLflow scoring run {tracked['run_id']} (experiment denial-model-scoring)"
    )


if __name__ == "__main__":
    main()
