"""CLI for the LLM planner and the chat: `fr-agent llm check`, `fr-agent llm serve-scripted`, `fr-agent hint`,
and the stdin session `run`/`resume` hold while a run is live."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fr_agent.core.config import load_settings
from fr_agent.core.errors import FrAgentError
from fr_agent.core.events import Event, RunFinishedEvent, last, read_events
from fr_agent.core.hints import HintBox
from fr_agent.core.paths import RunFiles
from fr_agent.playbooks.llm_client import probe, resolve_endpoint
from fr_agent.playbooks.llm_planner import NO_ENDPOINT
from fr_agent.playbooks.scripted_llm import Script, ScriptedLLM, ScriptedServer, load_script, replay_script
from fr_agent.shell.chat import ChatSession, approval_answer
from fr_agent.shell.cli.common import console, err_console, settings_from
from fr_agent.shell.runs import find_run

llm_app = typer.Typer(no_args_is_help=True, help="The LLM planner's endpoint: probe one, or serve a scripted one.")

BUILTIN_SCRIPTS = {"follow-candidates": "fr_agent.playbooks.scripted_llm:follow_candidates"}


def register(app: typer.Typer) -> None:
    app.add_typer(llm_app, name="llm")
    app.command("hint")(hint)


@llm_app.command("check")
def check(
    base_url: Annotated[
        Optional[str], typer.Option(help="endpoint [env FR_AGENT_LLM_BASE_URL, settings llm.base_url]")
    ] = None,
    model: Annotated[
        Optional[str], typer.Option(help="model name [env FR_AGENT_LLM_MODEL, settings llm.model]")
    ] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="settings YAML with an llm: section")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Probe an OpenAI-compatible endpoint and print what it can do for the planner (key: FR_AGENT_LLM_API_KEY)."""
    settings = load_settings(config)
    llm = settings.llm.model_copy(update={k: v for k, v in (("base_url", base_url), ("model", model)) if v})
    env = dict(os.environ)  # flags win over the env
    for flag, name in ((base_url, "FR_AGENT_LLM_BASE_URL"), (model, "FR_AGENT_LLM_MODEL")):
        if flag:
            env.pop(name, None)
    endpoint = resolve_endpoint(llm, env)
    if endpoint is None:
        raise FrAgentError(NO_ENDPOINT)
    report, _ = probe(endpoint, llm)
    if as_json:
        print(json.dumps(report.model_dump() | {"usable": report.usable}, indent=2))
    elif report.answers:
        table = Table(title=f"{endpoint.model} at {endpoint.where}", show_header=False)
        rows = [
            ("answers", report.answers),
            ("models listed", ", ".join(report.models_listed or []) or "-"),
            ("context window", report.context_window or "-"),
            ("native tool calls", report.native_tool_calls),
            ("tool calls as text", report.text_tool_calls),
            ("tool_choice", report.tool_choice),
            ("strict schemas", report.strict),
            ("<think> in content", report.think_tags),
            ("reasoning_content", report.reasoning_content),
            ("reasoning_content sent back", "-" if report.reasoning_sent_back is None else report.reasoning_sent_back),
            ("usage reported", report.usage_reported),
            ("latency", f"{report.latency_s or 0:.2f}s"),
            ("tokens used", report.tokens),
        ]
        for name, value in rows:
            table.add_row(name, escape(str(value).replace("True", "yes").replace("False", "no")))
        for dropped in report.dropped:
            table.add_row("refused", escape(dropped))
        console.print(table)
        verdict = "usable by the LLM planner" if report.usable else "NOT usable by the LLM planner"
        console.print(f"[{'green' if report.usable else 'red'}]{verdict}[/]")
    if report.error:
        err_console.print(f"[red]error:[/red] {escape(report.error)}", soft_wrap=True)
    raise typer.Exit(0 if report.usable else 1)


@llm_app.command("serve-scripted")
def serve_scripted(
    script: Annotated[
        str,
        typer.Argument(
            help="script YAML/JSON (replies, quirks, respond), a recording (.jsonl) to replay, or 'follow-candidates'"
        ),
    ],
    port: Annotated[int, typer.Option(help="0 picks a free port")] = 8000,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    record: Annotated[Optional[Path], typer.Option(help="append every exchange to this JSON-lines file")] = None,
) -> None:
    """Serve the scripted LLM over HTTP (OpenAI chat completions) for offline demos and tests."""
    if script in BUILTIN_SCRIPTS:
        loaded, base = Script(respond=BUILTIN_SCRIPTS[script]), None
    else:
        path = Path(script)
        if not path.is_file():
            raise FrAgentError(f"no LLM script {script!r} (a file, or one of: {', '.join(BUILTIN_SCRIPTS)})")
        loaded = replay_script(path) if path.suffix == ".jsonl" else load_script(path)
        base = path.parent
    try:
        server = ScriptedServer(ScriptedLLM(loaded, base=base, record=record), host=host, port=port)
    except OSError as err:
        raise FrAgentError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    print(f"scripted LLM {loaded.model!r} serving on {server.url}", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()


def hint(
    run_id: Annotated[str, typer.Argument(help="run id (or a prefix), or 'latest'")],
    text: Annotated[str, typer.Argument(help="what to tell the planner, e.g. 'try float16' or 'why that package?'")],
    home: Annotated[Optional[Path], typer.Option("--home", help="where runs live [env FR_AGENT_HOME]")] = None,
    config: Annotated[Optional[Path], typer.Option("--config")] = None,
) -> None:
    """Send a live run a message: its planner reads it at the next round and answers in the run's session."""
    run_dir = find_run(settings_from(config, home), run_id)
    transcript = RunFiles(run_dir).transcript
    if transcript.exists() and last(read_events(transcript), RunFinishedEvent):
        raise FrAgentError(f"run {run_dir.name} already finished; a hint reaches only a live or paused run")
    HintBox(run_dir).add(text, "cli")
    console.print(
        f"hint queued for {run_dir.name}: its planner reads it at the next round and answers in the "
        "run's session and transcript"
    )


# ---------------------------------------------------------------------------------------------------
# The stdin session of `run` and `resume`


def open_session(yes: bool, out: Console, runs_dir: Path) -> ChatSession | None:
    """stdin is the chat while a run is live: approval answers and hints. With --yes, only on a terminal."""
    terminal = sys.stdin is not None and sys.stdin.isatty()
    if sys.stdin is None or (yes and not terminal):
        return None
    return ChatSession(
        sys.stdin,
        lambda text: out.print(escape(text), soft_wrap=True),
        terminal=terminal,
        prompt=lambda text: out.print(escape(text), end="", soft_wrap=True),
        runs_dir=runs_dir,
    )


def session_hooks(
    session: ChatSession | None, yes: bool, show: Callable[[Event], None] | None, run_dir: Path | None = None
):
    """(approver, on_event) for start_run / resume_run. A resumed run's directory is known at once; a new
    run's from its first event."""
    if session is not None and run_dir is not None:
        session.attach(run_dir)

    def approve(request: dict) -> dict:
        try:
            return approval_answer(session, request)
        except EOFError:
            raise typer.Abort() from None

    listeners = [f for f in (show, session.on_event if session else None) if f]

    def on_event(event: Event) -> None:
        for listener in listeners:
            listener(event)

    # Under --yes the loop applies fixes by itself, and asks the session only for those that need an explicit
    # approval (remote code, plugin classes, file and loader paths): a terminal session answers them.
    return (None if session is None else approve), (on_event if listeners else None)
