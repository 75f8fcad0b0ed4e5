"""The repair tools, registered in one table. A planner can act only through these."""

from __future__ import annotations

from fr_agent.core.errors import ToolRejected
from fr_agent.tools import fix_serve_config, install_dependency, patch_operator, search_operators, set_env_var
from fr_agent.tools.base import Tool, ToolArgs, ToolCall, Verification

TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        install_dependency.TOOL,
        set_env_var.TOOL,
        patch_operator.TOOL,
        fix_serve_config.TOOL,
        search_operators.TOOL,
    )
}


def validate_call(call: ToolCall) -> tuple[Tool, ToolArgs]:
    tool = TOOLS.get(call.tool)
    if tool is None:
        raise ToolRejected(f"unknown tool {call.tool!r}; tools: {', '.join(TOOLS)}")
    return tool, tool.validate(call.args)


__all__ = ["TOOLS", "Tool", "ToolCall", "Verification", "validate_call"]
