"""The sandbox base class: where a recipe is realized and its stages run.

A sandbox owns an isolated Python environment, its own working dir and env vars. Commands run with
a timeout; output is captured to a log file with only a bounded head and tail kept in memory, so a
1 GB log costs no more than a small one. The local sandbox (venv) is the embedded default; the host
and docker sandboxes subclass the same base.
"""

from __future__ import annotations

import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Protocol

import httpx
from pydantic import BaseModel

from fr_agent.core.catalog import ChipProfile
from fr_agent.core.checks import Precheck
from fr_agent.core.recipe import Recipe


def host_memory_gib() -> float:
    """This host's physical memory: what a CPU engine's reservations and the sandbox's limits are cut from."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


class CommandResult(BaseModel):
    argv: list[str]
    returncode: int | None
    timed_out: bool = False
    duration_s: float
    output: str = ""
    output_bytes: int = 0
    log_path: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def probe_verdict(result: CommandResult) -> dict:
    """A probe's verdict: its last JSON line on stdout. A probe that printed none failed."""
    for line in reversed(result.output.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    return {"ok": False, "error": "probe printed no verdict"}


class Server(Protocol):
    """A long-running process (the serving engine) started by a sandbox."""

    url: str
    log_path: Path

    def alive(self) -> bool: ...
    def stop(self) -> None: ...


class Sandbox(ABC):
    """Every member a caller uses is declared here, so callers never probe a sandbox for what it can do: the
    abstract ones each backend implements (a backend lacking one cannot be constructed), the rest have
    defaults for a backend with nothing to do there."""

    name: ClassVar[str]  # as `--sandbox` spells it
    find_links: Sequence[str] = ()  # wheel dirs installs resolve from, besides the package index
    install_timeout: float = 900  # seconds one package sync may take (settings: timeouts.install)

    def __init__(self, root: Path):
        self.root = root
        self.workdir = root / "work"  # the commands' working dir and HOME; stages write their spec files here
        self.logs = root / "logs"  # one <log_name>.log per command
        for path in (self.workdir, self.logs):
            path.mkdir(parents=True, exist_ok=True)

    @property
    @abstractmethod
    def python(self) -> str:
        """The sandbox's interpreter, as a command run inside it."""

    @abstractmethod
    def probe(self, name: str) -> str:
        """Path, inside the sandbox, of a probe script shipped in fr_agent/sandboxes/probes."""

    @abstractmethod
    def prepare(self, recipe: Recipe) -> CommandResult:
        """Create the environment, once: a later call finds it there and does nothing."""

    @abstractmethod
    def sync_packages(self, recipe: Recipe, log_name: str) -> CommandResult:
        """Install the recipe's pins, then uninstall what it removes: the same end state every time."""

    @abstractmethod
    def installed(self, recipe: Recipe) -> dict[str, str]:
        """Distributions the sandbox's python sees: normalized name -> version."""

    @abstractmethod
    def run(self, argv: Sequence[str], recipe: Recipe, *, timeout: float, log_name: str) -> CommandResult:
        """One command in the recipe's environment, killed at the timeout."""

    @abstractmethod
    def start(self, argv: Sequence[str], recipe: Recipe, *, port: int, log_name: str) -> Server:
        """A long-running process (the serving engine), reached at 127.0.0.1:`port` on this host."""

    def stop_running(self, grace_s: float = 5) -> int:
        """Stop every command in flight, whichever thread waits on it (only the main thread sees Ctrl-C);
        returns how many. Default: none tracked, none stopped: each still ends at its own timeout."""
        return 0

    def precheck(self, result: Precheck, recipe: Recipe, chip: ChipProfile, *, params_b: float) -> Precheck:
        """The host's precheck re-judged for this sandbox (a container sees its own python, package sources,
        compiler, devices, disk and shm, not the host's). Default: the host's checks stand."""
        return result

    def adopt_host_stack(self, recipe: Recipe) -> tuple[Recipe, str | None]:
        """The recipe with its pins moved to what the sandbox already has, and a note saying which (None when
        nothing moved). Default: the recipe as it is; the sandbox installs its pins."""
        return recipe, None

    def snapshot(self, label: str) -> str | None:
        """Name the environment's current state, for `rollback(label)`; returns the snapshot's reference. The
        repair loop snapshots before a fix and rolls back when the fix fails its check, so whatever the fix
        installed goes with it. Default: None, no snapshots (the loop re-syncs the recipe instead)."""
        return None

    def rollback(self, label: str) -> str | None:
        """Make snapshot `label` the environment again, dropping whatever was installed since; returns its
        reference. Default: None, nothing to roll back to."""
        return None


def wait_for_health(server: Server, *, timeout: float, stall_s: float) -> tuple[bool, str]:
    """Poll /health until it answers, the process dies, the log stops growing, or time runs out."""
    started = last_growth = time.monotonic()
    last_size = -1
    while True:
        now = time.monotonic()
        try:
            if httpx.get(server.url + "/health", timeout=2).status_code == 200:
                return True, f"healthy after {now - started:.0f}s"
        except httpx.HTTPError:
            pass
        if not server.alive():
            return False, "server exited before answering /health"
        size = server.log_path.stat().st_size
        if size != last_size:
            last_size, last_growth = size, now
        if now - last_growth > stall_s:
            return False, f"server log stopped growing for {stall_s:g}s (startup hung)"
        if now - started > timeout:
            return False, f"server not healthy after {timeout:g}s"
        time.sleep(1.0)
