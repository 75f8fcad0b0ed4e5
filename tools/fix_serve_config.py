"""fix_serve_config: change one serving setting: a vLLM engine argument (by its own name), the dtype,
or the entrypoint the engine is launched with. Verified by the engine's own argument parser."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

from pydantic import field_validator, model_validator

from fr_agent.core.config import Settings
from fr_agent.core.recipe import Recipe, Scalar, Stage, engine_flags
from fr_agent.core.types import DType
from fr_agent.sandboxes.base import Sandbox
from fr_agent.tools.base import Tool, ToolArgs, Verification, change, run_check

ARG_NAME = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
ENTRYPOINTS = ("cli", "api_server")
DTYPES = get_args(DType)


class FixServeConfigArgs(ToolArgs):
    key: str
    value: Scalar | None = None

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        v = v.removeprefix("--").replace("-", "_")
        if not ARG_NAME.match(v):
            raise ValueError(f"{v!r} is not an engine argument name")
        return v

    @model_validator(mode="after")
    def _special_keys(self) -> FixServeConfigArgs:
        if self.key == "entrypoint" and self.value not in ENTRYPOINTS:
            raise ValueError(f"entrypoint must be one of {ENTRYPOINTS}")
        if self.key == "dtype" and self.value not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}")
        return self


def apply(recipe: Recipe, args: FixServeConfigArgs) -> Recipe:
    summary = f"{args.key}={args.value}" if args.value is not None else f"drop {args.key}"
    if args.key == "dtype":
        return recipe.with_change(change("fix_serve_config", args, summary), dtype=args.value)
    serve = recipe.serve.model_dump()
    if args.key == "entrypoint":
        serve["entrypoint"] = args.value
    elif args.value is None:
        serve["engine_args"].pop(args.key, None)
    else:
        serve["engine_args"][args.key] = args.value
    return recipe.with_change(change("fix_serve_config", args, summary), serve=serve)


def verify(sandbox: Sandbox, recipe: Recipe, args: FixServeConfigArgs, settings: Settings) -> Verification:
    if recipe.serve.engine == "hf":  # the hf engine's own parser, against the model config, without loading weights
        argv = [
            *recipe.serve_argv(
                sandbox.python,
                recipe.model.path or recipe.model.name,
                0,
                probes_dir=str(Path(sandbox.probe("hf_server.py")).parent),
            ),
            "--check",
        ]
        return run_check(
            sandbox, recipe, settings, argv, "verify-fix_serve_config", lambda v: "the hf engine accepts the serve args"
        )
    serve_args = [
        "--model",
        recipe.model.path or recipe.model.name,
        *engine_flags({"dtype": recipe.dtype, **recipe.serve.engine_args}),
    ]
    return run_check(
        sandbox,
        recipe,
        settings,
        [sandbox.python, sandbox.probe("engine_args_check.py"), recipe.serve.entrypoint, "--", *serve_args],
        "verify-fix_serve_config",
        lambda v: f"vLLM accepts the serve args ({recipe.serve.entrypoint} entrypoint)",
    )


def rerun_from(args: FixServeConfigArgs) -> Stage:
    return "device" if args.key == "dtype" else "serve"


TOOL = Tool(
    name="fix_serve_config",
    description=(
        "Set or drop one vLLM engine argument (vLLM's own names), the dtype, or the entrypoint (cli|api_server)."
    ),
    args_model=FixServeConfigArgs,
    apply=apply,
    verify=verify,
    rerun_from=rerun_from,
)
