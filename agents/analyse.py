"""Analyse: resolve the model (local dir, HF cache or hub, or the catalog's facts) and derive the
starting recipe for the chip from the chip profile and the model config: what a vendor image ships
(python + the vendor torch) plus what the model and the engine need. Nothing here is tuned to pass.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Literal

from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
from pydantic import BaseModel, ConfigDict, NonNegativeInt, PositiveInt, ValidationError

from fr_agent.core.catalog import Catalog, ChipProfile, ModelEntry, ModelFacts
from fr_agent.core.config import Settings
from fr_agent.core.errors import FrAgentError, UnknownModelError
from fr_agent.core.recipe import ModelRef, OperatorPlan, PackagePin, Recipe, ServePlan
from fr_agent.core.types import first_error
from fr_agent.sandboxes.base import host_memory_gib

FLAG_GEMS_VERSION = "5.0.2"  # the FlagGems release the operator layer (kernels/registry.py) is written against
DEFAULT_MAX_MODEL_LEN = 32768  # FlagRelease's serving default; the repair loop lowers it when memory says so
HF_ENGINE_TRANSFORMERS = "5.19.0"  # the transformers fr-agent itself pins: the reference backend of the eval
CPU_KV_SEQUENCES = 8  # full-length sequences the CPU KV cache is sized for (the eval runs at concurrency <= 8)


class Analysis(BaseModel):
    model: ModelRef
    chip: str
    source: Literal["local", "fixture", "hub-or-cache", "catalog-facts"]
    facts: ModelFacts
    trust_remote_code: bool = False
    weights_available: bool
    license: str | None = None
    recipe: Recipe
    notes: list[str] = []


class ModelConfig(BaseModel):
    """The fields of a model's config.json that analysis reads, checked where the file is read; the
    others are kept as they are (every architecture adds its own)."""

    model_config = ConfigDict(extra="allow")

    architectures: list[str] | None = None
    model_type: str = "unknown"
    dtype: str | None = None
    torch_dtype: str | None = None
    hidden_size: NonNegativeInt = 0
    num_hidden_layers: NonNegativeInt = 0
    num_attention_heads: NonNegativeInt = 0
    num_key_value_heads: NonNegativeInt | None = None
    vocab_size: NonNegativeInt = 0
    max_position_embeddings: PositiveInt = 2048


def read_model_config(path: Path) -> ModelConfig:
    """A config.json as analysis needs it, or one line naming the file and what is wrong with it."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise FrAgentError(f"{path}: not JSON ({err.msg} at line {err.lineno})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise FrAgentError(f"{path}: cannot read it ({err})") from None
    if not isinstance(raw, dict):
        raise FrAgentError(f"{path}: expected a JSON object, found {type(raw).__name__}")
    try:
        return ModelConfig.model_validate(raw)
    except ValidationError as err:
        raise FrAgentError(f"{path}: {first_error(err)}") from None


def facts_from_config(config: ModelConfig, params_b: float | None = None) -> ModelFacts:
    heads, hidden, layers, vocab = (
        config.num_attention_heads,
        config.hidden_size,
        config.num_hidden_layers,
        config.vocab_size,
    )
    estimate = (12 * layers * hidden * hidden + 2 * vocab * hidden) / 1e9
    return ModelFacts(
        architecture=(config.architectures or ["unknown"])[0],
        model_type=config.model_type,
        dtype=(config.dtype or config.torch_dtype or "bfloat16").replace("torch.", ""),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads if config.num_key_value_heads is None else config.num_key_value_heads,
        vocab_size=vocab,
        max_position_embeddings=config.max_position_embeddings,
        params_b=params_b if params_b is not None else round(estimate, 4),
    )


def hub_config(repo_id: str) -> ModelConfig | None:
    """config.json from the HF cache or the hub; None when neither has it."""
    try:
        path = Path(hf_hub_download(repo_id, "config.json"))
    except (LocalEntryNotFoundError, RepositoryNotFoundError, HfHubHTTPError, OSError, ValueError):
        return None
    return read_model_config(path)


def local_snapshot(repo_id: str) -> Path | None:
    try:
        return Path(snapshot_download(repo_id))
    except (LocalEntryNotFoundError, RepositoryNotFoundError, HfHubHTTPError, OSError, ValueError):
        return None


def resolve_model(
    name: str, catalog: Catalog, settings: Settings
) -> tuple[ModelRef, str, ModelFacts, ModelEntry | None, bool]:
    path = Path(name).expanduser()
    looks_like_path = name.startswith((".", "/", "~")) or path.exists()
    if looks_like_path:
        config = path / "config.json"
        if not path.is_dir():
            raise UnknownModelError(f"local model directory {name} does not exist")
        if not config.exists():
            raise UnknownModelError(f"local model directory {name} has no config.json")
        ref = ModelRef(name=path.name, path=str(path.resolve()))
        return ref, "local", facts_from_config(read_model_config(config)), None, True
    entry = catalog.model(name)
    repo_id = entry.repo_id if entry else name
    if entry and entry.fixture == "tiny-llama":
        # heavy: the fixture builder imports torch, tokenizers and transformers (the host extra)
        from fr_agent.evals.tiny_model import ensure_tiny_llama

        snapshot = ensure_tiny_llama(settings.hf_home, repo_id)
        facts = facts_from_config(read_model_config(snapshot / "config.json"), entry.facts.params_b)
        return ModelRef(name=entry.name, repo_id=repo_id, path=str(snapshot)), "fixture", facts, entry, True
    if "/" not in repo_id and entry is None:
        raise UnknownModelError(
            f"unknown model {name!r}: not in the catalog (see `fr-agent models`), not a local directory, "
            "and not an org/name hub id"
        )
    config = hub_config(repo_id)
    if config is None and entry is None:
        raise UnknownModelError(
            f"unknown model {name!r}: not in the catalog and not found in the HF cache or on the hub"
        )
    if config is None:
        return ModelRef(name=entry.name, repo_id=repo_id), "catalog-facts", entry.facts, entry, False
    snapshot = local_snapshot(repo_id) if os.environ.get("HF_HUB_OFFLINE") else None
    facts = facts_from_config(config, entry.facts.params_b if entry else None)
    ref = ModelRef(name=entry.name if entry else repo_id, repo_id=repo_id, path=str(snapshot) if snapshot else None)
    return ref, "hub-or-cache", facts, entry, snapshot is not None or not os.environ.get("HF_HUB_OFFLINE")


