"""GPU benchmark: our Triton kernels vs torch eager vs FlagGems, then the model under each operator plan.

    python -m fr_agent.evals.bench_ops [--model DIR] [--selection RECIPE_OR_REPORT_JSON] [--out FILE]

One table. Part 1, per op: the device time of torch eager, FlagGems and kernels/ (a CUDA graph of
calls, each after an L2 flush, less a graph of the flushes alone: what the GPU spends, without the
host's launch cost), the bytes each op must move at least, the achieved bandwidth and its share of
the device-to-device copy bandwidth measured in the same run (the faster of an eager and a graphed
512 MiB copy). Beside it, the eager time (median of triton.testing.do_bench), which includes the
host's launch cost where that is longer than the kernel. Every implementation is checked against
our float32 reference before it is timed. Part 2 (with --model): a forward pass of the model in
fresh processes (sandboxes/probes/op_probe.py): native, full FlagGems, our kernels alone, and the
agent's selection (FlagGems include list + kernels, from a search report or a recipe), each with
its speed against native, logits relative error and top-1 agreement against native.
Needs a CUDA device; FlagGems columns are "n/a" where flag_gems does not import.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import transformers
import triton
import triton.testing

from fr_agent.kernels.registry import KERNELS_DIR, load_kernel

PROBE = Path(__file__).resolve().parents[1] / "sandboxes" / "probes" / "op_probe.py"
M, N = 8192, 4096  # tokens x hidden: a prefill batch of a 7B-class model
ROPE = dict(batch=4, seq=2048, q_heads=32, k_heads=8, head_dim=128)


def bench(fn) -> float:
    """Eager time (ms): median of triton.testing.do_bench, L2 flushed before each call."""
    return float(triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median"))


@functools.cache
def flush_buffer() -> torch.Tensor:
    """256 MiB written before each timed call: what do_bench uses to evict the L2 cache."""
    return torch.empty(256 << 20, dtype=torch.int8, device="cuda")


def _graph_ms(calls, n: int) -> float:
    """Median over 5 replays of a CUDA graph of n x calls(), per call (ms)."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(n):
            calls()
    times = []
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / n)
    del graph
    return sorted(times)[2]


def bench_device(fn, rep_ms: float = 100.0) -> float:
    """Device time of one call (ms): n calls in a CUDA graph, each after the same 256 MiB L2 flush as
    do_bench, less a graph of the n flushes alone. No host launch cost, the same cold cache."""
    flush = flush_buffer()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up (compile, autotune) off the capture
        fn()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(5):
            flush.zero_()
            fn()
        end.record()
    torch.cuda.synchronize()
    n = max(1, min(500, int(rep_ms / max(start.elapsed_time(end) / 5, 1e-3))))

    def flushed_call():
        flush.zero_()
        fn()

    return _graph_ms(flushed_call, n) - _graph_ms(flush.zero_, n)


def copy_bandwidth() -> float:
    """Bytes/s of a 512 MiB device-to-device copy (read + write): the faster of eager and graphed."""
    x = torch.empty(1 << 29, dtype=torch.uint8, device="cuda").random_(0, 255)  # 512 MiB
    y = torch.empty_like(x)
    ms = min(bench(lambda: y.copy_(x)), bench_device(lambda: y.copy_(x)))
    return 2 * x.numel() / (ms * 1e-3)


