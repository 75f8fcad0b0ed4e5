"""sandboxes/probes/op_check.py, run as the sandbox runs it: a subprocess of
the current interpreter, given a spec file, answering with one JSON line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fr_agent.core.types import CHECKED_OPS, DEFAULT_OPS

REPO = Path(__file__).resolve().parents[2]
PROBE = REPO / "sandboxes" / "probes" / "op_check.py"
KERNELS_DIR = REPO / "kernels"
ALL_OPS = list(DEFAULT_OPS)
KERNEL_OPS = ["rms_norm", "silu_and_mul", "rotary_embedding", "softmax"]  # ops with a Triton kernel; linear has none


def _env(interpret: bool) -> dict[str, str]:
    env = dict(os.environ)
    # tests/kernels/conftest.py sets TRITON_INTERPRET in this process; decide
    # explicitly for the child.
    env.pop("TRITON_INTERPRET", None)
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    # Some x86 VMs advertise AMX but fault on it: torch's bf16 CPU matmul
    # (oneDNN's AMX path) then dies with SIGILL. Cap oneDNN below AMX so the
    # "torch backend passes" tests test the probe, not the host. (The probe
    # itself survives the crash: see test_native_crash_mismatch_nonfinite.)
    env.setdefault("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    return env


def run_probe(tmp_path, spec: dict, interpret: bool = False):
    spec = {"device": "cpu", "kernels_dir": str(KERNELS_DIR), **spec}
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.run(
        [sys.executable, str(PROBE), str(spec_path)],
        capture_output=True,
        text=True,
        env=_env(interpret),
        timeout=300,
    )
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, f"stdout must be one JSON line:\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(lines[0])
    assert proc.returncode == (0 if result["ok"] else 1), proc.stderr
    return result, proc


def _assert_all_pass(result, impls: dict[str, str], stderr: str):
    assert result["ok"] is True, stderr
    assert list(result["ops"]) == list(impls)
    for op, impl in impls.items():
        rec = result["ops"][op]
        assert rec["status"] == "pass", (op, rec, stderr)
        assert rec["impl"] == impl, (op, rec)
        assert rec["error"] is None
        assert isinstance(rec["max_abs_err"], float)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_torch_backend_passes(tmp_path, dtype):
    result, proc = run_probe(tmp_path, {"dtype": dtype, "backend": "torch", "ops": ALL_OPS})
    assert result["device"] == "cpu" and result["dtype"] == dtype
    _assert_all_pass(result, dict.fromkeys(ALL_OPS, "torch"), proc.stderr)


def test_kernels_backend_without_interpreter_fails_then_reference_repairs(tmp_path):
    spec = {"dtype": "bfloat16", "backend": "kernels", "ops": ALL_OPS}
    result, proc = run_probe(tmp_path, spec)
    assert result["ok"] is False and proc.returncode == 1
    for op in KERNEL_OPS:
        rec = result["ops"][op]
        assert rec["status"] == "error" and rec["impl"] == "kernels", rec
        assert "active drivers" in rec["error"], rec  # Triton's own text
        assert rec["max_abs_err"] is None
    assert result["ops"]["linear"]["status"] == "pass" and result["ops"]["linear"]["impl"] == "torch"  # no kernel
    # The real Triton error and its traceback reach stderr (the sandbox log).
    assert "Traceback (most recent call last)" in proc.stderr
    assert "RuntimeError: 0 active drivers" in proc.stderr
    assert "triton" in proc.stderr
    # ... and the summary line the repair playbook (triton-no-driver) matches.
    assert re.search(r"^op_check: rms_norm failed: .*0 active drivers", proc.stderr, re.M)

    # The repair: route the failing ops to the torch reference.
    spec["reference"] = KERNEL_OPS
    result, proc = run_probe(tmp_path, spec)
    _assert_all_pass(result, {**dict.fromkeys(KERNEL_OPS, "reference"), "linear": "torch"}, proc.stderr)


def test_kernels_backend_with_interpreter_passes(tmp_path):
    result, proc = run_probe(tmp_path, {"dtype": "bfloat16", "backend": "kernels", "ops": ALL_OPS}, interpret=True)
    _assert_all_pass(result, {**dict.fromkeys(KERNEL_OPS, "kernels"), "linear": "torch"}, proc.stderr)


def test_cast_and_disabled(tmp_path):
    result, proc = run_probe(
        tmp_path,
        {
            "dtype": "bfloat16",
            "backend": "torch",
            "ops": ["softmax", "linear", "rms_norm"],
            "cast": {"softmax": "float32", "linear": "float32", "rms_norm": "float32"},
            "disabled": ["rms_norm"],  # disabled wins over cast
        },
    )
    _assert_all_pass(
        result,
        {"softmax": "cast:float32", "linear": "cast:float32", "rms_norm": "reference"},
        proc.stderr,
    )


def test_flaggems_missing_is_an_error_record(tmp_path):
    try:
        import flag_gems  # noqa: F401
    except Exception:
        pass
    else:
        pytest.skip("flag_gems is installed here")
    result, proc = run_probe(
        tmp_path,
        {
            "dtype": "float32",
            "backend": "flaggems",
            "ops": ["softmax", "linear"],
            "disabled": ["linear"],
        },
    )
    assert result["ok"] is False
    rec = result["ops"]["softmax"]
    assert rec["status"] == "error" and rec["impl"] == "flaggems"
    assert "flag_gems" in rec["error"]
    assert result["ops"]["linear"]["status"] == "pass"
    assert result["ops"]["linear"]["impl"] == "reference"
    assert "ModuleNotFoundError" in proc.stderr


def test_native_crash_mismatch_nonfinite(tmp_path):
    """Fake kernels: one kills the process, one is wrong, one returns NaN."""
    kdir = tmp_path / "fake_kernels"
    kdir.mkdir()
    (kdir / "rms_norm.py").write_text(
        textwrap.dedent("""
        import os
        def rms_norm(x, weight, eps):
            os.abort()
    """)
    )
    (kdir / "silu_and_mul.py").write_text(
        textwrap.dedent("""
        import torch
        def silu_and_mul(x):
            d = x.shape[-1] // 2
            return torch.full_like(x[..., :d], float("nan"))
    """)
    )
    (kdir / "softmax.py").write_text(
        textwrap.dedent("""
        import torch
        def softmax(x):
            return torch.softmax(x * 1.1, dim=-1)
    """)
    )
    result, proc = run_probe(
        tmp_path,
        {
            "dtype": "float32",
            "backend": "kernels",
            "kernels_dir": str(kdir),
            "ops": ["rms_norm", "silu_and_mul", "softmax", "rotary_embedding", "bogus_op"],
        },
    )
    ops = result["ops"]
    assert result["ok"] is False
    assert ops["rms_norm"]["status"] == "error" and ops["rms_norm"]["impl"] == "kernels"
    assert "SIGABRT" in ops["rms_norm"]["error"]
    assert ops["silu_and_mul"]["status"] == "nonfinite"
    assert ops["softmax"]["status"] == "mismatch" and ops["softmax"]["max_abs_err"] > 0
    assert ops["rotary_embedding"]["status"] == "pass"
    assert ops["rotary_embedding"]["impl"] == "torch"
    assert ops["bogus_op"]["status"] == "error" and "unknown op" in ops["bogus_op"]["error"]
    summary = [ln for ln in proc.stderr.splitlines() if ln.startswith("op_check: ")]
    assert [ln.split()[1:3] for ln in summary] == [
        ["rms_norm", "failed:"],
        ["silu_and_mul", "nonfinite:"],
        ["softmax", "mismatch:"],
        ["bogus_op", "failed:"],
    ]
    assert proc.stderr.rstrip().splitlines()[-len(summary) :] == summary  # last in the log


def test_bad_spec_still_answers_one_json_line(tmp_path):
    result, proc = run_probe(tmp_path, {"dtype": "float8", "ops": ["softmax"]})
    assert result["ok"] is False
    assert "unsupported dtype" in result["ops"]["softmax"]["error"]
    proc = subprocess.run(
        [sys.executable, str(PROBE), str(tmp_path / "missing.json")],
        capture_output=True,
        text=True,
        env=_env(False),
        timeout=60,
    )
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["ok"] is False


def test_kernels_listed_in_the_plan_run_on_any_backend(tmp_path):
    """The recipe's `kernels` list swaps our kernels in over the torch backend, new ops included."""
    ops = ["layer_norm", "fused_add_rms_norm", "softmax"]
    result, proc = run_probe(
        tmp_path,
        {"dtype": "bfloat16", "backend": "torch", "ops": ops, "kernels": ["layer_norm", "fused_add_rms_norm"]},
        interpret=True,
    )
    _assert_all_pass(
        result, {"layer_norm": "kernels", "fused_add_rms_norm": "kernels", "softmax": "torch"}, proc.stderr
    )


def test_op_lists_match_the_core():
    """The probe runs without fr_agent, so it keeps its own copies of the op lists."""
    spec = importlib.util.spec_from_file_location("op_check_probe", PROBE)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    assert tuple(probe.DEFAULT_OPS) == DEFAULT_OPS
    assert tuple(probe.KNOWN_OPS) == CHECKED_OPS
