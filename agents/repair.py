"""The repair loop as a langgraph graph, checkpointed per run in SQLite.

analyse → precheck → run_stage ⟲ → (failure) diagnose → plan → approve → apply_fix → verify_fix → run_stage …
                               → (all stages pass) evaluate → publish → finish
Limits live in Settings; counters live in the state. Every node emits one or more transcript events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from fr_agent.agents.analyse import analyse
from fr_agent.agents.precheck import precheck
from fr_agent.agents.publish import publish
from fr_agent.agents.stages import LIVE_STAGES, Live, StageContext, StageResult, run_stage
from fr_agent.core.catalog import Catalog
from fr_agent.core.hints import HintBox
from fr_agent.core.config import Settings
from fr_agent.core.errors import AlreadyTried, ToolRejected
from fr_agent.agents.card_lint import lint_file
from fr_agent.evals.agent import evaluate, write_artifacts
from fr_agent.playbooks.accuracy import diagnose_eval
from fr_agent.playbooks.diagnose import Diagnosis, diagnose_log, diagnose_text
from fr_agent.playbooks.planner import Planner, PlanRound
from fr_agent.core.recipe import STAGES, Recipe
from fr_agent.sandboxes.base import ChecksInside, Sandbox, Snapshots
from fr_agent.tools import TOOLS, ToolCall, validate_call
from fr_agent.core.events import Transcript


class RunState(TypedDict, total=False):
    request: dict
    analysis: dict
    recipe: dict
    recipe_before_fix: dict | None
    attempt: int
    passed: list[str]
    failure: dict | None
    diagnosis: dict | None
    pending: dict | None
    tried: list[str]
    fixes: list[dict]
    fixed_signature: str | None
    delivered_hints: list[str]
    status: str
    reason: str
    eval: dict | None
    publish_dir: str | None


@dataclass
class Runtime:
    """What the nodes use but the checkpoint does not hold."""

    run_id: str
    run_dir: Path
    settings: Settings
    catalog: Catalog
    sandbox: Sandbox
    planner: Planner
    transcript: Transcript
    auto_approve: bool
    live: Live = field(default_factory=Live)
    hints: HintBox | None = None

    def ctx(self, state: RunState) -> StageContext:
        facts = state["analysis"]["facts"]
        return StageContext(sandbox=self.sandbox, settings=self.settings, live=self.live,
                            model_type=facts["model_type"], trust_remote_code=state["analysis"]["trust_remote_code"],
                            attempt=state.get("attempt", 1),
                            visible_devices_env=self.catalog.chip(state["request"]["chip"]).visible_devices_env)


def stage_index(stage: str) -> int:
    """Position in the attempt; the eval gate comes after every stage."""
    return STAGES.index(stage) if stage in STAGES else len(STAGES)


def fix_label(state: RunState) -> str:
    """Names the sandbox snapshot taken before a fix; the same in apply_fix and verify_fix."""
    return f"a{state['attempt']}-fix{len(state['fixes']) + 1}"


def admitted(call: ToolCall, tried: list[str] | set[str], recipe: Recipe, sandbox: Sandbox) -> ToolCall:
    """A proposal as the loop takes it: validated, normalised, not tried before, admitted by its tool
    (install_dependency checks the package index here, before anything is installed)."""
    tool, args = validate_call(call)
    call = ToolCall(tool=tool.name, args=args.model_dump(exclude_none=True))
    if call.key() in tried:
        raise AlreadyTried(f"{call.tool} {json.dumps(call.args, sort_keys=True)}")
    tool.admit(args, recipe, sandbox)
    return call


def build_graph(rt: Runtime):
    def emit(*args, **fields) -> None:
        rt.transcript.emit(*args, **fields)

    def without_dead_server(passed: list[str]) -> list[str]:
        """A resumed run has no engine process: stages whose result was that process run again."""
        if rt.live.server is not None and rt.live.server.alive():
            return passed
        return [s for s in passed if s not in LIVE_STAGES]

    def stop(status: str, reason: str) -> Command:
        return Command(update={"status": status, "reason": reason}, goto="finish")

    def analyse_model(state: RunState) -> Command[Literal["precheck"]]:
        req = state["request"]
        result = analyse(req["model"], req["chip"], rt.catalog, rt.settings, with_flaggems=req.get("with_flaggems", False),
                         engine=req.get("engine"))
        emit("analysis", model=result.model.model_dump(), chip=result.chip, source=result.source,
             facts=result.facts.model_dump(), notes=result.notes, recipe=result.recipe.model_dump())
        return Command(update={"analysis": result.model_dump(mode="json"), "recipe": result.recipe.model_dump(),
                               "attempt": 1, "passed": [], "tried": [], "fixes": []}, goto="precheck")

    def check_environment(state: RunState) -> Command[Literal["run_stage", "finish"]]:
        from fr_agent.agents.analyse import Analysis

        analysis = Analysis.model_validate(state["analysis"])
        result = precheck(analysis, rt.catalog.chip(analysis.chip), rt.settings, list(getattr(rt.sandbox, "find_links", [])))
        if isinstance(rt.sandbox, ChecksInside):  # a container checks its own python, compiler, devices, disk
            result = rt.sandbox.precheck(result, analysis, rt.catalog.chip(analysis.chip))
        emit("precheck", ok=result.ok, checks=[c.model_dump() for c in result.checks])
        if not result.ok:
            return stop("precheck_failed", "; ".join(f"{c.name}: {c.detail}" for c in result.failures()))
        recipe = Recipe.model_validate(state["recipe"])
        recipe = recipe.model_copy(update={"model": recipe.model.model_copy(update={"path": result.model_path})})
        if hasattr(rt.sandbox, "adopt_host_stack"):  # --sandbox host: the pins become what the host has
            recipe, note = rt.sandbox.adopt_host_stack(recipe)
            if note:
                emit("note", message=note)
        return Command(update={"recipe": recipe.model_dump()}, goto="run_stage")

    def run_next_stage(state: RunState) -> Command[Literal["run_stage", "diagnose", "evaluate"]]:
        recipe = Recipe.model_validate(state["recipe"])
        passed = without_dead_server(state["passed"])
        stage = next(s for s in STAGES if s not in passed)
        result = run_stage(stage, recipe, rt.ctx(state))
        emit("stage", attempt=state["attempt"], **result.model_dump())
        if not result.ok:
            return Command(update={"failure": result.model_dump(), "passed": passed}, goto="diagnose")
        passed = [*passed, stage]
        return Command(update={"passed": passed, "failure": None},
                       goto="evaluate" if len(passed) == len(STAGES) else "run_stage")

    def diagnose(state: RunState) -> Command[Literal["plan", "finish"]]:
        failure = StageResult.model_validate(state["failure"])
        diagnosis = (diagnose_log(Path(failure.log_path), failure.stage, timed_out=failure.timed_out)
                     if failure.log_path and Path(failure.log_path).exists()
                     else diagnose_text(failure.detail, failure.stage, timed_out=failure.timed_out))
        emit("diagnosis", attempt=state["attempt"], **diagnosis.model_dump())
        update = {"diagnosis": diagnosis.model_dump()}
        if diagnosis.signature == state.get("fixed_signature"):
            return Command(update={**update, "status": "failed",
                                   "reason": f"{failure.stage}: the failure survived its fix ({diagnosis.evidence[-1]})"},
                           goto="finish")
        if diagnosis.category == "unrepairable":
            return Command(update={**update, "status": "failed",
                                   "reason": f"{failure.stage}: unrepairable: {diagnosis.explanation}"}, goto="finish")
        if state["attempt"] >= rt.settings.limits.max_attempts or len(state["fixes"]) >= rt.settings.limits.max_fixes:
            return Command(update={**update, "status": "failed",
                                   "reason": f"limits reached after {state['attempt']} attempts"}, goto="finish")
        return Command(update=update, goto="plan")

    def plan(state: RunState) -> Command[Literal["approve", "finish"]]:
        diagnosis = Diagnosis.model_validate(state["diagnosis"])
        hints = rt.hints.pending(state.get("delivered_hints", [])) if rt.hints else []
        for hint in hints:  # delivered to this round's planner; the transcript remembers it across a resume
            emit("chat", attempt=state["attempt"], role="user", hint_id=hint.id, text=hint.text, source=hint.source)
        recipe = Recipe.model_validate(state["recipe"])
        round_ = PlanRound(diagnosis=diagnosis, tried=set(state["tried"]), attempt=state["attempt"], recipe=recipe,
                           failure=state["failure"], hints=hints, sandbox=rt.sandbox,
                           chip=rt.catalog.chip(state["request"]["chip"]), emit=emit, source=rt.planner.name,
                           check=lambda call: admitted(call, state["tried"], recipe, rt.sandbox))
        rejected = []
        for call in rt.planner.propose(round_)[: rt.settings.limits.max_candidates_per_failure]:
            try:
                call = admitted(call, state["tried"], recipe, rt.sandbox)
            except AlreadyTried:
                continue
            except ToolRejected as err:
                rejected.append(str(err))
                emit("tool_call", attempt=state["attempt"], status="rejected", tool=call.tool, args=call.args, error=str(err))
                continue
            emit("plan", attempt=state["attempt"], planner=round_.source, tool=call.tool, args=call.args,
                 explanation=diagnosis.explanation, evidence=diagnosis.evidence)
            return Command(update={"pending": call.model_dump(),
                                   "delivered_hints": [*state.get("delivered_hints", []), *(h.id for h in hints)]},
                           goto="approve")
        failure = state["failure"]["stage"]
        if rejected:
            return stop("failed", f"planner proposed an invalid tool call: {rejected[-1]}")
        return stop("failed", f"{failure}: no untried fix for: {diagnosis.evidence[-1] if diagnosis.evidence else diagnosis.explanation}")

    def approve(state: RunState) -> Command[Literal["apply_fix", "plan"]]:
        call = ToolCall.model_validate(state["pending"])
        if rt.auto_approve:
            return Command(goto="apply_fix")
        answer: dict[str, Any] = interrupt({"call": call.model_dump(), "diagnosis": state["diagnosis"]})
        decision = answer.get("decision", "decline")
        if decision == "decline":
            emit("tool_call", attempt=state["attempt"], status="declined", tool=call.tool, args=call.args)
            return Command(update={"tried": [*state["tried"], call.key()], "pending": None}, goto="plan")
        if decision == "edit":
            edited = ToolCall.model_construct(tool=call.tool, args=answer.get("args"))
            try:
                tool, args = validate_call(edited)
                tool.admit(args, Recipe.model_validate(state["recipe"]), rt.sandbox)
                edited = ToolCall(tool=tool.name, args=args.model_dump(exclude_none=True))
            except ToolRejected as err:
                emit("tool_call", attempt=state["attempt"], status="rejected", tool=call.tool, args=edited.args, error=str(err))
                return Command(update={"tried": [*state["tried"], call.key()], "pending": None}, goto="plan")
            return Command(update={"pending": edited.model_dump()}, goto="apply_fix")
        return Command(goto="apply_fix")

    def apply_fix(state: RunState) -> Command[Literal["verify_fix", "plan"]]:
        call = ToolCall.model_validate(state["pending"])
        tool, args = validate_call(call)
        before = Recipe.model_validate(state["recipe"])
        if tool.resolve is not None:  # a measurement fills the arguments in (operator search); record them
            try:
                args = tool.resolve(rt.sandbox, before, args, rt.settings)
            except ToolRejected as err:
                emit("tool_call", attempt=state["attempt"], status="rejected", tool=call.tool, args=call.args, error=str(err))
                return Command(update={"tried": [*state["tried"], call.key()], "pending": None}, goto="plan")
            state = {**state, "tried": [*state["tried"], call.key()]}
            call = ToolCall(tool=call.tool, args=args.model_dump(exclude_none=True))
        if isinstance(rt.sandbox, Snapshots):  # what to roll back to if this fix fails its check
            emit("note", attempt=state["attempt"], message=f"sandbox snapshot {rt.sandbox.snapshot(fix_label(state))}")
        after = tool.apply(before, args)
        emit("tool_call", attempt=state["attempt"], status="applied", tool=call.tool, args=call.args,
             change=after.changes[-1].summary)
        return Command(update={"recipe": after.model_dump(), "recipe_before_fix": before.model_dump(),
                               "pending": call.model_dump(), "tried": state["tried"]}, goto="verify_fix")

    def verify_fix(state: RunState) -> Command[Literal["run_stage", "plan"]]:
        call = ToolCall.model_validate(state["pending"])
        tool, args = validate_call(call)
        recipe = Recipe.model_validate(state["recipe"])
        verification = tool.verify(rt.sandbox, recipe, args, rt.settings)
        emit("verification", attempt=state["attempt"], tool=call.tool, args=call.args, **verification.model_dump())
        failed_stage = state["failure"]["stage"]
        rerun = min(stage_index(tool.rerun_from(args)), stage_index(failed_stage))
        common = {"tried": [*state["tried"], call.key()], "pending": None, "passed": list(STAGES[:rerun])}
        if not verification.ok:  # roll back: the change is dropped; rerun re-syncs the sandbox from the recipe
            if isinstance(rt.sandbox, Snapshots):  # and the environment goes back to before the fix
                emit("note", attempt=state["attempt"], message=f"sandbox rolled back to {rt.sandbox.rollback(fix_label(state))}")
            return Command(update={**common, "recipe": state["recipe_before_fix"]}, goto="plan")
        fix = {"tool": call.tool, "args": call.args, "attempt": state["attempt"], "verified": True,
               "detail": verification.detail, "for_stage": failed_stage, "signature": state["diagnosis"]["signature"]}
        return Command(update={**common, "fixes": [*state["fixes"], fix], "attempt": state["attempt"] + 1,
                               "fixed_signature": state["diagnosis"]["signature"]}, goto="run_stage")

    def evaluate_migration(state: RunState) -> Command[Literal["publish", "plan", "finish", "run_stage"]]:
        if without_dead_server(state["passed"]) != state["passed"]:
            return Command(update={"passed": without_dead_server(state["passed"])}, goto="run_stage")
        recipe = Recipe.model_validate(state["recipe"])
        backend = f"{recipe.serve.engine} {recipe.dtype} in the {rt.sandbox.name} sandbox ({recipe.chip})"
        try:
            report = evaluate(recipe.model.path, rt.live.server.url, migrated_backend=backend,
                              settings=rt.settings.eval, log_dir=Path(rt.sandbox.logs))
        except Exception as err:  # a crashed metric fails the gate; it is reported, not raised
            emit("eval", attempt=state["attempt"], gate_passed=False, error=f"{type(err).__name__}: {err}")
            return stop("eval_failed", f"eval crashed: {type(err).__name__}: {err}")
        summary = report.summary()
        emit("eval", attempt=state["attempt"], **summary)
        write_artifacts(report, rt.run_dir)
        if report.gate_passed:
            return Command(update={"eval": summary}, goto="publish")
        if report.performance_only:  # accurate but slower than the reference: no playbook fix for that yet
            return Command(update={"eval": summary, "status": "eval_failed", "reason": report.gate_reason}, goto="finish")
        accuracy = report.model_copy(update={"metrics": report.accuracy_rows})
        diagnosis = diagnose_eval(accuracy, recipe, rt.catalog.chip(recipe.chip).dtypes)
        emit("diagnosis", attempt=state["attempt"], **diagnosis.model_dump())
        update = {"eval": summary, "diagnosis": diagnosis.model_dump(), "failure": {"stage": "eval", "detail": report.gate_reason}}
        if diagnosis.signature == state.get("fixed_signature") or not diagnosis.tool_calls:
            return Command(update={**update, "status": "eval_failed", "reason": report.gate_reason}, goto="finish")
        if state["attempt"] >= rt.settings.limits.max_attempts:
            return Command(update={**update, "status": "eval_failed", "reason": f"{report.gate_reason}; limits reached"}, goto="finish")
        return Command(update=update, goto="plan")

    def publish_release(state: RunState) -> Command[Literal["finish"]]:
        from fr_agent.evals.report import EvalReport

        recipe = Recipe.model_validate(state["recipe"])
        report = EvalReport.model_validate_json((rt.run_dir / "eval.json").read_text())
        chip = rt.catalog.chip(recipe.chip)
        result = publish(recipe, report, rt.run_dir / "publish", run_id=rt.run_id, chip_description=chip.description,
                         license=state["analysis"].get("license") or "apache-2.0")
        findings = lint_file(result.out_dir / "README.md")
        emit("publish", out_dir=str(result.out_dir), files=[str(f) for f in result.files],
             card_findings=[str(f) for f in findings])
        if findings:  # a card users must not see is a failed run, whatever the gate said
            return stop("publish_failed", "card lint: " + "; ".join(map(str, findings)))
        return Command(update={"publish_dir": str(result.out_dir), "status": "passed", "reason": "migrated, evaluated, published"},
                       goto="finish")

    def finish(state: RunState) -> Command[Literal["__end__"]]:
        rt.live.stop_server()
        emit("run_finished", attempt=state.get("attempt", 0), status=state["status"], reason=state["reason"],
             fixes=state.get("fixes", []), passed=state.get("passed", []))
        return Command(goto=END)

    graph = StateGraph(RunState)
    for name, node in [("analyse", analyse_model), ("precheck", check_environment), ("run_stage", run_next_stage),
                       ("diagnose", diagnose), ("plan", plan), ("approve", approve), ("apply_fix", apply_fix),
                       ("verify_fix", verify_fix), ("evaluate", evaluate_migration), ("publish", publish_release),
                       ("finish", finish)]:
        graph.add_node(name, node)
    graph.add_edge(START, "analyse")
    return graph

