"""Diagnosis of an eval gate failure: the migrated model drifts from the reference.

The fix ladder mirrors what people do by hand: first take operator overrides back to the torch
reference (they are the usual source of drift), then raise the compute precision.
"""

from __future__ import annotations

from fr_agent.core.recipe import Recipe
from fr_agent.evals.report import EvalReport
from fr_agent.playbooks.diagnose import Diagnosis, signature_of
from fr_agent.tools.base import ToolCall


def diagnose_eval(report: EvalReport, recipe: Recipe, chip_dtypes: list[str]) -> Diagnosis:
    worst = max(report.metrics, key=lambda m: m.pct_diff if m.finite else float("inf"))
    evidence = [
        f"{m.name}: reference {m.reference:.4f}, migrated {m.migrated:.4f} ({m.pct_diff:.2f}%)" for m in report.metrics
    ]
    calls = []
    if recipe.operators.backend == "flaggems" and recipe.operators.include is None and recipe.torch_device != "cpu":
        # all of FlagGems is on: find the faulty and the slow ops by probing the model, not op by op
        calls.append(ToolCall(tool="search_operators", args={}))
    if recipe.operators.backend != "torch":
        overridden = [
            op for op in recipe.operators.ops if op not in recipe.operators.reference + recipe.operators.disabled
        ]
        calls += [ToolCall(tool="patch_operator", args={"op": op, "strategy": "reference"}) for op in overridden]
    if recipe.dtype != "float32" and "float32" in chip_dtypes:
        calls.append(ToolCall(tool="fix_serve_config", args={"key": "dtype", "value": "float32"}))
    return Diagnosis(
        stage="eval",
        category="fix_serve_config" if calls else "unrepairable",
        playbook="eval-drift",
        explanation=f"migrated model drifts from the reference ({report.gate_reason}); worst: {worst.name}",
        evidence=evidence,
        params={"dtype": recipe.dtype, "worst_metric": worst.name},
        tool_calls=calls,
        confidence=0.7,
        signature=signature_of(
            "eval", "eval-drift", {"dtype": recipe.dtype, "backend": recipe.operators.backend}, evidence
        ),
    )
