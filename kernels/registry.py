"""The operator layer: realise an operator plan in this process and in a transformers model.

Loaded by file path inside the sandbox (hf_server.py, op_probe.py), which has no fr_agent:
stdlib at import time; torch, triton and flag_gems are imported only when a plan needs them.

A plan is the recipe's OperatorPlan as a dict, plus ``kernels_dir``:

    backend    torch | kernels | flaggems
    include    FlagGems function names to register (flag_gems.only_enable); None = all but `disabled`
    disabled   FlagGems function names not registered (flag_gems.enable(unused=...)); kernel ops not swapped in
    kernels    our Triton kernels swapped into the model (None: all of them when backend == "kernels")
    reference  ops forced onto their torch reference (kernel ops: `<op>_reference`; FlagGems ops: torch's own)
    cast       {op: dtype}: computed in that dtype and cast back (kernel ops, or a FlagGems function)

Names: FlagGems ops are FlagGems' function names (`add`, `to_copy`, `mm`: what enable(unused=)
and only_enable(include=) match); our ops are the kernel file names (`rms_norm`, `rotary_embedding`).
How a kernel reaches the model (MODEL_HOOKS): whole-module swaps for the HF building blocks
(RMSNorm / LayerNorm modules, the SwiGLU MLP, the modeling module's `apply_rotary_pos_emb`), and
an aten registration for softmax. `fused_add_rms_norm` has no hook in an HF model (its decoder
layers add the residual outside the norm): it serves op_check and the benchmark.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import types
from pathlib import Path

KERNELS_DIR = Path(__file__).resolve().parent

#: our op -> how it enters an HF model ("module": module swap, "function": modeling-module global,
#: "aten": torch.library registration); ops without a hook are kernel-only.
MODEL_HOOKS = {
    "rms_norm": "module",
    "silu_and_mul": "module",
    "rotary_embedding": "function",
    "layer_norm": "module",
    "softmax": "aten",
}
KERNEL_OPS = ("rms_norm", "fused_add_rms_norm", "silu_and_mul", "rotary_embedding", "softmax", "layer_norm")

# FlagRelease's op groups, the first level of the operator search's bisection.
_COMPUTE = {
    "mm",
    "mm_out",
    "addmm",
    "addmm_out",
    "bmm",
    "bmm_out",
    "baddbmm",
    "mv",
    "addmv",
    "addmv_out",
    "dot",
    "vdot",
    "addr",
    "kron",
    "group_mm",
    "flash_attention_forward",
    "conv1d",
    "conv2d",
    "conv3d",
    "_conv_depthwise2d",
}
_REDUCE_PREFIXES = (
    "sum",
    "mean",
    "amax",
    "amin",
    "aminmax",
    "max",
    "min",
    "argmax",
    "argmin",
    "all",
    "any",
    "prod",
    "var",
    "std",
    "vector_norm",
    "softmax",
    "log_softmax",
    "_safe_softmax",
    "scaled_softmax",
    "layer_norm",
    "rms_norm",
    "group_norm",
    "batch_norm",
    "cumsum",
    "cummax",
    "cummin",
    "topk",
    "sort",
    "count_nonzero",
    "quantile",
    "trace",
    "allclose",
    "equal",
    "_is_all_true",
    "nll_loss",
    "mse_loss",
    "margin_ranking_loss",
    "soft_margin_loss",
    "weight_norm",
)
_INDEX_PREFIXES = (
    "index",
    "_index_put",
    "gather",
    "scatter",
    "embedding",
    "masked_",
    "select",
    "slice",
    "where",
    "nonzero",
    "one_hot",
    "isin",
    "repeat_interleave",
    "unique",
    "_unique",
    "bincount",
    "multinomial",
)
_MEMORY_PREFIXES = (
    "to_copy",
    "copy_",
    "contiguous",
    "cat",
    "stack",
    "hstack",
    "vstack",
    "fill",
    "zero",
    "ones",
    "full",
    "new_full",
    "arange",
    "linspace",
    "logspace",
    "eye",
    "tile",
    "repeat",
    "flip",
    "roll",
    "pad",
    "constant_pad",
    "reflection_pad",
    "replication_pad",
    "tril",
    "triu",
    "t_copy",
    "alias_copy",
    "lift_fresh",
    "resolve_",
    "diag",
    "unfold",
    "rand",
    "normal",
    "uniform",
    "exponential",
    "bernoulli",
    "dropout",
    "pixel_unshuffle",
    "upsample",
    "_upsample",
    "conj",
)
GROUPS = ("compute", "reduce", "index", "memory", "math")


def group_of(op: str) -> str:
    """FlagRelease's group of a FlagGems function name: compute, reduce, index, memory or math."""
    if op in _COMPUTE:
        return "compute"
    for group, prefixes in (("reduce", _REDUCE_PREFIXES), ("index", _INDEX_PREFIXES), ("memory", _MEMORY_PREFIXES)):
        if op.startswith(prefixes):
            return group
    return "math"


