"""The eval gate: average percent difference under the threshold; NaN or a missing metric fails."""

from __future__ import annotations

import json
import math
import os

import pytest

from fr_agent.core.recipe import ModelRef, OperatorPlan, Recipe
from fr_agent.evals.consistency import perplexity, prefix_agreement
from fr_agent.evals.report import EvalReport, MetricRow, SuiteOutcome
from fr_agent.playbooks.accuracy import diagnose_eval


def report(*rows: tuple[str, float, float]) -> EvalReport:
    return EvalReport(
        metrics=[MetricRow(name=n, reference=r, migrated=m) for n, r, m in rows],
        reference_backend="ref",
        migrated_backend="mig",
    )


def test_gate_uses_average_percent_difference():
    passing = report(("agreement", 1.0, 0.96), ("ppl", 10.0, 10.2))  # 4% and 2% -> 3%
    assert math.isclose(passing.metrics[0].abs_diff, 0.04)
    assert math.isclose(passing.avg_pct_diff, 3.0) and passing.gate_passed
    failing = report(("agreement", 1.0, 0.90), ("ppl", 10.0, 10.1))  # 10% and 1% -> 5.5%
    assert not failing.gate_passed and "5.50% >= 5%" in failing.gate_reason


def test_nan_or_no_metrics_fail():
    assert not report(("ppl", 10.0, float("nan"))).gate_passed
    assert "non-finite" in report(("ppl", 10.0, float("nan"))).gate_reason
    assert not report().gate_passed


def test_metric_helpers():
    assert prefix_agreement([1, 2, 3, 4], [1, 2, 9, 4]) == 0.5
    assert prefix_agreement([1, 2], [1, 2]) == 1.0
    assert math.isclose(perplexity([math.log(0.5)] * 4), 2.0)


def test_drift_diagnosis_walks_operators_then_precision():
    recipe = Recipe(
        model=ModelRef(name="m"),
        chip="cpu",
        base_image="i",
        dtype="bfloat16",
        packages=[],
        operators=OperatorPlan(backend="kernels", ops=["rms_norm", "softmax"], reference=["softmax"]),
    )
    diagnosis = diagnose_eval(report(("agreement", 1.0, 0.7)), recipe, ["float32", "bfloat16"])
    assert [(c.tool, c.args) for c in diagnosis.tool_calls] == [
        ("patch_operator", {"op": "rms_norm", "strategy": "reference"}),
        ("fix_serve_config", {"key": "dtype", "value": "float32"}),
    ]
    already_fp32 = recipe.model_copy(update={"dtype": "float32", "operators": OperatorPlan()})
    assert diagnose_eval(report(("agreement", 1.0, 0.7)), already_fp32, ["float32"]).category == "unrepairable"


def perf_report(*throughputs: tuple[float, float], crashed: bool = False, min_ratio: float = 1.0) -> EvalReport:
    rows = [MetricRow(name="agreement", reference=1.0, migrated=0.99)]
    rows += [
        MetricRow(name=f"throughput_c{i}", kind="throughput", suite="serving", reference=r, migrated=m)
        for i, (r, m) in enumerate(throughputs, 1)
    ]
    rows.append(MetricRow(name="latency_p50_c1", kind="latency", reference=0.1, migrated=0.5, higher_is_better=False))
    outcomes = [SuiteOutcome(suite="tasks", status="crashed", reason="KeyError: 'x'")] if crashed else []
    return EvalReport(
        metrics=rows, outcomes=outcomes, min_perf_ratio=min_ratio, reference_backend="ref", migrated_backend="mig"
    )


def test_only_accuracy_rows_are_averaged_and_throughput_is_gated_by_ratio():
    fast = perf_report((100.0, 200.0), (100.0, 50.0))  # 2x and 0.5x: geometric mean 1.0
    assert math.isclose(fast.avg_pct_diff, 1.0) and math.isclose(fast.perf_ratio, 1.0)
    assert fast.gate_passed and "throughput ratio 1.00x >= 1x" in fast.gate_reason  # latency's 400% is not averaged
    slow = perf_report((100.0, 80.0))
    assert not slow.gate_passed and slow.performance_only
    assert slow.gate_reason == "throughput ratio 0.80x < 1x of the reference"
    assert perf_report((100.0, 80.0), min_ratio=0.75).gate_passed
    assert perf_report().perf_ratio is None and perf_report().gate_passed  # not measured: not gated


def test_crashed_suite_or_zero_throughput_fails_the_gate():
    crashed = perf_report((100.0, 150.0), crashed=True)
    assert not crashed.gate_passed and not crashed.performance_only
    assert "crashed: tasks: KeyError: 'x'" in crashed.gate_reason
    zero = perf_report((100.0, 0.0))
    assert math.isnan(zero.perf_ratio) and not zero.gate_passed


def test_nan_survives_the_run_folders_json_and_summary_writes_null():
    report = perf_report((100.0, float("nan")))
    again = EvalReport.model_validate_json(report.model_dump_json())
    assert math.isnan(again.metrics[1].migrated) and not again.gate_passed
    summary = report.summary()
    assert summary["metrics"][1]["migrated"] is None and summary["perf_ratio"] is None
    assert "non-finite metric(s): throughput_c1" in summary["gate_reason"]
    json.dumps(summary, allow_nan=False)  # strict JSON: what eval.json and transcripts need


def test_lm_eval_skips_cleanly_and_runs_through_the_harness_when_present(monkeypatch):
    import importlib.util
    import sys
    import types

    from fr_agent.evals import harness

    assert harness.unavailable([]) == "no tasks configured (eval.lm_eval_tasks)"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert "not installed" in harness.unavailable(["arc_easy"])
    with pytest.raises(harness.Skip, match="not installed"):
        harness.lm_eval_rows(("http://r", "m"), ("http://g", "m"), "/model", ["arc_easy"], 10)
    monkeypatch.undo()

    calls = []

    def simple_evaluate(model, model_args, tasks, limit):
        calls.append((model, model_args["base_url"], tasks, limit, os.environ.get("HF_DATASETS_OFFLINE")))
        if model_args["base_url"].startswith("http://nodata"):
            raise type("DatasetNotFoundError", (Exception,), {})("arc_easy is not cached")
        acc = 0.5 if "ref" in model_args["base_url"] else 0.25
        return {"results": {"arc_easy": {"alias": "arc_easy", "acc,none": acc, "acc_stderr,none": 0.01}}}

    monkeypatch.setitem(sys.modules, "lm_eval", types.SimpleNamespace(simple_evaluate=simple_evaluate))
    monkeypatch.setattr(harness, "unavailable", lambda tasks: None)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    rows = harness.lm_eval_rows(("http://ref", "m"), ("http://mig", "m"), "/model", ["arc_easy"], 10)
    assert [(r.name, r.suite, r.reference, r.migrated) for r in rows] == [
        ("lm_eval_arc_easy_acc", "lm-eval", 0.5, 0.25)
    ]
    assert calls[0] == ("local-completions", "http://ref/v1/completions", ["arc_easy"], 10, "1")
    assert "HF_DATASETS_OFFLINE" not in os.environ  # offline only while the harness runs
    with pytest.raises(harness.Skip, match="not in the local cache"):
        harness.lm_eval_rows(("http://nodata", "m"), ("http://mig", "m"), "/model", ["arc_easy"], 10)
