"""`denial-model` command line: a thin layer over the Python API.

Command names and options are a contract other tools call. Bad input is a one-line error
(exit 2) naming the file, row, column or rule at fault, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from denial_model.rules.pack import CATEGORIES, PackError, load_pack
from denial_model.table import ClaimTableError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
rules_app = typer.Typer(no_args_is_help=True, help="Inspect and review the rule pack.")
app.add_typer(rules_app, name="rules")
# Piped output (CI logs, `make demo | tee`) gets wide tables instead of Rich's 80 columns.
_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
console = Console(width=_WIDTH)
err_console = Console(stderr=True, width=_WIDTH)

PackOpt = Annotated[Path | None, typer.Option("--pack", help="Rule pack folder (default: shipped pack).")]


def friendly(fn: Callable) -> Callable:
    """Turn input errors into a clear message and exit code 2."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ClaimTableError, PackError, FileNotFoundError, ValueError) as exc:
            err_console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2) from None

    return wrapper


def default_rejects_path(output: Path) -> Path:
    return output.with_name(output.stem + ".rejects.csv")


def print_check_summary(summary: dict, title: str = "Claim check") -> None:
    t = Table(title=title, show_header=True)
    t.add_column("measure")
    t.add_column("lines", justify="right")
    for key in (
        "rows_in",
        "lines_checked",
        "lines_rejected",
        "lines_with_findings",
        "lines_with_deny_findings",
    ):
        t.add_row(key.replace("_", " "), f"{summary[key]:,}")
    console.print(t)
    c = Table(title="Lines with findings, by category", show_header=True)
    c.add_column("category")
    c.add_column("lines", justify="right")
    for cat in CATEGORIES:
        n = summary["by_category"][cat]
        if n:
            c.add_row(cat, f"{n:,}")
    console.print(c)


@app.command()
@friendly
def check(
    input: Annotated[Path, typer.Argument(help="Claim-line table (.csv or .parquet).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write rows + rule_hits.")],
    rejects: Annotated[Path | None, typer.Option(help="Where to write rows that failed validation.")] = None,
    pack: PackOpt = None,
) -> None:
    """Scrub a claim file with the rule pack: writes the rows plus `rule_hits`."""
    from denial_model.scrub import check_file

    with console.status("checking claims"):
        res = check_file(input, output, None, load_pack(pack))
    rejects_path = rejects or (default_rejects_path(output) if len(res.rejects) else None)
    if rejects_path is not None:
        from denial_model.table import write_table

        write_table(res.rejects, rejects_path)
    print_check_summary(res.summary())
    console.print(f"wrote {output}" + (f" and rejects to {rejects_path}" if rejects_path else ""))


@rules_app.command("list")
@friendly
def rules_list(
    format: Annotated[str, typer.Option("--format", help="json or table")] = "table",
    pack: PackOpt = None,
) -> None:
    """Every rule: id, category, CARC, severity, what it applies to, source."""
    p = load_pack(pack)
    rows = []
    for r in p.rules:
        d = r.to_dict()
        d["applies_to_text"] = _applies_text(d["applies_to"])
        rows.append(d)
    if format == "json":
        print(json.dumps(rows, indent=2, default=str))
        return
    if format != "table":
        raise ValueError(f"--format must be json or table, not {format!r}")
    t = Table(title=f"Rule pack: {len(rows)} rules", show_lines=False)
    for col in ("id", "category", "carc", "severity", "applies to", "source"):
        t.add_column(col, overflow="fold")
    for d in rows:
        carc = d["carc"] + (f" {d['remark']}" if d["remark"] else "")
        t.add_row(d["id"], d["category"], carc, d["severity"], d["applies_to_text"], d["source"])
    console.print(t)


def _applies_text(a: dict) -> str:
    return (
        "; ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in a.items())
        or "all lines"
    )


@rules_app.command("verify")
@friendly
def rules_verify(pack: PackOpt = None) -> None:
    """Every disagreement between the pack and the HCPCS file in force, one per line."""
    from denial_model.rules.verify import verify

    found = sorted(verify(load_pack(pack)), key=lambda d: (d.source, d.kind, d.code))
    for d in found:
        print(d.line())
    err_console.print(f"{len(found)} disagreement(s) between the pack and the code set")


@app.command()
@friendly
def sample(
    output: Annotated[Path, typer.Option("--output", "-o")] = Path("sample_claims.csv"),
) -> None:
    """Write the sample file: a clean claim per drug and a broken claim per category."""
    from denial_model.samples import sample_table
    from denial_model.table import write_table

    df = sample_table()
    write_table(df, output)
    console.print(f"wrote {len(df)} lines to {output}")


