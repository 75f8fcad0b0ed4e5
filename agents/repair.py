"""The repair loop as a langgraph graph, checkpointed per run in SQLite.

analyse → precheck → run_stage ⟲ → (failure) diagnose → plan → approve → apply_fix → verify_fix → run_stage …
                                 → (every stage passed) evaluate → publish → finish
Each node is a module-level function of (state, runtime) whose Command[Literal[...]] names where it may go;
the typed state is all the loop knows (the transcript is written, never read back). Limits live in
Settings.limits and are checked in one place, at the top of `plan`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from fr_agent.agents.admission import Admission, admitted
from fr_agent.agents.analyse import analyse as analyse_model
from fr_agent.agents.precheck import precheck as check_host
from fr_agent.agents.release import render_release
from fr_agent.agents.run_state import Failure, Fix, Rt, RunContext, RunState
from fr_agent.agents.stages import LIVE_STAGES
from fr_agent.agents.stages import run_stage as run_one_stage
from fr_agent.core.errors import AlreadyTried, FrAgentError, MissingExtra, RunPaused, ToolRejected
from fr_agent.core.hints import HintBox
from fr_agent.core.recipe import STAGES, RecipeChange
from fr_agent.core.secrets import REDACTED
from fr_agent.evals.agent import evaluate as evaluate_model
from fr_agent.evals.agent import write_artifacts
from fr_agent.evals.report import EvalReport
from fr_agent.playbooks.accuracy import diagnose_eval
from fr_agent.playbooks.diagnose import Diagnosis, diagnose_log, diagnose_text
from fr_agent.playbooks.planning import FixOutcome, PlanRound
from fr_agent.tools import ToolCall, validate_call

# --- helpers the nodes share ----------------------------------------------------------------------


def stop(status: str, reason: str, **update) -> Command:
    return Command(update={**update, "status": status, "reason": reason}, goto="finish")


def record_call(rt: RunContext, state: RunState, status: str, call: ToolCall | RecipeChange, **fields) -> None:
    """One tool_call event: what became of a proposal (rejected, declined, applied, replayed)."""
    rt.emit("tool_call", state.attempt, status=status, tool=call.tool, args=call.args, **fields)


def reject(state: RunState, rt: RunContext, call: ToolCall, err: Exception) -> Command:
    """A call that cannot be applied: recorded as tried, fed back to the planner."""
    record_call(rt, state, "rejected", call, error=str(err))
    outcome = FixOutcome(tool=call.tool, args=call.args, result="rejected", detail=str(err))
    return Command(
        update={"tried": [*state.tried, call.key()], "pending": None, "outcomes": [*state.outcomes, outcome]},
        goto="plan",
    )


def followed_by(state: RunState, then: str) -> list[FixOutcome]:
    """The outcomes, with what followed the last one if it is a verified fix whose sequel was not seen yet."""
    last = state.outcomes[-1] if state.outcomes else None
    if last is None or last.result != "verified" or last.then:
        return state.outcomes
    return [*state.outcomes[:-1], last.model_copy(update={"then": then})]


def failed_after(state: RunState, diagnosis: Diagnosis) -> list[FixOutcome]:
    """A new failure, told of the verified fix before it: the same failure as the one fixed, or another."""
    same = state.diagnosis is not None and diagnosis.signature == state.diagnosis.signature
    how = "the same way" if same else f"differently: {(diagnosis.evidence or [''])[-1]}"
    return followed_by(state, f"then {diagnosis.stage} failed {how}")


def without_dead_server(passed: list[str], rt: RunContext) -> list[str]:
    """A resumed run has no engine process: stages whose result was that process run again."""
    if rt.live.server is not None and rt.live.server.alive():
        return passed
    return [s for s in passed if s not in LIVE_STAGES]


def stage_index(stage: str) -> int:
    """Position in the attempt; the eval gate comes after every stage."""
    return STAGES.index(stage) if stage in STAGES else len(STAGES)


def fix_label(state: RunState) -> str:
    """Names the sandbox snapshot taken before a fix; the same in apply_fix and verify_fix."""
    return f"a{state.attempt}-fix{len(state.fixes) + 1}"


def with_secrets_from_env(change: RecipeChange) -> ToolCall:
    """A secret's value is never recorded; a replay takes it from this environment or cannot go on."""
    args = dict(change.args)
    for key, value in change.args.items():
        if value == REDACTED:
            name = change.args.get("name") or key
            if name not in os.environ:
                raise FrAgentError(
                    f"{change.tool} set secret {name}, which is not recorded: export {name} to replay it"
                )
            args[key] = os.environ[name]
    return ToolCall(tool=change.tool, args=args)


