"""Pieces the typed models share: the strict pydantic base, the dtypes, the default operators, and a
validation error as one line."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

DType = Literal["float32", "bfloat16", "float16"]

# The operators stage checks these unless a recipe says otherwise. sandboxes/probes/op_check.py keeps
# copies of both lists (it runs where fr_agent is not installed); a test holds them equal.
DEFAULT_OPS: tuple[str, ...] = ("rms_norm", "silu_and_mul", "rotary_embedding", "softmax", "linear")
CHECKED_OPS: tuple[str, ...] = (*DEFAULT_OPS, "fused_add_rms_norm", "layer_norm")  # op_check checks one by one


class Strict(BaseModel):
    """Unknown keys are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


def first_error(err: ValidationError, whole: str = "") -> str:
    """The first error of a validation as one line, `loc: msg`; `whole` stands for an empty loc (an error of
    the whole object)."""
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or whole
    return f"{where}: {first['msg']}" if where else first["msg"]
