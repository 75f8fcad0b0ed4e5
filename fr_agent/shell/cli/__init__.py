"""fr-agent's command line: a chat-style `run`, `resume`, the catalog, transcripts and diagnosis. Builds the
app and registers the subcommand modules; what they share (consoles, options, printing) is in `common`."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from pydantic import BaseModel
from rich.markup import escape
from rich.table import Table

from fr_agent.core.catalog import ChipProfile, ModelEntry, load_catalog
from fr_agent.core.config import Settings
from fr_agent.core.errors import FrAgentError
from fr_agent.core.request import RunRequest
from fr_agent.playbooks.diagnose import diagnose_log, diagnose_stream
from fr_agent.shell.cli import batch as cli_batch
from fr_agent.shell.cli import bench as cli_bench
from fr_agent.shell.cli import llm as cli_llm
from fr_agent.shell.cli import publish as cli_publish
from fr_agent.shell.cli import sandbox as cli_sandbox
from fr_agent.shell.cli.batch import write_run_html
from fr_agent.shell.cli.common import (
    ConfigOpt,
    HomeOpt,
    JsonOpt,
    console,
    err_console,
    fail,
    print_outcome,
    settings_from,
    show_event,
)
from fr_agent.shell.cli.llm import open_session, session_hooks
from fr_agent.shell.runs import Run, run_dirs, summarize

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Move LLMs onto new AI chips: analyse, precheck, attempt, repair, eval, publish.",
)
transcripts_app = typer.Typer(no_args_is_help=True, help="Review runs afterwards.")
app.add_typer(transcripts_app, name="transcripts")
app.add_typer(cli_sandbox.sandbox_app, name="sandbox")  # setup, engine, status, prune


class Terminated(KeyboardInterrupt):
    """SIGTERM reached a run."""


@contextmanager
def sigterm_interrupts():
    """SIGTERM (`timeout`, a batch runner, `kill`) unwinds a run like Ctrl-C does, so its servers and probes
    are stopped and its checkpoint kept; the default action would end the process and orphan them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted(err: KeyboardInterrupt, message: str) -> None:
    fail(
        ("terminated" if isinstance(err, Terminated) else "interrupted") + message,
        143 if isinstance(err, Terminated) else 130,
    )


def chat_hooks(settings: Settings, yes: bool, as_json: bool, run_dir: Path | None = None):
    """(approver, on_event) of the chat session a run is driven in: none with --yes, events not shown with --json."""
    session = open_session(yes, err_console if as_json else console, settings.runs_dir)
    return session_hooks(session, yes, None if as_json else show_event, run_dir)


