"""Triton kernels that fr-agent can swap in for failing operators.

Each kernel lives in its own file, imports only torch and triton, and is
loaded by file path (sandbox venvs do not have fr_agent installed). A file
``<op>.py`` defines ``<op>(...)`` (the Triton-backed wrapper) and
``<op>_reference(...)`` (a torch reference computed in float32).

``registry.py`` is the operator layer that puts these kernels (and FlagGems)
into a model; ``tools/operator_search.py`` finds the operator set that is correct and fast.
Nothing heavy is imported here: torch and triton load only when a kernel
file itself is imported.
"""

from __future__ import annotations

import pathlib

from fr_agent.core.recipe import Recipe

#: op name -> kernel file, relative to this directory.
KERNELS: dict[str, str] = {
    "rms_norm": "rms_norm.py",
    "fused_add_rms_norm": "fused_add_rms_norm.py",
    "silu_and_mul": "silu_and_mul.py",
    "rotary_embedding": "rotary_embedding.py",
    "softmax": "softmax.py",
    "layer_norm": "layer_norm.py",
}

KERNELS_DIR = pathlib.Path(__file__).resolve().parent


def kernel_path(op: str) -> pathlib.Path:
    """Absolute path of the kernel file for ``op``; KeyError if there is none."""
    try:
        return KERNELS_DIR / KERNELS[op]
    except KeyError:
        raise KeyError(f"no kernel registered for op {op!r}; known: {sorted(KERNELS)}") from None


def operator_spec(recipe: Recipe) -> dict:
    """The recipe's operator plan as the operator layer (registry.py) reads it inside a sandbox."""
    plan = recipe.operators
    return {
        "device": recipe.torch_device,
        "dtype": recipe.dtype,
        "backend": plan.backend,
        "ops": plan.ops,
        "disabled": plan.disabled,
        "reference": plan.reference,
        "cast": plan.cast,
        "include": plan.include,
        "kernels": plan.kernels,
        "kernels_dir": str(KERNELS_DIR),
    }


__all__ = ["KERNELS", "KERNELS_DIR", "kernel_path", "operator_spec"]
