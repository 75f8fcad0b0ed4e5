"""The eval for people: rich table, markdown table and chart, from the JSON summary (None where a number is missing)."""

from __future__ import annotations

from rich.console import Console

from fr_agent.evals.render import chart_png, markdown_table, rich_table
from fr_agent.evals.report import EvalReport, MetricRow, SuiteOutcome


def summary() -> dict:
    return EvalReport(
        metrics=[
            MetricRow(name="greedy_token_agreement", reference=1.0, migrated=0.75),
            MetricRow(name="heldout_perplexity", reference=3.0, migrated=float("nan"), higher_is_better=False),
            MetricRow(
                name="throughput_c4", kind="throughput", suite="serving", unit="tok/s", reference=300, migrated=450
            ),
        ],
        outcomes=[SuiteOutcome(suite="lm-eval", status="skipped", reason="lm-evaluation-harness is not installed")],
        reference_backend="ref",
        migrated_backend="mig",
    ).summary()


def test_tables_show_every_row_and_what_did_not_run():
    console = Console(width=200, record=True)
    console.print(rich_table(summary()))
    text = console.export_text()
    assert "greedy_token_agreement" in text and "25.00%" in text and "throughput_c4 (tok/s)" in text
    assert "heldout_perplexity" in text and "n/a" in text
    assert "skipped: lm-evaluation-harness is not installed" in text
    markdown = markdown_table(summary())
    assert "| heldout_perplexity | 3 | n/a | n/a | n/a |" in markdown
    assert "| throughput_c4 (tok/s) | 300 | 450 | 150 | 50.00% |" in markdown


def test_chart_renders_a_failed_gate_with_missing_numbers(tmp_path):
    path = chart_png(summary(), tmp_path / "eval.png", title="tiny on cpu")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert chart_png(summary(), tmp_path / "again.png", title="tiny on cpu").read_bytes() == data