def after_round(state: RunState, round_: PlanRound, check: Admission, delivered: list[str]) -> dict:
    """What a planning round leaves in the state: the hints it delivered, the calls its check refused
    (the planner's own and the loop's), the tokens the planner spent."""
    return {
        "delivered_hints": delivered,
        "outcomes": [*state.outcomes, *check.refused],
        "llm_tokens": state.llm_tokens + round_.tokens_spent,
    }


def limit_reached(state: RunState, limits) -> str | None:
    if state.attempt >= limits.max_attempts:
        return f"limits reached after {state.attempt} attempts"
    if len(state.fixes) >= limits.max_fixes:
        return f"limits reached: {len(state.fixes)} fixes applied"
    if state.failed_verifications >= limits.max_failed_verifications:
        return f"limits reached: {state.failed_verifications} fixes failed their verification"
    return None


# --- the nodes ------------------------------------------------------------------------------------


def analyse(state: RunState, runtime: Rt) -> Command[Literal["precheck"]]:
    rt, req = runtime.context, state.request
    result = analyse_model(
        req.model, req.chip, rt.catalog, rt.settings, with_flaggems=req.with_flaggems, engine=req.engine
    )
    if state.replay:  # the recipe as the source run analysed it, not as today's code would
        result = result.model_copy(update={"recipe": state.replay.recipe})
    rt.emit(
        "analysis",
        model=result.model.model_dump(),
        chip=result.chip,
        source=result.source,
        facts=result.facts.model_dump(),
        notes=result.notes,
        recipe=result.recipe.model_dump(),
    )
    return Command(update={"analysis": result, "recipe": result.recipe, "attempt": 1}, goto="precheck")


def precheck(state: RunState, runtime: Rt) -> Command[Literal["run_stage", "finish"]]:
    rt, analysis = runtime.context, state.analysis
    chip = rt.catalog.chip(analysis.chip)
    result = rt.sandbox.precheck(
        check_host(analysis, chip, rt.settings, rt.sandbox.find_links),
        analysis.recipe,
        chip,
        params_b=analysis.facts.params_b,
    )
    rt.emit("precheck", ok=result.ok, checks=[c.model_dump() for c in result.checks])
    if not result.ok:
        return stop("precheck_failed", "; ".join(f"{c.name}: {c.detail}" for c in result.failures()))
    model = state.recipe.model.model_copy(update={"path": result.model_path})
    recipe = state.recipe.model_copy(update={"model": model})
    recipe, note = rt.sandbox.adopt_host_stack(recipe)  # --sandbox host: the pins become what the host has
    if note:
        rt.emit("note", message=note)
    if state.replay:
        rt.emit(
            "note",
            message=f"replaying {len(state.replay.fixes)} recorded fix(es) from {state.replay.origin} "
            f"of {state.replay.source}, no planner",
        )
        for change in state.replay.fixes:
            tool, args = validate_call(with_secrets_from_env(change))
            recipe = tool.apply(recipe, args)
            record_call(rt, state, "replayed", change, change=recipe.changes[-1].summary)
    return Command(update={"recipe": recipe}, goto="run_stage")


def run_stage(state: RunState, runtime: Rt) -> Command[Literal["run_stage", "diagnose", "evaluate"]]:
    rt = runtime.context
    passed = without_dead_server(state.passed, rt)
    stage = next(s for s in STAGES if s not in passed)
    result = run_one_stage(stage, state.recipe, rt.stage_context(state))
    rt.emit("stage", state.attempt, **result.model_dump())
    if not result.ok:
        failure = Failure(stage=stage, detail=result.detail, log_path=result.log_path, timed_out=result.timed_out)
        return Command(update={"failure": failure, "passed": passed}, goto="diagnose")
    passed = [*passed, stage]
    update = {"passed": passed, "failure": None}
    if state.diagnosis is not None and stage == state.diagnosis.stage:  # the stage a fix was for passed
        update["outcomes"] = followed_by(state, f"{stage} passed after it")
    return Command(update=update, goto="evaluate" if len(passed) == len(STAGES) else "run_stage")


