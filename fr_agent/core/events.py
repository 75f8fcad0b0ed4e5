"""Transcripts: append-only JSON lines of typed events, written as they happen, secrets redacted.

One file per run (`runs/<run_id>/transcript.jsonl`). Each line is one event: the envelope (`event`,
`run_id`, `attempt`, `ts`) and the fields of its kind, one pydantic class per kind below. `Transcript.emit`
validates strictly (an unknown field is a bug in the emitter); `read_events` is the one reader: it loads
older records (fields since dropped are ignored), skips a torn line, and stops with a one-line error
at a line that is JSON but no event. Nested structures that belong to higher layers or outgrow old runs
(the analysed recipe, the loop's fix records, the eval's outcomes) stay plain dicts; their readers validate them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from fr_agent.core.catalog import ModelFacts
from fr_agent.core.checks import Check
from fr_agent.core.errors import FrAgentError
from fr_agent.core.recipe import ModelRef, Stage
from fr_agent.core.secrets import open_private, redact_value
from fr_agent.core.types import first_error


class EventBase(BaseModel):
    model_config = ConfigDict(extra="ignore")  # a record written by an older version still loads

    run_id: str
    attempt: int = 0
    ts: datetime


class RunStartedEvent(EventBase):
    event: Literal["run_started"] = "run_started"
    request: dict[str, Any]  # the RunRequest as it was written
    run_dir: str
    replay_of: str | None = None


class AnalysisEvent(EventBase):
    event: Literal["analysis"] = "analysis"
    model: ModelRef
    chip: str
    source: str
    facts: ModelFacts
    notes: list[str] = Field(default_factory=list)
    recipe: dict[str, Any]  # the analysed Recipe; validated by its reader (an old run's may predate the schema)


class PrecheckEvent(EventBase):
    event: Literal["precheck"] = "precheck"
    ok: bool
    checks: list[Check]


class StageEvent(EventBase):
    event: Literal["stage"] = "stage"
    stage: Stage
    ok: bool
    detail: str
    duration_s: float = 0.0
    log_path: str | None = None
    timed_out: bool = False


class DiagnosisEvent(EventBase):
    event: Literal["diagnosis"] = "diagnosis"
    stage: str  # a stage or "eval"
    category: str
    params: dict[str, Any] = Field(default_factory=dict)
    evidence: list[str]
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)  # ToolCall dumps
    confidence: float
    playbook: str | None = None
    explanation: str
    facts: dict[str, Any] = Field(default_factory=dict)
    signature: str


class PlanEvent(EventBase):
    event: Literal["plan"] = "plan"
    planner: str
    tool: str
    args: dict[str, Any]
    explanation: str
    evidence: list[str] = Field(default_factory=list)


class ToolCallEvent(EventBase):
    """A proposed call's fate: applied (then verified), rejected by validation, declined by the user,
    or replayed from an earlier run."""

    event: Literal["tool_call"] = "tool_call"
    status: Literal["applied", "rejected", "declined", "replayed"]
    tool: str
    args: dict[str, Any]
    change: str | None = None  # applied, replayed: the recipe change's summary
    error: str | None = None  # rejected: why
    planner: str | None = None  # rejected inside the LLM planner's conversation


class VerificationEvent(EventBase):
    event: Literal["verification"] = "verification"
    tool: str
    args: dict[str, Any]
    ok: bool
    detail: str
    log_path: str | None = None


class MetricRow(BaseModel):
    """One row of the eval's table, as `EvalReport.summary()` writes it (non-finite numbers are None)."""

    model_config = ConfigDict(extra="ignore")

    name: str
    suite: str | None = None
    kind: str | None = None
    unit: str | None = None
    reference: float | None = None
    migrated: float | None = None
    abs_diff: float | None = None
    pct_diff: float | None = None
    higher_is_better: bool = True
    samples: int | None = None


class EvalEvent(EventBase):
    """The eval agent's summary, or (`error`) the exception that crashed it, which fails the gate."""

    event: Literal["eval"] = "eval"
    gate_passed: bool
    gate_reason: str | None = None
    avg_pct_diff: float | None = None
    threshold_pct: float | None = None
    perf_ratio: float | None = None
    min_perf_ratio: float | None = None
    reference_backend: str | None = None
    migrated_backend: str | None = None
    samples: int | None = None
    duration_s: float | None = None
    outcomes: list[dict[str, Any]] = Field(default_factory=list)  # the eval's per-prompt outcomes
    metrics: list[MetricRow] = Field(default_factory=list)
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        """The summary as the eval agent wrote it: what `transcripts show --json` and the tables print."""
        return self.model_dump(mode="json", exclude=set(EventBase.model_fields) | {"event"})


class PublishEvent(EventBase):
    event: Literal["publish"] = "publish"
    out_dir: str
    files: list[str]
    card_findings: list[str] = Field(default_factory=list)
    target: str | None = None  # `fr-agent publish`: where the release went
    commit: str | None = None
    changed: bool | None = None


