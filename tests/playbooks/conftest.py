"""Fixtures of the LLM planner tests."""

from __future__ import annotations

import pytest

from fr_agent.core.events import Transcript
from tests.playbooks.llm_helpers import INSTALLED, LOGS
from tests.sandboxes.fake_sandbox import FakeSandbox


@pytest.fixture
def run(tmp_path):
    """A run directory with a transcript, a sandbox whose failed import log is a real captured one."""
    sandbox = FakeSandbox(tmp_path / "sandbox", INSTALLED)
    log = sandbox.logs / "a1-import.log"
    log.write_text((LOGS / "import-torchvision-nms.log").read_text())
    transcript = Transcript(tmp_path / "transcript.jsonl", tmp_path.name)
    yield tmp_path, transcript, sandbox, log
    transcript.close()
