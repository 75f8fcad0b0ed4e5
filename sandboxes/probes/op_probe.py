#!/usr/bin/env python
"""Operator-search probe: one forward pass of the model under one operator plan, in a fresh process.

Usage: op_probe.py SPEC_JSON. Prints one JSON line (the verdict) last on stdout; exit 0 when it
ran to the end, whatever it measured (the search classifies), 1 on an exception.

Standalone (stdlib + torch + transformers); the operator layer is kernels_dir/registry.py,
loaded by path. Modes:

  reference  the model as it is (torch eager): saves logits to `ref`, measures the error floor
             (this dtype vs float32 on the same inputs), times the forward, lists the FlagGems
             functions the forward would reach (aten ops seen by a dispatch mode, mapped through
             FlagGems' registration table), and profiles per op (aten ops, and `fr::<op>` ranges
             around the blocks our kernels replace).
  probe      applies `plan` (FlagGems include/exclude, kernels, reference, cast) after loading,
             then the same forward: relative logits error and top-1 agreement against `ref`,
             NaN/Inf count, time, per-op profile, and the FlagGems functions that really ran
             (FlagGems' own op log). An exception is reported with its traceback and the
             FlagGems functions the traceback names.

Spec keys: mode, model, dtype, device, kernels_dir, ref, batch, seq, iters, profile (bool),
label_ops (our ops to time), plan (probe mode), record_path, trust_remote_code.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import statistics
import sys
import time
import traceback
from pathlib import Path

# flag_gems/ops/add.py", line 45, in add   -> "add"
FRAME = re.compile(r'flag_gems[/\\][^"]*\.py", line \d+, in (\w+)')
# "[DEBUG] flag_gems.ops.add.add: GEMS ADD" (FlagGems' op log: logger name, then the function)
OPLOG = re.compile(r"\] flag_gems\.[\w.]*\.(\w+): ")


def load_registry(kernels_dir: str):
    path = Path(kernels_dir) / "registry.py"
    spec = importlib.util.spec_from_file_location("_fr_operator_registry", str(path))
    module = importlib.util.module_from_spec(spec)
    sys.modules["_fr_operator_registry"] = module
    spec.loader.exec_module(module)
    return module


def inputs(torch, vocab: int, batch: int, seq: int, device: str):
    generator = torch.Generator().manual_seed(1234)
    return torch.randint(3, vocab, (batch, seq), generator=generator).to(device)


def forward(model, ids):
    import torch

    with torch.inference_mode():
        return model(ids).logits


def timed(torch, model, ids, iters: int, warmup: int = 3) -> float:
    """Median wall time of a forward, after warm-up forwards (clocks up, allocator and launch caches warm)."""
    for _ in range(warmup):
        forward(model, ids)
    times = []
    for _ in range(iters):
        torch.cuda.synchronize() if ids.is_cuda else None
        start = time.perf_counter()
        forward(model, ids)
        torch.cuda.synchronize() if ids.is_cuda else None
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def profile(torch, model, ids, iters: int) -> dict:
    """Per op name: calls, CPU and device microseconds per forward."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if ids.is_cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(iters):
            forward(model, ids)
        torch.cuda.synchronize() if ids.is_cuda else None
    table = {}
    for event in prof.key_averages():
        if not (event.key.startswith("aten::") or event.key.startswith("fr::")):
            continue
        device_us = getattr(event, "device_time_total", None)
        if device_us is None:
            device_us = getattr(event, "cuda_time_total", 0.0)
        table[event.key] = {
            "calls": event.count / iters,
            "cpu_us": event.cpu_time_total / iters,
            "device_us": float(device_us) / iters,
        }
    return table


