"""Batch: the jobs file (matrix, defaults, include/exclude, one-line errors), the scheduler (concurrency,
retries as fresh runs, outcomes) and its durable state, driven through a scripted executor. The real
executors run real `fr-agent` processes in test_batch_e2e.py and test_batch_ray.py."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fr_agent.core.errors import FrAgentError
from fr_agent.core.events import Transcript
from fr_agent.shell.batch import (
    Batch,
    BatchState,
    Interrupted,
    JobState,
    Launch,
    LaunchSpec,
    ProcessResult,
    Try,
    judge,
    load_jobs,
    load_state,
    now,
    open_batch,
    summary_rows,
)
from fr_agent.shell.cli import app
from tests.cli_helpers import fr_agent, one_line_error


def jobs_file(tmp_path: Path, text: str, name: str = "jobs.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_matrix_expands_with_defaults_exclude_and_include(tmp_path):
    (tmp_path / "settings.yaml").write_text("limits: {max_attempts: 3}\n")
    (tmp_path / "plan.yaml").write_text("[]\n")
    spec, jobs = load_jobs(
        jobs_file(
            tmp_path,
            """
concurrency: 3
retries: 2
defaults: {engine: hf, config: settings.yaml}
matrix:
  model: [tiny-llama, Qwen/Qwen3-0.6B]
  chip: [cpu, ascend]
  engine: [hf, vllm]
exclude:
  - {chip: ascend, engine: vllm}
include:
  - {model: tiny-llama, chip: metax, planner: "script:plan.yaml", with_flaggems: true}
