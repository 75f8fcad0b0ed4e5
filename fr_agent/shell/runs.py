"""A run: one folder (core/paths.py names its files) and its lifecycle. `Run` is the only owner: it
creates or opens the folder, writes the request, opens the sandbox, planner and transcript, and drives
the checkpointed graph (agents/repair.py) to its end or to a stop the caller asked for. The CLI,
batch, the repair bench, replay and publish all go through it."""

from __future__ import annotations

import re
import secrets as random
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command
from pydantic import ValidationError

from fr_agent.agents.release import Release, render_release
from fr_agent.agents.repair import build_graph
from fr_agent.agents.run_state import STATE_TYPES, Replay, RunContext, RunState
from fr_agent.core.catalog import load_catalog
from fr_agent.core.config import Settings
from fr_agent.core.errors import FrAgentError, RunPaused
from fr_agent.core.events import (
    EvalEvent,
    Event,
    NoteEvent,
    PublishEvent,
    RunFinishedEvent,
    StageEvent,
    Transcript,
    VerificationEvent,
    last,
    of_kind,
    read_events,
)
from fr_agent.core.paths import REQUEST, RunFiles
from fr_agent.core.request import RunRequest
from fr_agent.core.secrets import make_private_dir, write_private
from fr_agent.core.types import first_error
from fr_agent.evals.report import EvalReport
from fr_agent.playbooks.planner import check_planner, make_planner
from fr_agent.sandboxes.base import Sandbox
from fr_agent.sandboxes.docker import DockerSandbox
from fr_agent.sandboxes.local import HostSandbox, LocalSandbox

Approver = Callable[[dict], dict]
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}")


def new_run_id(request: RunRequest) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(request.model).name).strip("-").lower()[:40]
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{slug}-{request.chip}-{random.token_hex(2)}"


def run_dirs(settings: Settings) -> list[Path]:
    if not settings.runs_dir.is_dir():
        return []
    return sorted((p for p in settings.runs_dir.iterdir() if (p / REQUEST).exists()), key=lambda p: p.name)


def started(run_dir: Path) -> bool:
    """A run whose request reads and that wrote its first event (one stopped by bad input may hold only its
    request, or a broken one)."""
    try:
        read_request(run_dir)
        return RunFiles(run_dir).transcript.stat().st_size > 0
    except (FrAgentError, OSError):
        return False


def find_run(settings: Settings, ref: str) -> Path:
    """A run's folder by id, unique prefix, or 'latest': the newest run that started and whose request reads."""
    runs = run_dirs(settings)
    if ref == "latest":
        newest_first = sorted(runs, key=lambda p: (p / REQUEST).stat().st_mtime, reverse=True)
        found = next((p for p in newest_first if started(p)), None)
        if found is None:
            raise FrAgentError(f"no started runs under {settings.runs_dir}")
        return found
    matches = [p for p in runs if p.name == ref] or [p for p in runs if p.name.startswith(ref)]
    if len(matches) != 1:
        raise FrAgentError(f"no run {ref!r} under {settings.runs_dir}" if not matches else f"run {ref!r} is ambiguous")
    return matches[0]


def read_request(root: Path) -> RunRequest:
    try:
        return RunRequest.model_validate_json((root / REQUEST).read_text())
    except (OSError, ValueError) as err:  # ValidationError is a ValueError
        first = first_error(err) if isinstance(err, ValidationError) else str(err)
        raise FrAgentError(f"run {root.name}: broken {REQUEST}: {first}") from None


