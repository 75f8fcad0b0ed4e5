"""What a planner is and what it sees. Planners turn a failure's Diagnosis into tool calls, one round at a
time; the loop hands each round the run's history (every fix tried, with its outcome) and its count of
the planner's tokens, both from its state. The playbook planner is the embedded default: it needs no
endpoint and proposes the diagnosis's candidates in order, skipping fixes already tried. The scripted
planner replays proposals from a file. The LLM planner is `llm_planner.py`; `planner.py` chooses one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml
from pydantic import BaseModel

from fr_agent.core.catalog import ChipProfile
from fr_agent.core.errors import FrAgentError
from fr_agent.core.hints import Hint
from fr_agent.core.recipe import Recipe
from fr_agent.core.secrets import redact_value
from fr_agent.playbooks.diagnose import Diagnosis
from fr_agent.sandboxes.base import Sandbox
from fr_agent.tools.base import ToolCall


def call_label(tool: str, args: dict) -> str:
    """A call as the prompt and the refusals name it (AlreadyTried's label)."""
    return f"{tool} {json.dumps(args, sort_keys=True, default=str)}"


class FixOutcome(BaseModel):
    """One fix tried in this run and what became of it, recorded by the loop's node that saw it. `then`:
    what the stage did after a verified fix, once the loop has seen it ("then load failed the same way",
    "load passed after it")."""

    tool: str
    args: dict
    result: Literal["rejected", "declined", "check_failed", "verified"]
    detail: str = ""  # rejected: why; check_failed: the check's detail
    then: str = ""

    @property
    def label(self) -> str:
        return call_label(self.tool, self.args)

    def line(self) -> str:
        """One line of the LLM planner's prompt; a secret argument's value is not in it."""
        label = call_label(self.tool, redact_value("args", self.args))
        if self.result in ("rejected", "declined"):
            why = f": {self.detail}" if self.detail else " by the user"
            return f"- {label}: {self.result}{why}"
        if self.result == "check_failed":
            return f"- {label}: applied, but its check failed ({self.detail}); rolled back"
        return f"- {label}: applied and verified" + (f"; {self.then}" if self.then else "")


@dataclass
class PlanRound:
    """What a planner sees in one round. `check` validates and admits a call exactly as the loop will
    (raising ToolRejected, or AlreadyTried); `emit` writes transcript events; `source` says, for the
    transcript, which planner the round's calls came from. `outcomes` and `llm_tokens` come from the loop's
    state; a planner that spends tokens adds them to `tokens_spent`, which the loop adds to its count."""

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
    outcomes: list[FixOutcome] = field(default_factory=list)
    llm_tokens: int = 0
    tokens_spent: int = 0

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
            round.reply(
                "The playbook planner follows its failure signatures and cannot act on free text; "
                "run with --planner llm (or auto with an endpoint) for that."
            )
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