def diagnose(state: RunState, runtime: Rt) -> Command[Literal["plan", "finish"]]:
    rt, failure = runtime.context, state.failure
    diagnosis = (
        diagnose_log(Path(failure.log_path), failure.stage, timed_out=failure.timed_out)
        if failure.log_path and Path(failure.log_path).exists()
        else diagnose_text(failure.detail, failure.stage, timed_out=failure.timed_out)
    )
    rt.emit("diagnosis", state.attempt, **diagnosis.model_dump())
    update = {"diagnosis": diagnosis, "outcomes": failed_after(state, diagnosis)}
    if diagnosis.signature == state.fixed_signature:
        return stop("failed", f"{failure.stage}: the failure survived its fix ({diagnosis.evidence[-1]})", **update)
    if diagnosis.category == "unrepairable":
        return stop("failed", f"{failure.stage}: unrepairable: {diagnosis.explanation}", **update)
    return Command(update=update, goto="plan")


def plan(state: RunState, runtime: Rt) -> Command[Literal["approve", "plan", "finish"]]:
    rt, diagnosis, failure = runtime.context, state.diagnosis, state.failure
    failed = "eval_failed" if failure.stage == "eval" else "failed"
    if reason := limit_reached(state, rt.settings.limits):
        return stop(failed, f"{failure.detail}; {reason}" if failure.stage == "eval" else reason)
    hints = HintBox(rt.files.root).pending(state.delivered_hints)
    for hint in hints:  # delivered to this round's planner, once: the state keeps the ids across a resume
        rt.emit("chat", state.attempt, role="user", hint_id=hint.id, text=hint.text, source=hint.source)
    delivered = [*state.delivered_hints, *(h.id for h in hints)]
    check = Admission(state.tried, state.recipe, rt.sandbox)
    round_ = PlanRound(
        diagnosis=diagnosis,
        tried=set(state.tried),
        attempt=state.attempt,
        recipe=state.recipe,
        failure=failure.model_dump(),
        hints=hints,
        sandbox=rt.sandbox,
        chip=rt.catalog.chip(state.request.chip),
        emit=rt.emit,
        source=rt.planner.name,
        check=check,
        outcomes=list(state.outcomes),
        llm_tokens=state.llm_tokens,
    )
    try:
        proposals = rt.planner.propose(round_)
    except RunPaused:
        if not round_.tokens_spent:
            raise  # paused before spending anything: the checkpoint already holds all there is
        # The run's tokens ran out in a round that had spent some: keep them and plan again, the hints still
        # pending; a round that cannot ask anything pauses there, before spending.
        return Command(update=after_round(state, round_, check, state.delivered_hints), goto="plan")
    rejected = []
    for call in proposals[: rt.settings.limits.max_candidates_per_failure]:
        try:
            call = check(call)
        except AlreadyTried:
            continue
        except ToolRejected as err:
            rejected.append(str(err))
            record_call(rt, state, "rejected", call, error=str(err))
            continue
        rt.emit(
            "plan",
            state.attempt,
            planner=round_.source,
            tool=call.tool,
            args=call.args,
            explanation=diagnosis.explanation,
            evidence=diagnosis.evidence,
        )
        return Command(update={**after_round(state, round_, check, delivered), "pending": call}, goto="approve")
    if rejected:
        return stop(
            "failed",
            f"planner proposed an invalid tool call: {rejected[-1]}",
            **after_round(state, round_, check, delivered),
        )
    what = diagnosis.evidence[-1] if diagnosis.evidence else diagnosis.explanation
    return stop(
        "failed", f"{failure.stage}: no untried fix for: {what}", **after_round(state, round_, check, delivered)
    )


