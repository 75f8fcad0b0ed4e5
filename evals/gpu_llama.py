"""A Llama-architecture model of a few hundred million parameters for the GPU runs (operator search,
bench_ops, `fr-agent run --chip nvidia`), built in seconds on the GPU with no model hub.

Random init, then a short training run on the bundled corpus with the tiny fixture's tokenizer, so
next-token distributions are peaked: a bf16 GPU forward and the eval's float32 CPU reference then
agree on greedy tokens, and an operator that breaks the numerics shows up as a failed eval gate.

    python -m fr_agent.evals.gpu_llama DEST [--steps 300] [--layers 24] [--hidden 1024]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

from fr_agent.evals.tiny_model import VOCAB_SIZE, _save_tokenizer, _token_stream, train_tokenizer

SEQ_LEN = 128


def config(tokenizer, hidden: int, layers: int) -> LlamaConfig:
    heads = hidden // 64
    return LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden,
        intermediate_size=int(hidden * 2.75) // 64 * 64,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        head_dim=64,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def build(
    dest: Path,
    *,
    steps: int = 300,
    layers: int = 24,
    hidden: int = 1024,
    batch: int = 32,
    seed: int = 0,
    lr: float = 1e-3,
    log=print,
) -> Path:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = train_tokenizer()
    stream, starts = _token_stream(tokenizer)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config(tokenizer, hidden, layers)).to(device)
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    bos = torch.full((batch, 1), tokenizer.bos_token_id, device=device)
    offsets = torch.arange(SEQ_LEN - 1)
    started, loss = time.monotonic(), None
    model.train()
    for step in range(steps):
        picked = starts[torch.randint(len(starts), (batch,))]
        ids = torch.cat([bos, stream[picked[:, None] + offsets].to(device)], dim=1)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 50 == 0 or step == steps - 1:
            log(f"step {step}: loss {loss.item():.3f}")
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    dest = Path(dest)
    model.to(torch.bfloat16).save_pretrained(dest)
    _save_tokenizer(tokenizer, dest)
    log(
        f"{params / 1e6:.0f}M params, {layers} layers x {hidden}, trained {steps} steps in "
        f"{time.monotonic() - started:.0f}s (final loss {loss.item():.3f}) -> {dest}"
    )
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--hidden", type=int, default=1024)
    args = parser.parse_args(argv)
    build(args.dest, steps=args.steps, layers=args.layers, hidden=args.hidden)
    return 0


if __name__ == "__main__":
    sys.exit(main())
