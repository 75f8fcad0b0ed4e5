"""Transcripts: one typed event per line, validated when written, secrets redacted, one tolerant reader."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest
from pydantic import ValidationError

from fr_agent.core.errors import FrAgentError
from fr_agent.core.events import (
    CLASS_OF_KIND,
    EVENT_CLASSES,
    AnalysisEvent,
    EvalEvent,
    EventKind,
    RunFinishedEvent,
    StageEvent,
    ToolCallEvent,
    Transcript,
    first,
    last,
    of_kind,
    read_events,
)
from tests.tiny_facts import TINY_LLAMA_FACTS

RECORDS = Path(__file__).parents[2] / "evals" / "records"
RECIPE = {"model": {"name": "tiny-llama"}, "chip": "cpu", "base_image": "python:3.11-slim", "packages": []}
# One event of each kind, with the fields its emitter writes.
ONE_OF_EACH: dict[str, dict] = {
    "run_started": {"request": {"model": "tiny-llama", "chip": "cpu"}, "run_dir": "/runs/r1"},
    "analysis": {
        "model": {"name": "tiny-llama", "repo_id": "fr-agent/tiny-llama", "path": None},
        "chip": "cpu",
        "source": "fixture",
        "facts": TINY_LLAMA_FACTS,
        "notes": ["a note"],
        "recipe": RECIPE,
    },
    "precheck": {"ok": True, "checks": [{"name": "disk", "ok": True, "detail": "40 GB free", "required": True}]},
    "stage": {
        "stage": "serve",
        "ok": False,
        "detail": "boom",
        "duration_s": 3.5,
        "log_path": "/l/a1-serve.log",
        "timed_out": False,
    },
    "diagnosis": {
        "stage": "import",
        "category": "install_dependency",
        "params": {"package": "torchvision"},
        "evidence": ["No module named torchvision"],
        "tool_calls": [{"tool": "install_dependency", "args": {}}],
        "confidence": 0.9,
        "playbook": "missing-module",
        "explanation": "a module is missing",
        "facts": {"module": "torchvision"},
        "signature": "import:torchvision",
    },
    "plan": {
        "planner": "playbook",
        "tool": "install_dependency",
        "args": {"package": "torchvision"},
        "explanation": "a module is missing",
        "evidence": ["No module named torchvision"],
    },
    "tool_call": {
        "status": "rejected",
        "tool": "patch_operator",
        "args": {"op": "conv2d"},
        "error": "not checked",
        "planner": "llm",
    },
    "verification": {
        "tool": "install_dependency",
        "args": {"package": "torchvision"},
        "ok": True,
        "detail": "imports",
        "log_path": None,
    },
    "eval": {
        "gate_passed": True,
        "gate_reason": "0.2% < 5%",
        "avg_pct_diff": 0.2,
        "threshold_pct": 5.0,
        "perf_ratio": 1.1,
        "min_perf_ratio": 0.5,
        "reference_backend": "transformers float32",
        "migrated_backend": "hf bfloat16",
        "samples": 8,
        "duration_s": 12.0,
        "outcomes": [{"prompt": 1}],
        "metrics": [
            {
                "name": "top1_agreement",
                "suite": "consistency",
                "kind": "accuracy",
                "unit": "",
                "reference": 1.0,
                "migrated": 0.99,
                "abs_diff": 0.01,
                "pct_diff": 1.0,
                "higher_is_better": True,
                "samples": 8,
            }
        ],
    },
    "publish": {"out_dir": "/runs/r1/publish", "files": ["README.md"], "card_findings": []},
    "run_finished": {
        "status": "passed",
        "reason": "migrated",
        "passed": ["install"],
        "fixes": [
            {
                "tool": "install_dependency",
                "args": {"package": "torchvision"},
                "attempt": 1,
                "verified": True,
                "detail": "imports",
                "for_stage": "import",
                "signature": "x",
            }
        ],
    },
    "note": {"message": "resumed", "passed_before": ["install"]},
    "llm_call": {
        "purpose": "plan",
        "model": "m",
        "endpoint": "http://x/v1",
        "turn": 1,
        "prompt_tokens": 90,
        "completion_tokens": 10,
        "total_tokens": 100,
        "usage_estimated": False,
        "cost_usd": 0.001,
        "latency_s": 0.5,
        "finish_reason": "tool_calls",
        "calls": ["read_log"],
        "native_calls": True,
        "think_tags": False,
        "reasoning_chars": 0,
        "round_tokens": 100,
        "run_tokens": 100,
        "dropped_features": 0,
    },
    "chat": {"role": "user", "text": "try float16", "hint_id": "ab12cd34", "source": "cli"},
}


def test_every_kind_has_one_class_and_a_sample():
    assert set(typing.get_args(EventKind)) == set(CLASS_OF_KIND) == set(ONE_OF_EACH)
    assert len(EVENT_CLASSES) == len(CLASS_OF_KIND)


@pytest.mark.parametrize("kind", sorted(ONE_OF_EACH))
def test_each_kind_round_trips_typed(tmp_path, kind):
    transcript = Transcript(tmp_path / "t.jsonl", "run-1")
    heard = []
    transcript.listeners.append(heard.append)
    emitted = transcript.emit(kind, attempt=2, **ONE_OF_EACH[kind])
    transcript.close()
    [read] = read_events(tmp_path / "t.jsonl")
    assert type(read) is type(emitted) is CLASS_OF_KIND[kind] and heard == [emitted] == [read]
    assert (read.event, read.run_id, read.attempt, read.ts.tzinfo is not None) == (kind, "run-1", 2, True)
    line = json.loads((tmp_path / "t.jsonl").read_text())
    assert list(line)[:4] == ["event", "run_id", "attempt", "ts"]
    assert {k: v for k, v in line.items() if k not in ("event", "run_id", "attempt", "ts")} == ONE_OF_EACH[kind]


def test_typed_fields_and_helpers(tmp_path):
    transcript = Transcript(tmp_path / "t.jsonl", "run-1")
    for kind in ("analysis", "stage", "eval", "stage", "run_finished"):
        transcript.emit(kind, attempt=1, **ONE_OF_EACH[kind])
    transcript.close()
    events = read_events(tmp_path / "t.jsonl")
    analysis = first(events, AnalysisEvent)
    assert analysis is not None and analysis.facts.params_b == 0.002 and analysis.model.name == "tiny-llama"
    assert [s.stage for s in of_kind(events, StageEvent)] == ["serve", "serve"]
    evaluated = last(events, EvalEvent)
    assert evaluated is not None and evaluated.metrics[0].pct_diff == 1.0
    assert evaluated.summary() == ONE_OF_EACH["eval"] | {"error": None}  # what `transcripts show --json` prints
    assert last(events, RunFinishedEvent).status == "passed" and last(events, ToolCallEvent) is None


def test_secrets_are_redacted_in_the_file_and_for_listeners(tmp_path):
    transcript = Transcript(tmp_path / "t.jsonl", "run-1")
    seen = []
    transcript.listeners.append(seen.append)
    transcript.emit(
        "tool_call",
        attempt=2,
        status="applied",
        tool="set_env_var",
        args={"name": "HF_TOKEN", "value": "hf_abcdefghijklmnopqrstuvwxyz0123"},
        change="set HF_TOKEN",
    )
    transcript.emit("note", message="api key sk-proj-abcdefghijklmnopqrstuvwxyz012345 in a log line")
    transcript.close()
    text = (tmp_path / "t.jsonl").read_text() + "".join(e.model_dump_json() for e in seen)
    assert "hf_abcdefghijklmnopqrstuvwxyz0123" not in text and "sk-proj-abcdefghijklmnopqrstuvwxyz012345" not in text
    assert seen[0].args == {
        "name": "HF_TOKEN",
        "value": "<redacted>",
    }  # what was set stays reviewable; its value does not
    assert read_events(tmp_path / "t.jsonl") == seen


def test_emit_rejects_unknown_kinds_unknown_fields_and_wrong_types(tmp_path):
    transcript = Transcript(tmp_path / "t.jsonl", "run-1")
    with pytest.raises(ValueError, match="unknown transcript event kind 'made_up'"):
        transcript.emit("made_up")
    with pytest.raises(ValueError, match="a stage event has no field dettail"):
        transcript.emit("stage", stage="serve", ok=True, dettail="typo")
    with pytest.raises(ValueError, match="has no field run_id"):  # the envelope is the transcript's to write
        transcript.emit("note", message="x", run_id="another")
    with pytest.raises(ValidationError):
        transcript.emit("stage", stage="serve", ok=True)  # detail is missing
    with pytest.raises(ValidationError):
        transcript.emit("tool_call", status="maybe", tool="t", args={})
    transcript.close()
    assert (tmp_path / "t.jsonl").read_text() == ""  # nothing half-written


def test_a_torn_line_is_skipped_and_older_fields_are_ignored(tmp_path):
    path = tmp_path / "t.jsonl"
    stage = {
        "event": "stage",
        "run_id": "r",
        "attempt": 1,
        "ts": "2026-11-23T14:00:00Z",
        "stage": "load",
        "ok": True,
        "detail": "ok",
        "duration_s": 1.0,
        "dropped_since": "an older field",
    }
    # A writer killed mid-line, then the run resumed: the torn line runs into the next one.
    path.write_text(json.dumps(stage) + '\n{"event": "sta' + json.dumps(stage) + "\n" + json.dumps(stage) + '\n{"ev')
    events = read_events(path)
    assert [type(e) for e in events] == [StageEvent, StageEvent] and events[0].stage == "load"


@pytest.mark.parametrize(
    "line",
    [
        '{"name": "not an event"}',
        '{"event": "made_up", "run_id": "r", "ts": "2026-11-23T14:00:00Z"}',
        '{"event": "stage", "run_id": "r", "ts": "2026-11-23T14:00:00Z", "ok": "maybe"}',
        "[1, 2]",
    ],
)
def test_a_json_line_that_is_no_event_is_a_one_line_error(tmp_path, line):
    path = tmp_path / "t.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(FrAgentError, match=r"t.jsonl: line 1 is not a transcript event \(") as err:
        read_events(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("record", sorted(RECORDS.glob("*/transcript.jsonl")), ids=lambda p: p.parent.name)
def test_recorded_transcripts_still_read(record):
    events = read_events(record)
    assert len(events) == len(record.read_text().splitlines())
    assert last(events, RunFinishedEvent).status == "passed" and last(events, EvalEvent).gate_passed
