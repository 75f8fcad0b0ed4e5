"""The starting recipe's CPU KV cache: sized for the model, not vLLM's 90% of the host."""

from __future__ import annotations

from fr_agent.agents.analyse import CPU_KV_SEQUENCES, cpu_kv_cache_gib, starting_recipe
from fr_agent.core.catalog import load_catalog
from fr_agent.core.recipe import ModelRef
from fr_agent.sandboxes.base import host_memory_gib


def _tiny():
    return load_catalog().models["tiny-llama"].facts


def test_cpu_vllm_recipe_caps_the_kv_cache_at_what_the_model_needs():
    catalog, facts = load_catalog(), _tiny()
    recipe = starting_recipe(ModelRef(name="tiny-llama"), facts, catalog.chip("cpu"), False)
    assert recipe.env["VLLM_CPU_KVCACHE_SPACE"] == "1"  # 2 layers x 2 kv heads: a few MiB, floored at 1 GiB
    for engine, chip in (("hf", "cpu"), (None, "nvidia")):  # only vLLM on a CPU host reserves host memory
        other = starting_recipe(ModelRef(name="tiny-llama"), facts, catalog.chip(chip), False, engine=engine)
        assert "VLLM_CPU_KVCACHE_SPACE" not in other.env


def test_cpu_kv_cache_size_follows_the_model_and_stops_at_a_quarter_of_the_host():
    facts = _tiny().model_copy(
        update={"hidden_size": 4096, "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8}
    )
    per_token = 2 * 32 * 8 * 128 * 2  # K and V, layers, kv heads, head_dim, bf16 bytes
    want = -(-per_token * 4096 * CPU_KV_SEQUENCES // 2**30)
    host_quarter = int(host_memory_gib() / 4)
    assert cpu_kv_cache_gib(facts, 4096, "bfloat16") == max(1, min(want, host_quarter))
    assert cpu_kv_cache_gib(facts, 4096, "float32") >= cpu_kv_cache_gib(facts, 4096, "bfloat16")
    assert cpu_kv_cache_gib(facts, 10**7, "float32") == max(1, host_quarter)
