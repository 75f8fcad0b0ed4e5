"""Failure log -> Diagnosis: category, evidence lines, parameters in the tools' own names, tool calls.

A log of any size is read bounded: its head, its tail, and the error-looking lines of the middle
(`read_bounded`). It is then normalized line by line (`normalize`): ANSI codes, timestamps, process
and rank prefixes of vLLM / SGLang / Ray / torchrun / docker compose, log-level prefixes, CUDA's
asynchronous-error hints and repeated lines are removed; a line pasted with several prefixes inside
is split back. The playbook signatures are then matched over the normalized text (`choose`): the
error that ended the run wins over earlier warnings, but a root cause wins over the generic
symptom that follows it (a model "not supported" because its import failed, a worker that died).
A log nothing matches yields `unknown` with its last error lines as evidence, never a guess.
"""

from __future__ import annotations

import bisect
import hashlib
import re
import re._parser as sre
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fr_agent.core.errors import CatalogError
from fr_agent.playbooks.derive import DERIVE
from fr_agent.tools.base import ToolCall

Category = Literal["install_dependency", "set_env_var", "patch_operator", "fix_serve_config", "unrepairable", "unknown"]
HEAD_BYTES, TAIL_BYTES = 256_000, 2_000_000
MIDDLE_LINES, CHUNK_BYTES = 2_000, 8 << 20
MAX_LINE = 4_000
SYMPTOM_WINDOW = 400  # lines: how far back a symptom looks for its root cause

ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
# One prefix at the start of a line; stripped repeatedly, so stacked prefixes all go.
PREFIXES = [
    r"\d{4}-\d\d-\d\d[T ][\d:.,]+(?:Z|[+-]\d\d:?\d\d)?\s*(?:\|\s*)?",  # ISO / docker timestamps
    r"\[\d{4}-\d\d-\d\d[ T][\d:.,]+(?:\s+(?:TP|DP|PP|EP)\d+)*\]\s*",  # SGLang "[2025-01-29 08:52:43 TP5]"
    r"\[\d\d:\d\d:\d\d(?:\.\d+)?\]\s*",  # "[16:10:33]"
    r"\[\s*\d+\.\d+\]\s*",  # dmesg "[74889.644138]"
    r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ [\w.\-/]+(?:\[\d+\])?:\s*",  # syslog / journald
    # "(VllmWorker rank=0 pid=1)"
    r"\((?:[A-Za-z][\w-]*(?:\s+(?:rank|pid|ip|node)=[^\s)]+)+|pid=\d+(?:,\s*ip=[^)]+)?)\)\s*",
    r"\[(?:rank|Rank)\s*\d+\]:?\s*",  # torch "[rank0]:"
    r"[\w.-]{1,40}+[ \t]++\|[ \t]+",  # docker compose "vllm-1  | "
    r"(?:DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\s+\d\d-\d\d\s+[\d:.]+\s+(?:\[[^\]]+\]|[\w.]+:\d+\])\s*",  # vLLM
    r"(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\s*\|\s*[\w.]+\s*\|\s*",  # "ERROR | stderr | "
    r"[EWIF]\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\]\s*",  # glog "W0816 16:43:33.649654 127 file.cc:236]"
    r"(?:stdout|stderr|health)/(?:INFO|ERROR|WARNING)\s+",
    r"E\s{3}",  # pytest "E   "
    r"(?:> )+",  # quoted in an issue
]
PREFIX = re.compile("|".join(f"(?:{p})" for p in PREFIXES))
# All stacked prefixes in one possessive match (most frequent first): the hot loop of big logs.
LINE = re.compile(
    rf"[ \t]*+((?:{'|'.join(f'(?:{PREFIXES[i]})' for i in (5, 8, 0, 1, 6, 2, 3, 10, 9, 11, 12, 13, 4, 7))})*+)"
)
REDRAWN = re.compile(r"^[^\n]*\r(?=[^\n\r])", re.MULTILINE)
GLOG_WARN = re.compile(r"(?:^|\s)W\d{4} ")
PREFIX_START = set("0123456789[(ADEFIJMNOSTWhs>") | set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# A process prefix in the middle of a line: several lines pasted into one.
EMBEDDED_PREFIX = re.compile(r"(?<=\S)\s+(?=\((?:[A-Za-z][\w-]*\s+(?:rank=\S+\s+)?pid=\d+)\)\s)")
RAY_SUFFIX = re.compile(r"\s*\[repeated \d+x across cluster\].*$")
# CUDA's hints say where to look, not what failed; inside one line they are cut off, alone they go.
ASYNC_HINTS = re.compile(
    r"\s*(?:CUDA kernel errors might be asynchronously reported.*"
    r"|For debugging consider passing CUDA_LAUNCH_BLOCKING=1.*"
    r"|Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.*"
    r"|Search for `cuda\w+' in https://docs\.nvidia\.com\S*"
    r"(?: for more information\.)?)$"
)
NOISE_START = set("^~─━│┃╭╮╰╯┌┐└┘═ .-")
NOISE = re.compile(r"^(?:\^+|~+|[─━│┃╭╮╰╯┌┐└┘═ ]+|\.{3,}|-{3,})$")
ERROR_LINE = re.compile(
    r"^(?:[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit|Warning)\b.*|op_check: .*|\[fr-agent\] .*"
    r"|.*\b(?:error|failed|fatal|not found|denied|killed|abort(?:ed)?|segmentation fault|illegal)\b.*)",
    re.IGNORECASE,
)
WARNING_LINE = re.compile(
    r"^(?:\w*Warning:|warnings\.warn\(|WARNING\b|WARN\b|\[W\b|\[W\d|W\d{4} )|^\S+\.py:\d+: \w*Warning: "
)
WARN_START = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_[/.")
WARN_PREFIX = re.compile(r"^(?:WARNING|WARN)\b|^W\d{4} |/WARNING")
# Words that mark a line of a huge log's middle worth keeping (searched lowercased, as plain bytes: fast).
ERROR_WORDS = (
    b"error",
    b"exception",
    b"traceback",
    b"fail",
    b"fatal",
    b"not found",
    b"not supported",
    b"not implemented",
    b"denied",
    b"killed",
    b"cannot",
    b"can't",
    b"could not",
    b"unable",
    b"insufficient",
    b"too old",
    b"illegal",
    b"undefined",
    b"no module",
    b"out of memory",
)
VOLATILE = re.compile(r"0x[0-9a-f]+|\d+(\.\d+)?|/[^\s:'\"]+")
CHAIN = re.compile(
    r"^(?:During handling of the above exception, another exception occurred:"
    r"|The above exception was the direct cause of the following exception:)$"
)


class Playbook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    explain: str
    match: str
    requires: list[str] = Field(default_factory=list, description="regexes that must also occur in the log")
    unless: list[str] = Field(default_factory=list, description="regexes that veto this playbook when they occur")
    category: Category
    tier: Literal["cause", "symptom"] = Field("cause", description="a symptom yields to a root cause found before it")
    confidence: float = Field(0.9, ge=0, le=1)
    derive: str | None = None
    reason: str | None = Field(None, description="short code for unrepairable failures")
    calls: list[ToolCall] = Field(default_factory=list)


class Diagnosis(BaseModel):
    stage: str
    category: Category
    params: dict[str, Any] = Field(
        default_factory=dict, description="the first tool call's arguments; {reason} if unrepairable"
    )
    evidence: list[str]
    tool_calls: list[ToolCall] = Field(default_factory=list)
    confidence: float
    playbook: str | None = None
    explanation: str
    facts: dict[str, Any] = Field(default_factory=dict, description="what the log said: values taken from it")
    signature: str


@cache
def load_playbooks(path: str | None = None) -> tuple[Playbook, ...]:
    text = (
        Path(path).read_text()
        if path
        else resources.files("fr_agent.playbooks").joinpath("signatures.yaml").read_text()
    )
    try:
        entries = [Playbook.model_validate(raw) for raw in yaml.safe_load(text)]
        for entry in entries:
            for pattern in (entry.match, *entry.requires, *entry.unless):
                re.compile(pattern)
            if entry.derive and entry.derive not in DERIVE:
                raise ValueError(f"playbook {entry.id}: unknown derive {entry.derive!r}")
            if entry.category == "unrepairable" and not entry.reason:
                raise ValueError(f"playbook {entry.id}: an unrepairable playbook needs a reason")
        if len({e.id for e in entries}) != len(entries):
            raise ValueError("playbook ids must be unique")
        return tuple(entries)
    except (yaml.YAMLError, ValidationError, re.error, ValueError, TypeError) as err:
        raise CatalogError(f"broken playbook file {path or 'signatures.yaml'}: {str(err).splitlines()[0]}") from None


@cache
def compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.MULTILINE)


