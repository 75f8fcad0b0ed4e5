"""The repair graph driven in-process with a fake sandbox and scripted stages: its limits, its typed
state, hints delivered once, one admission per call, the history and token count each round gets from
the state. Fast; the real loop runs in the e2e tests."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from fr_agent.agents import admission, repair, run_state
from fr_agent.agents.analyse import Analysis
from fr_agent.agents.stages import StageResult
from fr_agent.core.catalog import ModelFacts, load_catalog
from fr_agent.core.checks import Precheck
from fr_agent.core.config import LoopLimits, Settings
from fr_agent.core.errors import RunPaused, ToolRejected
from fr_agent.core.events import Transcript, read_events
from fr_agent.core.hints import HintBox
from fr_agent.core.paths import RunFiles
from fr_agent.core.recipe import ModelRef, Recipe
from fr_agent.core.request import RunRequest
from fr_agent.playbooks.diagnose import Diagnosis
from fr_agent.playbooks.planning import FixOutcome, PlanRound
from fr_agent.tools import TOOLS, ToolCall, Verification
from tests.sandboxes.fake_sandbox import FakeSandbox
from tests.tiny_facts import TINY_LLAMA_FACTS

FACTS = ModelFacts(**TINY_LLAMA_FACTS)
RECIPE = Recipe(model=ModelRef(name="tiny"), chip="cpu", base_image="python:3.11", packages=[])


class EnvPlanner:
    """Proposes a new, distinct set_env_var every round, so only a limit can stop the loop."""

    name = "test"
    start_events: list = []

    def __init__(self):
        self.rounds: list[PlanRound] = []
        self.counter = itertools.count()

    def propose(self, round: PlanRound) -> list[ToolCall]:
        self.rounds.append(round)
        return [ToolCall(tool="set_env_var", args={"name": f"FR_TEST_{next(self.counter)}", "value": "1"})]


@pytest.fixture
def loop(tmp_path, monkeypatch):
    """A RunContext over a fake sandbox; the import stage always fails; verifications as the test sets."""
    monkeypatch.setattr(
        repair,
        "analyse_model",
        lambda *a, **k: Analysis(
            model=RECIPE.model, chip="cpu", source="local", facts=FACTS, weights_available=True, recipe=RECIPE
        ),
    )
    monkeypatch.setattr(repair, "check_host", lambda *a, **k: Precheck(checks=[], model_path=str(tmp_path)))
    monkeypatch.setattr(
        repair,
        "run_one_stage",
        lambda stage, recipe, ctx: StageResult(
            stage=stage, ok=stage != "import", detail="ImportError: no module named nothing", duration_s=0.0
        ),
    )
    signatures = itertools.count()  # a new failure each time: the loop's "survived its fix" stop stays out
    monkeypatch.setattr(
        repair,
        "diagnose_text",
        lambda text, stage, timed_out=False: Diagnosis(
            stage=stage,
            category="set_env_var",
            evidence=[text],
            confidence=0.9,
            explanation="test",
            signature=f"sig-{next(signatures)}",
        ),
    )
    verdicts: list[bool] = []
    monkeypatch.setitem(
        TOOLS,
        "set_env_var",
        dataclasses.replace(
            TOOLS["set_env_var"], verify=lambda *a: Verification(ok=verdicts.pop(0) if verdicts else False, detail="v")
        ),
    )

    def make(limits: LoopLimits) -> tuple[run_state.RunContext, EnvPlanner, list[bool]]:
        planner = EnvPlanner()
        files = RunFiles(tmp_path / "run")
        files.root.mkdir(exist_ok=True)
        rt = run_state.RunContext(
            files=files,
            settings=Settings(home=tmp_path, limits=limits),
            catalog=load_catalog(None),
            sandbox=FakeSandbox(tmp_path / "sandbox"),
            planner=planner,
            transcript=Transcript(files.transcript, "run"),
            auto_approve=True,
        )
        return rt, planner, verdicts

    return make


class SpendingPlanner(EnvPlanner):
    """Like EnvPlanner, and as the LLM planner does: checks a call the loop refuses first, and spends tokens."""

    def propose(self, round: PlanRound) -> list[ToolCall]:
        with pytest.raises(ToolRejected):
            round.check(ToolCall(tool="set_env_var", args={"name": "LD_PRELOAD", "value": "/x.so"}))
        round.tokens_spent += 7
        return super().propose(round)


def drive(
    rt: run_state.RunContext, thread: str = "t", stop_before: tuple[str, ...] = (), saver: InMemorySaver | None = None
) -> run_state.RunState:
    saver = saver or InMemorySaver(serde=JsonPlusSerializer(allowed_msgpack_modules=run_state.STATE_TYPES))
    app = repair.build_graph().compile(checkpointer=saver, interrupt_before=list(stop_before) or None)
    config = {"configurable": {"thread_id": thread}, "recursion_limit": 200}
    started = saver.get_tuple(config) is not None  # then go on from the checkpoint, as a resumed run does
    app.invoke(
        None if started else run_state.RunState(request=RunRequest(model="tiny", chip="cpu")), config, context=rt
    )
    return run_state.RunState.model_validate(app.get_state(config).values)


def test_fixes_that_keep_failing_their_verification_are_bounded(loop):
    rt, planner, _ = loop(LoopLimits(max_failed_verifications=3))
    state = drive(rt)
    assert state.status == "failed" and state.reason == "limits reached: 3 fixes failed their verification"
    assert len(planner.rounds) == 3 and state.attempt == 1 and state.fixes == []
    assert isinstance(state.recipe, Recipe) and state.recipe.env == {}  # every failed fix rolled back


def test_verified_fixes_count_attempts_and_stop_at_the_attempt_limit(loop):
    rt, planner, verdicts = loop(LoopLimits(max_attempts=3))
    verdicts.extend([True, False, True])
    state = drive(rt)
    assert state.reason == "limits reached after 3 attempts"
    assert [f.tool for f in state.fixes] == ["set_env_var", "set_env_var"] and state.failed_verifications == 1
    assert state.fixes[0].for_stage == "import" and state.fixes[0].signature == "sig-0"


def test_hints_are_delivered_once_and_remembered_in_the_state(loop):
    rt, planner, _ = loop(LoopLimits(max_failed_verifications=2))
    hint = HintBox(rt.files.root).add("try float32", "cli")
    state = drive(rt)
    assert [h.id for h in planner.rounds[0].hints] == [hint.id] and planner.rounds[1].hints == []
    assert state.delivered_hints == [hint.id]
    rt.transcript.close()
    chats = [e for e in read_events(rt.files.transcript) if e.event == "chat"]
    assert [c.hint_id for c in chats] == [hint.id]


def test_each_distinct_call_is_admitted_once_per_round(monkeypatch, tmp_path):
    admits: list[dict] = []
    tool = dataclasses.replace(TOOLS["set_env_var"], admit=lambda args, recipe, sandbox: admits.append(args))
    monkeypatch.setitem(TOOLS, "set_env_var", tool)
    check = admission.Admission([], RECIPE, FakeSandbox(tmp_path))
    call = ToolCall(tool="set_env_var", args={"name": "A", "value": "1"})
    assert check(call) == check(call) and len(admits) == 1
    with pytest.raises(ToolRejected):
        check(ToolCall(tool="no_such_tool", args={}))
    with pytest.raises(ToolRejected):
        check(ToolCall(tool="no_such_tool", args={}))


def test_graph_nodes_are_named_after_their_functions():
    graph = repair.build_graph()
    assert set(graph.nodes) == {node.__name__ for node in repair.NODES}
    assert Path(repair.__file__).read_text().count("def build_graph") == 1


def test_each_round_sees_the_runs_history_and_token_count_from_the_checkpointed_state(loop):
    rt, _, verdicts = loop(LoopLimits(max_failed_verifications=2))
    rt.planner = planner = SpendingPlanner()
    verdicts.extend([True, False])  # verified (then import fails again, another way), then a failed check
    saver = InMemorySaver(serde=JsonPlusSerializer(allowed_msgpack_modules=run_state.STATE_TYPES))
    state = drive(rt, saver=saver)
    assert len(planner.rounds) == 3 and state.reason == "limits reached: 2 fixes failed their verification"
    refused = 'set_env_var {"name": "LD_PRELOAD", "value": "/x.so"}: rejected: '
    assert [o.line() for o in planner.rounds[1].outcomes] == [
        f"- {refused}{planner.rounds[1].outcomes[0].detail}",
        '- set_env_var {"name": "FR_TEST_0", "value": "1"}: applied and verified; '
        "then import failed differently: ImportError: no module named nothing",
    ]
    second = [(o.tool, o.args.get("name"), o.result) for o in planner.rounds[2].outcomes]
    assert second[1:] == [
        ("set_env_var", "FR_TEST_0", "verified"),  # the refusal is judged once per round
        ("set_env_var", "LD_PRELOAD", "rejected"),
        ("set_env_var", "FR_TEST_1", "check_failed"),
    ]
    assert [r.llm_tokens for r in planner.rounds] == [0, 7, 14] and state.llm_tokens == 21
    checkpointed = saver.get_tuple({"configurable": {"thread_id": "t"}}).checkpoint["channel_values"]["outcomes"]
    assert len(checkpointed) == 6 and all(isinstance(o, FixOutcome) for o in checkpointed)  # STATE_TYPES has it


def test_a_stage_that_passes_after_a_verified_fix_is_told_in_its_outcome(loop, monkeypatch):
    rt, planner, verdicts = loop(LoopLimits())
    monkeypatch.setattr(
        repair,
        "run_one_stage",
        lambda stage, recipe, ctx: StageResult(
            stage=stage, ok=stage != "import" or ctx.attempt > 1, detail="ImportError: x", duration_s=0.0
        ),
    )
    monkeypatch.setattr(repair, "LIVE_STAGES", ())  # no engine server here: the passed stages stay passed
    verdicts.append(True)
    state = drive(rt, stop_before=("evaluate",))
    assert [o.line() for o in state.outcomes] == [
        '- set_env_var {"name": "FR_TEST_0", "value": "1"}: applied and verified; import passed after it'
    ]


def test_a_round_cut_by_a_pause_keeps_its_tokens_and_the_resumed_round_counts_them(loop):
    class PausingPlanner(EnvPlanner):
        """Spends 5 tokens, then finds the run's budget spent; after the resume, plans."""

        budget = 5

        def propose(self, round: PlanRound) -> list[ToolCall]:
            self.rounds.append(round)
            if round.llm_tokens + 5 > self.budget:  # before asking: nothing spent in this round
                raise RunPaused("budget spent")
            round.tokens_spent += 5
            if round.llm_tokens + round.tokens_spent + 5 > self.budget:  # mid-round
                raise RunPaused("budget spent")
            return [ToolCall(tool="set_env_var", args={"name": "FR_TEST", "value": "1"})]

    rt, _, _ = loop(LoopLimits(max_failed_verifications=1))
    rt.planner = planner = PausingPlanner()
    saver = InMemorySaver(serde=JsonPlusSerializer(allowed_msgpack_modules=run_state.STATE_TYPES))
    with pytest.raises(RunPaused):
        drive(rt, saver=saver)
    assert [r.llm_tokens for r in planner.rounds] == [0, 5]  # planned again with the spend kept; paused at once
    planner.budget = 100  # resumed with a bigger budget
    state = drive(rt, saver=saver)
    assert [r.llm_tokens for r in planner.rounds] == [0, 5, 5] and state.llm_tokens == 10
    assert state.outcomes[-1].result == "check_failed"


