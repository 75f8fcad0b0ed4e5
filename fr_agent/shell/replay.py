"""Replay: re-apply a run's recorded fixes to its analysed recipe, with no planner and no repair loop, and
run every stage (and the eval) once in a fresh sandbox. It answers "does the repaired recipe hold on its
own?", and is how a reviewer checks that a run's result was not luck.

The fixes come from the published recipe's change list when the run published, else from the
transcript's verified tool calls. A replay is a run of its own (`runs/<source>-replay-XXXX`), reviewed
with `transcripts show` like any other.
"""

from __future__ import annotations

import os
import secrets as random
from collections.abc import Callable
from pathlib import Path

from fr_agent.core.config import Settings
from fr_agent.core.errors import FrAgentError
from fr_agent.core.recipe import STAGES, Recipe, RecipeChange
from fr_agent.core.secrets import REDACTED
from fr_agent.core.events import Transcript


def recorded_fixes(run_dir: Path, events: list[dict]) -> tuple[list[RecipeChange], str]:
    """The fixes a run kept, in order, and where they were read from."""
    from fr_agent.shell.review import fix_history

    published = run_dir / "publish" / "recipe.json"
    if published.exists():
        return Recipe.model_validate_json(published.read_text()).changes, "publish/recipe.json"
    kept = [RecipeChange(tool=s["tool"], args=s["args"], summary=s["change"]) for s in fix_history(events) if s["kept"]]
    return kept, "transcript (verified tool calls)"


def _unredacted(args: dict, tool: str) -> dict:
    """A secret's value is never recorded; a replay takes it from this environment or cannot go on."""
    out = dict(args)
    for key, value in args.items():
        if value == REDACTED:
            name = args.get("name") or key
            if name not in os.environ:
                raise FrAgentError(f"{tool} set secret {name}, which is not recorded: export {name} to replay it")
            out[key] = os.environ[name]
    return out


