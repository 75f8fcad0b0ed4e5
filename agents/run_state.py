"""The repair loop's typed state (checkpointed) and its context (what the nodes use but the checkpoint
does not hold). agents/repair.py's nodes take both."""

from __future__ import annotations

from dataclasses import dataclass, field

from langgraph.runtime import Runtime
from pydantic import BaseModel

from fr_agent.agents.analyse import Analysis
from fr_agent.agents.stages import Live, StageContext
from fr_agent.core.catalog import Catalog
from fr_agent.core.config import Settings
from fr_agent.core.events import Event, EventKind, Transcript
from fr_agent.core.paths import RunFiles
from fr_agent.core.recipe import Recipe, RecipeChange
from fr_agent.core.request import RunRequest
from fr_agent.playbooks.diagnose import Diagnosis
from fr_agent.playbooks.planning import FixOutcome, Planner
from fr_agent.sandboxes.base import Sandbox
from fr_agent.tools import ToolCall


class Failure(BaseModel):
    """What the loop is repairing: a stage that failed, or the eval gate (stage "eval")."""

    stage: str
    detail: str
    log_path: str | None = None
    timed_out: bool = False


class Fix(BaseModel):
    """A fix that passed its verification and stays in the recipe."""

    tool: str
    args: dict
    attempt: int
    verified: bool = True
    detail: str
    for_stage: str
    signature: str


class Replay(BaseModel):
    """A replayed run starts from the source run's analysed recipe with its kept fixes, and plans nothing."""

    source: str
    recipe: Recipe
    fixes: list[RecipeChange]
    origin: str


class RunState(BaseModel):
    request: RunRequest
    replay: Replay | None = None
    analysis: Analysis | None = None
    recipe: Recipe | None = None
    recipe_before_fix: Recipe | None = None
    attempt: int = 0
    passed: list[str] = []
    failure: Failure | None = None
    diagnosis: Diagnosis | None = None
    pending: ToolCall | None = None
    tried: list[str] = []
    fixes: list[Fix] = []
    fixed_signature: str | None = None
    delivered_hints: list[str] = []
    outcomes: list[FixOutcome] = []  # every fix tried, with its outcome: the planner's history of this run
    llm_tokens: int = 0  # what the planner spent on an LLM in this run (its capability probe included)
    status: str = "running"
    reason: str = ""
    eval: dict | None = None
    publish_dir: str | None = None

    @property
    def failed_verifications(self) -> int:
        """Fixes that failed their check in this run (each one is in `outcomes`)."""
        return sum(outcome.result == "check_failed" for outcome in self.outcomes)


# What a checkpoint may rebuild: the state's own types and nothing else (langgraph's serializer allowlist).
STATE_TYPES = [
    (t.__module__, t.__name__)
    for t in (RunRequest, Replay, Analysis, Recipe, Failure, Diagnosis, ToolCall, Fix, FixOutcome)
]


@dataclass
class RunContext:
    """What the nodes use but the checkpoint does not hold."""

    files: RunFiles
    settings: Settings
    catalog: Catalog
    sandbox: Sandbox
    planner: Planner
    transcript: Transcript
    auto_approve: bool
    live: Live = field(default_factory=Live)

    @property
    def run_id(self) -> str:
        return self.files.root.name

    def emit(self, kind: EventKind, attempt: int = 0, **fields) -> Event:
        return self.transcript.emit(kind, attempt=attempt, **fields)

    def stage_context(self, state: RunState) -> StageContext:
        return StageContext(
            sandbox=self.sandbox,
            settings=self.settings,
            live=self.live,
            model_type=state.analysis.facts.model_type,
            trust_remote_code=state.analysis.trust_remote_code,
            attempt=state.attempt,
            visible_devices_env=self.catalog.chip(state.request.chip).visible_devices_env,
        )


Rt = Runtime[RunContext]
