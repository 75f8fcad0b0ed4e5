"""Canary secrets in this process's environment reach no child process: installer, probe, engine server, and
the eval's reference server. Every child is read at its /proc/PID/environ while it runs."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fr_agent.core.recipe import ModelRef, Recipe
from fr_agent.sandboxes import local
from fr_agent.sandboxes.local import LocalSandbox

CANARIES = {
    "HF_TOKEN": "canary-hf-0001",
    "OPENAI_API_KEY": "canary-openai-0002",
    "FR_AGENT_LLM_API_KEY": "canary-llm-0003",
    "MY_SERVICE_TOKEN": "canary-svc-0004",
    "DB_PASSWORD": "canary-db-0005",
    "PAYMENTS_SECRET": "canary-pay-0006",
}


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


class Children:
    """Every process started through subprocess.Popen, with the `env` it was given and its environ as read
    right after it started (empty for one that was already gone)."""

    def __init__(self):
        self.seen: list[tuple[list[str], dict | None, dict[str, str]]] = []

    def popen(self, real):
        children = self

        class Spy(real):
            def __init__(self, args, *rest, **kwargs):
                super().__init__(args, *rest, **kwargs)
                children.seen.append(([str(a) for a in args], kwargs.get("env"), self.environ()))

            def environ(self) -> dict[str, str]:
                """Read again while empty: the kernel fills it in a moment after the parent resumes."""
                for _ in range(200):
                    try:
                        read = environ_of(self.pid)
                    except OSError:
                        return {}
                    if read or self.poll() is not None:
                        return read
                    time.sleep(0.005)
                return {}

        return Spy

    def leaks(self, environ: dict[str, str]) -> list[str]:
        return [name for name, value in environ.items() if any(c in value for c in CANARIES.values())]


@pytest.fixture
def children(monkeypatch) -> Children:
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    spy = Children()
    monkeypatch.setattr(subprocess, "Popen", spy.popen(subprocess.Popen))
    return spy


def bare() -> Recipe:
    return Recipe(model=ModelRef(name="m"), chip="cpu", base_image="img", packages=[], env={"MY_FLAG": "on"})


def uv_recorder(tmp_path: Path) -> tuple[Path, Path]:
    """A uv that writes its own /proc environ before it becomes the real uv (exec keeps the environ)."""
    dumps = tmp_path / "uv-environs"
    dumps.mkdir()
    script = tmp_path / "uv"
    script.write_text(f'#!/bin/sh\ncat /proc/$$/environ > {dumps}/$$.env\nexec {local.find_uv_bin()} "$@"\n')
    script.chmod(0o755)
    return script, dumps


def test_no_canary_in_any_sandbox_child(children, fr_home, tmp_path, monkeypatch):
    uv, dumps = uv_recorder(tmp_path)
    monkeypatch.setattr(local, "find_uv_bin", lambda: str(uv))
    box = LocalSandbox(tmp_path / "box", fr_home / "cache", fr_home / "hf")
    recipe = bare()
    assert box.prepare(recipe).ok  # installer: uv venv
    box.installed(recipe)  # installer: uv pip freeze
    # a probe reads its own /proc/PID/environ while it runs
    code = "import sys; sys.stdout.write(open('/proc/self/environ').read().replace(chr(0), chr(10)))"
    probe = box.run([box.python, "-c", code], recipe, timeout=60, log_name="probe")
    probe_env = dict(line.split("=", 1) for line in probe.output.splitlines() if "=" in line)
    assert probe.ok and probe_env["MY_FLAG"] == "on" and not children.leaks(probe_env)
    server = box.start([box.python, "-c", "import time; time.sleep(60)"], recipe, port=1, log_name="server")
    try:
        server_env = environ_of(server.process.pid)
    finally:
        server.stop()
    assert server_env["MY_FLAG"] == "on" and not children.leaks(server_env)

    installer_envs = [environ_of_dump(p) for p in dumps.glob("*.env")]
    assert len(installer_envs) >= 2 and all(env and not children.leaks(env) for env in installer_envs)
    assert len(children.seen) >= 5  # pip config, uv venv, uv freeze, the probe, the server
    for argv, given, read in children.seen:
        assert given is not None, f"{argv[:3]} inherited the whole host environment"
        assert not children.leaks(given) and not children.leaks(read), argv[:3]
        assert not set(CANARIES) & (given.keys() | read.keys()), argv[:3]


def environ_of_dump(path: Path) -> dict[str, str]:
    return dict(item.split("=", 1) for item in path.read_text().split("\0") if "=" in item)


def test_the_recipe_may_set_one_secret(children, fr_home, tmp_path):
    box = LocalSandbox(tmp_path / "box", fr_home / "cache", fr_home / "hf")
    recipe = bare().model_copy(update={"env": {"HF_TOKEN": "from-the-recipe"}})
    env = box.environment(recipe)
    assert env["HF_TOKEN"] == "from-the-recipe"
    assert not (set(CANARIES) - {"HF_TOKEN"}) & env.keys() and not children.leaks(env)


def test_sandbox_logs_and_tmpdir_are_private(fr_home, tmp_path):
    box = LocalSandbox(tmp_path / "box", fr_home / "cache", fr_home / "hf")
    result = box.run([sys.executable, "-c", "print('hi')"], bare(), timeout=60, log_name="hello")
    assert stat.S_IMODE(Path(result.log_path).stat().st_mode) == 0o600
    assert stat.S_IMODE(box.tmpdir.stat().st_mode) == 0o700
