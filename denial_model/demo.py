"""`make demo`: the main job on embedded defaults.

Today: write the sample claim file (a clean claim per drug, a broken claim per category),
scrub it with the shipped rule pack and print every finding with its CARC and fix; then
simulate a claim history and show the best possible model (p_true) beside rules alone.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.table import Table

from denial_model.cli import console, print_check_summary, print_history_summary
from denial_model.metrics import oracle_and_rules_report
from denial_model.rules import load_pack
from denial_model.samples import sample_table
from denial_model.scrub import check_file
from denial_model.simulate import SimConfig, write_history
from denial_model.table import write_table

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
    report = oracle_and_rules_report(pd.read_parquet(history_path))
    m = Table(title=f"Best possible (p_true) vs rules only, last 6 months ({report['test_lines']:,} lines)")
    m.add_column("model")
    for metric in ("auroc", "average_precision", "log_loss", "brier"):
        m.add_column(metric, justify="right")
    for name in ("oracle", "rules_only"):
        m.add_row(
            name, *(f"{report[name][k]:.4f}" for k in ("auroc", "average_precision", "log_loss", "brier"))
        )
    console.print(m)


if __name__ == "__main__":
    main()
