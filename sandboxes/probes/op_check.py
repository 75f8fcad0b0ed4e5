#!/usr/bin/env python
"""Operator-check probe: run a few LLM operators on a device and compare each
against a float64 reference.

Usage:  python op_check.py SPEC_JSON_PATH

Standalone: stdlib + torch only. Our Triton kernels are imported by file path
(``importlib.util.spec_from_file_location``) from ``kernels_dir``, so the
sandbox venv does not need fr_agent installed.

Spec (JSON object; every key optional)::

    {
      "device": "cpu",                 # torch device string
      "dtype": "bfloat16",             # float32 | float16 | bfloat16
      "backend": "torch",              # torch | kernels | flaggems
      "ops": null,                     # null: DEFAULT_OPS
      "disabled": [],                  # ops forced onto the torch implementation
                                       # (and passed as use_gems(exclude=...))
      "reference": [],                 # ops forced onto the torch implementation
      "cast": {"softmax": "float32"},  # ops computed in that dtype, cast back
      "include": null,                 # FlagGems functions to register (use_gems(include=...));
                                       # null: all but "disabled"
      "kernels": null,                 # ops on our Triton kernels whatever the backend;
                                       # null: all that have one when backend is "kernels"
      "kernels_dir": "/abs/path/to/kernels"   # default: <repo>/kernels
    }

Ops: DEFAULT_OPS, plus "fused_add_rms_norm" and "layer_norm" (KNOWN_OPS).

Which ops have a kernel: ``KERNELS`` in ``kernels_dir/__init__.py`` (loaded
by path), else every ``<op>.py`` there. A kernel file defines ``<op>(...)``.

Implementation per op, first rule that applies (so "cast" is ignored for an
op that is also in "disabled"/"reference"):

* op in "disabled" or "reference"  -> plain torch            (impl "reference")
* op in "cast"                      -> the backend's implementation, inputs
                                       cast to that dtype, result cast back
                                                              (impl "cast:<dtype>")
* op in "kernels" (or backend "kernels" with no list) and kernels_dir has a kernel for op
                                    -> Triton (impl "kernels")
* backend "flaggems"                -> torch op run inside
                                       ``flag_gems.use_gems(exclude=disabled)``
                                                              (impl "flaggems")
* otherwise                         -> plain torch            (impl "torch")

Inputs are deterministic (``torch.manual_seed(0)`` before each op's inputs,
drawn in float32 on the CPU, cast to ``dtype``, moved to ``device``). The
reference is the same op in float64 on the CPU on exactly those inputs.

Tolerances (``|got - ref| <= atol + rtol * |ref|``, elementwise). rtol is
FlagGems' per-dtype RESOLUTION; atol absorbs the rounding of O(1)
intermediates that cancel (e.g. rotary's ``q*cos + rotate_half(q)*sin``),
so it is set to a few units of the dtype's machine epsilon at magnitude 1:

    dtype      rtol     atol
    bfloat16   1.6e-2   1.6e-2   (eps 7.8e-3: ~2 ulp at 1.0)
    float16    1e-3     2e-3     (eps 9.8e-4: ~2 ulp at 1.0)
    float32    1.3e-6   1e-5     (linear's K=256 fp32 accumulation)

On CPU the worst err/tol seen over all ops (torch, and the Triton kernels
under TRITON_INTERPRET=1) is about 0.5, so there is headroom without hiding
real bugs.

Status per op: "pass"; "nonfinite" (NaN/Inf in the result where the reference
is finite); "mismatch" (outside tolerance); "error" (exception: the full
traceback goes to stderr, the one-line text into the record).

Crash isolation: the ops run in a worker process (this script with
``--worker``) that journals each op to a temp file as it starts and ends. If
the worker dies inside an op (SIGILL, SIGSEGV, abort, os._exit ...), that op
is recorded as an error naming the signal and a fresh worker runs the ops
left. So a native crash costs one op, not the whole report. (Seen on x86
VMs that advertise AMX but fault on it: torch's bfloat16 CPU matmul dies with
SIGILL, "linear" is reported as an error, and {"cast": {"linear": "float32"}}
repairs it.) Worker stdout goes to stderr; the tracebacks are on stderr.

Stderr ends with one line per failing op, for the repair playbooks::

    op_check: <op> failed: <ExceptionType>: <message> (impl=...)
    op_check: <op> mismatch|nonfinite: <detail> (impl=..., max_abs_err=...)

(progress lines use the "[op_check]" prefix instead).

Stdout carries exactly one JSON line::

    {"ok": bool, "device": ..., "dtype": ..., "ops": {op: {"status": ...,
     "impl": ..., "max_abs_err": float|null, "error": str|null}}}

Exit code 0 iff every op passes, else 1.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

# Copies of fr_agent.core.types.DEFAULT_OPS and CHECKED_OPS (fr_agent is not installed where this runs);
# tests/sandboxes/test_op_check.py holds them equal.
DEFAULT_OPS = ["rms_norm", "silu_and_mul", "rotary_embedding", "softmax", "linear"]
KNOWN_OPS = [*DEFAULT_OPS, "fused_add_rms_norm", "layer_norm"]
LN_EPS = 1e-5

# dtype -> (rtol, atol); see the module docstring.
TOLERANCES = {
    "bfloat16": (1.6e-2, 1.6e-2),
    "float16": (1e-3, 2e-3),
    "float32": (1.3e-6, 1e-5),
}

RMS_EPS = 1e-6
ROPE_BASE = 10000.0

# Out-of-tree device backends that must be imported before torch knows the device.
_DEVICE_PLUGINS = {"npu": "torch_npu", "mlu": "torch_mlu", "musa": "torch_musa"}


def _log(msg: str) -> None:
    print(f"[op_check] {msg}", file=sys.stderr, flush=True)


def _dtype_name(name) -> str:
    """Canonical dtype name (stdlib only); ValueError if unsupported."""
    name = str(name).replace("torch.", "")
    aliases = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}
    name = aliases.get(name, name)
    if name not in TOLERANCES:
        raise ValueError(f"unsupported dtype {name!r}; expected one of {sorted(TOLERANCES)}")
    return name


def _dtype(torch, name):
    name = _dtype_name(name)
    return getattr(torch, name), name


# --------------------------------------------------------------------------
# Ops: inputs, plain torch implementation, float64 reference.
# --------------------------------------------------------------------------


def _rotate_half(x):
    import torch

    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def _rope_torch(q, k, cos, sin):
    # q, k: (batch, seq, heads, head_dim); cos, sin: (seq, head_dim)
    cos = cos[:, None, :]
    sin = sin[:, None, :]
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


def _rms_norm_torch(x, w, eps=RMS_EPS):
    import torch
    import torch.nn.functional as F

    if hasattr(F, "rms_norm"):
        return F.rms_norm(x, (x.shape[-1],), w, eps)
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (y * w.float()).to(x.dtype)


def _silu_and_mul_torch(x):
    import torch.nn.functional as F

    d = x.shape[-1] // 2
    return F.silu(x[..., :d]) * x[..., d:]


def _make_inputs(torch, op: str):
    """Float32 CPU inputs for ``op`` (seeded), as a tuple of positional args."""
    torch.manual_seed(0)
    B, S, H = 4, 64, 256
    if op == "rms_norm":
        return (torch.randn(B, S, H), 1.0 + 0.1 * torch.randn(H))
    if op == "silu_and_mul":
        return (torch.randn(B, S, 2 * H),)
    if op == "rotary_embedding":
        heads, head_dim = 4, 64
        q = torch.randn(B, S, heads, head_dim)
        k = torch.randn(B, S, heads, head_dim)
        inv_freq = 1.0 / (ROPE_BASE ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
        freqs = torch.outer(torch.arange(S, dtype=torch.float64), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        return (q, k, emb.cos().float(), emb.sin().float())
    if op == "softmax":
        return (2.0 * torch.randn(B, S, H),)
    if op == "fused_add_rms_norm":
        return (torch.randn(B, S, H), torch.randn(B, S, H), 1.0 + 0.1 * torch.randn(H))
    if op == "layer_norm":
        return (torch.randn(B, S, H) + 0.5, 1.0 + 0.1 * torch.randn(H), 0.1 * torch.randn(H))
    if op == "linear":
        return (torch.randn(B, S, H), torch.randn(H, H) / math.sqrt(H), 0.1 * torch.randn(H))
    raise ValueError(f"unknown op {op!r}; known ops: {DEFAULT_OPS}")


def _torch_impl(op: str):
    import torch
    import torch.nn.functional as F

    return {
        "rms_norm": _rms_norm_torch,
        "silu_and_mul": _silu_and_mul_torch,
        "rotary_embedding": _rope_torch,
        "softmax": lambda x: torch.softmax(x, dim=-1),
        "linear": lambda x, w, b: F.linear(x, w, b),
        "fused_add_rms_norm": lambda x, r, w: (_rms_norm_torch(x + r, w), x + r),
        "layer_norm": lambda x, w, b: F.layer_norm(x, (x.shape[-1],), w, b, LN_EPS),
    }[op]


def _reference64(op: str, args):
    """The op in float64 on the CPU (args already float64 CPU tensors)."""
    import torch
    import torch.nn.functional as F

    if op == "rms_norm":
        x, w = args
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + RMS_EPS) * w
    if op == "silu_and_mul":
        (x,) = args
        d = x.shape[-1] // 2
        return x[..., :d] * torch.sigmoid(x[..., :d]) * x[..., d:]
    if op == "rotary_embedding":
        return _rope_torch(*args)
    if op == "softmax":
        return torch.softmax(args[0], dim=-1)
    if op == "linear":
        return F.linear(*args)
    if op == "fused_add_rms_norm":
        x, r, w = args
        h = x + r
        return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + RMS_EPS) * w, h
    if op == "layer_norm":
        return F.layer_norm(args[0], (args[0].shape[-1],), args[1], args[2], LN_EPS)
    raise KeyError(op)


# --------------------------------------------------------------------------
# Implementation selection.
# --------------------------------------------------------------------------


def _load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, str(path))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _kernel_table(kernels_dir: Path | None) -> dict[str, str]:
    """op -> kernel file name, from kernels_dir/__init__.py's KERNELS (light)."""
    if kernels_dir is None or not kernels_dir.is_dir():
        return {}
    init = kernels_dir / "__init__.py"
    if init.is_file():
        try:
            table = getattr(_load_module("_fr_kernels_registry", init), "KERNELS", None)
            if isinstance(table, dict):
                return {str(k): str(v) for k, v in table.items()}
        except Exception:
            _log(f"could not read KERNELS from {init}; falling back to <op>.py files")
            traceback.print_exc(file=sys.stderr)
    return {p.stem: p.name for p in kernels_dir.glob("*.py") if not p.name.startswith("_")}


