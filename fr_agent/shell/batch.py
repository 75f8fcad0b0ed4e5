"""Headless batches: a matrix of model × chip × options, run with a concurrency limit, each job retried
with a fresh attempt budget, and durable: `fr-agent batch JOBS.yaml --resume` after a kill -9 redoes
nothing that already passed and continues unfinished runs from their checkpoints.

Each launch is its own `fr-agent run` (or `fr-agent resume`) process, so a crash stays contained. Its
run directory lives with every other run (`fr-agent transcripts show RUN` works on it). The batch
directory holds `batch.json` (the state, replaced atomically at most every second or so while launches
run, and whenever the session ends), a copy of the jobs file, and each launch's stdout/stderr. Executors
decide only where a launch runs: here (`LocalExecutor`) or on a Ray cluster (`fr_agent.shell.batch_ray`).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal, Protocol

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from fr_agent.core.catalog import load_catalog
from fr_agent.core.errors import FrAgentError
from fr_agent.core.events import read_events
from fr_agent.core.paths import RunFiles
from fr_agent.core.secrets import redact_text
from fr_agent.core.types import Strict, first_error
from fr_agent.sandboxes.local import stop_process_group
from fr_agent.shell.runs import summarize

# A job's outcome is its run's final status (passed, failed, precheck_failed, eval_failed, publish_failed, error,
# ...: whatever `run_finished` says) or what became of the process: crashed, timeout; or no_host (no executor
# host has the chip). Run statuses are the loop's to define, so they are not enumerated here.
Outcome = str
# Environment a launch needs wherever it runs; secrets are never copied here (a host's own env supplies them).
FORWARDED_ENV = ("HF_HOME", "HF_HUB_OFFLINE", "FR_AGENT_CATALOG")
# Writing batch.json costs O(jobs), so a running batch rewrites it at most this often (or after ten times
# its last write's duration, if longer); a session always writes it when it ends.
SAVE_EVERY_S = 1.0


# ---------------------------------------------------------------------------------------------- jobs file


class JobOptions(Strict):
    """What `fr-agent run` takes besides MODEL and --chip."""

    engine: Literal["vllm", "hf"] | None = None
    planner: str = "playbook"
    sandbox: str = "local"
    with_flaggems: bool = False
    config: str | None = Field(None, description="settings YAML for the run (limits, timeouts)")


class Job(JobOptions):
    model: str = Field(min_length=1)
    chip: str = Field(min_length=1)

    @property
    def id(self) -> str:
        """Readable and stable: `tiny-llama@cpu`, plus every option that differs from the default."""
        extra = [
            f"{k}={_short(k, v)}" for k in JobOptions.model_fields if (v := getattr(self, k)) != getattr(DEFAULTS, k)
        ]
        local = self.model.startswith(("/", ".", "~"))
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(self.model).name if local else self.model).strip("-")
        return f"{slug}@{self.chip}" + "".join(f"+{re.sub(r'[^A-Za-z0-9._=-]+', '-', e)}" for e in extra)

    def run_args(self, run_id: str, catalog: str | None) -> list[str]:
        args = [
            "run",
            self.model,
            "--chip",
            self.chip,
            "--yes",
            "--json",
            "--run-id",
            run_id,
            "--planner",
            self.planner,
            "--sandbox",
            self.sandbox,
        ]
        if self.engine:
            args += ["--engine", self.engine]
        if self.with_flaggems:
            args.append("--with-flaggems")
        if catalog:
            args += ["--catalog", catalog]
        if self.config:
            args += ["--config", self.config]
        return args

    def resume_args(self, run_id: str) -> list[str]:
        return ["resume", run_id, "--yes", "--json"] + (["--config", self.config] if self.config else [])


DEFAULTS = JobOptions()


def _short(key: str, value) -> str:
    """File options by file name in a job id."""
    if key == "config":
        return Path(value).name
    if key == "planner" and value.startswith("script:"):
        return "script:" + Path(value.removeprefix("script:")).name
    return str(value)


class JobFilter(Strict):
    """A partial job: a matrix job matching every key given here is left out."""

    model: str | None = None
    chip: str | None = None
    engine: Literal["vllm", "hf"] | None = None
    planner: str | None = None
    sandbox: str | None = None
    with_flaggems: bool | None = None
    config: str | None = None

    def matches(self, job: Job) -> bool:
        return all(getattr(job, k) == v for k, v in self.model_dump(exclude_unset=True).items())


class Matrix(Strict):
    """Every combination of the lists given; options left out come from `defaults`."""

    model: list[str] = Field(min_length=1)
    chip: list[str] = Field(min_length=1)
    engine: list[Literal["vllm", "hf"]] | None = None
    planner: list[str] | None = None
    sandbox: list[str] | None = None
    with_flaggems: list[bool] | None = None
    config: list[str] | None = None


class JobsFile(Strict):
    concurrency: int = Field(2, ge=1, description="launches running at once")
    retries: int = Field(
        1, ge=0, le=10, description="extra tries per job; each is a new run with a fresh attempt budget"
    )
    retry_on: list[Annotated[str, Field(pattern=r"^[a-z_]+$")]] = Field(
        default_factory=lambda: ["failed", "eval_failed", "crashed", "timeout"],
        description="outcomes worth another try (precheck and bad input fail the same way again)",
    )
    timeout_s: float = Field(3600, gt=0, description="wall-clock limit of one launch")
    catalog: str | None = Field(None, description="catalog directory for every job")
    defaults: JobOptions = Field(default_factory=JobOptions)
    matrix: Matrix | None = None
    include: list[Job] = Field(default_factory=list, description="jobs added one by one (defaults apply)")
    exclude: list[JobFilter] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_jobs(self) -> JobsFile:
        if self.matrix is None and not self.include:
            raise ValueError("no jobs: give a `matrix` and/or `include`")
        return self

    def jobs(self) -> list[Job]:
        base = self.defaults.model_dump(exclude_unset=True)
        jobs: list[Job] = []
        if self.matrix:
            axes = {k: v for k, v in self.matrix.model_dump().items() if v is not None}
            combos: list[dict] = [{}]
            for key, values in axes.items():
                combos = [{**c, key: v} for c in combos for v in values]
            jobs += [
                j
                for j in (Job.model_validate({**base, **c}) for c in combos)
                if not any(f.matches(j) for f in self.exclude)
            ]
        jobs += [Job.model_validate({**base, **j.model_dump(exclude_unset=True)}) for j in self.include]
        return jobs


def _resolve(value: str | None, root: Path) -> str | None:
    """Paths in a jobs file are relative to the file."""
    if value is None:
        return None
    if value.startswith("script:"):
        return "script:" + str((root / value.removeprefix("script:")).resolve())
    return str((root / value).resolve())


def load_jobs(path: Path) -> tuple[JobsFile, list[Job]]:
    """Read, validate and expand a jobs file; every problem is one line (exit 2)."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise FrAgentError(
            f"cannot read jobs file {path}: {err.strerror if isinstance(err, OSError) else err}"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise FrAgentError(f"jobs file {path} is not valid YAML{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise FrAgentError(f"jobs file {path} must be a mapping (concurrency, retries, defaults, matrix, include, ...)")
    try:
        spec = JobsFile.model_validate(raw)
        jobs = spec.jobs()
    except ValidationError as err:
        raise FrAgentError(f"invalid jobs file {path}: {first_error(err, 'jobs file')}") from None
    root = path.parent.resolve()
    spec = spec.model_copy(update={"catalog": _resolve(spec.catalog, root)})
    jobs = [
        j.model_copy(
            update={
                "config": _resolve(j.config, root),
                "planner": _resolve(j.planner, root) if j.planner.startswith("script:") else j.planner,
            }
        )
        for j in jobs
    ]
    catalog = load_catalog(spec.catalog)
    for job in jobs:
        try:
            catalog.chip(job.chip)
        except FrAgentError as err:
            raise FrAgentError(f"invalid jobs file {path}: job {job.id}: {err}") from None
        if job.config and not Path(job.config).is_file():
            raise FrAgentError(f"invalid jobs file {path}: job {job.id}: no settings file {job.config}")
    seen: set[str] = set()
    for job_id in (job.id for job in jobs):
        if job_id in seen:
            raise FrAgentError(f"invalid jobs file {path}: job {job_id} is listed twice")
        seen.add(job_id)
    return spec, jobs


# ---------------------------------------------------------------------------------------------- state


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Launch(BaseModel):
    """One process: the start of a run, or its resumption from the checkpoint."""

    kind: Literal["start", "resume"]
    started: str
    seconds: float | None = None
    exit_code: int | None = None
    host: str | None = None
    log: str


class Try(BaseModel):
    """One run of a job, with the loop's full attempt budget."""

    number: int
    run_id: str
    launches: list[Launch] = Field(default_factory=list)
    outcome: Outcome | None = None
    reason: str = ""
    attempts: int = 0
    fixes: int = 0
    gate_passed: bool | None = None

    @property
    def seconds(self) -> float:
        return round(sum(launch.seconds or 0 for launch in self.launches), 1)


class JobState(BaseModel):
    job: Job
    tries: list[Try] = Field(default_factory=list)
    final: bool = False

    @property
    def status(self) -> str:
        if not self.tries:
            return "pending"
        last = self.tries[-1]
        if self.final:
            return last.outcome or "unfinished"
        return "unfinished" if last.outcome is None else "retrying"


class Session(BaseModel):
    """One `fr-agent batch` invocation on this batch."""

    started: str
    executor: str
    resumed: bool
    pid: int
    finished: str | None = None
    wall_s: float | None = None
    launched: list[str] = Field(default_factory=list, description="job ids launched by this session")


class BatchState(BaseModel):
    batch_id: str
    jobs_file: str
    created: str
    sessions: list[Session] = Field(default_factory=list)
    jobs: dict[str, JobState] = Field(default_factory=dict)


def batches_dir(home: Path) -> Path:
    return home / "batches"


def new_batch_dir(home: Path, jobs_file: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", jobs_file.stem).strip("-").lower()[:30] or "batch"
    path = batches_dir(home) / f"{slug}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = batches_dir(home) / f"{slug}-{stamp}-{suffix}"
    return path


def latest_batch_dir(home: Path, jobs_file: Path) -> Path:
    """The newest batch started from this jobs file (what `--resume` continues)."""
    candidates = []
    for state_file in batches_dir(home).glob("*/batch.json"):
        try:
            state = BatchState.model_validate_json(state_file.read_text())
        except (OSError, ValidationError):
            continue
        if Path(state.jobs_file) == jobs_file.resolve():
            candidates.append((state.created, state_file.parent.name, state_file.parent))
    if not candidates:
        raise FrAgentError(f"no batch of {jobs_file} under {batches_dir(home)} to resume; run it without --resume")
    return max(candidates)[2]


def load_state(batch_dir: Path) -> BatchState:
    try:
        return BatchState.model_validate_json((batch_dir / "batch.json").read_text())
    except (OSError, ValidationError) as err:
        raise FrAgentError(f"cannot read batch state {batch_dir / 'batch.json'}: {str(err).splitlines()[0]}") from None


def save_state(batch_dir: Path, state: BatchState) -> None:
    """Write-then-rename, fsynced: a kill -9 leaves the old state or the new one, never half of one."""
    tmp = batch_dir / "batch.json.tmp"
    with tmp.open("w") as handle:
        handle.write(state.model_dump_json(indent=2))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, batch_dir / "batch.json")
    dir_fd = os.open(batch_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class BatchLock:
    """One live session per batch directory: a second `--resume` while the first still runs is refused."""

    def __init__(self, batch_dir: Path):
        self.path = batch_dir / "lock"
        self.handle = self.path.open("a+")

    def __enter__(self) -> BatchLock:
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            holder = self.handle.read().strip() or "?"
            self.handle.close()
            raise FrAgentError(f"batch {self.path.parent.name} is already running (pid {holder})") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(str(os.getpid()))
        self.handle.flush()
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()


# ---------------------------------------------------------------------------------------------- launches


class LaunchSpec(BaseModel):
    """Everything an executor needs to run one `fr-agent` process, wherever it runs."""

    job_id: str
    chip: str
    args: list[str]
    env: dict[str, str]
    timeout_s: float
    run_dir: str
    out_path: str
    err_path: str


class ProcessResult(BaseModel):
    exit_code: int | None
    seconds: float
    timed_out: bool = False
    host: str
    stderr_tail: str = ""
    summary: dict | None = Field(None, description="the run's summary, read where it ran")


_PR_SET_PDEATHSIG = 1
try:
    _libc = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:  # not glibc Linux: a killed batch then leaves its launches running until they end
    _libc = None


def _die_with(parent: int):
    """Runs in the child before exec: a kill -9 of the batch (or of a Ray worker) takes its launches with it,
    so a resumed batch never races a stale writer of the same run."""

    def preexec() -> None:
        if _libc is not None:
            _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def spawn(spec: LaunchSpec) -> subprocess.Popen:
    Path(spec.out_path).parent.mkdir(parents=True, exist_ok=True)
    with open(spec.out_path, "wb") as out, open(spec.err_path, "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "fr_agent", *spec.args],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **spec.env},
            start_new_session=True,
            preexec_fn=_die_with(os.getpid()),
        )


def _tail(path: str, limit: int = 4000) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - limit))
            return redact_text(handle.read().decode("utf-8", errors="replace"))
    except OSError:
        return ""


