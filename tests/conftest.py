"""Shared test setup: offline HF, one fr-agent home per session (so the uv cache and the tiny model
are built once), and the `--run-gpu` switch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_addoption(parser):
    parser.addoption("--run-gpu", action="store_true", help="run tests that need a CUDA device")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-gpu"):
        return
    skip = pytest.mark.skip(reason="needs a GPU: pass --run-gpu on a machine with one")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def fr_home(tmp_path_factory) -> Path:
    """One FR_AGENT_HOME for the session: runs stay separate, the package cache and fixture are shared."""
    home = Path(os.environ.get("FR_AGENT_TEST_HOME") or tmp_path_factory.mktemp("fr-home"))
    home.mkdir(parents=True, exist_ok=True)
    return home


@pytest.fixture(scope="session")
def tiny_model(fr_home) -> Path:
    from fr_agent.tiny_model import ensure_tiny_llama

    return ensure_tiny_llama(fr_home / "hf")