class RunFinishedEvent(EventBase):
    event: Literal["run_finished"] = "run_finished"
    status: str
    reason: str
    fixes: list[dict[str, Any]] = Field(default_factory=list)  # the loop's fix records (a replay's: RecipeChange dumps)
    passed: list[str] = Field(default_factory=list)
    replay_of: str | None = None


class NoteEvent(EventBase):
    event: Literal["note"] = "note"
    message: str
    reason: str | None = None
    planner: str | None = None  # the planner a fallback note is about
    passed_before: list[str] | None = None  # "resumed": the stages that had passed
    ok: bool | None = None  # repairbench verify
    scenario: str | None = None  # repairbench: the fault injected
    perturbation: dict[str, Any] | None = None


class LLMCallEvent(EventBase):
    """One request to the LLM: a planning turn (`plan`) or the capability probe (`probe`)."""

    event: Literal["llm_call"] = "llm_call"
    purpose: Literal["plan", "probe"]
    model: str
    endpoint: str
    total_tokens: int = 0
    latency_s: float | None = None
    error: str | None = None  # probe
    turn: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    usage_estimated: bool = False
    cost_usd: float = 0.0
    finish_reason: str | None = None
    calls: list[str] = Field(default_factory=list)
    native_calls: bool | None = None
    think_tags: bool | None = None
    reasoning_chars: int | None = None
    round_tokens: int | None = None
    run_tokens: int | None = None
    dropped_features: int | None = None


class ChatEvent(EventBase):
    """A user's hint delivered to the planner, or the planner's words back."""

    event: Literal["chat"] = "chat"
    role: Literal["user", "planner"]
    text: str
    hint_id: str | None = None
    source: str | None = None  # a hint's: session or cli


EVENT_CLASSES: tuple[type[EventBase], ...] = (
    RunStartedEvent,
    AnalysisEvent,
    PrecheckEvent,
    StageEvent,
    DiagnosisEvent,
    PlanEvent,
    ToolCallEvent,
    VerificationEvent,
    EvalEvent,
    PublishEvent,
    RunFinishedEvent,
    NoteEvent,
    LLMCallEvent,
    ChatEvent,
)
Event = Annotated[
    RunStartedEvent
    | AnalysisEvent
    | PrecheckEvent
    | StageEvent
    | DiagnosisEvent
    | PlanEvent
    | ToolCallEvent
    | VerificationEvent
    | EvalEvent
    | PublishEvent
    | RunFinishedEvent
    | NoteEvent
    | LLMCallEvent
    | ChatEvent,
    Field(discriminator="event"),
]
EventKind = Literal[
    "run_started",
    "analysis",
    "precheck",
    "stage",
    "diagnosis",
    "plan",
    "tool_call",
    "verification",
    "eval",
    "publish",
    "run_finished",
    "note",
    "llm_call",
    "chat",
]
CLASS_OF_KIND: dict[str, type[EventBase]] = {cls.model_fields["event"].default: cls for cls in EVENT_CLASSES}
ENVELOPE = frozenset(EventBase.model_fields) | {"event"}
EVENT_ADAPTER = TypeAdapter(Event)


class Transcript:
    def __init__(self, path: Path, run_id: str):
        self.path = path
        self.run_id = run_id
        self.listeners: list[Callable[[Event], None]] = []
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open_private(path, "a", encoding="utf-8")  # 0600: the run's own record

    def emit(self, kind: EventKind, attempt: int = 0, **fields: Any) -> Event:
        """Validate one event, write it redacted, hand it (redacted) to the listeners, return it."""
        cls = CLASS_OF_KIND.get(kind)
        if cls is None:
            raise ValueError(f"unknown transcript event kind {kind!r}")
        unknown = sorted(fields.keys() - (cls.model_fields.keys() - ENVELOPE))
        if unknown:
            raise ValueError(f"a {kind} event has no field {', '.join(unknown)}")
        checked = cls(run_id=self.run_id, attempt=attempt, ts=datetime.now(UTC), **fields)
        record = {
            key: redact_value(key, value) for key, value in checked.model_dump(mode="json", exclude_unset=True).items()
        }
        record = {"event": kind, **record}
        event = EVENT_ADAPTER.validate_python(record)
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        for listener in self.listeners:
            listener(event)
        return event

    def close(self) -> None:
        self._file.close()


def read_events(path: Path) -> list[Event]:
    """A transcript's events in order. A line that is not JSON is a torn write (a killed writer) and is
    skipped; a JSON line that is no event means this is no transcript of this fr-agent: a FrAgentError."""
    events: list[Event] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            try:
                events.append(EVENT_ADAPTER.validate_python(record))
            except ValidationError as err:
                raise FrAgentError(f"{path}: line {number} is not a transcript event ({first_error(err)})") from None
    return events


E = TypeVar("E", bound=EventBase)


def of_kind(events: Iterable[Event], kind: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, kind)]


def first(events: Iterable[Event], kind: type[E]) -> E | None:
    return next((e for e in events if isinstance(e, kind)), None)


def last(events: Sequence[Event], kind: type[E]) -> E | None:
    return next((e for e in reversed(events) if isinstance(e, kind)), None)