def collect(spec: LaunchSpec, exit_code: int | None, seconds: float, timed_out: bool, host: str) -> ProcessResult:
    run_dir = Path(spec.run_dir)
    summary = summarize(run_dir) if RunFiles(run_dir).request.exists() else None
    return ProcessResult(
        exit_code=exit_code,
        seconds=round(seconds, 2),
        timed_out=timed_out,
        host=host,
        stderr_tail=_tail(spec.err_path),
        summary=summary,
    )


def run_to_end(spec: LaunchSpec, host: str | None = None) -> ProcessResult:
    """A launch from start to end, blocking (what a Ray task does on its node)."""
    started = time.monotonic()
    process = spawn(spec)
    timed_out = False
    try:
        process.wait(timeout=spec.timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        stop_process_group(process, grace_s=20, first=signal.SIGINT)
    except BaseException:
        stop_process_group(process, grace_s=20, first=signal.SIGINT)
        raise
    return collect(spec, process.returncode, time.monotonic() - started, timed_out, host or socket.gethostname())


class Executor(Protocol):
    name: str

    def unavailable(self, chip: str) -> str | None:
        """Why no host can run this chip's jobs, or None."""

    def submit(self, spec: LaunchSpec) -> None: ...

    def wait(self, timeout: float) -> list[tuple[str, ProcessResult]]:
        """Launches that ended (job id, result); waits up to `timeout` for one."""

    def interrupt(self) -> list[tuple[str, ProcessResult]]:
        """Stop every launch so it can be resumed (Ctrl-C semantics); what they came to."""


class LocalExecutor:
    """Launches on this host, each a subprocess in its own session."""

    name = "local"

    def __init__(self) -> None:
        self.running: dict[str, tuple[subprocess.Popen, LaunchSpec, float]] = {}

    def unavailable(self, chip: str) -> str | None:
        return None  # the run's own precheck says what this host lacks

    def submit(self, spec: LaunchSpec) -> None:
        self.running[spec.job_id] = (spawn(spec), spec, time.monotonic())

    def wait(self, timeout: float) -> list[tuple[str, ProcessResult]]:
        deadline = time.monotonic() + timeout
        while True:
            done = []
            for job_id, (process, spec, started) in list(self.running.items()):
                timed_out = process.poll() is None and time.monotonic() - started > spec.timeout_s
                if timed_out:
                    stop_process_group(process, grace_s=20, first=signal.SIGINT)
                if process.poll() is not None:
                    del self.running[job_id]
                    done.append(
                        (
                            job_id,
                            collect(
                                spec, process.returncode, time.monotonic() - started, timed_out, socket.gethostname()
                            ),
                        )
                    )
            if done or time.monotonic() >= deadline or not self.running:
                return done
            time.sleep(0.2)

    def interrupt(self) -> list[tuple[str, ProcessResult]]:
        for process, _, _ in self.running.values():
            try:
                os.killpg(process.pid, signal.SIGINT)  # fr-agent checkpoints and exits 130
            except ProcessLookupError:
                pass
        deadline, stopped = time.monotonic() + 30, []
        for job_id, (process, spec, started) in self.running.items():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stop_process_group(process, grace_s=5, first=signal.SIGKILL)
            stopped.append(
                (job_id, collect(spec, process.returncode, time.monotonic() - started, False, socket.gethostname()))
            )
        self.running.clear()
        return stopped


# ---------------------------------------------------------------------------------------------- the batch


class Interrupted(Exception):
    """SIGINT or SIGTERM reached the batch: launches were stopped resumably."""


def judge(result: ProcessResult, stopping: bool) -> tuple[Outcome | None, str]:
    """What one launch came to. None: the run is unfinished and should be resumed, not retried."""
    summary = result.summary
    if summary and summary["status"] != "unfinished":
        return summary["status"], summary["reason"]
    if result.timed_out:
        return "timeout", "launch ran past the batch's timeout_s and was stopped"
    if stopping:
        return None, "interrupted"
    last = [line for line in result.stderr_tail.splitlines() if line.strip()]
    if result.exit_code == 2 and summary is None:
        return "error", (last[-1].removeprefix("error: ") if last else "bad input (exit 2)")
    if result.exit_code is not None and result.exit_code < 0:
        return "crashed", f"killed by {signal.Signals(-result.exit_code).name}"
    return "crashed", f"exit code {result.exit_code}" + (f": {last[-1][:300]}" if last else "")


class Batch:
    """The scheduler: pending jobs → launches (at most `concurrency` at once) → outcomes → retries."""

    def __init__(
        self,
        spec: JobsFile,
        jobs: list[Job],
        batch_dir: Path,
        state: BatchState,
        home: Path,
        executor: Executor,
        concurrency: int | None = None,
    ):
        self.spec, self.batch_dir, self.state, self.home, self.executor = spec, batch_dir, state, home, executor
        self.order = [j.id for j in jobs]
        self.concurrency = concurrency or spec.concurrency
        for job_id, job in zip(self.order, jobs):
            if job_id not in state.jobs:
                state.jobs[job_id] = JobState(job=job)
            else:  # the file's current definition (same id) is what new launches use
                state.jobs[job_id].job = job
        # A job's place in the state names its runs: stable across sessions, even if the file is reordered.
        self.index = {job_id: i for i, job_id in enumerate(state.jobs)}
        self.session = Session(started=now(), executor=executor.name, resumed=bool(state.sessions), pid=os.getpid())
        state.sessions.append(self.session)
        self.in_flight: dict[str, LaunchSpec] = {}
        self.stopping = False
        self.unsaved = False
        self.next_save = 0.0

    def save(self) -> None:
        started = time.monotonic()
        save_state(self.batch_dir, self.state)
        self.unsaved = False
        self.next_save = time.monotonic() + max(SAVE_EVERY_S, 10 * (time.monotonic() - started))

    def save_if_due(self) -> None:
        """Changes reach batch.json once the last write is old enough. A kill -9 may lose the last second:
        `next_launch` finds a launch that the saved state misses by its run directory."""
        if self.unsaved and time.monotonic() >= self.next_save:
            self.save()

    def run_dir(self, run_id: str) -> Path:
        return self.home / "runs" / run_id

    def env(self) -> dict[str, str]:
        forwarded = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        return {**forwarded, "FR_AGENT_HOME": str(self.home)}

    def record(self, state: JobState, outcome: Outcome, reason: str, summary: dict | None) -> None:
        attempt = state.tries[-1]
        attempt.outcome, attempt.reason = outcome, reason
        if summary:
            attempt.attempts, attempt.fixes = summary["attempts"], len(summary["fixes"])
            attempt.gate_passed = (summary.get("eval") or {}).get("gate_passed")
        retry = outcome in self.spec.retry_on and len(state.tries) <= self.spec.retries
        state.final = not retry

    def next_launch(self, state: JobState) -> LaunchSpec | None:
        """The launch that moves this job on, or None when the job was settled without one."""
        job = state.job
        if not state.tries or state.tries[-1].outcome is not None:
            number = len(state.tries) + 1
            state.tries.append(Try(number=number, run_id=f"{self.state.batch_id}-{self.index[job.id]:02d}-t{number}"))
        attempt = state.tries[-1]
        run_dir = self.run_dir(attempt.run_id)
        lost = attempt.launches[-1] if attempt.launches and attempt.launches[-1].seconds is None else None
        if lost:  # killed with its batch: it counts until its run's last event
            lost.seconds = _seconds_until_last_event(lost.started, run_dir)
        kind = "start"
        if run_dir.is_dir():  # left by a session that died: noted as unfinished, or launched after its last save
            summary = summarize(run_dir) if RunFiles(run_dir).request.exists() else None
            if summary and summary["status"] != "unfinished":  # it finished; the batch died before noting it
                self.record(state, summary["status"], summary["reason"], summary)
                return None
            if summary:
                kind = "resume"
            else:  # killed before its request was written: nothing to keep
                for path in sorted(run_dir.rglob("*"), reverse=True):
                    path.rmdir() if path.is_dir() else path.unlink()
                run_dir.rmdir()
        why_not = self.executor.unavailable(job.chip)
        if why_not:
            self.record(state, "no_host", why_not, None)
            state.final = True
            return None
        args = job.run_args(attempt.run_id, self.spec.catalog) if kind == "start" else job.resume_args(attempt.run_id)
        logs = self.batch_dir / "logs" / re.sub(r"[^A-Za-z0-9@+=._-]+", "-", job.id)
        name = f"t{attempt.number}-{len(attempt.launches) + 1}-{kind}"
        attempt.launches.append(Launch(kind=kind, started=now(), log=str(logs / name)))
        return LaunchSpec(
            job_id=job.id,
            chip=job.chip,
            args=[*args, "--home", str(self.home)],
            env=self.env(),
            timeout_s=self.spec.timeout_s,
            run_dir=str(self.run_dir(attempt.run_id)),
            out_path=str(logs / f"{name}.out"),
            err_path=str(logs / f"{name}.err"),
        )

    def finish_launch(self, job_id: str, result: ProcessResult) -> None:
        state = self.state.jobs[job_id]
        launch = state.tries[-1].launches[-1]
        launch.seconds, launch.exit_code, launch.host = result.seconds, result.exit_code, result.host
        outcome, reason = judge(result, self.stopping)
        if outcome is not None:
            self.record(state, outcome, reason, result.summary)

    def run(self, on_change=None) -> BatchState:
        started = time.monotonic()
        queue = deque(j for j in self.order if not self.state.jobs[j].final)
        previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _raise_interrupted)}
        try:
            while queue or self.in_flight:
                while queue and len(self.in_flight) < self.concurrency:
                    job_id = queue.popleft()
                    spec = self.next_launch(self.state.jobs[job_id])
                    if spec is None:
                        if not self.state.jobs[job_id].final:
                            queue.appendleft(job_id)  # settled a leftover run; its retry goes next
                        self.unsaved = True
                        continue
                    self.executor.submit(spec)
                    self.in_flight[job_id] = spec
                    self.session.launched.append(job_id)
                    self.unsaved = True
                    if on_change:
                        on_change(self.state, job_id)
                for job_id, result in self.executor.wait(timeout=1.0):
                    self.in_flight.pop(job_id)
                    self.finish_launch(job_id, result)
                    if not self.state.jobs[job_id].final:
                        queue.append(job_id)
                    self.unsaved = True
                    if on_change:
                        on_change(self.state, job_id)
                self.save_if_due()
        except (KeyboardInterrupt, Interrupted):
            self.stopping = True
            for job_id, result in self.executor.interrupt():
                self.finish_launch(job_id, result)  # unfinished runs stay open: the next session resumes them
            self.in_flight.clear()
            raise Interrupted() from None
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.session.finished = now()
            self.session.wall_s = round(time.monotonic() - started, 1)
            self.save()
        return self.state


