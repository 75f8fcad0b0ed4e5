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

from pathlib import Path

REQUEST = "request.json"
TRANSCRIPT = "transcript.jsonl"
CHECKPOINTS = "checkpoints.sqlite"
HINTS = "hints.jsonl"
EVAL_JSON = "eval.json"
EVAL_CHART = "eval.png"
SANDBOX = "sandbox"
PUBLISH = "publish"


class RunFiles:
    """The paths of one run's folder."""

    def __init__(self, root: Path):
        self.root = root
        self.request = root / REQUEST
        self.transcript = root / TRANSCRIPT
        self.checkpoints = root / CHECKPOINTS
        self.hints = root / HINTS
        self.eval_json = root / EVAL_JSON
        self.eval_chart = root / EVAL_CHART
        self.sandbox = root / SANDBOX
        self.publish = root / PUBLISH