def dispatched_ops(torch, model, ids) -> list[str]:
    """aten keys ("add.Tensor", "_to_copy") the forward dispatches to a backend."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen = set()

    class Seen(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func._schema.name.split("::", 1)[-1]
            seen.add(name if func._overloadname == "default" else f"{name}.{func._overloadname}")
            return func(*args, **(kwargs or {}))

    with Seen():
        forward(model, ids)
    return sorted(seen)


def compare(torch, got, ref) -> dict:
    got, ref = got.float().cpu(), ref.float().cpu()
    finite = torch.isfinite(got)
    nonfinite = int((~finite & torch.isfinite(ref)).sum())
    diff = torch.where(finite, got - ref, torch.zeros_like(ref))
    rel = float(diff.norm() / ref.norm().clamp_min(1e-30))
    top1 = float((got.argmax(-1) == ref.argmax(-1)).float().mean())
    return {"nonfinite": nonfinite, "rel_err": rel if nonfinite == 0 else None, "top1": top1}


def load_model(spec: dict):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        spec["model"], dtype=getattr(torch, spec["dtype"]), trust_remote_code=bool(spec.get("trust_remote_code"))
    )
    return model.to(spec["device"]).eval()


def run(spec: dict, verdict: dict) -> None:
    import torch

    registry = load_registry(spec["kernels_dir"])
    verdict["stage"] = "load"
    model = load_model(spec)
    ids = inputs(torch, model.config.vocab_size, int(spec.get("batch", 4)), int(spec.get("seq", 256)), spec["device"])
    iters = int(spec.get("iters", 5))
    label_ops = [op for op in spec.get("label_ops") or [] if op in registry.MODEL_HOOKS]
    if spec["mode"] == "reference":
        verdict["stage"] = "forward"
        logits = forward(model, ids).float()
        verdict["ms"] = timed(torch, model, ids, iters)
        aten = dispatched_ops(torch, model, ids)
        verdict["aten_ops"] = aten
        try:
            table = registry.flaggems_table()
            verdict["flaggems_table"] = table
            by_key = {key: fn for fn, keys in table.items() for key in keys}
            verdict["flaggems_candidates"] = sorted({by_key[k] for k in aten if k in by_key})
        except Exception as err:  # no FlagGems here: no FlagGems candidates
            verdict["flaggems_candidates"] = []
            verdict["flaggems_error"] = f"{type(err).__name__}: {err}"
        if spec.get("profile"):
            labels = registry.patch_model(model, label_ops, spec["kernels_dir"], label=True, native=True)
            forward(model, ids)
            verdict["profile"] = profile(torch, model, ids, iters)
            labels.undo()
        model.float()
        full = forward(model, ids).float()
        verdict["floor"] = compare(torch, logits, full)
        torch.save({"logits": logits.cpu()}, spec["ref"])
        verdict["finite"] = bool(torch.isfinite(logits).all())
    else:
        plan = dict(spec["plan"])
        plan.setdefault("kernels_dir", spec["kernels_dir"])
        verdict["stage"] = "apply"
        applied = registry.apply(plan, model, label=bool(spec.get("profile")))
        if spec.get("record_path"):
            import flag_gems

            flag_gems.setup_flaggems_logging(path=spec["record_path"], record=True, once=True)
        verdict["applied"] = applied.summary()
        verdict["stage"] = "forward"
        logits = forward(model, ids)
        if ids.is_cuda:
            torch.cuda.synchronize()
        verdict.update(compare(torch, logits, torch.load(spec["ref"])["logits"]))
        verdict["stage"] = "timing"
        verdict["ms"] = timed(torch, model, ids, iters)
        if spec.get("profile"):
            verdict["profile"] = profile(torch, model, ids, iters)
    verdict["stage"] = "done"


def ran_ops(record_path: str | None) -> list[str]:
    if not record_path or not os.path.exists(record_path):
        return []
    with open(record_path, encoding="utf-8", errors="replace") as handle:
        return sorted({m.group(1) for line in handle for m in [OPLOG.search(line)] if m})


def main(argv: list[str]) -> int:
    verdict: dict = {"ok": False, "stage": "start"}
    spec: dict = {}
    try:
        spec = json.loads(Path(argv[1]).read_text())
        verdict["mode"] = spec["mode"]
        run(spec, verdict)
        verdict["ok"] = True
    except Exception as err:
        text = traceback.format_exc()
        print(text, file=sys.stderr, flush=True)
        verdict["error"] = f"{type(err).__name__}: {err}".splitlines()[0][:500]
        verdict["traceback_ops"] = list(dict.fromkeys(FRAME.findall(text)))
    verdict["ran"] = ran_ops(spec.get("record_path"))
    line = json.dumps(verdict)
    if spec.get("out"):
        Path(spec["out"]).write_text(line)
    print(line, flush=True)
    return 0 if verdict["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
