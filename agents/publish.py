"""Publish: turn a verified recipe and its eval into a release folder a person can run.

Writes a Hugging Face model card (README.md), a Dockerfile, a FlagScale-style serve.yaml, an env
file, the eval (json, markdown and a PNG chart) and the recipe itself; with the hf engine, its server
script too, so the folder runs as it is. Everything is rendered from a redacted copy of the recipe,
and every text file passes through redact_text once more before it is written. The same inputs give
the same bytes, so publishing a run twice uploads nothing the second time.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import ModelCard, ModelCardData
from pydantic import BaseModel

from fr_agent.core.paths import EVAL_CHART, EVAL_JSON
from fr_agent.core.recipe import Recipe, Scalar
from fr_agent.core.secrets import REDACTED, redact_env, redact_text, redact_value
from fr_agent.evals.render import chart_png, markdown_table
from fr_agent.evals.report import EvalReport

PYTHON = "python"
PORT = 8000
ENV_FILE = "fr-agent.env"
HF_SERVER = "hf_server.py"
ENGINE_NAMES = {"vllm": "vLLM", "hf": "fr-agent's transformers server (the hf engine)"}


class PublishResult(BaseModel):
    out_dir: Path
    files: list[Path]


def publish(
    recipe: Recipe,
    report: EvalReport,
    out_dir: Path,
    *,
    run_id: str,
    chip_description: str = "",
    license: str = "apache-2.0",
) -> PublishResult:
    safe = redacted_recipe(recipe)
    rendered = {
        "README.md": model_card(safe, report, run_id=run_id, chip_description=chip_description, license=license),
        "Dockerfile": dockerfile(safe, run_id),
        "serve.yaml": serve_yaml(safe),
        ENV_FILE: env_file(safe),
        EVAL_JSON: eval_json(safe, report, run_id),
        "eval.md": eval_markdown(safe, report),
        "recipe.json": safe.model_dump_json(indent=2) + "\n",
    }
    if recipe.serve.engine == "hf":
        rendered[HF_SERVER] = resources.files("fr_agent.sandboxes.probes").joinpath(HF_SERVER).read_text()
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [write_file(out_dir / name, text) for name, text in rendered.items()]
    files.append(chart_png(report.summary(), out_dir / EVAL_CHART, title=f"{recipe.model.name} on {recipe.chip}"))
    return PublishResult(out_dir=out_dir, files=files)


def write_file(path: Path, text: str) -> Path:
    path.write_text(redact_text(text), encoding="utf-8")  # last guard: nothing token-shaped leaves
    return path


# --- the recipe as published ------------------------------------------------------------------


def redacted_recipe(recipe: Recipe) -> Recipe:
    """The recipe with secrets replaced: env, engine args and tool-change args alike."""
    data = redact_value("recipe", recipe.model_dump())
    data["env"] = redact_env(recipe.env)
    return Recipe.model_validate(data)


def secret_env_names(recipe: Recipe) -> list[str]:
    return [name for name, value in recipe.env.items() if value == REDACTED]


def public_env(recipe: Recipe) -> dict[str, str]:
    """Env a runnable file may set: a redacted secret would overwrite the user's real one."""
    return {name: value for name, value in recipe.env.items() if value != REDACTED}


def model_source(recipe: Recipe) -> str:
    return recipe.model.repo_id or recipe.model.path or recipe.model.name


def base_model(recipe: Recipe) -> str:
    return recipe.model.repo_id or recipe.model.name


def serve_argv(recipe: Recipe, host: str = "127.0.0.1") -> list[str]:
    argv = recipe.serve_argv(PYTHON, model_source(recipe), PORT)
    # Recipe.serve_argv puts vllm next to the python it is given; a bare "python" has no directory.
    if argv[0] == f"{PYTHON}/vllm":
        argv[0] = "vllm"
    argv[argv.index("--host") + 1] = host
    return argv


def image_tag(recipe: Recipe) -> str:
    def slug(text: str) -> str:
        return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")

    return f"fr-agent/{slug(recipe.model.name)}-{slug(recipe.chip)}"


# --- Dockerfile, serve.yaml, env file ----------------------------------------------------------


