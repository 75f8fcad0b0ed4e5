"""What a user asked for: one run's request, written to its folder before anything else happens."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

SandboxKind = Literal["local", "docker", "host"]


class RunRequest(BaseModel):
    model: str
    chip: str
    planner: str = "playbook"
    sandbox: SandboxKind = "local"
    with_flaggems: bool = False
    engine: Literal["vllm", "hf"] | None = None
    catalog: str | None = None
