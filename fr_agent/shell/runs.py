"""Runs on disk: one directory per run (request, transcript, checkpoints, sandbox, publish folder),
and the driver that starts or resumes the checkpointed graph."""

from __future__ import annotations

import json
import re
import secrets as random
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command
from pydantic import BaseModel

from fr_agent.agents.repair import Runtime, build_graph
from fr_agent.core.catalog import load_catalog
from fr_agent.core.hints import HintBox
from fr_agent.core.config import Settings
from fr_agent.core.errors import FrAgentError, RunPaused
from fr_agent.playbooks.planner import check_planner, make_planner
from fr_agent.sandboxes.local import HostSandbox, LocalSandbox
from fr_agent.core.events import Transcript, read_events

Approver = Callable[[dict], dict]


class RunRequest(BaseModel):
    model: str
    chip: str
    planner: str = "playbook"
    sandbox: str = "local"
    with_flaggems: bool = False
    engine: Literal["vllm", "hf"] | None = None
    catalog: str | None = None


def new_run_id(request: RunRequest) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(request.model).name).strip("-").lower()[:40]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{slug}-{request.chip}-{random.token_hex(2)}"


def run_dirs(settings: Settings) -> list[Path]:
    if not settings.runs_dir.is_dir():
        return []
    return sorted((p for p in settings.runs_dir.iterdir() if (p / "request.json").exists()), key=lambda p: p.name)


def find_run(settings: Settings, run: str) -> Path:
    runs = run_dirs(settings)
    if run == "latest":
        if not runs:
            raise FrAgentError(f"no runs under {settings.runs_dir}")
        return max(runs, key=lambda p: (p / "request.json").stat().st_mtime)
    matches = [p for p in runs if p.name == run] or [p for p in runs if p.name.startswith(run)]
    if len(matches) != 1:
        raise FrAgentError(f"no run {run!r} under {settings.runs_dir}" if not matches else f"run {run!r} is ambiguous")
    return matches[0]


def open_runtime(run_dir: Path, request: RunRequest, settings: Settings, auto_approve: bool) -> Runtime:
    catalog = load_catalog(request.catalog)
    chip = catalog.chip(request.chip)  # unknown chips fail before anything is written
    if request.sandbox not in ("local", "docker", "host"):
        raise FrAgentError(f"unknown sandbox {request.sandbox!r}; use 'local', 'docker' or 'host'")
    if request.sandbox == "docker":
        from fr_agent.sandboxes.docker import DockerSandbox

        sandbox = DockerSandbox(run_dir / "sandbox", run_dir.name, chip, settings.cache_dir, settings.hf_home,
                                settings=settings.sandbox.docker, home=settings.home,
                                output_cap=settings.sandbox.output_cap_bytes, find_links=settings.sandbox.find_links)
    else:
        sandbox = (HostSandbox if request.sandbox == "host" else LocalSandbox)(
            run_dir / "sandbox", settings.cache_dir, settings.hf_home,
            output_cap=settings.sandbox.output_cap_bytes, find_links=settings.sandbox.find_links)
    return Runtime(run_id=run_dir.name, run_dir=run_dir, settings=settings, catalog=catalog, sandbox=sandbox,
                   planner=make_planner(request.planner, settings, run_dir),
                   transcript=Transcript(run_dir / "transcript.jsonl", run_dir.name),
                   auto_approve=auto_approve, hints=HintBox(run_dir))


def drive(rt: Runtime, first_input: Any, approver: Approver | None) -> dict:
    """Run the graph to its end, answering approval interrupts through `approver`."""
    with SqliteSaver.from_conn_string(str(rt.run_dir / "checkpoints.sqlite")) as saver:
        app = build_graph(rt).compile(checkpointer=saver)
        config = {"configurable": {"thread_id": rt.run_id}, "recursion_limit": 1000}
        payload = first_input
        try:
            while True:
                result = app.invoke(payload, config)
                pending = result.get("__interrupt__") if isinstance(result, dict) else None
                if not pending:
                    return app.get_state(config).values
                if approver is None:
                    raise FrAgentError("a fix needs approval but no one can answer: pass --yes")
                payload = Command(resume=approver(pending[0].value))
        finally:
            rt.live.stop_server()


def drive_recorded(rt: Runtime, first_input: Any, approver: Approver | None,
                   on_event: Callable[[dict], None] | None) -> dict:
    """Drive a started or resumed run with its transcript open; bad input found mid-run ends the transcript."""
    if on_event:
        rt.transcript.listeners.append(on_event)
    try:
        return drive(rt, first_input, approver)
    except RunPaused as err:  # stopped on purpose and resumable: no run_finished
        rt.transcript.emit("note", message="paused", reason=str(err))
        raise
    except FrAgentError as err:
        rt.transcript.emit("run_finished", status="error", reason=str(err), fixes=[], passed=[])
        raise
    finally:
        rt.transcript.close()


