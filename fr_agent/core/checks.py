"""One precheck finding: what the host (or a sandbox, from inside) has or lacks before anything runs."""

from __future__ import annotations

from pydantic import BaseModel


class Check(BaseModel):
    name: str
    ok: bool
    detail: str
    required: bool = True
