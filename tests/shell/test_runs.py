"""Run: the one owner of a run's folder and lifecycle (fast parts; the e2e tests drive real runs)."""

from __future__ import annotations

import pytest

from fr_agent.core.config import load_settings
from fr_agent.core.errors import FrAgentError
from fr_agent.core.request import RunRequest
from fr_agent.shell.runs import Run


def test_settings_reach_the_sandbox_and_the_request_is_the_first_file(tmp_path):
    (tmp_path / "s.yaml").write_text("timeouts: {install: 42}\nsandbox: {kind: host}\n")
    settings = load_settings(tmp_path / "s.yaml", home=tmp_path)
    run = Run.create(RunRequest(model="tiny-llama", chip="cpu", sandbox=settings.sandbox.kind), settings, run_id="r1")
    assert sorted(p.name for p in run.files.root.iterdir()) == ["request.json"]
    sandbox = run._sandbox(None)
    assert type(sandbox).__name__ == "HostSandbox" and sandbox.install_timeout == 42
    assert Run.open(settings, "latest").request == run.request and run.state() is None
    with pytest.raises(FrAgentError, match="already exists"):
        Run.create(run.request, settings, run_id="r1")


@pytest.mark.parametrize("bad", ["../up", "a b", "", "-x"])
def test_run_ids_are_checked_before_anything_is_written(tmp_path, bad):
    settings = load_settings(None, home=tmp_path)
    with pytest.raises(FrAgentError, match="invalid run id"):
        Run.create(RunRequest(model="tiny-llama", chip="cpu"), settings, run_id=bad)
    assert not settings.runs_dir.exists() or list(settings.runs_dir.iterdir()) == []


def test_a_broken_request_is_one_line(tmp_path):
    settings = load_settings(None, home=tmp_path)
    (settings.runs_dir / "r2").mkdir(parents=True)
    (settings.runs_dir / "r2" / "request.json").write_text('{"model": 3}')
    with pytest.raises(FrAgentError, match="r2: broken request.json"):
        Run.open(settings, "r2")
