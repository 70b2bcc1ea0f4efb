"""The supervisor's page: one HTML file per tracked scoring run, opened from the MLflow UI.

Built from the run's `ScoreSummary` alone (totals the job adds up as it scores, on one
machine or on Spark), so it costs nothing per line and holds no patient: dollars at risk by
payer and by reason group, the most valuable lines to work (claim, line, payer, code, owner
team, reason, fix, the probability now and after all fixes, the value), the batch's score
distribution against the training data's (the drift profile's bins) and the drift flags.
Self-contained (the plot is inlined), so MLflow's artifact viewer shows it as it is.
"""

from __future__ import annotations

import base64
import html
import io
import itertools

import numpy as np

from denial_model.drift import DRIFT_WARNING

__all__ = ["render_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; font-size: 0.9em; vertical-align: top; }
th { background: #f2f2f2; } td.n { text-align: right; } .warn { color: #b00; font-weight: bold; }
"""


def _table(headers: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{html.escape(str(v))}</td>' if i in numeric else f"<td>{html.escape(str(v))}</td>"
            for i, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _money(v: float) -> str:
    return f"${v:,.0f}"


def _dollars_table(title: str, key: str, by: dict, total: float) -> str:
    rows = [
        [k or "(none)", _money(v), f"{v / total:.1%}" if total else ""]
        for k, v in sorted(by.items(), key=lambda kv: -kv[1])
    ]
    return f"<h2>{html.escape(title)}</h2>" + _table(
        [title.split(" by ")[-1], "dollars at risk", "share"], rows, {1, 2}
    )


def _distribution_plot(summary, reference: dict | None) -> str:
    """The batch's share of lines in each of the training profile's score bins beside the
    training data's (what the score PSI compares); the batch's own histogram without one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    if reference and "score" in reference and "score" in summary.features:
        edges = reference["score"]["edges"]
        labels = [f"{a:.2f}-{b:.2f}" for a, b in itertools.pairwise(edges)]
        x = np.arange(len(labels))
        for shift, counts, name in (
            (-0.2, reference["score"]["counts"], "training"),
            (0.2, summary.features["score"], "this batch"),
        ):
            counts = np.asarray(counts, dtype=float)
            ax.bar(x + shift, counts / max(counts.sum(), 1), width=0.4, label=name)
        ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
        ax.legend()
    else:
        counts, edges = summary.histogram()
        ax.bar(edges[:-1], counts / max(counts.sum(), 1), width=np.diff(edges), align="edge")
    ax.set(xlabel="denial probability", ylabel="share of lines", title="Score distribution")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="score distribution" src="data:image/png;base64,{data}">'


def render_report(
    summary, drift: dict[str, float], reference: dict | None, title: str = "Scoring run"
) -> str:
    """The run's one-page HTML report (see the module docstring)."""
    total = summary.dollars_at_risk
    tiers = ", ".join(f"{k} {v:,}" for k, v in summary.tiers.items())
    top = [
        [
            r["claim_id"],
            r["line_number"],
            r["payer_id"],
            r["hcpcs_code"],
            r["owner_team"],
            r["reason_group"],
            f"{r['denial_probability']:.2f} -> {r['probability_after_fixes']:.2f}",
            _money(r["value"]),
            r["reason"],
            r["fix"],
        ]
        for r in summary.top
    ]
    flags = sorted(k for k, v in drift.items() if v > DRIFT_WARNING)
    drift_rows = [[k, f"{v:.3f}", "drift" if v > DRIFT_WARNING else ""] for k, v in sorted(drift.items())]
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{summary.rows_in:,} lines in: {summary.scored:,} scored, {summary.rejected:,} rejected. "
        f"Tiers: {tiers}. Dollars at risk {_money(total)} of {_money(summary.billed)} billed.</p>",
        _dollars_table("Dollars at risk by payer", "payer", summary.by_payer, total),
        _dollars_table("Dollars at risk by reason group", "reason group", summary.by_group, total),
        "<h2>The most valuable lines to work</h2>",
        _table(
            [
                "claim",
                "line",
                "payer",
                "code",
                "owner team",
                "reason group",
                "p now -> all fixed",
                "value",
                "reason",
                "fix",
            ],
            top,
            {1, 6, 7},
        ),
        "<h2>Scores against training</h2>",
        _distribution_plot(summary, reference),
        "<h2>Drift (PSI against the training data)</h2>",
        (
            f'<p class="warn">PSI above {DRIFT_WARNING}: {html.escape(", ".join(flags))}</p>'
            if flags
            else "<p>No drift flag.</p>"
            if drift
            else "<p>Too few lines to measure drift.</p>"
        ),
        _table(["quantity", "PSI", "flag"], drift_rows, {1}) if drift_rows else "",
    ]
    head = f"<meta charset='utf-8'><title>{html.escape(title)}</title><style>{_STYLE}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{''.join(parts)}</body></html>"
