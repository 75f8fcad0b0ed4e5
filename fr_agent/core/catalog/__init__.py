"""The catalog as validated data: chip profiles and model entries, loaded from YAML.

The packaged YAML is the default; `FR_AGENT_CATALOG=DIR` (or `--catalog DIR`) points at a directory
holding `chips.yaml` and/or `models.yaml` that replace the packaged ones.
"""

from __future__ import annotations

import os
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, ValidationError

from fr_agent.core.errors import CatalogError, UnknownChipError, UnknownModelError
from fr_agent.core.types import DType, Strict, first_error


class Detection(Strict):
    cli: str | None = Field(None, description="vendor management CLI whose presence shows the driver")
    torch_attr: str | None = Field(None, description="torch attribute the vendor build adds (torch.npu, torch.mlu...)")
    device_nodes: list[str] = Field(default_factory=list, description="glob patterns of /dev nodes")
    name_contains: str | None = Field(None, description="substring of the torch device name")


class TorchBuild(Strict):
    package: str = "torch"
    version: str
    source: str = Field(description="where the vendor build comes from (index URL, vendor image, PyPI)")


class ContainerFlags(Strict):
    devices: list[str] = Field(default_factory=list)
    group_add: list[str] = Field(default_factory=list)
    shm_size: str = "16g"
    ulimits: dict[str, int] = Field(default_factory=dict)
    security_opt: list[str] = Field(default_factory=list)
    privileged: bool = False
    runtime: str | None = None
    mounts: list[str] = Field(
        default_factory=list,
        description="host paths (driver libraries, vendor CLIs) the "
        "container sees read-only at the same path, where they exist",
    )


class EngineStack(Strict):
    name: Literal["vllm", "hf"] = "vllm"
    packages: list[str] = Field(description="requirements the engine adds, pinned")
    plugin: str | None = Field(None, description="vLLM platform plugin name for VLLM_PLUGINS")


class ChipProfile(Strict):
    name: str
    vendor: str
    description: str
    torch_device: str
    detection: Detection
    visible_devices_env: str | None
    gems_vendor: str | None
    torch: TorchBuild
    flagtree: str | None = Field(None, description="flagtree (vendor Triton) pin from flag-gems extras")
    flag_gems_extra: str | None = None
    base_image: str
    container: ContainerFlags = Field(default_factory=ContainerFlags)
    dtypes: list[DType]
    memory_gib_per_card: float | None
    engine: EngineStack


class ModelFacts(Strict):
    """What analysis needs when the hub cannot be reached: the config's key fields."""

    architecture: str
    model_type: str
    dtype: DType
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    max_position_embeddings: int
    params_b: float


class ModelEntry(Strict):
    name: str
    repo_id: str
    license: str
    facts: ModelFacts
    trust_remote_code: bool = False
    fixture: Literal["tiny-llama"] | None = Field(None, description="built locally instead of downloaded")


class Catalog(Strict):
    chips: dict[str, ChipProfile]
    models: dict[str, ModelEntry]

    def chip(self, name: str) -> ChipProfile:
        key = name.lower()
        if key not in self.chips:
            raise UnknownChipError(f"unknown chip {name!r}; known chips: {', '.join(sorted(self.chips))}")
        return self.chips[key]

    def model(self, name: str) -> ModelEntry | None:
        key = name.lower()
        return next((m for m in self.models.values() if key in (m.name.lower(), m.repo_id.lower())), None)


def _read_yaml(path: Path | None, packaged: str) -> dict:
    text = path.read_text() if path else resources.files("fr_agent.core.catalog").joinpath(packaged).read_text()
    where = str(path) if path else f"packaged {packaged}"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise CatalogError(f"broken catalog YAML in {where}{at}: {getattr(err, 'problem', err)}") from None
    if not isinstance(data, dict):
        raise CatalogError(f"broken catalog YAML in {where}: expected a mapping of names to entries")
    return data


def _entries(data: dict, model: type[BaseModel], where: str) -> dict:
    out = {}
    for key, raw in data.items():
        if not isinstance(raw, dict | None):
            raise CatalogError(
                f"invalid entry {key!r} in {where}: expected a mapping of fields, found {type(raw).__name__}"
            )
        try:
            out[str(key).lower()] = model.model_validate({"name": key, **(raw or {})})
        except ValidationError as err:
            raise CatalogError(f"invalid entry {key!r} in {where}: {first_error(err)}") from None
    return out


@cache
def load_catalog(directory: str | None = None) -> Catalog:
    directory = directory or os.environ.get("FR_AGENT_CATALOG")
    base = Path(directory) if directory else None
    if base is not None and not base.is_dir():
        raise CatalogError(f"catalog directory {base} does not exist")
    chips_path = base / "chips.yaml" if base and (base / "chips.yaml").exists() else None
    models_path = base / "models.yaml" if base and (base / "models.yaml").exists() else None
    chips = _entries(_read_yaml(chips_path, "chips.yaml"), ChipProfile, str(chips_path or "chips.yaml"))
    models = _entries(_read_yaml(models_path, "models.yaml"), ModelEntry, str(models_path or "models.yaml"))
    return Catalog(chips=chips, models=models)


__all__ = ["Catalog", "ChipProfile", "ModelEntry", "ModelFacts", "load_catalog", "UnknownModelError"]
