"""The eval for people: a rich table for the terminal, a markdown table for the card, a PNG chart.

All three render the JSON summary (`EvalReport.summary()`), the form transcripts and eval.json keep.
"""

from __future__ import annotations

import math
from pathlib import Path

from rich.markup import escape
from rich.table import Table


def number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6g}"


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}%"


def metric_label(metric: dict) -> str:
    unit = metric.get("unit")
    return f"{metric['name']} ({unit})" if unit else metric["name"]


def gate_text(summary: dict) -> str:
    verdict = "PASSED" if summary["gate_passed"] else "FAILED"
    return f"gate {verdict}: {summary['gate_reason']}"


def rich_table(summary: dict) -> Table:
    table = Table(title="eval: reference vs migrated")
    for column in ("suite", "metric", "reference", "migrated", "abs diff", "% diff"):
        table.add_column(column, justify="right" if column not in ("suite", "metric") else "left")
    for m in summary["metrics"]:
        table.add_row(
            m.get("suite", ""),
            metric_label(m),
            number(m["reference"]),
            number(m["migrated"]),
            number(m["abs_diff"]),
            percent(m["pct_diff"]),
        )
    for outcome in summary.get("outcomes", []):
        table.add_row(
            outcome["suite"], f"[dim]{outcome['status']}: {escape(outcome['reason'][:100])}[/dim]", "", "", "", ""
        )
    return table


def markdown_table(summary: dict) -> str:
    head = ["| metric | reference | migrated | abs diff | % diff |", "|---|---|---|---|---|"]
    rows = [
        f"| {metric_label(m)} | {number(m['reference'])} | {number(m['migrated'])} | {number(m['abs_diff'])} "
        f"| {percent(m['pct_diff'])} |"
        for m in summary["metrics"]
    ]
    return "\n".join([*head, *rows])


def chart_png(summary: dict, path: Path, title: str = "") -> Path:
    """Left: percent difference of each accuracy metric against the gate threshold.
    Right: throughput per concurrency level, reference beside migrated."""
    # heavy: matplotlib (~0.2 s, pyplot ~0.35 s) would slow every CLI start; only the chart needs it
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    accuracy = [m for m in summary["metrics"] if m.get("kind", "accuracy") == "accuracy"]
    throughput = [m for m in summary["metrics"] if m.get("kind") == "throughput"]
    fig, axes = plt.subplots(1, 2 if throughput else 1, figsize=(12 if throughput else 7, 4.5), squeeze=False)
    ax = axes[0][0]
    names = [m["name"] for m in accuracy]
    diffs = [m["pct_diff"] if m["pct_diff"] is not None else math.nan for m in accuracy]
    threshold = summary["threshold_pct"]
    colors = ["tab:red" if not (d < threshold) else "tab:green" for d in diffs]
    ax.barh(names, [0 if math.isnan(d) else d for d in diffs], color=colors)
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:g}%")
    ax.set_xlabel("% difference, migrated vs reference")
    ax.invert_yaxis()
    ax.legend(loc="lower right")
    ax.set_title("accuracy and consistency")
    if throughput:
        ax = axes[0][1]
        labels = [m["name"].removeprefix("throughput_") for m in throughput]
        x = range(len(throughput))
        ax.bar([i - 0.2 for i in x], [m["reference"] or 0 for m in throughput], width=0.4, label="reference")
        ax.bar([i + 0.2 for i in x], [m["migrated"] or 0 for m in throughput], width=0.4, label="migrated")
        ax.set_xticks(list(x), labels)
        ax.set_ylabel("output tokens/s")
        ratio = summary.get("perf_ratio")
        ax.set_title("serving throughput" + (f" (ratio {ratio:.2f}x)" if ratio is not None else ""))
        ax.legend()
    fig.suptitle((title + ": " if title else "") + gate_text(summary), fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path
