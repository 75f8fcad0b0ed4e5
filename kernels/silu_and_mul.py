"""SiLU-and-mul (the SwiGLU gate) as one Triton kernel (FlagGems style),
plus its torch reference.

    silu_and_mul(x)        x: (..., 2 * d)  ->  silu(x[..., :d]) * x[..., d:]   : (..., d)
    silu_and_mul(g, u)     g, u: (..., d)   ->  silu(g) * u                      : (..., d)

The two-tensor form is what an HF MLP has (gate_proj(x), up_proj(x)) and
saves the concatenation. Loaded by file path inside sandbox venvs: imports
only torch and triton. Leading dimensions are flattened into rows; the grid
is (rows, cdiv(d, BLOCK_N)). Math in float32, cast back.
"""

import torch
import triton
import triton.language as tl


@triton.jit
def silu_and_mul_kernel(
    Y,  # output, (M, d), contiguous
    A,  # gate rows: A + row * stride_a
    B,  # up rows:   B + row * stride_a
    D,  # d
    stride_a,  # elements between rows of A (and of B)
    BLOCK_N: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = cols < D
    a = tl.load(A + row * stride_a + cols, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
    b = tl.load(B + row * stride_a + cols, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
    y = a / (1.0 + tl.exp(-a)) * b
    tl.store(Y + row * D + cols, y.to(Y.dtype.element_ty), mask=mask)


def _launch(y: torch.Tensor, gate: torch.Tensor, up: torch.Tensor, stride: int, rows: int, d: int) -> torch.Tensor:
    """silu(gate) * up into y, rows of d; gate and up rows are `stride` apart, y's are d apart."""
    if rows and d:
        BLOCK_N = min(triton.next_power_of_2(d), 2048)
        silu_and_mul_kernel[(rows, triton.cdiv(d, BLOCK_N))](
            y, gate, up, d, stride, BLOCK_N=BLOCK_N, num_warps=4 if BLOCK_N <= 1024 else 8
        )
    return y


def silu_and_mul(x: torch.Tensor, up: torch.Tensor | None = None) -> torch.Tensor:
    """silu(x[..., :d]) * x[..., d:] (x.shape[-1] == 2 * d), or silu(x) * up."""
    if up is not None:
        if up.shape != x.shape:
            raise ValueError(f"silu_and_mul: gate {tuple(x.shape)} != up {tuple(up.shape)}")
        d = x.shape[-1]
        if x.is_contiguous() and up.is_contiguous() and up.dtype == x.dtype and x.numel():
            # the MLP's own call, once per layer and decode step: no view ops, the output is x's shape
            return _launch(torch.empty_like(x), x, up, d, x.numel() // d, d)
        g2 = x.contiguous().reshape(-1, d)
        u2 = up.to(x.dtype).contiguous().reshape(-1, d)
        return _launch(torch.empty_like(g2), g2, u2, d, g2.shape[0], d).reshape(x.shape)
    n2 = x.shape[-1]
    if n2 % 2 != 0:
        raise ValueError(f"silu_and_mul: last dim must be even, got {n2}")
    d = n2 // 2
    x2 = x.contiguous().reshape(-1, n2)
    y = torch.empty((x2.shape[0], d), dtype=x.dtype, device=x.device)
    return _launch(y, x2, x2[:, d:], n2, x2.shape[0], d).reshape(*x.shape[:-1], d)


def silu_and_mul_reference(x: torch.Tensor, up: torch.Tensor | None = None) -> torch.Tensor:
    """Torch reference: computed in float32, cast back to x's dtype."""
    if up is None:
        d = x.shape[-1] // 2
        x, up = x[..., :d], x[..., d:]
    y = torch.nn.functional.silu(x.float()) * up.float()
    return y.to(x.dtype)
