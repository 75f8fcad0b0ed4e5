"""The operator layer (kernels/registry.py) on a real transformers Llama, CPU, Triton interpreter mode:
our kernels swapped in, the torch reference, dtype casts, profiler labels, undo."""

from __future__ import annotations

import sys

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from fr_agent.kernels import registry


@pytest.fixture(scope="module")
def llama():
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=32,
    )
    model = LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 64, (2, 7))
    with torch.no_grad():
        native = model(ids).logits
    return model, ids, native


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def test_kernels_swap_into_the_model_and_undo_restores_it(llama):
    model, ids, native = llama
    modeling = sys.modules[type(model).__module__]
    original_rope = modeling.apply_rotary_pos_emb
    applied = registry.apply({"backend": "kernels", "kernels": None}, model)
    assert applied.summary()["kernels"] == {
        "rms_norm": "kernel",
        "rotary_embedding": "kernel",
        "silu_and_mul": "kernel",
    }  # no LayerNorm or eager softmax here
    assert modeling.apply_rotary_pos_emb is not original_rope
    torch.testing.assert_close(logits(model, ids), native, rtol=1e-4, atol=1e-4)
    applied.undo()
    assert modeling.apply_rotary_pos_emb is original_rope
    assert all("forward" not in vars(m) for m in model.modules())
    torch.testing.assert_close(logits(model, ids), native, rtol=0, atol=0)


def test_reference_and_cast_strategies(llama):
    model, ids, native = llama
    plan = {
        "backend": "torch",
        "kernels": ["rms_norm", "silu_and_mul"],
        "reference": ["rms_norm"],
        "cast": {"silu_and_mul": "bfloat16"},
    }
    applied = registry.apply(plan, model)
    try:
        assert applied.kernels == {"rms_norm": "reference", "silu_and_mul": "cast:bfloat16"}
        got = logits(model, ids)
        assert got.dtype == torch.float32  # cast back
        torch.testing.assert_close(got, native, rtol=0.05, atol=0.05)  # bf16 activation product
        assert not torch.equal(got, native)
    finally:
        applied.undo()


def test_disabled_ops_are_not_swapped_and_unknown_hooks_fail(llama):
    model, _, _ = llama
    assert registry.kernel_ops({"backend": "kernels", "disabled": ["rms_norm"]}) == [
        "silu_and_mul",
        "rotary_embedding",
        "layer_norm",
        "softmax",
    ]
    assert registry.kernel_ops({"backend": "flaggems"}) == []
    with pytest.raises(ValueError, match="no model hook"):
        registry.patch_model(model, ["fused_add_rms_norm"])


def test_labels_time_each_swapped_block_in_the_profiler(llama):
    model, ids, _ = llama
    applied = registry.patch_model(model, ["rms_norm", "silu_and_mul", "rotary_embedding"], native=True, label=True)
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            logits(model, ids)
        counts = {e.key: e.count for e in prof.key_averages() if e.key.startswith("fr::")}
        assert counts == {"fr::rms_norm": 5, "fr::silu_and_mul": 2, "fr::rotary_embedding": 2}
    finally:
        applied.undo()


def test_layer_norm_modules():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 24), torch.nn.LayerNorm(24))
    x = torch.randn(3, 16)
    want = net(x)
    applied = registry.patch_model(net, ["layer_norm"])
    assert applied.kernels == {"layer_norm": "kernel"}
    torch.testing.assert_close(net(x), want, rtol=1e-5, atol=1e-5)


def test_flaggems_backend_needs_flag_gems():
    try:
        import flag_gems  # noqa: F401
    except Exception:
        with pytest.raises(Exception):
            registry.apply({"backend": "flaggems", "include": ["add"]})
    else:
        pytest.skip("flag_gems is importable here")


def test_groups_and_caches(tmp_path, monkeypatch):
    assert [registry.group_of(op) for op in ("mm", "softmax", "index_select", "to_copy", "rsqrt")] == [
        "compute",
        "reduce",
        "index",
        "memory",
        "math",
    ]
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "t"))
    monkeypatch.setenv("FLAGGEMS_CACHE_DIR", str(tmp_path / "f"))
    (tmp_path / "t" / "x").mkdir(parents=True)
    (tmp_path / "f").mkdir()
    assert sorted(registry.clear_caches()) == sorted([str(tmp_path / "t"), str(tmp_path / "f")])
    assert not (tmp_path / "t").exists() and not (tmp_path / "f").exists()
