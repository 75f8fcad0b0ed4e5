"""The sandbox protocol: where a recipe is realized and its stages run.

A sandbox owns an isolated Python environment, its own working dir and env vars. Commands run with
a timeout; output is captured to a log file with only a bounded head and tail kept in memory, so a
1 GB log costs no more than a small one. The local sandbox (venv) is the embedded default; a docker
sandbox implements the same protocol.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx
from pydantic import BaseModel

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


class Sandbox(Protocol):
    name: str
    workdir: Path
    logs: Path

    @property
    def python(self) -> str: ...

    def prepare(self, recipe: Recipe) -> CommandResult: ...

    def sync_packages(self, recipe: Recipe, log_name: str) -> CommandResult: ...

    def run(self, argv: Sequence[str], recipe: Recipe, *, timeout: float, log_name: str) -> CommandResult: ...

    def start(self, argv: Sequence[str], recipe: Recipe, *, port: int, log_name: str) -> Server: ...

    def probe(self, name: str) -> str:
        """Path, inside the sandbox, of a probe script shipped in fr_agent/sandboxes/probes."""
        ...


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


@runtime_checkable
class Snapshots(Protocol):
    """A sandbox whose environment can be saved and restored (the docker sandbox: image tags). The repair
    loop snapshots before a fix and rolls back when the fix fails its check, so whatever the fix
    installed goes with it."""

    def snapshot(self, label: str) -> str: ...

    def rollback(self, label: str) -> str: ...


@runtime_checkable
class ChecksInside(Protocol):
    """A sandbox that re-runs the precheck inside itself (a container sees its own python, compiler,
    package sources, devices, disk and shm, not the host's); its checks replace the host's of the same name."""

    def precheck(self, result: Any, analysis: Any, chip: Any) -> Any: ...
