"""The sandbox twin for tests that only read a sandbox: its logs, its working dir, its installed packages.
It runs no commands: a test that runs something uses the real LocalSandbox."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from fr_agent.core.recipe import Recipe
from fr_agent.sandboxes.base import Sandbox
from fr_agent.sandboxes.local import PROBES


class FakeSandbox(Sandbox):
    name = "fake"

    def __init__(self, root: Path, installed: dict[str, str] | None = None):
        super().__init__(root)
        self.packages = dict(installed or {})

    @property
    def python(self) -> str:
        return sys.executable

    def probe(self, name: str) -> str:
        return str(PROBES / name)

    def installed(self, recipe: Recipe) -> dict[str, str]:
        return dict(self.packages)

    def prepare(self, recipe: Recipe) -> NoReturn:
        self._runs_nothing("prepare")

    def sync_packages(self, recipe: Recipe, log_name: str) -> NoReturn:
        self._runs_nothing("sync_packages")

    def run(self, argv: Sequence[str], recipe: Recipe, *, timeout: float, log_name: str) -> NoReturn:
        self._runs_nothing("run")

    def start(self, argv: Sequence[str], recipe: Recipe, *, port: int, log_name: str) -> NoReturn:
        self._runs_nothing("start")

    def _runs_nothing(self, member: str) -> NoReturn:
        raise AssertionError(f"FakeSandbox.{member}: the fake runs no commands; use LocalSandbox")