def gems():
    try:  # optional: the table shows "n/a" where flag_gems is missing or fails to import
        import flag_gems

        return flag_gems
    except Exception as err:  # noqa: BLE001 - reported in the table header
        print(f"flag_gems unavailable: {type(err).__name__}: {err}", file=sys.stderr)
        return None


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def cases(fg):
    """op -> (shape label, bytes moved, torch fn, flaggems fn or None, ours, reference outputs)."""
    dt, dev = torch.bfloat16, "cuda"
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(M, N, dtype=dt, device=dev, generator=g)
    r = torch.randn(M, N, dtype=dt, device=dev, generator=g)
    w = (1 + 0.1 * torch.randn(N, device=dev, generator=g)).to(dt)
    b = (0.1 * torch.randn(N, device=dev, generator=g)).to(dt)
    x2 = torch.randn(M, 2 * N, dtype=dt, device=dev, generator=g)
    F = torch.nn.functional
    k = {
        op: load_kernel(op, KERNELS_DIR)
        for op in ("rms_norm", "fused_add_rms_norm", "silu_and_mul", "rotary_embedding", "softmax", "layer_norm")
    }
    e = x.element_size()
    out = {}
    out["rms_norm"] = (
        f"{M}x{N}",
        2 * M * N * e,
        lambda: F.rms_norm(x, (N,), w, 1e-6),
        fg and (lambda: fg.rms_norm(x, (N,), w, 1e-6)),
        lambda: k["rms_norm"].rms_norm(x, w, 1e-6),
        lambda: k["rms_norm"].rms_norm_reference(x, w, 1e-6),
    )

    def torch_far():
        h = x + r
        return F.rms_norm(h, (N,), w, 1e-6), h

    fx, fr = x.clone(), r.clone()  # FlagGems' fused_add_rms_norm works in place
    out["fused_add_rms_norm"] = (
        f"{M}x{N}",
        4 * M * N * e,
        torch_far,
        fg and (lambda: fg.fused_add_rms_norm(fx, fr, (N,), w, 1e-6)),
        lambda: k["fused_add_rms_norm"].fused_add_rms_norm(x, r, w, 1e-6),
        lambda: k["fused_add_rms_norm"].fused_add_rms_norm_reference(x, r, w, 1e-6),
    )
    gate, up = x2[:, :N], x2[:, N:]
    out["silu_and_mul"] = (
        f"{M}x2x{N}",
        3 * M * N * e,
        lambda: F.silu(gate) * up,
        fg and (lambda: fg.silu_and_mul(gate, up)),
        lambda: k["silu_and_mul"].silu_and_mul(x2),
        lambda: k["silu_and_mul"].silu_and_mul_reference(x2),
    )
    B, S, HQ, HK, D = (ROPE[key] for key in ("batch", "seq", "q_heads", "k_heads", "head_dim"))
    q = torch.randn(B, S, HQ, D, dtype=dt, device=dev, generator=g)
    kk = torch.randn(B, S, HK, D, dtype=dt, device=dev, generator=g)
    inv = 1.0 / (10000 ** (torch.arange(0, D, 2, device=dev, dtype=torch.float32) / D))
    freqs = torch.outer(torch.arange(S, device=dev, dtype=torch.float32), inv)
    cos, sin = torch.cat((freqs, freqs), -1).cos().to(dt), torch.cat((freqs, freqs), -1).sin().to(dt)
    half_cos, half_sin = freqs.cos().to(dt).contiguous(), freqs.sin().to(dt).contiguous()
    c3, s3 = cos[:, None, :], sin[:, None, :]

    def torch_rope():
        return q * c3 + rotate_half(q) * s3, kk * c3 + rotate_half(kk) * s3

    rope_bytes = 2 * (q.numel() + kk.numel()) * e + 2 * cos.numel() * e
    out["rotary_embedding"] = (
        f"q{B}x{S}x{HQ}x{D} k{HK}",
        rope_bytes,
        torch_rope,
        fg and (lambda: fg.apply_rotary_pos_emb(q, kk, half_cos, half_sin)),
        lambda: k["rotary_embedding"].rotary_embedding(q, kk, cos, sin, 1),
        lambda: k["rotary_embedding"].rotary_embedding_reference(q, kk, cos, sin, 1),
    )
    qv, kv, c1, s1 = q.transpose(1, 2), kk.transpose(1, 2), cos[None], sin[None]  # transformers' call

    def torch_rope_hf():
        c, s = c1.unsqueeze(1), s1.unsqueeze(1)
        return qv * c + rotate_half(qv) * s, kv * c + rotate_half(kv) * s

    out["rotary_embedding (HF view)"] = (
        f"q{B}x{HQ}x{S}x{D} view",
        rope_bytes,
        torch_rope_hf,
        None,
        lambda: k["rotary_embedding"].rotary_embedding(qv, kv, c1, s1, 1),
        lambda: k["rotary_embedding"].rotary_embedding_reference(qv, kv, c1, s1, 1),
    )
    out["softmax"] = (
        f"{M}x{N}",
        2 * M * N * e,
        lambda: torch.softmax(x, -1),
        fg and (lambda: fg.softmax(x, -1, False)),
        lambda: k["softmax"].softmax(x),
        lambda: k["softmax"].softmax_reference(x),
    )
    out["layer_norm"] = (
        f"{M}x{N}",
        2 * M * N * e,
        lambda: F.layer_norm(x, (N,), w, b, 1e-5),
        fg and (lambda: fg.layer_norm(x, (N,), w, b, 1e-5)[0]),
        lambda: k["layer_norm"].layer_norm(x, w, b, 1e-5),
        lambda: k["layer_norm"].layer_norm_reference(x, w, b, 1e-5),
    )
    return out


