"""`denial-model` command line: a thin layer over the Python API.

Command names and options are a contract other tools call. Bad input is a one-line error
(exit 2) naming the file, row, column or rule at fault, never a traceback.
"""

from __future__ import annotations

import json
import signal
import sys
import traceback
from collections.abc import Callable
from enum import StrEnum
from functools import wraps
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.markup import escape
from rich.table import Table

from denial_model.errors import ConfigError, DenialModelError
from denial_model.files import CHUNK_LINES
from denial_model.report import (
    console,
    err_console,
    print_by_segment,
    print_check_summary,
    print_group_table,
    print_history_summary,
    print_metric_table,
    print_queue,
    print_score_summary,
    progress,
)
from denial_model.rules.pack import load_pack

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
rules_app = typer.Typer(no_args_is_help=True, help="Inspect and review the rule pack.")
app.add_typer(rules_app, name="rules")

PackOpt = Annotated[Path | None, typer.Option("--pack", help="Rule pack folder (default: shipped pack).")]
DateFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--date-format",
        help="Also read text dates in this strftime format, e.g. '%m/%d/%Y' (ISO is always read).",
    ),
]
ModelShaOpt = Annotated[
    str | None,
    typer.Option(
        "--model-sha256",
        help="Refuse a model file whose sha256 is not this (a digest you trust, not its manifest's).",
    ),
]
TrackingOpt = Annotated[str | None, typer.Option(help="MLflow tracking URI (default sqlite:///mlflow.db).")]


class Engine(StrEnum):
    """Where `score` runs: here, streaming the file, or on Spark."""

    local = "local"
    spark = "spark"


def _terminate(signum, frame) -> None:
    """SIGTERM ends the job like Ctrl-C does: outputs in progress are removed, not left half-written."""
    raise SystemExit(128 + signum)


@app.callback()
def _setup() -> None:
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _terminate)


