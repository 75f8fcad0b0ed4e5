"""Numeric consistency of the migrated model against a reference run of the same weights.

Reference: transformers in float32 on the host. Migrated: the engine the sandbox serves, through its
OpenAI-compatible endpoint (token ids in, token ids out, so tokenization cannot hide a difference).
Metrics: greedy-token agreement over the first N tokens, teacher-forced top-1 agreement and
perplexity on bundled held-out text.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import httpx

from fr_agent.evals.report import EvalReport, MetricRow


def bundled(name: str) -> str:
    return resources.files("fr_agent.evals").joinpath("data", name).read_text()


def prompts() -> list[str]:
    return [line.strip() for line in bundled("eval_prompts.txt").splitlines() if line.strip()]


class Reference:
    """The original weights in float32 with transformers, on the host CPU."""

    def __init__(self, model_path: str):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text).input_ids

    def greedy(self, ids: list[int], new_tokens: int) -> list[int]:
        with self.torch.no_grad():
            out = self.model.generate(self.torch.tensor([ids]), max_new_tokens=new_tokens, do_sample=False,
                                      min_new_tokens=new_tokens, pad_token_id=self.tokenizer.eos_token_id)
        return out[0, len(ids):].tolist()

    def token_logprobs(self, ids: list[int]) -> tuple[list[float], list[int]]:
        """Log-probability of each token after the first, and the argmax at each position."""
        with self.torch.no_grad():
            logits = self.model(self.torch.tensor([ids])).logits[0, :-1].float()
        logprobs = self.torch.log_softmax(logits, dim=-1)
        target = self.torch.tensor(ids[1:])
        return logprobs.gather(1, target[:, None])[:, 0].tolist(), logprobs.argmax(-1).tolist()


class Served:
    """The migrated model behind the sandbox's OpenAI-compatible completions endpoint."""

    def __init__(self, url: str, timeout: float = 120):
        self.client = httpx.Client(base_url=url, timeout=timeout)
        self.model = self.client.get("/v1/models").json()["data"][0]["id"]

    def greedy(self, ids: list[int], new_tokens: int) -> list[int]:
        body = self.client.post("/v1/completions", json={
            "model": self.model, "prompt": ids, "max_tokens": new_tokens, "min_tokens": new_tokens,
            "temperature": 0, "return_token_ids": True, "ignore_eos": True}).raise_for_status().json()
        return body["choices"][0]["token_ids"]

    def token_logprobs(self, ids: list[int]) -> tuple[list[float], list[int]]:
        body = self.client.post("/v1/completions", json={
            "model": self.model, "prompt": ids, "max_tokens": 1, "temperature": 0, "echo": True,
            "prompt_logprobs": 1}).raise_for_status().json()
        logprobs, argmax = [], []
        for token, entry in zip(ids[1:], body["choices"][0]["prompt_logprobs"][1:]):
            logprobs.append(entry[str(token)]["logprob"])
            argmax.append(int(next(t for t, v in entry.items() if v["rank"] == 1)))
        return logprobs, argmax


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


def evaluate(model_path: str, server_url: str, *, migrated_backend: str, new_tokens: int = 24,
             threshold_pct: float = 5.0) -> EvalReport:
    reference, served = Reference(model_path), Served(server_url)
    agreements = []
    for prompt in prompts():
        ids = reference.encode(prompt)
        agreements.append(prefix_agreement(reference.greedy(ids, new_tokens), served.greedy(ids, new_tokens)))
    text_ids = reference.encode(bundled("heldout.txt"))[:512]
    ref_lp, ref_top = reference.token_logprobs(text_ids)
    mig_lp, mig_top = served.token_logprobs(text_ids)
    top1 = sum(a == b for a, b in zip(ref_top, mig_top)) / len(ref_top)
    metrics = [
        MetricRow(name="greedy_token_agreement", reference=1.0, migrated=sum(agreements) / len(agreements)),
        MetricRow(name="teacher_forced_top1_agreement", reference=1.0, migrated=top1),
        MetricRow(name="heldout_perplexity", reference=perplexity(ref_lp), migrated=perplexity(mig_lp),
                  higher_is_better=False),
    ]
    return EvalReport(metrics=metrics, threshold_pct=threshold_pct, samples=len(agreements) + len(text_ids),
                      reference_backend=f"transformers float32 on host ({Path(model_path).name})",
                      migrated_backend=migrated_backend)
