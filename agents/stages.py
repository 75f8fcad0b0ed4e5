"""The staged attempt: install → import → device → load → operators → serve → smoke.

Each stage runs in the sandbox, writes its own log and is judged by a deterministic validator
(a probe's JSON verdict, an HTTP answer): success is only ever a validator passing.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import BaseModel

from fr_agent.core.config import Settings
from fr_agent.core.ports import free_port
from fr_agent.core.recipe import Recipe, Stage, normalize_name
from fr_agent.kernels import operator_spec
from fr_agent.sandboxes.base import CommandResult, Sandbox, Server, probe_verdict, wait_for_health

SMOKE_PROMPT = "Compilers lower a model to the chip"


class StageResult(BaseModel):
    stage: Stage
    ok: bool
    detail: str
    duration_s: float
    log_path: str | None = None
    timed_out: bool = False


@dataclass
class Live:
    """What a run holds that cannot be checkpointed: the engine process."""

    server: Server | None = None

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@dataclass
class StageContext:
    sandbox: Sandbox
    settings: Settings
    live: Live
    model_type: str = "llama"
    trust_remote_code: bool = False
    attempt: int = 1
    visible_devices_env: str | None = None

    def log(self, stage: str) -> str:
        """Per-attempt log names, so a reviewer finds each failure as it was."""
        return f"a{self.attempt}-{stage}"


def _from_probe(stage: Stage, result: CommandResult, summary: Callable[[dict], str]) -> StageResult:
    verdict = probe_verdict(result)
    ok = result.ok and bool(verdict.get("ok"))
    if result.timed_out:
        detail = f"timed out after {result.duration_s:.0f}s"
    elif result.returncode is not None and result.returncode < 0:
        detail = f"killed by signal {signal.Signals(-result.returncode).name}"
    else:
        detail = summary(verdict) if ok else verdict.get("error") or f"exit code {result.returncode}"
    return StageResult(
        stage=stage,
        ok=ok,
        detail=detail,
        duration_s=result.duration_s,
        log_path=result.log_path,
        timed_out=result.timed_out,
    )


def install(recipe: Recipe, ctx: StageContext) -> StageResult:
    started = time.monotonic()
    prepared = ctx.sandbox.prepare(recipe)
    result = ctx.sandbox.sync_packages(recipe, log_name=ctx.log("install")) if prepared.ok else prepared
    if not result.ok:
        detail = "timed out" if result.timed_out else f"installer exit code {result.returncode}"
        return StageResult(
            stage="install",
            ok=False,
            detail=detail,
            log_path=result.log_path,
            duration_s=round(time.monotonic() - started, 2),
            timed_out=result.timed_out,
        )
    installed = ctx.sandbox.installed(recipe)
    wrong = [
        f"{p.name} (want {p.version}, have {installed.get(normalize_name(p.name), 'none')})"
        for p in recipe.packages
        if normalize_name(p.name) not in installed
        or (p.version and installed[normalize_name(p.name)].split("+")[0] != p.version.split("+")[0])
    ]
    still = [name for name in recipe.removed if normalize_name(name) in installed]
    ok = not wrong and not still
    detail = (
        f"{len(installed)} packages; pinned: " + ", ".join(p.requirement() for p in recipe.packages)
        if ok
        else "not as pinned: " + "; ".join(wrong + [f"{n} should be removed" for n in still])
    )
    return StageResult(
        stage="install", ok=ok, detail=detail, log_path=result.log_path, duration_s=round(time.monotonic() - started, 2)
    )


def import_modules(recipe: Recipe, model_type: str) -> list[str]:
    """What later stages import: the stack, the model's own modules, the server entrypoint."""
    modules = ["torch", "transformers", f"transformers.models.{model_type}"]
    if recipe.serve.engine == "vllm":
        modules += ["vllm", "vllm.entrypoints.openai.api_server"]
    return modules


def imports(recipe: Recipe, ctx: StageContext) -> StageResult:
    modules = import_modules(recipe, ctx.model_type)
    result = ctx.sandbox.run(
        [ctx.sandbox.python, ctx.sandbox.probe("import_check.py"), *modules],
        recipe,
        timeout=ctx.settings.timeouts.for_stage("import"),
        log_name=ctx.log("import"),
    )
    return _from_probe(
        "import",
        result,
        lambda v: ", ".join(f"{name} {info.get('version') or ''}".strip() for name, info in v["modules"].items()),
    )


def device(recipe: Recipe, ctx: StageContext) -> StageResult:
    visible = ctx.visible_devices_env or ""
    result = ctx.sandbox.run(
        [ctx.sandbox.python, ctx.sandbox.probe("device_check.py"), recipe.torch_device, recipe.dtype, visible],
        recipe,
        timeout=ctx.settings.timeouts.device,
        log_name=ctx.log("device"),
    )
    return _from_probe(
        "device",
        result,
        lambda v: f"{v.get('name')} x{v.get('device_count')}, {v['dtype']} matmul finite, torch {v.get('torch')}",
    )