def print_history_summary(summary, title: str = "Simulated history") -> None:
    t = Table(title=title)
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_row("lines", f"{summary.lines:,}")
    t.add_row("claims", f"{summary.claims:,}")
    t.add_row("line denial rate", f"{summary.denial_rate:.1%}")
    for ptype, rate in summary.payer_rates().items():
        t.add_row(f"  denial rate, {ptype}", f"{rate:.1%}")
    t.add_row("lines with planted rule breaks", f"{summary.planted_lines:,}")
    console.print(t)
    g = Table(title="Denials by cause (from the CARC)")
    g.add_column("cause")
    g.add_column("denials", justify="right")
    g.add_column("share", justify="right")
    for grp, n in sorted(summary.by_group.items(), key=lambda kv: -kv[1]):
        g.add_row(grp, f"{n:,}", f"{n / max(summary.denied, 1):.1%}")
    console.print(g)


@app.command()
@friendly
def simulate(
    output: Annotated[Path, typer.Option("--output", "-o", help="History file (.parquet or .csv).")],
    lines: Annotated[int, typer.Option(help="About this many lines (whole claims).")] = 200_000,
    seed: Annotated[int, typer.Option(help="Random seed: same seed and config, same bytes.")] = 0,
    start: Annotated[str | None, typer.Option(help="First service date (YYYY-MM-DD).")] = None,
    months: Annotated[int | None, typer.Option(help="Months of service dates.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file overriding any simulator setting.")] = None,
) -> None:
    """Simulate a claim history with outcomes and p_true (shared/spec/history.md)."""
    from datetime import date

    from rich.progress import BarColumn, TextColumn

    from denial_model.simulate import SimConfig, write_history

    overrides = {
        "lines": lines,
        "seed": seed,
        "months": months,
        "start": date.fromisoformat(start) if start else None,
    }
    cfg = (
        SimConfig.from_yaml(config, **overrides)
        if config
        else SimConfig(**{k: v for k, v in overrides.items() if v is not None})
    )
    with _progress(
        TextColumn("simulating"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} lines")
    ) as progress:
        task = progress.add_task("simulate", total=cfg.lines)
        summary = write_history(cfg, output, on_chunk=lambda s: progress.update(task, completed=s.lines))
    print_history_summary(summary, title=f"Simulated history -> {output}")


def _progress(*columns):
    """A transient progress display (the given columns, then elapsed time) on the console."""
    from rich.progress import Progress, TimeElapsedColumn

    return Progress(*columns, TimeElapsedColumn(), console=console, transient=True)


METRIC_COLUMNS = (
    "auroc",
    "average_precision",
    "log_loss",
    "brier",
    "ece",
    "recall_top10",
    "precision_at_threshold",
    "dollars_at_risk_caught",
)


def print_metric_table(table, title: str, payer_type: str = "all") -> None:
    t = Table(title=title)
    t.add_column("model")
    for m in METRIC_COLUMNS:
        t.add_column(m, justify="right")
    for _, row in table[table["payer_type"] == payer_type].iterrows():
        t.add_row(row["model"], *(f"{row[m]:.4f}" for m in METRIC_COLUMNS))
    console.print(t)


def print_by_payer(table) -> None:
    t = Table(title="Model by payer type (test months)")
    t.add_column("payer type")
    t.add_column("lines", justify="right")
    for m in ("auroc", "log_loss", "ece", "recall_top10"):
        t.add_column(m, justify="right")
        t.add_column(f"oracle {m}", justify="right") if m == "auroc" else None
    for _, row in table[(table["model"] == "model") & (table["payer_type"] != "all")].iterrows():
        oracle = table[(table["model"] == "oracle") & (table["payer_type"] == row["payer_type"])]
        o = f"{oracle['auroc'].iloc[0]:.4f}" if len(oracle) else "-"
        t.add_row(
            row["payer_type"],
            f"{row['lines']:,}",
            f"{row['auroc']:.4f}",
            o,
            f"{row['log_loss']:.4f}",
            f"{row['ece']:.4f}",
            f"{row['recall_top10']:.4f}",
        )
    console.print(t)


@app.command()
@friendly
def train(
    data: Annotated[Path, typer.Option("--data", help="Claim history with outcomes (.parquet or .csv).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write model.joblib.")],
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI (default sqlite:///mlflow.db).")
    ] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "denial-model",
    no_tracking: Annotated[bool, typer.Option("--no-tracking", help="Do not log to MLflow.")] = False,
) -> None:
    """Train, evaluate against baselines, save the artifact and track the run in MLflow."""
    from denial_model.table import read_table
    from denial_model.train import run_training

    with console.status("reading history") as status:
        history = read_table(data)
        out = run_training(
            history,
            str(output),
            track=not no_tracking,
            tracking_uri=tracking_uri,
            experiment=experiment,
            data_params={"path": str(data)},
            progress=lambda text: status.update(text),
        )
    print_metric_table(out["table"], "Test months: the model beside the oracle and the baselines")
    print_by_payer(out["table"])
    th = out["manifest"]["thresholds"]
    console.print(f"risk tiers: medium >= {th['medium']:.4f}, high >= {th['high']:.4f}")
    console.print(f"wrote {output} and {output.name}.manifest.json (sha256 {out['manifest']['sha256'][:12]})")
    if out["tracking"]:
        tr = out["tracking"]
        console.print(
            f"MLflow run {tr['run_id']} in experiment '{tr['experiment']}', model version "
            f"{tr['model_version']}: {tr['decision']}"
        )
        if tr["tracking_uri"].startswith("sqlite:"):
            console.print(f"see it: mlflow ui --backend-store-uri {tr['tracking_uri']}")