def _kernel_impl(op: str, kernels_dir: Path, table: dict[str, str]):
    mod = _load_module(f"_fr_kernel_{op}", kernels_dir / table[op])
    fn = getattr(mod, op)
    adapters = {
        "rms_norm": lambda x, w: fn(x, w, RMS_EPS),
        "fused_add_rms_norm": lambda x, r, w: fn(x, r, w, RMS_EPS),
        "layer_norm": lambda x, w, b: fn(x, w, b, LN_EPS),
        # cos/sin are (seq, head_dim) here, q/k (batch, seq, heads, head_dim): broadcast over heads
        "rotary_embedding": lambda q, k, cos, sin: fn(q, k, cos, sin, 1),
    }
    return adapters.get(op, fn)


def _flaggems_context(disabled: list[str], include: list[str] | None = None):
    import flag_gems  # ImportError (or anything else) -> the op's record is an error

    if include is not None:  # the plan names the FlagGems functions to register (only_enable)
        chosen = [op for op in include if op not in disabled]
        # use_gems(include=[]) would fall through to enable(): everything. None chosen = none registered.
        return flag_gems.use_gems(include=chosen) if chosen else contextlib.nullcontext()
    try:
        return flag_gems.use_gems(exclude=list(disabled))
    except TypeError:  # older FlagGems: use_gems() takes no exclude
        _log("flag_gems.use_gems() has no 'exclude'; using use_gems()")
        return flag_gems.use_gems()


