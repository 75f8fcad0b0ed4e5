"""A tiny Llama checkpoint built offline, for tests and evals that need a real model but no model hub.

The model is trained for a few seconds on a small corpus so that its next-token
distributions are peaked: greedy decoding then agrees between float32 and bfloat16,
which is what makes eval comparisons across backends meaningful.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

from fr_agent.core.errors import MissingExtra

try:  # model work on this host: the base install leaves these out
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
except ModuleNotFoundError as err:
    raise MissingExtra("the tiny-llama fixture") from err

DATA_DIR = files("fr_agent.evals") / "data"
CORPUS = (DATA_DIR / "corpus.txt").read_text(encoding="utf-8")
DEFAULT_REPO_ID = "fr-agent/tiny-llama"

VOCAB_SIZE = 1024
UNK, BOS, EOS = "<unk>", "<s>", "</s>"
SEQ_LEN = 128
# Small batches, many steps: on 2 CPU cores, more updates memorise the corpus faster than bigger batches.
BATCH_SIZE = 4
LEARNING_RATE = 2e-3
WARMUP_STEPS = 20
# ~18 s on 2 idle cores; corpus perplexity ~1.1-1.2 (at 300 steps one seed of three stayed at 2.7).
DEFAULT_STEPS = 400
# A fixed thread count splits CPU reductions the same way on every run: same seed, same bytes.
TRAIN_THREADS = 2


def corpus_paragraphs() -> list[str]:
    return [p.strip() for p in CORPUS.split("\n\n") if p.strip()]


def _sentences() -> list[str]:
    return [s for p in corpus_paragraphs() for s in re.split(r"(?<=[.!?])\s+", p)]


def train_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE on the corpus; adds <s> in front of every encoding, as Llama tokenizers do."""
    tok = Tokenizer(models.BPE(unk_token=UNK))
    # A prefix space makes a sentence encode the same alone as inside a paragraph,
    # so prompts cut from the corpus see the token ids the model was trained on.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[UNK, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus_paragraphs(), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    # Llama convention: no dedicated pad token, padding reuses </s> (masked out anyway).
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=EOS,
        model_max_length=1024,
    )


def _token_stream(tokenizer: PreTrainedTokenizerFast) -> tuple[torch.Tensor, torch.Tensor]:
    """The corpus as one id stream, plus the offset where each sentence starts."""
    encoded = [tokenizer.encode(s, add_special_tokens=False) for s in _sentences()]
    starts = torch.tensor([0, *map(len, encoded)][:-1]).cumsum(0)
    ids = torch.tensor([i for sentence in encoded for i in sentence])
    # Wrap around so a window may start at any sentence, the last ones included.
    return torch.cat([ids, ids[:SEQ_LEN]]), starts


def _model_config(tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,  # vLLM's CPU attention needs head_dim >= 32
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def _train(model: LlamaForCausalLM, stream: torch.Tensor, starts: torch.Tensor, bos_id: int, steps: int) -> None:
    """Windows start at sentence boundaries behind <s>, the same context an eval prompt gives."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, betas=(0.9, 0.95))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / WARMUP_STEPS) * (1 - step / steps)
    )
    bos = torch.full((BATCH_SIZE, 1), bos_id)
    offsets = torch.arange(SEQ_LEN - 1)
    model.train()
    for _ in range(steps):
        picked = starts[torch.randint(len(starts), (BATCH_SIZE,))]
        batch = torch.cat([bos, stream[picked[:, None] + offsets]], dim=1)
        model(input_ids=batch, labels=batch).loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
    model.eval()


def build_tiny_llama(dest: Path, *, seed: int = 0, steps: int = DEFAULT_STEPS) -> Path:
    """Train tokenizer and model, save both to `dest` in bfloat16 like a real checkpoint. Deterministic per seed."""
    dest = Path(dest)
    tokenizer = train_tokenizer()
    stream, starts = _token_stream(tokenizer)
    threads = torch.get_num_threads()
    # fork_rng keeps the caller's global RNG untouched by our seeding.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        torch.set_num_threads(TRAIN_THREADS)
        try:
            model = LlamaForCausalLM(_model_config(tokenizer))
            _train(model, stream, starts, tokenizer.bos_token_id, steps)
        finally:
            torch.set_num_threads(threads)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    model.to(torch.bfloat16).save_pretrained(dest)
    _save_tokenizer(tokenizer, dest)
    return dest


def _save_tokenizer(tokenizer: PreTrainedTokenizerFast, dest: Path) -> None:
    tokenizer.save_pretrained(dest)
    # transformers 5 records its class as "TokenizersBackend", which 4.x (as pinned in some
    # serving images) cannot resolve; "PreTrainedTokenizerFast" loads the same tokenizer.json in both.
    config_path = dest / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _repo_cache_dir(hf_home: Path, repo_id: str) -> Path:
    return Path(hf_home) / "hub" / f"models--{repo_id.replace('/', '--')}"


def _content_digest(model_dir: Path) -> str:
    """40 hex digits over file names and contents: stands in for the commit sha the hub would give."""
    digest = hashlib.sha1()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        digest.update(path.relative_to(model_dir).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def register_in_hf_cache(model_dir: Path, repo_id: str, hf_home: Path) -> Path:
    """Lay `model_dir` out as a hub cache entry, so offline loads by `repo_id` find it; returns the snapshot dir."""
    model_dir = Path(model_dir)
    repo_dir = _repo_cache_dir(hf_home, repo_id)
    sha = _content_digest(model_dir)
    snapshot = repo_dir / "snapshots" / sha
    if not snapshot.is_dir():
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        # Copy beside the target, then rename: readers never see a half-written snapshot.
        staging = Path(tempfile.mkdtemp(dir=repo_dir, prefix=".staging-"))
        shutil.copytree(model_dir, staging, dirs_exist_ok=True)
        # Readable by any uid, as hub downloads are: a sandbox may mount the cache as another user.
        for path in [staging, *staging.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        try:
            staging.rename(snapshot)
        except OSError:
            shutil.rmtree(staging)
            if not snapshot.is_dir():  # not just another process registering the same contents first
                raise
    _write_atomically(repo_dir / "refs" / "main", sha)
    return snapshot


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    os.fchmod(fd, 0o644)  # mkstemp makes it owner-only; see register_in_hf_cache
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def cached_snapshot(hf_home: Path, repo_id: str) -> Path | None:
    """The snapshot that refs/main points to, or None. refs/main is written last, so it implies a full snapshot."""
    repo_dir = _repo_cache_dir(hf_home, repo_id)
    ref = repo_dir / "refs" / "main"
    if not ref.is_file():
        return None
    snapshot = repo_dir / "snapshots" / ref.read_text().strip()
    return snapshot if (snapshot / "config.json").is_file() else None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_tiny_llama(hf_home: Path, repo_id: str = DEFAULT_REPO_ID) -> Path:
    """The tiny model's snapshot dir in `hf_home`, built and registered on first use (safe across processes)."""
    hf_home = Path(hf_home)
    if snapshot := cached_snapshot(hf_home, repo_id):
        return snapshot
    lock = _repo_cache_dir(hf_home, repo_id).with_name(f".{repo_id.replace('/', '--')}.lock")
    with _file_lock(lock):
        # Another process may have built it while we waited for the lock.
        if snapshot := cached_snapshot(hf_home, repo_id):
            return snapshot
        with tempfile.TemporaryDirectory(dir=lock.parent) as tmp:
            return register_in_hf_cache(build_tiny_llama(Path(tmp) / "model"), repo_id, hf_home)