def dockerfile(recipe: Recipe, run_id: str) -> str:
    lines = [f"# {recipe.model.name} on {recipe.chip}, built by fr-agent run {run_id}.", f"FROM {recipe.base_image}"]
    env = public_env(recipe)
    if env:  # before pip: the sandbox installs with the recipe env set too
        lines.append("ENV " + " \\\n    ".join(f"{name}={docker_quote(value)}" for name, value in env.items()))
    if recipe.packages:
        requirements = [shlex.quote(p.requirement()) for p in recipe.packages]
        lines.append("RUN python -m pip install --no-cache-dir \\\n    " + " \\\n    ".join(requirements))
    if recipe.removed:  # after install, as the sandbox does, so no dependency brings one back
        lines.append("RUN python -m pip uninstall -y " + " ".join(shlex.quote(name) for name in recipe.removed))
    for name in secret_env_names(recipe):
        lines.append(f"# {name} is a secret and is not baked in: docker run -e {name} ...")
    if recipe.serve.engine == "hf":
        lines += ["WORKDIR /app", f"COPY {HF_SERVER} /app/{HF_SERVER}"]
    lines += [f"EXPOSE {PORT}", "CMD " + json.dumps(serve_argv(recipe, host="0.0.0.0"))]
    return "\n".join(lines) + "\n"


def docker_quote(value: str) -> str:
    # Docker expands $VAR inside ENV values; a literal dollar must be escaped.
    return json.dumps(value).replace("$", "\\$")


def serve_config(recipe: Recipe) -> list[dict[str, Any]]:
    engine_args: dict[str, Scalar] = {
        "model": model_source(recipe),
        "host": "0.0.0.0",
        "port": PORT,
        "dtype": recipe.dtype,
        **recipe.serve.engine_args,
    }
    return [
        {
            "serve_id": f"{recipe.serve.engine}_model",
            "engine": recipe.serve.engine,
            "engine_args": engine_args,
            "env": public_env(recipe),
        }
    ]


def serve_yaml(recipe: Recipe) -> str:
    header = "".join(
        f"# {name} is a secret and is not written here: export it before serving.\n"
        for name in secret_env_names(recipe)
    )
    return header + yaml.safe_dump(serve_config(recipe), sort_keys=False, default_flow_style=False)


def env_file(recipe: Recipe) -> str:
    """Shell-sourceable (set -a; . ./fr-agent.env); secrets stay commented out so they clobber nothing."""
    lines = []
    for name, value in recipe.env.items():
        if value == REDACTED:
            lines.append(f"# {name} is a secret: export it yourself.\n# {name}={REDACTED}")
        else:
            lines.append(f"{name}={shlex.quote(value)}")
    return "\n".join(lines) + "\n" if lines else ""


# --- eval ---------------------------------------------------------------------------------------


def gate_line(report: EvalReport) -> str:
    verdict = "passed" if report.gate_passed else "failed"
    limits = f"threshold {report.threshold_pct:g}%"
    if report.perf_ratio is not None:
        limits += f", throughput at least {report.min_perf_ratio:g}x the reference's"
    return f"**Gate {verdict}**: {report.gate_reason} ({limits})."


def eval_table(report: EvalReport) -> str:
    return markdown_table(report.summary())


def eval_section(report: EvalReport, chart: bool = False) -> str:
    parts = [
        f"Reference: {report.reference_backend}. Migrated: {report.migrated_backend}. "
        f"Samples: {report.samples}. Eval time: {report.duration_s:g} s.",
        eval_table(report),
    ]
    if chart:
        parts.append(f"![percent difference per metric and serving throughput, reference vs migrated]({EVAL_CHART})")
    parts.append(gate_line(report))
    if report.outcomes:
        parts.append(
            "Suites without rows:\n\n" + "\n".join(f"- {o.suite}: {o.status}, {o.reason}" for o in report.outcomes)
        )
    return "\n\n".join(parts)


def eval_markdown(recipe: Recipe, report: EvalReport) -> str:
    return f"# Eval: {recipe.model.name} on {recipe.chip}\n\n{eval_section(report, chart=True)}\n"


def eval_json(recipe: Recipe, report: EvalReport, run_id: str) -> str:
    data = {**report.summary(), "run_id": run_id, "chip": recipe.chip, "model": base_model(recipe)}
    return json.dumps(finite_or_none(data), indent=2) + "\n"


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN or Infinity; a non-finite number is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite_or_none(item) for item in value]
    return value


# --- model card ---------------------------------------------------------------------------------

SECTIONS = ("Introduction", "Eval: reference vs migrated", "How to run", "Recipe", "Technical overview", "Licence")