def replay_run(source: Path, settings: Settings, on_event: Callable[[dict], None] | None = None) -> Path:
    from fr_agent.agents.analyse import analyse
    from fr_agent.agents.precheck import precheck
    from fr_agent.agents.stages import Live, StageContext, run_stage
    from fr_agent.core.catalog import load_catalog
    from fr_agent.evals.agent import evaluate, write_artifacts
    from fr_agent.playbooks.diagnose import diagnose_log, diagnose_text
    from fr_agent.shell.review import run_events
    from fr_agent.shell.runs import RunRequest
    from fr_agent.sandboxes.local import LocalSandbox
    from fr_agent.tools import ToolCall, validate_call

    request = RunRequest.model_validate_json((source / "request.json").read_text())
    events = run_events(source)
    analysed = next((e for e in events if e["event"] == "analysis"), None)
    if analysed is None:
        raise FrAgentError(f"run {source.name} never got past analysis: there is no recipe to replay")
    fixes, origin = recorded_fixes(source, events)
    catalog = load_catalog(request.catalog)
    chip = catalog.chip(request.chip)
    if request.sandbox != "local":
        raise FrAgentError(f"sandbox {request.sandbox!r} is not available; use 'local'")

    run_dir = settings.runs_dir / f"{source.name}-replay-{random.token_hex(2)}"
    run_dir.mkdir(parents=True)
    (run_dir / "request.json").write_text(request.model_copy(update={"planner": "replay"}).model_dump_json(indent=2))
    transcript = Transcript(run_dir / "transcript.jsonl", run_dir.name)
    if on_event:
        transcript.listeners.append(on_event)
    live = Live()
    status, reason = "error", "replay stopped"
    try:
        transcript.emit("run_started", request=request.model_dump(), run_dir=str(run_dir), replay_of=source.name)
        analysis = analyse(request.model, request.chip, catalog, settings, with_flaggems=request.with_flaggems,
                           engine=request.engine)
        base = Recipe.model_validate(analysed["recipe"])  # the recipe as the run analysed it, not as today's code would
        analysis = analysis.model_copy(update={"recipe": base})
        transcript.emit("analysis", model=analysis.model.model_dump(), chip=analysis.chip, source=analysis.source,
                        facts=analysis.facts.model_dump(), notes=analysis.notes, recipe=base.model_dump())
        checked = precheck(analysis, chip, settings, list(settings.sandbox.find_links))
        transcript.emit("precheck", ok=checked.ok, checks=[c.model_dump() for c in checked.checks])
        if not checked.ok:
            status = "precheck_failed"
            reason = "; ".join(f"{c.name}: {c.detail}" for c in checked.failures())
            return run_dir
        recipe = base.model_copy(update={"model": base.model.model_copy(update={"path": checked.model_path})})
        transcript.emit("note", message=f"replaying {len(fixes)} recorded fix(es) from {origin} of {source.name}, no planner")
        for fix in fixes:
            tool, args = validate_call(ToolCall(tool=fix.tool, args=_unredacted(fix.args, fix.tool)))
            recipe = tool.apply(recipe, args)
            transcript.emit("tool_call", attempt=1, status="replayed", tool=fix.tool, args=fix.args,
                            change=recipe.changes[-1].summary)
        sandbox = LocalSandbox(run_dir / "sandbox", settings.cache_dir, settings.hf_home,
                               output_cap=settings.sandbox.output_cap_bytes, find_links=settings.sandbox.find_links)
        ctx = StageContext(sandbox=sandbox, settings=settings, live=live, model_type=analysis.facts.model_type,
                           trust_remote_code=analysis.trust_remote_code, attempt=1,
                           visible_devices_env=chip.visible_devices_env)
        for stage in STAGES:
            result = run_stage(stage, recipe, ctx)
            transcript.emit("stage", attempt=1, **result.model_dump())
            if not result.ok:
                diagnosis = (diagnose_log(Path(result.log_path), stage, timed_out=result.timed_out)
                             if result.log_path and Path(result.log_path).exists()
                             else diagnose_text(result.detail, stage, timed_out=result.timed_out))
                transcript.emit("diagnosis", attempt=1, **diagnosis.model_dump())
                status, reason = "failed", f"{stage}: {result.detail}"
                return run_dir
        backend = f"{recipe.serve.engine} {recipe.dtype} in the {sandbox.name} sandbox ({recipe.chip})"
        try:
            report = evaluate(recipe.model.path, live.server.url, migrated_backend=backend, settings=settings.eval,
                              log_dir=Path(sandbox.logs))
        except Exception as err:  # a crashed metric fails the gate, as in the loop
            transcript.emit("eval", attempt=1, gate_passed=False, error=f"{type(err).__name__}: {err}")
            status, reason = "eval_failed", f"eval crashed: {type(err).__name__}: {err}"
            return run_dir
        transcript.emit("eval", attempt=1, **report.summary())
        write_artifacts(report, run_dir)
        status = "passed" if report.gate_passed else "eval_failed"
        reason = f"replayed {len(fixes)} fix(es) without a planner; {report.gate_reason}"
        return run_dir
    except FrAgentError as err:
        reason = str(err)
        raise
    finally:
        live.stop_server()
        transcript.emit("run_finished", attempt=1, status=status, reason=reason,
                        fixes=[f.model_dump() for f in fixes], passed=[], replay_of=source.name)
        transcript.close()


def compare(source: dict, replay: dict) -> dict:
    """Did the replay reach what the run reached? Status, stages passed, eval gate and metrics."""
    src_metrics = {m["name"]: m["migrated"] for m in (source["eval"] or {}).get("metrics", [])}
    rep_metrics = {m["name"]: m["migrated"] for m in (replay["eval"] or {}).get("metrics", [])}
    return {
        "source": source["run_id"], "replay": replay["run_id"],
        "status": [source["status"], replay["status"]],
        "reproduced": source["status"] == replay["status"],
        "gate_passed": [(source["eval"] or {}).get("gate_passed"), (replay["eval"] or {}).get("gate_passed")],
        "metrics": {name: [src_metrics.get(name), rep_metrics.get(name)] for name in dict.fromkeys([*src_metrics, *rep_metrics])},
        "replay_reason": replay["reason"],
    }