def start_run(request: RunRequest, settings: Settings, *, auto_approve: bool, approver: Approver | None,
              on_event: Callable[[dict], None] | None = None, run_id: str | None = None) -> tuple[Path, dict]:
    load_catalog(request.catalog).chip(request.chip)
    check_planner(request.planner, settings)  # a bad --planner fails before anything is written
    if run_id is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}", run_id):
        raise FrAgentError(f"invalid run id {run_id!r}: letters, digits, '.', '_' and '-' only")
    run_dir = settings.runs_dir / (run_id or new_run_id(request))
    if run_dir.exists():
        raise FrAgentError(f"run {run_dir.name} already exists; resume it with `fr-agent resume {run_dir.name}`")
    run_dir.mkdir(parents=True)
    (run_dir / "request.json").write_text(request.model_dump_json(indent=2))
    rt = open_runtime(run_dir, request, settings, auto_approve)
    rt.transcript.emit("run_started", request=request.model_dump(), run_dir=str(run_dir))
    for kind, fields in getattr(rt.planner, "start_events", []):  # e.g. what `--planner auto` chose, and why
        rt.transcript.emit(kind, **fields)
    return run_dir, drive_recorded(rt, {"request": request.model_dump(), "status": "running", "reason": ""},
                                   approver, on_event)


def resume_run(run_dir: Path, settings: Settings, *, auto_approve: bool, approver: Approver | None,
               on_event: Callable[[dict], None] | None = None) -> dict:
    request = RunRequest.model_validate_json((run_dir / "request.json").read_text())
    events = list(read_events(run_dir / "transcript.jsonl"))
    if any(e["event"] == "run_finished" for e in events):
        raise FrAgentError(f"run {run_dir.name} already finished; nothing to resume")
    rt = open_runtime(run_dir, request, settings, auto_approve)
    rt.transcript.emit("note", message="resumed", passed_before=[e["stage"] for e in events if e["event"] == "stage" and e.get("ok")])
    for kind, fields in getattr(rt.planner, "start_events", []):
        rt.transcript.emit(kind, **fields)
    with SqliteSaver.from_conn_string(str(run_dir / "checkpoints.sqlite")) as saver:
        has_checkpoint = saver.get_tuple({"configurable": {"thread_id": run_dir.name}}) is not None
    first = None if has_checkpoint else {"request": request.model_dump(), "status": "running", "reason": ""}
    return drive_recorded(rt, first, approver, on_event)


def summarize(run_dir: Path) -> dict:
    """One object per run, folded from its transcript: what `transcripts show --json` prints."""
    events = list(read_events(run_dir / "transcript.jsonl")) if (run_dir / "transcript.jsonl").exists() else []
    request = json.loads((run_dir / "request.json").read_text())
    finished = next((e for e in reversed(events) if e["event"] == "run_finished"), None)
    last_note = next((e for e in reversed(events) if e["event"] == "note" and e.get("message") in ("paused", "resumed")), None)
    paused = last_note if last_note and last_note["message"] == "paused" else None
    eval_event = next((e for e in reversed(events) if e["event"] == "eval"), None)
    publish_event = next((e for e in reversed(events) if e["event"] == "publish"), None)
    stages = [{k: e.get(k) for k in ("attempt", "stage", "ok", "detail", "duration_s", "log_path")}
              for e in events if e["event"] == "stage"]
    fixes = [{k: e.get(k) for k in ("tool", "args", "attempt", "detail")} | {"verified": True}
             for e in events if e["event"] == "verification" and e.get("ok")]
    eval_summary = None
    if eval_event:
        eval_summary = {k: v for k, v in eval_event.items() if k not in ("event", "run_id", "ts", "attempt")}
    return {
        "run_id": run_dir.name,
        "model": request["model"],
        "chip": request["chip"],
        "status": finished["status"] if finished else ("paused" if paused else "unfinished"),
        "reason": finished["reason"] if finished else (paused["reason"] if paused else
                                                       "run did not finish (resume it with `fr-agent resume`)"),
        "attempts": max((e.get("attempt", 0) for e in events), default=0),
        "stages": stages,
        "fixes": fixes,
        "eval": eval_summary,
        "publish_dir": publish_event["out_dir"] if publish_event else None,
        "transcript": str(run_dir / "transcript.jsonl"),
        "started": events[0]["ts"] if events else None,
        "finished": finished["ts"] if finished else None,
    }