def model_card(recipe: Recipe, report: EvalReport, *, run_id: str, chip_description: str, license: str) -> str:
    tags = list(dict.fromkeys(["fr-agent", recipe.chip, recipe.serve.engine, recipe.dtype]))
    data = ModelCardData(
        base_model=base_model(recipe),
        license=license,
        tags=tags,
        pipeline_tag="text-generation",
        fr_agent={
            "run_id": run_id,
            "chip": recipe.chip,
            "engine": recipe.serve.engine,
            "dtype": recipe.dtype,
            "gate_passed": report.gate_passed,
        },
    )
    bodies = [
        introduction(recipe, report, run_id, chip_description),
        eval_section(report, chart=True),
        how_to_run(recipe),
        recipe_section(recipe),
        technical_overview(recipe, report),
        licence_section(recipe, license),
    ]
    sections = [
        f"# {recipe.model.name} on {recipe.chip}",
        *(f"## {title}\n\n{body}" for title, body in zip(SECTIONS, bodies)),
    ]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n"))


def engine_name(recipe: Recipe) -> str:
    return ENGINE_NAMES.get(recipe.serve.engine, recipe.serve.engine)


def introduction(recipe: Recipe, report: EvalReport, run_id: str, chip_description: str) -> str:
    chip = f"{recipe.chip} ({chip_description})" if chip_description else recipe.chip
    verdict = "passed" if report.gate_passed else "did not pass"
    fixes = len(recipe.changes)
    repaired = (
        "The base recipe ran as it was: no fix was needed."
        if not fixes
        else f"{fixes} fix{'es' if fixes > 1 else ''} to the base recipe {'were' if fixes > 1 else 'was'} found and "
        "verified automatically (see the technical overview)."
    )
    return (
        f"`{base_model(recipe)}` migrated to {chip} by fr-agent run `{run_id}`. It runs in the image "
        f"`{recipe.base_image}` on torch device `{recipe.torch_device}` in {recipe.dtype}, served by "
        f"{engine_name(recipe)} behind an OpenAI-compatible API. The weights are the original ones, unchanged. "
        f"{repaired} Against the reference ({report.reference_backend}) it {verdict} the eval gate: "
        f"{report.gate_reason}."
    )


def technical_overview(recipe: Recipe, report: EvalReport) -> str:
    return "\n\n".join(
        [
            "fr-agent analysed the model and the chip profile, pre-checked the machine, then ran the migration in a "
            "sandbox stage by stage (install, import, device, load, operators, serve, smoke). Each failure was "
            "diagnosed from its log and repaired with one typed tool call; each fix was verified on its own before "
            "the failed stage ran again. The passing recipe was then evaluated against the reference.",
            "Fixes applied, in order:\n\n" + fixes_section(recipe),
            "How the eval measures (both sides get the same token ids, items and scoring, through the same "
            "OpenAI-compatible client):\n\n" + "\n".join(f"- {line}" for line in METHOD),
        ]
    )


METHOD = [
    "`greedy_token_agreement`: share of the reference's first greedy tokens the migrated model reproduces "
    "before it first diverges, over the bundled prompts (the reference is 1 by definition).",
    "`top5_containment` (k in the name): past those tokens the two may diverge, so the reference's continuation "
    "is fed to both sides and each of its tokens counts when it is in that side's top-k.",
    "`teacher_forced_top1_agreement` and `heldout_perplexity`: next-token argmax agreement and perplexity on "
    "held-out text.",
    "`task_*_accuracy`: bundled multiple-choice sets (knowledge, reasoning, math, code; CC0, authored for "
    "fr-agent), each choice scored by its log-likelihood; `task_answer_agreement`: share of items where both "
    "sides pick the same choice.",
    "`throughput_cN` and `latency_p50_cN`: completion tokens per second and median request time with N "
    "requests in flight, both sides on the same machine, taking turns.",
    "Gate: the average percent difference over the accuracy rows is under the threshold, every number is "
    "finite, no suite crashed, and throughput (geometric mean over the levels) is at least the configured "
    "multiple of the reference's.",
]


