"""What the CLI and `make demo` print: Rich tables of checks, histories, metrics and scores.

Reports only format results the jobs return; they compute nothing. Piped output (CI logs,
`make demo | tee`) gets wide tables instead of Rich's default 80 columns.
"""

from __future__ import annotations

import os
import sys

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, TimeElapsedColumn
from rich.table import Table

from denial_model.rules.pack import CATEGORIES, RulePack

__all__ = [
    "GROUPS_TITLE",
    "console",
    "err_console",
    "print_by_segment",
    "print_check_summary",
    "print_findings",
    "print_group_table",
    "print_history_summary",
    "print_metric_table",
    "print_queue",
    "print_score_summary",
    "print_top_lines",
    "progress",
]

_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
console = Console(width=_WIDTH)
err_console = Console(stderr=True, width=_WIDTH)

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


def progress(*columns) -> Progress:
    """A transient progress display (the given columns, then elapsed time) on the console."""
    return Progress(*columns, TimeElapsedColumn(), console=console, transient=True)


def _measures(title: str, rows: list[tuple[str, str]], header: str = "value") -> None:
    t = Table(title=title)
    t.add_column("measure")
    t.add_column(header, justify="right")
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)


def print_check_summary(summary: dict, title: str = "Claim check") -> None:
    keys = ("rows_in", "lines_checked", "lines_rejected", "lines_with_findings", "lines_with_deny_findings")
    _measures(title, [(k.replace("_", " "), f"{summary[k]:,}") for k in keys], header="lines")
    c = Table(title="Lines with findings, by category", show_header=True)
    c.add_column("category")
    c.add_column("lines", justify="right")
    for cat in CATEGORIES:
        n = summary["by_category"][cat]
        if n:
            c.add_row(cat, f"{n:,}")
    console.print(c)


def print_findings(checked: pd.DataFrame, pack: RulePack) -> None:
    """Every finding of a checked table: claim, line, code, rule, category, CARC, fix."""
    t = Table(title="Findings", show_lines=False)
    for col in ("claim", "line", "code", "rule", "category", "CARC", "fix"):
        t.add_column(col, overflow="fold")
    rules = {r.id: r for r in pack.rules}
    for row in checked[["claim_id", "line_number", "hcpcs_code", "rule_hits"]].itertuples(index=False):
        for rid in filter(None, str(row.rule_hits).split(";")):
            r = rules[rid]
            carc = r.carc + (f" {r.remark}" if r.remark else "")
            t.add_row(
                str(row.claim_id), str(row.line_number), str(row.hcpcs_code), rid, r.category, carc, r.fix
            )
    console.print(t)


def print_ingest_summary(counts: dict[str, int], notes: list[str], title: str) -> None:
    """What `ingest` read, matched and rejected, and what it read leniently."""
    _measures(title, [(k, f"{v:,}") for k, v in counts.items()])
    for note in notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)


def print_history_summary(summary, title: str = "Simulated history") -> None:
    rows = [
        ("lines", f"{summary.lines:,}"),
        ("claims", f"{summary.claims:,}"),
        ("line denial rate", f"{summary.denial_rate:.1%}"),
        *((f"  denial rate, {ptype}", f"{rate:.1%}") for ptype, rate in summary.payer_rates().items()),
        ("lines with planted rule breaks", f"{summary.planted_lines:,}"),
    ]
    _measures(title, rows)
    g = Table(title="Denials by cause (from the CARC)")
    g.add_column("cause")
    g.add_column("denials", justify="right")
    g.add_column("share", justify="right")
    for grp, n in sorted(summary.by_group.items(), key=lambda kv: -kv[1]):
        g.add_row(grp, f"{n:,}", f"{n / max(summary.denied, 1):.1%}")
    console.print(g)


def print_metric_table(table: pd.DataFrame, title: str, segment: str = "all") -> None:
    t = Table(title=title)
    t.add_column("model")
    for m in METRIC_COLUMNS:
        t.add_column(m, justify="right")
    for row in table[table["segment"] == segment].to_dict("records"):
        t.add_row(row["model"], *(f"{row[m]:.4f}" for m in METRIC_COLUMNS))
    console.print(t)