def max_err(got, want) -> float:
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    return max(float((a.float() - b.float()).abs().max()) for a, b in zip(got, want))


def op_rows(copy_bw: float, fg) -> tuple[list[list[str]], list[list[str]]]:
    """(device-time rows, eager-time rows), one per op."""
    rows, eager = [], []
    ratio = lambda a, b: f"{a / b:.2f}x" if a and b else "n/a"  # noqa: E731
    us = lambda ms: f"{ms * 1e3:.1f}" if ms else "n/a"  # noqa: E731
    for op, (shape, nbytes, t_fn, g_fn, k_fn, ref_fn) in cases(fg).items():
        ref = ref_fn()
        errs = {"kernels": max_err(k_fn(), ref), "torch": max_err(t_fn(), ref)}
        if g_fn and op != "fused_add_rms_norm":  # in place: its output is not comparable after a bench
            errs["flaggems"] = max_err(g_fn(), ref)
        t_ms, k_ms = bench_device(t_fn), bench_device(k_fn)
        g_ms = bench_device(g_fn) if g_fn else None
        gbps = nbytes / (k_ms * 1e-3) / 1e9
        rows.append(
            [
                op,
                shape,
                us(t_ms),
                us(g_ms),
                us(k_ms),
                ratio(t_ms, k_ms),
                ratio(g_ms, k_ms),
                f"{gbps:.0f}",
                f"{100 * nbytes / (k_ms * 1e-3) / copy_bw:.0f}%",
                " ".join(f"{name}:{v:.1e}" for name, v in errs.items()),
            ]
        )
        te, ke = bench(t_fn), bench(k_fn)
        ge = bench(g_fn) if g_fn else None
        eager.append([op, us(te), us(ge), us(ke), ratio(te, ke), ratio(ge, ke)])
    return rows, eager


