"""Transcripts: typed JSON lines, written as they happen, secrets redacted, torn lines tolerated."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from fr_agent.core.events import Transcript, read_events


def test_events_are_json_lines_with_run_and_attempt(tmp_path):
    transcript = Transcript(tmp_path / "t.jsonl", "run-1")
    seen = []
    transcript.listeners.append(seen.append)
    transcript.emit("stage", attempt=2, stage="serve", ok=False, detail="boom")
    transcript.emit("tool_call", attempt=2, tool="set_env_var", args={"name": "HF_TOKEN", "value": "hf_abcdefghijklmnopqrstuvwxyz0123"})
    transcript.emit("note", message="api key sk-proj-abcdefghijklmnopqrstuvwxyz012345 in a log line")
    transcript.close()
    lines = (tmp_path / "t.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["event"] for r in records] == ["stage", "tool_call", "note"]
    assert all(r["run_id"] == "run-1" and "ts" in r for r in records) and records[0]["attempt"] == 2
    text = "\n".join(lines) + json.dumps(seen)
    assert "hf_abcdefghijklmnopqrstuvwxyz0123" not in text and "sk-proj-abcdefghijklmnopqrstuvwxyz012345" not in text
    assert records[1]["args"]["name"] == "HF_TOKEN"  # what was set stays reviewable; its value does not


def test_unknown_event_kinds_are_bugs(tmp_path):
    transcript = Transcript(tmp_path / "t.jsonl", "run-1")
    with pytest.raises(ValidationError):
        transcript.emit("made_up")


def test_a_torn_last_line_is_skipped(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"event": "stage", "attempt": 1}\n{"event": "sta')
    assert [e["event"] for e in read_events(path)] == ["stage"]
