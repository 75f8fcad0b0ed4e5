"""The card linter on the publish agent's own card (clean) and on cards broken the ways published cards were."""

from __future__ import annotations

import pytest
from cli_helpers import fr_agent, one_line_error
from release_data import make_recipe, make_report

from fr_agent.agents.card_lint import lint_text
from fr_agent.agents.publish import model_card


@pytest.fixture(scope="module")
def good() -> str:
    return model_card(make_recipe(), make_report(), run_id="run-1", chip_description="x86", license="apache-2.0")


def rules(text: str) -> list[str]:
    return [f.rule for f in lint_text(text)]


def test_publish_agents_card_is_clean(good):
    assert lint_text(good) == []


def test_failed_gate_is_blocked():
    card = model_card(make_recipe(), make_report(agreement=0.5), run_id="r", chip_description="", license="mit")
    findings = lint_text(card)
    assert {f.rule for f in findings} == {"gate"}
    assert any("metadata says the eval gate did not pass" in f.message for f in findings)
    assert any(f.message == "the eval gate failed" for f in findings)


def test_performance_gate_failure_is_blocked_too():
    card = model_card(make_recipe(), make_report(throughput=100.0), run_id="r", chip_description="", license="mit")
    assert "gate" in rules(card)


def test_failed_gate_in_text_alone_is_blocked(good):
    assert rules(good.replace("**Gate passed**", "**Gate failed**")) == ["gate"]


@pytest.mark.parametrize(
    "placeholder",
    [
        "[More Information Needed]",
        "TODO: add numbers",
        "{{ model_name }}",
        "<your token here>",
        "Lorem ipsum dolor",
        "Results coming soon",
    ],
)
def test_placeholders_are_blocked(good, placeholder):
    card = good.replace("## Licence\n\n", f"## Licence\n\n{placeholder}\n\n")
    findings = lint_text(card)
    assert [f.rule for f in findings] == ["placeholder"]
    assert card.splitlines()[findings[0].line - 1] == placeholder  # the line number points at it


def test_zero_and_missing_scores_are_blocked(good):
    zero = good.replace("| greedy_token_agreement | 1 | 0.97 |", "| greedy_token_agreement | 1 | 0 |")
    assert [f.message for f in lint_text(zero)] == ["greedy_token_agreement: migrated score is zero"]
    both = good.replace("| greedy_token_agreement | 1 | 0.97 |", "| greedy_token_agreement | 0 | 0 |")
    assert lint_text(both) == []  # nothing lost: the metric is uninformative for this model, not a failure
    ahead = good.replace("| greedy_token_agreement | 1 | 0.97 |", "| greedy_token_agreement | 0 | 0.2 |")
    assert lint_text(ahead) == []
    missing = good.replace("| perplexity | 8.1 | 8.3 |", "| perplexity | n/a | 8.3 |")
    assert [f.message for f in lint_text(missing)] == ["perplexity: reference score is missing ('n/a')"]
    blank = good.replace("| task_math_accuracy | 0.25 | 0.25 |", "| task_math_accuracy | 0.25 |  |")
    assert [f.rule for f in lint_text(blank)] == ["score"]


def test_a_card_without_scores_is_blocked(good):
    table_start = good.index("| metric |")
    table_end = good.index("\n\n", table_start)
    assert "the eval section has no table of scores" in [
        f.message for f in lint_text(good[:table_start] + good[table_end:])
    ]


@pytest.mark.parametrize(
    "line, message",
    [
        ("base_model: Qwen/Qwen2.5-0.5B-Instruct\n", "metadata has no base_model"),
        ("license: apache-2.0\n", "metadata has no license"),
        ("pipeline_tag: text-generation\n", "metadata has no pipeline_tag"),
        ("- cpu-x86\n", "tags do not include the chip 'cpu-x86'"),
    ],
)
def test_missing_metadata_is_blocked(good, line, message):
    assert line in good
    assert message in [f.message for f in lint_text(good.replace(line, "", 1))]


def test_no_metadata_at_all_and_missing_sections(good):
    body = good.split("---\n", 2)[2]
    messages = [f.message for f in lint_text(body)]
    assert "metadata has no base_model" in messages and "metadata has no tags" in messages
    no_overview = good.replace("## Technical overview", "## Notes")
    assert "section '## Technical overview' is missing" in [f.message for f in lint_text(no_overview)]


def test_cli_card_lint(tmp_path, good, fr_home):
    clean, bad = tmp_path / "clean.md", tmp_path / "bad.md"
    clean.write_text(good)
    bad.write_text(good.replace("**Gate passed**", "**Gate failed**").replace("## Licence\n\n", "## Licence\n\nTODO\n"))
    ok = fr_agent("card", "lint", str(clean), home=fr_home)
    assert ok.returncode == 0 and "clean" in ok.stdout
    blocked = fr_agent("card", "lint", str(bad), home=fr_home)
    assert blocked.returncode == 1
    assert "gate: the eval gate failed" in blocked.stderr and "placeholder: placeholder text 'TODO'" in blocked.stderr
    missing = fr_agent("card", "lint", str(tmp_path / "nope.md"), home=fr_home)
    assert missing.returncode == 2 and "no such card" in one_line_error(missing)