@app.command()
@friendly
def evaluate(
    model: Annotated[Path, typer.Option("--model", help="model.joblib (with its manifest).")],
    data: Annotated[Path, typer.Option("--data", help="Claim history with outcomes.")],
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the metric table as JSON.")
    ] = None,
) -> None:
    """Metric table of a trained model beside the baselines on the last months of DATA."""
    from denial_model.artifact import load_artifact
    from denial_model.evaluate import comparison_table
    from denial_model.table import read_table
    from denial_model.train import split_periods

    loaded = load_artifact(model)
    cfg = loaded.manifest.get("train_config", {})
    with console.status("evaluating"):
        history = read_table(data)
        sp = split_periods(history, cfg.get("test_months", 4), cfg.get("calib_months", 2))
        earlier = pd.concat([sp.train, sp.calib], ignore_index=True)
        table = comparison_table(loaded.model, earlier, sp.test, loaded.thresholds.high)
    print_metric_table(table, f"Test months {sp.bounds['test_from']} to {sp.bounds['test_to']}")
    print_by_payer(table)
    if json_path:
        json_path.write_text(json.dumps({"split": sp.bounds, "rows": table.to_dict("records")}, indent=2))
        console.print(f"wrote {json_path}")


@app.command()
@friendly
def score(
    input: Annotated[Path, typer.Argument(help="Claim lines to score (.csv or .parquet).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Scored lines (.csv or .parquet).")],
    model: Annotated[
        str, typer.Option("--model", help="model.joblib, or an MLflow URI (models:/denial-model@champion).")
    ],
    rejects: Annotated[
        Path | None, typer.Option(help="Rows that failed validation (default <output>.rejects.csv).")
    ] = None,
    history: Annotated[
        Path | None, typer.Option(help="Earlier lines for duplicate and frequency rules.")
    ] = None,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI (default sqlite:///mlflow.db).")
    ] = None,
    no_tracking: Annotated[
        bool, typer.Option("--no-tracking", help="Do not record the batch in MLflow.")
    ] = False,
    upload_output: Annotated[
        bool, typer.Option("--upload-output", help="Also upload the scored file (PHI).")
    ] = False,
    chunk_lines: Annotated[int, typer.Option(help="Lines per chunk (memory, not results).")] = 200_000,
) -> None:
    """Score a batch: probability, risk tier, rule hits, reasons and fixes per line."""
    from rich.progress import SpinnerColumn, TextColumn

    from denial_model.artifact import load_artifact
    from denial_model.score import score_file
    from denial_model.table import read_table

    loaded = load_registered(model, tracking_uri) if model.startswith("models:/") else load_artifact(model)
    hist = read_table(history) if history else None
    with _progress(SpinnerColumn(), TextColumn("{task.description}")) as progress:
        task = progress.add_task("scoring")
        summary = score_file(
            input,
            output,
            loaded,
            rejects,
            history=hist,
            chunk_lines=chunk_lines,
            on_chunk=lambda s: progress.update(task, description=f"scored {s.scored:,} lines"),
        )
    t = Table(title=f"Scored {input} -> {output}")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for k, v in (
        ("rows in", summary.rows_in),
        ("scored", summary.scored),
        ("rejected", summary.rejected),
        *((f"tier {k}", v) for k, v in summary.tiers.items()),
    ):
        t.add_row(k, f"{v:,}")
    t.add_row("dollars at risk", f"${summary.dollars_at_risk:,.0f}")
    console.print(t)
    if not no_tracking:
        from denial_model.tracking import log_scoring

        out = log_scoring(
            summary,
            params={
                "input": str(input),
                "model": model,
                "drift_reference": loaded.manifest.get("drift_reference"),
            },
            tracking_uri=tracking_uri,
            output_path=output,
            upload_output=upload_output,
        )
        if out["drift_warning"]:
            err_console.print(f"[yellow]warning:[/] drift (PSI > 0.2) in: {', '.join(out['drift_warning'])}")
        console.print(f"MLflow scoring run {out['run_id']}")


def load_registered(ref: str, uri: str | None):
    from denial_model.tracking import load_registered as _load

    return _load(ref, uri)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