def pick_dtype(model_dtype: str, chip: ChipProfile) -> str:
    preferred = [model_dtype, "bfloat16", "float16", "float32"]
    return next(d for d in preferred if d in chip.dtypes)


def tensor_parallel_size(facts: ModelFacts, chip: ChipProfile) -> int | None:
    """Next power of two of ceil(weights GB x 1.2 / card GB), as FlagRelease sizes TP."""
    if not chip.memory_gib_per_card:
        return None
    weights_gb = facts.params_b * (4 if facts.dtype == "float32" else 2)
    cards = max(1, math.ceil(weights_gb * 1.2 / chip.memory_gib_per_card))
    return 1 << (cards - 1).bit_length()


def engine_packages(chip: ChipProfile, engine: str) -> list[PackagePin]:
    """vLLM comes as the chip's engine stack; `hf` (transformers serving itself) needs only transformers."""
    if engine == "hf":
        return [PackagePin(name="transformers", version=HF_ENGINE_TRANSFORMERS)]
    return [PackagePin(name=n, version=v or None) for n, _, v in (p.partition("==") for p in chip.engine.packages)]


def cpu_kv_cache_gib(facts: ModelFacts, max_model_len: int, dtype: str) -> int:
    """VLLM_CPU_KVCACHE_SPACE for this model: CPU_KV_SEQUENCES sequences of max_model_len tokens, at least
    1 GiB and at most a quarter of this host's memory. Unset, vLLM's CPU worker reserves gpu_memory_utilization
    (0.9) of the host's memory for KV cache, and the eval's reference server beside it on the same host
    starves (a 2M-parameter model took 21 GiB and the eval ran out of memory)."""
    head_dim = facts.hidden_size // max(1, facts.num_attention_heads)
    per_token = 2 * facts.num_hidden_layers * facts.num_key_value_heads * head_dim * (4 if dtype == "float32" else 2)
    need = math.ceil(per_token * max_model_len * CPU_KV_SEQUENCES / 2**30)
    return max(1, min(need, int(host_memory_gib() / 4)))


def starting_recipe(
    model: ModelRef,
    facts: ModelFacts,
    chip: ChipProfile,
    trust_remote_code: bool,
    with_flaggems: bool = False,
    engine: str | None = None,
) -> Recipe:
    engine = engine or chip.engine.name
    torch_pin = PackagePin(name=chip.torch.package, version=chip.torch.version)
    engine_pins = engine_packages(chip, engine)
    engine_args: dict = {"max_model_len": min(facts.max_position_embeddings, DEFAULT_MAX_MODEL_LEN)}
    tp = tensor_parallel_size(facts, chip)
    if tp and tp > 1 and engine == "vllm":
        engine_args["tensor_parallel_size"] = tp
    if trust_remote_code:
        engine_args["trust_remote_code"] = True
    env = {}
    if chip.engine.plugin:
        env["VLLM_PLUGINS"] = chip.engine.plugin
    if with_flaggems and chip.gems_vendor:
        env["GEMS_VENDOR"] = chip.gems_vendor
    dtype = pick_dtype(facts.dtype, chip)
    if chip.torch_device == "cpu" and engine == "vllm":
        env["VLLM_CPU_KVCACHE_SPACE"] = str(cpu_kv_cache_gib(facts, engine_args["max_model_len"], dtype))
    gems_pins = [PackagePin(name="flag-gems", version=FLAG_GEMS_VERSION)] if with_flaggems else []
    return Recipe(
        model=model,
        chip=chip.name,
        base_image=chip.base_image,
        torch_device=chip.torch_device,
        dtype=dtype,
        packages=[torch_pin, *engine_pins, *gems_pins],
        env=env,
        operators=OperatorPlan(backend="flaggems" if with_flaggems else "torch"),
        serve=ServePlan(engine=engine, engine_args=engine_args),
    )


def analyse(
    model_name: str,
    chip_name: str,
    catalog: Catalog,
    settings: Settings,
    *,
    with_flaggems: bool = False,
    engine: str | None = None,
) -> Analysis:
    chip = catalog.chip(chip_name)
    model, source, facts, entry, weights = resolve_model(model_name, catalog, settings)
    trust = bool(entry and entry.trust_remote_code)
    notes = []
    if engine not in (None, "vllm", "hf"):
        raise FrAgentError(f"unknown engine {engine!r}: use vllm or hf")
    if (
        facts.num_attention_heads
        and facts.hidden_size // facts.num_attention_heads < 32
        and chip.name == "cpu"
        and (engine or chip.engine.name) == "vllm"
    ):
        notes.append("head_dim < 32: vLLM's CPU attention needs head_dim >= 32")
    recipe = starting_recipe(model, facts, chip, trust, with_flaggems, engine)
    return Analysis(
        model=model,
        chip=chip.name,
        source=source,
        facts=facts,
        trust_remote_code=trust,
        weights_available=weights,
        license=entry.license if entry else None,
        recipe=recipe,
        notes=notes,
    )
