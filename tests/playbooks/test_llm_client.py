"""The endpoint layer against the scripted LLM behind a real HTTP server: each quirk of real
OpenAI-compatible endpoints, HTTP errors and timeouts, and the tool schemas."""

from __future__ import annotations

import json
import socket

import pytest

from fr_agent.core.config import LLMSettings
from fr_agent.playbooks.llm_client import (
    ECHO,
    Endpoint,
    LLMClient,
    LLMError,
    calls_in_text,
    probe,
    resolve_endpoint,
    split_thinking,
    strip_calls,
)
from fr_agent.playbooks.llm_tools import ALL_SPECS, REPAIR_SPECS
from fr_agent.playbooks.scripted_llm import Quirks, Script, ScriptedReply, serving
from fr_agent.tools import TOOLS

ECHO_CALL = {"name": "echo", "arguments": {"word": "pong"}}
ASK = [{"role": "system", "content": "probe"}, {"role": "user", "content": "echo pong"}]


def client_for(server, **settings) -> LLMClient:
    return LLMClient(Endpoint(base_url=server.url, model="scripted-llm"), LLMSettings(**settings))


def serve(*replies, **quirks):
    return serving(Script(quirks=Quirks(**quirks), replies=[ScriptedReply.model_validate(r) for r in replies]))


def test_think_tags_are_split_from_the_answer():
    assert split_thinking("<think>a\nb</think>\nthe answer") == ("the answer", "a\nb")
    assert split_thinking("opening tag was in the template</think>answer") == (
        "answer",
        "opening tag was in the template",
    )
    assert split_thinking("answer <think>cut off while thinking") == ("answer", "cut off while thinking")
    assert split_thinking("plain") == ("plain", None)
    with serve({"think": 'should I? {"name": "not_a_call"}', "content": "ok", "tool_calls": [ECHO_CALL]}) as server:
        reply = client_for(server).chat(ASK, [ECHO], 64)
    assert reply.content == "ok" and reply.think_tags and "should I?" in reply.thinking
    assert [c.name for c in reply.calls] == ["echo"]  # the JSON inside <think> is not taken for a call


def test_reasoning_content_goes_back_after_tool_calls():
    """DeepSeek answers 400 when a tool-calling turn comes back without its reasoning_content."""
    with serve(
        {"reasoning_content": "echo is the tool", "tool_calls": [ECHO_CALL]},
        {"content": "done"},
        require_reasoning_content=True,
    ) as server:
        client = client_for(server)
        first = client.chat(ASK, [ECHO], 64)
        assert first.assistant_message["reasoning_content"] == "echo is the tool"
        follow = [
            *ASK,
            first.assistant_message,
            {"role": "tool", "tool_call_id": first.calls[0].id, "name": "echo", "content": "pong"},
        ]
        assert client.chat(follow, [ECHO], 64).content == "done"
        # Without it, the same server refuses: the quirk is real, not a no-op.
        stripped = [*ASK, {k: v for k, v in first.assistant_message.items() if k != "reasoning_content"}, follow[-1]]
        with pytest.raises(LLMError, match="HTTP 400.*reasoning_content in the thinking mode must be passed back"):
            client.chat(stripped, [ECHO], 64)


@pytest.mark.parametrize(
    "content",
    [
        '{"name": "echo", "arguments": {"word": "pong"}}',
        'Sure.\n```json\n{"tool": "echo", "args": {"word": "pong"}}\n```',
        '<tool_call>\n{"name": "echo", "arguments": "{\\"word\\": \\"pong\\"}"}\n</tool_call>',
        '[{"type": "function", "function": {"name": "echo", "arguments": {"word": "pong"}}}]',
    ],
)
def test_tool_calls_written_as_text_are_parsed(content):
    calls = calls_in_text(content)
    assert [(c.name, c.arguments) for c in calls] == [("echo", {"word": "pong"})]


def test_text_calls_from_a_server_without_a_tool_parser():
    with serve({"content": "I will echo.", "tool_calls": [ECHO_CALL]}, tool_calls_as_text=True) as server:
        reply = client_for(server).chat(ASK, [ECHO], 64)
    assert not reply.native and [(c.name, c.arguments) for c in reply.calls] == [("echo", {"word": "pong"})]
    assert strip_calls(reply.content) == "I will echo."
    assert calls_in_text('{"word": "not a call"} and prose') == []
    assert calls_in_text('{"name": "echo", "arguments": "{broken"}')[0].error.startswith("arguments are not valid JSON")


def test_refused_strict_and_tool_choice_are_dropped_and_the_request_sent_again():
    with serve(
        {"tool_calls": [ECHO_CALL]}, {"tool_calls": [ECHO_CALL]}, reject_strict=True, reject_tool_choice=True
    ) as server:
        client = client_for(server)
        assert client.chat(ASK, [ECHO], 64).calls[0].name == "echo"
        statuses = [e["status"] for e in server.llm.exchanges]
        assert statuses == [400, 400, 400, 200]  # strict, tool_choice=required, tool_choice=auto, then accepted
        sent = server.llm.requests[-1]
        assert "tool_choice" not in sent and not sent["tools"][0]["function"].get("strict")
        client.chat(ASK, [ECHO], 64)  # learned: the next request goes through at once
        assert [e["status"] for e in server.llm.exchanges][4:] == [200]
    assert not client.caps.strict and client.caps.tool_choice == "omit" and len(client.caps.dropped) == 3