# ---------------------------------------------------------------- reading


def error_lines(data: bytes, limit: int = MIDDLE_LINES) -> list[bytes]:
    """The last `limit` lines of `data` holding an error word, in order. Plain lowercase searches from
    the end, so a chunk without errors costs a few memory scans and a dense one stops early."""
    low = data.lower()
    spans: set[tuple[int, int]] = set()
    for word in ERROR_WORDS:
        end, found = len(low), 0
        while found < limit and (at := low.rfind(word, 0, end)) >= 0:
            start = low.rfind(b"\n", 0, at) + 1
            stop = low.find(b"\n", at)
            spans.add((start, stop if stop >= 0 else len(low)))
            end, found = start, found + 1
    return [data[a:b][:MAX_LINE] for a, b in sorted(spans)[-limit:]]


def read_stream(handle: BinaryIO) -> str:
    """Head and tail of a log of any size, plus the error-looking lines of its middle, read in
    chunks: memory stays bounded whatever the size (files and pipes alike)."""
    head = bytearray()
    while len(head) < HEAD_BYTES and (chunk := handle.read(HEAD_BYTES - len(head))):
        head += chunk
    tail, middle, skipped = bytearray(), [], 0
    while chunk := handle.read(CHUNK_BYTES):
        tail += chunk
        if len(tail) > TAIL_BYTES:
            cut = tail.rfind(b"\n", 0, len(tail) - TAIL_BYTES) + 1
            if cut > 0:
                spill = bytes(tail[:cut])
                del tail[:cut]
                skipped += len(spill)
                middle = (middle + error_lines(spill))[-MIDDLE_LINES:]
            elif len(tail) > TAIL_BYTES + MAX_LINE:  # one endless line: keep its end only
                skipped += len(tail) - TAIL_BYTES
                del tail[:-TAIL_BYTES]
    if skipped:
        note = f"\n[fr-agent] ... {skipped} bytes of the middle: only error lines kept ...\n".encode()
        data = bytes(head) + note + b"\n".join(middle) + b"\n" + bytes(tail)
    else:
        data = bytes(head + tail)
    return data.decode("utf-8", errors="replace")


