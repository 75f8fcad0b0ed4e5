"""Softmax over the last dimension as one Triton kernel, plus its torch reference.

Loaded by file path inside sandbox venvs: imports only torch and triton.
One program per row. A row of up to MAX_FUSED elements is read once into
registers (read x, write y); longer rows (a vocabulary) take an online
max/sum pass and a normalising pass. Math in float32, cast back.
"""

import torch
import triton
import triton.language as tl

MAX_FUSED = 16384


def num_warps_for(block: int) -> int:
    return 4 if block <= 1024 else 8 if block <= 4096 else 16


@triton.jit
def softmax_kernel(Y, X, N, BLOCK_N: tl.constexpr, ONE_PASS: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    X += row * N
    Y += row * N
    if ONE_PASS:
        cols = tl.arange(0, BLOCK_N)
        mask = cols < N
        x = tl.load(X + cols, mask=mask, other=-float("inf"), eviction_policy="evict_first").to(tl.float32)
        e = tl.exp(x - tl.max(x, axis=0))
        tl.store(Y + cols, (e / tl.sum(e, axis=0)).to(Y.dtype.element_ty), mask=mask)
    else:
        m = tl.full([BLOCK_N], -float("inf"), dtype=tl.float32)
        s = tl.zeros([BLOCK_N], dtype=tl.float32)
        for off in range(0, N, BLOCK_N):
            cols = off + tl.arange(0, BLOCK_N)
            x = tl.load(X + cols, mask=cols < N, other=-float("inf")).to(tl.float32)
            m_new = tl.maximum(m, x)
            # a lane that has seen only -inf subtracts 0, not -inf: exp(-inf) == 0, never inf - inf
            m_safe = tl.where(m_new == -float("inf"), 0.0, m_new)
            s = s * tl.exp(m - m_safe) + tl.exp(x - m_safe)
            m = m_new
        row_max = tl.max(m, axis=0)
        total = tl.sum(s * tl.exp(m - row_max), axis=0)
        for off in range(0, N, BLOCK_N):
            cols = off + tl.arange(0, BLOCK_N)
            mask = cols < N
            x = tl.load(X + cols, mask=mask, other=-float("inf"), eviction_policy="evict_first").to(tl.float32)
            tl.store(Y + cols, (tl.exp(x - row_max) / total).to(Y.dtype.element_ty), mask=mask)


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """softmax(x, dim); the result has x's shape and dtype."""
    if dim not in (-1, x.dim() - 1):
        return softmax(x.transpose(dim, -1), -1).transpose(dim, -1)
    N = x.shape[-1]
    x2 = x.contiguous().reshape(-1, N)
    y = torch.empty_like(x2)
    if x2.shape[0] and N:
        one_pass = N <= MAX_FUSED
        BLOCK_N = triton.next_power_of_2(N) if one_pass else 4096
        softmax_kernel[(x2.shape[0],)](y, x2, N, BLOCK_N=BLOCK_N, ONE_PASS=one_pass, num_warps=num_warps_for(BLOCK_N))
    return y.reshape(x.shape)


def softmax_reference(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Torch reference: computed in float32, cast back to x's dtype."""
    return torch.softmax(x.float(), dim=dim).to(x.dtype)