def test_an_endpoint_without_tools_gets_the_schemas_in_the_prompt():
    with serve({"content": "x", "tool_calls": [ECHO_CALL]}, reject_tools=True) as server:
        reply = client_for(server).chat(ASK, [ECHO], 64)
        sent = server.llm.requests[-1]
    assert "tools" not in sent and '"word"' in sent["messages"][0]["content"]
    assert not reply.native and reply.calls[0].arguments == {"word": "pong"}


def test_max_tokens_refused_switches_to_max_completion_tokens():
    with serve({"content": "ok"}, reject_max_tokens=True) as server:
        client_for(server).chat(ASK, [], 64)
        assert server.llm.requests[-1]["max_completion_tokens"] == 64 and "max_tokens" not in server.llm.requests[-1]


def test_rate_limits_and_server_errors_are_retried_by_the_sdk():
    with serve(
        {"status": 429, "retry_after_ms": 10}, {"status": 503, "retry_after_ms": 10}, {"content": "ok"}
    ) as server:
        assert client_for(server, max_retries=2).chat(ASK, [], 64).content == "ok"
        assert [e["status"] for e in server.llm.exchanges] == [429, 503, 200]


@pytest.mark.parametrize(
    "reply, message",
    [
        (
            {"status": 500, "error": "engine crashed", "retry_after_ms": 1},
            "answered HTTP 500 after 2 tries: engine crashed",
        ),
        (
            {"status": 429, "error": "slow down", "retry_after_ms": 1},
            "rate limiting (HTTP 429 after 2 tries): slow down",
        ),
        (
            {"status": 400, "error": "context length exceeded\nsecond line"},
            "refused the request (HTTP 400): context length exceeded second line",
        ),
        ({"status": 401, "error": "bad key"}, "refused the API key (HTTP 401)"),
    ],
)
def test_http_errors_end_in_one_clear_line(reply, message):
    with serve(*[reply] * 3) as server:
        with pytest.raises(LLMError) as err:
            client_for(server, max_retries=1).chat(ASK, [], 64)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_timeouts_and_unreachable_endpoints_end_in_one_clear_line():
    with serve({"content": "late", "delay_s": 1}, {"content": "late", "delay_s": 1}) as server:
        with pytest.raises(LLMError, match=r"did not answer within 0.3s \(2 tries\)"):
            client_for(server, max_retries=1, timeout_s=0.3).chat(ASK, [], 64)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = LLMClient(Endpoint(base_url=f"http://127.0.0.1:{port}/v1", model="m"), LLMSettings(max_retries=0))
    with pytest.raises(LLMError, match=r"cannot reach http://127.0.0.1:\d+/v1 \(1 tries\)"):
        client.chat(ASK, [], 64)


def test_usage_is_estimated_when_the_server_reports_none():
    with serve({"content": "ok"}, omit_usage=True) as server:
        reply = client_for(server).chat(ASK, [], 64)
    assert reply.usage.estimated and reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0


def test_tool_schemas_come_from_the_tools_own_args_models():
    assert [s.name for s in REPAIR_SPECS] == list(TOOLS)
    for spec in ALL_SPECS:
        strict = spec.schema(strict=True)["function"]
        params = strict["parameters"]
        assert strict["strict"] is True and params["additionalProperties"] is False
        assert set(params["required"]) == set(params["properties"])  # strict: every field present (null allowed)
        loose = spec.schema(strict=False)["function"]
        assert "strict" not in loose and loose["parameters"] == spec.args_model.model_json_schema()
    # A strict-mode call (optional fields sent as null) validates in the tool's own model.
    install = TOOLS["install_dependency"].validate({"package": "torchvision", "version": None, "action": "remove"})
    assert install.model_dump(exclude_none=True) == {"package": "torchvision", "action": "remove"}


def test_probe_reports_what_the_endpoint_can_do():
    with serve(
        {"reasoning_content": "thinking", "tool_calls": [ECHO_CALL]},
        {"content": "done"},
        reject_strict=True,
        require_reasoning_content=True,
    ) as server:
        report, _ = probe(Endpoint(base_url=server.url, model="scripted-llm"), LLMSettings())
    assert report.usable and report.native_tool_calls and not report.strict and report.reasoning_sent_back
    assert report.models_listed == ["scripted-llm"] and report.tokens > 0
    with serve({"content": "I cannot call tools."}) as server:
        report, _ = probe(Endpoint(base_url=server.url, model="scripted-llm"), LLMSettings())
    assert report.answers and not report.usable


def test_endpoint_resolution_env_over_settings_and_never_without_a_model():
    settings = LLMSettings(base_url="http://settings/v1", model="from-settings", api_key="sk-settingskey000000000000")
    env = {"FR_AGENT_LLM_BASE_URL": "http://env/v1/", "OPENAI_API_KEY": "sk-openai"}
    endpoint = resolve_endpoint(settings, env)
    assert endpoint.base_url == "http://env/v1" and endpoint.model == "from-settings"
    assert endpoint.api_key.get_secret_value() == "sk-settingskey000000000000"
    assert "sk-" not in json.dumps(endpoint.model_dump(mode="json")) and "sk-" not in repr(endpoint)
    assert resolve_endpoint(LLMSettings(), {"OPENAI_API_KEY": "sk-x"}) is None  # no model
    openai = resolve_endpoint(LLMSettings(model="gpt-x"), {"OPENAI_API_KEY": "sk-x"})
    assert openai.base_url == "https://api.openai.com/v1"
    user = Endpoint(base_url="http://user:pw@host:8000/v1?key=1", model="m")
    assert user.where == "http://host:8000/v1"