def approve(state: RunState, runtime: Rt) -> Command[Literal["apply_fix", "plan"]]:
    rt, call = runtime.context, state.pending
    tool, args = validate_call(call)
    why = tool.needs_approval(args, state.recipe)  # remote code, plugin classes, file paths, loader paths
    if rt.auto_approve and why is None:
        return Command(goto="apply_fix")
    answer: dict = interrupt(
        {"call": call.model_dump(), "diagnosis": state.diagnosis.model_dump(), "needs_approval": why}
    )
    decision = answer.get("decision", "decline")
    if decision == "decline":
        reason = answer.get("reason")
        record_call(rt, state, "declined", call, **({"error": reason} if reason else {}))
        declined = FixOutcome(tool=call.tool, args=call.args, result="declined", detail=reason or "")
        return Command(
            update={"tried": [*state.tried, call.key()], "pending": None, "outcomes": [*state.outcomes, declined]},
            goto="plan",
        )
    if decision == "edit":
        edited = ToolCall.model_construct(tool=call.tool, args=answer.get("args"))
        try:
            edited = admitted(edited, state.tried, state.recipe, rt.sandbox)
        except ToolRejected as err:  # the user set the proposal aside by editing it: neither comes back
            return reject(state.model_copy(update={"tried": [*state.tried, call.key()]}), rt, edited, err)
        return Command(update={"pending": edited}, goto="apply_fix")
    return Command(goto="apply_fix")


def apply_fix(state: RunState, runtime: Rt) -> Command[Literal["verify_fix", "plan"]]:
    rt, call, before = runtime.context, state.pending, state.recipe
    tool, args = validate_call(call)
    tried = state.tried
    if tool.resolve is not None:  # a measurement fills the arguments in (operator search); record them
        try:
            args = tool.resolve(rt.sandbox, before, args, rt.settings)
        except ToolRejected as err:
            return reject(state, rt, call, err)
        tried = [*tried, call.key()]
        call = ToolCall(tool=call.tool, args=args.model_dump(exclude_none=True))
    if label := rt.sandbox.snapshot(fix_label(state)):  # what to roll back to if this fix fails its check
        rt.emit("note", state.attempt, message=f"sandbox snapshot {label}")
    after = tool.apply(before, args)
    record_call(rt, state, "applied", call, change=after.changes[-1].summary)
    return Command(
        update={"recipe": after, "recipe_before_fix": before, "pending": call, "tried": tried}, goto="verify_fix"
    )


def verify_fix(state: RunState, runtime: Rt) -> Command[Literal["run_stage", "plan"]]:
    rt, call, failed_stage = runtime.context, state.pending, state.failure.stage
    tool, args = validate_call(call)
    verification = tool.verify(rt.sandbox, state.recipe, args, rt.settings)
    rt.emit("verification", state.attempt, tool=call.tool, args=call.args, **verification.model_dump())
    rerun = min(stage_index(tool.rerun_from(args)), stage_index(failed_stage))
    outcome = FixOutcome(
        tool=call.tool,
        args=call.args,
        result="verified" if verification.ok else "check_failed",
        detail=verification.detail,
    )
    common = {
        "tried": [*state.tried, call.key()],
        "pending": None,
        "passed": list(STAGES[:rerun]),
        "outcomes": [*state.outcomes, outcome],
    }
    if not verification.ok:  # roll back: the change is dropped; rerun re-syncs the sandbox from the recipe
        if label := rt.sandbox.rollback(fix_label(state)):  # and the environment goes back to before the fix
            rt.emit("note", state.attempt, message=f"sandbox rolled back to {label}")
        return Command(update={**common, "recipe": state.recipe_before_fix}, goto="plan")
    fix = Fix(
        tool=call.tool,
        args=call.args,
        attempt=state.attempt,
        detail=verification.detail,
        for_stage=failed_stage,
        signature=state.diagnosis.signature,
    )
    return Command(
        update={
            **common,
            "fixes": [*state.fixes, fix],
            "attempt": state.attempt + 1,
            "fixed_signature": state.diagnosis.signature,
        },
        goto="run_stage",
    )


