"""Finding a Docker engine, or starting a private one where none runs.

The private engine is `dockerd` with its own data root, exec root and socket, and
`--iptables=false --ip-masq=false --bridge=none`: it adds no firewall rules, no NAT and no bridge
interface, so the host's network is left as it was (containers get a loopback only, or the host's
network when a stage needs the package index). Images it builds stay in its data root, so a second
start finds them again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import DockerException

from fr_agent.core.errors import FrAgentError


@dataclass(frozen=True)
class EnginePaths:
    data_root: Path
    run_dir: Path  # short: the socket path and containerd's sockets under it must stay under 107 bytes

    @property
    def socket(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "dockerd.pid"

    @property
    def log(self) -> Path:
        return self.data_root.parent / "dockerd.log"


def engine_paths(data_root: Path) -> EnginePaths:
    data_root = data_root.absolute()
    digest = hashlib.sha1(str(data_root).encode()).hexdigest()[:10]
    return EnginePaths(data_root=data_root, run_dir=Path(tempfile.gettempdir()) / f"frd-{digest}")


def private_data_root(home: Path) -> Path:
    """Where `fr-agent sandbox engine` keeps its engine's images: under FR_AGENT_HOME."""
    return home / "docker" / "data"


def reachable(url: str, timeout: float = 5) -> bool:
    try:
        client = docker.DockerClient(base_url=url, timeout=timeout)
    except DockerException:
        return False
    try:
        return bool(client.ping())
    except (DockerException, OSError):
        return False
    finally:
        client.close()


def engine_url(home: Path, explicit: str | None = None) -> str | None:
    """The engine to use: the one named in settings, DOCKER_HOST, the private engine of this home, the
    default socket; None when none answers."""
    candidates = [
        explicit,
        os.environ.get("DOCKER_HOST"),
        engine_paths(private_data_root(home)).url,
        "unix:///var/run/docker.sock",
    ]
    for url in candidates:
        if url and reachable(url):
            return url
    return None


def connect(home: Path, explicit: str | None = None, timeout: float = 120) -> docker.DockerClient:
    url = engine_url(home, explicit)
    if url is None:
        raise FrAgentError(
            "no Docker engine answers (DOCKER_HOST, the default socket, or a private engine): start "
            "one with `fr-agent sandbox engine` (needs dockerd: apt-get install docker.io debootstrap)"
        )
    return docker.DockerClient(base_url=url, timeout=timeout)


@dataclass
class PrivateEngine:
    paths: EnginePaths
    process: subprocess.Popen | None  # None: an engine on these paths was already running; not ours to stop

    @property
    def url(self) -> str:
        return self.paths.url

    def stop(self, grace_s: float = 20) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # dockerd stops its containers and containerd itself
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def start_private_engine(data_root: Path, *, timeout: float = 30) -> PrivateEngine:
    """Start dockerd on its own data root and socket (or find the one already running there)."""
    paths = engine_paths(data_root)
    if reachable(paths.url):
        return PrivateEngine(paths, None)
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise FrAgentError("dockerd is not installed: apt-get install -y --no-install-recommends docker.io debootstrap")
    if os.geteuid() != 0:
        raise FrAgentError("starting a private Docker engine needs root (dockerd creates cgroups and mounts)")
    paths.data_root.mkdir(parents=True, exist_ok=True)
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    paths.socket.unlink(missing_ok=True)
    argv = [
        dockerd,
        "--iptables=false",
        "--ip-masq=false",
        "--bridge=none",
        "--data-root",
        str(paths.data_root),
        "--exec-root",
        str(paths.run_dir / "exec"),
        "--pidfile",
        str(paths.pidfile),
        "-H",
        paths.url,
    ]
    with paths.log.open("ab") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )  # a Ctrl-C in the terminal does not take the engine down
    engine = PrivateEngine(paths, process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = paths.log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise FrAgentError(f"dockerd exited with code {process.returncode}: {tail[0][:300]}")
        if paths.socket.exists() and reachable(paths.url, timeout=2):
            return engine
        time.sleep(0.2)
    engine.stop()
    raise FrAgentError(f"dockerd did not answer on {paths.url} within {timeout:g}s (log: {paths.log})")
