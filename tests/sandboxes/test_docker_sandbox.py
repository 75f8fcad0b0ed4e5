"""The docker sandbox against a real engine: image build, steps in containers, limits, no network,
installs committed, snapshots and rollback, serving through the relay, the precheck inside."""

from __future__ import annotations

import time

import httpx
import pytest

from fr_agent.core.checks import Check, Precheck
from fr_agent.core.config import DockerSettings
from fr_agent.core.recipe import ModelRef, PackagePin, Recipe
from fr_agent.sandboxes.docker import DockerSandbox

pytestmark = pytest.mark.docker


def recipe(packages=(), **env) -> Recipe:
    return Recipe(
        model=ModelRef(name="m"),
        chip="cpu",
        base_image="fr-agent/cpu-base:bookworm",
        packages=[PackagePin(name=n, version=v) for n, v in packages],
        env=env,
    )


SIX = recipe([("six", "1.16.0")])


@pytest.fixture(scope="module")
def box(docker_client, cpu_image, cpu_chip, fr_home, breaking_wheels, tmp_path_factory) -> DockerSandbox:
    sandbox = DockerSandbox(
        tmp_path_factory.mktemp("dbox"),
        "test-docker-sandbox",
        cpu_chip,
        fr_home / "cache",
        fr_home / "hf",
        settings=DockerSettings(memory_gib=0.5, pids_limit=128),
        find_links=[str(breaking_wheels)],
        client=docker_client,
    )
    assert sandbox.sync_packages(SIX, log_name="install").ok
    yield sandbox
    sandbox.close()
    sandbox.remove_images()


def python(box: DockerSandbox, code: str, rec: Recipe = SIX, timeout: float = 60, log: str = "py"):
    return box.run([box.python, "-c", code], rec, timeout=timeout, log_name=log)


def test_image_is_the_chip_base_plus_the_dockerfile(docker_client, cpu_image, cpu_chip, box):
    base = docker_client.images.get(cpu_chip.base_image)
    image = docker_client.images.get(cpu_image)
    assert set(base.attrs["RootFS"]["Layers"]) < set(image.attrs["RootFS"]["Layers"])  # FROM the base
    code = (
        "import sys, shutil, sysconfig, os; print(sys.version_info[:2] == (3, 11), bool(shutil.which('gcc')), "
        "os.path.exists(sysconfig.get_paths()['include'] + '/Python.h'), open('/etc/debian_version').read()[:2])"
    )
    result = python(box, code)
    assert result.ok and result.output.splitlines()[-1] == "True True True 12", result.output


