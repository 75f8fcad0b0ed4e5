"""Recorded conversations, replayed: the planner must send exactly the recorded requests (prompt, context,
tool schemas, the quirks' retries) and read the recorded responses into the same calls.

The responses are shaped like each provider's documented chat-completions output (DeepSeek's thinking
mode with tool calls, vLLM serving Qwen3 without a tool parser, OpenAI with parallel calls and strict
schemas); they were written, not captured from a live endpoint (no network here). The requests were
recorded from the planner: set FR_AGENT_UPDATE_GOLDEN=1 to record them again after a deliberate change
and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fr_agent.playbooks.diagnose import Diagnosis
from fr_agent.playbooks.scripted_llm import Script, ScriptedReply, replay_script, serving
from fr_agent.tools import ToolCall
from tests.playbooks.llm_helpers import make_round, planner_for

GOLDEN = Path(__file__).parents[1] / "data" / "llm" / "golden"
# Fixed, so that rewording a playbook does not move the recordings.
DIAGNOSIS = Diagnosis(
    stage="import",
    category="install_dependency",
    playbook="torch-extension-op-missing",
    explanation="A torch extension package was built for another torch build; remove it.",
    evidence=["RuntimeError: operator torchvision::nms does not exist"],
    params={"package": "torchvision", "action": "remove"},
    confidence=0.9,
    signature="golden",
    tool_calls=[ToolCall(tool="install_dependency", args={"package": "torchvision", "action": "remove"})],
)
REMOVE = json.dumps({"package": "torchvision", "action": "remove"})


def completion(model: str, message: dict, finish: str, usage: dict, **extra) -> dict:
    return {
        "id": f"chatcmpl-{model}",
        "object": "chat.completion",
        "created": 1763900000,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
        **extra,
    }


def tool_call(call_id: str, name: str, arguments: str, **extra) -> dict:
    return {**extra, "id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


DEEPSEEK_USAGE = {
    "prompt_tokens": 2612,
    "completion_tokens": 181,
    "total_tokens": 2793,
    "prompt_tokens_details": {"cached_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 140},
    "prompt_cache_hit_tokens": 0,
    "prompt_cache_miss_tokens": 2612,
}
VLLM_USAGE = {"prompt_tokens": 3170, "total_tokens": 3291, "completion_tokens": 121, "prompt_tokens_details": None}
OPENAI_USAGE = {
    "prompt_tokens": 2480,
    "completion_tokens": 64,
    "total_tokens": 2544,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}

NO_AUTO_TOOL_CHOICE = '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
NO_MAX_TOKENS = (
    "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."
)


def refused(message: str, kind: str, param: str | None, code: str | int) -> ScriptedReply:
    """A provider's 400 answer."""
    return ScriptedReply(status=400, raw={"error": {"message": message, "type": kind, "param": param, "code": code}})


def openai_tool_calls(*calls: dict) -> ScriptedReply:
    message = {"role": "assistant", "content": None, "refusal": None, "annotations": [], "tool_calls": list(calls)}
    return ScriptedReply(
        raw=completion(
            "gpt-5-mini-2025-08-07",
            message,
            "tool_calls",
            OPENAI_USAGE,
            service_tier="default",
            system_fingerprint=None,
        )
    )


CASES: dict[str, tuple[list[ScriptedReply], ToolCall]] = {
    # DeepSeek thinking mode: reasoning_content beside tool_calls; it must come back on the next request.
    "deepseek-thinking-tools": (
        [
            ScriptedReply(
                raw=completion(
                    "deepseek-v4-flash",
                    {
                        "role": "assistant",
                        "content": "",
                        "reasoning_content": (
                            "The import fails on torchvision::nms. Let me check the installed packages."
                        ),
                        "tool_calls": [tool_call("call_00_Xq1", "list_packages", '{"match": "torch"}', index=0)],
                    },
                    "tool_calls",
                    DEEPSEEK_USAGE,
                    system_fingerprint="fp_ds_0001",
                )
            ),
            ScriptedReply(
                raw=completion(
                    "deepseek-v4-flash",
                    {
                        "role": "assistant",
                        "content": "torchvision is a CUDA build beside torch+cpu; removing it.",
                        "reasoning_content": (
                            "torchvision 0.28.0 was built against CUDA torch; it is optional for a causal LM."
                        ),
                        "tool_calls": [tool_call("call_00_Xq2", "install_dependency", REMOVE, index=0)],
                    },
                    "tool_calls",
                    DEEPSEEK_USAGE,
                    system_fingerprint="fp_ds_0001",
                )
            ),
        ],
        ToolCall(tool="install_dependency", args={"package": "torchvision", "action": "remove"}),
    ),
    # vLLM without --enable-auto-tool-choice: tool_choice refused; Qwen3 then writes <think> and <tool_call> text.
    "vllm-qwen3-no-tool-parser": (
        [
            refused(NO_AUTO_TOOL_CHOICE, "BadRequestError", None, 400),
            refused(NO_AUTO_TOOL_CHOICE, "BadRequestError", None, 400),
            ScriptedReply(
                raw=completion(
                    "Qwen/Qwen3-8B",
                    {
                        "role": "assistant",
                        "reasoning_content": None,
                        "tool_calls": [],
                        "content": "<think>\nThe evidence says operator torchvision::nms does not exist.\n</think>\n\n"
                        "The torchvision wheel does not match this torch build.\n<tool_call>\n"
                        '{"name": "install_dependency", "arguments": ' + REMOVE + "}\n</tool_call>",
                    },
                    "stop",
                    VLLM_USAGE,
                    prompt_logprobs=None,
                )
            ),
        ],
        ToolCall(tool="install_dependency", args={"package": "torchvision", "action": "remove"}),
    ),
    # OpenAI: max_tokens refused by a newer model, parallel read-only calls, then a strict-mode call (null fields).
    "openai-strict-parallel": (
        [
            refused(NO_MAX_TOKENS, "invalid_request_error", "max_tokens", "unsupported_parameter"),
            openai_tool_calls(
                tool_call("call_A1", "show_recipe", "{}"),
                tool_call("call_A2", "read_log", '{"log":null,"start":1,"count":20}'),
            ),
            openai_tool_calls(
                tool_call("call_B1", "install_dependency", '{"package":"torchvision","version":null,"action":"remove"}')
            ),
        ],
        ToolCall(tool="install_dependency", args={"package": "torchvision", "action": "remove"}),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_recorded_conversation_replays(name, run):
    replies, expected = CASES[name]
    golden = GOLDEN / f"{name}.jsonl"
    if os.environ.get("FR_AGENT_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.unlink(missing_ok=True)
        with serving(Script(replies=replies), record=golden) as server:
            planner_for(server, run).propose(make_round(run, diagnosis=DIAGNOSIS))
    assert golden.is_file(), f"no recording {golden}: run once with FR_AGENT_UPDATE_GOLDEN=1"
    recorded = [json.loads(line) for line in golden.read_text().splitlines()]
    with serving(replay_script(golden)) as server:
        round_ = make_round(run, diagnosis=DIAGNOSIS)
        calls = planner_for(server, run).propose(round_)
        sent = server.llm.requests
    assert len(sent) == len(recorded)
    for index, (now, then) in enumerate(zip(sent, [e["request"] for e in recorded])):
        assert now == then, (
            f"request {index} differs from the recording {golden.name}; if the change is "
            "deliberate, record again with FR_AGENT_UPDATE_GOLDEN=1 and review the diff"
        )
    assert calls == [expected] and round_.source == "llm"
