"""What every repair tool is: one pydantic argument model, a pure `apply` that records a change to the
recipe, an `admit` check run before anything is touched, and a `verify` that checks the tool's own
effect inside the sandbox. The loop then re-runs the failed stage, from `rerun_from` on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from fr_agent.core.config import Settings
from fr_agent.core.errors import ToolRejected
from fr_agent.core.recipe import Recipe, RecipeChange, Stage
from fr_agent.core.types import Strict, first_error
from fr_agent.sandboxes.base import CommandResult, Sandbox, probe_verdict

ToolName = Literal["install_dependency", "set_env_var", "patch_operator", "fix_serve_config", "search_operators"]


class ToolArgs(Strict):
    pass


class ToolCall(Strict):
    """A planner's proposal, as it arrives: tool name and raw arguments, not yet validated."""

    tool: str
    args: dict[str, Any]

    def key(self) -> str:
        """Identity of a fix, so the loop never applies the same one twice."""
        return f"{self.tool}:{json.dumps(self.args, sort_keys=True)}"


class Verification(BaseModel):
    ok: bool
    detail: str
    log_path: str | None = None


@dataclass(frozen=True)
class Tool:
    name: ToolName
    description: str
    args_model: type[ToolArgs]
    apply: Callable[[Recipe, Any], Recipe]
    verify: Callable[[Sandbox, Recipe, Any, Settings], Verification]
    rerun_from: Callable[[Any], Stage]
    admit: Callable[[Any, Recipe, Sandbox], None] = lambda args, recipe, sandbox: None
    # Why this admitted call must be shown to a person even with --yes (it runs code or reads files the user
    # did not choose: remote model code, a loader path, a plugin class); None when auto-approval may take it.
    needs_approval: Callable[[Any, Recipe], str | None] = lambda args, recipe: None
    # Fills in arguments that only a measurement in the sandbox can give (the operator search), before
    # `apply`; the loop records the resolved call, so the change replays without the measurement.
    resolve: Callable[[Sandbox, Recipe, Any, Settings], Any] | None = None

    def validate(self, raw: dict[str, Any]) -> ToolArgs:
        try:
            return self.args_model.model_validate(raw)
        except ValidationError as err:
            raise ToolRejected(f"invalid {self.name} call: {first_error(err, 'args')}") from None


def change(tool: str, args: ToolArgs, summary: str) -> RecipeChange:
    return RecipeChange(tool=tool, args=args.model_dump(exclude_none=True), summary=summary)


def verdict_from(result: CommandResult, describe: Callable[[dict], str]) -> Verification:
    verdict = probe_verdict(result)
    ok = result.ok and bool(verdict.get("ok"))
    detail = describe(verdict) if ok else (verdict.get("error") or f"exit code {result.returncode}")
    return Verification(ok=ok, detail=detail, log_path=result.log_path)


def run_check(
    sandbox: Sandbox,
    recipe: Recipe,
    settings: Settings,
    argv: list[str],
    log_name: str,
    describe: Callable[[dict], str],
) -> Verification:
    """A tool's check: one command in the sandbox under the verify timeout, its verdict read as a probe's."""
    result = sandbox.run(argv, recipe, timeout=settings.timeouts.verify, log_name=log_name)
    return verdict_from(result, describe)
