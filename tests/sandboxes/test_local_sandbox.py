"""The local sandbox for real: its own venv, env isolation, timeouts, bounded output, signals."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from fr_agent.core.recipe import ModelRef, PackagePin, Recipe
from fr_agent.sandboxes.local import SERVER_PID, LocalSandbox


@pytest.fixture(scope="module")
def sandbox(fr_home, tmp_path_factory) -> LocalSandbox:
    box = LocalSandbox(tmp_path_factory.mktemp("box"), fr_home / "cache", fr_home / "hf")
    assert box.prepare(bare()).ok
    return box


def bare(**env) -> Recipe:
    return Recipe(model=ModelRef(name="m"), chip="cpu", base_image="img", packages=[], env=env)


def test_runs_in_its_own_venv_and_env(sandbox, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-host-secret-should-not-leak-0000000000")
    code = "import os, sys; print(sys.prefix); print(os.environ.get('OPENAI_API_KEY')); print(os.environ['MY_FLAG'])"
    result = sandbox.run([sandbox.python, "-c", code], bare(MY_FLAG="on"), timeout=60, log_name="env")
    prefix, key, flag = result.output.splitlines()[-3:]
    assert result.ok and prefix == str(sandbox.venv) and key == "None" and flag == "on"


def test_timeout_kills_the_whole_process_group(sandbox):
    started = time.monotonic()
    code = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    result = sandbox.run([sandbox.python, "-c", code], bare(), timeout=2, log_name="hang")
    assert result.timed_out and not result.ok and time.monotonic() - started < 20
    assert "timed out after 2s" in result.output


def test_huge_output_is_bounded_in_memory(sandbox):
    code = "import sys\nfor i in range(400_000): sys.stdout.write(f'line {i} ' + 'x' * 60 + '\\n')\nprint('LAST LINE')"
    result = sandbox.run([sandbox.python, "-c", code], bare(), timeout=120, log_name="huge")
    assert result.ok and result.output_bytes > 25_000_000
    assert len(result.output) < sandbox.output_cap + 200 and result.output.rstrip().endswith("LAST LINE")
    assert "bytes omitted" in result.output


def test_a_crash_by_signal_is_named_in_the_log(sandbox):
    code = "import os, signal; os.kill(os.getpid(), signal.SIGILL)"
    result = sandbox.run([sandbox.python, "-c", code], bare(), timeout=60, log_name="sigill")
    assert result.returncode == -4 and "killed by signal SIGILL" in result.output


def test_packages_install_and_remove_to_the_recipe(sandbox):
    with_six = bare().model_copy(update={"packages": [PackagePin(name="six", version="1.16.0")]})
    assert sandbox.sync_packages(with_six, log_name="six").ok
    assert sandbox.installed(with_six).get("six") == "1.16.0"
    without = with_six.model_copy(update={"removed": ["six"], "packages": []})
    assert sandbox.sync_packages(without, log_name="no-six").ok
    assert "six" not in sandbox.installed(without)


def test_a_resumed_run_kills_its_stale_server_and_spares_a_process_that_got_its_pid(tmp_path, monkeypatch):
    monkeypatch.setattr("fr_agent.sandboxes.local.pip_find_links", lambda: [])
    root = tmp_path / "box"
    box = LocalSandbox(root, tmp_path / "cache", tmp_path / "hf")
    pidfile = box.logs / SERVER_PID
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)", str(root / "work")]  # runs "from the sandbox"
    strangers = [
        subprocess.Popen(["sleep", "120"], start_new_session=True),  # unrelated: not from this sandbox
        subprocess.Popen(sleeper, start_new_session=True),  # from the sandbox, but started after the pid file
    ]
    try:
        for stranger in strangers:
            pidfile.write_text(str(stranger.pid))
            os.utime(pidfile, (time.time() - 3600, time.time() - 3600))
            box = LocalSandbox(root, tmp_path / "cache", tmp_path / "hf")  # a resumed run
            assert stranger.poll() is None and not pidfile.exists()
        server = box.start(sleeper, bare(), port=1, log_name="serve")  # the run's own; then the run is killed
        LocalSandbox(root, tmp_path / "cache", tmp_path / "hf")  # ... and resumed
        assert server.process.wait(timeout=10) == -9
    finally:
        for stranger in strangers:
            stranger.kill()
            stranger.wait()