def cache_dirs() -> dict[str, Path]:
    """Where Triton and FlagGems cache compiled kernels and tuning results in this process's environment."""
    home = Path(os.environ.get("HOME") or Path.home())
    return {
        "triton": Path(os.environ.get("TRITON_CACHE_DIR") or home / ".triton" / "cache"),
        "flaggems": Path(os.environ.get("FLAGGEMS_CACHE_DIR") or home / ".flaggems"),
    }


def clear_caches(dirs: dict[str, Path] | None = None) -> list[str]:
    """Delete the Triton and FlagGems caches (a stale or half-written one can crash a fresh process)."""
    cleared = []
    for path in (dirs or cache_dirs()).values():
        if Path(path).exists():
            shutil.rmtree(path, ignore_errors=True)
            cleared.append(str(path))
    return cleared


def load_kernel(op: str, kernels_dir: str | Path | None = None) -> types.ModuleType:
    """The kernel file ``<op>.py`` as a module (by path: sandboxes have no fr_agent)."""
    path = Path(kernels_dir or KERNELS_DIR) / f"{op}.py"
    name = f"_fr_kernel_{op}"
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, str(path))
    if spec is None or spec.loader is None or not path.is_file():
        raise ImportError(f"no kernel file for op {op!r} at {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def flaggems_table() -> dict[str, list[str]]:
    """FlagGems function name -> the aten keys it is registered for (imports flag_gems)."""
    import flag_gems

    table: dict[str, list[str]] = {}
    for item in flag_gems._FULL_CONFIG:
        if len(item) > 2 and not item[2]():
            continue
        table.setdefault(item[1].__name__, []).append(item[0])
    return table


def _cast_wrapper(fn, dtype):
    import torch

    def run(*args, **kwargs):
        back = next((a.dtype for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()), None)

        def to(x, d):
            return x.to(d) if isinstance(x, torch.Tensor) and x.is_floating_point() else x

        out = fn(*[to(a, dtype) for a in args], **{k: to(v, dtype) for k, v in kwargs.items()})
        if back is None:
            return out
        return tuple(to(o, back) for o in out) if isinstance(out, tuple) else to(out, back)

    run.__name__ = getattr(fn, "__name__", "op")
    return run


class Applied:
    """What a plan changed in this process; `undo()` puts torch and the model back."""

    def __init__(self):
        self.flaggems: list[str] = []
        self.kernels: dict[str, str] = {}
        self.libraries: list = []
        self.restore: list = []

    def undo(self) -> None:
        for fn in reversed(self.restore):
            fn()
        for lib in self.libraries:
            lib._destroy()
        self.restore, self.libraries = [], []

    def summary(self) -> dict:
        return {"flaggems": sorted(self.flaggems), "kernels": dict(sorted(self.kernels.items()))}


def kernel_ops(plan: dict) -> list[str]:
    """Our ops the plan swaps into the model (those with a model hook)."""
    chosen = plan.get("kernels")
    if chosen is None:
        chosen = list(MODEL_HOOKS) if plan.get("backend") == "kernels" else []
    skip = set(plan.get("disabled") or [])
    return [op for op in chosen if op in MODEL_HOOKS and op not in skip]


def apply(plan: dict, model=None, *, label: bool = False) -> Applied:
    """Register FlagGems per the plan and swap our kernels into ``model`` (if given).

    ``label`` wraps each swapped op in a profiler range ``fr::<op>`` (per-op timing in the model).
    """
    applied = Applied()
    reference = set(plan.get("reference") or [])
    cast = dict(plan.get("cast") or {})
    ops = kernel_ops(plan)
    if plan.get("backend") == "flaggems":
        # our softmax takes aten::_softmax itself; two registrations for one op and key would clash
        _apply_flaggems(plan, reference | ({"softmax"} if "softmax" in ops else set()), cast, applied)
    if model is not None and ops:
        patch_model(model, ops, plan.get("kernels_dir"), reference=reference, cast=cast, label=label, applied=applied)
    elif ops and "softmax" in ops:
        _patch_softmax(plan.get("kernels_dir"), "softmax" in reference, cast.get("softmax"), applied)
    return applied


def _apply_flaggems(plan: dict, reference: set, cast: dict, applied: Applied) -> None:
    import flag_gems
    import torch

    table = flaggems_table()
    include = plan.get("include")
    unknown = [op for op in (include or []) if op not in table]
    if unknown:
        raise ValueError(f"not FlagGems ops: {', '.join(unknown)}")
    keep_out = set(plan.get("disabled") or []) | reference | set(cast)
    lib = torch.library.Library("aten", "IMPL")
    applied.libraries.append(lib)
    if include is not None:
        chosen = [op for op in include if op not in keep_out]
        if chosen:
            flag_gems.only_enable(lib=lib, include=chosen)
    else:
        flag_gems.enable(lib=lib, unused=sorted(keep_out))
        chosen = [op for op in table if op not in keep_out]
    applied.flaggems = list(chosen)
    dispatch_key = (
        flag_gems.runtime.device.dispatch_key if hasattr(flag_gems.runtime.device, "dispatch_key") else "CUDA"
    )
    fns = {item[1].__name__: item[1] for item in flag_gems._FULL_CONFIG}
    for op, dtype in sorted(cast.items()):
        if op in table and op not in reference and (include is None or op in include):
            for key in table[op]:
                lib.impl(key, _cast_wrapper(fns[op], getattr(torch, dtype)), dispatch_key)
            applied.flaggems.append(f"{op}:{dtype}")


def _impl(op: str, kernels_dir, use_reference: bool, dtype: str | None):
    import torch

    module = load_kernel(op, kernels_dir)
    fn = getattr(module, f"{op}_reference" if use_reference else op)
    return _cast_wrapper(fn, getattr(torch, dtype)) if dtype else fn


def _labelled(fn, op: str, label: bool):
    if not label:
        return fn
    import torch

    def run(*args, **kwargs):
        with torch.profiler.record_function(f"fr::{op}"):
            return fn(*args, **kwargs)

    return run


def _is_silu(act) -> bool:
    import torch

    return isinstance(act, torch.nn.SiLU) or "silu" in type(act).__name__.lower()


def patch_model(
    model, ops, kernels_dir=None, *, reference=(), cast=None, label=False, native=False, applied: Applied | None = None
) -> Applied:
    """Swap our kernels for the HF building blocks named by ``ops``.

    ``native=True`` keeps the model's own code and only wraps it in the ``fr::<op>`` profiler range:
    the per-op baseline the operator search compares a kernel against.
    """
    applied = applied or Applied()
    cast = cast or {}
    for op in ops:
        how = "native" if native else "reference" if op in reference else f"cast:{cast[op]}" if op in cast else "kernel"
        fn = None if native else _impl(op, kernels_dir, op in reference, cast.get(op))
        hits = 0
        if op == "rms_norm":
            for mod in model.modules():
                eps = getattr(mod, "variance_epsilon", getattr(mod, "eps", None))
                if (
                    type(mod).__name__.endswith("RMSNorm")
                    and eps is not None
                    and getattr(mod, "weight", None) is not None
                ):
                    forward = (
                        mod.forward if native else (lambda m, e, f: lambda x: f(x, m.weight, e))(mod, float(eps), fn)
                    )
                    hits += _swap_forward(mod, _labelled(forward, op, label), applied)
        elif op == "layer_norm":
            import torch

            for mod in model.modules():
                if isinstance(mod, torch.nn.LayerNorm) and len(mod.normalized_shape) == 1:
                    forward = mod.forward if native else (lambda m, f: lambda x: f(x, m.weight, m.bias, m.eps))(mod, fn)
                    hits += _swap_forward(mod, _labelled(forward, op, label), applied)
        elif op == "silu_and_mul":
            for mod in model.modules():
                if all(hasattr(mod, a) for a in ("gate_proj", "up_proj", "down_proj", "act_fn")) and _is_silu(
                    mod.act_fn
                ):
                    # only the activation-and-product is swapped (and labelled), never the projections
                    act = _labelled((lambda a: lambda g, u: a(g) * u)(mod.act_fn) if native else fn, op, label)
                    forward = (lambda m, a: lambda x: m.down_proj(a(m.gate_proj(x), m.up_proj(x))))(mod, act)
                    hits += _swap_forward(mod, forward, applied)
        elif op == "rotary_embedding":
            for modeling in {sys.modules.get(type(m).__module__) for m in model.modules()}:
                original = getattr(modeling, "apply_rotary_pos_emb", None) if modeling else None
                if original is None:
                    continue
                if native:
                    new = original
                else:

                    def new(q, k, cos, sin, *args, unsqueeze_dim=1, _fn=fn, **kwargs):
                        if args and not isinstance(args[0], int):  # old signature (q, k, cos, sin, position_ids, ...)
                            args = args[1:]
                        if args:
                            unsqueeze_dim = args[0]
                        return _fn(q, k, cos, sin, unsqueeze_dim)

                setattr(modeling, "apply_rotary_pos_emb", _labelled(new, op, label))
                applied.restore.append(lambda m=modeling, o=original: setattr(m, "apply_rotary_pos_emb", o))
                hits += 1
        elif op == "softmax":  # an aten registration for CUDA: it only reaches a model that runs there
            on_cuda = any(p.is_cuda for p in model.parameters())
            hits += _patch_softmax(kernels_dir, op in reference, cast.get(op), applied, native=native or not on_cuda)
        else:
            raise ValueError(f"op {op!r} has no model hook; hooks: {', '.join(MODEL_HOOKS)}")
        if hits:
            applied.kernels[op] = how
    return applied


def _swap_forward(mod, forward, applied: Applied) -> int:
    had = "forward" in vars(mod)
    old = vars(mod).get("forward")
    mod.forward = forward
    applied.restore.append(lambda: setattr(mod, "forward", old) if had else vars(mod).pop("forward", None))
    return 1


def _patch_softmax(kernels_dir, use_reference: bool, dtype: str | None, applied: Applied, native: bool = False) -> int:
    """softmax has no module: our kernel is registered for aten::_softmax on CUDA."""
    if native:
        return 0
    import torch

    fn = _impl("softmax", kernels_dir, use_reference, dtype)

    def _softmax(x, dim, half_to_float):
        y = fn(x, dim)
        return y.float() if half_to_float else y

    lib = torch.library.Library("aten", "IMPL")
    lib.impl("_softmax", _softmax, "CUDA")
    applied.libraries.append(lib)
    return 1
