"""The operator search against a scripted twin of the probe runner: the same verdicts op_probe.py prints,
decided by a table of planted faults, so the bisection, the round bound, the culprit rules and the speed
selection are checked without a GPU."""

from __future__ import annotations

import math
import os

import pytest

from fr_agent.tools.operator_search import OperatorSearch, SearchError, SearchSettings

OPS = [
    "add",
    "arange",
    "bmm",
    "cat",
    "copy_",
    "cos",
    "embedding",
    "mean_dim",
    "mm",
    "mul",
    "neg",
    "pow_tensor_scalar",
    "rsqrt",
    "silu",
    "sin",
    "to_copy",
    "zero_",
]
TABLE = {op: [f"{op}.Tensor"] for op in OPS}
KERNELS = ["rms_norm", "silu_and_mul", "rotary_embedding"]


class ScriptedRunner:
    """faults: op -> crash | nonfinite | drift; pair: ops that only fail together; slow: ops slower than torch."""

    def __init__(
        self,
        faults=None,
        pair=(),
        slow=(),
        traceback=(),
        native_ms=10.0,
        kernel_gain=2.0,
        ran=OPS,
        dispatched=OPS,
        reference_ok=True,
        table=TABLE,
    ):
        self.faults, self.pair, self.slow, self.traceback = dict(faults or {}), set(pair), set(slow), list(traceback)
        self.native_ms, self.kernel_gain, self.ran = native_ms, kernel_gain, list(ran)
        self.reference_ok, self.table, self.dispatched = reference_ok, table, list(dispatched)
        self.rounds: list[list[str]] = []

    def reference(self) -> dict:
        if not self.reference_ok:
            return {"ok": False, "error": "OutOfMemoryError: CUDA out of memory"}
        profile = {f"aten::{op}": {"calls": 24, "cpu_us": 50.0, "device_us": 100.0} for op in OPS}
        profile.update({f"fr::{k}": {"calls": 24, "cpu_us": 80.0, "device_us": 300.0} for k in KERNELS})
        return {
            "ok": True,
            "finite": True,
            "ms": self.native_ms,
            "flaggems_table": self.table,
            "flaggems_candidates": self.dispatched,
            "floor": {"rel_err": 0.004},
            "profile": profile,
        }

    def verdict(self, plan) -> dict:
        on = (
            set(self.table)
            if plan.flaggems and plan.include is None
            else set(plan.include or [])
            if plan.flaggems
            else set()
        )
        faults = {op: self.faults[op] for op in sorted(on) if op in self.faults}
        if self.pair and self.pair <= on:
            faults["pair"] = "nonfinite"
        if "crash" in faults.values():
            return {
                "ok": False,
                "stage": "forward",
                "error": "RuntimeError: an illegal memory access was encountered",
                "traceback_ops": self.traceback,
                "ran": sorted(self.ran)[:3] if plan.record else [],
            }
        ms = self.native_ms * (1 + 0.5 * len(on & self.slow)) / (self.kernel_gain if plan.kernels else 1.0)
        profile = {
            f"aten::{op}": {"calls": 24, "cpu_us": 50.0, "device_us": 300.0 if op in self.slow else 90.0} for op in on
        }
        profile.update({f"fr::{k}": {"calls": 24, "cpu_us": 60.0, "device_us": 100.0} for k in plan.kernels})
        return {
            "ok": True,
            "stage": "done",
            "nonfinite": 7 if "nonfinite" in faults.values() else 0,
            "rel_err": None if "nonfinite" in faults.values() else 0.5 if "drift" in faults.values() else 0.006,
            "top1": 0.99,
            "ms": ms,
            "profile": profile,
            "ran": self.ran if plan.record else [],
        }

    def round(self, index, plans, parallel):
        self.rounds.append([p.label for p in plans])
        return [self.verdict(p) for p in plans]


def search(runner: ScriptedRunner):
    report = OperatorSearch(runner, SearchSettings()).run()
    assert report.fault_rounds <= report.round_bound == math.ceil(math.log2(len(report.candidates))) + 2
    return report


@pytest.mark.parametrize(
    "faults",
    [
        {"mul": "crash"},
        {"rsqrt": "nonfinite"},
        {"cat": "drift"},
        {"mul": "crash", "rsqrt": "nonfinite", "to_copy": "drift"},
    ],
    ids=str,
)
def test_faulty_ops_found_within_the_round_bound(faults):
    report = search(ScriptedRunner(faults=faults))
    assert report.faulty == faults
    assert set(faults) <= set(report.selection.exclude)
    assert not set(faults) & set(report.selection.include)
    assert report.final is not None and report.final.status == "ok"


def test_crash_vs_nan_vs_drift_vs_slow_are_told_apart():
    report = search(ScriptedRunner(faults={"mul": "crash", "rsqrt": "nonfinite", "cat": "drift"}, slow={"silu"}))
    statuses = {p.label: p.status for r in report.rounds for p in r.probes}
    assert statuses["full"] == "crash"
    assert {statuses["mul"], statuses["rsqrt"], statuses["cat"]} == {"crash", "nonfinite", "drift"}
    assert report.faulty == {"mul": "crash", "rsqrt": "nonfinite", "cat": "drift"}
    assert "silu" in report.slow and "silu" not in report.faulty


