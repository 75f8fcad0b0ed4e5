"""The repair benchmark: its scenarios load and break recipes as declared, the judge tells a repaired run
from an unvalidated pass, and one cheap scenario runs through the real loop (until its broken stage
passes again). The full benchmark is `fr-agent bench repair`; its numbers are in the closing note."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fr_agent.agents.analyse import starting_recipe
from fr_agent.agents.run_state import Fix, RunState
from fr_agent.core.catalog import load_catalog
from fr_agent.core.errors import FrAgentError
from fr_agent.core.events import CLASS_OF_KIND, DiagnosisEvent, Event, NoteEvent, first, of_kind, read_events
from fr_agent.core.recipe import STAGES, ModelRef
from fr_agent.core.request import RunRequest
from fr_agent.shell.bench_repair import Perturbation, Scenario, judge, load_scenarios, render, run
from tests.cli_helpers import fr_agent

KINDS = {"install_dependency", "set_env_var", "patch_operator", "fix_serve_config"}


def base_recipe():
    catalog = load_catalog()
    entry = catalog.model("tiny-llama")
    return starting_recipe(
        ModelRef(name="tiny-llama", path="/models/tiny-llama"), entry.facts, catalog.chip("cpu"), False, engine="hf"
    )


def test_scenarios_cover_every_kind_with_a_verify_command():
    scenarios = load_scenarios()
    assert len(scenarios) >= 20
    kinds = Counter(s.kind for s in scenarios)
    assert set(kinds) == KINDS and min(kinds.values()) >= 3, kinds
    assert all(s.verify.describe() and s.expect for s in scenarios)
    assert any(s.ci for s in scenarios)


def test_every_scenario_breaks_something():
    base = base_recipe()
    for scenario in load_scenarios():
        broken = scenario.perturb.apply(base)
        assert broken.model_dump() != base.model_dump() or scenario.model.remote_code_imports, scenario.id


def test_perturbation_semantics():
    base = base_recipe()
    assert base.serve.engine == "hf" and base.package("transformers")
    broken = Perturbation(
        drop_packages=["transformers"],
        pin={"huggingface_hub": "0.20.0", "triton": None},
        removed=["safetensors"],
        env={"TORCH_LOGS": "recompile"},
        engine_args={"max_model_len": None, "enforce_eager": True},
        operators={"kernels": ["rms_norm"]},
    ).apply(base)
    assert broken.package("transformers") is None
    assert broken.package("huggingface-hub").version == "0.20.0" and broken.package("triton").version is None
    assert broken.package("torch") == base.package("torch")
    assert broken.removed == ["safetensors"] and broken.env["TORCH_LOGS"] == "recompile"
    assert "max_model_len" not in broken.serve.engine_args and broken.serve.engine_args["enforce_eager"] is True
    assert broken.operators.kernels == ["rms_norm"] and broken.operators.ops == base.operators.ops
    assert broken.changes == base.changes == []  # a fault is not a recorded fix


@pytest.mark.parametrize(
    "text, message",
    [
        ("- id: [unclosed", "cannot read"),
        ("{}", "expected a list"),
        (
            "- {id: a-b, kind: set_env_var, description: d, real_world: r, fails_at: import,\n"
            "   expect: [{tool: set_env_var}], verify: {python: 'pass', serve_check: true}}",
            "exactly one of",
        ),
        (
            "- {id: a-b, kind: set_env_var, description: d, real_world: r, fails_at: import, bogus: 1,\n"
            "   expect: [{tool: set_env_var}], verify: {python: 'pass'}}",
            "bogus",
        ),
        (
            "- {id: a-b, kind: set_env_var, description: d, real_world: r, fails_at: import,\n"
            "   expect: [{tool: set_env_var}], verify: {python: 'pass'}}\n"
            "- {id: a-b, kind: set_env_var, description: d, real_world: r, fails_at: import,\n"
            "   expect: [{tool: set_env_var}], verify: {python: 'pass'}}",
            "duplicate scenario id",
        ),
        (
            "- {id: a-b, kind: set_env_var, description: d, real_world: r, fails_at: import,\n"
            "   model: {remote_code_imports: ['os; x']},\n"
            "   expect: [{tool: set_env_var}], verify: {python: 'pass'}}",
            "not module names",
        ),
    ],
)
def test_bad_scenario_files_fail_in_one_line(tmp_path, text, message):
    path = tmp_path / "scenarios.yaml"
    path.write_text(text)
    with pytest.raises(FrAgentError) as err:
        load_scenarios(path)
    assert message in str(err.value) and "\n" not in str(err.value)


SCENARIO = Scenario.model_validate(
    {
        "id": "missing-x",
        "kind": "install_dependency",
        "description": "d",
        "real_world": "r",
        "fails_at": "import",
        "expect": [{"tool": "install_dependency", "args": {"package": "X_Pkg"}}],
        "verify": {"python": "import x"},
    }
)
FIX = {"tool": "install_dependency", "args": {"package": "x-pkg", "action": "install"}}


def ev(kind: str, attempt: int = 1, **fields) -> Event:
    """An event as the loop writes it; the fields judge does not read are filled in."""
    filler = {
        "stage": {"detail": "ok"},
        "verification": {"detail": "ok"},
        "diagnosis": {"stage": "import", "evidence": [], "confidence": 1.0, "explanation": "e", "signature": "s"},
    }
    return CLASS_OF_KIND[kind](run_id="r", attempt=attempt, ts=datetime.now(UTC), **filler.get(kind, {}) | fields)


def judged(scenario: Scenario, events: list[Event], values: dict, mode: str, verify_ok: bool | None) -> dict:
    """judge, with the final graph state given as the few values it reads."""
    fixes = [Fix(**f, attempt=1, detail="ok", for_stage=scenario.fails_at, signature="s") for f in values["fixes"]]
    state = RunState(request=RunRequest(model="m", chip="cpu"), **values | {"fixes": fixes})
    return judge(scenario, events, state, mode, verify_ok)


def transcript(
    tmp_path: Path, *, verified: bool = True, rerun: tuple = STAGES, first_fail: str = "import"
) -> list[Event]:
    def stage(name: str, ok: bool, attempt: int) -> Event:
        log = tmp_path / f"a{attempt}-{name}.log"
        log.write_text("validator output\n")
        return ev("stage", attempt, stage=name, ok=ok, log_path=str(log))

    events = [stage(s, True, 1) for s in STAGES[: STAGES.index(first_fail)]] + [stage(first_fail, False, 1)]
    events += [
        ev("diagnosis", category="install_dependency", playbook="missing-module"),
        ev("tool_call", status="applied", **FIX),
    ]
    if verified:
        events.append(ev("verification", ok=True, **FIX))
    return events + [stage(s, True, 2) for s in rerun]


def test_judge_repaired_only_with_every_validator(tmp_path):
    values = {"passed": list(STAGES), "fixes": [FIX], "attempt": 2}
    good = judged(SCENARIO, transcript(tmp_path), values, "stages", verify_ok=True)
    assert good["outcome"] == "repaired" and good["as_expected"] and good["attempts"] == 2
    assert good["first_failure"] == "import" and good["first_diagnosis"] == "install_dependency/missing-module"

    # Passed, but the fix never went through its tool's verification.
    unverified = judged(SCENARIO, transcript(tmp_path, verified=False), values, "stages", verify_ok=True)
    assert unverified["outcome"] == "unvalidated_pass" and not unverified["validators"].fixes_verified
    # Passed, but smoke's validator never ran after the fix.
    no_smoke = judged(SCENARIO, transcript(tmp_path, rerun=STAGES[:-1]), values, "stages", verify_ok=True)
    assert no_smoke["outcome"] == "unvalidated_pass" and not no_smoke["validators"].stages
    # Passed, but the scenario's own verify command failed (or never ran).
    for verify_ok in (False, None):
        assert judged(SCENARIO, transcript(tmp_path), values, "stages", verify_ok)["outcome"] == "unvalidated_pass"
    # A stage validator whose log is gone is not evidence.
    events = transcript(tmp_path)
    Path(events[-1].log_path).unlink()
    assert judged(SCENARIO, events, values, "stages", verify_ok=True)["outcome"] == "unvalidated_pass"
    # --until eval: a pass needs the eval gate too.
    done = {**values, "status": "passed"}
    assert judged(SCENARIO, transcript(tmp_path), done, "eval", True)["outcome"] == "unvalidated_pass"
    gated = [*transcript(tmp_path), ev("eval", gate_passed=True)]
    assert judged(SCENARIO, gated, done, "eval", True)["outcome"] == "repaired"
    # The gate passed but publish refused the card (its own policy): the repair still stands.
    refused = {**values, "status": "publish_failed"}
    assert judged(SCENARIO, gated, refused, "eval", True)["outcome"] == "repaired"
    failed_gate = [*transcript(tmp_path), ev("eval", gate_passed=False)]
    assert judged(SCENARIO, failed_gate, {**values, "status": "eval_failed"}, "eval", True)["outcome"] == "not_repaired"


def test_judge_accepts_stages_kept_from_before_a_later_fix(tmp_path):
    """Two fixes; the second re-runs from `operators`, so install..load keep their pass from attempt 2."""
    scenario = SCENARIO.model_copy(update={"fails_at": "operators"})
    second = {"tool": "patch_operator", "args": {"op": "rms_norm", "strategy": "reference"}}
    events = transcript(tmp_path, first_fail="operators", rerun=STAGES[: STAGES.index("operators")])
    events += [
        ev("stage", 2, stage="operators", ok=False),
        ev("tool_call", status="applied", **second),
        ev("verification", ok=True, **second),
    ]
    for name in STAGES[STAGES.index("operators") :]:
        log = tmp_path / f"a3-{name}.log"
        log.write_text("ok\n")
        events.append(ev("stage", 3, stage=name, ok=True, log_path=str(log)))
    values = {"passed": list(STAGES), "fixes": [FIX, second], "attempt": 3}
    verdict = judged(scenario, events, values, "stages", verify_ok=True)
    assert verdict["outcome"] == "repaired" and verdict["attempts"] == 3, verdict["validators"]
    # Without the operators stage passing after the second fix, it is not validated.
    assert judged(scenario, events[:-3], values, "stages", True)["outcome"] == "unvalidated_pass"


def test_judge_names_broken_scenarios_and_failed_repairs(tmp_path):
    values = {"passed": list(STAGES), "fixes": [], "attempt": 1}
    clean = [ev("stage", stage=s, ok=True) for s in STAGES]
    assert judged(SCENARIO, clean, values, "stages", True)["outcome"] == "did_not_fail"
    elsewhere = judged(SCENARIO, transcript(tmp_path, first_fail="load"), {**values, "fixes": [FIX]}, "stages", True)
    assert elsewhere["outcome"] == "wrong_failure"
    stuck = judged(
        SCENARIO, transcript(tmp_path), {"passed": ["install"], "fixes": [FIX], "attempt": 3}, "stages", None
    )
    assert stuck["outcome"] == "not_repaired"
    other_fix = {"tool": "set_env_var", "args": {"name": "X", "value": "1"}}
    wrong = judged(SCENARIO, transcript(tmp_path), {**values, "fixes": [other_fix]}, "stages", True)
    assert not wrong["as_expected"]


def test_unknown_scenario_is_a_one_line_error(fr_home):
    result = fr_agent("bench", "repair", "--only", "no-such-scenario", home=fr_home)
    assert result.returncode == 2
    assert "unknown scenario no-such-scenario" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.e2e
def test_cheap_scenario_through_the_real_loop(fr_home, tiny_model):
    """pin-conflict-hub: the resolver refuses the broken pins; the loop reads the resolver's message, moves the
    pin, verifies the install, and the install stage passes again; the scenario's verify command agrees."""
    report = run(["pin-conflict-hub"], home=fr_home, mode="stage")
    result = report.results[0]
    assert result.outcome == "repaired", (result.reason, result.verify_detail, result.validators)
    assert result.first_failure == "install" and result.attempts == 2 and result.as_expected
    assert result.fixes == [{"tool": "install_dependency", "args": {"package": "huggingface-hub", "action": "upgrade"}}]
    assert report.unvalidated_passes == 0 and report.repair_rate == 1.0
    events = read_events(fr_home / "runs" / result.run_id / "transcript.jsonl")
    assert any("fault injected" in e.message for e in of_kind(events, NoteEvent))
    diagnosis = first(events, DiagnosisEvent)
    assert diagnosis.playbook == "resolver-pin-unsatisfiable" and diagnosis.stage == "install"
    assert json.loads((fr_home / "runs" / result.run_id / "request.json").read_text())["engine"] == "hf"
    assert "repair rate (within 3 attempts): 1/1" in render(report)
