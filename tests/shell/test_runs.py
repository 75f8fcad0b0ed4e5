"""Run: the one owner of a run's folder and lifecycle (fast parts; the e2e tests drive real runs)."""

from __future__ import annotations

import json
import os
import time

import pytest

from fr_agent.core.config import load_settings
from fr_agent.core.errors import FrAgentError
from fr_agent.core.request import RunRequest
from fr_agent.shell.runs import Run, find_run
from tests.cli_helpers import fr_agent, one_line_error


def test_settings_reach_the_sandbox_and_the_request_is_the_first_file(tmp_path):
    (tmp_path / "s.yaml").write_text("timeouts: {install: 42}\nsandbox: {kind: host}\n")
    settings = load_settings(tmp_path / "s.yaml", home=tmp_path)
    run = Run.create(RunRequest(model="tiny-llama", chip="cpu", sandbox=settings.sandbox.kind), settings, run_id="r1")
    assert sorted(p.name for p in run.files.root.iterdir()) == ["request.json"]
    sandbox = run._sandbox(None)
    assert type(sandbox).__name__ == "HostSandbox" and sandbox.install_timeout == 42
    assert Run.open(settings, "r1").request == run.request and run.state() is None
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


def started_run(settings, run_id: str, age_s: float = 0) -> Run:
    run = Run.create(RunRequest(model="tiny-llama", chip="cpu"), settings, run_id=run_id)
    run.record("run_started", request=run.request.model_dump(), run_dir=str(run.files.root))
    then = time.time() - age_s
    os.utime(run.files.request, (then, then))
    return run


def test_latest_skips_runs_that_never_started_or_are_broken_and_list_warns_about_a_broken_one(tmp_path):
    settings = load_settings(None, home=tmp_path)
    good = started_run(settings, "a-good", age_s=100)
    Run.create(RunRequest(model="tiny-llama", chip="cpu"), settings, run_id="b-bad-input")  # its request alone
    started_run(settings, "c-broken").files.request.write_text('{"model": 3}')
    with pytest.raises(FrAgentError, match="c-broken: broken request.json"):
        Run.open(settings, "c-broken")
    assert find_run(settings, "latest") == good.files.root and Run.open(settings, "latest").id == "a-good"
    listed = fr_agent("transcripts", "list", "--json", home=tmp_path, timeout=120)
    assert listed.returncode == 0
    assert [r["run_id"] for r in json.loads(listed.stdout)] == ["a-good", "b-bad-input"]
    assert one_line_error(listed).startswith("warning: skipped run c-broken: broken request.json: model")
