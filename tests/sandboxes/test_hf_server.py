"""The `hf` engine probe: a real server on the tiny model, spoken to over HTTP like vLLM."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from fr_agent.agents.stages import free_port
from fr_agent.evals.endpoint import Endpoint

SERVER = Path(__file__).parents[2] / "sandboxes" / "probes" / "hf_server.py"


@pytest.fixture(scope="module")
def hf_server(tiny_model, tmp_path_factory):
    port = free_port()
    log = (tmp_path_factory.mktemp("hf") / "serve.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            str(SERVER),
            str(tiny_model),
            "--port",
            str(port),
            "--dtype",
            "float32",
            "--max-model-len",
            "512",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("hf engine did not become healthy")
    yield url
    process.terminate()
    process.wait(timeout=30)


def test_greedy_and_prompt_logprobs_match_the_reference(hf_server, tiny_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    served = Endpoint(hf_server)
    ids = tokenizer("Compilers lower a model to the chip").input_ids
    with torch.no_grad():
        greedy = model.generate(
            torch.tensor([ids]),
            max_new_tokens=12,
            min_new_tokens=12,
            do_sample=False,
            pad_token_id=tokenizer.eos_token_id,
        )[0, len(ids) :].tolist()
        logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].float(), dim=-1)
    assert served.greedy(ids, 12) == greedy
    positions = served.prompt_logprobs(ids, 1)
    assert [min(top, key=top.get) for _, _, top in positions] == logprobs.argmax(-1).tolist()
    ref_lp = logprobs.gather(1, torch.tensor(ids[1:])[:, None])[:, 0].tolist()
    assert max(abs(a - b[0]) for a, b in zip(ref_lp, positions)) < 1e-3


def test_text_completion_with_logprobs_and_chat(hf_server):
    body = httpx.post(
        hf_server + "/v1/completions",
        timeout=60,
        json={"model": "x", "prompt": "The chip", "max_tokens": 5, "temperature": 0, "logprobs": 1},
    ).json()
    choice = body["choices"][0]
    assert body["usage"]["completion_tokens"] == len(choice["logprobs"]["token_logprobs"]) > 0
    assert all(lp <= 0 for lp in choice["logprobs"]["token_logprobs"])
    chat = httpx.post(
        hf_server + "/v1/chat/completions",
        timeout=60,
        json={"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4},
    ).json()
    assert chat["choices"][0]["message"]["role"] == "assistant"


def test_over_long_request_is_a_400_and_the_server_stays_up(hf_server):
    reply = httpx.post(hf_server + "/v1/completions", timeout=60, json={"prompt": [1] * 500, "max_tokens": 50})
    assert reply.status_code == 400 and "maximum context length is 512" in reply.json()["error"]["message"]
    assert httpx.get(hf_server + "/health", timeout=5).status_code == 200


@pytest.mark.parametrize(
    "flags, ok",
    [(["--max-model-len", "256"], True), (["--max-model-len", "999999"], False), (["--dtype", "float8"], False)],
)
def test_check_mode_validates_args_without_serving(tiny_model, flags, ok):
    result = subprocess.run(
        [sys.executable, str(SERVER), str(tiny_model), "--port", "0", *flags, "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (result.returncode == 0) is ok, result.stdout + result.stderr
    assert ('"ok": true' in result.stdout) is ok