class Run:
    """One run. Open it with `create`, `open` or `replay_of`; use it as a context manager so its engine
    server, sandbox processes and transcript are closed however the caller leaves."""

    def __init__(self, root: Path, request: RunRequest, settings: Settings, *, replay: Replay | None = None):
        self.files = RunFiles(root)
        self.request = request
        self.settings = settings
        self.replay = replay
        self.next: tuple[str, ...] = ()  # where the graph stopped, when a drive stopped before its end
        self._context: RunContext | None = None
        self._started_here = False

    @property
    def id(self) -> str:
        return self.files.root.name

    @property
    def context(self) -> RunContext:
        """The open run's sandbox, planner and transcript (after its first `drive`)."""
        if self._context is None:
            raise RuntimeError(f"run {self.id} is not open: drive it first")
        return self._context

    # --- where runs come from ---------------------------------------------------------------------

    @classmethod
    def create(
        cls, request: RunRequest, settings: Settings, *, run_id: str | None = None, replay: Replay | None = None
    ) -> Run:
        """A new run's folder with its request; everything that can be refused is refused before it exists."""
        load_catalog(request.catalog).chip(request.chip)  # an unknown chip fails before anything is written
        check_planner(request.planner, settings)
        if run_id is not None and not RUN_ID.fullmatch(run_id):
            raise FrAgentError(f"invalid run id {run_id!r}: letters, digits, '.', '_' and '-' only")
        root = settings.runs_dir / (run_id or new_run_id(request))
        if root.exists():
            raise FrAgentError(f"run {root.name} already exists; resume it with `fr-agent resume {root.name}`")
        make_private_dir(root)  # 0700: nothing of a run (transcript, logs, checkpoints) is for other users
        run = cls(root, request, settings, replay=replay)
        write_private(run.files.request, request.model_dump_json(indent=2))
        run._started_here = True
        return run

    @classmethod
    def open(cls, settings: Settings, ref: str) -> Run:
        root = find_run(settings, ref)
        return cls(root, read_request(root), settings)

    @classmethod
    def replay_of(cls, source: Run, replay: Replay, settings: Settings, *, sandbox: str | None = None) -> Run:
        request = source.request.model_copy(update={"planner": "replay", **({"sandbox": sandbox} if sandbox else {})})
        return cls.create(request, settings, run_id=f"{source.id}-replay-{random.token_hex(2)}", replay=replay)

    # --- what a run holds -------------------------------------------------------------------------

    def events(self) -> list[Event]:
        return read_events(self.files.transcript) if self.files.transcript.exists() else []

    def finished(self) -> bool:
        return last(self.events(), RunFinishedEvent) is not None

    def state(self) -> RunState | None:
        """The last checkpointed state, or None before the graph's first step."""
        if not self.files.checkpoints.exists():
            return None
        with self._saver() as saver:
            found = saver.get_tuple({"configurable": {"thread_id": self.id}})
        return RunState.model_validate(found.checkpoint["channel_values"]) if found else None

    def summary(self) -> dict:
        """One object, folded from the transcript: what `transcripts show --json` prints."""
        events = self.events()
        finished = last(events, RunFinishedEvent)
        last_note = next((e for e in reversed(of_kind(events, NoteEvent)) if e.message in ("paused", "resumed")), None)
        paused = last_note if last_note and last_note.message == "paused" else None
        evaluated, published = last(events, EvalEvent), last(events, PublishEvent)
        return {
            "run_id": self.id,
            "model": self.request.model,
            "chip": self.request.chip,
            "status": finished.status if finished else ("paused" if paused else "unfinished"),
            "reason": finished.reason
            if finished
            else (paused.reason if paused else "run did not finish (resume it with `fr-agent resume`)"),
            "attempts": max((e.attempt for e in events), default=0),
            "stages": [
                {
                    "attempt": e.attempt,
                    "stage": e.stage,
                    "ok": e.ok,
                    "detail": e.detail,
                    "duration_s": e.duration_s,
                    "log_path": e.log_path,
                }
                for e in of_kind(events, StageEvent)
            ],
            "fixes": [
                {"tool": e.tool, "args": e.args, "attempt": e.attempt, "detail": e.detail, "verified": True}
                for e in of_kind(events, VerificationEvent)
                if e.ok
            ],
            "eval": evaluated.summary() if evaluated else None,
            "publish_dir": published.out_dir if published else None,
            "transcript": str(self.files.transcript),
            "started": events[0].ts.isoformat() if events else None,
            "finished": finished.ts.isoformat() if finished else None,
        }

    def release(self, license: str | None = None) -> Release:
        """The run's release folder rendered again from its checkpointed recipe and its eval (same bytes)."""
        state = self.state()
        if state is None or state.recipe is None or not self.files.eval_json.exists():
            raise FrAgentError(f"run {self.id} has no eval: it stopped before the eval agent ran")
        report = EvalReport.model_validate_json(self.files.eval_json.read_text())
        chip = load_catalog(self.request.catalog).chips.get(state.recipe.chip)
        return render_release(
            state.recipe,
            report,
            self.files.publish,
            run_id=self.id,
            chip_description=chip.description if chip else "",
            license=license or (state.analysis.license if state.analysis else None) or "apache-2.0",
        )

    def record(self, kind: str, **fields) -> None:
        """Append one event to the transcript of a run that is not being driven (e.g. a later publish)."""
        if self._context is not None:
            self._context.emit(kind, **fields)
            return
        transcript = Transcript(self.files.transcript, self.id)
        try:
            transcript.emit(kind, **fields)
        finally:
            transcript.close()

    # --- driving ----------------------------------------------------------------------------------

    def drive(
        self,
        *,
        auto_approve: bool,
        approver: Approver | None = None,
        on_event: Callable[[Any], None] | None = None,
        stop_before: Sequence[str] = (),
        update: dict | None = None,
    ) -> RunState:
        """Run the graph until it ends or reaches a node in `stop_before` (then `self.next` names it),
        answering approval interrupts through `approver`. `update` changes the state before going on
        (the repair bench injects its fault so). Bad input found mid-run ends the transcript."""
        rt = self._open(auto_approve)
        if on_event and on_event not in rt.transcript.listeners:
            rt.transcript.listeners.append(on_event)
        with self._saver() as saver:
            app = build_graph().compile(checkpointer=saver, interrupt_before=list(stop_before) or None)
            config = {"configurable": {"thread_id": self.id}, "recursion_limit": 1000}
            payload = self._first_input(saver, config, update)
            try:
                while True:
                    result = app.invoke(payload, config, context=rt)
                    pending = result.get("__interrupt__") if isinstance(result, dict) else None
                    snapshot = app.get_state(config)
                    self.next = tuple(snapshot.next)
                    if not pending:
                        return RunState.model_validate(snapshot.values)
                    payload = Command(resume=self._answer(pending[0].value, approver))
            except RunPaused as err:  # stopped on purpose and resumable: no run_finished
                rt.emit("note", message="paused", reason=str(err))
                raise
            except FrAgentError as err:
                rt.emit("run_finished", status="error", reason=str(err), fixes=[], passed=[])
                raise

    @staticmethod
    def _answer(request: dict, approver: Approver | None) -> dict:
        """An approval request answered by the person at the session; with no one there, a fix that needs an
        explicit approval is declined (recorded with why), and any other is an error: pass --yes."""
        if approver is not None:
            return approver(request)
        if request.get("needs_approval"):
            return {
                "decision": "decline",
                "reason": f"needs explicit approval ({request['needs_approval']}) "
                "and no one can answer: run it on a terminal",
            }
        raise FrAgentError("a fix needs approval but no one can answer: pass --yes")

    def close(self) -> None:
        if self._context is not None:
            self._context.live.stop_server()
            self._context.transcript.close()
            self._context = None

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- inside -------------------------------------------------------------------------------------

    @contextmanager
    def _saver(self) -> Iterator[SqliteSaver]:
        """The checkpoint store, with a serializer that rebuilds only the state's own types."""
        with closing(sqlite3.connect(str(self.files.checkpoints), check_same_thread=False)) as conn:
            yield SqliteSaver(conn, serde=JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES))

    def _first_input(self, saver: SqliteSaver, config: dict, update: dict | None) -> Any:
        if update is not None:
            return Command(update=update)
        if saver.get_tuple(config) is not None:
            return None  # go on from the checkpoint
        return RunState(request=self.request, replay=self.replay)

    def _open(self, auto_approve: bool) -> RunContext:
        if self._context is not None:
            return self._context
        if not self._started_here and self.finished():
            raise FrAgentError(f"run {self.id} already finished; nothing to resume")
        catalog = load_catalog(self.request.catalog)
        chip = catalog.chip(self.request.chip)
        planner = make_planner(self.request.planner, self.settings, self.files.root)
        transcript = Transcript(self.files.transcript, self.id)
        self._context = RunContext(
            files=self.files,
            settings=self.settings,
            catalog=catalog,
            sandbox=self._sandbox(chip),
            planner=planner,
            transcript=transcript,
            auto_approve=auto_approve,
        )
        if self._started_here:
            transcript.emit(
                "run_started",
                request=self.request.model_dump(),
                run_dir=str(self.files.root),
                **({"replay_of": self.replay.source} if self.replay else {}),
            )
        else:
            passed = [e.stage for e in of_kind(self.events(), StageEvent) if e.ok]
            transcript.emit("note", message="resumed", passed_before=passed)
        for kind, fields in planner.start_events:  # e.g. what `--planner auto` chose, and why
            transcript.emit(kind, **fields)
        return self._context

    def _sandbox(self, chip) -> Sandbox:
        settings, root = self.settings, self.files.sandbox
        common = {"output_cap": settings.sandbox.output_cap_bytes, "find_links": settings.sandbox.find_links}
        if self.request.sandbox == "docker":
            sandbox = DockerSandbox(
                root,
                self.id,
                chip,
                settings.cache_dir,
                settings.hf_home,
                settings=settings.sandbox.docker,
                home=settings.home,
                **common,
            )
        else:
            kind = HostSandbox if self.request.sandbox == "host" else LocalSandbox
            sandbox = kind(root, settings.cache_dir, settings.hf_home, **common)
        sandbox.install_timeout = settings.timeouts.install
        return sandbox


def summarize(run_dir: Path) -> dict:
    """One object per run, folded from its transcript: what `transcripts show --json` prints."""
    run = Run(run_dir, read_request(run_dir), Settings())
    return run.summary()
