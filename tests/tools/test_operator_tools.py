"""patch_operator and search_operators over the operator layer: what each does to the recipe's operator plan,
what it admits, and how the search's result becomes a recorded, replayable call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fr_agent.core.config import Settings
from fr_agent.core.errors import ToolRejected
from fr_agent.core.recipe import ModelRef, OperatorPlan, PackagePin, Recipe
from fr_agent.evals.report import EvalReport, MetricRow
from fr_agent.playbooks.accuracy import diagnose_eval
from fr_agent.playbooks.diagnose import diagnose_text
from fr_agent.tools import TOOLS, ToolCall, search_operators, validate_call
from fr_agent.tools import operator_search as search_module
from tests.sandboxes.fake_sandbox import FakeSandbox


def gpu_recipe(**operators) -> Recipe:
    return Recipe(
        model=ModelRef(name="m", path="/models/m"),
        chip="nvidia",
        base_image="img",
        torch_device="cuda",
        packages=[PackagePin(name="torch", version="2.11.0")],
        operators=OperatorPlan(**{"backend": "flaggems", **operators}),
    )


def call(tool: str, **args):
    return validate_call(ToolCall(tool=tool, args=args))


def test_patch_operator_strategies_edit_the_plan():
    tool, args = call("patch_operator", op="mul", strategy="disable")
    recipe = gpu_recipe(include=["add", "mul"], kernels=["rms_norm"])
    tool.admit(args, recipe, None)  # a FlagGems function name, with FlagGems on
    plan = tool.apply(recipe, args).operators
    assert plan.disabled == ["mul"] and plan.include == ["add"] and plan.kernels == ["rms_norm"]
    tool, args = call("patch_operator", op="rotary_embedding", strategy="kernel")
    plan = tool.apply(gpu_recipe(disabled=["rotary_embedding"]), args).operators
    assert plan.kernels == ["rotary_embedding"] and plan.disabled == []
    tool, args = call("patch_operator", op="rms_norm", strategy="cast", dtype="float32")
    assert tool.apply(gpu_recipe(), args).operators.cast == {"rms_norm": "float32"}
    assert tool.apply(gpu_recipe(), args).changes[-1].summary == "cast rms_norm in float32"


def test_patch_operator_admits_only_what_the_layer_can_do():
    tool, args = call("patch_operator", op="mul", strategy="disable")
    with pytest.raises(ToolRejected, match="not checked by this recipe"):
        tool.admit(args, gpu_recipe(backend="torch"), None)  # FlagGems names need the flaggems backend
    tool, args = call("patch_operator", op="fused_add_rms_norm", strategy="kernel")
    with pytest.raises(ToolRejected, match="no kernel of ours reaches a model"):
        tool.admit(args, gpu_recipe(), None)


def test_search_operators_admits_flaggems_on_an_accelerator_only():
    tool, args = call("search_operators")
    tool.admit(args, gpu_recipe(), None)
    with pytest.raises(ToolRejected, match="needs the flaggems backend"):
        tool.admit(args, gpu_recipe(backend="torch"), None)
    with pytest.raises(ToolRejected, match="on cpu"):
        tool.admit(args, gpu_recipe().model_copy(update={"torch_device": "cpu"}), None)
    with pytest.raises(ValueError, match="resolved"):
        tool.apply(gpu_recipe(), args)


def test_search_resolves_into_a_recorded_selection(tmp_path, monkeypatch):
    report = search_module.SearchReport(
        native_ms=48.0,
        tolerance=0.036,
        candidates=["add", "mul", "silu"],
        round_bound=4,
        fault_rounds=2,
        faulty={"mul": "crash"},
        slow=["silu"],
        kernels_rejected={},
        rounds=[],
        selection=search_module.Selection(include=["add"], exclude=["mul", "silu"], kernels=["rms_norm"]),
        final=None,
    )

    class FakeSearch:
        def __init__(self, runner, settings):
            self.runner = runner

        def run(self):
            return report

    monkeypatch.setattr(search_operators, "OperatorSearch", FakeSearch)
    sandbox = FakeSandbox(tmp_path)
    tool, args = call("search_operators")
    resolved = tool.resolve(sandbox, gpu_recipe(), args, Settings(home=tmp_path))
    assert resolved.include == ["add"] and resolved.exclude == ["mul", "silu"] and resolved.kernels == ["rms_norm"]
    assert json.loads(Path(resolved.report).read_text())["faulty"] == {"mul": "crash"}
    after = tool.apply(gpu_recipe(), resolved)
    assert after.operators.model_dump(include={"backend", "include", "disabled", "kernels"}) == {
        "backend": "flaggems",
        "include": ["add"],
        "disabled": ["mul", "silu"],
        "kernels": ["rms_norm"],
    }
    # the recorded call replays the selection without searching again
    replayed_tool, replayed = call("search_operators", **after.changes[-1].args)
    assert replayed_tool.resolve(sandbox, gpu_recipe(), replayed, Settings(home=tmp_path)) is replayed
    assert TOOLS["search_operators"].rerun_from(replayed) == "operators"


def test_a_search_that_cannot_run_is_a_rejected_call(tmp_path, monkeypatch):
    class Failing:
        def __init__(self, runner, settings):
            pass

        def run(self):
            raise search_module.SearchError("FlagGems is not importable in the sandbox: ModuleNotFoundError")

    monkeypatch.setattr(search_operators, "OperatorSearch", Failing)
    tool, args = call("search_operators")
    with pytest.raises(ToolRejected, match="operator search failed: FlagGems is not importable"):
        tool.resolve(FakeSandbox(tmp_path), gpu_recipe(), args, Settings(home=tmp_path))


def test_flaggems_failures_lead_to_the_search():
    log = (
        "Traceback (most recent call last):\nRuntimeError: Triton Error [CUDA]: an illegal memory access\n"
        "op_check: silu_and_mul mismatch: max_abs_err 12.3 outside tolerance (rtol=0.016, atol=0.016, "
        "dtype=bfloat16) (impl=flaggems, max_abs_err=12.3)\n"
    )
    diagnosis = diagnose_text(log, "operators")
    assert diagnosis.playbook == "flaggems-op-check" and diagnosis.tool_calls[0].tool == "search_operators"
    plain = diagnose_text(log.replace("impl=flaggems", "impl=kernels"), "operators")
    assert all(c.tool != "search_operators" for c in plain.tool_calls)
    smoke = diagnose_text('{"choices": []}\nbad completion (status 200, finite logprobs: False)\n', "smoke")
    assert smoke.tool_calls[0].tool == "search_operators"


def test_an_eval_failure_under_full_flaggems_searches_first():
    report = EvalReport(
        metrics=[MetricRow(name="greedy_token_agreement", reference=1.0, migrated=0.2)],
        threshold_pct=5.0,
        samples=8,
        reference_backend="ref",
        migrated_backend="mig",
    )
    calls = diagnose_eval(report, gpu_recipe(), ["bfloat16", "float32"]).tool_calls
    assert calls[0] == ToolCall(tool="search_operators", args={})
    searched = diagnose_eval(report, gpu_recipe(include=["add"]), ["bfloat16", "float32"]).tool_calls
    assert all(c.tool != "search_operators" for c in searched)


def test_model_probe_verdicts_become_verifications(tmp_path, monkeypatch):
    """Both tools judge a FlagGems change by one fresh probe of the model under the new plan: correct (ok, or
    correct but slow) passes with the probe's numbers, anything else fails with its status, and a probe that
    cannot run fails with the reason."""
    verdicts = iter(
        [
            search_module.Probe(
                label="check",
                include=[],
                kernels=["rms_norm"],
                status="ok",
                rel_err=0.0105,
                top1=0.988,
                speed=1.8,
                log="ok.log",
            ),
            search_module.Probe(label="check", include=[], kernels=[], status="slow", rel_err=0.0, speed=0.7),
            search_module.Probe(
                label="check",
                include=["mul"],
                kernels=[],
                status="crash",
                error="illegal memory access",
                log="crash.log",
            ),
            search_module.SearchError("the reference probe failed: no CUDA"),
        ]
    )

    def check(self, plan, settings=None):
        verdict = next(verdicts)
        if isinstance(verdict, Exception):
            raise verdict
        return verdict

    monkeypatch.setattr(search_module.SandboxRunner, "check", check)
    sandbox = FakeSandbox(tmp_path)
    settings = Settings()
    search_tool, search_args = call("search_operators", include=[], exclude=["mul"], kernels=["rms_norm"])
    recipe = search_tool.apply(gpu_recipe(), search_args)
    ok = search_tool.verify(sandbox, recipe, search_args, settings)
    assert ok.ok and ok.log_path == "ok.log"
    assert ok.detail == "model forward with 0 FlagGems ops + rms_norm: logits rel err 0.0105, top-1 98.8%, 1.80x native"
    patch_tool, patch_args = call("patch_operator", op="mul", strategy="disable")
    slow = patch_tool.verify(sandbox, recipe, patch_args, settings)
    assert slow.ok and slow.detail == "model forward without FlagGems mul: logits rel err 0"
    crash = patch_tool.verify(sandbox, recipe, patch_args, settings)
    assert not crash.ok and crash.log_path == "crash.log"
    assert crash.detail == "model forward after disable mul: crash: illegal memory access"
    broken = search_tool.verify(sandbox, recipe, search_args, settings)
    assert not broken.ok and broken.detail == "the reference probe failed: no CUDA"