def evaluate(state: RunState, runtime: Rt) -> Command[Literal["publish", "plan", "finish", "run_stage"]]:
    rt, recipe = runtime.context, state.recipe
    if without_dead_server(state.passed, rt) != state.passed:
        return Command(update={"passed": without_dead_server(state.passed, rt)}, goto="run_stage")
    backend = f"{recipe.serve.engine} {recipe.dtype} in the {rt.sandbox.name} sandbox ({recipe.chip})"
    try:
        report = evaluate_model(
            recipe.model.path,
            rt.live.server.url,
            migrated_backend=backend,
            settings=rt.settings.eval,
            log_dir=Path(rt.sandbox.logs),
        )
    except MissingExtra:  # this host lacks the eval's packages: one line, exit 2, resumable after installing
        raise
    except Exception as err:  # a crashed metric fails the gate; it is reported, not raised
        rt.emit("eval", state.attempt, gate_passed=False, error=f"{type(err).__name__}: {err}")
        return stop("eval_failed", f"eval crashed: {type(err).__name__}: {err}")
    summary = report.summary()
    rt.emit("eval", state.attempt, **summary)
    write_artifacts(report, rt.files.eval_json, rt.files.eval_chart)
    if state.replay:  # a replay answers "does the repaired recipe hold on its own?": it publishes nothing
        return stop(
            "passed" if report.gate_passed else "eval_failed",
            f"replayed {len(state.replay.fixes)} fix(es) without a planner; {report.gate_reason}",
            eval=summary,
        )
    if report.gate_passed:
        return Command(update={"eval": summary}, goto="publish")
    if report.performance_only:  # accurate but slower than the reference: no playbook fix for that yet
        return stop("eval_failed", report.gate_reason, eval=summary)
    accuracy = report.model_copy(update={"metrics": report.rows("accuracy")})
    diagnosis = diagnose_eval(accuracy, recipe, rt.catalog.chip(recipe.chip).dtypes)
    rt.emit("diagnosis", state.attempt, **diagnosis.model_dump())
    update = {
        "eval": summary,
        "diagnosis": diagnosis,
        "failure": Failure(stage="eval", detail=report.gate_reason),
        "outcomes": failed_after(state, diagnosis),
    }
    if diagnosis.signature == state.fixed_signature or not diagnosis.tool_calls:
        return stop("eval_failed", report.gate_reason, **update)
    return Command(update=update, goto="plan")


def publish(state: RunState, runtime: Rt) -> Command[Literal["finish"]]:
    rt, recipe = runtime.context, state.recipe
    report = EvalReport.model_validate_json(rt.files.eval_json.read_text())
    release = render_release(
        recipe,
        report,
        rt.files.publish,
        run_id=rt.run_id,
        chip_description=rt.catalog.chip(recipe.chip).description,
        license=state.analysis.license or "apache-2.0",
    )
    rt.emit(
        "publish",
        out_dir=str(release.rendered.out_dir),
        files=[str(f) for f in release.rendered.files],
        card_findings=[str(f) for f in release.findings],
    )
    if release.findings:  # a card users must not see is a failed run, whatever the gate said
        return stop("publish_failed", "card lint: " + "; ".join(map(str, release.findings)))
    return stop("passed", "migrated, evaluated, published", publish_dir=str(release.rendered.out_dir))


def finish(state: RunState, runtime: Rt) -> Command[Literal["__end__"]]:
    rt = runtime.context
    rt.live.stop_server()
    fixes = [f.model_dump() for f in state.replay.fixes] if state.replay else [f.model_dump() for f in state.fixes]
    rt.emit(
        "run_finished",
        state.attempt,
        status=state.status,
        reason=state.reason,
        fixes=fixes,
        passed=state.passed,
        **({"replay_of": state.replay.source} if state.replay else {}),
    )
    return Command(goto=END)


NODES = (analyse, precheck, run_stage, diagnose, plan, approve, apply_fix, verify_fix, evaluate, publish, finish)


def build_graph() -> StateGraph:
    """The edges are each node's Command[Literal[...]]: `test_graph_shape` reads them back."""
    graph = StateGraph(RunState, context_schema=RunContext)
    for node in NODES:
        graph.add_node(node.__name__, node)
    graph.add_edge(START, "analyse")
    return graph
