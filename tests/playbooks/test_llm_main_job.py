"""The main job with the LLM planner over real HTTP, and with `--planner auto` and no endpoint.

The engine is `hf` (transformers serving itself, a run in about two minutes here) with a small eval. The LLM
run's failure is real: the chip profile (a copied catalog, as `--catalog` is meant for) pins a torch build
this host cannot install (uv: "No solution found"). The scripted model behind the HTTP server
reads the log, guesses a package that does not exist (refused by the package index check, before any
install), then pins the wheel on disk. The run first pauses on a spent token budget, gets a hint with
`fr-agent hint`, is resumed with a bigger budget, stops at the approval prompt (stdin ends), and is
resumed again: the same approval is asked and answered on the session's stdin.
"""

from __future__ import annotations

import json
import os
import subprocess
from importlib import resources
from pathlib import Path

import pytest
import yaml

from fr_agent.core.events import (
    ChatEvent,
    LLMCallEvent,
    NoteEvent,
    PlanEvent,
    RunFinishedEvent,
    StageEvent,
    ToolCallEvent,
    VerificationEvent,
    first,
    of_kind,
    read_events,
)
from fr_agent.playbooks.scripted_llm import Script, serving
from fr_agent.shell.runs import summarize
from tests.cli_helpers import TINY_RUN, fr_agent, fr_agent_started

RESPONDER = Path(__file__).parents[1] / "data" / "llm" / "main_job_responder.py"
SECRET = "sk-TestKeyThatMustNeverBeWritten000000000"
LLM_ENV = ("FR_AGENT_LLM_BASE_URL", "FR_AGENT_LLM_MODEL", "FR_AGENT_LLM_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL")
# A short eval: few prompts, no serving benchmark. Task items stay at 20 a category: the card linter refuses
# zero scores, and the tiny model's first right answer in one category is its 15th item.
SMALL_EVAL = {"prompts": 2, "max_new_tokens": 4, "topk_tokens": 4, "heldout_tokens": 32, "concurrency": []}


def settings_file(path: Path, **llm) -> Path:
    path.write_text(yaml.safe_dump({"eval": SMALL_EVAL, "llm": llm}))
    return path


def without_llm_env() -> dict:
    """Empty values read as unset: no endpoint from the environment this test runs in."""
    return {name: "" for name in LLM_ENV}


