"""Task accuracy on the bundled multiple-choice sets (knowledge, reasoning, math, code), scored the
same way on both sides: each choice's log-likelihood after the question, through the endpoint; the
most likely choice is the answer (lm-evaluation-harness's `acc`). Also reported: how often the two
sides pick the same choice, which moves before accuracy does.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fr_agent.evals.consistency import bundled
from fr_agent.evals.endpoint import Endpoint
from fr_agent.evals.report import MetricRow

CATEGORIES = ("knowledge", "reasoning", "math", "code")


class TaskItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    category: str
    question: str
    choices: list[str] = Field(min_length=2)
    answer: int = Field(ge=0, description="index of the correct choice")

    @model_validator(mode="after")
    def _valid(self) -> TaskItem:
        if self.answer >= len(self.choices):
            raise ValueError(f"{self.id}: answer {self.answer} out of range")
        if len(set(self.choices)) != len(self.choices):
            raise ValueError(f"{self.id}: duplicate choices {self.choices}")
        return self


def file_name(category: str) -> str:
    return f"tasks-{category}.jsonl"


def load_tasks(per_category: int = 0) -> list[TaskItem]:
    """The bundled items, the first `per_category` of each category (0: all)."""
    items = []
    for category in CATEGORIES:
        lines = [line for line in bundled(file_name(category)).splitlines() if line.strip()]
        items += [TaskItem.model_validate_json(line) for line in (lines[:per_category] if per_category else lines)]
    return items


def context(item: TaskItem) -> str:
    return f"Question: {item.question}\nAnswer:"


def requests(
    items: list[TaskItem], encode: Callable[[str], list[int]], encode_continuation: Callable[[str], list[int]]
) -> list[tuple[list[int], list[int]]]:
    """(context ids, continuation ids) for every choice of every item, in order."""
    out = []
    for item in items:
        ctx = encode(context(item))
        out += [(ctx, encode_continuation(" " + choice)) for choice in item.choices]
    return out


def choose(
    endpoint: Endpoint, items: list[TaskItem], reqs: list[tuple[list[int], list[int]]], concurrency: int
) -> list[int]:
    """The index of the most likely choice for each item (ties: the first)."""
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        scores = list(pool.map(lambda r: endpoint.loglik(*r), reqs))
    picks, offset = [], 0
    for item in items:
        mine = scores[offset : offset + len(item.choices)]
        picks.append(mine.index(max(mine)))
        offset += len(item.choices)
    return picks


def task_accuracy(
    reference: Endpoint, migrated: Endpoint, encode, encode_continuation, *, per_category: int, concurrency: int = 4
) -> list[MetricRow]:
    items = load_tasks(per_category)
    reqs = requests(items, encode, encode_continuation)
    ref_picks = choose(reference, items, reqs, concurrency)
    mig_picks = choose(migrated, items, reqs, concurrency)
    rows = []
    for category in CATEGORIES:
        index = [i for i, item in enumerate(items) if item.category == category]
        if not index:
            continue
        rows.append(
            MetricRow(
                name=f"task_{category}_accuracy",
                suite="tasks",
                samples=len(index),
                reference=sum(ref_picks[i] == items[i].answer for i in index) / len(index),
                migrated=sum(mig_picks[i] == items[i].answer for i in index) / len(index),
            )
        )
    rows.append(
        MetricRow(
            name="task_answer_agreement",
            suite="tasks",
            reference=1.0,
            samples=len(items),
            migrated=sum(a == b for a, b in zip(ref_picks, mig_picks)) / len(items),
        )
    )
    return rows
