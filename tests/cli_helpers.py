"""Run the real CLI in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def fr_agent(
    *args: str, home: Path, timeout: float = 1800, env: dict | None = None, **kwargs
) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "FR_AGENT_HOME": str(home), "HF_HUB_OFFLINE": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "fr_agent", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        **kwargs,
    )


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The error a user sees: exactly one line on stderr, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    """The predicate's first truthy value, polled every `interval` seconds; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
