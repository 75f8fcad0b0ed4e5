"""SIGTERM (`timeout`, a batch runner, `kill`) ends a run the way Ctrl-C does: the model server it started is
stopped, not orphaned, and the run stays resumable."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import pytest

from tests.cli_helpers import TINY_RUN, fr_agent_started, one_line_error


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        return open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.e2e
def test_sigterm_mid_run_stops_the_server_and_keeps_the_checkpoint(fr_home, tiny_model):
    run_dir = fr_home / "runs" / f"sigterm-{uuid.uuid4().hex[:8]}"  # the home is shared: a fresh run
    process = fr_agent_started(
        *TINY_RUN,
        "--yes",
        "--run-id",
        run_dir.name,
        home=fr_home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pidfile = run_dir / "sandbox" / "logs" / "server.pid"
    deadline = time.monotonic() + 600
    while not (pidfile.exists() and pidfile.read_text().strip()) and process.poll() is None:
        assert time.monotonic() < deadline, "the run never started its server"
        time.sleep(0.1)
    assert process.poll() is None, process.communicate()
    server = int(pidfile.read_text())
    assert alive(server)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err[-2000:]
    assert "terminated; the run is checkpointed" in one_line_error(subprocess.CompletedProcess([], 143, out, err))
    for _ in range(50):
        if not alive(server):
            break
        time.sleep(0.1)
    assert not alive(server), "the model server outlived the run"
    assert (run_dir / "checkpoints.sqlite").exists()
