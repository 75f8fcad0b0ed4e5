"""Serving throughput and latency at several concurrency levels, both sides on the same machine.

At each level, `requests` completions of exactly `max_tokens` tokens (EOS ignored) are sent with at
most `concurrency` in flight. Throughput is completion tokens over the level's wall time; latency is
the median request time. The two sides take turns level by level (reference, then migrated, with the
order flipped on the next level) so that a burst of load on the machine does not land on one side only.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx
from pydantic import BaseModel

from fr_agent.evals.report import MetricRow


class LevelResult(BaseModel):
    concurrency: int
    requests: int
    completion_tokens: int
    wall_s: float
    latencies_s: list[float]

    @property
    def throughput(self) -> float:
        return self.completion_tokens / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def latency_p50(self) -> float:
        return statistics.median(self.latencies_s)


async def _load(
    url: str, model: str, prompts: list[list[int]], concurrency: int, requests: int, max_tokens: int, timeout: float
) -> LevelResult:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    tokens = 0

    async def one(client: httpx.AsyncClient, index: int) -> None:
        nonlocal tokens
        async with gate:
            started = time.perf_counter()
            reply = await client.post(
                "/v1/completions",
                json={
                    "model": model,
                    "prompt": prompts[index % len(prompts)],
                    "max_tokens": max_tokens,
                    "min_tokens": max_tokens,
                    "ignore_eos": True,
                    "temperature": 0,
                },
            )
            latencies.append(time.perf_counter() - started)
        if reply.status_code != 200:
            raise RuntimeError(f"{url}/v1/completions answered {reply.status_code}: {reply.text[:300]}")
        tokens += reply.json()["usage"]["completion_tokens"]

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        await one(client, 0)  # warm-up, not counted
        latencies.clear()
        tokens = 0
        started = time.perf_counter()
        await asyncio.gather(*(one(client, i) for i in range(requests)))
        wall = time.perf_counter() - started
    return LevelResult(
        concurrency=concurrency, requests=requests, completion_tokens=tokens, wall_s=wall, latencies_s=latencies
    )


def measure_level(
    url: str,
    model: str,
    prompts: list[list[int]],
    *,
    concurrency: int,
    requests: int,
    max_tokens: int,
    timeout: float = 300,
) -> LevelResult:
    return asyncio.run(_load(url, model, prompts, concurrency, requests, max_tokens, timeout))


# The rows each concurrency level adds: the level's field (also the row's name), kind, unit, and what else
# the row says (only latency is better lower).
SERVING_METRICS: tuple[tuple[str, str, str, dict], ...] = (
    ("throughput", "throughput", "tok/s", {}),
    ("latency_p50", "latency", "s", {"higher_is_better": False}),
)


def serving(
    reference: tuple[str, str],
    migrated: tuple[str, str],
    prompts: list[list[int]],
    *,
    levels: list[int],
    requests: int,
    max_tokens: int,
) -> list[MetricRow]:
    """`reference` and `migrated` are (url, served model name)."""
    rows: list[MetricRow] = []
    for turn, concurrency in enumerate(levels):
        sides = [("reference", reference), ("migrated", migrated)]
        results = {}
        for side, (url, model) in sides if turn % 2 == 0 else sides[::-1]:
            results[side] = measure_level(
                url, model, prompts, concurrency=concurrency, requests=requests, max_tokens=max_tokens
            )
        ref, mig = results["reference"], results["migrated"]
        for field, kind, unit, extra in SERVING_METRICS:
            rows.append(
                MetricRow(
                    name=f"{field}_c{concurrency}",
                    kind=kind,
                    suite="serving",
                    unit=unit,
                    reference=getattr(ref, field),
                    migrated=getattr(mig, field),
                    samples=requests,
                    **extra,
                )
            )
    return rows
