"""The chat session: a proposed fix is shown with its evidence; the user declines or edits it.
Real sandbox and stages; the run ends at the first failure, so these take under a minute each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fr_agent.core.events import ToolCallEvent, of_kind, read_events
from tests.cli_helpers import fr_agent


def last_run(home):
    return json.loads(fr_agent("transcripts", "show", "latest", "--json", home=home).stdout)


@pytest.mark.e2e
def test_declined_fix_is_not_applied(fr_home, tiny_model):
    result = fr_agent("run", "tiny-llama", "--chip", "cpu", home=fr_home, input="n\n")
    assert result.returncode == 1, result.stderr[-2000:]
    assert "evidence: RuntimeError: operator torchvision::nms does not exist" in result.stdout
    assert 'apply install_dependency({"package": "torchvision", "action": "remove"})?' in result.stdout
    summary = last_run(fr_home)
    assert summary["status"] == "failed" and "no untried fix" in summary["reason"] and summary["fixes"] == []
    assert [e.status for e in of_kind(read_events(Path(summary["transcript"])), ToolCallEvent)] == ["declined"]


@pytest.mark.e2e
def test_edited_fix_is_validated_like_any_other(fr_home, tiny_model):
    edit = json.dumps({"package": "torchvision-cpu-hallucinated-zz9", "action": "install"})
    result = fr_agent("run", "tiny-llama", "--chip", "cpu", home=fr_home, input=f"e\n{edit}\n")
    assert result.returncode == 1, result.stderr[-2000:]
    summary = last_run(fr_home)
    calls = of_kind(read_events(Path(summary["transcript"])), ToolCallEvent)
    rejected = [e for e in calls if e.status == "rejected"]
    assert rejected and "does not exist on the package index" in rejected[0].error
    assert not any(e.status == "applied" for e in calls)
