"""One client for both sides of an eval: any OpenAI-compatible completions endpoint (vLLM, the hf engine,
a reference server). Prompts go in as token ids from the host's tokenizer, so both sides see the same ids
and tokenization cannot hide a difference. Uses vLLM's extensions that the hf engine also speaks:
`prompt_logprobs`, `return_token_ids`, `min_tokens`, `ignore_eos`.
"""

from __future__ import annotations

import httpx


class Endpoint:
    def __init__(self, url: str, *, timeout: float = 120):
        self.url = url.rstrip("/")
        self.client = httpx.Client(base_url=self.url, timeout=timeout)
        self.model = self.client.get("/v1/models").raise_for_status().json()["data"][0]["id"]

    def close(self) -> None:
        self.client.close()

    def complete(self, body: dict) -> dict:
        reply = self.client.post("/v1/completions", json={"model": self.model, **body})
        if reply.status_code != 200:
            raise RuntimeError(f"{self.url}/v1/completions answered {reply.status_code}: {reply.text[:300]}")
        return reply.json()

    def greedy(self, ids: list[int], new_tokens: int) -> list[int]:
        """Exactly `new_tokens` greedy tokens after `ids` (EOS does not stop it)."""
        body = self.complete(
            {
                "prompt": ids,
                "max_tokens": new_tokens,
                "min_tokens": new_tokens,
                "temperature": 0,
                "return_token_ids": True,
                "ignore_eos": True,
            }
        )
        return body["choices"][0]["token_ids"]

    def prompt_logprobs(self, ids: list[int], k: int = 1) -> list[tuple[float, int, dict[int, int]]]:
        """For each token after the first: (its logprob, its rank, {top-k token id: rank})."""
        body = self.complete({"prompt": ids, "max_tokens": 1, "temperature": 0, "echo": True, "prompt_logprobs": k})
        entries = body["choices"][0]["prompt_logprobs"][1:]
        if len(entries) != len(ids) - 1:
            raise RuntimeError(f"{self.url}: {len(entries)} prompt logprobs for {len(ids) - 1} tokens")
        out = []
        for token, entry in zip(ids[1:], entries):
            mine = entry[str(token)]
            top = {int(t): int(v["rank"]) for t, v in entry.items() if int(v["rank"]) <= k}
            out.append((float(mine["logprob"]), int(mine["rank"]), top))
        return out

    def loglik(self, context: list[int], continuation: list[int]) -> float:
        """Sum of the continuation's token log-probabilities given the context."""
        positions = self.prompt_logprobs(context + continuation, 1)
        return sum(logprob for logprob, _, _ in positions[len(context) - 1 :])
