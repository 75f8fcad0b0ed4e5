"""One run's folder: the name of every file in it, spelled once.

    runs/<run_id>/request.json        what was asked (RunRequest)
                  transcript.jsonl    typed events, append-only (core/events.py)
                  checkpoints.sqlite  the graph's checkpoints (langgraph SqliteSaver)
                  hints.jsonl         hints sent to the live planner (core/hints.py)
                  eval.json, eval.png the eval report and its chart
                  sandbox/            the sandbox's venv or image state, work dir and logs
                  publish/            the release
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REQUEST = "request.json"
TRANSCRIPT = "transcript.jsonl"
CHECKPOINTS = "checkpoints.sqlite"
HINTS = "hints.jsonl"
EVAL_JSON = "eval.json"
EVAL_CHART = "eval.png"
SANDBOX = "sandbox"
PUBLISH = "publish"


@dataclass(frozen=True)
class RunFiles:
    """The paths of one run's folder."""

    root: Path

    @property
    def request(self) -> Path:
        return self.root / REQUEST

    @property
    def transcript(self) -> Path:
        return self.root / TRANSCRIPT

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def hints(self) -> Path:
        return self.root / HINTS

    @property
    def eval_json(self) -> Path:
        return self.root / EVAL_JSON

    @property
    def eval_chart(self) -> Path:
        return self.root / EVAL_CHART

    @property
    def sandbox(self) -> Path:
        return self.root / SANDBOX

    @property
    def publish(self) -> Path:
        return self.root / PUBLISH
