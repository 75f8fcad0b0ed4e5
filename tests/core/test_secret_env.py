"""Secrets by value and by pattern, the allowlisted environment of child processes, and private run files."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from fr_agent.core.config import Settings
from fr_agent.core.events import Transcript
from fr_agent.core.hints import HintBox
from fr_agent.core.request import RunRequest
from fr_agent.core.secrets import (
    REDACTED,
    child_env,
    make_private_dir,
    open_private,
    redact_env,
    redact_text,
    secret_values,
    write_private,
)
from fr_agent.shell.runs import Run


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---- redaction -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Authorization: Bearer sk-abc", f"Authorization: Bearer {REDACTED}"),
        ("curl -H 'Authorization: bearer x'", f"curl -H 'Authorization: bearer {REDACTED}'"),
        ("key sk-ab12cd34 here", f"key {REDACTED} here"),
        ("login hf_Ab3dEf9 now", f"login {REDACTED} now"),
    ],
)
def test_short_tokens_are_redacted(text, expected):
    assert redact_text(text) == expected


def test_names_that_look_like_prefixes_are_kept():
    text = "python hf_server.py; pip install sk-learn; hf_hub_download; disk-abcdefghij123"
    assert redact_text(text) == text


def test_url_credentials_lose_the_password():
    assert redact_text("pip install --index-url https://alice:s3cr3t@pypi.example/simple x") == (
        f"pip install --index-url https://alice:{REDACTED}@pypi.example/simple x"
    )
    assert redact_text("proxy http://u:p@ss@proxy:3128 up") == f"proxy http://u:{REDACTED}@proxy:3128 up"
    assert redact_text("http://host:8080/path and mail me@example.com") == (
        "http://host:8080/path and mail me@example.com"
    )


def test_redaction_is_idempotent_for_the_new_patterns():
    once = redact_text("Bearer abc https://u:pw@h")
    assert redact_text(once) == once == f"Bearer {REDACTED} https://u:{REDACTED}@h"


def test_secret_values_from_the_environment_any_length(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "q9Zx")  # 4 characters: short, still a secret
    monkeypatch.setenv("FR_AGENT_LLM_API_KEY", "llmkey-77")
    monkeypatch.setenv("MYSQLPASSWORD", "hunter2")
    monkeypatch.setenv("SERVICE_CREDENTIALS", "c-r-e-d")
    monkeypatch.setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "true")  # a switch, not a secret
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("WEIRD_KEY", "abc")  # under 4 characters: too short to redact everywhere
    assert {"q9Zx", "llmkey-77", "hunter2", "c-r-e-d"} <= secret_values()
    assert not {"true", "false", "abc"} & secret_values()
    text = "token q9Zx, key=llmkey-77 and pw hunter2 (c-r-e-d); parallel false, implicit true, abc"
    assert redact_text(text) == (
        f"token {REDACTED}, key={REDACTED} and pw {REDACTED} ({REDACTED}); parallel false, implicit true, abc"
    )
    assert redact_env({"NOTE": "hunter2", "URL": "https://u:pw@h", "N": "8"}) == {
        "NOTE": REDACTED,
        "URL": f"https://u:{REDACTED}@h",
        "N": "8",
    }


# ---- child environments --------------------------------------------------------------------------

ALLOWED = {  # what every child may see of the host
    "PATH": "/usr/bin",
    "HOME": "/home/me",
    "LANG": "C.UTF-8",
    "LC_CTYPE": "C.UTF-8",
    "TMPDIR": "/tmp",
    "HF_HUB_OFFLINE": "1",
    "HF_HOME": "/hf",
    "CUDA_VISIBLE_DEVICES": "1",
    "ASCEND_RT_VISIBLE_DEVICES": "0",
}
HOST = ALLOWED | {
    "HTTPS_PROXY": "http://proxy:3128",
    "SSL_CERT_FILE": "/etc/ssl/cert.pem",
    "HF_TOKEN": "hf_canary",
    "OPENAI_API_KEY": "sk-canary",
    "FR_AGENT_LLM_API_KEY": "canary-llm",
    "GITHUB_TOKEN": "canary-gh",
    "AWS_SECRET_ACCESS_KEY": "canary-aws",
    "DB_PASSWORD": "canary-db",
    "UV_INDEX_URL": "https://elsewhere/simple",
    "PIP_INDEX_URL": "https://elsewhere/simple",
    "LD_PRELOAD": "/evil.so",
    "FR_AGENT_HOME": "/home/me/.fr-agent",
}


def test_child_env_is_the_allowlist_only():
    assert child_env(host=HOST) == ALLOWED


def test_installers_also_get_proxy_and_ca_but_no_index():
    env = child_env(host=HOST, installer=True)
    assert env["HTTPS_PROXY"] == "http://proxy:3128" and env["SSL_CERT_FILE"] == "/etc/ssl/cert.pem"
    assert not {"UV_INDEX_URL", "PIP_INDEX_URL", "HF_TOKEN", "LD_PRELOAD"} & env.keys()


def test_caller_and_recipe_values_and_the_one_secret_a_recipe_sets():
    env = child_env(
        host=HOST,
        sets={"HOME": "/run/work", "MY_API_KEY": "from-caller"},
        recipe={"VLLM_CPU_KVCACHE_SPACE": "1", "HF_TOKEN": "recipe-token"},
        passthrough=("OPENAI_API_KEY", "FR_AGENT_HOME"),
    )
    assert env["HOME"] == "/run/work" and env["VLLM_CPU_KVCACHE_SPACE"] == "1" and env["FR_AGENT_HOME"]
    assert env["HF_TOKEN"] == "recipe-token"  # the recipe set it explicitly: that one only
    assert not {"OPENAI_API_KEY", "MY_API_KEY", "GITHUB_TOKEN", "DB_PASSWORD"} & env.keys()


# ---- private files -------------------------------------------------------------------------------


def test_private_dir_and_files(tmp_path):
    run = tmp_path / "runs" / "r1"
    make_private_dir(run)
    assert mode(run) == 0o700
    with pytest.raises(FileExistsError):
        make_private_dir(run)
    write_private(run / "eval.json", "{}")
    with open_private(run / "a.log", "wb") as log:
        log.write(b"x")
    with open_private(run / "a.log", "a", encoding="utf-8") as log:
        log.write("y")
    assert (run / "a.log").read_text() == "xy"
    existing = run / "old.log"
    existing.write_text("was world-readable")
    existing.chmod(0o644)
    open_private(existing, "w").close()
    assert [mode(run / n) for n in ("eval.json", "a.log", "old.log")] == [0o600] * 3


def test_transcript_and_hints_are_owner_only(tmp_path):
    transcript = Transcript(tmp_path / "transcript.jsonl", "r1")
    transcript.emit("note", message="hello")
    HintBox(tmp_path).add("try float32", "cli")
    assert mode(tmp_path / "transcript.jsonl") == 0o600 and mode(tmp_path / "hints.jsonl") == 0o600


def test_a_new_run_folder_is_owner_only(tmp_path):
    run = Run.create(RunRequest(model="tiny-llama", chip="cpu"), Settings(home=tmp_path), run_id="r1")
    assert mode(run.files.root) == 0o700 and mode(run.files.request) == 0o600
