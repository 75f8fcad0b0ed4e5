"""Endpoints that answer junk, and vLLM's small context window, against the scripted LLM behind a real HTTP
server: every junk reply is one clean line (`LLMError`), a fallback to the playbooks with a note in `llm`
and `auto`, and `llm check` ends in one line without a traceback; the window from `/v1/models` or from
vLLM's 400 fits max_tokens and the prompt; every request is on record; the round budget reads the server's
usage and is never overshot."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fr_agent.core.config import LLMSettings, Settings
from fr_agent.core.events import LLMCallEvent, NoteEvent, of_kind
from fr_agent.playbooks.llm_client import ECHO, Endpoint, LLMClient, LLMError, probe
from fr_agent.playbooks.llm_planner import AutoPlanner
from fr_agent.playbooks.llm_tools import ALL_SPECS
from tests.playbooks.llm_helpers import REMOVE_TORCHVISION, events, make_round, planner_for, serve

ECHO_CALL = {"name": "echo", "arguments": {"word": "pong"}}
ASK = [{"role": "system", "content": "probe"}, {"role": "user", "content": "echo pong"}]
JUNK = {
    "text body": {"body": "hello there", "content_type": "text/plain"},
    "HTML page": {"body": "<html><body><h1>It works!</h1></body></html>"},
    "HTML error page": {"status": 502, "body": "<html><body>502 Bad Gateway</body></html>"},
    "JSON not a completion": {"body": '{"choices": "x"}', "content_type": "application/json"},
    "JSON list": {"body": "[1, 2]", "content_type": "application/json"},
    "broken JSON": {"body": '{"choices": [1', "content_type": "application/json"},
    "no choices": {"body": '{"id": "x", "choices": []}', "content_type": "application/json"},
    "wrong message shape": {"body": '{"choices": [{"message": "hi"}]}', "content_type": "application/json"},
    "truncated": {"content": "cut", "truncated": True},
}


def client_for(server, **settings) -> LLMClient:
    return LLMClient(Endpoint(base_url=server.url, model="scripted-llm"), LLMSettings(max_retries=0, **settings))


@pytest.mark.parametrize("junk", JUNK.values(), ids=list(JUNK))
def test_a_junk_reply_is_one_clean_line(junk):
    with serve(junk) as server:
        with pytest.raises(LLMError) as err:
            client_for(server).chat(ASK, [ECHO], 64)
    assert "\n" not in str(err.value) and server.url in str(err.value)


@pytest.mark.parametrize(
    "junk",
    [*JUNK.values(), {"tool_calls": [{"name": "install_dependency", "arguments": '{"package": "torchvis'}]}],
    ids=[*JUNK, "tool call arguments not JSON"],
)
def test_a_junk_reply_makes_the_llm_round_follow_the_playbooks(run, junk):
    with serve(junk) as server:
        round_ = make_round(run)
        calls = planner_for(server, run, max_invalid_replies=0).propose(round_)
    assert calls == round_.diagnosis.tool_calls and round_.source == "playbook (llm fallback)"
    note = of_kind(events(run), NoteEvent)[-1]
    assert note.message == "this round follows the playbooks" and "\n" not in note.reason
    assert of_kind(events(run), LLMCallEvent)  # the failed request is on record
    lines = (run[0] / "llm-conversation.jsonl").read_text().splitlines()
    assert len(lines) == len(of_kind(events(run), LLMCallEvent))


@pytest.mark.parametrize("junk", [JUNK["HTML page"], JUNK["JSON not a completion"], JUNK["truncated"]])
def test_auto_falls_back_on_junk_at_the_probe_and_in_the_rounds(run, monkeypatch, junk):
    monkeypatch.delenv("FR_AGENT_LLM_API_KEY", raising=False)
    monkeypatch.setenv("FR_AGENT_LLM_MODEL", "scripted-llm")
    with serve(junk, models_body="<html>not a list</html>") as server:
        monkeypatch.setenv("FR_AGENT_LLM_BASE_URL", server.url)
        auto = AutoPlanner(Settings(), run[0])
        assert auto.name == "playbook" and "failed the capability probe" in auto.reason and "\n" not in auto.reason
        assert auto.propose(make_round(run))[0].args["package"] == "torchvision"
    with serve({"tool_calls": [ECHO_CALL]}, {"content": "done"}, junk) as server:
        monkeypatch.setenv("FR_AGENT_LLM_BASE_URL", server.url)
        auto = AutoPlanner(Settings(), run[0])
        assert auto.name == "llm"
        round_ = make_round(run)
        assert auto.propose(round_)[0].args["package"] == "torchvision"
        assert round_.source == "playbook (llm fallback)"


def llm_check(server) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fr_agent", "llm", "check", "--base-url", server.url, "--model", "scripted-llm"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "FR_AGENT_HOME": "/tmp/fr-agent-llm-check"},
    )


def test_llm_check_against_junk_prints_one_line_and_fails():
    with serve(*[JUNK["HTML page"]] * 3, models_body="<html>junk</html>") as server:
        done = llm_check(server)
    assert done.returncode != 0 and "Traceback" not in done.stderr + done.stdout
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1
    assert "not a chat completion" in done.stderr


def test_llm_check_fails_a_reply_cut_off_by_length_with_the_reason():
    with serve({"content": "Let me think about which tool", "finish_reason": "length"}) as server:
        report, _ = probe(Endpoint(base_url=server.url, model="scripted-llm"), LLMSettings(max_retries=0))
    assert report.answers and not report.usable and not report.strict
    assert "finish_reason: length" in report.error and "before any tool call" in report.error
    assert report.tool_choice.endswith("unconfirmed (no native tool call came back)")


def test_max_model_len_from_v1_models_sizes_the_probe_and_the_rounds(run):
    window = 3000
    with serve(
        {"tool_calls": [ECHO_CALL]}, {"content": "done"}, {"tool_calls": [REMOVE_TORCHVISION]}, max_model_len=window
    ) as server:
        report, client = probe(Endpoint(base_url=server.url, model="scripted-llm"), LLMSettings(max_retries=0))
        assert report.usable and report.context_window == window
        round_ = make_round(run)
        planner = planner_for(server, run, max_completion_tokens=2048)
        assert planner.propose(round_)[0].args["package"] == "torchvision" and round_.source == "llm"
        statuses = [e["status"] for e in server.llm.exchanges]
        asked = [r["max_tokens"] for r in server.llm.requests]
    assert statuses == [200, 200, 200] and all(a <= window for a in asked)  # not one 400
    trimmed = [n for n in of_kind(events(run), NoteEvent) if "trimmed" in n.message]
    assert trimmed and "window of 3000 tokens" in trimmed[0].reason


def test_vllms_token_limit_400_lowers_max_tokens_and_retries_once(run):
    with serve({"tool_calls": [REMOVE_TORCHVISION]}, max_model_len=4096) as server:
        client = client_for(server)
        client.models_read = True  # as if /v1/models said nothing: the window comes from the 400
        reply = client.chat(ASK, ALL_SPECS, 8192)
        asked = [r["max_tokens"] for r in server.llm.requests]
        first = server.llm.exchanges[0]["response"]["error"]["message"]
    assert first == "max_tokens=8192 cannot be greater than max_model_len=4096. Please request fewer output tokens."
    assert reply.calls[0].name == "install_dependency" and asked[0] == 8192 and asked[1] < 4096
    assert client.context_window == 4096 and len(client.refused) == 1
    assert client.refused[0].error.startswith("HTTP 400: max_tokens=8192")
    with serve({"content": "never"}, max_model_len=100) as server:  # the prompt alone is past the window
        client = client_for(server)
        client.models_read = True
        with pytest.raises(LLMError, match=r"\(about \d+ tokens\) does not fit .* context window of 100 tokens"):
            client.chat(ASK, ALL_SPECS, 2048)
        assert len(server.llm.requests) == 1  # retried at most once; here not at all


def test_a_refused_request_leaves_an_llm_call_and_a_conversation_line(run):
    with serve({"status": 400, "error": "Invalid request: bad field"}) as server:
        round_ = make_round(run)
        planner_for(server, run).propose(round_)
    (call,) = of_kind(events(run), LLMCallEvent)
    assert call.error == "HTTP 400: Invalid request: bad field" and call.total_tokens == 0
    (line,) = [json.loads(x) for x in (run[0] / "llm-conversation.jsonl").read_text().splitlines()]
    assert line["error"] == call.error and line["request"]["messages"][0]["role"] == "system"


def test_the_round_budget_reads_the_servers_usage_and_is_never_overshot(run):
    # The server counts two characters a token: twice the old four-character estimate.
    with serve(*[{"content": "thinking about it"}] * 20, chars_per_token=2.0) as server:
        round_ = make_round(run)
        planner = planner_for(
            server, run, budget={"round_tokens": 20_000, "run_tokens": 100_000}, max_invalid_replies=19
        )
        assert planner.propose(round_) == round_.diagnosis.tool_calls
        reported = [e["response"]["usage"]["total_tokens"] for e in server.llm.exchanges]
    calls = of_kind(events(run), LLMCallEvent)
    assert [c.total_tokens for c in calls] == reported and not any(c.usage_estimated for c in calls)
    assert len(reported) >= 2 and round_.tokens_spent == sum(reported) <= 20_000
    assert "round's token budget is spent" in of_kind(events(run), NoteEvent)[-1].reason
