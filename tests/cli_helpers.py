"""Run the real CLI in a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from fr_agent.core.events import Event, read_events

# The tiny model's run on this host, as most end-to-end tests start it.
TINY_RUN = ("run", "tiny-llama", "--chip", "cpu", "--engine", "hf")


def cli_env(home: Path, env: dict | None = None) -> dict:
    return {**os.environ, "FR_AGENT_HOME": str(home), "HF_HUB_OFFLINE": "1", "COLUMNS": "200", **(env or {})}


def fr_agent(
    *args: str, home: Path, timeout: float = 1800, env: dict | None = None, **kwargs
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fr_agent", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(home, env),
        **kwargs,
    )


def fr_agent_started(*args: str, home: Path, env: dict | None = None, **kwargs) -> subprocess.Popen:
    """The CLI started and not waited for, with fr_agent()'s environment: the test signals, reads or kills it."""
    return subprocess.Popen([sys.executable, "-m", "fr_agent", *args], env=cli_env(home, env), **kwargs)


def replay_reproduces(run_id: str, *args: str, home: Path, hf_home: Path) -> list[Event]:
    """`transcripts replay` of a run, which must reproduce it (every stage and the gate pass): the replay's events."""
    replay = fr_agent(
        "transcripts", "replay", run_id, "--json", *args, home=home, timeout=900, env={"HF_HOME": str(hf_home)}
    )
    assert replay.returncode == 0, replay.stderr[-3000:]
    result = json.loads(replay.stdout)
    assert result["compare"]["reproduced"] and result["compare"]["status"] == ["passed", "passed"]
    return read_events(Path(result["replay"]["transcript"]))


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
