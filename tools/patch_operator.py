"""patch_operator: change how one operator runs: switch its override off, force the torch reference,
or compute it in another dtype. Verified by the operator check on that op alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import model_validator

from fr_agent.config import Settings
from fr_agent.errors import ToolRejected
from fr_agent.recipe import DType, OperatorPlan, Recipe
from fr_agent.sandboxes.base import Sandbox
from fr_agent.tools.base import Tool, ToolArgs, Verification, change, verdict_from


class PatchOperatorArgs(ToolArgs):
    op: str
    strategy: Literal["disable", "reference", "cast"]
    dtype: DType | None = None

    @model_validator(mode="after")
    def _cast_needs_dtype(self) -> PatchOperatorArgs:
        if (self.strategy == "cast") != (self.dtype is not None):
            raise ValueError("dtype is required with strategy 'cast' and only then")
        return self


def admit(args: PatchOperatorArgs, recipe: Recipe, sandbox: Sandbox) -> None:
    if args.op not in recipe.operators.ops:
        raise ToolRejected(f"operator {args.op!r} is not checked by this recipe; known: {', '.join(recipe.operators.ops)}")


def patched(plan: OperatorPlan, args: PatchOperatorArgs) -> OperatorPlan:
    data = plan.model_dump()
    if args.strategy == "cast":
        data["cast"] = {**data["cast"], args.op: args.dtype}
    else:
        field = "disabled" if args.strategy == "disable" else "reference"
        data[field] = sorted({*data[field], args.op})
    return OperatorPlan.model_validate(data)


def apply(recipe: Recipe, args: PatchOperatorArgs) -> Recipe:
    summary = f"{args.strategy} {args.op}" + (f" in {args.dtype}" if args.dtype else "")
    return recipe.with_change(change("patch_operator", args, summary), operators=patched(recipe.operators, args))


def verify(sandbox: Sandbox, recipe: Recipe, args: PatchOperatorArgs, settings: Settings) -> Verification:
    from fr_agent.agents.stages import operator_spec

    spec = {**operator_spec(recipe), "ops": [args.op]}
    spec_path = Path(sandbox.workdir) / f"verify-op-{args.op}.json"
    spec_path.write_text(json.dumps(spec))
    result = sandbox.run([sandbox.python, sandbox.probe("op_check.py"), str(spec_path)], recipe,
                         timeout=settings.timeouts.verify, log_name=f"verify-patch_operator-{args.op}")
    return verdict_from(result, lambda v: f"{args.op} passes in {recipe.dtype} ({v['ops'][args.op]['impl']})")


TOOL = Tool(
    name="patch_operator",
    description="Disable an operator override, fall back to the torch reference, or compute it in another dtype.",
    args_model=PatchOperatorArgs,
    apply=apply,
    verify=verify,
    admit=admit,
    rerun_from=lambda args: "operators",
)
