"""The control plane installs and runs without torch, triton or transformers (they replace a vendor's own
stack); the host work that needs them says which extra brings them."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from fr_agent.core.config import EvalSettings
from fr_agent.core.errors import MissingExtra
from fr_agent.evals.agent import evaluate

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "triton", "transformers", "tokenizers", "safetensors")


def requirement_name(requirement: str) -> str:
    return requirement.split(";")[0].split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip().lower()


def test_base_dependencies_are_light_and_the_host_extra_has_the_model_stack():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = {requirement_name(r) for r in project["dependencies"]}
    assert not base & set(HEAVY)
    host = {requirement_name(r) for r in project["optional-dependencies"]["host"]}
    assert {"torch", "transformers", "tokenizers", "safetensors"} <= host


def cli(args: list[str], prelude: str = "", **kwargs) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter; it prints which heavy modules it imported on the way out."""
    code = (
        f"import atexit, sys\n{prelude}\n"
        f"atexit.register(lambda: print('HEAVY', sorted(m for m in sys.modules if m in {HEAVY!r} "
        "and sys.modules[m] is not None), file=sys.stderr))\n"
        "from fr_agent.shell.cli import main\n"
        f"sys.argv = ['fr-agent', *{args!r}]\n"
        "main()\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, **kwargs)


@pytest.mark.parametrize("args", [["--help"], ["chips"], ["diagnose", "-"]])
def test_cli_commands_import_no_model_stack(args):
    done = cli(args, input="ModuleNotFoundError: No module named 'foo'\n")
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stderr


def test_the_fixture_without_the_host_extra_is_a_one_line_error(tmp_path):
    env = {**os.environ, "FR_AGENT_HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    done = cli(
        ["run", "tiny-llama", "--chip", "cpu", "--yes"],
        cwd=tmp_path,
        env=env,
        prelude="sys.modules.update(torch=None, transformers=None, tokenizers=None)",
    )
    assert done.returncode == 2, done.stderr
    assert "error: the tiny-llama fixture needs the host extra: pip install 'fr-agent[host]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_eval_without_the_host_extra_names_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    with pytest.raises(MissingExtra, match=r"the eval needs the host extra: pip install 'fr-agent\[host\]'"):
        evaluate(
            str(tmp_path),
            "http://127.0.0.1:9",
            migrated_backend="x",
            settings=EvalSettings(reference_url="http://127.0.0.1:9"),
            log_dir=tmp_path,
        )
