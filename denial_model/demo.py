"""`make demo`: the main job on embedded defaults.

1. write the sample claim file (a clean claim per drug, a broken claim per category), scrub
   it with the shipped rule pack and print every finding with its CARC and fix;
2. simulate a 200,000-line claim history;
3. train the model on its earlier months, calibrate, evaluate on the last months beside the
   oracle (p_true) and the baselines, save the artifact, track the run in MLflow
   (sqlite:///mlflow.db) and register the model (alias `champion` if it wins).
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


if __name__ == "__main__":
    main()