def read_bounded(path: Path) -> str:
    with path.open("rb") as handle:
        return read_stream(handle)


def strip_prefixes(line: str) -> tuple[str, bool]:
    """The line without its prefixes, and whether a prefix said it was a warning."""
    warned = False
    while line and line[0] in PREFIX_START:
        match = PREFIX.match(line)
        if not match or match.end() == 0:
            return line, warned
        warned = warned or bool(WARN_PREFIX.match(match.group()))
        line = line[match.end() :]
    return line, warned


def split_pasted(line: str) -> Iterable[str]:
    """A log pasted as one paragraph keeps each process prefix: split there."""
    return EMBEDDED_PREFIX.split(line) if line.count("pid=") > 1 else (line,)


def normalize_levels(text: str) -> tuple[list[str], list[bool]]:
    """Clean lines of a raw log, each with a flag saying whether it is only a warning. Empty lines,
    decoration and lines repeated within a few lines (the same message from several ranks) go.
    One regex pass per line strips all its stacked prefixes (this is the hot loop for big logs)."""
    if "\x1b" in text:
        text = ANSI.sub("", text)
    if "\r" in text:
        text = REDRAWN.sub("", text).replace("\r", "")  # a progress bar redrawn in place: its last state
    lines: list[str] = []
    warnings: list[bool] = []
    recent: list[str] = []
    for raw in text.split("\n"):
        match = LINE.match(raw)
        prefix, rest = match.group(1), raw[match.end() :]
        pieces = [(rest, prefix)]
        if "pid=" in rest and EMBEDDED_PREFIX.search(rest):  # several lines pasted into one
            pieces = []
            for piece in EMBEDDED_PREFIX.split(rest):
                line, warned = strip_prefixes(piece.strip())
                pieces.append((line, prefix + ("WARN" if warned else "")))
        for line, prefix_text in pieces:
            line = line[:MAX_LINE]
            if "repeated" in line:
                line = RAY_SUFFIX.sub("", line)
            if "CUDA" in line or "TORCH_USE" in line or "docs.nvidia" in line:
                line = ASYNC_HINTS.sub("", line)
            line = line.strip()
            if not line or (line[0] in NOISE_START and NOISE.match(line)) or line.startswith('{"ok":'):
                continue  # decoration, and a probe's verdict (it repeats the error it printed)
            if line in recent:
                continue
            recent.append(line)
            if len(recent) > 8:
                del recent[0]
            lines.append(line)
            warned = bool(prefix_text) and ("WARN" in prefix_text or bool(GLOG_WARN.search(prefix_text)))
            warnings.append(warned or (line[0] in WARN_START and bool(WARNING_LINE.match(line))))
    return lines, warnings


def normalize(text: str) -> list[str]:
    return normalize_levels(text)[0]


def last_errors(lines: list[str], count: int = 3) -> list[str]:
    errors = [line for line in lines if ERROR_LINE.match(line) and not CHAIN.match(line)]
    return list(dict.fromkeys(line[:500] for line in errors[-count:])) or [line[:500] for line in lines[-count:]]


# ---------------------------------------------------------------- matching


@dataclass
class Hit:
    book: Playbook
    match: re.Match
    line_no: int
    line: str
    warning: bool
    column: int = 0  # where the match starts within its line: the later message on one line wins


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


def structure(pattern: str) -> Iterator[tuple[int, str]]:
    """(index, char) of each `(`, `)` and `|` of a regex outside escapes and character classes."""
    i, in_class = 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class, i = True, i + 1 if pattern[i + 1 : i + 2] == "]" else i  # `[]...]`: that `]` is literal
        elif ch in "()|":
            yield i, ch
        i += 1


def top_level_branches(pattern: str) -> list[str]:
    """`a|b(c|d)|e` -> ["a", "b(c|d)", "e"]: split at the `|` outside groups and classes."""
    branches, depth, start = [], 0, 0
    for i, ch in structure(pattern):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "|" and depth == 0:
            branches.append(pattern[start:i])
            start = i + 1
    return [*branches, pattern[start:]]


def closing(pattern: str) -> int:
    """Index of the parenthesis closing the one at 0."""
    depth = 0
    for i, ch in structure(pattern):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == ")" and depth == 0:
            return i
    return -1


def literal_runs(items: list) -> list[str]:
    """Literal strings that occur in every match of a parsed sequence (groups without alternation are
    read through; anything else ends a run)."""
    runs, current, stack = [], [], list(reversed(items))
    while stack:
        op, arg = stack.pop()
        if op is sre.LITERAL:
            current.append(chr(arg))
        elif op is sre.SUBPATTERN and not any(o is sre.BRANCH for o, _ in arg[-1]):
            stack.extend(reversed(list(arg[-1])))
        elif op is sre.AT:
            continue
        else:
            runs.append("".join(current))
            current = []
    runs.append("".join(current))
    return [r for r in runs if r]


@cache
def needles(pattern: str) -> tuple[tuple[str, ...], bool] | None:
    """Plain strings of which every match of `pattern` contains one (the longest literal of each
    top-level branch), and whether to compare them lowercased; None if a branch has no literal of 3+
    characters (then the whole text is searched)."""
    ignore_case = bool(sre.parse(pattern).state.flags & re.IGNORECASE)
    flags = re.match(r"^\(\?[aiLmsux]+\)", pattern)
    body = pattern[flags.end() :] if flags else pattern
    while body.startswith("(") and len(top_level_branches(body)) == 1 and closing(body) == len(body) - 1:
        body = re.sub(r"^\((?:\?:|\?P<\w+>)?", "", body)[:-1]  # (?:a|b) as a whole -> a|b
    found = []
    for branch in top_level_branches(body):
        best = max(literal_runs(list(sre.parse(branch))), key=len, default="")
        if len(best) < 3:
            return None
        found.append(best.lower() if ignore_case else best)
    return tuple(found), ignore_case


def present(pattern: str, joined: str, lowered: str) -> bool:
    """Cheap test: can `pattern` match anywhere? (False only when none of its needles occurs.)"""
    hint = needles(pattern)
    return hint is None or any(n in (lowered if hint[1] else joined) for n in hint[0])


def candidate_text(pattern: str, joined: str, lowered: str, starts: list[int]) -> tuple[str, list[int]] | None:
    """The lines that can hold a match of `pattern` (each with the line after it, for messages that
    wrap), joined, with their line numbers; None means: search the whole text."""
    hint = needles(pattern)
    if hint is None:
        return None
    haystack = lowered if hint[1] else joined
    picked: set[int] = set()
    for needle in hint[0]:
        position = haystack.find(needle)
        while position >= 0:
            line_no = bisect.bisect_right(starts, position) - 1
            picked.update((line_no, line_no + 1))
            next_line = starts[line_no + 1] if line_no + 1 < len(starts) else len(haystack)
            position = haystack.find(needle, next_line)
    numbers = sorted(n for n in picked if n < len(starts))
    if len(numbers) > len(starts) // 2:
        return None
    pieces = [joined[starts[n] : (starts[n + 1] - 1 if n + 1 < len(starts) else len(joined))] for n in numbers]
    return "\n".join(pieces), numbers


def find_hits(joined: str, starts: list[int], warnings: list[bool], playbooks: tuple[Playbook, ...]) -> list[Hit]:
    """The last match of each playbook whose `requires` hold and whose `unless` do not. Literal needles
    of each regex first narrow the text to the lines that can match, which keeps big logs fast."""
    lowered = joined.lower()
    hits = []
    for book in playbooks:
        if not present(book.match, joined, lowered):
            continue
        if any(present(veto, joined, lowered) and compiled(veto).search(joined) for veto in book.unless):
            continue
        if not all(present(extra, joined, lowered) and compiled(extra).search(joined) for extra in book.requires):
            continue
        narrowed = candidate_text(book.match, joined, lowered, starts)
        text, numbers = narrowed if narrowed else (joined, None)
        last = None
        for last in compiled(book.match).finditer(text):
            pass
        if last is None:
            continue
        if numbers is None:
            line_no = bisect.bisect_right(starts, last.start()) - 1
        else:
            line_no = numbers[text.count("\n", 0, last.start())]
        end = joined.find("\n", starts[line_no])
        line = joined[starts[line_no] : end if end >= 0 else len(joined)]
        column = last.start() - (text.rfind("\n", 0, last.start()) + 1)
        hits.append(Hit(book, last, line_no, line, warnings[line_no], column))
    return hits


def choose(hits: list[Hit]) -> Hit | None:
    """The error that ended the run: errors before warnings, latest first; a symptom yields to a root cause
    found within SYMPTOM_WINDOW lines before it."""
    if not hits:
        return None
    errors = [h for h in hits if not h.warning] or hits
    latest = max(errors, key=lambda h: (h.line_no, h.column))
    if latest.book.tier == "symptom":
        causes = [
            h for h in hits if h.book.tier == "cause" and latest.line_no - SYMPTOM_WINDOW <= h.line_no <= latest.line_no
        ]
        if causes:
            return max(causes, key=lambda h: (not h.warning, h.line_no))
    return latest