""",
        )
    )
    assert spec.concurrency == 3 and spec.retries == 2
    assert [j.id for j in jobs] == [
        "tiny-llama@cpu+engine=hf+config=settings.yaml",
        "tiny-llama@cpu+engine=vllm+config=settings.yaml",
        "tiny-llama@ascend+engine=hf+config=settings.yaml",
        "Qwen-Qwen3-0.6B@cpu+engine=hf+config=settings.yaml",
        "Qwen-Qwen3-0.6B@cpu+engine=vllm+config=settings.yaml",
        "Qwen-Qwen3-0.6B@ascend+engine=hf+config=settings.yaml",
        "tiny-llama@metax+engine=hf+planner=script-plan.yaml+with_flaggems=True+config=settings.yaml",
    ]
    included = jobs[-1]
    assert included.engine == "hf" and included.config == str(
        tmp_path / "settings.yaml"
    )  # defaults apply, paths resolved
    assert included.planner == f"script:{tmp_path / 'plan.yaml'}"
    args = included.run_args("r1", None)
    assert args[:7] == ["run", "tiny-llama", "--chip", "metax", "--yes", "--json", "--run-id"]
    assert ["--engine", "hf"] == args[args.index("--engine") : args.index("--engine") + 2] and "--with-flaggems" in args


@pytest.mark.parametrize(
    "text, message",
    [
        ("matrix:\n  model: [tiny-llama\n  chip: [cpu]\n", "is not valid YAML (line 3, column"),
        (
            "matrix: {model: [tiny-llama], chip: [cpu, quantum9000]}\n",
            "job tiny-llama@quantum9000: unknown chip 'quantum9000'",
        ),
        (
            "include: [{model: tiny-llama, chip: cpu}, {model: tiny-llama, chip: cpu}]\n",
            "job tiny-llama@cpu is listed twice",
        ),
        (
            "matrix: {model: [tiny-llama], chip: [cpu]}\nretries: -1\n",
            "retries: Input should be greater than or equal to 0",
        ),
        ("matrix: {model: [tiny-llama], chip: [cpu]}\nparallel: 4\n", "parallel: Extra inputs are not permitted"),
        ("concurrency: 2\n", "no jobs: give a `matrix` and/or `include`"),
        ("- tiny-llama\n", "must be a mapping"),
        ("include: [{model: tiny-llama, chip: cpu, config: missing.yaml}]\n", "no settings file"),
    ],
)
def test_bad_jobs_files_are_one_line_errors(tmp_path, text, message):
    with pytest.raises(FrAgentError) as err:
        load_jobs(jobs_file(tmp_path, text))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_cli_rejects_bad_jobs_files_with_exit_2_and_lists_good_ones(fr_home, tmp_path):
    for name, text, message in [
        ("broken.yaml", "matrix: {model: [tiny-llama], chip: [cpu\n", "broken.yaml is not valid YAML"),
        ("chip.yaml", "matrix: {model: [tiny-llama], chip: [tpu9]}\n", "unknown chip 'tpu9'"),
    ]:
        rejected = fr_agent("batch", str(jobs_file(tmp_path, text, name)), home=fr_home, timeout=120)
        assert rejected.returncode == 2 and message in one_line_error(rejected)
    assert not list((fr_home / "batches").glob("broken-*")) and not list((fr_home / "batches").glob("chip-*"))
    listed = fr_agent(
        "batch",
        str(jobs_file(tmp_path, "matrix: {model: [tiny-llama], chip: [cpu, ascend]}\n", "ok.yaml")),
        "--dry-run",
        "--json",
        home=fr_home,
        timeout=120,
    )
    assert listed.returncode == 0 and [j["job"] for j in json.loads(listed.stdout)] == [
        "tiny-llama@cpu",
        "tiny-llama@ascend",
    ]
    assert not list((fr_home / "batches").glob("ok-*"))  # a dry run starts no batch


# ---------------------------------------------------------------------------------------------- scheduler


class ScriptedExecutor:
    """The executors' scripted twin: each launch of a job ends as the next entry of that job's script says."""

    name = "scripted"

    def __init__(
        self, script: dict[str, list[str]], absent_chips: tuple[str, ...] = (), interrupt_after: int | None = None
    ):
        self.script = {job: list(outcomes) for job, outcomes in script.items()}
        self.absent_chips = absent_chips
        self.running: list[LaunchSpec] = []
        self.launched: list[LaunchSpec] = []
        self.most_at_once = 0
        self.interrupt_after = interrupt_after

    def unavailable(self, chip: str) -> str | None:
        return f"no host has {chip}" if chip in self.absent_chips else None

    def submit(self, spec: LaunchSpec) -> None:
        self.running.append(spec)
        self.launched.append(spec)
        self.most_at_once = max(self.most_at_once, len(self.running))

    def wait(self, timeout: float) -> list[tuple[str, ProcessResult]]:
        if self.interrupt_after is not None and len(self.launched) >= self.interrupt_after:
            raise KeyboardInterrupt
        spec = self.running.pop(0)
        outcome = self.script[spec.job_id].pop(0)
        if outcome == "crash":
            return [(spec.job_id, ProcessResult(exit_code=-9, seconds=1.0, host="here", summary=None))]
        summary = {
            "status": outcome,
            "reason": f"scripted {outcome}",
            "attempts": 2,
            "fixes": [{"tool": "set_env_var"}],
            "eval": {"gate_passed": outcome == "passed"},
        }
        return [
            (
                spec.job_id,
                ProcessResult(exit_code=0 if outcome == "passed" else 1, seconds=2.5, host="here", summary=summary),
            )
        ]

    def interrupt(self) -> list[tuple[str, ProcessResult]]:
        stopped = [(s.job_id, ProcessResult(exit_code=130, seconds=0.5, host="here")) for s in self.running]
        self.running.clear()
        return stopped


SCHEDULER_JOBS = """
concurrency: 2
retries: 1
include:
  - {model: m-pass, chip: cpu}
  - {model: m-fail, chip: cpu}
  - {model: m-crash, chip: cpu}
  - {model: m-precheck, chip: ascend}
  - {model: m-nohost, chip: metax}