# --------------------------------------------------------------------------
# Checking.
# --------------------------------------------------------------------------


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _check_one(
    torch, op: str, spec: dict, dtype, dtype_name: str, device: str, kernels_dir: Path | None, table: dict[str, str]
) -> dict:
    if op not in KNOWN_OPS:
        raise ValueError(f"unknown op {op!r}; known ops: {KNOWN_OPS}")
    backend = spec["backend"]
    disabled = spec["disabled"]
    forced_ref = op in disabled or op in spec["reference"]
    cast_name = None if forced_ref else spec["cast"].get(op)

    # Pick the implementation.
    use_gems = False
    if forced_ref:
        impl_name, fn = "reference", _torch_impl(op)
    elif op in table and (op in (spec["kernels"] or []) or (backend == "kernels" and spec["kernels"] is None)):
        impl_name, fn = "kernels", _kernel_impl(op, kernels_dir, table)
    elif backend == "flaggems":
        impl_name, fn, use_gems = "flaggems", _torch_impl(op), True
    elif backend in ("torch", "kernels", "flaggems"):
        impl_name, fn = "torch", _torch_impl(op)
    else:
        raise ValueError(f"unknown backend {backend!r}; expected torch, kernels or flaggems")

    compute_dtype = dtype
    if cast_name is not None:
        compute_dtype, cast_name = _dtype(torch, cast_name)
        impl_name = f"cast:{cast_name}"
    record = {"status": "error", "impl": impl_name, "max_abs_err": None, "error": None}

    # Inputs: the reference sees exactly the dtype-rounded values the op sees.
    base = _make_inputs(torch, op)
    inputs = tuple(t.to(dtype) for t in base)
    ref = _as_tuple(_reference64(op, tuple(t.double() for t in inputs)))
    args = tuple(t.to(device=device, dtype=compute_dtype) for t in inputs)

    ctx = _flaggems_context(disabled, spec["include"]) if use_gems else None
    if ctx is not None:
        with ctx:
            out = fn(*args)
    else:
        out = fn(*args)
    out = _as_tuple(out)
    # Surface asynchronous device errors here, on the op that caused them.
    if device != "cpu" and hasattr(torch, "accelerator") and torch.accelerator.is_available():
        torch.accelerator.synchronize()
    if cast_name is not None:
        out = tuple(o.to(dtype) for o in out)  # cast back

    if len(out) != len(ref):
        raise RuntimeError(f"{op}: got {len(out)} outputs, expected {len(ref)}")
    rtol, atol = TOLERANCES[dtype_name]
    max_err, nonfinite, mismatch = 0.0, False, False
    for i, (o, r) in enumerate(zip(out, ref)):
        if o.dtype != dtype:
            raise RuntimeError(f"{op}: output {i} has dtype {o.dtype}, expected {dtype}")
        if tuple(o.shape) != tuple(r.shape):
            raise RuntimeError(f"{op}: output {i} has shape {tuple(o.shape)}, expected {tuple(r.shape)}")
        o64 = o.detach().to("cpu").double()
        bad = ~torch.isfinite(o64) & torch.isfinite(r)
        if bool(bad.any()):
            nonfinite = True
            record["error"] = f"output {i}: {int(bad.sum())} non-finite values (NaN/Inf)"
        diff = (o64 - r).abs()
        finite = torch.isfinite(diff)
        if bool(finite.any()):
            max_err = max(max_err, float(diff[finite].max()))
        if not bool(torch.isclose(o64, r, rtol=rtol, atol=atol, equal_nan=True).all()):
            mismatch = True
    record["max_abs_err"] = max_err
    if nonfinite:
        record["status"] = "nonfinite"
    elif mismatch:
        record["status"] = "mismatch"
        record["error"] = (
            f"max_abs_err {max_err:.3g} outside tolerance (rtol={rtol:g}, atol={atol:g}, dtype={dtype_name})"
        )
    else:
        record["status"] = "pass"
    return record


