"""Docker fixtures: a real engine (the one DOCKER_HOST or the default socket names, else a private dockerd
this session starts with its data root under the test home, so images survive between sessions when
FR_AGENT_TEST_HOME is set) and the cpu sandbox image built on it. No engine and no dockerd: the docker
tests skip, saying why."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def docker_client(fr_home):
    import docker

    from fr_agent.core.errors import FrAgentError
    from fr_agent.sandboxes.docker_engine import engine_url, private_data_root, start_private_engine

    url = engine_url(fr_home)
    engine = None
    if url is None:
        if shutil.which("dockerd") is None:
            pytest.skip(
                "no Docker engine answers and dockerd is not installed "
                "(apt-get install -y --no-install-recommends docker.io debootstrap)"
            )
        if os.geteuid() != 0:
            pytest.skip("no Docker engine answers and starting dockerd needs root")
        try:
            engine = start_private_engine(private_data_root(fr_home))
        except FrAgentError as err:
            pytest.skip(f"could not start a private Docker engine: {err}")
        url = engine.url
    client = docker.DockerClient(base_url=url, timeout=600)
    yield client
    client.close()
    if engine is not None:
        engine.stop()


@pytest.fixture(scope="session")
def cpu_chip():
    from fr_agent.core.catalog import load_catalog

    return load_catalog(None).chip("cpu")


@pytest.fixture(scope="session")
def cpu_image(docker_client, cpu_chip, fr_home) -> str:
    """The cpu sandbox image (base bootstrapped with debootstrap the first time, its root cached)."""
    from fr_agent.sandboxes.docker_images import build_sandbox_image, image_exists

    if not image_exists(docker_client, cpu_chip.base_image) and shutil.which("debootstrap") is None:
        pytest.skip("the cpu base image is not in the engine and debootstrap is not installed")
    return build_sandbox_image(docker_client, cpu_chip, fr_home / "cache", fr_home / "docker" / "build-cpu.log")


def build_wheel(dest: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """A pure-Python wheel written by hand: enough for uv to install."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    entries = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: fr-agent-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in entries) + f"{info}/RECORD,,\n"
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in entries.items():
            archive.writestr(path, text)
        archive.writestr(f"{info}/RECORD", record)
    return wheel


@pytest.fixture(scope="session")
def breaking_wheels(tmp_path_factory) -> Path:
    """A wheel dir holding `fr-env-breaker`: its .pth start-up hook kills every Python process of the
    environment it is installed into (exit code 3), as a bad fix can."""
    wheels = tmp_path_factory.mktemp("wheels")
    build_wheel(
        wheels,
        "fr-env-breaker",
        "1.0",
        {"fr_env_breaker.pth": "import os; os._exit(3)\n", "fr_env_breaker/__init__.py": ""},
    )
    return wheels
