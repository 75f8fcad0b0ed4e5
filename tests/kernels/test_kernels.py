"""Triton kernels in kernels/ vs their torch references (interpreter mode, see
conftest.py). Kernels are loaded by file path, the way the sandbox loads them.
Every op x dtype, shapes of several ranks, non-power-of-2 widths, and each
kernel's looped path (rows longer than MAX_FUSED, patched down to keep the
interpreter fast).
"""

from __future__ import annotations

import ast
import importlib.util
import os

import pytest
import torch

from fr_agent.kernels import KERNELS, kernel_path

# dtype -> (rtol, atol): the same table as sandboxes/probes/op_check.py.
# bfloat16 needs its full FlagGems tolerance here: the Triton interpreter
# casts float32 -> bfloat16 by truncation, not round-to-nearest, so the kernel
# can be 1 ulp (2**-7 relative) off a torch reference.
TOL = {
    torch.float32: (1.3e-6, 1e-5),
    torch.float16: (1e-3, 2e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}
DTYPES = list(TOL)
DTYPE_IDS = ["fp32", "fp16", "bf16"]
OPS = ["rms_norm", "fused_add_rms_norm", "silu_and_mul", "rotary_embedding", "softmax", "layer_norm"]


def _load(op: str):
    spec = importlib.util.spec_from_file_location(f"_test_kernel_{op}", kernel_path(op))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def mods():
    return {op: _load(op) for op in OPS}


def _assert_close(got, want, dtype):
    for g, w in zip(got, want) if isinstance(got, tuple) else [(got, want)]:
        assert g.dtype == w.dtype == dtype
        assert g.shape == w.shape
        rtol, atol = TOL[dtype]
        torch.testing.assert_close(g, w, rtol=rtol, atol=atol)


def test_interpreter_mode_is_on():
    assert os.environ.get("TRITON_INTERPRET") == "1"


def test_registry():
    assert sorted(KERNELS) == sorted(OPS)
    for op in KERNELS:
        p = kernel_path(op)
        assert p.is_absolute() and p.is_file() and p.name == f"{op}.py"
    with pytest.raises(KeyError):
        kernel_path("no_such_op")


@pytest.mark.parametrize("op", sorted(KERNELS))
def test_kernel_files_import_only_torch_and_triton(op):
    tree = ast.parse(kernel_path(op).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add((node.module or "").split(".")[0])
    assert roots <= {"torch", "triton", "__future__"}, roots
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert {op, f"{op}_reference"} <= names


NORM_SHAPES = [(1, 8), (3, 5, 64), (2, 3, 4, 48), (7, 100)]


def _inputs(op: str, shape, dtype):
    torch.manual_seed(0)
    n = shape[-1]
    x = torch.randn(shape, dtype=dtype)
    w = (1.0 + 0.1 * torch.randn(n)).to(dtype)
    if op == "rms_norm":
        return (x, w, 1e-6)
    if op == "fused_add_rms_norm":
        return (x, torch.randn(shape, dtype=dtype), w, 1e-6)
    if op == "layer_norm":
        return (x + 0.5, w, (0.1 * torch.randn(n)).to(dtype), 1e-5)
    if op == "softmax":
        return (3 * x,)
    if op == "silu_and_mul":
        return (x,) if n % 2 == 0 else (x, torch.randn(shape, dtype=dtype))
    raise KeyError(op)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", NORM_SHAPES, ids=str)
@pytest.mark.parametrize("op", ["rms_norm", "fused_add_rms_norm", "layer_norm", "softmax", "silu_and_mul"])
def test_row_ops(mods, op, shape, dtype):
    args = _inputs(op, shape, dtype)
    mod = mods[op]
    got = getattr(mod, op)(*args)
    _assert_close(got, getattr(mod, f"{op}_reference")(*args), dtype)


@pytest.mark.parametrize("op", ["rms_norm", "fused_add_rms_norm", "layer_norm", "softmax"])
def test_looped_rows(mods, op, monkeypatch):
    """Rows longer than MAX_FUSED take the looped path (the wide-row case, e.g. a vocabulary)."""
    mod = mods[op]
    monkeypatch.setattr(mod, "MAX_FUSED", 64)
    for dtype in (torch.float32, torch.bfloat16):
        args = _inputs(op, (3, 300), dtype)
        _assert_close(getattr(mod, op)(*args), getattr(mod, f"{op}_reference")(*args), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_rotary_embedding_hf_layout(mods, dtype):
    """transformers' layout: q/k (batch, heads, seq, dim) views of a (batch, seq, heads, dim) projection,
    cos/sin (batch, seq, dim) unsqueezed at dim 1; grouped-query k has fewer heads."""
    mod = mods["rotary_embedding"]
    torch.manual_seed(0)
    q = torch.randn(2, 7, 4, 16, dtype=dtype).transpose(1, 2)
    k = torch.randn(2, 7, 2, 16, dtype=dtype).transpose(1, 2)
    pos = torch.arange(7, dtype=torch.float32)
    freqs = torch.outer(pos, 1.0 / 10000 ** (torch.arange(0, 16, 2) / 16))
    emb = torch.cat((freqs, freqs), dim=-1).expand(2, 7, 16)
    cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)
    got = mod.rotary_embedding(q, k, cos, sin, 1)
    want = mod.rotary_embedding_reference(q, k, cos, sin, 1)
    _assert_close(got, want, dtype)
    assert got[0].stride() == q.stride()  # written in the input's layout, nothing copied


def test_rotary_embedding_matches_transformers_formula(mods):
    mod = mods["rotary_embedding"]
    torch.manual_seed(1)
    q, k = torch.randn(1, 5, 3, 8, dtype=torch.float64), torch.randn(1, 5, 1, 8, dtype=torch.float64)
    cos, sin = torch.randn(5, 8, dtype=torch.float64), torch.randn(5, 8, dtype=torch.float64)

    def rotate_half(x):
        return torch.cat((-x[..., 4:], x[..., :4]), dim=-1)

    c, s = cos[:, None, :], sin[:, None, :]
    got = mod.rotary_embedding_reference(q.float(), k.float(), cos.float(), sin.float(), 1)
    torch.testing.assert_close(got[0].double(), q * c + rotate_half(q) * s, rtol=1e-5, atol=1e-5)
    got = mod.rotary_embedding(q.float(), k.float(), cos.float(), sin.float(), 1)
    torch.testing.assert_close(got[1].double(), k * c + rotate_half(k) * s, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", ["bshd", "bhsd-view", "per-head-cos", "3d", "heads-outermost"])
def test_rotary_embedding_rows_span_several_tiles(mods, layout, monkeypatch):
    """q and k rows split over several programs, the last tile partial and k's head count not q's; rows
    follow x's memory order whatever the view, and cos/sin may vary over heads too."""
    mod = mods["rotary_embedding"]
    monkeypatch.setattr(mod, "TILE", 32)  # 4 rows per tile at head_dim 16: 30 q rows -> 8 tiles, 10 k rows -> 3
    torch.manual_seed(0)
    B, S, HQ, HK, D = 2, 5, 3, 1, 16
    q, k = torch.randn(B, S, HQ, D), torch.randn(B, S, HK, D)
    cos, sin, dim = torch.randn(S, D), torch.randn(S, D), 1
    if layout == "bhsd-view":
        q, k, dim = q.transpose(1, 2), k.transpose(1, 2), 0
    elif layout == "per-head-cos":
        cos, sin, dim = torch.randn(B, S, HQ, D), torch.randn(B, S, HQ, D), None
        k = torch.randn(B, S, HQ, D)
    elif layout == "3d":
        q, k = q[0], k[0]
    elif layout == "heads-outermost":
        q, k = (t.permute(2, 0, 1, 3).contiguous().permute(1, 2, 0, 3) for t in (q, k))
    got = mod.rotary_embedding(q, k, cos, sin, dim)
    want = mod.rotary_embedding_reference(q, k, cos, sin, dim)
    _assert_close(got, want, torch.float32)
    assert got[0].shape == q.shape and got[1].shape == k.shape


def test_references_match_float64_math(mods):
    torch.manual_seed(0)
    x = torch.randn(3, 32, dtype=torch.float64)
    w = torch.randn(32, dtype=torch.float64)
    b = torch.randn(32, dtype=torch.float64)
    rms = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w
    torch.testing.assert_close(
        mods["rms_norm"].rms_norm_reference(x.float(), w.float()).double(), rms, rtol=1e-5, atol=1e-5
    )
    ln = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5) * w + b
    torch.testing.assert_close(
        mods["layer_norm"].layer_norm_reference(x.float(), w.float(), b.float()).double(), ln, rtol=1e-5, atol=1e-5
    )
    y, h = mods["fused_add_rms_norm"].fused_add_rms_norm_reference(x.float(), x.float(), w.float())
    torch.testing.assert_close(h.double(), 2 * x, rtol=1e-6, atol=1e-6)
    y2 = torch.randn(3, 64, dtype=torch.float64)
    want = y2[:, :32] * torch.sigmoid(y2[:, :32]) * y2[:, 32:]
    torch.testing.assert_close(
        mods["silu_and_mul"].silu_and_mul_reference(y2.float()).double(), want, rtol=1e-5, atol=1e-5
    )


def test_rms_norm_uses_eps_and_weight(mods):
    mod = mods["rms_norm"]
    x = torch.zeros(2, 16)
    x[0, 0] = 1.0
    w = torch.full((16,), 2.0)
    got = mod.rms_norm(x, w, 0.5)
    _assert_close(got, mod.rms_norm_reference(x, w, 0.5), torch.float32)
    assert torch.all(got[1] == 0)  # all-zero row: 0 * rsqrt(eps), no NaN


def test_softmax_masked_rows_and_other_dims(mods):
    mod = mods["softmax"]
    x = torch.randn(4, 40)
    x[:, 10:] = -float("inf")  # attention-style masking
    got = mod.softmax(x)
    assert torch.isfinite(got).all() and torch.all(got[:, 10:] == 0)
    _assert_close(got, mod.softmax_reference(x), torch.float32)
    y = torch.randn(5, 6, 7)
    _assert_close(mod.softmax(y, dim=1), mod.softmax_reference(y, dim=1), torch.float32)


def test_empty_and_noncontiguous(mods):
    assert mods["rms_norm"].rms_norm(torch.randn(0, 16), torch.ones(16)).shape == (0, 16)
    assert mods["silu_and_mul"].silu_and_mul(torch.randn(0, 16)).shape == (0, 8)
    assert mods["softmax"].softmax(torch.randn(0, 16)).shape == (0, 16)
    torch.manual_seed(0)
    xt = torch.randn(32, 6).t()  # (6, 32), not contiguous
    assert not xt.is_contiguous()
    w = torch.randn(32)
    for op, args in [("silu_and_mul", (xt,)), ("rms_norm", (xt, w)), ("layer_norm", (xt, w, None)), ("softmax", (xt,))]:
        _assert_close(getattr(mods[op], op)(*args), getattr(mods[op], f"{op}_reference")(*args), torch.float32)


def test_bad_shapes_raise(mods):
    with pytest.raises(ValueError):
        mods["rms_norm"].rms_norm(torch.randn(2, 16), torch.ones(8))
    with pytest.raises(ValueError):
        mods["silu_and_mul"].silu_and_mul(torch.randn(2, 15))
    with pytest.raises(ValueError):
        mods["fused_add_rms_norm"].fused_add_rms_norm(torch.randn(2, 16), torch.randn(2, 8), torch.ones(16))
    with pytest.raises(ValueError):
        mods["layer_norm"].layer_norm(torch.randn(2, 16), torch.ones(8))
    with pytest.raises(ValueError):
        mods["rotary_embedding"].rotary_embedding(
            torch.randn(1, 2, 3, 8), torch.randn(1, 2, 3, 6), torch.randn(3, 8), torch.randn(3, 8)
        )
    rope = mods["rotary_embedding"].rotary_embedding
    q, k, cos = torch.randn(1, 2, 3, 8), torch.randn(1, 2, 1, 8), torch.randn(2, 8)
    for bad in [
        lambda: rope(q, k, cos, torch.randn(3, 8), 1),  # sin's shape is not cos's
        lambda: rope(q, k, torch.randn(5, 8), torch.randn(5, 8), 1),  # 5 positions for 2 tokens
        lambda: rope(q, k, cos, cos, 3),  # unsqueeze_dim past cos's dims
        lambda: rope(q, k, torch.randn(1, 1, 1, 2, 8), torch.randn(1, 1, 1, 2, 8)),
    ]:  # more dims than q
        with pytest.raises(ValueError):
            bad()
    rope(q, k, cos, cos, 1)  # the same call with a broadcastable cos is fine


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_silu_and_mul_gate_and_up_tensors(mods, dtype):
    """The MLP's form, silu(gate) * up: contiguous (the per-layer fast path) and strided views."""
    mod = mods["silu_and_mul"]
    torch.manual_seed(0)
    gate, up = torch.randn(2, 3, 40, dtype=dtype), torch.randn(2, 3, 40, dtype=dtype)
    got = mod.silu_and_mul(gate, up)
    assert got.shape == gate.shape
    _assert_close(got, mod.silu_and_mul_reference(gate, up), dtype)
    both = torch.randn(6, 80, dtype=dtype)
    _assert_close(
        mod.silu_and_mul(both[:, :40], both[:, 40:]), mod.silu_and_mul_reference(both[:, :40], both[:, 40:]), dtype
    )


@pytest.mark.parametrize("cos_batch", [1, 2])
@pytest.mark.parametrize("seq", [1, 5])
def test_rotary_embedding_hf_call_keeps_layout_and_matches_broadcast_forms(mods, cos_batch, seq):
    """transformers' call (q/k (batch, heads, seq, dim) views, cos/sin (batch or 1, seq, dim), unsqueeze_dim=1,
    decode steps included) writes in the inputs' layout and equals the pre-unsqueezed call bit for bit."""
    mod = mods["rotary_embedding"]
    torch.manual_seed(0)
    q = torch.randn(2, seq, 4, 16).transpose(1, 2)
    k = torch.randn(2, seq, 2, 16).transpose(1, 2)
    emb = torch.randn(cos_batch, seq, 16)
    cos, sin = emb.cos(), emb.sin()
    fast = mod.rotary_embedding(q, k, cos, sin, 1)
    general = mod.rotary_embedding(q, k, cos.unsqueeze(1), sin.unsqueeze(1))
    for a, b, want in zip(fast, general, mod.rotary_embedding_reference(q, k, cos, sin, 1)):
        _assert_close(a, want, torch.float32)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert fast[0].stride() == q.stride() and fast[1].stride() == k.stride()
