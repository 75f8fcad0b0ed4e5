"""What every `fr-agent` subcommand module shares: the consoles, the option types, `fail`, settings from
--config/--home, and how a run's events and outcome are printed. Imported by the package's `__init__`
(which builds the app) and by each subcommand module, so none of them imports another."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fr_agent.core.config import Settings, load_settings
from fr_agent.core.events import (
    AnalysisEvent,
    ChatEvent,
    DiagnosisEvent,
    EvalEvent,
    Event,
    LLMCallEvent,
    NoteEvent,
    PlanEvent,
    PrecheckEvent,
    StageEvent,
    ToolCallEvent,
    VerificationEvent,
)
from fr_agent.core.recipe import Recipe
from fr_agent.evals.render import gate_text, rich_table

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="settings YAML (limits, timeouts, sandbox)")]
HomeOpt = Annotated[
    Optional[Path], typer.Option("--home", help="where runs and caches live [env FR_AGENT_HOME, ./.fr-agent]")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def settings_from(config: Path | None, home: Path | None) -> Settings:
    return load_settings(config, home=home.absolute() if home else None)


def show_event(event: Event) -> None:
    """Live progress: one line per stage, each diagnosis with its evidence, each fix and its check."""
    if isinstance(event, AnalysisEvent):
        facts = event.facts
        console.print(
            f"[bold]analyse[/bold] {event.model.name} ({facts.architecture}, {facts.params_b}B, "
            f"{facts.dtype}) on {event.chip} via {event.source}"
        )
        recipe = Recipe.model_validate(event.recipe)
        console.print("  recipe: " + ", ".join(p.requirement() for p in recipe.packages) + f"; dtype {recipe.dtype}")
    elif isinstance(event, PrecheckEvent):
        for check in event.checks:
            mark = "[green]ok[/green]" if check.ok else "[red]FAIL[/red]"
            console.print(f"  precheck {check.name:<13} {mark} {check.detail}", soft_wrap=True)
    elif isinstance(event, StageEvent):
        mark = "[green]✓[/green]" if event.ok else "[red]✗[/red]"
        console.print(
            f"{mark} attempt {event.attempt} [bold]{event.stage:<9}[/bold] {event.duration_s:7.1f}s  "
            f"{escape(event.detail)}",
            soft_wrap=True,
        )
    elif isinstance(event, DiagnosisEvent):
        console.print(
            f"  [yellow]diagnosis[/yellow] {event.category}"
            + (f" ({event.playbook})" if event.playbook else "")
            + f": {escape(event.explanation)}"
        )
        for line in event.evidence[-2:]:
            console.print(f"    evidence: {escape(line[:300])}", soft_wrap=True)
    elif isinstance(event, PlanEvent):
        console.print(f"  [cyan]fix[/cyan] {event.tool}({escape(json.dumps(event.args))})")
    elif isinstance(event, ToolCallEvent) and event.status in ("rejected", "declined"):
        console.print(
            f"  [red]{event.status}[/red] {event.tool}({escape(json.dumps(event.args))}) {escape(event.error or '')}"
        )
    elif isinstance(event, VerificationEvent):
        mark = "[green]verified[/green]" if event.ok else "[red]not verified[/red]"
        console.print(f"  {mark}: {escape(event.detail)}")
    elif isinstance(event, ChatEvent):
        who = "you" if event.role == "user" else "planner"
        console.print(f"  [magenta]{who}:[/magenta] {escape(event.text)}", soft_wrap=True)
    elif isinstance(event, LLMCallEvent) and event.purpose == "plan":
        console.print(
            f"  [dim]llm {event.model}: {event.total_tokens} tokens, {event.latency_s or 0:.1f}s, "
            f"${event.cost_usd:.4f}, calls {', '.join(event.calls) or 'none'}[/dim]"
        )
    elif isinstance(event, NoteEvent) and event.reason and event.message != "resumed":
        console.print(f"  [yellow]{escape(event.message)}[/yellow]: {escape(event.reason)}", soft_wrap=True)
    elif isinstance(event, EvalEvent):
        console.print(
            f"[bold]eval[/bold] gate {'passed' if event.gate_passed else 'FAILED'}: "
            f"{escape(str(event.gate_reason or event.error))}"
        )


def print_outcome(run, as_json: bool) -> int:
    summary = run.summary()
    if as_json:
        print(json.dumps(summary, indent=2))
        return 0 if summary["status"] == "passed" else 1
    table = Table(title="stages")
    for column in ("attempt", "stage", "ok", "seconds", "detail"):
        table.add_column(column)
    for s in summary["stages"]:
        table.add_row(
            str(s["attempt"]),
            s["stage"],
            "✓" if s["ok"] else "✗",
            f"{s['duration_s']:.1f}",
            escape((s["detail"] or "")[:90]),
        )
    console.print(table)
    console.print(f"attempts: {summary['attempts']}; fixes applied and verified: {len(summary['fixes'])}")
    for fix in summary["fixes"]:
        console.print(f"  - {fix['tool']}({escape(json.dumps(fix['args']))}) → {escape(fix['detail'])}")
    if summary["eval"] and summary["eval"].get("metrics"):
        console.print(rich_table(summary["eval"]))
        console.print(escape(gate_text(summary["eval"])), soft_wrap=True)
    color = "green" if summary["status"] == "passed" else "red"
    console.print(f"[{color}]{summary['status']}[/{color}]: {escape(summary['reason'])}", soft_wrap=True)
    console.print(f"transcript: {summary['transcript']}")
    if summary["publish_dir"]:
        console.print(f"publish folder: {summary['publish_dir']}")
    return 0 if summary["status"] == "passed" else 1
