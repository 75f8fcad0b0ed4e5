"""Replay: a run of its own (`runs/<source>-replay-XXXX`) that enters the same graph with the source run's
analysed recipe and its kept fixes applied, and a planner that proposes nothing. Every stage and the eval
run once, in any sandbox. It answers "does the repaired recipe hold on its own?", and is how a reviewer
checks that a run's result was not luck.

The fixes come from the published recipe's change list when the run published, else from the
transcript's verified tool calls.
"""

from __future__ import annotations

from collections.abc import Callable

from fr_agent.agents.run_state import Replay
from fr_agent.core.config import Settings
from fr_agent.core.errors import FrAgentError
from fr_agent.core.events import AnalysisEvent, Event, first
from fr_agent.core.recipe import Recipe, RecipeChange
from fr_agent.shell.review import tool_call_history
from fr_agent.shell.runs import Run


def recorded_fixes(source: Run) -> tuple[list[RecipeChange], str]:
    """The fixes a run kept, in order, and where they were read from."""
    if source.files.publish.joinpath("recipe.json").exists():
        recipe = Recipe.model_validate_json(source.files.publish.joinpath("recipe.json").read_text())
        return recipe.changes, "publish/recipe.json"
    kept = [
        RecipeChange(tool=s.tool, args=s.args, summary=s.change) for s in tool_call_history(source.events()) if s.kept
    ]
    return kept, "transcript (verified tool calls)"


def replay_run(
    source: Run, settings: Settings, *, sandbox: str | None = None, on_event: Callable[[Event], None] | None = None
) -> Run:
    """Replay `source` to its end; the replay run is returned closed, ready to be summarized."""
    analysed = first(source.events(), AnalysisEvent)
    if analysed is None:
        raise FrAgentError(f"run {source.id} never got past analysis: there is no recipe to replay")
    fixes, origin = recorded_fixes(source)
    replay = Replay(source=source.id, recipe=Recipe.model_validate(analysed.recipe), fixes=fixes, origin=origin)
    with Run.replay_of(source, replay, settings, sandbox=sandbox) as run:
        run.drive(auto_approve=True, on_event=on_event)
    return run


def compare(source: dict, replay: dict) -> dict:
    """Did the replay reach what the run reached? Status, stages passed, eval gate and metrics."""
    src_metrics = {m["name"]: m["migrated"] for m in (source["eval"] or {}).get("metrics", [])}
    rep_metrics = {m["name"]: m["migrated"] for m in (replay["eval"] or {}).get("metrics", [])}
    return {
        "source": source["run_id"],
        "replay": replay["run_id"],
        "status": [source["status"], replay["status"]],
        "reproduced": source["status"] == replay["status"],
        "gate_passed": [(source["eval"] or {}).get("gate_passed"), (replay["eval"] or {}).get("gate_passed")],
        "metrics": {
            name: [src_metrics.get(name), rep_metrics.get(name)] for name in dict.fromkeys([*src_metrics, *rep_metrics])
        },
        "replay_reason": replay["reason"],
    }