def test_a_fix_that_needs_explicit_approval_is_asked_even_under_yes_and_declined_when_no_one_answers(loop):
    from langgraph.types import Command

    from fr_agent.shell.runs import Run

    rt, planner, _ = loop(LoopLimits(max_failed_verifications=2))
    remote_code = ToolCall(tool="fix_serve_config", args={"key": "trust_remote_code", "value": True})
    planner.propose = lambda round: [remote_code]  # what an LLM might propose; --yes must not apply it alone
    saver = InMemorySaver(serde=JsonPlusSerializer(allowed_msgpack_modules=run_state.STATE_TYPES))
    app = repair.build_graph().compile(checkpointer=saver)
    config = {"configurable": {"thread_id": "t"}, "recursion_limit": 200}
    result = app.invoke(run_state.RunState(request=RunRequest(model="tiny", chip="cpu")), config, context=rt)
    request = result["__interrupt__"][0].value
    assert rt.auto_approve and request["needs_approval"] and request["call"]["args"]["key"] == "trust_remote_code"
    app.invoke(Command(resume=Run._answer(request, None)), config, context=rt)
    state = run_state.RunState.model_validate(app.get_state(config).values)
    assert state.fixes == [] and state.outcomes[0].result == "declined"
    assert "needs explicit approval" in state.outcomes[0].detail and state.status == "failed"
