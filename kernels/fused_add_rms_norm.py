"""Residual add fused into RMSNorm (vLLM's fused_add_rms_norm), plus its torch reference.

    h = x + residual
    y = h / sqrt(mean(h**2, dim=-1) + eps) * weight        ->  returns (y, h)

Loaded by file path inside sandbox venvs: imports only torch and triton.
One program per row; a row of up to MAX_FUSED elements stays in registers, so
memory sees exactly: read x, read residual, write h, write y. h is rounded to
the input dtype before it is normalised, as the unfused torch code does.
"""

import torch
import triton
import triton.language as tl

MAX_FUSED = 16384


def num_warps_for(block: int) -> int:
    return 4 if block <= 1024 else 8 if block <= 4096 else 16


@triton.jit
def fused_add_rms_norm_kernel(
    Y,  # normalised output, (M, N)
    H,  # x + residual, (M, N)
    X,  # input, (M, N)
    R,  # residual, (M, N)
    W,  # weight, (N,)
    N,
    eps,
    BLOCK_N: tl.constexpr,
    ONE_PASS: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    X += row * N
    R += row * N
    H += row * N
    Y += row * N
    if ONE_PASS:
        cols = tl.arange(0, BLOCK_N)
        mask = cols < N
        w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)  # before the reduction: latency overlapped
        x = tl.load(X + cols, mask=mask, other=0.0, eviction_policy="evict_first")
        r = tl.load(R + cols, mask=mask, other=0.0, eviction_policy="evict_first")
        h = (x.to(tl.float32) + r.to(tl.float32)).to(H.dtype.element_ty)
        tl.store(H + cols, h, mask=mask)
        hf = h.to(tl.float32)
        rrms = 1.0 / tl.sqrt(tl.sum(hf * hf, axis=0) / N + eps)
        tl.store(Y + cols, (hf * rrms * w).to(Y.dtype.element_ty), mask=mask)
    else:
        acc = tl.zeros([BLOCK_N], dtype=tl.float32)
        for off in range(0, N, BLOCK_N):
            cols = off + tl.arange(0, BLOCK_N)
            mask = cols < N
            x = tl.load(X + cols, mask=mask, other=0.0)
            r = tl.load(R + cols, mask=mask, other=0.0)
            h = (x.to(tl.float32) + r.to(tl.float32)).to(H.dtype.element_ty)
            tl.store(H + cols, h, mask=mask)
            hf = h.to(tl.float32)
            acc += hf * hf
        rrms = 1.0 / tl.sqrt(tl.sum(acc, axis=0) / N + eps)
        for off in range(0, N, BLOCK_N):
            cols = off + tl.arange(0, BLOCK_N)
            mask = cols < N
            hf = tl.load(H + cols, mask=mask, other=0.0).to(tl.float32)
            w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
            tl.store(Y + cols, (hf * rrms * w).to(Y.dtype.element_ty), mask=mask)


def fused_add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rms_norm(x + residual), x + residual), both with x's shape and dtype."""
    if x.shape != residual.shape:
        raise ValueError(f"fused_add_rms_norm: x {tuple(x.shape)} != residual {tuple(residual.shape)}")
    if x.shape[-1] != weight.numel():
        raise ValueError(f"fused_add_rms_norm: last dim of x ({x.shape[-1]}) != weight size ({weight.numel()})")
    N = x.shape[-1]
    x2 = x.contiguous().reshape(-1, N)
    r2 = residual.to(x.dtype).contiguous().reshape(-1, N)
    M = x2.shape[0]
    y = torch.empty_like(x2)
    h = torch.empty_like(x2)
    if M and N:
        one_pass = N <= MAX_FUSED
        BLOCK_N = triton.next_power_of_2(N) if one_pass else 4096
        fused_add_rms_norm_kernel[(M,)](
            y,
            h,
            x2,
            r2,
            weight.contiguous(),
            N,
            eps,
            BLOCK_N=BLOCK_N,
            ONE_PASS=one_pass,
            num_warps=num_warps_for(BLOCK_N),
        )
    return y.reshape(x.shape), h.reshape(x.shape)


def fused_add_rms_norm_reference(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch reference: the add rounded to x's dtype, the norm in float32."""
    h = (x.float() + residual.float()).to(x.dtype)
    hf = h.float()
    y = hf * torch.rsqrt(hf.pow(2).mean(dim=-1, keepdim=True) + eps) * weight.float()
    return y.to(x.dtype), h
