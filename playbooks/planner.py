"""Planners turn a Diagnosis into tool calls. The playbook planner is the embedded default: it needs
no endpoint and proposes the diagnosis's candidates in order, skipping fixes already tried.
The scripted planner replays proposals from a file, as an LLM would send them (for tests, demos)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import yaml

from fr_agent.errors import FrAgentError
from fr_agent.playbooks.diagnose import Diagnosis
from fr_agent.tools.base import ToolCall


class Planner(Protocol):
    name: str

    def propose(self, diagnosis: Diagnosis, tried: set[str]) -> list[ToolCall]: ...


class PlaybookPlanner:
    name = "playbook"

    def propose(self, diagnosis: Diagnosis, tried: set[str]) -> list[ToolCall]:
        return [call for call in diagnosis.tool_calls if call.key() not in tried]


class ScriptedPlanner:
    """Each round pops the next list of raw calls from the script; malformed entries stay raw so the
    loop's validation (not this class) rejects them, exactly as it would an LLM's output."""

    name = "script"

    def __init__(self, path: Path):
        try:
            rounds = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise FrAgentError(f"cannot read planner script {path}: {str(err).splitlines()[0]}") from None
        if not isinstance(rounds, list):
            raise FrAgentError(f"planner script {path} must be a list of rounds")
        self.rounds = [r if isinstance(r, list) else [r] for r in rounds]
        self.used = 0

    def propose(self, diagnosis: Diagnosis, tried: set[str]) -> list[ToolCall]:
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


def make_planner(spec: str) -> Planner:
    if spec == "playbook":
        return PlaybookPlanner()
    if spec.startswith("script:"):
        return ScriptedPlanner(Path(spec.removeprefix("script:")))
    raise FrAgentError(f"unknown planner {spec!r}; use 'playbook' or 'script:FILE'")
