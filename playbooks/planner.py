"""Planners turn a failure's Diagnosis into tool calls, one round at a time. The playbook planner is the
embedded default: it needs no endpoint and proposes the diagnosis's candidates in order, skipping fixes
already tried. The scripted planner replays proposals from a file. The LLM planner (`llm_planner.py`)
asks any OpenAI-compatible endpoint; `auto` uses it when one is configured and answers, else playbooks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from fr_agent.core.catalog import ChipProfile
from fr_agent.core.hints import Hint
from fr_agent.core.config import Settings
from fr_agent.core.errors import FrAgentError
from fr_agent.playbooks.diagnose import Diagnosis
from fr_agent.core.recipe import Recipe
from fr_agent.sandboxes.base import Sandbox
from fr_agent.tools.base import ToolCall


@dataclass
class PlanRound:
    """What a planner sees in one round. `check` validates and admits a call exactly as the loop will
    (raising ToolRejected, or AlreadyTried); `emit` writes transcript events; `source` says, for the
    transcript, which planner the round's calls came from."""

    diagnosis: Diagnosis
    tried: set[str]
    attempt: int = 1
    recipe: Recipe | None = None
    failure: dict = field(default_factory=dict)
    hints: list[Hint] = field(default_factory=list)
    sandbox: Sandbox | None = None
    chip: ChipProfile | None = None
    check: Callable[[ToolCall], ToolCall] | None = None
    emit: Callable[..., Any] = lambda *args, **fields: None
    source: str = ""

    def reply(self, text: str) -> None:
        """A planner's words to the user, shown in the session."""
        self.emit("chat", attempt=self.attempt, role="planner", text=text)


class Planner(Protocol):
    """`start_events`: (kind, fields) a planner announces when a run starts or resumes."""

    name: str
    start_events: list[tuple[str, dict]]

    def propose(self, round: PlanRound) -> list[ToolCall]: ...


class PlaybookPlanner:
    name = "playbook"
    start_events: list[tuple[str, dict]] = []

    def propose(self, round: PlanRound) -> list[ToolCall]:
        if round.hints:
            round.reply("The playbook planner follows its failure signatures and cannot act on free text; "
                        "run with --planner llm (or auto with an endpoint) for that.")
        return [call for call in round.diagnosis.tool_calls if call.key() not in round.tried]


class NoPlanner:
    """A replay's planner: the recorded fixes are already in the recipe; a failure is reported, not repaired."""

    name = "replay"
    start_events: list[tuple[str, dict]] = []

    def propose(self, round: PlanRound) -> list[ToolCall]:
        return []


class ScriptedPlanner:
    """Each round pops the next list of raw calls from the script; malformed entries stay raw so the
    loop's validation (not this class) rejects them, exactly as it would an LLM's output."""

    name = "script"
    start_events: list[tuple[str, dict]] = []

    def __init__(self, path: Path):
        try:
            rounds = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise FrAgentError(f"cannot read planner script {path}: {str(err).splitlines()[0]}") from None
        if not isinstance(rounds, list):
            raise FrAgentError(f"planner script {path} must be a list of rounds")
        self.rounds = [r if isinstance(r, list) else [r] for r in rounds]
        self.used = 0

    def propose(self, round: PlanRound) -> list[ToolCall]:
        if self.used >= len(self.rounds):
            return []
        round_ = self.rounds[self.used]
        self.used += 1
        calls = []
        for raw in round_:
            if not isinstance(raw, dict):
                raw = {"tool": "<malformed>", "args": {"raw": json.dumps(raw)}}
            calls.append(ToolCall.model_construct(tool=str(raw.get("tool")), args=raw.get("args") or {}))
        return calls


PLANNERS = "'playbook', 'llm', 'auto' or 'script:FILE'"


def check_planner(spec: str, settings: Settings) -> None:
    """Fail early, before a run directory exists, on a bad --planner; asks no endpoint anything."""
    if spec == "llm":
        from fr_agent.playbooks.llm_planner import llm_planner

        llm_planner(settings, None)
    elif spec not in ("auto", "playbook", "replay"):
        make_planner(spec, settings)


def make_planner(spec: str, settings: Settings | None = None, run_dir: Path | None = None) -> Planner:
    if spec == "playbook":
        return PlaybookPlanner()
    if spec == "replay":
        return NoPlanner()
    if spec.startswith("script:"):
        return ScriptedPlanner(Path(spec.removeprefix("script:")))
    if spec in ("llm", "auto"):
        from fr_agent.playbooks.llm_planner import AutoPlanner, llm_planner

        settings = settings or Settings()
        return llm_planner(settings, run_dir) if spec == "llm" else AutoPlanner(settings, run_dir)
    raise FrAgentError(f"unknown planner {spec!r}; use {PLANNERS}")