def friendly(fn: Callable) -> Callable:
    """Errors a user can fix -> one line and exit 2; anything else is a bug -> 'internal
    error', the traceback and exit 1 (never passed off as bad input)."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except (DenialModelError, OSError) as exc:  # OSError: missing file, read-only folder, disk full
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except Exception:
            err_console.print("[bold red]internal error[/] (a bug in denial-model; please report it):")
            traceback.print_exc(file=sys.stderr)
            raise typer.Exit(1) from None

    return wrapper


@app.command()
@friendly
def check(
    input: Annotated[Path, typer.Argument(help="Claim-line table (.csv or .parquet).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write rows + rule_hits.")],
    rejects: Annotated[Path | None, typer.Option(help="Where to write rows that failed validation.")] = None,
    pack: PackOpt = None,
    date_format: DateFormatOpt = None,
) -> None:
    """Scrub a claim file with the rule pack: writes the rows plus `rule_hits` and `rule_carcs`.

    INPUT is a claim-line table (CSV, CSV.gz or Parquet; columns: docs/claim-lines.md)."""
    from denial_model.files import default_rejects_path
    from denial_model.scrub import check_file

    rejects_path = rejects or default_rejects_path(output)
    with console.status("checking claims"):
        res = check_file(input, output, rejects_path, load_pack(pack), date_format)
    print_check_summary(res.summary())
    console.print(f"wrote {output} and rejects to {rejects_path}")


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
        raise ConfigError(f"--format must be json or table, not {format!r}")
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


@rules_app.command("coverage")
@friendly
def rules_coverage(
    pack: PackOpt = None,
    output: Annotated[
        Path | None, typer.Option(help="Write the table here (e.g. rules/COVERAGE.md).")
    ] = None,
) -> None:
    """The requirements traceability table: each document requirement and its rules."""
    from denial_model.files import atomic_output
    from denial_model.rules.coverage import check_coverage, coverage_markdown, load_requirements

    p = load_pack(pack)
    reqs = load_requirements(p)
    problems = check_coverage(p, reqs)
    text = coverage_markdown(p, reqs)
    if output is None:
        print(text)
    else:
        with atomic_output(output) as tmp:
            tmp.write_text(text + "\n")
    for line in problems:
        err_console.print(f"coverage: {line}")
    if problems:
        raise typer.Exit(2)


@app.command()
@friendly
def sample(
    output: Annotated[Path, typer.Option("--output", "-o")] = Path("sample_claims.csv"),
) -> None:
    """Write the sample file: a clean claim per drug and a broken claim per category."""
    from denial_model.files import write_table
    from denial_model.samples import sample_table

    df = sample_table()
    write_table(df, output)
    console.print(f"wrote {len(df)} lines to {output}")


@app.command()
@friendly
def ingest(
    claims: Annotated[
        list[Path], typer.Option("--claims", help="837P files or folders (repeat the option for several).")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="The claim-line table (.parquet, .csv).")],
    remits: Annotated[
        list[Path] | None, typer.Option("--remits", help="835 files or folders; without: unlabeled lines.")
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option(help="Remit lines that meet no claim line (default <output stem>.rejects.csv)."),
    ] = None,
    payer_map: Annotated[
        Path | None,
        typer.Option("--payer-map", help="YAML: payer id -> payer type, over the filing indicator."),
    ] = None,
) -> None:
    """Read X12 837P claims (and 835 remittances) into the claim-line table.

    With --remits the table carries the outcomes (`denied`, `carc_codes`, `paid_amount`,
    `adjudication_date`) that `train` learns from; lines with no remit yet are kept as
    pending (no label). Without, it is the unlabeled batch `check` and `score` take."""
    from denial_model.files import default_rejects_path, refuse_overwriting_input, write_table
    from denial_model.report import print_ingest_summary
    from denial_model.x12 import ingest as run_ingest
    from denial_model.x12 import load_payer_map, x12_files

    rejects_path = rejects or default_rejects_path(output)
    for src in x12_files([*claims, *(remits or [])]):
        refuse_overwriting_input(src, output, rejects_path)
    with console.status("reading X12"):
        res = run_ingest(claims, remits, load_payer_map(payer_map))
    write_table(res.lines, output)
    write_table(res.rejects, rejects_path)
    print_ingest_summary(res.counts, res.notes, f"Ingested -> {output} (rejects: {rejects_path})")


@app.command()
@friendly
def simulate(
    output: Annotated[Path, typer.Option("--output", "-o", help="History file (.parquet or .csv).")],
    lines: Annotated[int, typer.Option(help="About this many lines (whole claims).")] = 200_000,
    seed: Annotated[int, typer.Option(help="Random seed: same seed and config, same bytes.")] = 0,
    start: Annotated[str | None, typer.Option(help="First service date (YYYY-MM-DD).")] = None,
    months: Annotated[int | None, typer.Option(help="Months of service dates.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file overriding any simulator setting.")] = None,
    world: Annotated[
        str | None,
        typer.Option(help="A stress world (coupled, preferences, policy_changes, sparse_providers, all)."),
    ] = None,
    x12: Annotated[
        Path | None,
        typer.Option("--x12", help="Also write the history as DIR/claims.837 and DIR/remits.835."),
    ] = None,
) -> None:
    """Simulate a claim history with outcomes and p_true (docs/simulator.md)."""
    from datetime import date

    from rich.progress import BarColumn, TextColumn

    from denial_model.simulate import SimConfig, write_history

    overrides = {
        "lines": lines,
        "seed": seed,
        "months": months,
        "start": date.fromisoformat(start) if start else None,
    }
    given = {k: v for k, v in overrides.items() if v is not None}
    if config and world:
        raise ConfigError("give --config or --world, not both (a YAML file can set the stress knobs)")
    cfg = (
        SimConfig.from_yaml(config, **overrides)
        if config
        else SimConfig.stress(world, **given)
        if world
        else SimConfig(**given)
    )
    with progress(
        TextColumn("simulating"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} lines")
    ) as bar:
        task = bar.add_task("simulate", total=cfg.lines)
        summary = write_history(cfg, output, on_chunk=lambda s: bar.update(task, completed=s.lines))
    print_history_summary(summary, title=f"Simulated history -> {output}")
    if x12 is not None:
        from denial_model.files import read_table
        from denial_model.x12 import write_x12

        with console.status("writing X12 837P and 835"):
            claims, remits = write_x12(read_table(output), x12)
        console.print(f"wrote {claims} and {remits}")


def _calibration_line(chosen: dict) -> str:
    losses = [
        f"{m} {chosen[f'{m}_log_loss']:.4f}" for m in ("isotonic", "sigmoid") if f"{m}_log_loss" in chosen
    ]
    return chosen["method"] + (
        f" (out-of-fold log loss on the calibration months: {', '.join(losses)})" if losses else ""
    )


@app.command()
@friendly
def train(
    data: Annotated[Path, typer.Option("--data", help="Claim history with outcomes (.parquet or .csv).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write model.joblib.")],
    tracking_uri: TrackingOpt = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "denial-model",
    no_tracking: Annotated[bool, typer.Option("--no-tracking", help="Do not log to MLflow.")] = False,
    params: Annotated[
        Path | None, typer.Option("--params", help="Model settings chosen by `denial-model tune --output`.")
    ] = None,
    calibration: Annotated[
        str,
        typer.Option(
            help="auto (the lower out-of-fold log loss on the calibration months), isotonic or sigmoid."
        ),
    ] = "auto",
) -> None:
    """Train, evaluate against baselines, save the artifact and track the run in MLflow."""
    import dataclasses

    from denial_model.files import read_table
    from denial_model.jobs import run_training
    from denial_model.train import TrainConfig, check_calibration
    from denial_model.tune import load_params

    cfg = dataclasses.replace(
        load_params(params) if params else TrainConfig(), calibration=check_calibration(calibration)
    )
    with console.status("reading history") as status:
        history = read_table(data)
        out = run_training(
            history,
            str(output),
            cfg,
            track=not no_tracking,
            tracking_uri=tracking_uri,
            experiment=experiment,
            data_params={"path": str(data)},
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
    th = out.manifest["thresholds"]
    console.print(f"calibration: {_calibration_line(out.result.calibration)}")
    console.print(f"risk tiers: medium >= {th['medium']:.4f}, high >= {th['high']:.4f}")
    console.print(f"wrote {output} and {output.name}.manifest.json (sha256 {out.manifest['sha256'][:12]})")
    if out.tracking:
        tr = out.tracking
        console.print(
            f"MLflow run {tr['run_id']} in experiment '{tr['experiment']}', model version "
            f"{tr['model_version']}: {tr['decision']}"
        )
        if tr["tracking_uri"].startswith("sqlite:"):
            console.print(f"see it: mlflow ui --backend-store-uri {tr['tracking_uri']}")


@app.command()
@friendly
def tune(
    data: Annotated[Path, typer.Option("--data", help="Claim history with outcomes (.parquet or .csv).")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the chosen settings (JSON) for train --params."),
    ] = None,
    valid_months: Annotated[int, typer.Option(help="Last months of the training slice to validate on.")] = 2,
) -> None:
    """Choose the model's settings on the last months of the training slice (never the test
    months): every candidate of the search space, best first."""
    from rich.table import Table

    from denial_model.files import atomic_output, read_table
    from denial_model.tune import tune as run_tune

    with console.status("tuning: one feature fit, then one booster per candidate"):
        result = run_tune(read_table(data), valid_months=valid_months)
    b = result.bounds
    t = Table(title=f"Fitted to {b['fit_to']}, validated {b['valid_from']} to {b['valid_to']}")
    for col in result.candidates.columns:
        t.add_column(col, justify="right")
    for row in result.candidates.itertuples(index=False):
        t.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    console.print(t)
    console.print(f"chosen: {result.params()}")
    if output:
        with atomic_output(output) as tmp:
            tmp.write_text(json.dumps({"params": result.params(), "validation": b}, indent=2))
        console.print(f"wrote {output}: train with denial-model train --params {output}")


@app.command()
@friendly
def evaluate(
    model: Annotated[
        str, typer.Option("--model", help="model.joblib, or an MLflow URI (models:/denial-model@champion).")
    ],
    data: Annotated[Path, typer.Option("--data", help="Claim history with outcomes.")],
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the metric table as JSON.")
    ] = None,
    model_sha256: ModelShaOpt = None,
    tracking_uri: TrackingOpt = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="A date a payer's behaviour changed (YYYY-MM-DD): also report the lines served since."
        ),
    ] = None,
) -> None:
    """Metric table of a trained model beside the baselines on the last months of DATA, per
    payer type and line kind, and beside the oracle where DATA is simulated."""
    from denial_model.files import atomic_output, read_table
    from denial_model.jobs import load_model, run_evaluation

    loaded = load_model(model, tracking_uri, model_sha256)
    with console.status("evaluating"):
        ev = run_evaluation(loaded, read_table(data), since=since)
    print_metric_table(ev.table, f"Test months {ev.bounds['test_from']} to {ev.bounds['test_to']}")
    print_by_segment(ev.table)
    if json_path:
        with atomic_output(json_path) as tmp:
            tmp.write_text(json.dumps({"split": ev.bounds, "rows": ev.table.to_dict("records")}, indent=2))
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
        Path | None, typer.Option(help="Rows that failed validation (default <output stem>.rejects.csv).")
    ] = None,
    history: Annotated[
        Path | None, typer.Option(help="Earlier lines for duplicate and frequency rules.")
    ] = None,
    tracking_uri: TrackingOpt = None,
    no_tracking: Annotated[
        bool, typer.Option("--no-tracking", help="Do not record the batch in MLflow.")
    ] = False,
    upload_output: Annotated[
        bool, typer.Option("--upload-output", help="Also upload the scored file (PHI).")
    ] = False,
    require_tracking: Annotated[
        bool,
        typer.Option(
            "--require-tracking",
            help="Refuse (exit 2) before scoring when the MLflow store cannot be reached.",
        ),
    ] = False,
    chunk_lines: Annotated[int, typer.Option(help="Lines per chunk (memory, not results).")] = CHUNK_LINES,
    date_format: DateFormatOpt = None,
    model_sha256: ModelShaOpt = None,
    engine: Annotated[
        Engine, typer.Option(help="local: stream the file here; spark: Parquet in, part files out, on Spark.")
    ] = Engine.local,
    master: Annotated[
        str | None,
        typer.Option(help="Spark master of a new session (default: spark-submit's, else local[*])."),
    ] = None,
    partitions: Annotated[
        int | None, typer.Option(min=1, help="Spark partitions the patients are spread over.")
    ] = None,
) -> None:
    """Score a batch: probability, risk tier, rule hits, reasons and fixes per line.

    INPUT is a claim-line table (CSV, CSV.gz or Parquet; columns: docs/claim-lines.md); with
    --engine spark, a Parquet file or a folder of part files, and OUTPUT a folder of part files."""
    from rich.progress import SpinnerColumn, TextColumn

    from denial_model.files import read_table
    from denial_model.jobs import load_model, run_scoring

    common = {
        "model_ref": model,
        "rejects_path": rejects,
        "track": not no_tracking,
        "require_tracking": require_tracking,
        "tracking_uri": tracking_uri,
        "date_format": date_format,
    }
    if engine is Engine.spark:
        from denial_model.spark.job import run_spark_scoring

        if upload_output:
            raise ConfigError("--upload-output uploads one scored file: use it with --engine local")
        loaded = load_model(model, tracking_uri, model_sha256)
        with console.status("scoring on Spark"):
            run = run_spark_scoring(
                input, output, loaded, history_path=history, master=master, partitions=partitions, **common
            )
        _report_scoring(run, f"Scored {input} -> {output} on Spark (rejects: {run.rejects})")
        return
    if master is not None or partitions is not None:
        raise ConfigError("--master and --partitions are Spark settings: add --engine spark")
    loaded = load_model(model, tracking_uri, model_sha256)
    hist = read_table(history) if history else None
    with progress(SpinnerColumn(), TextColumn("{task.description}")) as bar:
        task = bar.add_task("scoring")
        run = run_scoring(
            input,
            output,
            loaded,
            history=hist,
            chunk_lines=chunk_lines,
            upload_output=upload_output,
            on_chunk=lambda s: bar.update(task, description=f"scored {s.scored:,} lines"),
            **common,
        )
    _report_scoring(run, f"Scored {input} -> {output} (rejects: {run.rejects})")


def _report_scoring(run, title: str) -> None:
    """The job's summary, then its MLflow run (or why it was not recorded: exit 3)."""
    print_score_summary(run.summary, title)
    if run.tracking_error:
        why = escape(run.tracking_error)
        err_console.print(f"[yellow]warning:[/] scores written, but the run was NOT tracked in MLflow: {why}")
        raise typer.Exit(3)
    if run.tracking:
        if run.tracking["drift_warning"]:
            err_console.print(
                f"[yellow]warning:[/] drift (PSI > 0.2) in: {', '.join(run.tracking['drift_warning'])}"
            )
        console.print(f"MLflow scoring run {run.tracking['run_id']}")