@pytest.fixture(scope="module")
def auto_run(request, fr_home, tiny_model, tmp_path_factory):
    """The `--planner auto` run starts before the LLM run and goes on beside it: on two cores the two runs
    take about the time of one."""
    if not any(item.name == "test_main_job_with_planner_auto_and_no_endpoint" for item in request.session.items):
        yield None  # that test was not selected
        return
    config = settings_file(tmp_path_factory.mktemp("auto") / "settings.yaml")
    process = fr_agent_started(
        *TINY_RUN,
        "--planner",
        "auto",
        "--yes",
        "--config",
        str(config),
        "--json",
        home=fr_home,
        env=without_llm_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    yield process
    if process.poll() is None:
        process.kill()
        process.communicate()


# Minutes of both cores (two full runs with eval): run with -m slow; CI runs the LLM planner's unit and golden tests.
pytestmark = [pytest.mark.usefixtures("auto_run"), pytest.mark.slow]


def test_main_job_with_the_llm_planner_over_http(fr_home, tiny_model, tmp_path):
    chips = yaml.safe_load(resources.files("fr_agent.core.catalog").joinpath("chips.yaml").read_text())
    chips["cpu"]["torch"]["version"] = "2.9.0+cpu"  # a vendor build this host has no wheel for
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "chips.yaml").write_text(yaml.safe_dump(chips))
    small = settings_file(tmp_path / "small-budget.yaml", budget={"run_tokens": 500})
    enough = settings_file(tmp_path / "budget.yaml", budget={"run_tokens": 200_000})

    with serving(Script(respond=f"{RESPONDER}:respond")) as server:
        env = {
            **without_llm_env(),
            "FR_AGENT_LLM_BASE_URL": server.url,
            "FR_AGENT_LLM_MODEL": "scripted-llm",
            "FR_AGENT_LLM_API_KEY": SECRET,
        }
        run_id = f"llm-main-job-{tmp_path.name[-12:]}-{os.getpid()}"
        paused = fr_agent(
            *TINY_RUN,
            "--catalog",
            str(catalog),
            "--planner",
            "llm",
            "--config",
            str(small),
            "--yes",
            "--run-id",
            run_id,
            home=fr_home,
            env=env,
        )
        assert paused.returncode == 75, paused.stderr[-2000:]
        assert "LLM token budget spent: 0 of 500 tokens" in paused.stderr and "fr-agent resume" in paused.stderr
        assert server.llm.requests == []  # paused before asking
        summary = summarize(fr_home / "runs" / run_id)
        assert summary["status"] == "paused" and summary["stages"][-1]["stage"] == "install"

        hinted = fr_agent("hint", run_id, "why does the install fail?", home=fr_home)
        assert hinted.returncode == 0 and "hint queued" in hinted.stdout

        # Resumed with a bigger budget, the planner runs; a line typed in the session is a hint too; stdin
        # ends at the approval prompt: the run stops there.
        stopped = fr_agent(
            "resume", run_id, "--config", str(enough), home=fr_home, env=env, input="what will you change?\n"
        )
        assert stopped.returncode == 130 and "apply install_dependency(" in stopped.stdout, stopped.stderr[-2000:]
        asked = len(server.llm.requests)
        # The approval is a langgraph interrupt: resumed again, the same prompt comes back, the plan is not redone.
        resumed = fr_agent("resume", run_id, "--config", str(enough), home=fr_home, env=env, input="y\ny\ny\n")
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-2000:]
        assert "apply install_dependency(" in resumed.stdout and len(server.llm.requests) == asked
        requests = server.llm.requests

    run_dir = fr_home / "runs" / run_id
    events = read_events(run_dir / "transcript.jsonl")
    assert of_kind(events, RunFinishedEvent) == [events[-1]]

    # The real failure went to the model with its diagnosis and log.
    failed = next(e for e in of_kind(events, StageEvent) if not e.ok)
    assert failed.stage == "install" and failed.attempt == 1
    assert "there is no version of torch==2.9.0+cpu" in requests[0]["messages"][1]["content"]
    assert {t["function"]["name"] for t in requests[0]["tools"]} >= {"install_dependency", "read_log", "list_packages"}
    assert "1: $ " in next(m["content"] for m in requests[1]["messages"] if m["role"] == "tool")  # read_log answered

    # The hints (one sent with `fr-agent hint`, one typed in the session) reached the planner in its next
    # round, and it answered in the session.
    chat = of_kind(events, ChatEvent)
    assert [(e.text, e.source) for e in chat if e.role == "user"] == [
        ("why does the install fail?", "cli"),
        ("what will you change?", "session"),
    ]
    assert "- what will you change?" in requests[0]["messages"][1]["content"]
    assert any(e.role == "planner" and e.text.startswith("About your message") for e in chat)
    assert "planner: About your message" in stopped.stdout

    # The made-up package was refused by the package index check; nothing ever tried to install it.
    rejected = [e for e in of_kind(events, ToolCallEvent) if e.status == "rejected"]
    assert rejected[0].args["package"] == "torch-cpu-wheels-zz9"
    assert "does not exist on the package index" in rejected[0].error
    for log in (run_dir / "sandbox" / "logs").glob("*.log"):
        assert "torch-cpu-wheels-zz9" not in log.read_text(errors="replace"), log

    # The model's fix was approved on stdin, applied, verified, and the install stage passed on re-run.
    plan = first(events, PlanEvent)
    assert plan.planner == "llm" and plan.args == {"package": "torch", "version": "2.13.0", "action": "downgrade"}
    assert first(events, VerificationEvent).ok
    rerun = [e for e in of_kind(events, StageEvent) if e.stage == "install"]
    assert [e.ok for e in rerun] == [False, True] and rerun[1].attempt == 2

    # The whole job finished: all stages, eval gate, publish folder.
    summary = summarize(run_dir)
    assert summary["status"] == "passed", summary["reason"]
    assert Path(summary["publish_dir"], "recipe.json").is_file()

    # Every request is on record with tokens, cost and latency; the key is nowhere on disk.
    calls = of_kind(events, LLMCallEvent)
    assert len(calls) == len(requests) == 3 and all(c.total_tokens > 0 and c.latency_s > 0 for c in calls)
    for path in run_dir.rglob("*"):
        if path.is_file() and path.suffix in (".jsonl", ".json", ".log", ".md", ".yaml", ".env", ".sqlite"):
            assert SECRET.encode() not in path.read_bytes(), path


def test_main_job_with_planner_auto_and_no_endpoint(auto_run):
    stdout, stderr = auto_run.communicate(timeout=1200)
    assert auto_run.returncode == 0, stderr[-3000:]
    summary = json.loads(stdout)
    assert summary["status"] == "passed" and summary["eval"]["gate_passed"]
    events = read_events(Path(summary["transcript"]))
    note = first(events, NoteEvent)
    assert note.message == "planner auto chose playbook" and note.reason.startswith("no LLM endpoint configured")
    assert not of_kind(events, LLMCallEvent)