def print_by_segment(table: pd.DataFrame) -> None:
    """The model per segment (payer type, line kind, months since a change), beside the oracle
    where the history has one."""
    t = Table(title="Model by segment (test months)")
    for col in (
        "segment",
        "lines",
        "auroc",
        "oracle auroc",
        "log_loss",
        "oracle log_loss",
        "ece",
        "recall_top10",
    ):
        t.add_column(col, justify="left" if col == "segment" else "right")
    oracle = table[table["model"] == "oracle"].set_index("segment")
    for row in table[(table["model"] == "model") & (table["segment"] != "all")].to_dict("records"):
        seg = row["segment"]
        known = seg in oracle.index
        t.add_row(
            seg,
            f"{row['lines']:,}",
            f"{row['auroc']:.4f}",
            f"{oracle.loc[seg, 'auroc']:.4f}" if known else "-",
            f"{row['log_loss']:.4f}",
            f"{oracle.loc[seg, 'log_loss']:.4f}" if known else "-",
            f"{row['ece']:.4f}",
            f"{row['recall_top10']:.4f}",
        )
    console.print(t)


def print_score_summary(summary, title: str) -> None:
    rows = [
        ("rows in", f"{summary.rows_in:,}"),
        ("scored", f"{summary.scored:,}"),
        ("rejected", f"{summary.rejected:,}"),
        *((f"tier {k}", f"{v:,}") for k, v in summary.tiers.items()),
        ("dollars at risk", f"${summary.dollars_at_risk:,.0f} of ${summary.billed:,.0f} billed"),
    ]
    _measures(title, rows)


def print_queue(queue: pd.DataFrame, title: str, n: int = 10) -> None:
    """The top `n` lines of a work queue: owner, reason, the probability now and after all
    fixes, and the value of working the line."""
    t = Table(title=title, show_lines=True)
    for col, kw in (
        ("rank", {"justify": "right"}),
        ("owner team", {}),
        ("claim / line", {}),
        ("code", {}),
        ("p now -> all fixed", {"justify": "right"}),
        ("value", {"justify": "right"}),
        ("reason", {"max_width": 60}),
        ("fix", {"max_width": 60}),
    ):
        t.add_column(col, **kw)
    for r in queue.head(n).itertuples(index=False):  # the n printed lines, not the table
        t.add_row(
            str(r.rank),
            str(r.owner_team),
            f"{r.claim_id} / {r.line_number}",
            str(r.hcpcs_code),
            f"{r.denial_probability:.2f} -> {r.probability_after_fixes:.2f}",
            f"${r.value:,.0f}",
            escape(str(r.reason)),
            escape(str(r.fix)),
        )
    console.print(t)


GROUPS_TITLE = "Reason groups of the test months' denied lines: the model beside the rules"


def print_group_table(table: pd.DataFrame, title: str = GROUPS_TITLE) -> None:
    """Reason groups among the test months' denied lines: the group model beside the rules."""
    t = Table(title=title)
    for col in ("answer", "denied lines", "log loss", "top-1 accuracy"):
        t.add_column(col, justify="left" if col == "answer" else "right")
    for r in table.itertuples(index=False):
        t.add_row(str(r.model), f"{int(r.lines):,}", f"{r.log_loss:.4f}", f"{r.top1_accuracy:.3f}")
    console.print(t)


def print_top_lines(scored: pd.DataFrame, n: int = 10) -> None:
    """The `n` riskiest lines of a scored table with their reasons and fixes."""
    top = scored.sort_values(["denial_probability", "dollars_at_risk"], ascending=False, kind="stable").head(
        n
    )
    t = Table(title=f"The {n} riskiest lines: why, and what to change", show_lines=True)
    for col in ("claim / line", "code", "payer", "p(denied)", "reasons", "fixes (p before -> after)"):
        t.add_column(col, overflow="fold")
    for r in top.to_dict("records"):
        t.add_row(
            f"{r['claim_id']} / {r['line_number']}",
            str(r["hcpcs_code"]),
            f"{r['payer_id']} ({r['payer_type']})",
            f"{r['denial_probability']:.2f}",
            str(r["reasons"]).replace(" | ", "\n"),
            str(r["fixes"]).replace(" | ", "\n"),
        )
    console.print(t)
