"""The precheck's findings: what the host (or a sandbox, from inside) has or lacks before anything runs."""

from __future__ import annotations

from pydantic import BaseModel


class Check(BaseModel):
    name: str
    ok: bool
    detail: str
    required: bool = True


class Precheck(BaseModel):
    """Every check of one precheck, and where the weights were found (when the chip is there to use them)."""

    checks: list[Check]
    model_path: str | None = None

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks if c.required)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.required and not c.ok]


def disk_needed_gb(params_b: float) -> float:
    """Disk an attempt needs, in GB: 8 for the stack plus 2.5 per billion parameters of weights. Spelled once:
    the host's precheck and a sandbox's own both judge by it."""
    return 8 + params_b * 2.5
