"""RMSNorm as one Triton kernel (FlagGems style), plus its torch reference.

    y = x / sqrt(mean(x**2, dim=-1) + eps) * weight

Loaded by file path inside sandbox venvs: imports only torch and triton.
Every leading dimension is flattened into rows; one program normalises one
row. A row of up to MAX_FUSED elements is read once and kept in registers
(one pass over memory: read x, write y); longer rows loop in BLOCK_N chunks
and read x twice. Math in float32; float32, float16 and bfloat16 supported.
"""

import torch
import triton
import triton.language as tl

MAX_FUSED = 16384  # elements of a row kept in registers


def num_warps_for(block: int) -> int:
    """Warps per program: enough threads for 16-byte loads across the row."""
    return 4 if block <= 1024 else 8 if block <= 4096 else 16


@triton.jit
def rms_norm_kernel(
    Y,  # output, (M, N), contiguous
    X,  # input, (M, N), contiguous
    W,  # weight, (N,)
    N,  # hidden size
    eps,
    BLOCK_N: tl.constexpr,
    ONE_PASS: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    X += row * N
    Y += row * N
    if ONE_PASS:
        cols = tl.arange(0, BLOCK_N)
        mask = cols < N
        w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)  # before the reduction: latency overlapped
        x = tl.load(X + cols, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
        rrms = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
        tl.store(Y + cols, (x * rrms * w).to(Y.dtype.element_ty), mask=mask)
    else:
        acc = tl.zeros([BLOCK_N], dtype=tl.float32)
        for off in range(0, N, BLOCK_N):
            cols = off + tl.arange(0, BLOCK_N)
            x = tl.load(X + cols, mask=cols < N, other=0.0).to(tl.float32)
            acc += x * x
        rrms = 1.0 / tl.sqrt(tl.sum(acc, axis=0) / N + eps)
        for off in range(0, N, BLOCK_N):
            cols = off + tl.arange(0, BLOCK_N)
            mask = cols < N
            x = tl.load(X + cols, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
            w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
            tl.store(Y + cols, (x * rrms * w).to(Y.dtype.element_ty), mask=mask)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """RMSNorm over the last dimension of ``x``; the result has x's shape and dtype."""
    if x.shape[-1] != weight.numel():
        raise ValueError(f"rms_norm: last dim of x ({x.shape[-1]}) != weight size ({weight.numel()})")
    N = x.shape[-1]
    x2 = x.contiguous().reshape(-1, N)
    w = weight.contiguous()
    M = x2.shape[0]
    y = torch.empty_like(x2)
    if M == 0 or N == 0:
        return y.reshape(x.shape)
    one_pass = N <= MAX_FUSED
    BLOCK_N = triton.next_power_of_2(N) if one_pass else 4096
    rms_norm_kernel[(M,)](y, x2, w, N, eps, BLOCK_N=BLOCK_N, ONE_PASS=one_pass, num_warps=num_warps_for(BLOCK_N))
    return y.reshape(x.shape)


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Torch reference: computed in float32, cast back to x's dtype."""
    xf = x.float()
    var = xf.pow(2).mean(dim=-1, keepdim=True)
    y = xf * torch.rsqrt(var + eps) * weight.float()
    return y.to(x.dtype)
