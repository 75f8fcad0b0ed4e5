"""Triton kernels in kernels/ vs their torch references (interpreter mode, see
conftest.py). Kernels are loaded by file path, the way the sandbox loads them.
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


def _load(op: str):
    spec = importlib.util.spec_from_file_location(f"_test_kernel_{op}", kernel_path(op))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def rms_mod():
    return _load("rms_norm")


@pytest.fixture(scope="module")
def silu_mod():
    return _load("silu_and_mul")


def _assert_close(got, want, dtype):
    assert got.dtype == want.dtype == dtype
    assert got.shape == want.shape
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol)


def test_interpreter_mode_is_on():
    assert os.environ.get("TRITON_INTERPRET") == "1"


def test_registry():
    assert KERNELS == {"rms_norm": "rms_norm.py", "silu_and_mul": "silu_and_mul.py"}
    for op in KERNELS:
        p = kernel_path(op)
        assert p.is_absolute() and p.is_file()
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


# Shapes: leading dims of any rank, non-power-of-2 widths, rms_norm widths past
# its 4096 block (looped), silu_and_mul widths past its 1024 block (2-D grid).
RMS_SHAPES = [(1, 8), (3, 5, 64), (2, 3, 4, 48), (7, 100), (2, 5000)]
SILU_SHAPES = [(1, 8), (3, 5, 128), (2, 3, 4, 96), (7, 200), (2, 3000)]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", RMS_SHAPES, ids=str)
def test_rms_norm(rms_mod, shape, dtype):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=dtype)
    w = (1.0 + 0.1 * torch.randn(shape[-1])).to(dtype)
    got = rms_mod.rms_norm(x, w, 1e-6)
    _assert_close(got, rms_mod.rms_norm_reference(x, w, 1e-6), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", SILU_SHAPES, ids=str)
def test_silu_and_mul(silu_mod, shape, dtype):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=dtype)
    got = silu_mod.silu_and_mul(x)
    assert got.shape == (*shape[:-1], shape[-1] // 2)
    _assert_close(got, silu_mod.silu_and_mul_reference(x), dtype)


def test_references_match_float64_math(rms_mod, silu_mod):
    torch.manual_seed(0)
    x = torch.randn(3, 32, dtype=torch.float64)
    w = torch.randn(32, dtype=torch.float64)
    want = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w
    got = rms_mod.rms_norm_reference(x.float(), w.float(), 1e-6)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    y = torch.randn(3, 64, dtype=torch.float64)
    want = y[:, :32] * torch.sigmoid(y[:, :32]) * y[:, 32:]
    got = silu_mod.silu_and_mul_reference(y.float())
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_rms_norm_uses_eps_and_weight(rms_mod):
    x = torch.zeros(2, 16)
    x[0, 0] = 1.0
    w = torch.full((16,), 2.0)
    got = rms_mod.rms_norm(x, w, 0.5)
    _assert_close(got, rms_mod.rms_norm_reference(x, w, 0.5), torch.float32)
    assert torch.all(got[1] == 0)  # all-zero row: 0 * rsqrt(eps), no NaN


def test_empty_and_noncontiguous(rms_mod, silu_mod):
    x = torch.randn(0, 16)
    assert rms_mod.rms_norm(x, torch.ones(16), 1e-6).shape == (0, 16)
    assert silu_mod.silu_and_mul(torch.randn(0, 16)).shape == (0, 8)
    torch.manual_seed(0)
    xt = torch.randn(32, 6).t()  # (6, 32), not contiguous
    assert not xt.is_contiguous()
    _assert_close(silu_mod.silu_and_mul(xt), silu_mod.silu_and_mul_reference(xt), torch.float32)
    w = torch.randn(32)
    _assert_close(rms_mod.rms_norm(xt, w, 1e-6), rms_mod.rms_norm_reference(xt, w, 1e-6),
                  torch.float32)


def test_bad_shapes_raise(rms_mod, silu_mod):
    with pytest.raises(ValueError):
        rms_mod.rms_norm(torch.randn(2, 16), torch.ones(8), 1e-6)
    with pytest.raises(ValueError):
        silu_mod.silu_and_mul(torch.randn(2, 15))