def _impl_label(op: str, spec: dict, table) -> str:
    """Impl label for an op that failed before its record existed; ``table``
    holds the ops that have a kernel (None when the worker never said)."""
    if op in spec["disabled"] or op in spec["reference"]:
        return "reference"
    if op in spec["cast"]:
        try:
            return f"cast:{_dtype_name(spec['cast'][op])}"
        except ValueError:
            return f"cast:{spec['cast'][op]}"
    if spec["backend"] == "kernels" or op in (spec["kernels"] or []):
        if table is not None and op in table and (spec["kernels"] is None or op in spec["kernels"]):
            return "kernels"
        return "torch" if spec["backend"] != "flaggems" else "flaggems"
    if spec["backend"] == "flaggems":
        return "flaggems"
    return "torch"


def _load_spec(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    if not isinstance(raw, dict):
        raise ValueError("spec must be a JSON object")
    return {
        "device": str(raw.get("device") or "cpu"),
        "dtype": str(raw.get("dtype") or "bfloat16"),
        "backend": str(raw.get("backend") or "torch"),
        "ops": [str(o) for o in raw["ops"]] if raw.get("ops") is not None else list(DEFAULT_OPS),
        "disabled": [str(o) for o in (raw.get("disabled") or [])],
        "reference": [str(o) for o in (raw.get("reference") or [])],
        "cast": {str(k): str(v) for k, v in (raw.get("cast") or {}).items()},
        "kernels_dir": raw.get("kernels_dir"),
        "include": [str(o) for o in raw["include"]] if raw.get("include") is not None else None,
        "kernels": [str(o) for o in raw["kernels"]] if raw.get("kernels") is not None else None,
    }


def _resolve_kernels_dir(spec: dict) -> Path | None:
    if spec["kernels_dir"]:
        return Path(spec["kernels_dir"]).expanduser().resolve()
    # Default: <repo>/kernels next to <repo>/sandboxes/probes/op_check.py.
    guess = Path(__file__).resolve().parents[2] / "kernels"
    return guess if guess.is_dir() else None


# --------------------------------------------------------------------------
# Worker: runs the ops in-process, journaling each one to a file, so the
# parent can tell which op killed the process (SIGILL, SIGSEGV, abort ...).
# --------------------------------------------------------------------------


def _worker(spec_path: str, journal_path: str, ops: list[str]) -> int:
    os.dup2(2, 1)  # nothing from the ops may reach the parent's stdout
    journal = open(journal_path, "a", encoding="utf-8")

    def note(event: dict) -> None:
        journal.write(json.dumps(event) + "\n")
        journal.flush()

    spec = _load_spec(spec_path)
    try:
        import torch

        dtype, dtype_name = _dtype(torch, spec["dtype"])
        dev_type = spec["device"].split(":", 1)[0]
        if dev_type in _DEVICE_PLUGINS:
            importlib.import_module(_DEVICE_PLUGINS[dev_type])
    except Exception as e:
        _log("setup failed; traceback follows")
        traceback.print_exc(file=sys.stderr)
        note({"event": "setup_error", "error": f"{type(e).__name__}: {e}"})
        return 1

    kernels_dir = _resolve_kernels_dir(spec)
    table = _kernel_table(kernels_dir) if spec["backend"] == "kernels" or spec["kernels"] else {}
    note({"event": "kernels", "ops": sorted(table)})
    _log(
        f"device={spec['device']} dtype={dtype_name} backend={spec['backend']} "
        f"kernels_dir={kernels_dir} kernels={sorted(table)} "
        f"TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET', '')!r}"
    )
    for op in ops:
        note({"event": "start", "op": op})
        try:
            rec = _check_one(torch, op, spec, dtype, dtype_name, spec["device"], kernels_dir, table)
        except Exception as e:
            _log(f"op {op} raised; traceback follows")
            traceback.print_exc(file=sys.stderr)
            rec = {
                "status": "error",
                "impl": _impl_label(op, spec, table),
                "max_abs_err": None,
                "error": f"{type(e).__name__}: {e}",
            }
        _log(
            f"op {op}: {rec['status']} impl={rec['impl']} max_abs_err={rec['max_abs_err']}"
            + (f" error={rec['error']}" if rec["error"] else "")
        )
        note({"event": "done", "op": op, "record": rec})
    return 0


def _describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            sig = signal.Signals(-rc)
            return f"killed by {sig.name} ({signal.strsignal(sig) or ''})".replace(" ()", "")
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exited with code {rc}"


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "--worker":
        return _worker(argv[2], argv[3], json.loads(argv[4]))

    def emit(result: dict) -> None:
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()

    if len(argv) != 2:
        _log("usage: python op_check.py SPEC_JSON_PATH")
        emit(
            {"ok": False, "device": None, "dtype": None, "ops": {}, "error": "usage: python op_check.py SPEC_JSON_PATH"}
        )
        return 1
    try:
        spec = _load_spec(argv[1])
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        emit({"ok": False, "device": None, "dtype": None, "ops": {}, "error": f"bad spec: {type(e).__name__}: {e}"})
        return 1
    try:
        dtype_label = _dtype_name(spec["dtype"])
    except ValueError:
        dtype_label = spec["dtype"]  # the worker reports the error per op

    # Run the ops in a worker process; if it dies mid-op (a native crash),
    # record that op as an error and start a fresh worker for the rest.
    results: dict[str, dict] = {}
    remaining = list(dict.fromkeys(spec["ops"]))
    table = None
    fd, journal_path = tempfile.mkstemp(prefix="op_check_", suffix=".jsonl")
    os.close(fd)
    try:
        while remaining:
            open(journal_path, "w").close()
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--worker",
                os.path.abspath(argv[1]),
                journal_path,
                json.dumps(remaining),
            ]
            rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno()).returncode
            started, setup_error, progress = None, None, 0
            with open(journal_path, encoding="utf-8") as f:
                for line in f:
                    try:
                        ev = json.loads(line)
                    except ValueError:
                        continue  # torn last line
                    kind = ev.get("event")
                    if kind == "kernels":
                        table = set(ev.get("ops") or [])
                    elif kind == "start":
                        started = ev["op"]
                    elif kind == "done":
                        results[ev["op"]] = ev["record"]
                        started, progress = None, progress + 1
                    elif kind == "setup_error":
                        setup_error = ev["error"]
            remaining = [op for op in remaining if op not in results]
            if not remaining:
                break
            if started is not None:
                msg = f"op_check worker {_describe_exit(rc)} while running op {started!r}"
                _log(msg)
                results[started] = {
                    "status": "error",
                    "impl": _impl_label(started, spec, table),
                    "max_abs_err": None,
                    "error": msg,
                }
                remaining.remove(started)
            elif setup_error is not None or progress == 0:
                # Failed before running any op: retrying would fail the same way.
                msg = setup_error or f"op_check worker {_describe_exit(rc)} before running any op"
                _log(msg)
                for op in remaining:
                    results[op] = {
                        "status": "error",
                        "impl": _impl_label(op, spec, table),
                        "max_abs_err": None,
                        "error": msg,
                    }
                break
            # else: died between ops; go again with the rest.
    finally:
        try:
            os.unlink(journal_path)
        except OSError:
            pass

    ops_result = {op: results[op] for op in dict.fromkeys(spec["ops"])}
    ok = all(r["status"] == "pass" for r in ops_result.values())
    # One summary line per failing op, last in the log, in the form the repair
    # playbooks match: "op_check: <op> failed: <error>" / "op_check: <op> mismatch..."
    for op, rec in ops_result.items():
        if rec["status"] == "pass":
            continue
        err = " ".join(str(rec["error"] or "").split())
        if rec["status"] == "error":
            print(f"op_check: {op} failed: {err} (impl={rec['impl']})", file=sys.stderr)
        else:
            print(
                f"op_check: {op} {rec['status']}: {err} (impl={rec['impl']}, max_abs_err={rec['max_abs_err']})",
                file=sys.stderr,
            )
    sys.stderr.flush()
    emit({"ok": ok, "device": spec["device"], "dtype": dtype_label, "ops": ops_result})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
