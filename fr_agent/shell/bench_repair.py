"""The repair benchmark: each scenario breaks the analysed recipe (or the model) the way real deployments
break, then runs the real loop (precheck, staged attempt, diagnose, plan, apply, the tool's own verify,
re-run) on the tiny Llama with the `hf` engine in the local sandbox, and finally runs the scenario's own
verify command in the repaired sandbox.

The fault goes in right after analysis, through the checkpointed graph's state (the run is interrupted
after `analyse`, its recipe replaced, and resumed), so everything after it is the product as shipped.
A transcript note records what was broken.

A scenario counts as repaired when the fault broke the stage it names on the first attempt, every stage
then passed with its validator (with --until eval, the eval gate too; with --until stage, only the broken
stage is run again), every kept fix passed its tool's own
verification, and the verify command passed. A run that ends "passed" with any of those missing is an
unvalidated pass: reported, and the command exits non-zero.

    fr-agent bench repair [--only ID ...] [--attempts 3] [--until stage|stages|eval] [--home DIR] [--json]
    python -m fr_agent.evals.repairbench [same options]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import sys
import time
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from huggingface_hub import constants  # where analysis looks the benchmark's models up
from pydantic import BaseModel, Field, ValidationError, computed_field, field_validator, model_validator

from fr_agent.agents.run_state import Fix, RunState
from fr_agent.core.config import Settings, load_settings
from fr_agent.core.errors import FrAgentError
from fr_agent.core.events import (
    DiagnosisEvent,
    EvalEvent,
    Event,
    StageEvent,
    ToolCallEvent,
    VerificationEvent,
    last,
    of_kind,
)
from fr_agent.core.recipe import STAGES, OperatorPlan, PackagePin, Recipe, Scalar, Stage, normalize_name
from fr_agent.core.request import RunRequest
from fr_agent.core.types import Strict, first_error
from fr_agent.evals.tiny_model import ensure_tiny_llama, register_in_hf_cache
from fr_agent.kernels import operator_spec
from fr_agent.sandboxes.base import Sandbox, probe_verdict
from fr_agent.shell.runs import Run

Kind = Literal["install_dependency", "set_env_var", "patch_operator", "fix_serve_config"]
# How far a scenario runs: until the stage the fault broke passes again after a verified fix ("stage", the
# cheap mode CI uses), until every stage passed and the eval gate is next ("stages", the default), or on
# through the eval gate and publish ("eval").
Mode = Literal["stage", "stages", "eval"]
UNTIL = {
    "stage": "until the broken stage passes again",
    "stages": "until every stage passes (eval gate next)",
    "eval": "through the eval gate and publish",
}
TARGET_ATTEMPTS = 3
# The eval agent sized for a benchmark: accuracy checks on a few prompts, no throughput measurement
# (a CPU run of a 1.7M-parameter model says nothing about speed).
BENCH_EVAL = {
    "prompts": 2,
    "max_new_tokens": 4,
    "topk_tokens": 4,
    "heldout_tokens": 32,
    "tasks_per_category": 1,
    "concurrency": [],
}
MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
SCENARIO_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,60}$")


class ModelVariant(Strict):
    remote_code_imports: list[str] = Field(
        default_factory=list,
        description="modules the model's own modeling file imports (loaded with trust_remote_code)",
    )

    @field_validator("remote_code_imports")
    @classmethod
    def _modules(cls, v: list[str]) -> list[str]:
        bad = [m for m in v if not MODULE.match(m)]
        if bad:
            raise ValueError(f"not module names: {bad}")
        return v


class Perturbation(Strict):
    """How the analysed recipe is broken."""

    drop_packages: list[str] = Field(default_factory=list)
    pin: dict[str, str | None] = Field(default_factory=dict, description="add or replace a pin (null: unpinned)")
    removed: list[str] = Field(default_factory=list, description="packages uninstalled after the install")
    env: dict[str, str] = Field(default_factory=dict)
    engine_args: dict[str, Scalar | None] = Field(default_factory=dict, description="null drops the argument")
    operators: dict[str, Any] = Field(default_factory=dict, description="OperatorPlan fields to replace")

    @field_validator("operators")
    @classmethod
    def _operators(cls, v: dict[str, Any]) -> dict[str, Any]:
        OperatorPlan.model_validate(v)  # the fields must exist and type-check on their own
        return v

    def apply(self, recipe: Recipe) -> Recipe:
        gone = {normalize_name(n) for n in [*self.drop_packages, *self.pin]}
        packages = [p for p in recipe.packages if normalize_name(p.name) not in gone]
        packages += [PackagePin(name=name, version=version) for name, version in self.pin.items()]
        engine_args = dict(recipe.serve.engine_args)
        for key, value in self.engine_args.items():
            if value is None:
                engine_args.pop(key, None)
            else:
                engine_args[key] = value
        data = recipe.model_dump()
        data.update(
            packages=[p.model_dump() for p in packages],
            removed=[*recipe.removed, *self.removed],
            env={**recipe.env, **self.env},
            operators={**data["operators"], **self.operators},
        )
        data["serve"]["engine_args"] = engine_args
        return Recipe.model_validate(data)


class ExpectedFix(Strict):
    tool: str
    args: dict[str, Any] = Field(default_factory=dict, description="compared as a subset of the applied args")

    def matches(self, fix: Fix) -> bool:
        if fix.tool != self.tool:
            return False
        args = fix.args
        for key, want in self.args.items():
            have = args.get(key)
            if key == "package" and isinstance(have, str) and isinstance(want, str):
                have, want = normalize_name(have), normalize_name(want)
            if have != want:
                return False
        return True


class Verify(Strict):
    python: str | None = Field(None, description="code the sandbox's python runs in the repaired environment")
    serve_check: bool = Field(False, description="the repaired serve command, with the engine's --check")
    op_check: list[str] = Field(default_factory=list, description="the operator probe on these ops")

    @model_validator(mode="after")
    def _exactly_one(self) -> Verify:
        if sum([self.python is not None, self.serve_check, bool(self.op_check)]) != 1:
            raise ValueError("verify needs exactly one of python, serve_check, op_check")
        return self

    def describe(self) -> str:
        if self.python is not None:
            return f"python -c {self.python!r}"
        return "serve command --check" if self.serve_check else f"op_check {', '.join(self.op_check)}"


class Scenario(Strict):
    id: str
    kind: Kind
    description: str
    real_world: str
    model: ModelVariant = Field(default_factory=ModelVariant)
    perturb: Perturbation = Field(default_factory=Perturbation)
    fails_at: Stage
    expect: list[ExpectedFix] = Field(min_length=1)
    verify: Verify
    ci: bool = False

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not SCENARIO_ID.match(v):
            raise ValueError(f"{v!r}: lowercase letters, digits and '-' only")
        return v


def load_scenarios(path: Path | None = None) -> list[Scenario]:
    where = str(path) if path else "packaged scenarios.yaml"
    try:
        text = (
            path.read_text()
            if path
            else resources.files("fr_agent.evals.repairbench").joinpath("scenarios.yaml").read_text()
        )
        raw = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as err:
        raise FrAgentError(f"cannot read {where}: {str(err).splitlines()[0]}") from None
    if not isinstance(raw, list):
        raise FrAgentError(f"{where}: expected a list of scenarios")
    scenarios, seen = [], set()
    for index, item in enumerate(raw):
        try:
            scenario = Scenario.model_validate(item)
        except ValidationError as err:
            name = item.get("id", f"#{index + 1}") if isinstance(item, dict) else f"#{index + 1}"
            raise FrAgentError(f"{where}: scenario {name}: {first_error(err)}") from None
        if scenario.id in seen:
            raise FrAgentError(f"{where}: duplicate scenario id {scenario.id!r}")
        seen.add(scenario.id)
        scenarios.append(scenario)
    return scenarios


# ------------------------------------------------------------------ results


class Validators(BaseModel):
    """What stands behind a pass. A pass with any of these False is an unvalidated pass."""

    stages: bool = Field(description="every stage passed its validator after the last fix (a stage event with its log)")
    fixes_verified: bool = Field(
        description="every applied fix went through its tool's own verification, and every kept one passed it"
    )
    verify_command: bool = Field(description="the scenario's verify command ran in the repaired sandbox and passed")
    eval_gate: bool | None = Field(description="with --eval: the eval gate ran and passed; None when stopped before it")

    def all_ran(self) -> bool:
        return self.stages and self.fixes_verified and self.verify_command and self.eval_gate is not False


Outcome = Literal["repaired", "unvalidated_pass", "not_repaired", "did_not_fail", "wrong_failure", "error"]


class ScenarioResult(BaseModel):
    id: str
    kind: Kind
    outcome: Outcome
    run_id: str | None = None
    run_status: str = ""
    reason: str = ""
    first_failure: str | None = Field(None, description="the stage that failed first")
    first_diagnosis: str | None = Field(None, description="category/playbook the loop read from that failure")
    attempts: int = 0
    fixes: list[dict] = Field(default_factory=list, description="kept (verified) fixes, in order")
    as_expected: bool = False
    validators: Validators | None = None
    verify_detail: str = ""
    wall_s: float = 0.0

    @property
    def repaired_within_target(self) -> bool:
        return self.outcome == "repaired" and self.attempts <= TARGET_ATTEMPTS


def outcome_count(outcome: Outcome) -> Any:
    """A report's computed field: how many of its results ended in `outcome`."""
    return computed_field(property(lambda report: sum(r.outcome == outcome for r in report.results)), return_type=int)


