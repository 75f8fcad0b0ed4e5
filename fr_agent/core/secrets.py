"""Secret redaction for everything fr-agent writes: published files, transcripts, logs.

Names are judged by their words (HF_TOKEN, OPENAI_API_KEY, apiKey), not by substring, so that
TOKENIZERS_PARALLELISM or max_num_batched_tokens stay readable. Values are judged by shape.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "<redacted>"

SECRET_WORDS = frozenset(
    {
        "token",
        "key",
        "secret",
        "secrets",
        "password",
        "passwords",
        "passwd",
        "credential",
        "credentials",
        "apikey",
        "accesskey",
        "secretkey",
        "privatekey",
    }
)
# Fused words such as "authtoken" or "dbpassword"; "key" is left out here ("monkey").
SECRET_SUFFIXES = ("token", "secret", "password", "passwd", "credential", "credentials")

TOKEN_PATTERNS = (
    re.compile(r"(?<![A-Za-z0-9])hf_[A-Za-z0-9]{20,}"),  # Hugging Face access token
    re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_-]{20,}"),  # OpenAI-style API key
    re.compile(r"(?<![A-Za-z0-9])gh[pousr]_[A-Za-z0-9]{20,}"),  # GitHub token
)
# NAME=value and --flag value / --flag=value, where the name decides.
# A bare value stops at quotes and backticks, so markdown such as `HF_TOKEN=x` keeps its closing tick.
ASSIGNMENT = re.compile(r"(?<![A-Za-z0-9_-])([A-Za-z_][A-Za-z0-9_.-]*)=([^\s'\"`]+|'[^']*'|\"[^\"]*\")")
FLAG_VALUE = re.compile(r"(?<![A-Za-z0-9_-])(--?[A-Za-z][A-Za-z0-9_-]*)(\s+)([^\s-][^\s]*)")


def _name_words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)  # apiKey -> api Key
    return [word.lower() for word in re.split(r"[^A-Za-z0-9]+", spaced) if word]


def is_secret_name(name: str) -> bool:
    """True when a variable, field or flag name says it holds a secret."""
    words = _name_words(str(name))
    if words == ["key"]:  # a bare "key" names a mapping key ({"key": ..., "value": ...}), not a secret
        return False
    return any(word in SECRET_WORDS or word.endswith(SECRET_SUFFIXES) for word in words)


def looks_like_token(value: str) -> bool:
    return any(pattern.search(value) for pattern in TOKEN_PATTERNS)


def redact_text(text: str) -> str:
    """Free text with token-shaped substrings and secret-named assignments replaced."""
    for pattern in TOKEN_PATTERNS:
        text = pattern.sub(REDACTED, text)
    text = ASSIGNMENT.sub(lambda m: f"{m[1]}={REDACTED}" if is_secret_name(m[1]) else m[0], text)
    return FLAG_VALUE.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}" if is_secret_name(m[1]) else m[0], text)


def redact_env(env: dict[str, str]) -> dict[str, str]:
    """Env with every secret value (by name or by shape) replaced whole."""
    return {name: REDACTED if is_secret_name(name) or looks_like_token(value) else value for name, value in env.items()}


def redact_value(key: Any, value: Any) -> Any:
    """A JSON-like value under `key`, secrets redacted at any depth (transcript fields, recipe dumps)."""
    if isinstance(value, str):
        return REDACTED if is_secret_name(key) and value else redact_text(value)
    if isinstance(value, dict):
        return _redact_mapping(value)
    if isinstance(value, (list, tuple)):
        return _redact_sequence(key, value)
    # Numbers and booleans under secret-looking names (num_key_value_heads: 8) carry no secret.
    return value


def _redact_mapping(mapping: dict) -> dict:
    """Fields redacted; a {"name": "HF_TOKEN", "value": ...} pair (tool args) has its value redacted too."""
    out = {k: redact_value(k, v) for k, v in mapping.items()}
    named = [mapping.get(field) for field in ("name", "key", "var")]
    if isinstance(out.get("value"), str) and any(isinstance(n, str) and is_secret_name(n) for n in named):
        out["value"] = REDACTED
    return out


def _redact_sequence(key: Any, items: list | tuple) -> list:
    """Items redacted; in an argv, the value after a secret flag (--api-key VALUE) too."""
    out: list = []
    for index, item in enumerate(items):
        previous = items[index - 1] if index else None
        after_secret_flag = (
            isinstance(previous, str) and previous.startswith("-") and "=" not in previous and is_secret_name(previous)
        )
        out.append(REDACTED if after_secret_flag and isinstance(item, str) else redact_value(key, item))
    return out
