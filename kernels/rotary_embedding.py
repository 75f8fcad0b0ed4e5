"""Rotary position embedding (the Llama / HF "rotate_half" form) for q and k in one
Triton launch, plus its torch reference.

    q_out = q * cos + rotate_half(q) * sin,   rotate_half(x) = cat(-x[..., h:], x[..., :h])
    (k likewise)

Same contract as transformers' ``apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim)``:
``cos``/``sin`` (after ``unsqueeze(unsqueeze_dim)`` when it is given) broadcast against q
and k. q and k may be strided views (HF passes (batch, heads, seq, head_dim) views of a
(batch, seq, heads, head_dim) projection): nothing is copied, the outputs get the inputs'
layout. The launch is set up from shapes and strides alone, without torch view ops, because the
host time per call matters at decode (once per layer and token). Loaded by file path inside
sandbox venvs: imports only torch and triton.
Each program rotates a tile of BLOCK_R (token, head) rows, taken in memory order, so q's and
k's programs move equal bytes whatever their head counts; cos/sin rows are re-read per head
from cache. Math in float32.
"""

import torch
import triton
import triton.language as tl

TILE = 1024  # elements per half-row tile: 8 per thread at 4 warps, one 16-byte load in bf16


@triton.jit
def _rope_rows(
    O,
    X,
    C,
    S,
    blk,
    nrows,
    nb,
    nh,
    sxa,
    sxb,
    sxh,
    soa,
    sob,
    soh,
    sca,
    scb,
    sch,
    ssa,
    ssb,
    ssh,
    HALF,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Rows blk*BLOCK_R ... of one tensor; row r is (a, b, h) = (r // nh // nb, r // nh % nb, r % nh)."""
    r = blk * BLOCK_R + tl.arange(0, BLOCK_R)  # int32: the wrapper keeps rows < 2**31
    h = (r % nh).to(tl.int64)
    ia = (r // nh // nb).to(tl.int64)
    ib = (r // nh % nb).to(tl.int64)
    d = tl.arange(0, BLOCK_D)
    mask = (r < nrows)[:, None] & (d < HALF)[None, :]
    xo = (ia * sxa + ib * sxb + h * sxh)[:, None] + d[None, :]
    oo = (ia * soa + ib * sob + h * soh)[:, None] + d[None, :]
    co = (ia * sca + ib * scb + h * sch)[:, None] + d[None, :]
    so = (ia * ssa + ib * ssb + h * ssh)[:, None] + d[None, :]
    x1 = tl.load(X + xo, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
    x2 = tl.load(X + xo + HALF, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
    c1 = tl.load(C + co, mask=mask, other=0.0, eviction_policy="evict_last").to(tl.float32)
    c2 = tl.load(C + co + HALF, mask=mask, other=0.0, eviction_policy="evict_last").to(tl.float32)
    s1 = tl.load(S + so, mask=mask, other=0.0, eviction_policy="evict_last").to(tl.float32)
    s2 = tl.load(S + so + HALF, mask=mask, other=0.0, eviction_policy="evict_last").to(tl.float32)
    tl.store(O + oo, (x1 * c1 - x2 * s1).to(O.dtype.element_ty), mask=mask)
    tl.store(O + oo + HALF, (x2 * c2 + x1 * s2).to(O.dtype.element_ty), mask=mask)


@triton.jit
def rotary_embedding_kernel(
    QO,
    Q,
    KO,
    K,
    C,
    S,
    q_blocks,
    q_rows,
    qnb,
    qnh,
    k_rows,
    knb,
    knh,
    sqa,
    sqb,
    sqh,
    soqa,
    soqb,
    soqh,
    sqca,
    sqcb,
    sqch,
    sqsa,
    sqsb,
    sqsh,
    ska,
    skb,
    skh,
    soka,
    sokb,
    sokh,
    skca,
    skcb,
    skch,
    sksa,
    sksb,
    sksh,
    HALF,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    if pid < q_blocks:
        _rope_rows(
            QO,
            Q,
            C,
            S,
            pid,
            q_rows,
            qnb,
            qnh,
            sqa,
            sqb,
            sqh,
            soqa,
            soqb,
            soqh,
            sqca,
            sqcb,
            sqch,
            sqsa,
            sqsb,
            sqsh,
            HALF,
            BLOCK_R,
            BLOCK_D,
        )
    else:
        _rope_rows(
            KO,
            K,
            C,
            S,
            pid - q_blocks,
            k_rows,
            knb,
            knh,
            ska,
            skb,
            skh,
            soka,
            sokb,
            sokh,
            skca,
            skcb,
            skch,
            sksa,
            sksb,
            sksh,
            HALF,
            BLOCK_R,
            BLOCK_D,
        )


def _bcast_strides(c_shape: tuple, c_strides: tuple, shape: list[int]) -> list[int]:
    """A cos/sin tensor's strides broadcast (aligned right) to the 4-D ``shape``; 0 where it repeats."""
    strides, pad = [0, 0, 0, 0], 4 - len(c_shape)
    for j, (n, st) in enumerate(zip(c_shape, c_strides)):
        if n != 1:
            if n != shape[j + pad]:
                raise ValueError(f"rotary_embedding: cos/sin {c_shape} do not broadcast to {tuple(shape)}")
            strides[j + pad] = st
    return strides


def _geometry(x: torch.Tensor, cs_shape: tuple, cos_strides: tuple, sin_strides: tuple):
    """(out, x, (rows, nb, nh), strides) for one of q/k, from shapes and strides alone: no view ops, whose
    host time (tens of us per call) would exceed the kernel's at decode. The three leading dims are taken
    outermost-first in x's memory order, so a program's rows are neighbours in memory."""
    if not 1 <= x.dim() <= 4 or len(cs_shape) > x.dim():
        raise ValueError(
            f"rotary_embedding: q/k need 1 to 4 dims and at least as many as cos/sin {cs_shape}, got {tuple(x.shape)}"
        )
    x = x if x.stride(-1) == 1 else x.contiguous()
    out = torch.empty_like(x)  # x's layout when x is dense, else contiguous
    pad = [1] * (4 - x.dim())
    shape = pad + list(x.shape)
    xs, os_ = [0] * len(pad) + list(x.stride()), [0] * len(pad) + list(out.stride())
    cs, ss = _bcast_strides(cs_shape, cos_strides, shape), _bcast_strides(cs_shape, sin_strides, shape)
    a, b, h = sorted(range(3), key=lambda i: (shape[i] > 1, -xs[i]))
    strides = [xs[a], xs[b], xs[h], os_[a], os_[b], os_[h], cs[a], cs[b], cs[h], ss[a], ss[b], ss[h]]
    return out, x, (shape[a] * shape[b] * shape[h], shape[b], shape[h]), strides


def rotary_embedding(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, unsqueeze_dim: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate q and k; returns (q_embed, k_embed) with q's and k's shapes, dtypes and (dense) layouts."""
    D = q.shape[-1]
    if D % 2 or k.shape[-1] != D or cos.shape[-1] != D or sin.shape != cos.shape:
        raise ValueError(
            f"rotary_embedding: head dims must match and be even, cos and sin alike: q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, cos {tuple(cos.shape)}, sin {tuple(sin.shape)}"
        )
    cos = cos if cos.stride(-1) == 1 else cos.contiguous()
    sin = sin if sin.stride(-1) == 1 else sin.contiguous()
    shape, cst, sst = tuple(cos.shape), cos.stride(), sin.stride()
    if unsqueeze_dim is not None:  # as cos.unsqueeze(unsqueeze_dim), on the shape alone
        d = unsqueeze_dim + len(shape) + 1 if unsqueeze_dim < 0 else unsqueeze_dim
        if not 0 <= d <= len(shape):
            raise ValueError(f"rotary_embedding: unsqueeze_dim {unsqueeze_dim} out of range for cos {shape}")
        shape, cst, sst = shape[:d] + (1,) + shape[d:], cst[:d] + (0,) + cst[d:], sst[:d] + (0,) + sst[d:]
    qo, qx, q_dims, qstr = _geometry(q, shape, cst, sst)
    ko, kx, k_dims, kstr = _geometry(k, shape, cst, sst)
    half = D // 2
    if max(q_dims[0], k_dims[0]) >= 2**31:
        raise ValueError(f"rotary_embedding: {max(q_dims[0], k_dims[0])} rows of heads, at most 2**31 - 1")
    block_d = triton.next_power_of_2(half)
    block_r = max(1, TILE // block_d)
    q_blocks, k_blocks = triton.cdiv(q_dims[0], block_r), triton.cdiv(k_dims[0], block_r)
    if q_blocks + k_blocks:
        rotary_embedding_kernel[(q_blocks + k_blocks,)](
            qo,
            qx,
            ko,
            kx,
            cos,
            sin,
            q_blocks,
            *q_dims,
            *k_dims,
            *qstr,
            *kstr,
            half,
            BLOCK_R=block_r,
            BLOCK_D=block_d,
            num_warps=4,
        )
    return qo, ko


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rotary_embedding_reference(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, unsqueeze_dim: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch reference: computed in float32, cast back to q's and k's dtypes."""
    if unsqueeze_dim is not None:
        cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    c, s = cos.float(), sin.float()
    qf, kf = q.float(), k.float()
    return (qf * c + _rotate_half(qf) * s).to(q.dtype), (kf * c + _rotate_half(kf) * s).to(k.dtype)