class Report(BaseModel):
    mode: Mode
    max_attempts: int
    results: list[ScenarioResult]

    @computed_field
    @property
    def scenarios(self) -> int:
        return len(self.results)

    repaired = outcome_count("repaired")

    @computed_field
    @property
    def repaired_within_3(self) -> int:
        return sum(r.repaired_within_target for r in self.results)

    @computed_field
    @property
    def repair_rate(self) -> float:
        return self.repaired_within_3 / len(self.results) if self.results else 0.0

    @computed_field
    @property
    def mean_attempts(self) -> float:
        done = [r.attempts for r in self.results if r.outcome == "repaired"]
        return sum(done) / len(done) if done else 0.0

    @computed_field
    @property
    def wall_s(self) -> float:
        return round(sum(r.wall_s for r in self.results), 1)

    unvalidated_passes = outcome_count("unvalidated_pass")

    @computed_field
    @property
    def broken_scenarios(self) -> list[str]:
        return [r.id for r in self.results if r.outcome in ("did_not_fail", "wrong_failure")]


# ------------------------------------------------------------------ running


MODELING = '''"""A tiny Llama whose own modeling code imports what many hub models' code imports."""
{imports}
from transformers import LlamaForCausalLM


class BenchForCausalLM(LlamaForCausalLM):
    pass
'''


