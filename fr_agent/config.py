"""Settings: where runs live, loop limits, sandbox knobs. Defaults here; a YAML file may override."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fr_agent.errors import FrAgentError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoopLimits(Strict):
    max_attempts: int = Field(10, ge=1, description="attempts of the staged run, the first included")
    max_fixes: int = Field(12, ge=0, description="fixes applied in one run")
    max_candidates_per_failure: int = Field(3, ge=1)


class StageTimeouts(Strict):
    install: float = 900
    import_: float = Field(180, alias="import")
    device: float = 120
    load: float = 300
    operators: float = 300
    serve: float = 600
    smoke: float = 120
    verify: float = 300

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def for_stage(self, stage: str) -> float:
        return getattr(self, "import_" if stage == "import" else stage)


class SandboxSettings(Strict):
    kind: str = "local"
    output_cap_bytes: int = Field(2_000_000, description="bytes of a command's output kept in memory (head+tail)")
    serve_log_stall_s: float = Field(180, description="a starting server whose log stops growing this long is hung")
    find_links: list[str] = Field(default_factory=list, description="extra wheel dirs; pip's config is read too")


class EvalSettings(Strict):
    threshold_pct: float = 5.0
    max_new_tokens: int = 24


class Settings(Strict):
    home: Path = Field(default_factory=lambda: Path(os.environ.get("FR_AGENT_HOME", ".fr-agent")).absolute())
    limits: LoopLimits = Field(default_factory=LoopLimits)
    timeouts: StageTimeouts = Field(default_factory=StageTimeouts)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def hf_home(self) -> Path:
        return Path(os.environ.get("HF_HOME") or self.home / "hf")


def load_settings(path: Path | None = None, **overrides) -> Settings:
    data: dict = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise FrAgentError(f"cannot read settings {path}: {str(err).splitlines()[0]}") from None
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        raise FrAgentError(f"invalid settings: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
