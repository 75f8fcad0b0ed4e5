"""SiLU-and-mul (the SwiGLU gate) as one Triton kernel (FlagGems style),
plus its torch reference.

    x: (..., 2 * d)  ->  silu(x[..., :d]) * x[..., d:]  : (..., d)

Loaded by file path inside sandbox venvs: imports only torch and triton.
Every leading dimension is flattened into rows; the grid is
(rows, cdiv(d, BLOCK_N)). Math is done in float32 and cast back.
Supports float32, float16 and bfloat16.
"""

import torch
import triton
import triton.language as tl


@triton.jit
def silu_and_mul_kernel(
    Y,  # output, (M, d), contiguous
    X,  # input, (M, 2 * d), contiguous
    D,  # d = half the input's last dim
    BLOCK_N: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    pid_n = tl.program_id(1)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = cols < D
    X += row * 2 * D
    Y += row * D
    a = tl.load(X + cols, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(X + D + cols, mask=mask, other=0.0).to(tl.float32)
    silu = a / (1.0 + tl.exp(-a))
    y = silu * b
    tl.store(Y + cols, y.to(Y.dtype.element_ty), mask=mask)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """silu(x[..., :d]) * x[..., d:] where x.shape[-1] == 2 * d."""
    n2 = x.shape[-1]
    if n2 % 2 != 0:
        raise ValueError(f"silu_and_mul: last dim must be even, got {n2}")
    d = n2 // 2
    x2 = x.contiguous().reshape(-1, n2)
    M = x2.shape[0]
    y = torch.empty((M, d), dtype=x.dtype, device=x.device)
    out_shape = tuple(x.shape[:-1]) + (d,)
    if M == 0 or d == 0:
        return y.reshape(out_shape)
    BLOCK_N = min(triton.next_power_of_2(d), 1024)
    grid = (M, triton.cdiv(d, BLOCK_N))
    silu_and_mul_kernel[grid](y, x2, d, BLOCK_N=BLOCK_N)
    return y.reshape(out_shape)


def silu_and_mul_reference(x: torch.Tensor) -> torch.Tensor:
    """Torch reference: computed in float32, cast back to x's dtype."""
    d = x.shape[-1] // 2
    xf = x.float()
    y = torch.nn.functional.silu(xf[..., :d]) * xf[..., d:]
    return y.to(x.dtype)