def test_steps_are_isolated_from_host_env_network_and_privileges(box, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-host-secret-should-not-leak-0000000000")
    code = (
        "import os, sys, socket\n"
        "print(sys.prefix, os.getcwd(), os.environ.get('OPENAI_API_KEY'), os.environ['MY_FLAG'])\n"
        "cap = [l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1]\nprint(cap)\n"
        "try:\n    socket.create_connection(('pypi.org', 443), timeout=5); print('online')\n"
        "except OSError as err:\n    print('offline', type(err).__name__)"
    )
    result = python(box, code, recipe([("six", "1.16.0")], MY_FLAG="it's on"))
    first, cap, net = result.output.strip().splitlines()[-3:]
    assert result.ok and first == f"/opt/venv {box.workdir} None it's on", result.output
    assert int(cap, 16) == 0 and net.startswith("offline")


def test_timeout_kills_the_step_and_what_it_started(box):
    started = time.monotonic()
    code = "import subprocess, time; subprocess.Popen(['sleep', '61']); time.sleep(60)"
    result = python(box, code, timeout=2, log="hang")
    assert result.timed_out and not result.ok and time.monotonic() - started < 30
    assert "timed out after 2s" in result.output
    left = python(box, "import glob; print([open(p, 'rb').read() for p in glob.glob('/proc/[0-9]*/cmdline')])")
    assert left.ok and "61" not in left.output.splitlines()[-1] and "time.sleep" not in left.output.splitlines()[-1]


def test_a_crash_by_signal_is_named_in_the_log(box):
    result = python(box, "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", log="segv")
    assert result.returncode == -11 and "killed by signal SIGSEGV" in result.output


def test_memory_limit_is_enforced(box):
    result = python(box, "b = bytearray(2 * 2**30); print('allocated 2 GiB')", log="oom")
    assert not result.ok and "allocated" not in result.output.splitlines()[-1]
    assert "memory limit (OOM, 0.50 GiB)" in result.output or "MemoryError" in result.output, result.output


def test_pids_limit_is_enforced(box):
    code = (
        "import threading, time\nfor i in range(400):\n"
        "    threading.Thread(target=time.sleep, args=(10,), daemon=True).start()\nprint('started 400')"
    )
    result = python(box, code, log="pids")
    assert not result.ok and result.output.strip().endswith("RuntimeError: can't start new thread")


def test_installs_are_committed_and_a_stage_cannot_change_the_environment(box):
    assert box.installed(SIX).get("six") == "1.16.0"
    wipe = python(box, "import os, six; os.remove(six.__file__); print('removed')", log="wipe")
    assert not wipe.ok and "Read-only file system" in wipe.output  # steps see the environment read-only
    scratch = python(box, "open('/tmp/x', 'w').write('ok'); open('scratch', 'w').write('ok'); print('wrote')")
    assert scratch.ok and (box.workdir / "scratch").read_text() == "ok"  # /tmp and the work dir are writable
    assert python(box, "import six; print(six.__version__)", log="after-wipe").output.strip().endswith("1.16.0")


def test_rollback_undoes_a_fix_that_breaks_the_environment(box):
    good = box.snapshot("before-breaker")
    broken = recipe([("six", "1.16.0"), ("fr-env-breaker", "1.0")])
    assert box.sync_packages(broken, log_name="install-breaker").ok  # the install itself succeeds ...
    dead = python(box, "print('alive')", broken, log="broken")
    assert dead.returncode == 3 and dead.output.strip().splitlines()[-1].startswith("$ ")  # ... and every Python dies
    assert box.rollback("before-breaker") == good
    alive = python(box, "import six; print('alive', six.__version__)", log="rolled-back")
    assert alive.ok and alive.output.strip().endswith("alive 1.16.0")
    assert "fr-env-breaker" not in box.installed(SIX) and good in box.list_snapshots()


def test_a_served_engine_is_reached_without_a_network(box):
    from fr_agent.agents.stages import free_port

    port = free_port()
    server = box.start(
        [box.python, "-m", "http.server", "--bind", "127.0.0.1", str(port)], SIX, port=port, log_name="serve"
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                reply = httpx.get(server.url + "/", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and server.alive(), server.log_path.read_text()
                time.sleep(0.3)
        assert reply.status_code == 200 and "Directory listing" in reply.text
        assert server.container.attrs["HostConfig"]["NetworkMode"] == "none"
    finally:
        server.stop()
    assert not server.alive()


def test_precheck_runs_inside_the_container(box, cpu_chip):
    host = Precheck(
        checks=[Check(name="device", ok=True, detail="cpu"), Check(name="compiler", ok=False, detail="host")]
    )
    checked = box.precheck(host, SIX, cpu_chip, params_b=0.001)
    by_name = {c.name: c for c in checked.checks}
    assert {
        "sandbox image",
        "python",
        "package index",
        "os packages",
        "compiler",
        "python headers",
        "c++ compiler",
        "device nodes",
        "disk",
        "shm",
    } <= set(by_name)
    assert by_name["compiler"].ok and by_name["compiler"].detail.startswith("in container:")  # replaces the host's
    assert by_name["device"].detail == "cpu" and checked.ok, [c for c in checked.checks if not c.ok]
    assert "8.0 GiB" in by_name["shm"].detail  # the chip profile's shm size, not docker's 64 MiB default

    needs_cards = cpu_chip.model_copy(
        update={"container": cpu_chip.container.model_copy(update={"devices": ["/dev/fr-no-such-card[0-9]*"]})}
    )
    missing = {c.name: c for c in box.precheck(host, SIX, needs_cards, params_b=0.001).checks}["device nodes"]
    assert not missing.ok and "/dev/fr-no-such-card" in missing.detail


def test_removed_packages_stay_out_without_churning_layers(box):
    """python-dateutil depends on six; the recipe removes six. A second sync changes nothing, so it
    commits nothing (a removed dependency is kept out of the resolution, not reinstalled and removed)."""
    rec = recipe([("python-dateutil", "2.9.0.post0")]).model_copy(update={"removed": ["six"]})
    first = box.sync_packages(rec, log_name="dateutil")
    have = box.installed(rec)
    assert first.ok and "python-dateutil" in have and "six" not in have
    again = box.sync_packages(rec, log_name="dateutil-again")
    assert again.ok and "committed" not in again.output and "six" not in box.installed(rec)
