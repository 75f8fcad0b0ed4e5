"""The eval agent for real, on the tiny model: reference (float32, started by the agent) against a migrated
endpoint (the hf engine in bfloat16), then against weights that drifted, then against a dead server."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from fr_agent.core.config import EvalSettings
from fr_agent.evals.agent import evaluate, run_suite, write_artifacts

SERVER = Path(__file__).parents[2] / "sandboxes" / "probes" / "hf_server.py"
SMALL = EvalSettings(
    max_new_tokens=8,
    topk_tokens=8,
    prompts=4,
    heldout_tokens=128,
    tasks_per_category=5,
    concurrency=[1, 2],
    perf_requests=2,
    perf_max_tokens=8,
    min_perf_ratio=0.0,
)


def drifted_copy(model: Path, out: Path) -> Path:
    """The same model with noise of half each matrix's spread added: what a broken kernel does to the numbers."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(model, out)
    weights = load_file(str(out / "model.safetensors"))
    generator = torch.Generator().manual_seed(0)
    noisy = {
        name: w + 0.5 * w.std() * torch.randn(w.shape, generator=generator) if w.dim() > 1 else w
        for name, w in weights.items()
    }
    (out / "model.safetensors").unlink()
    save_file(noisy, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def start(model: Path, dtype: str, log: Path) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, str(SERVER), str(model), "--port", str(port), "--dtype", dtype],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    return process, f"http://127.0.0.1:{port}"


def wait(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    pytest.fail(f"server {url} did not become healthy")


@pytest.fixture(scope="module")
def servers(tiny_model, tmp_path_factory):
    """Two migrated endpoints, started together: the hf engine in bfloat16, and drifted weights."""
    tmp = tmp_path_factory.mktemp("eval-agent")
    drifted = drifted_copy(Path(tiny_model), tmp / "drifted")
    good, good_url = start(Path(tiny_model), "bfloat16", tmp / "good.log")
    bad, bad_url = start(drifted, "float32", tmp / "bad.log")
    try:
        wait(good_url, good)
        wait(bad_url, bad)
        yield good_url, bad_url
    finally:
        for process in (good, bad):
            process.terminate()
            process.wait(timeout=30)


def test_migrated_bf16_against_its_float32_reference(servers, tiny_model, tmp_path):
    report = evaluate(str(tiny_model), servers[0], migrated_backend="hf bfloat16", settings=SMALL, log_dir=tmp_path)
    names = [m.name for m in report.metrics]
    assert names == [
        "greedy_token_agreement",
        "top5_containment",
        "teacher_forced_top1_agreement",
        "heldout_perplexity",
        "task_knowledge_accuracy",
        "task_reasoning_accuracy",
        "task_math_accuracy",
        "task_code_accuracy",
        "task_answer_agreement",
        "throughput_c1",
        "latency_p50_c1",
        "throughput_c2",
        "latency_p50_c2",
    ]
    assert [(o.suite, o.status) for o in report.outcomes] == [("lm-eval", "skipped")]
    rows = {m.name: m for m in report.metrics}
    assert all(m.finite for m in report.metrics)
    assert rows["greedy_token_agreement"].migrated >= 0.9 and rows["task_answer_agreement"].migrated >= 0.9
    assert rows["task_math_accuracy"].samples == 5 and rows["task_answer_agreement"].samples == 20
    assert rows["top5_containment"].samples == 4 * 8
    assert rows["heldout_perplexity"].pct_diff < 1.0  # bf16 moves perplexity a little, not more
    assert all(m.reference > 0 and m.migrated > 0 for m in report.metrics if m.kind != "accuracy")
    assert report.avg_pct_diff < SMALL.threshold_pct and report.gate_passed, report.gate_reason
    assert report.reference_backend == "transformers float32 on this host's CPU (fr-agent hf_server, native torch ops)"
    assert (tmp_path / "reference-server.log").read_text().count("POST /v1/completions") > 20
    write_artifacts(report, tmp_path / "eval.json", tmp_path / "eval.png")
    assert (tmp_path / "eval.png").read_bytes()[:4] == b"\x89PNG"
    assert '"name": "greedy_token_agreement"' in (tmp_path / "eval.json").read_text()


def test_drifted_weights_fail_the_gate_and_a_strict_perf_ratio_does_too(servers, tiny_model, tmp_path):
    # The reference here is a server already running (eval.reference_url): the original weights in bfloat16.
    settings = SMALL.model_copy(update={"reference_url": servers[0], "min_perf_ratio": 1000.0})
    report = evaluate(str(tiny_model), servers[1], migrated_backend="drifted", settings=settings, log_dir=tmp_path)
    rows = {m.name: m for m in report.metrics}
    assert rows["greedy_token_agreement"].migrated < 0.9
    assert rows["task_answer_agreement"].migrated < 0.9
    assert {part for part, _ in report.gate_failures()} == {"accuracy", "performance"}
    assert not report.gate_passed and not report.performance_only
    assert report.reference_backend == f"OpenAI-compatible server at {servers[0]}"
    assert not (tmp_path / "reference-server.log").exists()


def test_a_dead_migrated_server_is_a_crashed_eval(tiny_model, tmp_path):
    report = evaluate(str(tiny_model), "http://127.0.0.1:9", migrated_backend="dead", settings=SMALL, log_dir=tmp_path)
    assert report.metrics == [] and [(o.suite, o.status) for o in report.outcomes] == [("endpoints", "crashed")]
    assert not report.gate_passed and "crashed: endpoints: ConnectError" in report.gate_reason
    assert not (tmp_path / "reference-server.log").exists()  # no reference started for nothing


def test_run_suite_records_crashes_and_skips():
    from fr_agent.evals.harness import Skip

    rows, outcomes = [], []

    def crash():
        raise KeyError("prompt_logprobs")

    def skip():
        raise Skip("not installed")

    run_suite("tasks", crash, rows, outcomes)
    run_suite("lm-eval", skip, rows, outcomes)
    assert [(o.suite, o.status, o.reason) for o in outcomes] == [
        ("tasks", "crashed", "KeyError: 'prompt_logprobs'"),
        ("lm-eval", "skipped", "not installed"),
    ]
    assert rows == []


def test_reference_device_follows_the_setting_and_the_room_on_the_device(tmp_path, monkeypatch):
    import torch

    from fr_agent.evals.agent import reference_device, weight_bytes

    (tmp_path / "model.safetensors").write_bytes(b"\0" * 1000)
    assert weight_bytes(str(tmp_path)) == 1000
    assert reference_device(str(tmp_path), EvalSettings(reference_device="cuda")) == "cuda"
    assert reference_device(str(tmp_path), EvalSettings(reference_device="cpu")) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert reference_device(str(tmp_path), EvalSettings()) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (2600, 10_000))  # float32 of 1000 bytes: 2000 x 1.25
    assert reference_device(str(tmp_path), EvalSettings()) == "cuda"
    assert reference_device(str(tmp_path), EvalSettings(reference_dtype="bfloat16")) == "cuda"
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (2400, 10_000))
    assert reference_device(str(tmp_path), EvalSettings()) == "cpu"
    assert reference_device(str(tmp_path), EvalSettings(reference_dtype="bfloat16")) == "cuda"
