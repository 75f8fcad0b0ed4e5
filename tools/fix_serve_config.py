"""fix_serve_config: change one serving setting: a vLLM engine argument (by its own name), the dtype,
or the entrypoint the engine is launched with. Verified by the engine's own argument parser.

Only known engine knobs are set, each with a typed value (KNOBS). Settings that run code or read files
the user did not choose (remote model code, another tokenizer, plugin classes, file paths: GATED) are
admitted only inside the model's folder and are shown to a person for approval even with --yes. Any
argument may be dropped (value null): that is how an argument the engine does not know is removed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import get_args

from pydantic import field_validator, model_validator

from fr_agent.core.config import Settings
from fr_agent.core.errors import ToolRejected
from fr_agent.core.recipe import Recipe, Scalar, Stage, engine_flags
from fr_agent.core.types import DType
from fr_agent.sandboxes.base import Sandbox
from fr_agent.tools.base import Tool, ToolArgs, Verification, change, run_check

ARG_NAME = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
ENTRYPOINTS = ("cli", "api_server")
DTYPES = get_args(DType)


def whole(v: Scalar) -> int:
    if isinstance(v, bool) or not isinstance(v, int | str) or not str(v).strip().isdigit():
        raise ValueError("must be a whole number")
    return int(v)


def number(v: Scalar) -> float:
    if isinstance(v, bool):
        raise ValueError("must be a number")
    try:
        return float(v)
    except ValueError:
        raise ValueError("must be a number") from None


def positive(v: Scalar) -> int:
    if (n := whole(v)) < 1:
        raise ValueError("must be at least 1")
    return n


def power_of_two(v: Scalar) -> int:
    if (n := positive(v)) & (n - 1):
        raise ValueError("must be a power of two")
    return n


def fraction(v: Scalar) -> float:
    if not 0 < (x := number(v)) <= 1:
        raise ValueError("must be in (0, 1]")
    return x


def not_negative(v: Scalar) -> float:
    if (x := number(v)) < 0:
        raise ValueError("must be at least 0")
    return x


def flag(v: Scalar) -> bool:
    if not isinstance(v, bool):
        raise ValueError("must be true or false")
    return v


def one_of(*choices: str) -> Callable[[Scalar], str]:
    def check(v: Scalar) -> str:
        if v not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return str(v)

    return check


def identifier(v: Scalar) -> str:
    if not isinstance(v, str) or not IDENTIFIER.match(v):
        raise ValueError("must be a plain name (letters, digits, . _ -)")
    return v


def repo_or_path(v: Scalar) -> str:
    """A hub repo id (org/name), a dotted class name or a path; a path is held to the model's folder in
    `admit`."""
    if not isinstance(v, str) or not v or len(v) > 512 or ".." in PurePosixPath(v).parts or "\\" in v:
        raise ValueError("must be a repo id or a path without '..'")
    return v


# Engine knobs and their value types: what the playbooks and a planner may set.
KNOBS: dict[str, Callable[[Scalar], Scalar]] = {
    "max_model_len": positive,
    "gpu_memory_utilization": fraction,
    "tensor_parallel_size": power_of_two,
    "pipeline_parallel_size": positive,
    "data_parallel_size": positive,
    "enforce_eager": flag,
    "max_num_seqs": positive,
    "max_num_batched_tokens": positive,
    "max_seq_len_to_capture": positive,
    "num_gpu_blocks_override": positive,
    "block_size": power_of_two,
    "swap_space": not_negative,
    "cpu_offload_gb": not_negative,
    "kv_cache_dtype": one_of("auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2", "fp8_inc"),
    "enable_prefix_caching": flag,
    "enable_chunked_prefill": flag,
    "disable_custom_all_reduce": flag,
    "disable_sliding_window": flag,
    "disable_log_stats": flag,
    "enable_auto_tool_choice": flag,
    "tool_call_parser": identifier,
    "quantization": identifier,
    "served_model_name": identifier,
    "seed": whole,
    "max_logprobs": whole,
    "device": one_of("auto", "cpu", "cuda", "npu", "xpu", "hpu", "tpu", "neuron", "musa", "mlu"),
    "distributed_executor_backend": one_of("mp", "ray", "uni", "external_launcher"),
    "load_format": one_of("auto", "safetensors", "pt", "npcache", "dummy"),
    "tokenizer_mode": one_of("auto", "slow", "mistral"),
}
# Knobs that run code or read files the user did not choose: set only with a person's approval.
GATED: dict[str, Callable[[Scalar], Scalar]] = {
    "trust_remote_code": flag,
    "tokenizer": repo_or_path,
    "tokenizer_revision": identifier,
    "revision": identifier,
    "code_revision": identifier,
    "chat_template": repo_or_path,
    "download_dir": repo_or_path,
}
# Plugin classes and file arguments by the shape of their names (worker_extension_cls, tool_parser_plugin).
GATED_NAME = re.compile(r"\w*(?:_cls|plugin\w*|_path|_dir|_file|template)")
PATH_VALUED = {"tokenizer", "chat_template", "download_dir"}


def gated(key: str) -> bool:
    return key in GATED or bool(GATED_NAME.fullmatch(key))


def in_model_dir(value: str, recipe: Recipe) -> bool:
    model = recipe.model.path
    if not model:
        return False
    resolved = Path(model, value).resolve() if not value.startswith("/") else Path(value).resolve()
    return resolved.is_relative_to(Path(model).resolve())


def looks_like_path(value: str) -> bool:
    return value.startswith(("/", "./", "~")) or value.endswith((".jinja", ".json", ".txt", ".py", ".model"))


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
    def _typed_value(self) -> FixServeConfigArgs:
        if self.key == "entrypoint" and self.value not in ENTRYPOINTS:
            raise ValueError(f"entrypoint must be one of {ENTRYPOINTS}")
        if self.key == "dtype" and self.value not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}")
        if self.value is None or self.key in ("entrypoint", "dtype"):
            return self
        check = KNOBS.get(self.key) or GATED.get(self.key) or (repo_or_path if gated(self.key) else None)
        if check is None:
            raise ValueError(f"{self.key} is not an engine knob this tool may set (known: {', '.join(sorted(KNOBS))})")
        try:
            self.value = check(self.value)
        except ValueError as err:
            raise ValueError(f"{self.key} {err}") from None
        return self


def admit(args: FixServeConfigArgs, recipe: Recipe, sandbox: Sandbox) -> None:
    if args.value is None or not gated(args.key) or not isinstance(args.value, str):
        return
    path_valued = args.key in PATH_VALUED or bool(re.fullmatch(r"\w*(?:_path|_dir|_file|template)", args.key))
    if (
        path_valued
        and (looks_like_path(args.value) or args.key != "tokenizer")
        and not in_model_dir(args.value, recipe)
    ):
        raise ToolRejected(f"{args.key}={args.value!r} is outside the model's folder")


def needs_approval(args: FixServeConfigArgs, recipe: Recipe) -> str | None:
    if args.value is None or not gated(args.key) or recipe.serve.engine_args.get(args.key) == args.value:
        return None
    if args.key == "trust_remote_code":
        return "trust_remote_code runs code shipped with the model"
    return f"{args.key} makes the engine load code or files the user did not choose"


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
        "Set or drop one vLLM engine argument (vLLM's own names, known knobs only), the dtype, or the entrypoint "
        "(cli|api_server)."
    ),
    args_model=FixServeConfigArgs,
    apply=apply,
    verify=verify,
    admit=admit,
    needs_approval=needs_approval,
    rerun_from=rerun_from,
)