@app.command()
def run(
    model: Annotated[str, typer.Argument(help="catalog name, HF repo id, or local model directory")],
    chip: Annotated[str, typer.Option("--chip", help="target chip profile (see `fr-agent chips`)")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="apply fixes without asking")] = False,
    planner: Annotated[
        str,
        typer.Option(
            help="playbook (embedded default), llm (an OpenAI-compatible endpoint: "
            "FR_AGENT_LLM_BASE_URL/_MODEL/_API_KEY or llm: in --config), auto "
            "(llm if one is configured and answers, else playbook), or script:FILE"
        ),
    ] = "playbook",
    sandbox: Annotated[
        Optional[str],
        typer.Option(
            help="local (venv), docker (containers; see `fr-agent sandbox`) "
            "or host (a venv over the host's preinstalled stack) "
            "[settings' sandbox.kind, local]"
        ),
    ] = None,
    with_flaggems: Annotated[bool, typer.Option("--with-flaggems", help="run operators through FlagGems")] = False,
    engine: Annotated[
        Optional[str],
        typer.Option(
            help="vllm (the chip's engine stack, default) or hf (transformers serving itself: starts in seconds)"
        ),
    ] = None,
    catalog: Annotated[Optional[Path], typer.Option(help="directory with chips.yaml / models.yaml")] = None,
    config: ConfigOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
    run_id: Annotated[
        Optional[str], typer.Option("--run-id", help="name the run directory (default: time-model-chip-random)")
    ] = None,
) -> None:
    """Migrate MODEL onto CHIP: a chat-style session that shows each fix with its evidence."""
    settings = settings_from(config, home)
    if engine not in (None, "vllm", "hf"):
        fail(f"unknown engine {engine!r}: use vllm or hf")
    sandbox = sandbox or settings.sandbox.kind
    if sandbox not in ("local", "docker", "host"):
        fail(f"unknown sandbox {sandbox!r}; use 'local', 'docker' or 'host'")
    request = RunRequest(
        model=model,
        chip=chip,
        planner=planner,
        sandbox=sandbox,
        with_flaggems=with_flaggems,
        engine=engine,
        catalog=str(catalog) if catalog else None,
    )
    run = None
    try:
        with sigterm_interrupts():
            approver, on_event = chat_hooks(settings, yes, as_json)
            with Run.create(request, settings, run_id=run_id) as run:
                run.drive(auto_approve=yes, approver=approver, on_event=on_event)
    except KeyboardInterrupt as err:
        interrupted(err, "; the run is checkpointed: `fr-agent resume latest` continues it")
    raise typer.Exit(print_outcome(run, as_json))


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="run id (or a prefix), or 'latest'")],
    yes: Annotated[bool, typer.Option("--yes", "-y")] = False,
    config: ConfigOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Continue a killed or interrupted run from its last checkpoint, without redoing passed stages."""
    settings = settings_from(config, home)
    run = Run.open(settings, run_id)
    try:
        with sigterm_interrupts():
            approver, on_event = chat_hooks(settings, yes, as_json, run.files.root)
            with run:
                run.drive(auto_approve=yes, approver=approver, on_event=on_event)
    except KeyboardInterrupt as err:
        interrupted(err, f"; resume again with `fr-agent resume {run.id}`")
    raise typer.Exit(print_outcome(run, as_json))


def print_entries(title: str, entries: dict[str, BaseModel], as_json: bool, columns: dict[str, Callable]) -> None:
    """Catalog entries as JSON, or as a table with a row each: `columns` maps a heading to its cell."""
    if as_json:
        print(json.dumps({k: v.model_dump() for k, v in entries.items()}, indent=2))
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for entry in entries.values():
        table.add_row(*(cell(entry) for cell in columns.values()))
    console.print(table)


CHIP_COLUMNS: dict[str, Callable[[ChipProfile], str]] = {
    "chip": lambda c: c.name,
    "vendor": lambda c: c.vendor,
    "torch device": lambda c: c.torch_device,
    "detect": lambda c: c.detection.cli or "-",
    "visible devices": lambda c: c.visible_devices_env or "-",
    "GEMS_VENDOR": lambda c: c.gems_vendor or "-",
    "dtypes": lambda c: ",".join(c.dtypes),
    "GiB/card": lambda c: str(c.memory_gib_per_card or "-"),
}
MODEL_COLUMNS: dict[str, Callable[[ModelEntry], str]] = {
    "name": lambda m: m.name,
    "repo id": lambda m: m.repo_id,
    "architecture": lambda m: m.facts.architecture,
    "params (B)": lambda m: f"{m.facts.params_b:g}",
    "dtype": lambda m: m.facts.dtype,
    "source": lambda m: "built locally" if m.fixture else "hub",
}


@app.command()
def chips(catalog: Annotated[Optional[Path], typer.Option()] = None, as_json: JsonOpt = False) -> None:
    """The chip profiles fr-agent knows."""
    print_entries("chips", load_catalog(str(catalog) if catalog else None).chips, as_json, CHIP_COLUMNS)


@app.command()
def models(catalog: Annotated[Optional[Path], typer.Option()] = None, as_json: JsonOpt = False) -> None:
    """The models in the catalog (any HF repo id or local directory works too)."""
    print_entries("models", load_catalog(str(catalog) if catalog else None).models, as_json, MODEL_COLUMNS)


@app.command()
def diagnose(
    log: Annotated[str, typer.Argument(help="log file, or - for stdin")] = "-",
    stage: Annotated[str, typer.Option(help="stage the log came from")] = "unknown",
    as_json: JsonOpt = False,
) -> None:
    """Read a raw failure log (any size, any bytes) and print its diagnosis; --json: one JSON object."""
    if log == "-":
        diagnosis = diagnose_stream(sys.stdin.buffer, stage)
    else:
        path = Path(log)
        if not path.is_file():
            fail(f"no such log file: {log}")
        try:
            diagnosis = diagnose_log(path, stage)
        except OSError as err:
            fail(f"cannot read {log}: {err.strerror or err}")
    if as_json:
        print(diagnosis.model_dump_json())
        return
    console.print(
        f"category: {diagnosis.category} (confidence {diagnosis.confidence:.1f}); {escape(diagnosis.explanation)}"
    )
    if diagnosis.params:
        console.print(
            f"  params: {escape(json.dumps(diagnosis.params))}"
            + (f" (playbook {diagnosis.playbook})" if diagnosis.playbook else "")
        )
    for line in diagnosis.evidence:
        console.print(f"  evidence: {escape(line)}", soft_wrap=True)
    for call in diagnosis.tool_calls:
        console.print(f"  would call {call.tool}({escape(json.dumps(call.args))})")


@transcripts_app.command("list")
def transcripts_list(home: HomeOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """All runs, newest last; a broken one is skipped with a warning."""
    rows = []
    for run_dir in run_dirs(settings_from(config, home)):
        try:
            rows.append(summarize(run_dir))
        except (FrAgentError, OSError, UnicodeDecodeError) as err:
            reason = err if isinstance(err, FrAgentError) else f"run {run_dir.name}: {err}"
            err_console.print(f"[yellow]warning:[/yellow] skipped {escape(str(reason))}", soft_wrap=True)
    if as_json:
        print(
            json.dumps(
                [
                    {k: r[k] for k in ("run_id", "model", "chip", "status", "attempts", "started", "finished")}
                    | {"fixes": len(r["fixes"]), "gate_passed": (r["eval"] or {}).get("gate_passed")}
                    for r in rows
                ],
                indent=2,
            )
        )
        return
    table = Table(title="runs")
    for column in ("run", "model", "chip", "status", "attempts", "fixes", "gate"):
        table.add_column(column)
    for r in rows:
        gate = (r["eval"] or {}).get("gate_passed")
        table.add_row(
            escape(r["run_id"]),
            escape(r["model"]),
            escape(r["chip"]),
            escape(r["status"]),
            str(r["attempts"]),
            str(len(r["fixes"])),
            "-" if gate is None else ("pass" if gate else "FAIL"),
        )
    console.print(table)


@transcripts_app.command("show")
def transcripts_show(
    run_id: Annotated[str, typer.Argument(help="run id (or a prefix), or 'latest'")],
    home: HomeOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    html: Annotated[Optional[Path], typer.Option("--html", help="write a self-contained review page here")] = None,
) -> None:
    """One run: status, attempts, stages, fixes, eval."""
    run = Run.open(settings_from(config, home), run_id)
    if html:
        write_run_html(run.files.root, html)
    print_outcome(run, as_json)


cli_batch.register(app, transcripts_app)  # batch, ray-resources, transcripts diff / replay
app.add_typer(cli_bench.bench_app, name="bench")  # diagnose, repair
cli_llm.register(app)  # llm check / serve-scripted, hint
cli_publish.register(app)  # publish RUN, card lint


def usage_line(err: Exception) -> str:
    """A usage error as one line, with the command whose --help says more."""
    message = " ".join((err.format_message() if hasattr(err, "format_message") else str(err)).split())
    ctx = getattr(err, "ctx", None)
    return f"{message} (see `{ctx.command_path} --help`)" if ctx is not None else message


def main() -> None:
    try:
        sys.exit(app(standalone_mode=False) or 0)
    except FrAgentError as err:
        err_console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)
        sys.exit(err.exit_code)
    except (click.ClickException, typer.TyperException) as err:  # typer 0.29 raises its own click fork's errors
        if type(err).__name__ == "NoArgsIsHelpError":  # `fr-agent` or a group alone: its help (typer checks so too)
            err.show()
            sys.exit(0)
        err_console.print(f"[red]error:[/red] {escape(usage_line(err))}", soft_wrap=True)
        sys.exit(2)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        sys.exit(130)
