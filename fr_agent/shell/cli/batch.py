"""CLI for many runs at once and for reviewing them: `batch`, `ray-resources`, `transcripts diff|replay`,
and the HTML page behind `transcripts show --html`. Registered on the main app by `register`."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from fr_agent.core.catalog import load_catalog
from fr_agent.core.errors import FrAgentError
from fr_agent.shell.batch import Batch, BatchLock, Interrupted, LocalExecutor, load_jobs, open_batch, summary_rows
from fr_agent.shell.cli.common import ConfigOpt, HomeOpt, JsonOpt, console, err_console, settings_from, show_event
from fr_agent.shell.replay import compare, replay_run
from fr_agent.shell.review import diff_runs, render_batch_html, render_run_html
from fr_agent.shell.runs import Run, find_run


def write_html(text: str, out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as err:
        raise FrAgentError(f"cannot write {out}: {err.strerror}") from None


def write_run_html(run_dir: Path, out: Path) -> None:
    write_html(render_run_html(run_dir), out)
    err_console.print(f"review page: {out}")


def _status_cell(status: str) -> str:
    color = "green" if status == "passed" else "yellow" if status in ("pending", "retrying", "unfinished") else "red"
    return f"[{color}]{escape(status)}[/{color}]"


BATCH_COLUMNS = ("job", "status", "tries", "attempts", "fixes", "gate", "time", "run", "reason")
# rich lays a table out at ~0.5 ms a row: past this many jobs the summary is plain aligned lines.
RICH_TABLE_ROWS = 500


def _batch_cells(r: dict) -> list[str]:
    gate = "-" if r["gate_passed"] is None else ("pass" if r["gate_passed"] else "FAIL")
    return [
        r["job"],
        r["status"],
        str(r["tries"]),
        str(r["attempts"]),
        str(r["fixes"]),
        gate,
        f"{r['seconds']:.0f}s",
        r["run_id"] or "-",
        " ".join(r["reason"][:120].split()),
    ]


def print_batch_table(rows: list[dict], title: str) -> None:
    if len(rows) > RICH_TABLE_ROWS:
        counts = Counter(r["status"] for r in rows)
        lines = [[*BATCH_COLUMNS], *(_batch_cells(r) for r in rows)]
        widths = [max(len(line[i]) for line in lines) for i in range(len(BATCH_COLUMNS) - 1)]
        print(f"{title}: {len(rows)} jobs, " + ", ".join(f"{n} {status}" for status, n in counts.most_common()))
        sys.stdout.write("".join("  ".join(map(str.ljust, line, widths)) + "  " + line[-1] + "\n" for line in lines))
        return
    table = Table(title=title)
    for column in BATCH_COLUMNS:
        table.add_column(column, overflow="fold")
    for r in rows:
        cells = [escape(cell) for cell in _batch_cells(r)]
        cells[1] = _status_cell(r["status"])
        table.add_row(*cells)
    console.print(table)


def batch(
    jobs_file: Annotated[
        Path, typer.Argument(help="jobs YAML: concurrency, retries, defaults, matrix, include, exclude")
    ],
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="continue the newest batch of this jobs file: passed jobs "
            "stay passed, unfinished runs resume from their checkpoints",
        ),
    ] = False,
    batch_dir: Annotated[Optional[Path], typer.Option("--batch-dir", help="continue this batch directory")] = None,
    concurrency: Annotated[Optional[int], typer.Option(min=1, help="launches at once (overrides the file)")] = None,
    executor: Annotated[str, typer.Option(help="local (subprocesses here) or ray")] = "local",
    address: Annotated[
        Optional[str],
        typer.Option(
            help="Ray cluster address (host:port, auto); default: a local "
            "one-host cluster advertising this host's chips"
        ),
    ] = None,
    cpu_slots: Annotated[
        Optional[int],
        typer.Option(min=1, help="with a local Ray cluster: concurrent cpu jobs this host advertises as chip:cpu"),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list the jobs and exit")] = False,
    html: Annotated[Optional[Path], typer.Option("--html", help="also write the batch's review page here")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a matrix of model × chip × options headless: retries, a concurrency limit, resumable after a crash."""
    settings = settings_from(None, home)
    spec, jobs = load_jobs(jobs_file)
    if executor not in ("local", "ray"):
        raise FrAgentError(f"unknown executor {executor!r}: use local or ray")
    if executor != "ray" and (address or cpu_slots):
        raise FrAgentError("--address and --cpu-slots need --executor ray")
    if dry_run:
        listed = [{"job": j.id, **j.model_dump()} for j in jobs]
        if as_json:
            print(json.dumps(listed, indent=2))
        else:
            for j in listed:
                console.print(escape(j["job"]))
        return
    if batch_dir is not None and not (batch_dir / "batch.json").is_file():
        raise FrAgentError(f"no batch in {batch_dir}")
    directory, state = open_batch(jobs_file, settings.home, resume=resume, batch_dir=batch_dir)
    with BatchLock(directory):
        if executor == "ray":
            try:  # optional: batch_ray imports ray (the ray extra)
                from fr_agent.shell.batch_ray import RayExecutor
            except ImportError:
                raise FrAgentError("the Ray executor needs ray: pip install 'fr-agent[ray]'") from None
            runner = RayExecutor(address, load_catalog(spec.catalog), cpu_slots)
        else:
            runner = LocalExecutor()
        started = time.monotonic()

        def progress(state, job_id: str) -> None:
            js = state.jobs[job_id]
            attempt = js.tries[-1] if js.tries else None
            stamp = f"[{time.monotonic() - started:6.1f}s]"
            if attempt and attempt.outcome is None:
                what = f"{attempt.launches[-1].kind} run {attempt.run_id} (try {attempt.number})"
            else:
                what = f"{js.status}" + (f": {attempt.reason[:160]}" if attempt else "")
            err_console.print(f"{stamp} {escape(job_id)}: {escape(what)}", soft_wrap=True)

        interrupted = False
        try:
            Batch(spec, jobs, directory, state, settings.home, runner, concurrency).run(
                on_change=None if as_json else progress
            )
        except Interrupted:
            interrupted = True
        finally:
            if executor == "ray":
                runner.close()
    listed = {j.id for j in jobs}
    rows = [r for r in summary_rows(state) if r["job"] in listed]
    if html:
        write_html(render_batch_html(rows, settings.runs_dir, state.batch_id), html)
    if as_json:
        print(
            json.dumps(
                {
                    "batch_id": state.batch_id,
                    "batch_dir": str(directory),
                    "executor": executor,
                    "wall_s": state.sessions[-1].wall_s,
                    "sessions": [s.model_dump() for s in state.sessions],
                    "jobs": rows,
                },
                indent=2,
            )
        )
    else:
        print_batch_table(rows, f"batch {state.batch_id} ({state.sessions[-1].wall_s:.0f}s)")
        if html:
            console.print(f"review page: {html}")
    if interrupted:
        err_console.print(f"interrupted; `fr-agent batch {jobs_file} --resume` continues it")
        raise typer.Exit(130)
    raise typer.Exit(0 if all(r["status"] == "passed" for r in rows) else 1)


