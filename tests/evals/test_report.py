"""The eval gate: average percent difference under the threshold; NaN or a missing metric fails."""

from __future__ import annotations

import math

from fr_agent.evals.consistency import perplexity, prefix_agreement
from fr_agent.evals.report import EvalReport, MetricRow
from fr_agent.playbooks.accuracy import diagnose_eval
from fr_agent.recipe import ModelRef, OperatorPlan, Recipe


def report(*rows: tuple[str, float, float]) -> EvalReport:
    return EvalReport(metrics=[MetricRow(name=n, reference=r, migrated=m) for n, r, m in rows],
                      reference_backend="ref", migrated_backend="mig")


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
    recipe = Recipe(model=ModelRef(name="m"), chip="cpu", base_image="i", dtype="bfloat16", packages=[],
                    operators=OperatorPlan(backend="kernels", ops=["rms_norm", "softmax"], reference=["softmax"]))
    diagnosis = diagnose_eval(report(("agreement", 1.0, 0.7)), recipe, ["float32", "bfloat16"])
    assert [(c.tool, c.args) for c in diagnosis.tool_calls] == [
        ("patch_operator", {"op": "rms_norm", "strategy": "reference"}),
        ("fix_serve_config", {"key": "dtype", "value": "float32"})]
    already_fp32 = recipe.model_copy(update={"dtype": "float32", "operators": OperatorPlan()})
    assert diagnose_eval(report(("agreement", 1.0, 0.7)), already_fp32, ["float32"]).category == "unrepairable"
