"""`fr-agent bench diagnose|repair`: the benchmark scripts behind one command group."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fr_agent.core.errors import FrAgentError
from fr_agent.shell import bench_diagnose as diagnosis_bench

bench_app = typer.Typer(
    no_args_is_help=True, help="Benchmarks: diagnosis accuracy on real logs, the repair loop on broken recipes."
)


@bench_app.command("diagnose")
def bench_diagnose(
    corpus: Annotated[Path, typer.Option(help="corpus dir with labels.yaml and logs/")] = Path("tests/data/diagnose"),
    big_mb: Annotated[int, typer.Option("--big-mb", help="also time a synthetic log of this many MB")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="list the misses")] = False,
) -> None:
    """Category and parameter accuracy per category on the labelled corpus, and speed."""
    report = diagnosis_bench.run(corpus, big_mb)
    print(report.model_dump_json(indent=2) if as_json else diagnosis_bench.render(report, verbose))


@bench_app.command("repair")
def bench_repair(
    only: Annotated[Optional[list[str]], typer.Option("--only", help="scenario id (repeatable)")] = None,
    attempts: Annotated[int, typer.Option(help="max attempts per scenario (the target counts repairs within 3)")] = 3,
    until: Annotated[
        str,
        typer.Option(
            help="how far each scenario runs: stage (until the broken stage passes "
            "again), stages (every stage; the eval gate is next), eval (through eval "
            "and publish)"
        ),
    ] = "stages",
    home: Annotated[Optional[Path], typer.Option("--home", help="where runs and caches live")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="settings YAML")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Run the repair-benchmark scenarios through the loop: repair rate, attempts, wall time, and any pass
    whose validator did not run (non-zero exit then, or when a scenario's fault did not bite)."""
    # heavy: bench_repair builds the tiny-llama fixture, so it imports torch and transformers (the host extra)
    from fr_agent.shell.bench_repair import render, render_row, run

    try:
        if until not in ("stage", "stages", "eval"):
            raise FrAgentError(f"--until must be stage, stages or eval, not {until!r}")
        report = run(
            only=only or None,
            max_attempts=attempts,
            home=home,
            mode=until,
            config=config,
            on_result=None if as_json else lambda r: print(render_row(r), flush=True),
        )
    except FrAgentError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    print(report.model_dump_json(indent=2) if as_json else "\n" + render(report))
    raise typer.Exit(0 if report.unvalidated_passes == 0 and not report.broken_scenarios else 1)
