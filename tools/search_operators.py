"""search_operators: find the FlagGems ops that break this model here (crash, NaN/Inf, drift), then keep the
set of FlagGems ops and our Triton kernels that is correct and not slower than torch, by probing the model
in fresh processes (tools/operator_search.py). A planner calls it with no arguments; the search fills them in
(`resolve`), so the recorded call replays the selection without searching again. Verified by one more
probe of the model with the resulting operator plan."""

from __future__ import annotations

import json
from pathlib import Path

from fr_agent.core.config import Settings
from fr_agent.core.errors import ToolRejected
from fr_agent.core.recipe import OperatorPlan, Recipe
from fr_agent.kernels import KERNELS_DIR
from fr_agent.sandboxes.base import Sandbox
from fr_agent.tools.base import Tool, ToolArgs, Verification, change
from fr_agent.tools.operator_search import (
    OperatorSearch,
    Probe,
    SandboxRunner,
    SearchError,
    SearchSettings,
    verify_model,
)


class SearchOperatorsArgs(ToolArgs):
    include: list[str] | None = None  # FlagGems functions kept (set by the search)
    exclude: list[str] | None = None  # candidate FlagGems functions left out: faulty or slower than torch
    kernels: list[str] | None = None  # our kernels swapped in
    report: str | None = None  # the search report (JSON), for the reviewer


def admit(args: SearchOperatorsArgs, recipe: Recipe, sandbox: Sandbox) -> None:
    if recipe.operators.backend != "flaggems" and args.include is None:
        raise ToolRejected(
            f"search_operators needs the flaggems backend: the recipe runs {recipe.operators.backend} operators"
        )
    if recipe.torch_device == "cpu" and args.include is None:
        raise ToolRejected("search_operators probes Triton kernels on an accelerator; this recipe runs on cpu")


def resolve(sandbox: Sandbox, recipe: Recipe, args: SearchOperatorsArgs, settings: Settings) -> SearchOperatorsArgs:
    if args.include is not None:  # already a selection (a replayed or hand-written call)
        return args
    runner = SandboxRunner(sandbox, recipe, KERNELS_DIR, SearchSettings(), timeout=settings.timeouts.verify)
    try:
        report = OperatorSearch(runner, SearchSettings()).run()
    except SearchError as err:
        raise ToolRejected(f"operator search failed: {err}") from None
    path = runner.dir / "report.json"
    path.write_text(report.model_dump_json(indent=2))
    return SearchOperatorsArgs(
        include=report.selection.include,
        exclude=report.selection.exclude,
        kernels=report.selection.kernels,
        report=str(path),
    )


def planned(plan: OperatorPlan, args: SearchOperatorsArgs) -> OperatorPlan:
    data = plan.model_dump()
    data.update(
        backend="flaggems" if args.include else "torch",
        include=list(args.include or []),
        disabled=sorted({*plan.disabled, *(args.exclude or [])}),
        kernels=list(args.kernels or []),
    )
    return OperatorPlan.model_validate(data)


def apply(recipe: Recipe, args: SearchOperatorsArgs) -> Recipe:
    if args.include is None:
        raise ValueError("search_operators: apply needs a resolved call (include set by the search)")
    summary = f"FlagGems only_enable {len(args.include)} ops, excluding {len(args.exclude or [])}" + (
        f"; kernels {', '.join(args.kernels)}" if args.kernels else ""
    )
    return recipe.with_change(change("search_operators", args, summary), operators=planned(recipe.operators, args))


def verify(sandbox: Sandbox, recipe: Recipe, args: SearchOperatorsArgs, settings: Settings) -> Verification:
    def passed(probe: Probe) -> str:
        top1 = f", top-1 {probe.top1:.1%}" if probe.top1 is not None else ""
        detail = (
            f"model forward with {len(args.include or [])} FlagGems ops"
            + (f" + {', '.join(args.kernels or [])}" if args.kernels else "")
            + f": logits rel err {probe.rel_err:.3g}{top1}, {probe.speed or 0:.2f}x native"
        )
        if args.report and Path(args.report).exists():
            report = json.loads(Path(args.report).read_text())
            faulty = ", ".join(f"{op} ({why})" for op, why in sorted(report["faulty"].items())) or "none"
            detail += f"; faulty: {faulty} (found in {report['fault_rounds']} rounds, bound {report['round_bound']})"
        return detail

    return verify_model(sandbox, recipe, settings, passed, "model forward under the selection")


TOOL = Tool(
    name="search_operators",
    description="Probe the model to find faulty FlagGems ops (crash, NaN, drift) and keep the correct, fast set "
    "of FlagGems ops and Triton kernels.",
    args_model=SearchOperatorsArgs,
    apply=apply,
    verify=verify,
    admit=admit,
    resolve=resolve,
    rerun_from=lambda args: "operators",
)
