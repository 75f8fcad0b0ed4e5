"""The tree is lint-clean and formatted (ruff, pinned in the test extra; its rules in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("argv", [["check", "--no-fix"], ["format", "--check"]], ids=["check", "format"])
def test_ruff(argv):
    result = subprocess.run([sys.executable, "-m", "ruff", *argv, "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