def how_to_run(recipe: Recipe) -> str:
    parts = [
        "With Docker, from this folder:",
        code("shell", f"docker build -t {image_tag(recipe)} .\n{shlex.join(docker_run_argv(recipe))}"),
    ]
    if not recipe.torch_device.startswith(("cpu", "cuda")):
        parts.append(
            f"The container also needs the {recipe.chip} devices, passed the way `{recipe.base_image}` "
            "documents for its chips."
        )
    parts += [
        f"Without Docker, in an environment with the recipe's packages, load `{ENV_FILE}` and start the server:",
        code("shell", f"set -a; . ./{ENV_FILE}; set +a\n{shlex.join(serve_argv(recipe))}"),
        env_needed(recipe),
        "Query it (OpenAI-compatible API):",
        code("shell", shlex.join(curl_argv(recipe))),
        "FlagScale-style serve config (`serve.yaml`; engine args are the engine's own flags, with underscores):",
        code("yaml", serve_yaml(recipe).rstrip()),
    ]
    return "\n\n".join(parts)


def docker_run_argv(recipe: Recipe) -> list[str]:
    argv = ["docker", "run", "--rm", "-p", f"{PORT}:{PORT}", "--ipc=host"]
    if recipe.torch_device.startswith("cuda"):
        argv += ["--gpus", "all"]
    for name in secret_env_names(recipe):
        argv += ["-e", name]  # passed through from the caller's environment
    if not recipe.model.repo_id and recipe.model.path:
        argv += ["-v", f"{recipe.model.path}:{recipe.model.path}:ro"]
    return [*argv, image_tag(recipe)]


def curl_argv(recipe: Recipe) -> list[str]:
    served = str(recipe.serve.engine_args.get("served_model_name", model_source(recipe)))
    body = json.dumps({"model": served, "prompt": "The capital of France is", "max_tokens": 16})
    return ["curl", f"http://127.0.0.1:{PORT}/v1/completions", "-H", "Content-Type: application/json", "-d", body]


def env_needed(recipe: Recipe) -> str:
    if not recipe.env:
        return "The server needs no extra environment variables."
    lines = ["Environment variables the server needs:", ""]
    for name, value in recipe.env.items():
        shown = "secret, not published: set it yourself" if value == REDACTED else f"`{value}`"
        lines.append(f"- `{name}`: {shown}")
    return "\n".join(lines)


def recipe_section(recipe: Recipe) -> str:
    ops = recipe.operators
    return "\n\n".join(
        [
            f"Base image `{recipe.base_image}`, Python {recipe.python}, torch device `{recipe.torch_device}`, "
            f"dtype {recipe.dtype}, engine {recipe.serve.engine}"
            + (f" ({recipe.serve.entrypoint})." if recipe.serve.engine == "vllm" else "."),
            "Packages (pinned):\n\n" + bullets(p.requirement() for p in recipe.packages),
            "Removed packages:\n\n" + bullets(recipe.removed),
            "Environment:\n\n" + bullets(f"{name}={value}" for name, value in recipe.env.items()),
            "Operator plan:\n\n"
            + bullets(
                [
                    f"backend: {ops.backend}",
                    f"ops: {', '.join(ops.ops) or 'none'}",
                    f"disabled: {', '.join(ops.disabled) or 'none'}",
                    f"forced to torch reference: {', '.join(ops.reference) or 'none'}",
                    f"cast: {', '.join(f'{op} in {dtype}' for op, dtype in ops.cast.items()) or 'none'}",
                ],
                code_span=False,
            ),
            "Engine args:\n\n" + bullets(f"{key}: {value}" for key, value in sorted(recipe.serve.engine_args.items())),
            "The full recipe is in `recipe.json`.",
        ]
    )


def fixes_section(recipe: Recipe) -> str:
    if not recipe.changes:
        return "None: the base recipe ran as it was."
    return "\n".join(
        f"{index}. `{change.tool}` `{json.dumps(change.args, sort_keys=True)}`: {change.summary}"
        for index, change in enumerate(recipe.changes, 1)
    )


def licence_section(recipe: Recipe, license: str) -> str:
    return (
        f"Published under `{license}`. The weights are those of `{base_model(recipe)}`, unchanged; "
        "its own licence terms apply to them. The recipe, Dockerfile, serve config and eval files were "
        "generated by fr-agent (Apache-2.0); the bundled eval sets are CC0-1.0."
    )


def bullets(items, code_span: bool = True) -> str:
    items = list(items)
    if not items:
        return "none"
    return "\n".join(f"- `{item}`" if code_span else f"- {item}" for item in items)


def code(language: str, body: str) -> str:
    return f"```{language}\n{body}\n```"