class QueueBy(StrEnum):
    team = "team"
    day = "day"


@app.command()
@friendly
def queue(
    scored: Annotated[Path, typer.Argument(help="A scored table (what `score` writes).")],
    capacity: Annotated[int, typer.Option(min=1, help="Lines to take (overall, or per team or day).")],
    by: Annotated[
        QueueBy | None, typer.Option(help="team: each team's capacity; day: each submission day's.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the queue (.csv or .parquet).")
    ] = None,
    recovery_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of a denied charge that fixing it first recovers.")
    ] = 0.7,
    rework_cost: Annotated[float, typer.Option(min=0, help="Cost of reworking one line ($).")] = 15.0,
    show: Annotated[int, typer.Option(min=0, help="Lines to print.")] = 10,
) -> None:
    """The work queue: the lines most worth fixing before they go out, with owner team,
    reason, fix, what all fixes together buy and the value of working the line.

    value = (denial_probability - probability_after_fixes) x billed x recovery rate - rework cost."""
    from denial_model.files import read_table, refuse_overwriting_input, write_table
    from denial_model.queue import build_queue

    if output is not None:
        refuse_overwriting_input(scored, output)
    q = build_queue(
        read_table(scored),
        capacity,
        by.value if by else None,
        recovery_rate=recovery_rate,
        rework_cost=rework_cost,
    )
    per = f" per {by.value}" if by else ""
    print_queue(q, f"Work queue of {scored}: {len(q):,} lines (capacity {capacity:,}{per})", n=show)
    console.print(f"value of the queue: ${q['value'].sum():,.0f} (recoverable dollars less rework)")
    if output is not None:
        write_table(q, output)
        console.print(f"wrote {output}")


