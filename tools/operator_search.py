"""Operator search: which FlagGems ops break this model on this chip, and which set is correct and fast.

Deterministic code, not a reasoning loop. Every probe is one forward pass of the model in a fresh
process (an illegal memory access poisons the CUDA context for everything after it); the Triton
and FlagGems caches are cleared before every round. A probe's verdict is one of

    crash      the process raised or died        (culprit hint: FlagGems functions its traceback names)
    nonfinite  NaN/Inf logits where the reference is finite
    drift      logits relative error above tolerance (a multiple of the dtype's own error vs float32)
    slow       correct, but the forward is slower than native
    ok

Rounds:
  1. full FlagGems, with FlagGems' op log on: the candidates are the FlagGems functions that ran
     (plus those the native forward dispatches to). Correct -> nothing to localise.
  2. each op group alone (FlagRelease's compute / reduce / index / memory / math), plus each
     traceback culprit alone (a hint is only trusted once a probe of it alone fails).
  3+ every failing set is halved and both halves probed alone, until single ops remain; a set
     that fails while both halves pass is an interaction and is excluded whole.
  So the faulty ops are known after at most ceil(log2(candidates)) + 2 rounds.
  Then speed, one probe at a time so timings do not share the GPU: the correct ops together and
  our kernels together, each profiled per op inside the model; an op is kept only if it is not
  slower than torch's own op in the same forward. Last, the selection and the kernels alone are
  validated, and the fastest correct one at >= native speed (or native) is the answer.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from fr_agent.core.config import Settings
from fr_agent.core.recipe import ModelRef, OperatorPlan, Recipe
from fr_agent.kernels import KERNELS_DIR
from fr_agent.kernels.registry import GROUPS, MODEL_HOOKS, group_of
from fr_agent.sandboxes.base import Sandbox, probe_verdict
from fr_agent.sandboxes.local import HostSandbox
from fr_agent.tools.base import Verification

Status = Literal["ok", "slow", "crash", "nonfinite", "drift"]
FAULTS = ("crash", "nonfinite", "drift")


class SearchError(Exception):
    """The search could not run (no reference, FlagGems not importable): reported, not a verdict on an op."""


class SearchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    drift_factor: float = Field(4.0, description="tolerance = factor x (this dtype's own logits error vs float32)")
    drift_min: float = Field(0.01, description="tolerance never below this relative logits error")
    slow_below: float = Field(0.95, description="a forward under this fraction of native speed is 'slow'")
    op_margin: float = Field(0.05, description="an op is kept if its in-model time <= native x (1 + margin)")
    parallel: int = Field(4, ge=1, description="correctness probes run at once (timing probes run alone)")
    # Big enough that the forward is bound by the GPU, not by kernel launches: process-to-process CPU noise
    # then stops deciding which ops look fast (on an H100 with a ~300M model, 4x512 tokens were launch-bound).
    batch: int = 16
    seq: int = 1024
    iters: int = 20


class ProbePlan(BaseModel):
    """One probe: which FlagGems functions (None: all of them) and which of our kernels."""

    model_config = ConfigDict(extra="forbid")

    label: str
    flaggems: bool = True
    include: list[str] | None = None
    kernels: list[str] = Field(default_factory=list)
    profile: bool = False
    record: bool = False

    def operator_plan(self) -> dict:
        return {
            "backend": "flaggems" if self.flaggems else "torch",
            "include": self.include,
            "kernels": self.kernels,
            "disabled": [],
            "reference": [],
            "cast": {},
        }


class Probe(BaseModel):
    label: str
    flaggems: bool = True
    include: list[str] | None
    kernels: list[str]
    status: Status
    stage: str | None = None
    rel_err: float | None = None
    top1: float | None = None
    nonfinite: int = 0
    ms: float | None = None
    speed: float | None = None
    error: str | None = None
    culprits: list[str] = Field(default_factory=list)
    ran: list[str] = Field(default_factory=list)
    log: str | None = None
    profile: dict[str, dict[str, float]] = Field(default_factory=dict, exclude=True)

    def line(self) -> str:
        gems = (
            "no FlagGems"
            if not self.flaggems or self.include == []
            else "all FlagGems"
            if self.include is None
            else f"{len(self.include)} FlagGems"
        )
        what = gems + (f" + {'/'.join(self.kernels)}" if self.kernels else "")
        err = f" rel_err={self.rel_err:.3g}" if self.rel_err is not None else ""
        speed = f" {self.speed:.2f}x" if self.speed else ""
        return f"{self.label} ({what}): {self.status}{err}{speed}" + (f" [{self.error[:120]}]" if self.error else "")


class Round(BaseModel):
    index: int
    purpose: str
    probes: list[Probe]
    seconds: float


class Selection(BaseModel):
    include: list[str] = Field(description="FlagGems functions registered (only_enable)")
    exclude: list[str] = Field(description="candidate FlagGems functions left out: faulty, or slower than torch here")
    kernels: list[str] = Field(description="our Triton kernels swapped into the model")


class SearchReport(BaseModel):
    native_ms: float
    tolerance: float
    candidates: list[str]
    round_bound: int
    fault_rounds: int
    faulty: dict[str, str]
    slow: list[str]
    kernels_rejected: dict[str, str]
    rounds: list[Round]
    selection: Selection
    final: Probe | None

    def summary(self) -> str:
        chosen = f"{len(self.selection.include)} FlagGems ops" + (
            f" + kernels {', '.join(self.selection.kernels)}" if self.selection.kernels else ""
        )
        faulty = ", ".join(f"{op} ({why})" for op, why in sorted(self.faulty.items())) or "none"
        final = (
            f"; {self.final.speed:.2f}x native, logits rel err {self.final.rel_err:.3g}"
            if self.final and self.final.speed and self.final.rel_err is not None
            else ""
        )
        return (
            f"{len(self.candidates)} candidate ops; faulty after {self.fault_rounds} rounds "
            f"(bound {self.round_bound}): {faulty}; {len(self.slow)} slower than torch; selected {chosen}{final}"
        )


class ProbeRunner(Protocol):
    def reference(self) -> dict: ...

    def round(self, index: int, plans: Sequence[ProbePlan], parallel: int) -> list[dict]: ...


def event_names(keys: Sequence[str]) -> set[str]:
    """Profiler event names of aten keys: "add.Tensor" -> "aten::add"."""
    return {"aten::" + key.split(".", 1)[0] for key in keys}


def op_cost(profile: dict, names: set[str]) -> float | None:
    """An op's share of the forward: per event max(CPU, device) time, summed (None: never seen)."""
    rows = [profile[n] for n in names if n in profile]
    return sum(max(r["cpu_us"], r["device_us"]) for r in rows) if rows else None