def _seconds_until_last_event(started: str, run_dir: Path) -> float:
    path = RunFiles(run_dir).transcript
    events = read_events(path) if path.exists() else []
    if not events:
        return 0.0
    return round(max(0.0, (events[-1].ts - datetime.fromisoformat(started)).total_seconds()), 2)


def _raise_interrupted(signum, frame) -> None:
    raise Interrupted()


def open_batch(jobs_file: Path, home: Path, *, resume: bool, batch_dir: Path | None = None) -> tuple[Path, BatchState]:
    """A new batch directory, or the one `--resume` continues (its state read back)."""
    if resume or batch_dir:
        batch_dir = batch_dir or latest_batch_dir(home, jobs_file)
        return batch_dir, load_state(batch_dir)
    batch_dir = new_batch_dir(home, jobs_file)
    batch_dir.mkdir(parents=True)
    (batch_dir / "jobs.yaml").write_bytes(jobs_file.read_bytes())
    state = BatchState(batch_id=batch_dir.name, jobs_file=str(jobs_file.resolve()), created=now())
    save_state(batch_dir, state)
    return batch_dir, state


def summary_rows(state: BatchState) -> list[dict]:
    rows = []
    for job_id, js in state.jobs.items():
        last = js.tries[-1] if js.tries else None
        rows.append(
            {
                "job": job_id,
                "model": js.job.model,
                "chip": js.job.chip,
                "options": js.job.model_dump(include=set(JobOptions.model_fields)),
                "status": js.status,
                "tries": len(js.tries),
                "attempts": last.attempts if last else 0,
                "fixes": last.fixes if last else 0,
                "gate_passed": last.gate_passed if last else None,
                "seconds": round(sum(t.seconds for t in js.tries), 1),
                "launches": sum(len(t.launches) for t in js.tries),
                "run_id": last.run_id if last else None,
                "runs": [t.run_id for t in js.tries],
                "reason": last.reason if last else "",
            }
        )
    return rows
