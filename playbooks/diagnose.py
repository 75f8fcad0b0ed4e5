"""Failure log -> Diagnosis: category, evidence lines, extracted parameters, candidate tool calls.

Logs are read bounded (head and tail), normalized (ANSI codes, vLLM process prefixes), then matched
against the playbook signatures in order. A log nothing matches yields `unknown` with the last error
lines as evidence, never a confident guess.
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fr_agent.errors import CatalogError
from fr_agent.playbooks.derive import DERIVE
from fr_agent.tools.base import ToolCall

Category = Literal["install_dependency", "set_env_var", "patch_operator", "fix_serve_config", "unrepairable", "unknown"]
HEAD_BYTES, TAIL_BYTES = 256_000, 2_000_000

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PROCESS_PREFIX = re.compile(r"^\((?:[A-Za-z]+[\w-]*(?: rank=\d+)? pid=\d+)\)\s*")
LEVEL_PREFIX = re.compile(r"^(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) \d\d-\d\d [\d:]+ \[[^\]]+\]\s*")
ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b.*|^op_check: .*|^\[fr-agent\] .*")
VOLATILE = re.compile(r"0x[0-9a-f]+|\d+(\.\d+)?|/[^\s:'\"]+")


class Playbook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    explain: str
    match: str
    requires: list[str] = Field(default_factory=list)
    category: Category
    derive: str | None = None
    calls: list[ToolCall] = Field(default_factory=list)


class Diagnosis(BaseModel):
    stage: str
    category: Category
    playbook: str | None = None
    explanation: str
    evidence: list[str]
    params: dict[str, Any] = Field(default_factory=dict)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    confidence: float
    signature: str


@cache
def load_playbooks(path: str | None = None) -> tuple[Playbook, ...]:
    text = Path(path).read_text() if path else resources.files("fr_agent.playbooks").joinpath("signatures.yaml").read_text()
    try:
        entries = [Playbook.model_validate(raw) for raw in yaml.safe_load(text)]
        for entry in entries:
            re.compile(entry.match)
            if entry.derive and entry.derive not in DERIVE:
                raise ValueError(f"playbook {entry.id}: unknown derive {entry.derive!r}")
        return tuple(entries)
    except (yaml.YAMLError, ValidationError, re.error, ValueError, TypeError) as err:
        raise CatalogError(f"broken playbook file {path or 'signatures.yaml'}: {str(err).splitlines()[0]}") from None


def read_bounded(path: Path) -> str:
    """At most HEAD_BYTES + TAIL_BYTES of a log of any size, stray bytes replaced."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        if size <= HEAD_BYTES + TAIL_BYTES:
            data = handle.read()
        else:
            data = handle.read(HEAD_BYTES) + b"\n...\n"
            handle.seek(size - TAIL_BYTES)
            data += handle.read()
    return data.decode("utf-8", errors="replace")


def normalize(text: str) -> list[str]:
    lines = []
    for raw in ANSI.sub("", text).splitlines():
        line = LEVEL_PREFIX.sub("", PROCESS_PREFIX.sub("", raw.strip()))
        if line and not line.startswith('{"ok":'):  # a probe's verdict repeats the error it already printed
            lines.append(line)
    return lines


def last_errors(lines: list[str], count: int = 3) -> list[str]:
    errors = [line for line in lines if ERROR_LINE.match(line)]
    return list(dict.fromkeys(errors[-count:])) or lines[-count:]


def typed(value: str) -> int | float | str:
    """Numbers taken from a log become numbers (a max_model_len is an int, not text)."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


def fill(value: Any, params: dict[str, Any]) -> Any:
    """Fill "{name}" templates; a template that is exactly one placeholder keeps the param's type."""
    if isinstance(value, str):
        whole = re.fullmatch(r"\{(\w+)\}", value)
        return params[whole.group(1)] if whole else value.format(**params)
    return value


def signature_of(stage: str, playbook: str | None, params: dict, evidence: list[str]) -> str:
    basis = f"{stage}|{playbook}|{sorted(params.items())}" if playbook else \
        f"{stage}|" + "|".join(VOLATILE.sub("#", line) for line in evidence[-1:])
    return hashlib.sha256(basis.encode()).hexdigest()[:16]


def latest_match(joined: str, playbooks: tuple[Playbook, ...]) -> tuple[Playbook, re.Match] | None:
    """The signature matching latest in the log: warnings come early, the error that ended the run last."""
    best = None
    for book in playbooks:
        if not all(re.search(extra, joined) for extra in book.requires):
            continue
        last = None
        for last in re.finditer(book.match, joined):
            pass
        if last and (best is None or last.start() > best[1].start()):
            best = (book, last)
    return best


def diagnose_text(text: str, stage: str = "unknown", *, timed_out: bool = False,
                  playbooks: tuple[Playbook, ...] | None = None) -> Diagnosis:
    lines = normalize(text)
    joined = "\n".join(lines)
    hit = latest_match(joined, playbooks or load_playbooks())
    if hit:
        book, found = hit
        params = {k: typed(v) for k, v in found.groupdict().items() if v is not None}
        if book.derive:
            params.update(DERIVE[book.derive](params))
        calls = [ToolCall(tool=c.tool, args={k: fill(v, params) for k, v in c.args.items()}) for c in book.calls]
        evidence_line = joined[joined.rfind("\n", 0, found.start()) + 1:].split("\n", 1)[0]
        return Diagnosis(stage=stage, category=book.category, playbook=book.id, explanation=book.explain,
                         evidence=[evidence_line], params=params, tool_calls=calls, confidence=0.9,
                         signature=signature_of(stage, book.id, params, [evidence_line]))
    evidence = last_errors(lines)
    if timed_out:
        return Diagnosis(stage=stage, category="unrepairable", explanation=f"the {stage} stage hung and was killed",
                         evidence=evidence, params={"reason": f"{stage} stage timed out"}, confidence=0.6,
                         signature=signature_of(stage, "timeout", {}, evidence))
    return Diagnosis(stage=stage, category="unknown", explanation="no playbook matches this failure",
                     evidence=evidence, confidence=0.0, signature=signature_of(stage, None, {}, evidence))


def diagnose_log(path: Path, stage: str = "unknown", *, timed_out: bool = False) -> Diagnosis:
    return diagnose_text(read_bounded(path), stage, timed_out=timed_out)