def prepare_model(scenario: Scenario, work: Path, settings: Settings) -> tuple[str, str | None]:
    """The model name the run asks for, and a catalog dir when the scenario needs its own model."""
    if not scenario.model.remote_code_imports:
        return "tiny-llama", None
    base = ensure_tiny_llama(settings.hf_home)
    model_dir = work / "model"
    model_dir.mkdir(parents=True)
    for item in base.iterdir():
        shutil.copy(item.resolve(), model_dir / item.name)
    imports = "\n".join(f"import {module}  # noqa: F401" for module in scenario.model.remote_code_imports)
    (model_dir / "modeling_bench.py").write_text(MODELING.format(imports=imports))
    config = json.loads((model_dir / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_bench.BenchForCausalLM"}
    (model_dir / "config.json").write_text(json.dumps(config, indent=2))
    repo_id = f"fr-repairbench/{scenario.id}"
    hub = Path(constants.HF_HUB_CACHE)
    if hub.name != "hub":
        raise FrAgentError(f"HF_HUB_CACHE={hub} does not end in /hub: set HF_HOME instead for the benchmark's models")
    register_in_hf_cache(model_dir, repo_id, hub.parent)
    catalog = work / "catalog"
    catalog.mkdir()
    packaged = resources.files("fr_agent.core.catalog")
    (catalog / "chips.yaml").write_text(packaged.joinpath("chips.yaml").read_text())
    models = yaml.safe_load(packaged.joinpath("models.yaml").read_text())
    entry = {k: v for k, v in models["tiny-llama"].items() if k != "fixture"}
    models[scenario.id] = {**entry, "repo_id": repo_id, "trust_remote_code": True}
    (catalog / "models.yaml").write_text(yaml.safe_dump(models, sort_keys=False))
    return scenario.id, str(catalog)


def run_verify(scenario: Scenario, sandbox: Sandbox, recipe: Recipe, settings: Settings) -> tuple[bool, str]:
    verify = scenario.verify
    if verify.python is not None:
        argv = [sandbox.python, "-c", verify.python]
    elif verify.serve_check:
        argv = [
            *recipe.serve_argv(
                sandbox.python,
                recipe.model.path or recipe.model.name,
                0,
                probes_dir=str(Path(sandbox.probe("hf_server.py")).parent),
            ),
            "--check",
        ]
    else:
        spec_path = Path(sandbox.workdir) / "repairbench-verify-ops.json"
        spec_path.write_text(json.dumps({**operator_spec(recipe), "ops": verify.op_check}))
        argv = [sandbox.python, sandbox.probe("op_check.py"), str(spec_path)]
    result = sandbox.run(argv, recipe, timeout=settings.timeouts.verify, log_name="repairbench-verify")
    ok = result.ok and (not verify.op_check or bool(probe_verdict(result).get("ok")))
    tail = (result.output.strip().splitlines() or [""])[-1][:200]
    return ok, f"{verify.describe()}: {'ok' if ok else 'FAILED'}" + ("" if ok else f" ({tail})")


def judge(scenario: Scenario, events: list[Event], state: RunState | None, mode: Mode, verify_ok: bool | None) -> dict:
    """Outcome and validators, from the transcript and the final graph state."""
    stages = of_kind(events, StageEvent)
    failed = [e for e in stages if not e.ok]
    diagnoses = of_kind(events, DiagnosisEvent)
    first = failed[0].stage if failed else None
    fixes = state.fixes if state else []
    passed_stages = set(state.passed) if state else set()
    verifications = of_kind(events, VerificationEvent)
    applied = [i for i, e in enumerate(events) if isinstance(e, ToolCallEvent) and e.status == "applied"]
    every_applied_checked = all(of_kind(events[i:], VerificationEvent) for i in applied)
    kept_verified = all(any(v.ok and v.tool == f.tool and v.args == f.args for v in verifications) for f in fixes)
    # Every stage's latest validator passed and left its log; the stage that failed last passed again after
    # the last verified fix (stages before a fix's re-run point keep their earlier pass, as the loop does).
    latest = {e.stage: e for e in stages}
    needed = [scenario.fails_at] if mode == "stage" else list(STAGES)
    stages_ok = all(
        stage in latest and latest[stage].ok and latest[stage].log_path and Path(latest[stage].log_path).exists()
        for stage in needed
    )
    last_fix = max((i for i, e in enumerate(events) if isinstance(e, VerificationEvent) and e.ok), default=-1)
    if failed:
        stages_ok = stages_ok and any(
            e.stage == failed[-1].stage and e.ok for e in of_kind(events[last_fix + 1 :], StageEvent)
        )
    evaluated = last(events, EvalEvent)
    eval_gate = bool(evaluated and evaluated.gate_passed) if mode == "eval" else None
    if mode == "eval":  # the gate is what repair answers for; publish's card policy is reported, not judged
        passed = (state is not None and state.status == "passed") or (bool(eval_gate) and passed_stages >= set(STAGES))
    elif mode == "stages":
        passed = passed_stages >= set(STAGES)
    else:
        passed = scenario.fails_at in passed_stages
    validators = Validators(
        stages=stages_ok,
        fixes_verified=every_applied_checked and kept_verified and bool(fixes),
        verify_command=bool(verify_ok),
        eval_gate=eval_gate,
    )
    if not stages:  # stopped before any stage (precheck, analysis): nothing was attempted
        outcome = "error"
    elif first is None:
        outcome = "did_not_fail"
    elif first != scenario.fails_at:
        outcome = "wrong_failure"
    elif not passed:
        outcome = "not_repaired"
    else:
        outcome = "repaired" if validators.all_ran() else "unvalidated_pass"
    return {
        "outcome": outcome,
        "first_failure": first,
        "attempts": state.attempt if state else 0,
        "first_diagnosis": f"{diagnoses[0].category}/{diagnoses[0].playbook}" if diagnoses else None,
        "fixes": [{"tool": f.tool, "args": f.args} for f in fixes],
        "as_expected": all(any(x.matches(f) for f in fixes) for x in scenario.expect),
        "validators": validators,
    }


def stage_repaired(scenario: Scenario, run: Run) -> bool:
    """The stage the fault broke has passed again after a fix passed its verification."""
    verified = False
    for event in run.events():
        if isinstance(event, VerificationEvent) and event.ok:
            verified = True
        elif verified and isinstance(event, StageEvent) and event.stage == scenario.fails_at and event.ok:
            return True
    return False


def run_scenario(scenario: Scenario, settings: Settings, mode: Mode, work_root: Path) -> ScenarioResult:
    started = time.monotonic()
    work = work_root / scenario.id
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    model, catalog = prepare_model(scenario, work, settings)
    request = RunRequest(model=model, chip="cpu", engine="hf", catalog=catalog)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    stops = {"stage": ["run_stage", "evaluate"], "stages": ["evaluate"], "eval": []}[mode]
    state: RunState | None = None
    verify_ok, verify_detail, error = None, "", ""
    with Run.create(request, settings, run_id=f"repairbench-{scenario.id}-{stamp}-{secrets.token_hex(2)}") as run:
        try:
            analysed = run.drive(auto_approve=True, stop_before=["precheck"])
            run.context.emit(
                "note",
                message=f"repairbench: fault injected after analysis: {scenario.description}",
                scenario=scenario.id,
                perturbation=scenario.perturb.model_dump(exclude_defaults=True),
            )
            state = run.drive(
                auto_approve=True, stop_before=stops, update={"recipe": scenario.perturb.apply(analysed.recipe)}
            )
            while mode == "stage" and run.next and "evaluate" not in run.next and not stage_repaired(scenario, run):
                state = run.drive(auto_approve=True, stop_before=stops)
            paused = bool(run.next)  # stopped by the bench, not finished by the loop
            if set(state.passed) >= set(STAGES) or (paused and stage_repaired(scenario, run)):
                verify_ok, verify_detail = run_verify(scenario, run.context.sandbox, state.recipe, settings)
                run.context.emit("note", message=f"repairbench verify: {verify_detail}", ok=verify_ok)
            if paused:
                state = state.model_copy(
                    update={"status": {"stage": "stage_repaired", "stages": "stages_passed"}.get(mode, "stopped")}
                )
                where = "the broken stage passed again" if mode == "stage" else "every stage passed"
                run.context.emit(
                    "run_finished",
                    state.attempt,
                    status=state.status,
                    reason=f"repairbench: {where}; stopped there",
                    fixes=[f.model_dump() for f in state.fixes],
                    passed=state.passed,
                )
        except Exception as err:  # one broken scenario is reported, the others still run
            error = f"{type(err).__name__}: {err}"
            run.context.emit("run_finished", status="error", reason=error, fixes=[], passed=[])
    verdict = judge(scenario, run.events(), state, mode, verify_ok)
    if error:
        verdict["outcome"] = "error"
    return ScenarioResult(
        id=scenario.id,
        kind=scenario.kind,
        run_id=run.id,
        run_status=state.status if state else "error",
        reason=error or (state.reason if state else ""),
        verify_detail=verify_detail,
        wall_s=round(time.monotonic() - started, 1),
        **verdict,
    )


def bench_settings(home: Path | None, config: Path | None, max_attempts: int) -> Settings:
    settings = load_settings(config)
    if home is not None:
        settings = settings.model_copy(update={"home": home.absolute()})
    eval_settings = settings.eval.model_copy(update=BENCH_EVAL)
    limits = settings.limits.model_copy(update={"max_attempts": max_attempts})
    return settings.model_copy(update={"eval": eval_settings, "limits": limits})


def run(
    only: list[str] | None = None,
    max_attempts: int = TARGET_ATTEMPTS,
    home: Path | None = None,
    *,
    mode: Mode = "stages",
    config: Path | None = None,
    scenarios_file: Path | None = None,
    on_result=None,
) -> Report:
    if max_attempts < 1:
        raise FrAgentError("--attempts must be at least 1")
    scenarios = load_scenarios(scenarios_file)
    if only:
        unknown = sorted(set(only) - {s.id for s in scenarios})
        if unknown:
            raise FrAgentError(f"unknown scenario {', '.join(unknown)}; known: {', '.join(s.id for s in scenarios)}")
        scenarios = [s for s in scenarios if s.id in only]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the models are local fixtures: no hub lookups
    settings = bench_settings(home, config, max_attempts)
    if "huggingface_hub" not in sys.modules:  # its cache location is read once, at import
        os.environ.setdefault("HF_HOME", str(settings.hf_home))
    work_root = settings.home / "repairbench"
    results = []
    for scenario in scenarios:
        result = run_scenario(scenario, settings, mode, work_root)
        results.append(result)
        if on_result:
            on_result(result)
    return Report(mode=mode, max_attempts=max_attempts, results=results)


def fix_text(fix: dict) -> str:
    args = fix.get("args") or {}
    if fix["tool"] == "install_dependency":
        text = f"{args.get('action', 'install')} {args.get('package')}" + (
            f"=={args['version']}" if args.get("version") else ""
        )
    elif fix["tool"] == "set_env_var":
        text = f"{args.get('name')}={args.get('value')}"
    elif fix["tool"] == "fix_serve_config":
        text = f"{args.get('key')}={args.get('value')}" if args.get("value") is not None else f"drop {args.get('key')}"
    else:
        text = f"{args.get('strategy')} {args.get('op')}"
    return text


def render_row(r: ScenarioResult) -> str:
    fixes = "; ".join(fix_text(f) for f in r.fixes) or "-"
    mark = "" if r.as_expected or r.outcome != "repaired" else " (unexpected fix)"
    return f"{r.id:36} {r.kind:19} {r.outcome:16} {r.attempts:>3}  {r.wall_s:>6.1f}s  {fixes}{mark}"


def render(report: Report) -> str:
    lines = [
        f"repair benchmark: {report.scenarios} scenarios, hf engine, local sandbox, "
        f"{UNTIL[report.mode]}, "
        f"at most {report.max_attempts} attempts",
        "",
        f"{'scenario':36} {'kind':19} {'outcome':16} {'att':>3}  {'wall':>7}  fixes (kept, verified)",
    ]
    lines += [render_row(r) for r in report.results]
    kinds = sorted({r.kind for r in report.results})
    lines += ["", f"{'kind':19} {'scenarios':>9} {'repaired':>9}"]
    for kind in kinds:
        rows = [r for r in report.results if r.kind == kind]
        lines.append(f"{kind:19} {len(rows):>9} {sum(r.repaired_within_target for r in rows):>9}")
    lines += [
        "",
        f"repair rate (within {TARGET_ATTEMPTS} attempts): {report.repaired_within_3}/{report.scenarios} "
        f"= {report.repair_rate:.1%}",
        f"attempts per repaired scenario: {report.mean_attempts:.2f} (attempt 1 is the broken one)",
        f"wall time: {report.wall_s:.0f}s total, {report.wall_s / max(1, report.scenarios):.0f}s per scenario",
        f"unvalidated passes: {report.unvalidated_passes}",
    ]
    for r in report.results:
        if r.outcome == "unvalidated_pass":
            missing = [k for k, v in (r.validators.model_dump() if r.validators else {}).items() if v is False]
            lines.append(f"  ! {r.id}: passed, but these validators did not run or failed: {', '.join(missing)}")
        elif r.outcome not in ("repaired",):
            lines.append(
                f"  - {r.id}: {r.outcome}: {r.reason or r.verify_detail}"
                + (f" (first failure: {r.first_failure}, {r.first_diagnosis})" if r.first_failure else "")
            )
    if report.broken_scenarios:
        lines.append(
            f"broken scenarios (the fault did not break the stage they name): {', '.join(report.broken_scenarios)}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fr_agent.evals.repairbench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", help="scenario id (repeatable)")
    parser.add_argument("--attempts", type=int, default=TARGET_ATTEMPTS, help="max attempts per scenario")
    parser.add_argument(
        "--until",
        choices=list(UNTIL),
        default="stages",
        help="how far each scenario runs: " + "; ".join(f"{k}: {v}" for k, v in UNTIL.items()),
    )
    parser.add_argument("--home", type=Path, help="FR_AGENT_HOME for the runs (default: the usual one)")
    parser.add_argument("--config", type=Path, help="settings YAML")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args(argv)
    try:
        if args.list:
            for s in load_scenarios():
                print(f"{s.id:36} {s.kind:19} fails at {s.fails_at:9} {s.description}")
            return 0
        report = run(
            args.only,
            args.attempts,
            args.home,
            mode=args.until,
            config=args.config,
            on_result=None if args.json else lambda r: print(render_row(r), flush=True),
        )
    except FrAgentError as err:
        print(f"error: {err}")
        return 2
    print(report.model_dump_json(indent=2) if args.json else "\n" + render(report))
    return 0 if report.unvalidated_passes == 0 and not report.broken_scenarios else 1
