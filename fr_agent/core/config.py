"""Settings: where runs live, loop limits, sandbox knobs. Defaults here; a YAML file may override."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import ConfigDict, Field, SecretStr, ValidationError

from fr_agent.core.errors import FrAgentError
from fr_agent.core.types import DType, Strict, first_error


class LoopLimits(Strict):
    max_attempts: int = Field(10, ge=1, description="attempts of the staged run, the first included")
    max_fixes: int = Field(12, ge=0, description="fixes applied in one run")
    max_candidates_per_failure: int = Field(3, ge=1)
    max_failed_verifications: int = Field(8, ge=1, description="fixes that failed their verification in one run")


Seconds = Annotated[float, Field(gt=0)]


class StageTimeouts(Strict):
    """Seconds each stage may take before it is killed and reported as timed out."""

    install: Seconds = 900
    import_: Seconds = Field(180, alias="import", gt=0)
    device: Seconds = 120
    load: Seconds = 300
    operators: Seconds = 300
    serve: Seconds = 600
    smoke: Seconds = 120
    verify: Seconds = 300

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def for_stage(self, stage: str) -> float:
        return getattr(self, "import_" if stage == "import" else stage)


class DockerSettings(Strict):
    """The docker sandbox (sandboxes/docker.py): engine and per-container limits."""

    host: str | None = Field(
        None,
        description="engine URL; else DOCKER_HOST, the private engine under FR_AGENT_HOME "
        "(`fr-agent sandbox engine`), the default socket",
    )
    cpus: float | None = Field(None, gt=0, description="CPUs per container (default: all the host's)")
    memory_gib: float | None = Field(
        None, gt=0, description="memory per container, no swap (default: 3/4 of the host's)"
    )
    pids_limit: int = Field(4096, ge=16, description="processes and threads per container")
    index_network: Literal["host", "none"] = Field(
        "host",
        description="network of the steps that need the package index (installs, precheck); every other step gets none",
    )
    drop_capabilities: bool = Field(True, description="drop all Linux capabilities (not for privileged chip profiles)")


class SandboxSettings(Strict):
    kind: Literal["local", "docker", "host"] = Field(
        "local", description="the sandbox a run uses when --sandbox is not given"
    )
    output_cap_bytes: int = Field(
        2_000_000, ge=4096, description="bytes of a command's output kept in memory (head+tail)"
    )
    serve_log_stall_s: float = Field(
        180, gt=0, description="a starting server whose log stops growing this long is hung"
    )
    find_links: list[str] = Field(default_factory=list, description="extra wheel dirs; pip's config is read too")
    docker: DockerSettings = Field(default_factory=DockerSettings)


class EvalSettings(Strict):
    """The eval agent (fr_agent/evals/agent.py). Sizes default to what keeps the tiny model's eval short."""

    threshold_pct: float = Field(5.0, gt=0, description="gate: average percent difference of accuracy metrics")
    min_perf_ratio: float = Field(1.0, ge=0, description="gate: migrated/reference throughput (geometric mean)")
    max_new_tokens: int = Field(16, ge=1, description="greedy tokens compared for agreement (N)")
    topk: int = Field(5, ge=1, description="k of top-k containment")
    topk_tokens: int = Field(24, ge=0, description="tokens after the first N checked for top-k containment")
    prompts: int = Field(16, ge=1, description="bundled prompts used for greedy agreement and containment")
    heldout_tokens: int = Field(512, ge=2, description="held-out text tokens for perplexity and top-1 agreement")
    tasks_per_category: int = Field(
        20, ge=0, description="items per task category (knowledge, reasoning, math, code); 0 runs all 80"
    )
    task_concurrency: int = Field(4, ge=1, description="task scoring requests in flight")
    concurrency: list[int] = Field(
        default_factory=lambda: [1, 4],
        description="serving concurrency levels; empty skips the throughput and latency measurement",
    )
    perf_requests: int = Field(8, ge=1, description="requests per concurrency level")
    perf_max_tokens: int = Field(32, ge=1, description="completion tokens per serving request")
    lm_eval_tasks: list[str] = Field(
        default_factory=list,
        description="lm-evaluation-harness tasks, run when the "
        "harness is installed and their data is in the local datasets cache",
    )
    lm_eval_limit: int | None = Field(50, ge=1, description="items per lm-eval task")
    reference_url: str | None = Field(
        None,
        description="an OpenAI-compatible reference server already running "
        "(e.g. the native engine on the same chip); default: fr-agent starts one",
    )
    reference_dtype: DType = "float32"
    reference_device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="where fr-agent's reference server runs: auto takes this host's CUDA device when there "
        "is one with room for the reference weights (native torch ops, no operator plan), else the CPU",
    )
    reference_start_timeout_s: float = Field(300, gt=0)


class LLMBudget(Strict):
    round_tokens: int = Field(
        24_000,
        ge=1,
        description="prompt + completion tokens one planning round may use; past it the round follows the playbooks",
    )
    run_tokens: int = Field(200_000, ge=1, description="tokens one run may use; past it the run pauses (resumable)")


class LLMSettings(Strict):
    """The LLM planner's endpoint. Env wins over this file: FR_AGENT_LLM_BASE_URL, FR_AGENT_LLM_MODEL,
    FR_AGENT_LLM_API_KEY (then OPENAI_BASE_URL, OPENAI_API_KEY). Prefer the env for the key."""

    base_url: str | None = Field(None, description="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    model: str | None = None
    api_key: SecretStr | None = None
    timeout_s: float = Field(120, gt=0, description="one request; the SDK retries timeouts, 429 and 5xx")
    max_retries: int = Field(2, ge=0)
    max_invalid_replies: int = Field(
        2, ge=0, description="invalid or missing calls fed back per round before the round follows the playbooks"
    )
    max_investigations: int = Field(6, ge=0, description="read-only tool calls per round")
    max_completion_tokens: int = Field(2048, ge=16)
    temperature: float = 0.0
    strict: Literal["auto", "on", "off"] = Field("auto", description="strict tool schemas; auto drops them if refused")
    price_input_per_mtok: float = Field(0.0, ge=0, description="USD per million prompt tokens, for the cost column")
    price_output_per_mtok: float = Field(0.0, ge=0)
    log_excerpt_chars: int = Field(6000, ge=500, description="log text in one round's context")
    budget: LLMBudget = Field(default_factory=LLMBudget)


class Settings(Strict):
    home: Path = Field(default_factory=lambda: Path(os.environ.get("FR_AGENT_HOME", ".fr-agent")).absolute())
    limits: LoopLimits = Field(default_factory=LoopLimits)
    timeouts: StageTimeouts = Field(default_factory=StageTimeouts)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)

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
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as err:
            raise FrAgentError(
                f"cannot read settings {path}: {(str(err).splitlines() or [type(err).__name__])[0]}"
            ) from None
        if not isinstance(data, dict):
            raise FrAgentError(
                f"settings {path}: expected a mapping of sections (limits, timeouts, sandbox, eval, "
                f"llm...), found {type(data).__name__}"
            )
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(data)
    except ValidationError as err:
        raise FrAgentError(f"invalid settings: {first_error(err)}") from None
