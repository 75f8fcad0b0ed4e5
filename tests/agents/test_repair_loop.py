"""The main job end to end, for real: vLLM on CPU in the local sandbox, the playbook planner, eval and
publish; killed mid-attempt with SIGKILL and resumed without redoing passed stages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fr_agent.core.events import (
    DiagnosisEvent,
    EvalEvent,
    NoteEvent,
    RunFinishedEvent,
    StageEvent,
    VerificationEvent,
    last,
    of_kind,
    read_events,
)
from tests.cli_helpers import fr_agent, wait_for

SECRET = "hf_TestTokenThatMustNeverBeWritten0000000"


def newest_run(home: Path, after: set[Path]) -> Path | None:
    runs = [p for p in (home / "runs").glob("*") if p not in after and (p / "transcript.jsonl").exists()]
    return max(runs, key=lambda p: p.stat().st_mtime) if runs else None


@pytest.mark.e2e
def test_main_job_repairs_evaluates_publishes_and_resumes_after_kill(fr_home, tiny_model):
    before = set((fr_home / "runs").glob("*"))
    env = {**os.environ, "FR_AGENT_HOME": str(fr_home), "HF_HUB_OFFLINE": "1", "HF_TOKEN": SECRET}
    first = subprocess.Popen(
        [sys.executable, "-m", "fr_agent", "run", "tiny-llama", "--chip", "cpu", "--yes", "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        run_dir = wait_for(lambda: newest_run(fr_home, before), 300, "the run directory", interval=1)
        transcript = run_dir / "transcript.jsonl"

        def operators_passed():
            return any(e.stage == "operators" and e.ok for e in of_kind(read_events(transcript), StageEvent))

        wait_for(operators_passed, 900, "the operators stage to pass", interval=1)
        time.sleep(4)  # inside the serve stage now: kill the agent mid-attempt
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    killed_events = read_events(transcript)
    assert last(killed_events, RunFinishedEvent) is None

    resumed = fr_agent("resume", run_dir.name, "--yes", "--json", home=fr_home, env={"HF_TOKEN": SECRET})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout)
    events = read_events(transcript)

    # Resume redid no passed stage: the first stage it ran is the one the kill interrupted.
    resumed_at = next(i for i, e in enumerate(events) if isinstance(e, NoteEvent) and e.message == "resumed")
    after = of_kind(events[resumed_at:], StageEvent)
    assert after[0].stage == "serve", [e.stage for e in after]
    assert after[0].attempt == max(e.attempt for e in of_kind(killed_events, StageEvent))

    # At least two genuine failures, each diagnosed, fixed, verified, and its failed stage re-run to a pass.
    assert summary["status"] == "passed", summary["reason"]
    assert len(summary["fixes"]) >= 2
    for index, fix in enumerate(events):
        if not isinstance(fix, VerificationEvent) or not fix.ok:
            continue
        target = last(events[:index], DiagnosisEvent)
        later = events[index:]
        if target.stage == "eval":  # drift fix: the gate is judged again
            assert of_kind(later, EvalEvent), "eval was not re-run after its fix"
            continue
        rerun = next((e for e in of_kind(later, StageEvent) if e.stage == target.stage), None)
        assert rerun is not None, f"{fix.tool}: {target.stage} was not re-run"
        if not rerun.ok:  # the stage may fail again, but never the same way
            after = of_kind(events[events.index(rerun) :], DiagnosisEvent)[0]
            assert after.signature != target.signature, f"{fix.tool} did not change the {target.stage} failure"
    keys = [json.dumps([f["tool"], f["args"]], sort_keys=True) for f in summary["fixes"]]
    assert len(keys) == len(set(keys)), "a fix was applied twice"

    # Eval gate and publish folder.
    assert summary["eval"]["gate_passed"] is True
    assert all(m["pct_diff"] is not None for m in summary["eval"]["metrics"])
    publish_dir = Path(summary["publish_dir"])
    for name in ("README.md", "Dockerfile", "serve.yaml", "fr-agent.env", "eval.json", "recipe.json"):
        assert (publish_dir / name).is_file(), name
    recipe = json.loads((publish_dir / "recipe.json").read_text())
    assert len(recipe["changes"]) == len(summary["fixes"])

    # Transcript: typed JSON lines with run id and attempt; the token reached nothing written.
    lines = transcript.read_text().splitlines()
    assert all({"event", "run_id", "attempt", "ts"} <= json.loads(line).keys() for line in lines)
    for path in [transcript, *publish_dir.iterdir()]:  # eval.png included: bytes, not text
        assert SECRET.encode() not in path.read_bytes()

    shown = json.loads(fr_agent("transcripts", "show", "latest", "--json", home=fr_home).stdout)
    assert shown["run_id"] == run_dir.name and shown["status"] == "passed"
    listed = json.loads(fr_agent("transcripts", "list", "--json", home=fr_home).stdout)
    assert run_dir.name in [r["run_id"] for r in listed]
