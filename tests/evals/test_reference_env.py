"""The eval's reference server gets the allowlisted environment: no canary secret in its /proc/PID/environ,
and its log is readable by its owner only."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from fr_agent.core.config import EvalSettings
from fr_agent.evals.agent import reference_server

CANARIES = {"HF_TOKEN": "canary-hf-0101", "OPENAI_API_KEY": "canary-oa-0102", "FR_AGENT_LLM_API_KEY": "canary-0103"}


def test_reference_server_environ_has_no_secret(tiny_model, tmp_path, monkeypatch):
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    started: list[subprocess.Popen] = []
    real = subprocess.Popen

    class Recorded(real):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(subprocess, "Popen", Recorded)
    log = tmp_path / "logs" / "reference-server.log"
    with reference_server(str(tiny_model), EvalSettings(), log):
        (server,) = started
        raw = Path(f"/proc/{server.pid}/environ").read_bytes().decode(errors="replace")
    assert "PATH=" in raw
    assert not [value for value in CANARIES.values() if value in raw]
    assert not [name for name in CANARIES if f"{name}=" in raw]
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