class OperatorSearch:
    def __init__(self, runner: ProbeRunner, settings: SearchSettings | None = None):
        self.runner = runner
        self.settings = settings or SearchSettings()
        self.rounds: list[Round] = []
        self.table: dict[str, list[str]] = {}
        self.native_ms = 0.0
        self.tolerance = 0.0

    def classify(self, plan: ProbePlan, verdict: dict) -> Probe:
        probe = Probe(
            label=plan.label,
            flaggems=plan.flaggems,
            include=plan.include,
            kernels=plan.kernels,
            status="ok",
            stage=verdict.get("stage"),
            rel_err=verdict.get("rel_err"),
            top1=verdict.get("top1"),
            nonfinite=int(verdict.get("nonfinite") or 0),
            ms=verdict.get("ms"),
            log=verdict.get("log"),
            ran=list(verdict.get("ran") or []),
            profile=verdict.get("profile") or {},
        )
        probe.speed = round(self.native_ms / probe.ms, 3) if probe.ms else None
        enabled = set(plan.include) if plan.include is not None else None
        if not verdict.get("ok"):
            probe.status, probe.error = "crash", verdict.get("error") or "probe printed no verdict"
            named = verdict.get("traceback_ops") or []
            # a traceback names a culprit only through a registered op that this probe enabled
            probe.culprits = [op for op in named if op in self.table and (enabled is None or op in enabled)]
        elif probe.nonfinite:
            probe.status, probe.error = "nonfinite", f"{probe.nonfinite} NaN/Inf logits"
        elif probe.rel_err is not None and probe.rel_err > self.tolerance:
            probe.status, probe.error = "drift", f"logits rel err {probe.rel_err:.3g} > {self.tolerance:.3g}"
        elif probe.speed is not None and probe.speed < self.settings.slow_below:
            probe.status = "slow"
        return probe

    def probe_round(self, purpose: str, plans: list[ProbePlan], *, timing: bool = False) -> list[Probe]:
        started = time.monotonic()
        index = len(self.rounds) + 1
        verdicts = self.runner.round(index, plans, 1 if timing else self.settings.parallel)
        probes = [self.classify(p, v) for p, v in zip(plans, verdicts)]
        self.rounds.append(
            Round(index=index, purpose=purpose, probes=probes, seconds=round(time.monotonic() - started, 1))
        )
        return probes

    def prime(self, ref: dict) -> None:
        """Take the native measurements: time, the tolerance (from this dtype's own error), FlagGems' table."""
        if not ref.get("ok") or not ref.get("finite", True):
            raise SearchError(
                f"the native forward failed, nothing to compare against: "
                f"{ref.get('error') or 'non-finite native logits'}"
            )
        self.native_ms = float(ref["ms"])
        self.table = ref.get("flaggems_table") or {}
        floor = (ref.get("floor") or {}).get("rel_err") or 0.0
        self.tolerance = max(self.settings.drift_min, self.settings.drift_factor * floor)

    def run(self) -> SearchReport:
        ref = self.runner.reference()
        self.prime(ref)
        if not self.table:
            raise SearchError(f"FlagGems is not importable in the sandbox: {ref.get('flaggems_error') or 'no ops'}")
        native_profile = ref.get("profile") or {}

        full = self.probe_round("full FlagGems", [ProbePlan(label="full", record=True)])[0]
        if full.status == "crash" and full.stage in ("start", "load", "apply") and not full.culprits:
            raise SearchError(f"FlagGems could not be applied ({full.stage}): {full.error}")
        candidates = sorted((set(full.ran) | set(ref.get("flaggems_candidates") or [])) & set(self.table))
        bound = math.ceil(math.log2(max(len(candidates), 1))) + 2
        faulty = self.localise(candidates, full) if full.status in FAULTS else {}
        fault_rounds = len(self.rounds)

        good = [op for op in candidates if op not in faulty]
        slow, kept = self.per_op_speed(good, native_profile)
        kernels_rejected, fast_kernels = self.kernel_speed(native_profile)
        final = self.choose(kept, fast_kernels)
        include = (final.include or []) if final else []
        selection = Selection(
            include=sorted(include),
            exclude=sorted(set(candidates) - set(include)),
            kernels=final.kernels if final else [],
        )
        return SearchReport(
            native_ms=self.native_ms,
            tolerance=self.tolerance,
            candidates=candidates,
            round_bound=bound,
            fault_rounds=fault_rounds,
            faulty=faulty,
            slow=slow,
            kernels_rejected=kernels_rejected,
            rounds=self.rounds,
            selection=selection,
            final=final,
        )

    def localise(self, candidates: list[str], full: Probe) -> dict[str, str]:
        hints = [op for op in full.culprits if op in candidates]
        groups: list[tuple[str, list[str]]] = [(f"traceback:{op}", [op]) for op in hints]
        for group in GROUPS:
            members = [op for op in candidates if group_of(op) == group and op not in hints]
            if members:
                groups.append((group, members))
        probes = self.probe_round("op groups alone", [ProbePlan(label=name, include=ops) for name, ops in groups])
        suspicious = [(ops, probe.status) for (_, ops), probe in zip(groups, probes) if probe.status in FAULTS]
        if not suspicious:  # every group passes alone, all together fail: no split localises it
            return {op: "interaction" for op in candidates}
        faulty: dict[str, str] = {}
        while suspicious:
            for ops, status in suspicious:
                if len(ops) == 1:
                    faulty[ops[0]] = status
            split = [ops for ops, _ in suspicious if len(ops) > 1]
            if not split:
                break
            plans, halves = [], []
            for ops in split:
                a, b = ops[: len(ops) // 2], ops[len(ops) // 2 :]
                halves.append((ops, a, b))
                plans += [ProbePlan(label=_span(a), include=a), ProbePlan(label=_span(b), include=b)]
            probes = self.probe_round("bisect", plans)
            suspicious = []
            for i, (ops, a, b) in enumerate(halves):
                failed = [
                    (half, p.status) for half, p in ((a, probes[2 * i]), (b, probes[2 * i + 1])) if p.status in FAULTS
                ]
                if not failed:
                    faulty.update({op: "interaction" for op in ops})
                suspicious += failed
        return faulty

    def per_op_speed(self, good: list[str], native_profile: dict) -> tuple[list[str], list[str]]:
        """Ops slower inside the model than torch's own (slow), and the rest (kept)."""
        if not good:
            return [], []
        probe = self.probe_round(
            "per-op timing: the correct FlagGems ops",
            [ProbePlan(label="correct", include=good, profile=True)],
            timing=True,
        )[0]
        if probe.status in FAULTS:  # each correct alone, not together: keep none rather than guess
            return list(good), []
        slow, kept = [], []
        for op in good:
            names = event_names(self.table.get(op, []))
            gems, native = op_cost(probe.profile, names), op_cost(native_profile, names)
            fast = gems is not None and native is not None and gems <= native * (1 + self.settings.op_margin)
            (kept if fast else slow).append(op)
        return slow, kept

    def kernel_speed(self, native_profile: dict) -> tuple[dict[str, str], list[str]]:
        hooks = sorted(MODEL_HOOKS)
        probe = self.probe_round(
            "per-op timing: our kernels",
            [ProbePlan(label="kernels", flaggems=False, kernels=hooks, profile=True)],
            timing=True,
        )[0]
        if probe.status in FAULTS:
            return {op: probe.status for op in hooks}, []
        rejected, fast = {}, []
        for op in hooks:
            ours, native = op_cost(probe.profile, {f"fr::{op}"}), op_cost(native_profile, {f"fr::{op}"})
            if ours is None or native is None:
                rejected[op] = "not in this model"
            elif ours > native * (1 + self.settings.op_margin):
                rejected[op] = f"slower in the model ({ours:.0f} vs {native:.0f} us per forward)"
            else:
                fast.append(op)
        return rejected, fast

    def choose(self, kept: list[str], kernels: list[str]) -> Probe | None:
        """Validate the selection and the kernels alone against native timed in the same round (one at a
        time); the fastest correct one at >= native speed wins."""
        plans = []
        if kept:
            plans.append(ProbePlan(label="selection", include=kept, kernels=kernels))
        if kernels:
            plans.append(ProbePlan(label="kernels only", flaggems=False, kernels=kernels))
        if not plans:
            return None
        plans.append(ProbePlan(label="native", flaggems=False))
        probes = self.probe_round("validate the selection", plans, timing=True)
        native = probes.pop()
        if native.ms:  # speeds against this round's own native run, not the reference's older one
            for p in probes:
                p.speed = round(native.ms / p.ms, 3) if p.ms else None
                if p.status == "slow" and p.speed and p.speed >= self.settings.slow_below:
                    p.status = "ok"
        correct = [p for p in probes if p.status not in FAULTS and (p.speed or 0.0) >= 1.0]
        best = max(correct, key=lambda p: p.speed or 0.0, default=None)
        if best is not None and best.include is None:
            best.include = []
        return best


def _span(ops: list[str]) -> str:
    return ops[0] if len(ops) == 1 else f"{ops[0]}..{ops[-1]}"


class SandboxRunner:
    """Runs op_probe.py in the sandbox, one fresh process per probe, caches cleared before each round."""

    def __init__(
        self,
        sandbox: Sandbox,
        recipe: Recipe,
        kernels_dir: Path,
        settings: SearchSettings,
        *,
        timeout: float,
        trust_remote_code: bool = False,
    ):
        self.sandbox, self.kernels_dir, self.settings, self.timeout = sandbox, kernels_dir, settings, timeout
        self.dir = Path(sandbox.workdir) / "op-search"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cache = self.dir / "cache"
        self.recipe = recipe.model_copy(
            update={
                "env": {
                    **recipe.env,
                    "TRITON_CACHE_DIR": str(self.cache / "triton"),
                    "FLAGGEMS_CACHE_DIR": str(self.cache / "flaggems"),
                }
            }
        )
        self.base = {
            "model": recipe.model.path or recipe.model.name,
            "dtype": recipe.dtype,
            "device": recipe.torch_device,
            "kernels_dir": str(kernels_dir),
            "ref": str(self.dir / "reference.pt"),
            "batch": settings.batch,
            "seq": settings.seq,
            "iters": settings.iters,
            "trust_remote_code": trust_remote_code,
        }

    def clear_caches(self) -> None:
        shutil.rmtree(self.cache, ignore_errors=True)
        self.cache.mkdir(parents=True)

    def run_probe(self, name: str, spec: dict) -> dict:

        path = self.dir / f"{name}.json"
        path.write_text(json.dumps({**self.base, **spec}))
        result = self.sandbox.run(
            [self.sandbox.python, self.sandbox.probe("op_probe.py"), str(path)],
            self.recipe,
            timeout=self.timeout,
            log_name=f"op-search-{name}",
        )
        verdict = probe_verdict(result)
        if "mode" not in verdict:  # no verdict line: the process died (signal, timeout, OOM kill)
            if result.timed_out:
                why = f"timed out after {self.timeout:g}s"
            elif result.returncode is not None and result.returncode < 0:
                why = f"killed by {signal.Signals(-result.returncode).name}"
            else:
                why = f"exit code {result.returncode} with no verdict"
            verdict = {"ok": False, "error": f"probe process {why}", "stage": "unknown", "ran": []}
        verdict["log"] = result.log_path
        return verdict

    def reference(self) -> dict:
        self.clear_caches()
        ref = self.run_probe("reference", {"mode": "reference", "profile": True, "label_ops": sorted(MODEL_HOOKS)})
        (self.dir / "reference.verdict.json").write_text(json.dumps(ref))
        return ref

    def check(self, plan: dict, settings: SearchSettings | None = None) -> Probe:
        """One fresh probe of the model under an operator plan (the recipe's), judged like a search probe."""
        saved = self.dir / "reference.verdict.json"
        ref = json.loads(saved.read_text()) if saved.exists() and Path(self.base["ref"]).exists() else self.reference()
        search = OperatorSearch(self, settings or self.settings)
        search.prime(ref)
        self.clear_caches()
        verdict = self.run_probe("check", {"mode": "probe", "plan": plan})
        include = plan.get("include") if plan.get("backend") == "flaggems" else []
        return search.classify(
            ProbePlan(
                label="check",
                flaggems=plan.get("backend") == "flaggems",
                include=include,
                kernels=list(plan.get("kernels") or []),
            ),
            verdict,
        )

    def round(self, index: int, plans: Sequence[ProbePlan], parallel: int) -> list[dict]:
        self.clear_caches()

        def one(numbered: tuple[int, ProbePlan]) -> dict:
            i, plan = numbered
            name = f"r{index}-{i}-{''.join(c if c.isalnum() else '_' for c in plan.label)[:40]}"
            spec = {
                "mode": "probe",
                "plan": plan.operator_plan(),
                "profile": plan.profile,
                "label_ops": plan.kernels if plan.profile else [],
            }
            if plan.record:
                spec["record_path"] = str(self.dir / f"{name}.oplog")
            return self.run_probe(name, spec)

        pool = ThreadPoolExecutor(max_workers=max(1, parallel))
        futures = [pool.submit(one, numbered) for numbered in enumerate(plans)]
        try:
            while not all(future.done() for future in futures):
                wait(futures, timeout=0.5)  # a signal taken by a worker thread still reaches this one within 0.5 s
            return [future.result() for future in futures]
        except BaseException:  # Ctrl-C / SIGTERM reach this thread only: stop the probes the workers wait on
            for future in futures:
                future.cancel()  # queued probes never start
            while not all(future.done() for future in futures):
                self.sandbox.stop_running(grace_s=2)
                wait(futures, timeout=0.2)
            raise
        finally:
            pool.shutdown(wait=True)


def verify_model(
    sandbox: Sandbox, recipe: Recipe, settings: Settings, passed: Callable[[Probe], str], failed: str
) -> Verification:
    """One fresh probe of the model under the recipe's operator plan; correct (ok, or correct but slow) passes.
    `passed` describes a passing probe; `failed` leads the detail of a failing one."""
    runner = SandboxRunner(sandbox, recipe, KERNELS_DIR, SearchSettings(), timeout=settings.timeouts.verify)
    try:
        probe = runner.check(recipe.operators.model_dump())
    except SearchError as err:
        return Verification(ok=False, detail=str(err))
    ok = probe.status in ("ok", "slow")
    detail = passed(probe) if ok else f"{failed}: {probe.status}: {probe.error}"
    return Verification(ok=ok, detail=detail, log_path=probe.log)


def main(argv: list[str] | None = None) -> int:
    """Run the search on a model outside a migration: `python -m fr_agent.tools.operator_search MODEL_DIR OUT_DIR`."""

    parser = argparse.ArgumentParser(description="operator search on one model, in a host sandbox")
    parser.add_argument("model", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--timeout", type=float, default=300)
    for name, field in SearchSettings.model_fields.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(field.default), default=field.default)
    args = parser.parse_args(argv)
    settings = SearchSettings(**{name: getattr(args, name) for name in SearchSettings.model_fields})
    args.out.mkdir(parents=True, exist_ok=True)
    sandbox = HostSandbox(args.out / "sandbox", args.out / "cache", args.out / "hf")
    recipe = Recipe(
        model=ModelRef(name=args.model.name, path=str(args.model.resolve())),
        chip="host",
        base_image="host",
        torch_device=args.device,
        dtype=args.dtype,
        packages=[],
        operators=OperatorPlan(backend="flaggems"),
    )
    sandbox.prepare(recipe)
    runner = SandboxRunner(sandbox, recipe, KERNELS_DIR, settings, timeout=args.timeout)
    try:
        report = OperatorSearch(runner, settings).run()
    except SearchError as err:
        print(f"error: operator search failed: {err}")
        return 1
    (args.out / "report.json").write_text(report.model_dump_json(indent=2))
    for rnd in report.rounds:
        print(f"round {rnd.index} ({rnd.purpose}, {rnd.seconds:.0f}s):")
        for probe in rnd.probes:
            print(f"  {probe.line()}")
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