def probe(spec: dict, env: dict) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(spec, handle)
    done = subprocess.run(
        [sys.executable, str(PROBE), handle.name], capture_output=True, text=True, env=env, timeout=600
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"ok": False, "error": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(lines[-1])


def selection_of(path: Path) -> dict:
    """The agent's selection from a search report (selection: ...) or a recipe (operators: ...)."""
    data = json.loads(path.read_text())
    if "selection" in data:
        sel = data["selection"]
        return {"include": sel["include"], "kernels": sel["kernels"]}
    ops = data.get("operators") or data.get("recipe", {}).get("operators")
    return {"include": ops.get("include") or [], "kernels": ops.get("kernels") or []}


def model_rows(model: str, selection: dict | None, batch: int, seq: int) -> tuple[list[list[str]], dict]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-model-"))
    base = {
        "model": model,
        "dtype": "bfloat16",
        "device": "cuda",
        "kernels_dir": str(KERNELS_DIR),
        "ref": str(workdir / "ref.pt"),
        "batch": batch,
        "seq": seq,
        "iters": 10,
    }
    env = dict(os.environ)
    ref = probe({**base, "mode": "reference"}, {**env, "TRITON_CACHE_DIR": str(workdir / "tc-ref")})
    if not ref.get("ok"):
        raise SystemExit(f"native forward failed: {ref.get('error')}")
    plans = [
        ("full FlagGems", {"backend": "flaggems", "include": None}),
        ("kernels only", {"backend": "torch", "kernels": ["rms_norm", "silu_and_mul", "rotary_embedding"]}),
    ]
    if selection is not None:
        plans.append(
            (
                f"agent selection ({len(selection['include'])} FlagGems ops"
                + (f" + {'/'.join(selection['kernels'])})" if selection["kernels"] else ")"),
                {"backend": "flaggems" if selection["include"] else "torch", **selection},
            )
        )
    rows = [
        [
            "native (torch eager)",
            f"{ref['ms']:.2f}",
            "1.00x",
            f"{ref['floor']['rel_err']:.2e} (vs fp32)",
            f"{ref['floor']['top1']:.1%} (vs fp32)",
            "0",
            "ok",
        ]
    ]
    for i, (label, plan) in enumerate(plans):  # fresh process and fresh caches per configuration
        v = probe(
            {**base, "mode": "probe", "plan": plan},
            {**env, "TRITON_CACHE_DIR": str(workdir / f"tc{i}"), "FLAGGEMS_CACHE_DIR": str(workdir / f"fg{i}")},
        )
        if not v.get("ok"):
            rows.append([label, "-", "-", "-", "-", "-", f"crash: {str(v.get('error'))[:60]}"])
            continue
        rel = "nan" if v.get("rel_err") is None else f"{v['rel_err']:.2e}"
        rows.append(
            [
                label,
                f"{v['ms']:.2f}",
                f"{ref['ms'] / v['ms']:.2f}x",
                rel,
                f"{v['top1']:.1%}",
                str(v["nonfinite"]),
                "ok" if not v["nonfinite"] else "NaN/Inf",
            ]
        )
    return rows, ref


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def versions(fg) -> str:
    props = torch.cuda.get_device_properties(0)
    try:
        driver = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except OSError:
        driver = "?"
    return (
        f"device: {props.name} ({props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs), "
        f"driver {driver}, CUDA {torch.version.cuda}; torch {torch.__version__}, triton {triton.__version__}, "
        f"flag_gems {getattr(fg, '__version__', 'n/a')}, transformers {transformers.__version__}, "
        f"python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory for part 2")
    parser.add_argument("--selection", type=Path, help="search report or recipe JSON with the agent's selection")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--out", type=Path, help="also write the table here")
    parser.add_argument("--no-ops", action="store_true", help="skip part 1 (the per-op table)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: bench_ops needs a CUDA device", file=sys.stderr)
        return 2
    fg = gems()
    copy_bw = copy_bandwidth()
    parts = [
        versions(fg),
        f"copy bandwidth (device-to-device copy_, 512 MiB, read + write; the faster of eager and "
        f"graphed): {copy_bw / 1e9:.0f} GB/s",
    ]
    if not args.no_ops:
        rows, eager = op_rows(copy_bw, fg)
        parts += [
            "",
            "ops, device time (bf16; us = CUDA graph of calls after an L2 flush, less the flushes; "
            "GB/s = minimum bytes moved / time of kernels/)",
            table(
                [
                    "op",
                    "shape",
                    "torch us",
                    "FlagGems us",
                    "kernels us",
                    "vs torch",
                    "vs FlagGems",
                    "GB/s",
                    "of copy BW",
                    "max abs err vs fp32 ref",
                ],
                rows,
            ),
            "",
            "ops, eager time (us = median of triton.testing.do_bench: includes the host's launch cost "
            "where it exceeds the kernel's)",
            table(["op", "torch us", "FlagGems us", "kernels us", "vs torch", "vs FlagGems"], eager),
        ]
    if args.model:
        selection = selection_of(args.selection) if args.selection else None
        rows, ref = model_rows(args.model, selection, args.batch, args.seq)
        parts += [
            "",
            f"model: {args.model}, forward of {args.batch}x{args.seq} tokens, bf16, median of 10; "
            "errors and top-1 vs native bf16 logits",
            table(
                ["configuration", "ms", "speed vs native", "logits rel err", "top-1 agreement", "NaN/Inf", "verdict"],
                rows,
            ),
        ]
    text = "\n".join(parts)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
