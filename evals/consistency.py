"""Numeric consistency of the migrated model against a reference run of the same weights.

Both sides are OpenAI-compatible endpoints fed the same token ids (endpoint.py). Metrics:
- greedy-token agreement: the share of the reference's first N greedy tokens the migrated model
  reproduces before its first divergence;
- top-k containment: past those N tokens the two may diverge, so the reference's continuation is
  teacher-forced through both, and each reference token counts when it is within that side's top-k;
- teacher-forced top-1 agreement and perplexity on bundled held-out text.
"""

from __future__ import annotations

import math
from importlib import resources

from fr_agent.evals.endpoint import Endpoint
from fr_agent.evals.report import MetricRow


def bundled(name: str) -> str:
    return resources.files("fr_agent.evals").joinpath("data", name).read_text(encoding="utf-8")


def prompts() -> list[str]:
    return [line.strip() for line in bundled("eval_prompts.txt").splitlines() if line.strip()]


def prefix_agreement(reference: list[int], migrated: list[int]) -> float:
    """Fraction of the reference's tokens reproduced before the first divergence."""
    same = 0
    for a, b in zip(reference, migrated):
        if a != b:
            break
        same += 1
    return same / len(reference) if reference else 1.0


def perplexity(logprobs: list[float]) -> float:
    return math.exp(-sum(logprobs) / len(logprobs)) if logprobs else math.nan


def contained(positions: list[tuple[float, int, dict[int, int]]], k: int) -> list[bool]:
    """Whether each position's actual token is within the top-k."""
    return [rank <= k for _, rank, _ in positions]


def consistency(
    reference: Endpoint,
    migrated: Endpoint,
    encode,
    *,
    greedy_tokens: int,
    topk: int,
    topk_tokens: int,
    prompt_count: int,
    heldout_tokens: int,
) -> list[MetricRow]:
    agreements: list[float] = []
    ref_contained: list[bool] = []
    mig_contained: list[bool] = []
    for prompt in prompts()[:prompt_count]:
        ids = encode(prompt)
        ref_tokens = reference.greedy(ids, greedy_tokens + topk_tokens)
        agreements.append(prefix_agreement(ref_tokens[:greedy_tokens], migrated.greedy(ids, greedy_tokens)))
        if topk_tokens:
            forced = ids + ref_tokens
            tail = slice(len(ids) + greedy_tokens - 1, None)  # positions predicting the tokens after the first N
            ref_contained += contained(reference.prompt_logprobs(forced, topk)[tail], topk)
            mig_contained += contained(migrated.prompt_logprobs(forced, topk)[tail], topk)
    text_ids = encode(bundled("heldout.txt"))[:heldout_tokens]
    ref_positions = reference.prompt_logprobs(text_ids, 1)
    mig_positions = migrated.prompt_logprobs(text_ids, 1)

    def argmax(top: dict[int, int]) -> int:
        return min(top, key=top.get)

    top1 = sum(argmax(r[2]) == argmax(m[2]) for r, m in zip(ref_positions, mig_positions)) / len(ref_positions)
    rows = [
        MetricRow(
            name="greedy_token_agreement",
            reference=1.0,
            migrated=sum(agreements) / len(agreements),
            samples=len(agreements) * greedy_tokens,
        ),
    ]
    if topk_tokens:
        rows.append(
            MetricRow(
                name=f"top{topk}_containment",
                reference=sum(ref_contained) / len(ref_contained),
                migrated=sum(mig_contained) / len(mig_contained),
                samples=len(ref_contained),
            )
        )
    rows += [
        MetricRow(name="teacher_forced_top1_agreement", reference=1.0, migrated=top1, samples=len(ref_positions)),
        MetricRow(
            name="heldout_perplexity",
            reference=perplexity([p[0] for p in ref_positions]),
            migrated=perplexity([p[0] for p in mig_positions]),
            higher_is_better=False,
            samples=len(ref_positions),
        ),
    ]
    return rows
