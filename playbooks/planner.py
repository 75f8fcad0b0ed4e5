"""Choosing a planner by its --planner spec: the playbook planner (the embedded default), a replay's
planner, a scripted one (`script:FILE`), the LLM planner, or `auto`, which uses the LLM planner when an
endpoint is configured and answers, else the playbooks. The planners are in `planning.py` and
`llm_planner.py`.
"""

from __future__ import annotations

from pathlib import Path

from fr_agent.core.config import Settings
from fr_agent.core.errors import FrAgentError
from fr_agent.playbooks.llm_planner import AutoPlanner, llm_planner
from fr_agent.playbooks.planning import NoPlanner, Planner, PlaybookPlanner, ScriptedPlanner

PLANNERS = "'playbook', 'llm', 'auto' or 'script:FILE'"


def check_planner(spec: str, settings: Settings) -> None:
    """Fail early, before a run directory exists, on a bad --planner; asks no endpoint anything."""
    if spec == "llm":
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
        settings = settings or Settings()
        return llm_planner(settings, run_dir) if spec == "llm" else AutoPlanner(settings, run_dir)
    raise FrAgentError(f"unknown planner {spec!r}; use {PLANNERS}")
