"""The Recipe: the one typed object that says how a model runs on a chip.

Tools change it (each change recorded), sandboxes realize it, publish ships it. Replaying the
recorded changes on the base recipe reproduces a repaired run without a planner.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from fr_agent.core.types import DEFAULT_OPS, DType, Strict

Stage = Literal["install", "import", "device", "load", "operators", "serve", "smoke"]
STAGES: tuple[Stage, ...] = ("install", "import", "device", "load", "operators", "serve", "smoke")
Scalar = str | int | float | bool

# PEP 508 distribution names (normalised comparison happens elsewhere).
PACKAGE_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
VERSION = re.compile(r"^[0-9]+(\.[0-9]+)*([a-zA-Z0-9.+-]*)$")


def normalize_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _package_name(v: str) -> str:
    if not PACKAGE_NAME.match(v):
        raise ValueError(f"{v!r} is not a valid package name")
    return v


def _version(v: str) -> str:
    if not VERSION.match(v):
        raise ValueError(f"{v!r} is not a valid version")
    return v


PackageName = Annotated[str, AfterValidator(_package_name)]
Version = Annotated[str, AfterValidator(_version)]


class PackagePin(Strict):
    name: PackageName
    version: Version | None = None

    def requirement(self) -> str:
        return f"{self.name}=={self.version}" if self.version else self.name


class OperatorPlan(Strict):
    """Which implementation each operator uses inside the sandbox."""

    backend: Literal["torch", "kernels", "flaggems"] = "torch"
    ops: list[str] = Field(default_factory=lambda: list(DEFAULT_OPS))
    disabled: list[str] = Field(default_factory=list, description="overrides switched off (torch's own op runs)")
    reference: list[str] = Field(default_factory=list, description="ops forced to the torch reference implementation")
    cast: dict[str, DType] = Field(default_factory=dict, description="ops computed in another dtype and cast back")
    include: list[str] | None = Field(
        None, description="FlagGems functions registered (only_enable); None: all but `disabled`"
    )
    kernels: list[str] | None = Field(
        None,
        description="our Triton kernels (kernels/) swapped into the model; None: all of them when backend is kernels",
    )


class ServePlan(Strict):
    engine: Literal["vllm", "hf"] = "vllm"
    entrypoint: Literal["cli", "api_server"] = "cli"
    engine_args: dict[str, Scalar] = Field(default_factory=dict)


class ModelRef(Strict):
    name: str
    repo_id: str | None = None
    path: str | None = Field(None, description="local snapshot the sandbox loads from")


class RecipeChange(Strict):
    tool: str
    args: dict[str, Any]
    summary: str


class Recipe(Strict):
    model: ModelRef
    chip: str
    python: str = "3.11"
    base_image: str
    torch_device: str = "cpu"
    dtype: DType = "bfloat16"
    packages: list[PackagePin]
    removed: list[str] = Field(default_factory=list, description="packages deliberately uninstalled")
    env: dict[str, str] = Field(default_factory=dict)
    operators: OperatorPlan = Field(default_factory=OperatorPlan)
    serve: ServePlan = Field(default_factory=ServePlan)
    changes: list[RecipeChange] = Field(default_factory=list)

    def with_change(self, change: RecipeChange, **updates: Any) -> Recipe:
        data = self.model_dump()
        data.update(updates)
        data["changes"] = [*data["changes"], change.model_dump()]
        return Recipe.model_validate(data)

    def package(self, name: str) -> PackagePin | None:
        key = normalize_name(name)
        return next((p for p in self.packages if normalize_name(p.name) == key), None)

    def serve_argv(self, python: str, model_path: str, port: int, probes_dir: str = "") -> list[str]:
        """The command line the engine is started with (inside the sandbox); `hf` runs a shipped probe."""
        if self.serve.engine == "hf":
            head = [python, os.path.join(probes_dir, "hf_server.py"), model_path, "--device", self.torch_device]
            ops = self.operators
            plan = (
                ["--operators", ops.model_dump_json(exclude={"ops"})] if ops.backend != "torch" or ops.kernels else []
            )
            return [
                *head,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *engine_flags({"dtype": self.dtype, **self.serve.engine_args}),
                *plan,
            ]
        head = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model_path]
        if self.serve.entrypoint == "cli":
            head = [os.path.join(os.path.dirname(python), "vllm"), "serve", model_path]
        args = {"dtype": self.dtype, **self.serve.engine_args}
        return [*head, "--host", "127.0.0.1", "--port", str(port), *engine_flags(args)]


def engine_flags(engine_args: dict[str, Scalar]) -> list[str]:
    flags: list[str] = []
    for key, value in sorted(engine_args.items()):
        flag = "--" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is False:
            continue
        else:
            flags += [flag, str(value)]
    return flags
