"""Secrets: kept out of child processes, out of other users' reach, and out of everything fr-agent writes.

Names are judged by their words (HF_TOKEN, OPENAI_API_KEY, apiKey), not by substring, so that
TOKENIZERS_PARALLELISM or max_num_batched_tokens stay readable. Values are judged by shape, and by the
secret values this process's environment actually holds (any length). Child processes get an allowlisted
environment (`child_env`), and the files of a run are created readable by their owner only (`open_private`).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

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

# Fused words that only secrets use in environment variable names (HF_AUTHTOKEN, MYSQLPASSWORD).
SECRET_ENV_PARTS = ("SECRET", "PASSWORD", "PASSWD", "CREDENTIAL")
KNOWN_SECRET_ENV = frozenset({"HF_TOKEN", "OPENAI_API_KEY", "FR_AGENT_LLM_API_KEY"})
# Values a secret-named variable holds that are switches, not secrets (HF_HUB_DISABLE_IMPLICIT_TOKEN=true).
NOT_SECRET_VALUES = frozenset({"true", "false", "yes", "no", "none", "null", "on", "off", "auto"})
MIN_SECRET_CHARS = 4


def _token(prefix: str, chars: str) -> re.Pattern[str]:
    """A prefixed token: 20+ characters, or 6+ with a digit among them (hf_server and sk-learn are names)."""
    return re.compile(rf"(?<![A-Za-z0-9]){prefix}(?:[{chars}]{{20,}}|(?=[{chars}]*[0-9])[{chars}]{{6,}})")


TOKEN_PATTERNS = (
    _token("hf_", "A-Za-z0-9"),  # Hugging Face access token
    _token("sk-", "A-Za-z0-9_-"),  # OpenAI-style API key
    _token("gh[pousr]_", "A-Za-z0-9"),  # GitHub token
)
BEARER = re.compile(r"(?i)(?<![A-Za-z0-9])(bearer\s+)(?!<redacted>)[^\s'\"`,;]+")
# scheme://user:password@host: the password goes, the user and host stay readable.
# An unescaped "@" in the password is allowed: the password runs to the authority's last "@".
URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/@:'\"`]+:)(?!<redacted>@)[^\s/'\"`]+(@)")
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


def is_secret_env_name(name: str) -> bool:
    """True for an environment variable whose value is a secret: by its words, or a fused secret word."""
    upper = name.upper()
    return upper in KNOWN_SECRET_ENV or is_secret_name(name) or any(part in upper for part in SECRET_ENV_PARTS)


def secret_values(env: Mapping[str, str] | None = None) -> frozenset[str]:
    """The values of `env`'s (default: this process's environment) secret-named variables, 4+ characters."""
    env = os.environ if env is None else env
    return frozenset(
        value
        for name, value in env.items()
        if is_secret_env_name(name) and len(value) >= MIN_SECRET_CHARS and value.lower() not in NOT_SECRET_VALUES
    )


@functools.lru_cache(maxsize=8)
def _values_pattern(values: frozenset[str]) -> re.Pattern[str] | None:
    if not values:
        return None
    return re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))


def redact_text(text: str) -> str:
    """Free text with the environment's secret values, token-shaped substrings, bearer tokens, URL passwords
    and secret-named assignments replaced."""
    known = _values_pattern(secret_values())
    if known is not None:
        text = known.sub(REDACTED, text)
    for pattern in TOKEN_PATTERNS:
        text = pattern.sub(REDACTED, text)
    text = BEARER.sub(lambda m: f"{m[1]}{REDACTED}", text)
    text = URL_CREDENTIALS.sub(lambda m: f"{m[1]}{REDACTED}{m[2]}", text)
    text = ASSIGNMENT.sub(lambda m: f"{m[1]}={REDACTED}" if is_secret_name(m[1]) else m[0], text)
    return FLAG_VALUE.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}" if is_secret_name(m[1]) else m[0], text)


def redact_env(env: dict[str, str]) -> dict[str, str]:
    """Env with every secret value (by name, by shape, or known from this process's env) replaced whole."""
    known = secret_values()
    return {
        name: REDACTED if is_secret_name(name) or looks_like_token(value) or value in known else redact_text(value)
        for name, value in env.items()
    }


# ---- child processes ---------------------------------------------------------------------------

# What every child process (engine, probe, installer, reference server) may take from this process's
# environment; the caller adds what it sets itself and the recipe's env. Nothing else of the host goes.
CHILD_ENV = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR")
CHILD_ENV_PREFIXES = ("LC_",)
CHILD_ENV_SUFFIXES = ("_VISIBLE_DEVICES",)  # the chip's device selection (CUDA_, ASCEND_RT_, MLU_ ...)
# The hub cache and offline switches a run sets (bench_repair, tests) and the user's hub mirror.
HF_ENV = ("HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_ENDPOINT")
# Installers only: how to reach the package index from this host.
INSTALLER_ENV = (
    *(name for base in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY") for name in (base, base.lower())),
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "UV_NATIVE_TLS",
)


def child_env(
    *,
    sets: Mapping[str, str] | None = None,
    recipe: Mapping[str, str] | None = None,
    passthrough: Iterable[str] = (),
    installer: bool = False,
    host: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The whole environment of a child process: the allowlisted variables of `host` (default: this process's
    environment; `passthrough` names more, `installer` adds proxy and CA variables), then what the caller
    `sets`, then the `recipe`'s env. A secret-named variable gets through only when the recipe sets it."""
    host = os.environ if host is None else host
    names = {*CHILD_ENV, *HF_ENV, *passthrough, *(INSTALLER_ENV if installer else ())}
    env = {
        name: value
        for name, value in host.items()
        if name in names or name.startswith(CHILD_ENV_PREFIXES) or name.endswith(CHILD_ENV_SUFFIXES)
    }
    env.update(sets or {})
    env = {name: value for name, value in env.items() if not is_secret_env_name(name)}
    env.update(recipe or {})
    return env


# ---- files -------------------------------------------------------------------------------------

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def make_private_dir(path: Path, *, exist_ok: bool = False) -> None:
    """A folder only its owner can enter (its parents are made as usual)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir(mode=PRIVATE_DIR, exist_ok=exist_ok)
    path.chmod(PRIVATE_DIR)


def open_private(path: Path | str, mode: str = "w", **kwargs: Any) -> IO[Any]:
    """`open(path, mode)` for a file only its owner can read, an existing file included ("w", "a", "x", binary
    or text)."""
    flags = os.O_WRONLY | os.O_CREAT | {"w": os.O_TRUNC, "a": os.O_APPEND, "x": os.O_EXCL}[mode[0]]
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)
    return os.fdopen(fd, mode, **kwargs)


def write_private(path: Path, text: str) -> None:
    with open_private(path, "w", encoding="utf-8") as handle:
        handle.write(text)


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
