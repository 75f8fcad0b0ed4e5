"""Shared test setup: offline HF, one fr-agent home per session (so the uv cache and the tiny model
are built once), and the `--run-gpu` and `--run-live` switches."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Triton reads TRITON_INTERPRET when its language module and each @triton.jit function are defined, so it is
# set before any test imports triton (transformers does, through the fixture builder). GPU runs keep real kernels.
if "--run-gpu" not in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_addoption(parser):
    parser.addoption("--run-gpu", action="store_true", help="run tests that need a CUDA device")
    parser.addoption("--run-live", action="store_true", help="run tests against a real LLM endpoint (FR_AGENT_LLM_*)")


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--run-live"):
        offline = pytest.mark.skip(reason="talks to a real LLM endpoint: pass --run-live and set FR_AGENT_LLM_*")
        for item in items:
            if "live" in item.keywords:
                item.add_marker(offline)
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
    from fr_agent.evals.tiny_model import ensure_tiny_llama

    return ensure_tiny_llama(fr_home / "hf")
