"""patch_operator: change how one operator runs, through the operator layer (kernels/registry.py):
switch a FlagGems op or an override off (exclude list), force the torch reference, compute it in another
dtype, or swap in our Triton kernel from kernels/. Verified by the operator check on that op alone, or,
for a FlagGems function the check does not know, by one probe of the model under the new plan."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from pydantic import model_validator

from fr_agent.core.config import Settings
from fr_agent.core.errors import ToolRejected
from fr_agent.core.recipe import OperatorPlan, Recipe
from fr_agent.core.types import CHECKED_OPS, DType
from fr_agent.kernels import KERNELS, operator_spec
from fr_agent.kernels.registry import MODEL_HOOKS
from fr_agent.sandboxes.base import Sandbox
from fr_agent.tools.base import Tool, ToolArgs, Verification, change, run_check
from fr_agent.tools.operator_search import verify_model

FLAGGEMS_NAME = re.compile(r"^_?[a-z][a-z0-9_]*$")


class PatchOperatorArgs(ToolArgs):
    op: str
    strategy: Literal["disable", "reference", "cast", "kernel"]
    dtype: DType | None = None

    @model_validator(mode="after")
    def _cast_needs_dtype(self) -> PatchOperatorArgs:
        if (self.strategy == "cast") != (self.dtype is not None):
            raise ValueError("dtype is required with strategy 'cast' and only then")
        return self


def admit(args: PatchOperatorArgs, recipe: Recipe, sandbox: Sandbox) -> None:
    plan = recipe.operators
    if args.strategy == "kernel":
        if args.op not in MODEL_HOOKS:
            raise ToolRejected(f"no kernel of ours reaches a model for {args.op!r}; kernels: {', '.join(MODEL_HOOKS)}")
        return
    known = (
        args.op in plan.ops or args.op in KERNELS or args.op in (plan.include or []) or args.op in (plan.kernels or [])
    )
    flaggems_op = plan.backend == "flaggems" and FLAGGEMS_NAME.match(args.op) is not None
    if not (known or flaggems_op):
        raise ToolRejected(
            f"operator {args.op!r} is not checked by this recipe; known: {', '.join(plan.ops)}"
            + ("" if plan.backend == "flaggems" else " (FlagGems functions need the flaggems backend)")
        )


def patched(plan: OperatorPlan, args: PatchOperatorArgs) -> OperatorPlan:
    data = plan.model_dump()
    if args.strategy == "cast":
        data["cast"] = {**data["cast"], args.op: args.dtype}
    elif args.strategy == "kernel":
        data["kernels"] = sorted({*(data["kernels"] or []), args.op})
        data["disabled"] = [op for op in data["disabled"] if op != args.op]
        data["reference"] = [op for op in data["reference"] if op != args.op]
    else:
        field = "disabled" if args.strategy == "disable" else "reference"
        data[field] = sorted({*data[field], args.op})
        if data["include"] is not None:  # an only_enable list must not bring a switched-off op back
            data["include"] = [op for op in data["include"] if op != args.op]
        if args.strategy == "disable" and data["kernels"]:
            data["kernels"] = [op for op in data["kernels"] if op != args.op]
    return OperatorPlan.model_validate(data)


def apply(recipe: Recipe, args: PatchOperatorArgs) -> Recipe:
    summary = f"{args.strategy} {args.op}" + (f" in {args.dtype}" if args.dtype else "")
    return recipe.with_change(change("patch_operator", args, summary), operators=patched(recipe.operators, args))


def verify(sandbox: Sandbox, recipe: Recipe, args: PatchOperatorArgs, settings: Settings) -> Verification:
    if args.op not in CHECKED_OPS:  # a FlagGems function: judge the model under the new plan
        return verify_model(
            sandbox,
            recipe,
            settings,
            lambda probe: f"model forward without FlagGems {args.op}: logits rel err {probe.rel_err:.3g}",
            f"model forward after {args.strategy} {args.op}",
        )
    spec = {**operator_spec(recipe), "ops": [args.op]}
    spec_path = Path(sandbox.workdir) / f"verify-op-{args.op}.json"
    spec_path.write_text(json.dumps(spec))
    return run_check(
        sandbox,
        recipe,
        settings,
        [sandbox.python, sandbox.probe("op_check.py"), str(spec_path)],
        f"verify-patch_operator-{args.op}",
        lambda v: f"{args.op} passes in {recipe.dtype} ({v['ops'][args.op]['impl']})",
    )


TOOL = Tool(
    name="patch_operator",
    description="Switch one operator override off (FlagGems exclude list), fall back to the torch reference, "
    "compute it in another dtype, or swap in our Triton kernel.",
    args_model=PatchOperatorArgs,
    apply=apply,
    verify=verify,
    admit=admit,
    rerun_from=lambda args: "operators",
)