def ray_resources(
    cpu_slots: Annotated[Optional[int], typer.Option(min=1, help="concurrent cpu jobs to advertise [cores/2]")] = None,
    catalog: Annotated[Optional[Path], typer.Option(help="directory with chips.yaml")] = None,
) -> None:
    """This host's chips as Ray custom resources, for `ray start --resources "$(fr-agent ray-resources)"`."""
    from fr_agent.shell.batch_ray import host_resources  # optional: batch_ray imports ray (the ray extra)

    print(json.dumps(host_resources(load_catalog(str(catalog) if catalog else None), cpu_slots)))


def transcripts_diff(
    run_a: Annotated[str, typer.Argument(help="run id (or prefix), or 'latest'")],
    run_b: Annotated[str, typer.Argument(help="run id (or prefix), or 'latest'")],
    home: HomeOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Two runs side by side: request, outcome, stages per attempt, fixes, eval metrics, time."""
    settings = settings_from(config, home)
    diff = diff_runs(find_run(settings, run_a), find_run(settings, run_b))
    if as_json:
        print(json.dumps(diff, indent=2))
        return
    table = Table(title=f"A = {diff['a']}\nB = {diff['b']}")
    for column in ("", "A", "B"):
        table.add_column(column, overflow="fold")
    for key, (va, vb) in diff["request"].items():
        table.add_row(f"request.{key}", escape(str(va)), escape(str(vb)))
    table.add_row("status", _status_cell(diff["status"][0]), _status_cell(diff["status"][1]))
    table.add_row("reason", escape(diff["reason"][0]), escape(diff["reason"][1]))
    table.add_row("attempts", str(diff["attempts"][0]), str(diff["attempts"][1]))
    for s in diff["stages"]:
        mark = "" if s["a"] == s["b"] else " [yellow]≠[/yellow]"
        table.add_row(f"stage {s['stage']}{mark}", f"{s['a']} ({s['seconds'][0]}s)", f"{s['b']} ({s['seconds'][1]}s)")
    table.add_row("gate", str(diff["gate_passed"][0]), str(diff["gate_passed"][1]))
    for m in diff["eval"]:
        table.add_row(f"eval {m['metric']}", str(m["a"]), f"{m['b']} (Δ {m['delta']})")
    table.add_row("wall time", f"{diff['seconds'][0]}s", f"{diff['seconds'][1]}s")
    console.print(table)
    for label, fixes in (
        ("fixes in both", diff["fixes"]["both"]),
        ("only in A", diff["fixes"]["only_a"]),
        ("only in B", diff["fixes"]["only_b"]),
    ):
        console.print(f"{label}: " + (", ".join(escape(f) for f in fixes) or "none"), soft_wrap=True)


def transcripts_replay(
    run_id: Annotated[str, typer.Argument(help="run id (or prefix), or 'latest'")],
    sandbox: Annotated[
        Optional[str], typer.Option("--sandbox", help="local, docker or host [the source run's]")
    ] = None,
    home: HomeOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-apply RUN's recorded fixes to its analysed recipe without a planner, re-run every stage and the eval."""
    if sandbox not in (None, "local", "docker", "host"):
        raise FrAgentError(f"unknown sandbox {sandbox!r}; use 'local', 'docker' or 'host'")
    settings = settings_from(config, home)
    source = Run.open(settings, run_id)
    replayed = replay_run(source, settings, sandbox=sandbox, on_event=None if as_json else show_event)
    before, after = source.summary(), replayed.summary()
    result = compare(before, after)
    if as_json:
        print(json.dumps({"compare": result, "replay": after}, indent=2))
    else:
        console.print(
            f"replay {escape(after['run_id'])}: {_status_cell(after['status'])} ({escape(after['reason'])})",
            soft_wrap=True,
        )
        console.print(
            f"source {escape(before['run_id'])}: {_status_cell(before['status'])}; "
            + ("[green]reproduced[/green]" if result["reproduced"] else "[red]not reproduced[/red]")
        )
    raise typer.Exit(0 if after["status"] == "passed" else 1)


def register(app: typer.Typer, transcripts_app: typer.Typer) -> None:
    app.command("batch")(batch)
    app.command("ray-resources")(ray_resources)
    transcripts_app.command("diff")(transcripts_diff)
    transcripts_app.command("replay")(transcripts_replay)
