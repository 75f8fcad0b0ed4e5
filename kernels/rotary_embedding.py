"""Rotary position embedding (the Llama / HF "rotate_half" form) for q and k in one
Triton launch, plus its torch reference.

    q_out = q * cos + rotate_half(q) * sin,   rotate_half(x) = cat(-x[..., h:], x[..., :h])
    (k likewise)

Same contract as transformers' ``apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim)``:
``cos``/``sin`` (after ``unsqueeze(unsqueeze_dim)`` when it is given) broadcast against q
and k. q and k may be strided views (HF passes (batch, heads, seq, head_dim) views of a
(batch, seq, heads, head_dim) projection): nothing is copied, the outputs get the inputs'
layout. Loaded by file path inside sandbox venvs: imports only torch and triton.
One program rotates all heads of one token and reads that token's cos/sin once; math in float32.
"""

import torch
import triton
import triton.language as tl


@triton.jit
def _rope_token(O, X, C, S, pid, nb, nh, sxa, sxb, sxh, soa, sob, soh, sca, scb, sch, ssa, ssb, ssh,
                HALF, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr, CS_BCAST: tl.constexpr):
    """All heads of one token: cos/sin are read once (CS_BCAST: they do not vary over heads) and reused."""
    ia = (pid // nb).to(tl.int64)
    ib = (pid % nb).to(tl.int64)
    d = tl.arange(0, BLOCK_D)
    dmask = d < HALF
    if CS_BCAST:
        cbase = ia * sca + ib * scb
        sbase = ia * ssa + ib * ssb
        c1 = tl.load(C + cbase + d, mask=dmask, other=0.0).to(tl.float32)[None, :]
        c2 = tl.load(C + cbase + HALF + d, mask=dmask, other=0.0).to(tl.float32)[None, :]
        s1 = tl.load(S + sbase + d, mask=dmask, other=0.0).to(tl.float32)[None, :]
        s2 = tl.load(S + sbase + HALF + d, mask=dmask, other=0.0).to(tl.float32)[None, :]
    for h0 in range(0, nh, BLOCK_H):
        h = (h0 + tl.arange(0, BLOCK_H)).to(tl.int64)
        mask = (h < nh)[:, None] & dmask[None, :]
        xo = (ia * sxa + ib * sxb + h * sxh)[:, None] + d[None, :]
        oo = (ia * soa + ib * sob + h * soh)[:, None] + d[None, :]
        if not CS_BCAST:
            co = (ia * sca + ib * scb + h * sch)[:, None] + d[None, :]
            so = (ia * ssa + ib * ssb + h * ssh)[:, None] + d[None, :]
            c1 = tl.load(C + co, mask=mask, other=0.0).to(tl.float32)
            c2 = tl.load(C + co + HALF, mask=mask, other=0.0).to(tl.float32)
            s1 = tl.load(S + so, mask=mask, other=0.0).to(tl.float32)
            s2 = tl.load(S + so + HALF, mask=mask, other=0.0).to(tl.float32)
        x1 = tl.load(X + xo, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
        x2 = tl.load(X + xo + HALF, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
        tl.store(O + oo, (x1 * c1 - x2 * s1).to(O.dtype.element_ty), mask=mask)
        tl.store(O + oo + HALF, (x2 * c2 + x1 * s2).to(O.dtype.element_ty), mask=mask)


@triton.jit
def rotary_embedding_kernel(
    QO, Q, QC, QS, KO, K, KC, KS,
    q_tokens, qnb, qnh, k_nb, knh,
    sqa, sqb, sqh, soqa, soqb, soqh, sqca, sqcb, sqch, sqsa, sqsb, sqsh,
    ska, skb, skh, soka, sokb, sokh, skca, skcb, skch, sksa, sksb, sksh,
    HALF,
    BLOCK_HQ: tl.constexpr, BLOCK_HK: tl.constexpr, BLOCK_D: tl.constexpr,
    Q_BCAST: tl.constexpr, K_BCAST: tl.constexpr,
):
    pid = tl.program_id(0)
    if pid < q_tokens:
        _rope_token(QO, Q, QC, QS, pid, qnb, qnh, sqa, sqb, sqh, soqa, soqb, soqh, sqca, sqcb, sqch,
                    sqsa, sqsb, sqsh, HALF, BLOCK_HQ, BLOCK_D, Q_BCAST)
    else:
        _rope_token(KO, K, KC, KS, pid - q_tokens, k_nb, knh, ska, skb, skh, soka, sokb, sokh, skca, skcb, skch,
                    sksa, sksb, sksh, HALF, BLOCK_HK, BLOCK_D, K_BCAST)


def _as4d(t: torch.Tensor) -> torch.Tensor:
    while t.dim() < 4:
        t = t.unsqueeze(0)
    if t.dim() > 4:
        raise ValueError(f"rotary_embedding: at most 4 dims, got {tuple(t.shape)}")
    return t if t.stride(-1) == 1 else t.contiguous()


def _prepare(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """x, cos, sin as 4-D views ordered (token dim a, token dim b, head dim h, D): h is the dim cos/sin do
    not vary over (the heads), so one program per token reads cos/sin once for all its heads."""
    if cos.dim() > x.dim() or sin.dim() > x.dim():
        raise ValueError(f"rotary_embedding: cos/sin {tuple(cos.shape)} have more dims than {tuple(x.shape)}")
    try:
        c4 = cos.expand(x.shape).reshape(_as4d(x).shape)
        s4 = sin.expand(x.shape).reshape(_as4d(x).shape)
    except RuntimeError as err:
        raise ValueError(f"rotary_embedding: cos/sin {tuple(cos.shape)} do not broadcast to {tuple(x.shape)}") from err
    x4 = _as4d(x)
    c4 = c4 if c4.stride(-1) == 1 else c4.contiguous()
    s4 = s4 if s4.stride(-1) == 1 else s4.contiguous()
    flat = [i for i in range(3) if c4.stride(i) == 0 and s4.stride(i) == 0 and x4.shape[i] > 1]
    h = max(flat, key=lambda i: x4.shape[i]) if flat else 2
    order = [i for i in range(3) if i != h] + [h, 3]
    x4, c4, s4 = x4.permute(order), c4.permute(order), s4.permute(order)
    out = torch.empty_like(x4)
    strides = [*x4.stride()[:3], *out.stride()[:3], *c4.stride()[:3], *s4.stride()[:3]]
    return out, x4, c4, s4, x4.shape[0] * x4.shape[1], x4.shape[1], x4.shape[2], strides, bool(flat), order


def _unpermute(out: torch.Tensor, order: list[int]) -> torch.Tensor:
    inverse = [order.index(i) for i in range(4)]
    return out.permute(inverse)


def _hf_layout(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, unsqueeze_dim):
    """The launch arguments without any view ops when q and k are (batch, heads, seq, dim) and cos/sin
    (batch or 1, seq, dim) unsqueezed at 1: transformers' own call, once per layer and decode step, where
    the general path's expand/reshape/permute calls would cost more host time than the kernel saves."""
    if (unsqueeze_dim != 1 or q.dim() != 4 or k.dim() != 4 or cos.dim() != 3 or sin.shape != cos.shape
            or q.stride(-1) != 1 or k.stride(-1) != 1 or cos.stride(-1) != 1 or sin.stride(-1) != 1):
        return None
    B, HQ, S, _ = q.shape
    if k.shape[0] != B or k.shape[2] != S or cos.shape[1] != S or cos.shape[0] not in (1, B):
        return None
    qo, ko = torch.empty_like(q), torch.empty_like(k)
    if qo.stride() != q.stride() or ko.stride() != k.stride():
        return None
    cb = cos.stride(0) if cos.shape[0] > 1 else 0
    sb = sin.stride(0) if sin.shape[0] > 1 else 0
    cs = (cb, cos.stride(1), 0, sb, sin.stride(1), 0)  # cos/sin strides over (batch, seq, heads)
    qstr = (q.stride(0), q.stride(2), q.stride(1), q.stride(0), q.stride(2), q.stride(1), *cs)
    kstr = (k.stride(0), k.stride(2), k.stride(1), k.stride(0), k.stride(2), k.stride(1), *cs)
    return (qo, q, cos, sin, ko, k, cos, sin, B * S, S, HQ, S, k.shape[1], *qstr, *kstr), B * S, HQ, k.shape[1]


def rotary_embedding(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                     unsqueeze_dim: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate q and k; returns (q_embed, k_embed) with q's and k's shapes and dtypes."""
    D = q.shape[-1]
    if D % 2 or k.shape[-1] != D or cos.shape[-1] != D or sin.shape[-1] != D:
        raise ValueError(f"rotary_embedding: head dims must match and be even: q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}, cos {tuple(cos.shape)}")
    half = D // 2
    BLOCK_D = triton.next_power_of_2(half)
    block_h = lambda n: max(1, min(triton.next_power_of_2(n), max(1, 8192 // (2 * BLOCK_D))))  # noqa: E731
    fast = _hf_layout(q, k, cos, sin, unsqueeze_dim)
    if fast is not None:
        args, tokens, qnh, knh = fast
        if tokens:
            rotary_embedding_kernel[(2 * tokens,)](*args, half, BLOCK_HQ=block_h(qnh), BLOCK_HK=block_h(knh),
                                                   BLOCK_D=BLOCK_D, Q_BCAST=True, K_BCAST=True, num_warps=4)
        return args[0], args[4]
    if unsqueeze_dim is not None:
        cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    qo, q4, qc, qs, q_tokens, qnb, qnh, qstr, q_bcast, q_order = _prepare(q, cos, sin)
    ko, k4, kc, ks, k_tokens, knb, knh, kstr, k_bcast, k_order = _prepare(k, cos, sin)
    grid = (q_tokens + k_tokens,)
    if grid[0]:
        rotary_embedding_kernel[grid](qo, q4, qc, qs, ko, k4, kc, ks, q_tokens, qnb, qnh, knb, knh,
                                      *qstr, *kstr, half, BLOCK_HQ=block_h(qnh), BLOCK_HK=block_h(knh),
                                      BLOCK_D=BLOCK_D, Q_BCAST=q_bcast, K_BCAST=k_bcast, num_warps=4)
    return _unpermute(qo, q_order).reshape(q.shape), _unpermute(ko, k_order).reshape(k.shape)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rotary_embedding_reference(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                               unsqueeze_dim: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch reference: computed in float32, cast back to q's and k's dtypes."""
    if unsqueeze_dim is not None:
        cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    c, s = cos.float(), sin.float()
    qf, kf = q.float(), k.float()
    return (qf * c + _rotate_half(qf) * s).to(q.dtype), (kf * c + _rotate_half(kf) * s).to(k.dtype)
