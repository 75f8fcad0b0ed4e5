"""How the loop takes a planner's proposal: validated, normalised, not tried before, admitted by its tool
(install_dependency checks the package index here, before anything is installed)."""

from __future__ import annotations

import json

from fr_agent.core.errors import AlreadyTried, ToolRejected
from fr_agent.core.recipe import Recipe
from fr_agent.playbooks.planning import FixOutcome
from fr_agent.sandboxes.base import Sandbox
from fr_agent.tools import ToolCall, validate_call


def admitted(call: ToolCall, tried: list[str] | set[str], recipe: Recipe, sandbox: Sandbox) -> ToolCall:
    """A proposal as the loop takes it: validated, normalised, not tried before, admitted by its tool
    (install_dependency checks the package index here, before anything is installed)."""
    tool, args = validate_call(call)
    call = ToolCall(tool=tool.name, args=args.model_dump(exclude_none=True))
    if call.key() in tried:
        raise AlreadyTried(f"{call.tool} {json.dumps(call.args, sort_keys=True)}")
    tool.admit(args, recipe, sandbox)
    return call


class Admission:
    """`admitted` for one planning round, each distinct call judged once: a planner that checks its
    calls (the LLM planner) and the loop share the verdicts, so one install costs one index request.
    `refused`: the round's calls that failed their check (not those already tried), in order."""

    def __init__(self, tried: list[str], recipe: Recipe, sandbox: Sandbox):
        self.tried, self.recipe, self.sandbox = tried, recipe, sandbox
        self.verdicts: dict[str, ToolCall | ToolRejected] = {}
        self.refused: list[FixOutcome] = []

    def __call__(self, call: ToolCall) -> ToolCall:
        key = f"{call.tool}:{json.dumps(call.args, sort_keys=True, default=str)}"
        if key not in self.verdicts:
            try:
                self.verdicts[key] = admitted(call, self.tried, self.recipe, self.sandbox)
            except ToolRejected as err:
                self.verdicts[key] = err
                if not isinstance(err, AlreadyTried):
                    self.refused.append(FixOutcome(tool=call.tool, args=call.args, result="rejected", detail=str(err)))
        verdict = self.verdicts[key]
        if isinstance(verdict, ToolRejected):
            raise verdict
        return verdict
