"""Transcripts: append-only JSON lines of typed events, written as they happen, secrets redacted.

One file per run (`runs/<run_id>/transcript.jsonl`). Each line has `event`, `run_id`, `attempt`, `ts`
and the event's own fields, so a person can replay it and a program can diff two runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict

from fr_agent.core.secrets import redact_value

EventKind = Literal[
    "run_started", "analysis", "precheck", "stage", "diagnosis", "plan", "tool_call",
    "verification", "eval", "publish", "run_finished", "note",
    "llm_call", "chat",  # one request to the LLM planner (tokens, cost, latency); a user hint or a planner reply
]


class Event(BaseModel):
    model_config = ConfigDict(extra="allow")

    event: EventKind


def _redact(_, __, event_dict: dict) -> dict:
    return {key: redact_value(key, value) for key, value in event_dict.items()}


class Transcript:
    def __init__(self, path: Path, run_id: str):
        self.path = path
        self.run_id = run_id
        self.listeners: list[Callable[[dict], None]] = []
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self._log = structlog.wrap_logger(
            structlog.WriteLogger(self._file),
            processors=[
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
                _redact,
                structlog.processors.JSONRenderer(sort_keys=False, default=str),
            ],
        ).bind(run_id=run_id)

    def emit(self, event: EventKind, attempt: int = 0, **fields: Any) -> dict:
        record = Event(event=event, **fields).model_dump(mode="json")
        record.pop("event")
        self._log.msg(event, attempt=attempt, **record)
        self._file.flush()
        line = {"event": event, "run_id": self.run_id, "attempt": attempt, **record}
        for listener in self.listeners:
            listener(_redact(None, None, line))
        return line

    def close(self) -> None:
        self._file.close()


def read_events(path: Path) -> Iterator[dict]:
    """Events of a transcript; a torn last line (a killed writer) is skipped, not fatal."""
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue
