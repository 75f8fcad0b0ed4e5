"""The card linter: what must never reach users. Published cards elsewhere have shipped placeholder text,
zero scores and a failed accuracy gate; each of those is a finding here, and any finding blocks publishing.

Rules: metadata (base_model, license, pipeline_tag, tags naming the chip), every section present and
non-empty, no placeholder text, an eval table whose every row has a reference and a migrated number,
no migrated zero beside a non-zero reference, and a gate that passed (in the text and in the metadata).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from huggingface_hub import ModelCard
from pydantic import BaseModel

from fr_agent.agents.publish import SECTIONS

PLACEHOLDERS = re.compile(
    r"More Information Needed|\bTODO\b|\bTBD\b|\bFIXME\b|\bXXX\b|\{\{|\}\}|<your[ _-]|lorem ipsum|\bplaceholder\b"
    r"|\[insert|\bcoming soon\b",
    re.IGNORECASE,
)
MISSING = {"", "-", "—", "n/a", "na", "nan", "none", "null", "inf", "-inf", "?"}
EVAL_SECTION = "Eval: reference vs migrated"


class Finding(BaseModel):
    rule: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.rule}: {self.message}" + (f" (line {self.line})" if self.line else "")


def lint_text(text: str) -> list[Finding]:
    findings: list[Finding] = []
    try:
        card = ModelCard(text, ignore_metadata_errors=False)
    except Exception as err:  # a card whose metadata block does not parse is as bad as one without
        return [Finding(rule="metadata", message=f"metadata does not parse: {err}")]
    findings += metadata_findings(card.data.to_dict())
    findings += placeholder_findings(text)
    sections = split_sections(card.text)
    for title in SECTIONS:
        if title not in sections:
            findings.append(Finding(rule="section", message=f"section '## {title}' is missing"))
        elif not sections[title][1].strip():
            findings.append(Finding(rule="section", message=f"section '## {title}' is empty", line=sections[title][0]))
    if EVAL_SECTION in sections:
        findings += eval_findings(*sections[EVAL_SECTION], offset=text_offset(text, card.text))
    return findings


def lint_file(path: Path) -> list[Finding]:
    return lint_text(path.read_text(encoding="utf-8"))


def metadata_findings(meta: dict) -> list[Finding]:
    findings = []
    for key in ("base_model", "license", "pipeline_tag"):
        if not meta.get(key):
            findings.append(Finding(rule="metadata", message=f"metadata has no {key}"))
    tags = meta.get("tags") or []
    if not isinstance(tags, list):
        findings.append(Finding(rule="metadata", message=f"metadata tags is a {type(tags).__name__}, not a list"))
        tags = []
    if not tags:
        findings.append(Finding(rule="metadata", message="metadata has no tags"))
    info = meta.get("fr_agent") or {}
    if not isinstance(info, dict):
        findings.append(
            Finding(rule="metadata", message=f"metadata fr_agent is a {type(info).__name__}, not a mapping")
        )
        info = {}
    chip = info.get("chip")
    if not chip:
        findings.append(Finding(rule="metadata", message="metadata does not say the chip (fr_agent.chip)"))
    elif chip not in tags:
        findings.append(Finding(rule="metadata", message=f"tags do not include the chip {chip!r}"))
    if info.get("gate_passed") is not True:
        findings.append(Finding(rule="gate", message="metadata says the eval gate did not pass (fr_agent.gate_passed)"))
    return findings


def placeholder_findings(text: str) -> list[Finding]:
    return [
        Finding(rule="placeholder", message=f"placeholder text {match.group(0)!r}", line=number)
        for number, line in enumerate(text.splitlines(), 1)
        for match in [PLACEHOLDERS.search(line)]
        if match
    ]


def split_sections(body: str) -> dict[str, tuple[int, str]]:
    """'## Title' → (line number in the body, text up to the next '## ')."""
    sections: dict[str, tuple[int, list[str]]] = {}
    current = None
    for number, line in enumerate(body.splitlines(), 1):
        if line.startswith("## "):
            current = line[3:].strip()
            sections[current] = (number, [])
        elif current is not None:
            sections[current][1].append(line)
    return {title: (number, "\n".join(lines)) for title, (number, lines) in sections.items()}


def text_offset(text: str, body: str) -> int:
    """Lines before the body (the metadata block), so findings point at lines of the file."""
    index = text.find(body.strip()[:200])
    return text[:index].count("\n") if index >= 0 else 0


def eval_findings(start: int, section: str, offset: int = 0) -> list[Finding]:
    findings = []
    rows = 0
    for number, line in enumerate(section.splitlines(), start + 1 + offset):
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else []
        if len(cells) < 3 or cells[0] in ("metric",) or set("".join(cells)) <= set("-: "):
            continue
        rows += 1
        name = cells[0]
        reference, migrated = parse_number(cells[1]), parse_number(cells[2])
        for column, cell, value in (("reference", cells[1], reference), ("migrated", cells[2], migrated)):
            if value is None:
                findings.append(
                    Finding(rule="score", message=f"{name}: {column} score is missing ({cell!r})", line=number)
                )
        # A zero the reference does not share is a loss (a broken migration shipped as "0"). Both sides at zero
        # is the metric saying nothing about this model at this sample size (a tiny model on code items): the
        # card shows it as it is, and the gate, not the linter, judges the pair.
        if migrated == 0 and reference not in (None, 0):
            findings.append(Finding(rule="score", message=f"{name}: migrated score is zero", line=number))
    if rows == 0:
        findings.append(Finding(rule="score", message="the eval section has no table of scores", line=start + offset))
    gate = re.search(r"\*\*Gate (passed|failed)\*\*", section)
    if gate is None:
        findings.append(Finding(rule="gate", message="the eval section does not state the gate", line=start + offset))
    elif gate.group(1) == "failed":
        findings.append(Finding(rule="gate", message="the eval gate failed", line=start + offset))
    return findings


def parse_number(cell: str) -> float | None:
    text = cell.strip().strip("`*").rstrip("%").strip()
    if text.lower() in MISSING:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
