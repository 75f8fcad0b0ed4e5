"""set_env_var: set one environment variable for every process the sandbox starts."""

from __future__ import annotations

import re

from pydantic import field_validator

from fr_agent.core.config import Settings
from fr_agent.core.recipe import Recipe
from fr_agent.sandboxes.base import Sandbox
from fr_agent.tools.base import Tool, ToolArgs, Verification, change, run_check

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Variables that would hand a planner arbitrary code execution or break the sandbox's isolation.
FORBIDDEN = {
    "PATH",
    "HOME",
    "VIRTUAL_ENV",
    "PYTHONHOME",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "BASH_ENV",
    "ENV",
    "LD_PRELOAD",
    "LD_AUDIT",
    "SHELL",
    "PROMPT_COMMAND",
}


class SetEnvVarArgs(ToolArgs):
    name: str
    value: str

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not ENV_NAME.match(v):
            raise ValueError(f"{v!r} is not a valid environment variable name")
        if v.upper() in FORBIDDEN:
            raise ValueError(f"{v} may not be set by a repair tool")
        return v

    @field_validator("value")
    @classmethod
    def _value(cls, v: str) -> str:
        if len(v) > 4096 or any(ch in v for ch in "\n\r\x00"):
            raise ValueError("value must be one line of at most 4096 characters")
        return v


def apply(recipe: Recipe, args: SetEnvVarArgs) -> Recipe:
    return recipe.with_change(
        change("set_env_var", args, f"set {args.name}={args.value}"), env={**recipe.env, args.name: args.value}
    )


def verify(sandbox: Sandbox, recipe: Recipe, args: SetEnvVarArgs, settings: Settings) -> Verification:
    argv = [sandbox.python, sandbox.probe("env_check.py"), args.name, args.value]
    return run_check(
        sandbox, recipe, settings, argv, "verify-set_env_var", lambda v: f"{args.name} visible inside the sandbox"
    )


TOOL = Tool(
    name="set_env_var",
    description="Set one environment variable for all processes in the sandbox.",
    args_model=SetEnvVarArgs,
    apply=apply,
    verify=verify,
    rerun_from=lambda args: "import",
)