def load(recipe: Recipe, ctx: StageContext) -> StageResult:
    argv = [
        ctx.sandbox.python,
        ctx.sandbox.probe("load_check.py"),
        recipe.model.path or recipe.model.name,
        recipe.dtype,
        recipe.torch_device,
    ]
    if ctx.trust_remote_code:
        argv.append("--trust-remote-code")
    result = ctx.sandbox.run(argv, recipe, timeout=ctx.settings.timeouts.load, log_name=ctx.log("load"))
    return _from_probe(
        "load", result, lambda v: f"{v.get('architectures')} {v.get('parameters'):,} params, forward pass finite"
    )


def operators(recipe: Recipe, ctx: StageContext) -> StageResult:
    spec_path = Path(ctx.sandbox.workdir) / "operators.json"
    spec_path.write_text(json.dumps(operator_spec(recipe)))
    result = ctx.sandbox.run(
        [ctx.sandbox.python, ctx.sandbox.probe("op_check.py"), str(spec_path)],
        recipe,
        timeout=ctx.settings.timeouts.operators,
        log_name=ctx.log("operators"),
    )
    return _from_probe(
        "operators", result, lambda v: f"{len(v['ops'])} ops pass in {v['dtype']} ({recipe.operators.backend} backend)"
    )


def serve(recipe: Recipe, ctx: StageContext) -> StageResult:
    ctx.live.stop_server()
    started = time.monotonic()
    port = free_port()
    argv = recipe.serve_argv(
        ctx.sandbox.python,
        recipe.model.path or recipe.model.name,
        port,
        probes_dir=str(Path(ctx.sandbox.probe("hf_server.py")).parent),
    )
    # owned from its first second: an interrupt while it loads still stops it (drive's finally)
    ctx.live.server = server = ctx.sandbox.start(argv, recipe, port=port, log_name=ctx.log("serve"))
    healthy, detail = wait_for_health(
        server, timeout=ctx.settings.timeouts.serve, stall_s=ctx.settings.sandbox.serve_log_stall_s
    )
    if not healthy:
        ctx.live.stop_server()
    return StageResult(
        stage="serve",
        ok=healthy,
        detail=detail,
        log_path=str(server.log_path),
        duration_s=round(time.monotonic() - started, 2),
        timed_out="after" in detail and not healthy,
    )


def smoke(recipe: Recipe, ctx: StageContext) -> StageResult:
    started = time.monotonic()
    log_path = Path(ctx.sandbox.logs) / f"{ctx.log('smoke')}.log"
    server = ctx.live.server
    if server is None or not server.alive():
        return StageResult(stage="smoke", ok=False, detail="no live server (serve must pass first)", duration_s=0.0)
    try:
        models = httpx.get(server.url + "/v1/models", timeout=30).json()
        served = models["data"][0]["id"]
        reply = httpx.post(
            server.url + "/v1/completions",
            timeout=ctx.settings.timeouts.smoke,
            json={"model": served, "prompt": SMOKE_PROMPT, "max_tokens": 8, "temperature": 0, "logprobs": 1},
        )
        body = reply.json()
        choice = body["choices"][0]
        logprobs = choice["logprobs"]["token_logprobs"]
        finite = all(lp is not None and lp == lp and abs(lp) != float("inf") for lp in logprobs)
        ok = reply.status_code == 200 and body["usage"]["completion_tokens"] > 0 and finite
        detail = (
            f"200 OK, {body['usage']['completion_tokens']} tokens: {choice['text']!r}"
            if ok
            else f"bad completion (status {reply.status_code}, finite logprobs: {finite})"
        )
        text = json.dumps(body)
    except (httpx.HTTPError, KeyError, IndexError, ValueError) as err:
        ok, detail, text = False, f"smoke request failed: {type(err).__name__}: {err}", ""
    log_path.write_text(text + "\n" + detail + "\n")
    return StageResult(
        stage="smoke", ok=ok, detail=detail, duration_s=round(time.monotonic() - started, 2), log_path=str(log_path)
    )


RUNNERS: dict[Stage, Callable[[Recipe, StageContext], StageResult]] = {
    "install": install,
    "import": imports,
    "device": device,
    "load": load,
    "operators": operators,
    "serve": serve,
    "smoke": smoke,
}
# Stages whose result is a running process: a resumed run must redo them.
LIVE_STAGES: tuple[Stage, ...] = ("serve", "smoke")


def run_stage(stage: Stage, recipe: Recipe, ctx: StageContext) -> StageResult:
    return RUNNERS[stage](recipe, ctx)