def signature_of(stage: str, playbook: str | None, params: dict, evidence: list[str]) -> str:
    basis = (
        f"{stage}|{playbook}|{sorted(params.items())}"
        if playbook
        else f"{stage}|" + "|".join(VOLATILE.sub("#", line) for line in evidence[-1:])
    )
    return hashlib.sha256(basis.encode()).hexdigest()[:16]


def diagnose_lines(
    lines: list[str],
    stage: str = "unknown",
    *,
    timed_out: bool = False,
    playbooks: tuple[Playbook, ...] | None = None,
    warnings: list[bool] | None = None,
) -> Diagnosis:
    warnings = warnings or [False] * len(lines)
    joined = "\n".join(lines)
    starts, offset = [], 0
    for line in lines:
        starts.append(offset)
        offset += len(line) + 1
    hits = find_hits(joined, starts, warnings, playbooks or load_playbooks()) if lines else []
    while hits:
        hit = choose(hits)
        diagnosis = from_hit(hit, lines, joined, stage)
        if diagnosis is not None:
            return diagnosis
        hits.remove(hit)  # its parameters could not be derived (e.g. an op name FlagGems does not register)
    evidence = last_errors(lines) if lines else ["(empty log)"]
    if timed_out:
        return Diagnosis(
            stage=stage,
            category="unrepairable",
            explanation=f"the {stage} stage hung and was killed",
            evidence=evidence,
            params={"reason": f"{stage} stage timed out"},
            confidence=0.6,
            signature=signature_of(stage, "timeout", {}, evidence),
        )
    return Diagnosis(
        stage=stage,
        category="unknown",
        explanation="no playbook matches this failure",
        evidence=evidence,
        confidence=0.0,
        signature=signature_of(stage, None, {}, evidence),
    )


def from_hit(hit: Hit, lines: list[str], joined: str, stage: str) -> Diagnosis | None:
    book = hit.book
    facts = {k: typed(v) for k, v in hit.match.groupdict().items() if v is not None}
    if book.derive:
        derived = DERIVE[book.derive](facts, joined)
        if derived is None:
            return None
        facts.update(derived)
    try:
        calls = [ToolCall(tool=c.tool, args={k: fill(v, facts) for k, v in c.args.items()}) for c in book.calls]
    except (KeyError, IndexError):
        return None
    evidence = [hit.line[:500]]
    final = last_errors(lines[hit.line_no :], 1)
    if final and final[0] != evidence[0] and not hit.line.startswith(final[0][:60]):
        evidence.append(final[0])
    params = {"reason": book.reason} if book.category == "unrepairable" else (dict(calls[0].args) if calls else {})
    confidence = round(book.confidence - (0.2 if hit.warning else 0.0), 2)
    return Diagnosis(
        stage=stage,
        category=book.category,
        playbook=book.id,
        explanation=book.explain,
        evidence=evidence,
        params=params,
        facts=facts,
        tool_calls=calls,
        confidence=confidence,
        signature=signature_of(stage, book.id, params, evidence),
    )


def diagnose_text(
    text: str, stage: str = "unknown", *, timed_out: bool = False, playbooks: tuple[Playbook, ...] | None = None
) -> Diagnosis:
    lines, warnings = normalize_levels(text)
    return diagnose_lines(lines, stage, timed_out=timed_out, playbooks=playbooks, warnings=warnings)


def diagnose_log(path: Path, stage: str = "unknown", *, timed_out: bool = False) -> Diagnosis:
    return diagnose_text(read_bounded(path), stage, timed_out=timed_out)


def diagnose_stream(handle: BinaryIO, stage: str = "unknown") -> Diagnosis:
    """A log piped in (stdin): bounded like a file, stray bytes replaced."""
    return diagnose_text(read_stream(handle), stage)