def test_the_drift_tolerance_follows_the_dtypes_own_error():
    report = search(ScriptedRunner())
    assert report.tolerance == pytest.approx(max(0.01, 4 * 0.004))
    assert report.faulty == {}  # rel err 0.006 is within it: no op is blamed for bf16 rounding


def test_a_traceback_culprit_is_trusted_only_once_it_fails_alone():
    # the crash surfaces in `add` (an asynchronous CUDA error), the faulty op is `mul`
    report = search(ScriptedRunner(faults={"mul": "crash"}, traceback=["add", "__call__", "not_an_op"]))
    assert report.faulty == {"mul": "crash"}
    first_bisect = report.rounds[1]
    assert first_bisect.probes[0].label == "traceback:add" and first_bisect.probes[0].status != "crash"
    assert all(p.culprits == ["add"] for p in report.rounds[0].probes)  # only names of registered ops


def test_a_correct_traceback_culprit_saves_the_bisection():
    report = search(ScriptedRunner(faults={"mul": "crash"}, traceback=["mul"]))
    assert report.faulty == {"mul": "crash"} and report.fault_rounds == 2


def test_ops_failing_only_together_are_excluded_as_an_interaction():
    report = search(ScriptedRunner(pair={"cos", "sin"}))  # same group, each fine alone
    assert {report.faulty.get("cos"), report.faulty.get("sin")} == {"interaction"}
    assert not {"cos", "sin"} & set(report.selection.include)


def test_selection_keeps_only_ops_not_slower_than_torch_and_fast_kernels():
    report = search(ScriptedRunner(slow={"cat", "to_copy"}))
    assert set(report.slow) == {"cat", "to_copy"}
    assert set(report.selection.include) == set(OPS) - {"cat", "to_copy"}
    assert report.selection.kernels == sorted(KERNELS)
    assert report.final.speed >= 1.0


def test_nothing_faster_than_native_selects_native():
    runner = ScriptedRunner(slow=set(OPS), kernel_gain=0.5)
    report = search(runner)
    assert report.selection.include == [] and report.selection.kernels == [] and report.final is None


def test_candidates_are_what_ran_plus_what_the_forward_dispatches():
    report = search(ScriptedRunner(ran=["add", "silu", "__call__"], dispatched=["mm"]))
    assert report.candidates == ["add", "mm", "silu"]  # FlagGems' op log + the dispatch list, registered ops only
    report = search(ScriptedRunner(faults={"mul": "crash"}, ran=["add"], dispatched=OPS))
    assert report.candidates == sorted(OPS)  # a crash cuts the op log short: the dispatch list still has all


def test_every_round_clears_caches_and_timing_rounds_run_one_probe_at_a_time():
    calls = []

    class Recording(ScriptedRunner):
        def round(self, index, plans, parallel):
            calls.append((index, parallel))
            return super().round(index, plans, parallel)

    report = search(Recording(faults={"mul": "crash"}))
    assert [i for i, _ in calls] == list(range(1, len(report.rounds) + 1))
    timing = {r.index for r in report.rounds if r.purpose.startswith(("per-op", "validate"))}
    assert all(p == 1 for i, p in calls if i in timing) and any(p > 1 for i, p in calls if i not in timing)


def test_search_errors_are_reported_not_guessed():
    with pytest.raises(SearchError, match="native forward failed"):
        search(ScriptedRunner(reference_ok=False))
    with pytest.raises(SearchError, match="not importable"):
        search(ScriptedRunner(table={}))


def test_an_interrupt_stops_the_parallel_probes_the_workers_wait_on(tmp_path, monkeypatch):
    """Ctrl-C (or SIGTERM, turned into it) reaches the main thread only; the probes running in worker
    threads are stopped too, at once, instead of each running to its timeout."""
    import signal
    import threading
    import time

    from fr_agent.core.recipe import ModelRef, Recipe
    from fr_agent.sandboxes.local import LocalSandbox
    from fr_agent.tools.operator_search import ProbePlan, SandboxRunner

    box = LocalSandbox(tmp_path / "sb", tmp_path / "cache", tmp_path / "hf")
    recipe = Recipe(model=ModelRef(name="m", path="/m"), chip="cpu", base_image="img", packages=[])
    runner = SandboxRunner(box, recipe, tmp_path, SearchSettings(), timeout=120)
    pids: list[int] = []

    def sleepy_probe(name, spec):
        result = box.run(
            ["bash", "-c", f"echo $$ > {tmp_path / name}.pid; exec sleep 120"], recipe, timeout=120, log_name=name
        )
        return {"returncode": result.returncode}

    monkeypatch.setattr(runner, "run_probe", sleepy_probe)
    plans = [ProbePlan(label=f"p{i}", flaggems=True, include=[]) for i in range(3)]

    def interrupt_when_running():
        while len(list(tmp_path.glob("*.pid"))) < 2:
            time.sleep(0.05)
        pids.extend(int(p.read_text()) for p in tmp_path.glob("*.pid") if p.read_text().strip())
        os.kill(os.getpid(), signal.SIGINT)  # process-directed, as Ctrl-C is: any thread may take it

    # Python's own SIGINT handler, unblocked, whatever an earlier test in this process left behind
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        threading.Thread(target=interrupt_when_running, daemon=True).start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            runner.round(1, plans, parallel=2)
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    assert time.monotonic() - started < 30
    assert pids and not box._running
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not (tmp_path / "r1-2-p2.pid").exists()  # the queued probe never started