@app.command()
@friendly
def serve(
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="model.joblib or models:/denial-model@champion (none: rules-only, /v1/check answers).",
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    api_keys: Annotated[
        Path | None,
        typer.Option(
            "--api-keys", help="File of API key sha256 digests, one a line (also: DENIAL_MODEL_API_KEYS)."
        ),
    ] = None,
    insecure_no_auth: Annotated[
        bool, typer.Option("--insecure-no-auth", help="No API keys (loopback only): a local trial.")
    ] = False,
    model_sha256: ModelShaOpt = None,
    tracking_uri: TrackingOpt = None,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body (413 above).")] = 16 * 2**20,
    max_lines: Annotated[
        int, typer.Option(help="Most lines (with history) in one request (413 above).")
    ] = 10_000,
    timeout: Annotated[float, typer.Option(help="Seconds a request may score before a 503.")] = 30.0,
    workers: Annotated[
        int,
        typer.Option(help="Scoring processes, each with its own copy of the model (one a core)."),
    ] = 1,
) -> None:
    """Serve the model over HTTP: /v1/score, /v1/check, /v1/model, /healthz, /readyz, /metrics.

    Reload a moved alias or a new file without dropping requests: POST /v1/admin/reload (with a
    key) or send the process SIGHUP; with --workers N, every scoring process gets the new model."""
    from denial_model.serve.server import build_app, run_server

    config = {
        "model": model,
        "host": host,
        "api_keys": api_keys,
        "insecure_no_auth": insecure_no_auth,
        "model_sha256": model_sha256,
        "tracking_uri": tracking_uri,
        "max_body_bytes": max_body_bytes,
        "max_lines": max_lines,
        "timeout_seconds": timeout,
        "workers": workers,
    }
    with console.status("loading and verifying the model"):
        asgi = build_app(**config)  # every check before the port opens
    console.print(f"serving {model or 'the rule pack only'} on http://{host}:{port} (docs: /docs)")
    run_server(asgi, host=host, port=port)


@app.command()
def keygen() -> None:
    """Print a new random API key (give it to the client) and its sha256 digest (give it to the
    service: DENIAL_MODEL_API_KEYS or a line of the --api-keys file). The key is not stored."""
    from denial_model.serve.auth import new_key

    key, digest = new_key()
    print(f"key:    {key}")
    print(f"sha256: {digest}")


@app.command()
@friendly
def sign(
    model: Annotated[Path, typer.Argument(help="model.joblib whose manifest to sign.")],
) -> None:
    """Sign MODEL's manifest with the key in DENIAL_MODEL_SIGNING_KEY (HMAC-SHA256), after checking
    the file against it. Loading then requires a valid signature wherever that key is set."""
    from denial_model.artifact import sign_manifest

    manifest = sign_manifest(model)
    console.print(f"signed {model}.manifest.json (sha256 {manifest['sha256'][:12]}...)")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