"""


def new_batch(tmp_path, text=SCHEDULER_JOBS, executor=None) -> tuple[Batch, ScriptedExecutor, Path]:
    path = jobs_file(tmp_path, text)
    spec, jobs = load_jobs(path)
    directory, state = open_batch(path, tmp_path / "home", resume=False)
    executor = executor or ScriptedExecutor(
        {
            "m-pass@cpu": ["passed"],
            "m-fail@cpu": ["failed", "eval_failed"],
            "m-crash@cpu": ["crash", "passed"],
            "m-precheck@ascend": ["precheck_failed"],
        },
        absent_chips=("metax",),
    )
    return Batch(spec, jobs, directory, state, tmp_path / "home", executor), executor, directory


def test_scheduler_retries_with_fresh_runs_and_respects_concurrency(tmp_path):
    batch, executor, directory = new_batch(tmp_path)
    state = batch.run()
    rows = {r["job"]: r for r in summary_rows(state)}
    assert {k: (r["status"], r["tries"]) for k, r in rows.items()} == {
        "m-pass@cpu": ("passed", 1),
        "m-fail@cpu": ("eval_failed", 2),
        "m-crash@cpu": ("passed", 2),
        "m-precheck@ascend": ("precheck_failed", 1),  # the same precheck would fail again: not retried
        "m-nohost@metax": ("no_host", 1),
    }
    assert rows["m-nohost@metax"]["launches"] == 0 and rows["m-nohost@metax"]["reason"] == "no host has metax"
    assert executor.most_at_once == 2
    # A retry is a new run (its own run id, so a fresh attempt budget), never a resume of the failed one.
    crash_runs = rows["m-crash@cpu"]["runs"]
    assert len(set(crash_runs)) == 2 and crash_runs[1].endswith("-t2")
    assert [s.args[0] for s in executor.launched if s.job_id == "m-crash@cpu"] == ["run", "run"]
    assert "--run-id" in executor.launched[0].args and executor.launched[0].args[-2:] == [
        "--home",
        str(tmp_path / "home"),
    ]
    assert (
        rows["m-pass@cpu"]["attempts"] == 2 and rows["m-pass@cpu"]["fixes"] == 1 and rows["m-pass@cpu"]["gate_passed"]
    )
    assert rows["m-crash@cpu"]["seconds"] == 3.5
    # What is on disk is what the scheduler holds.
    assert load_state(directory) == state and (directory / "jobs.yaml").read_text() == SCHEDULER_JOBS
    assert state.sessions[0].resumed is False and state.sessions[0].wall_s is not None


def test_judge_reads_the_run_then_the_process():
    run = {"status": "failed", "reason": "load: unrepairable"}
    assert judge(ProcessResult(exit_code=1, seconds=1, host="h", summary=run), False) == (
        "failed",
        "load: unrepairable",
    )
    assert judge(
        ProcessResult(exit_code=2, seconds=1, host="h", stderr_tail="warn\nerror: unknown model 'x'\n"), False
    ) == ("error", "unknown model 'x'")
    assert judge(ProcessResult(exit_code=-9, seconds=1, host="h"), False) == ("crashed", "killed by SIGKILL")
    assert judge(ProcessResult(exit_code=-2, seconds=1, host="h", timed_out=True), False)[0] == "timeout"
    unfinished = {"status": "unfinished", "reason": "run did not finish"}
    assert judge(ProcessResult(exit_code=130, seconds=1, host="h", summary=unfinished), True) == (None, "interrupted")
    assert judge(ProcessResult(exit_code=130, seconds=1, host="h", summary=unfinished), False)[0] == "crashed"


def write_run(runs: Path, run_id: str, finished: str | None) -> Path:
    run_dir = runs / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "request.json").write_text(json.dumps({"model": "m", "chip": "cpu"}))
    transcript = Transcript(run_dir / "transcript.jsonl", run_id)
    transcript.emit("run_started", request={"model": "m", "chip": "cpu"}, run_dir=str(run_dir))
    transcript.emit("stage", attempt=1, stage="install", ok=True, detail="ok", duration_s=1.0)
    if finished:
        transcript.emit("run_finished", attempt=1, status=finished, reason=f"it {finished}", fixes=[], passed=[])
    transcript.close()
    return run_dir


def test_resume_settles_finished_runs_resumes_unfinished_and_keeps_passed_jobs(tmp_path):
    path = jobs_file(
        tmp_path,
        "include: [{model: a, chip: cpu}, {model: b, chip: cpu}, {model: c, chip: cpu}, {model: d, chip: cpu}, "
        "{model: e, chip: cpu}]\n",
    )
    spec, jobs = load_jobs(path)
    home = tmp_path / "home"
    directory, state = open_batch(path, home, resume=False)
    bid = state.batch_id
    launch = Launch(kind="start", started=now(), log="x")
    state.jobs = {
        "a@cpu": JobState(
            job=jobs[0], final=True, tries=[Try(number=1, run_id=f"{bid}-00-t1", outcome="passed", launches=[launch])]
        ),
        "b@cpu": JobState(job=jobs[1], tries=[Try(number=1, run_id=f"{bid}-01-t1", launches=[launch])]),
        "c@cpu": JobState(job=jobs[2], tries=[Try(number=1, run_id=f"{bid}-02-t1", launches=[launch])]),
        "d@cpu": JobState(job=jobs[3], tries=[Try(number=1, run_id=f"{bid}-03-t1", launches=[launch])]),
    }
    write_run(home / "runs", f"{bid}-01-t1", finished=None)  # killed mid-run: resume from its checkpoint
    write_run(home / "runs", f"{bid}-02-t1", finished="passed")  # ended while the batch was dead: just noted
    (home / "runs" / f"{bid}-03-t1").mkdir()  # killed before its request was written
    write_run(home / "runs", f"{bid}-04-t1", finished=None)  # launched after the state's last save
    executor = ScriptedExecutor({"b@cpu": ["passed"], "d@cpu": ["passed"], "e@cpu": ["passed"]})
    state = Batch(spec, jobs, directory, state, home, executor).run()
    launched = {s.job_id: s.args for s in executor.launched}
    assert set(launched) == {"b@cpu", "d@cpu", "e@cpu"}
    assert launched["b@cpu"][:2] == ["resume", f"{bid}-01-t1"] and launched["e@cpu"][:2] == ["resume", f"{bid}-04-t1"]
    assert (
        launched["d@cpu"][:6] == ["run", "d", "--chip", "cpu", "--yes", "--json"]
        and f"{bid}-03-t1" in launched["d@cpu"]
    )
    assert not (home / "runs" / f"{bid}-03-t1").exists()
    rows = {r["job"]: r for r in summary_rows(state)}
    assert {k: (r["status"], r["tries"], r["launches"]) for k, r in rows.items()} == {
        "a@cpu": ("passed", 1, 1),
        "b@cpu": ("passed", 1, 2),
        "c@cpu": ("passed", 1, 1),
        "d@cpu": ("passed", 1, 2),
        "e@cpu": ("passed", 1, 1),
    }
    assert rows["c@cpu"]["reason"] == "it passed"
    lost = state.jobs["b@cpu"].tries[0].launches[0]  # killed with the batch: timed until its run's last event
    assert lost.seconds is not None and 0 <= lost.seconds < 60 and lost.exit_code is None


def test_an_interrupt_leaves_in_flight_runs_open_for_resume(tmp_path):
    executor = ScriptedExecutor({"m-pass@cpu": ["passed"], "m-fail@cpu": ["failed"]}, interrupt_after=2)
    batch, _, directory = new_batch(
        tmp_path,
        "concurrency: 2\ninclude: [{model: m-pass, chip: cpu}, "
        "{model: m-fail, chip: cpu}, {model: m-later, chip: cpu}]\n",
        executor,
    )
    with pytest.raises(Interrupted):
        batch.run()
    saved = load_state(directory)
    assert [saved.jobs[j].status for j in ("m-pass@cpu", "m-fail@cpu", "m-later@cpu")] == [
        "unfinished",
        "unfinished",
        "pending",
    ]
    assert all(saved.jobs[j].tries[0].launches[0].exit_code == 130 for j in ("m-pass@cpu", "m-fail@cpu"))
    assert isinstance(saved, BatchState) and saved.sessions[-1].finished is not None


# ---------------------------------------------------------------------------------------------- scale

PASSED = {"status": "passed", "reason": "ok", "attempts": 1, "fixes": [], "eval": {"gate_passed": True}}


class InstantExecutor:
    """Every launch passes the moment it is submitted, so what is timed is the batch's own work. After
    `sigterm_after` launches it sends its own process a SIGTERM, as `kill` would."""

    name = "instant"

    def __init__(self, sigterm_after: int | None = None):
        self.running: list[LaunchSpec] = []
        self.launched: Counter[str] = Counter()
        self.launches = 0
        self.sigterm_after = sigterm_after
        self.signalled_at: float | None = None

    def unavailable(self, chip: str) -> str | None:
        return None

    def submit(self, spec: LaunchSpec) -> None:
        self.running.append(spec)
        self.launched[spec.job_id] += 1
        self.launches += 1

    def wait(self, timeout: float) -> list[tuple[str, ProcessResult]]:
        if self.sigterm_after is not None and self.launches >= self.sigterm_after and self.signalled_at is None:
            self.signalled_at = time.monotonic()
            os.kill(os.getpid(), signal.SIGTERM)
        done, self.running = self.running, []
        return [(s.job_id, ProcessResult(exit_code=0, seconds=0.1, host="here", summary=PASSED)) for s in done]

    def interrupt(self) -> list[tuple[str, ProcessResult]]:
        stopped = [(s.job_id, ProcessResult(exit_code=143, seconds=0.1, host="here")) for s in self.running]
        self.running = []
        return stopped


def batch_cli(monkeypatch, executor: InstantExecutor, *args: str):
    """`fr-agent batch ...` in this process, its launches on `executor`; (result, seconds it took)."""
    monkeypatch.setattr("fr_agent.shell.cli.batch.LocalExecutor", lambda: executor)
    started = time.monotonic()
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["batch", *args], catch_exceptions=False)
    return result, time.monotonic() - started


def many_jobs(tmp_path: Path, n: int) -> Path:
    models = json.dumps([f"m{i}" for i in range(n // 2)])
    return jobs_file(tmp_path, f"concurrency: 8\nmatrix: {{model: {models}, chip: [cpu, ascend]}}\n")


def test_ten_thousand_jobs_are_scheduled_summarized_and_printed_in_seconds(tmp_path, monkeypatch):
    path, home = many_jobs(tmp_path, 10_000), str(tmp_path / "home")
    executor = InstantExecutor()
    table, seconds = batch_cli(monkeypatch, executor, str(path), "--home", home)
    assert table.exit_code == 0, table.output[-2000:]
    assert seconds < 10, f"a 10k-job batch took {seconds:.1f}s"
    assert "10000 jobs, 10000 passed" in table.stdout and "m4999@ascend" in table.stdout
    assert len(executor.launched) == 10_000 and set(executor.launched.values()) == {1}
    report, seconds = batch_cli(monkeypatch, executor, str(path), "--home", home, "--resume", "--json")
    assert report.exit_code == 0 and seconds < 10, f"resuming a finished 10k-job batch took {seconds:.1f}s"
    rows = json.loads(report.stdout)["jobs"]
    assert len(rows) == 10_000 and {(r["status"], r["tries"]) for r in rows} == {("passed", 1)}
    assert executor.launches == 10_000  # nothing launched again


def test_sigterm_stops_a_ten_thousand_job_batch_in_seconds_and_it_resumes(tmp_path, monkeypatch):
    path, home = many_jobs(tmp_path, 10_000), str(tmp_path / "home")
    first = InstantExecutor(sigterm_after=5_000)
    stopped, _ = batch_cli(monkeypatch, first, str(path), "--home", home, "--json")
    assert first.signalled_at is not None
    exited_after = time.monotonic() - first.signalled_at
    assert stopped.exit_code == 130 and exited_after < 5, f"exited {exited_after:.1f}s after SIGTERM"
    assert "--resume` continues it" in stopped.stderr
    saved = load_state(next((tmp_path / "home" / "batches").iterdir()))
    statuses = Counter(js.status for js in saved.jobs.values())
    assert statuses["passed"] >= 4_990 and statuses["unfinished"] <= 8 and saved.sessions[0].finished is not None
    second = InstantExecutor()
    resumed, seconds = batch_cli(monkeypatch, second, str(path), "--home", home, "--resume", "--json")
    assert resumed.exit_code == 0 and seconds < 10
    assert {r["status"] for r in json.loads(resumed.stdout)["jobs"]} == {"passed"}
    # Only the launches in flight at the SIGTERM ran again (as the same run: a resumed try, not a retry).
    twice = [job for job in second.launched if first.launched[job]]
    assert len(twice) == statuses["unfinished"] and set(first.launched.values()) | set(second.launched.values()) == {1}
    assert len(first.launched) + len(second.launched) - len(twice) == 10_000
