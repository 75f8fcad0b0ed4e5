"""What the LLM planner may call: the repair tools of `TOOLS` (schemas from their own pydantic args models; the
loop validates, approves, applies and verifies them) and four read-only investigation tools it may call
first, answered here at once: read a log range, list installed packages, show the recipe, show the chip
profile. Typed arguments, no shell, secrets redacted from everything they return.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from fr_agent.core.secrets import redact_text, redact_value
from fr_agent.core.types import first_error
from fr_agent.playbooks.llm_client import ToolSpec
from fr_agent.playbooks.planning import PlanRound
from fr_agent.tools import TOOLS
from fr_agent.tools.base import ToolArgs

MAX_LINE_CHARS = 400
MAX_RESULT_CHARS = 12_000


class ReadLogArgs(ToolArgs):
    log: str | None = Field(
        None, description="a log file name of this run's sandbox, e.g. a1-import.log; omit for the failed stage's log"
    )
    start: int = Field(1, ge=1, description="first line, 1-based")
    count: int = Field(80, ge=1, le=200, description="lines to read")


class ListPackagesArgs(ToolArgs):
    match: str | None = Field(None, description="substring of the package name; omit for all packages")


class NoArgs(ToolArgs):
    pass


def clip(text: str, limit: int = MAX_RESULT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n… [{len(text) - limit} more characters cut]"


def read_log(round: PlanRound, args: ReadLogArgs) -> str:
    logs = Path(round.sandbox.logs) if round.sandbox else None
    default = Path(round.failure["log_path"]).name if round.failure.get("log_path") else None
    name = args.log or default
    available = sorted(p.name for p in logs.glob("*.log")) if logs and logs.is_dir() else []
    if not name or Path(name).name != name or name not in available:
        return f"no log {name!r}; logs of this run: {', '.join(available) or 'none'}"
    with (logs / name).open(encoding="utf-8", errors="replace") as handle:
        lines = list(itertools.islice(handle, args.start - 1, args.start - 1 + args.count))
    if not lines:
        return f"{name} has fewer than {args.start} lines"
    numbered = [f"{args.start + i}: {line.rstrip()[:MAX_LINE_CHARS]}" for i, line in enumerate(lines)]
    return clip(redact_text("\n".join(numbered)))


def list_packages(round: PlanRound, args: ListPackagesArgs) -> str:
    if round.sandbox is None or round.recipe is None:
        return "no sandbox in this round"
    installed = round.sandbox.installed(round.recipe)
    match = (args.match or "").lower().replace("_", "-")
    rows = [f"{name}=={version}" for name, version in sorted(installed.items()) if match in name]
    if not rows:
        return f"no installed package matches {args.match!r}" if match else "no packages installed yet"
    return clip("\n".join(rows))


def show_recipe(round: PlanRound, args: NoArgs) -> str:
    if round.recipe is None:
        return "no recipe in this round"
    return clip(json.dumps(redact_value("recipe", round.recipe.model_dump()), indent=1))


def show_chip_profile(round: PlanRound, args: NoArgs) -> str:
    if round.chip is None:
        return "no chip profile in this round"
    return clip(json.dumps(round.chip.model_dump(), indent=1))


@dataclass(frozen=True)
class Investigation:
    spec: ToolSpec
    run: Callable[[PlanRound, Any], str]


INVESTIGATIONS: dict[str, Investigation] = {
    inv.spec.name: inv
    for inv in (
        Investigation(
            ToolSpec("read_log", "Read a range of lines of one of this run's logs (read-only).", ReadLogArgs), read_log
        ),
        Investigation(
            ToolSpec(
                "list_packages",
                "List the packages installed in the sandbox, with versions (read-only).",
                ListPackagesArgs,
            ),
            list_packages,
        ),
        Investigation(
            ToolSpec(
                "show_recipe",
                "Show the current recipe: packages, env, dtype, operators, serve settings (read-only).",
                NoArgs,
            ),
            show_recipe,
        ),
        Investigation(
            ToolSpec("show_chip_profile", "Show the target chip's profile (read-only).", NoArgs), show_chip_profile
        ),
    )
}

REPAIR_SPECS = [ToolSpec(tool.name, tool.description, tool.args_model) for tool in TOOLS.values()]
ALL_SPECS = REPAIR_SPECS + [inv.spec for inv in INVESTIGATIONS.values()]


def investigate(round: PlanRound, name: str, arguments: dict) -> str:
    """The answer to one investigation call; bad arguments come back as text for the model to fix."""
    inv = INVESTIGATIONS[name]
    try:
        args = inv.spec.args_model.model_validate(arguments)
    except ValidationError as err:
        return f"invalid {name} call: {first_error(err, 'args')}"
    return inv.run(round, args)
