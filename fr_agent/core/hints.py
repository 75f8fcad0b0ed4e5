"""Hints a user sends to a live run's planner: `runs/<id>/hints.jsonl`, appended by the chat session's
stdin or `fr-agent hint RUN "text"` from another terminal. The loop keeps the ids it has delivered in
its state, so a resumed run never delivers a hint twice."""

from __future__ import annotations

import os
import secrets as random
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from fr_agent.core.errors import FrAgentError
from fr_agent.core.paths import HINTS

MAX_HINT_CHARS = 2000


class Hint(BaseModel):
    id: str
    text: str
    source: Literal["session", "cli"]
    ts: str


class HintBox:
    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.path = run_dir / HINTS

    def add(self, text: str, source: Literal["session", "cli"]) -> Hint:
        text = " ".join(text.split())
        if not text:
            raise FrAgentError("a hint needs some text")
        if len(text) > MAX_HINT_CHARS:
            raise FrAgentError(f"a hint is at most {MAX_HINT_CHARS} characters")
        hint = Hint(id=random.token_hex(4), text=text, source=source, ts=datetime.now(UTC).isoformat())
        line = (hint.model_dump_json() + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)  # one write of one line: appends from two processes do not interleave
        finally:
            os.close(fd)
        return hint

    def all(self) -> list[Hint]:
        if not self.path.exists():
            return []
        hints = []
        for line in self.path.read_text().splitlines():
            try:
                hints.append(Hint.model_validate_json(line))
            except ValueError:
                continue  # a torn line from a killed writer
        return hints

    def pending(self, delivered: set[str] | list[str] = ()) -> list[Hint]:
        """Hints not yet delivered, in the order they were sent."""
        return [h for h in self.all() if h.id not in set(delivered)]
