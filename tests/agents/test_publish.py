import json
import shlex

import pytest
import yaml
from huggingface_hub import ModelCard

from fr_agent.agents.publish import publish
from fr_agent.evals.report import EvalReport, MetricRow
from fr_agent.recipe import ModelRef, PackagePin, Recipe, RecipeChange, ServePlan

HF = "hf_abcdefghijklmnopqrstuvwxyz123456"
SK = "sk-abcdefghijklmnopqrstuvwxyz0123"
PASSWORD = "hunter2-not-token-shaped"
FILES = ["README.md", "Dockerfile", "serve.yaml", "fr-agent.env", "eval.json", "eval.md", "recipe.json"]


def make_recipe(entrypoint="api_server") -> Recipe:
    return Recipe(
        model=ModelRef(name="Qwen2.5-0.5B-Instruct", repo_id="Qwen/Qwen2.5-0.5B-Instruct"),
        chip="cpu-x86",
        base_image="vendor/vllm-cpu:0.32.0",
        dtype="bfloat16",
        packages=[PackagePin(name="vllm", version="0.32.0"), PackagePin(name="transformers", version="5.19.0")],
        removed=["flash-attn", "xformers"],
        env={"HF_TOKEN": HF, "VLLM_CPU_KVCACHE_SPACE": "4", "OMP_NUM_THREADS": "8", "GREETING": "a b$c",
             "DB_PASSWORD": PASSWORD},
        serve=ServePlan(entrypoint=entrypoint, engine_args={"max_model_len": 2048, "enforce_eager": True}),
        changes=[
            RecipeChange(tool="set_env", args={"name": "VLLM_CPU_KVCACHE_SPACE", "value": "4"},
                         summary="KV cache did not fit the default"),
            RecipeChange(tool="set_env", args={"name": "DB_PASSWORD", "value": PASSWORD}, summary="database login"),
            RecipeChange(tool="set_engine_arg", args={"key": "max_model_len", "value": 2048, "note": SK},
                         summary="shorter context to fit memory"),
        ],
    )


def make_report() -> EvalReport:
    return EvalReport(
        metrics=[MetricRow(name="greedy_token_agreement", reference=1.0, migrated=0.97),
                 MetricRow(name="perplexity", reference=8.1, migrated=8.3, higher_is_better=False)],
        reference_backend="transformers float32 on host cpu",
        migrated_backend="vllm-cpu 0.32.0 bfloat16 in sandbox",
        samples=32,
    )


@pytest.fixture
def published(tmp_path):
    recipe = make_recipe()
    result = publish(recipe, make_report(), tmp_path / "out", run_id="run-123", chip_description="x86 host CPU")
    return recipe, result


def read(result, name):
    return (result.out_dir / name).read_text(encoding="utf-8")


def test_every_file_written(published):
    _, result = published
    assert sorted(p.name for p in result.files) == sorted(FILES)
    assert all(p.is_file() and p.stat().st_size > 0 for p in result.files)


def test_model_card_metadata(published):
    _, result = published
    card = ModelCard.load(result.out_dir / "README.md")
    assert card.data.base_model == "Qwen/Qwen2.5-0.5B-Instruct"
    assert card.data.license == "apache-2.0"
    assert card.data.pipeline_tag == "text-generation"
    assert {"fr-agent", "cpu-x86", "vllm"} <= set(card.data.tags)
    assert "run-123" in card.text and "x86 host CPU" in card.text


def test_license_kwarg(tmp_path):
    result = publish(make_recipe(), make_report(), tmp_path, run_id="r", license="mit")
    assert ModelCard.load(result.out_dir / "README.md").data.license == "mit"


def test_eval_table_has_the_numbers(published):
    _, result = published
    for name in ["README.md", "eval.md"]:
        text = read(result, name)
        assert "| greedy_token_agreement | 1 | 0.97 | 0.03 | 3.00% |" in text
        assert "| perplexity | 8.1 | 8.3 | 0.2 | 2.47% |" in text
        assert "Gate passed" in text and make_report().gate_reason in text


def test_eval_json(published):
    _, result = published
    data = json.loads(read(result, "eval.json"))
    assert data["run_id"] == "run-123" and data["chip"] == "cpu-x86"
    assert data["model"] == "Qwen/Qwen2.5-0.5B-Instruct" and data["gate_passed"] is True
    assert [m["migrated"] for m in data["metrics"]] == [0.97, 8.3]


def test_readme_serve_command(published):
    recipe, result = published
    argv = recipe.serve_argv("python", "Qwen/Qwen2.5-0.5B-Instruct", 8000)
    assert shlex.join(argv) in read(result, "README.md")


def test_readme_serve_command_cli_entrypoint(tmp_path):
    recipe = make_recipe(entrypoint="cli")
    result = publish(recipe, make_report(), tmp_path, run_id="r")
    argv = recipe.serve_argv("python", "Qwen/Qwen2.5-0.5B-Instruct", 8000)
    # vllm is found on PATH: a bare "python" gives Recipe.serve_argv no directory to put it in.
    assert shlex.join(["vllm", *argv[1:]]) in read(result, "README.md")
    assert 'CMD ["vllm", "serve"' in read(result, "Dockerfile")


def test_dockerfile(published):
    recipe, result = published
    lines = read(result, "Dockerfile").splitlines()
    assert [line for line in lines if line.startswith("FROM ")] == [f"FROM {recipe.base_image}"]
    assert "RUN python -m pip uninstall -y flash-attn xformers" in lines
    text = "\n".join(lines)
    assert "vllm==0.32.0" in text and "transformers==5.19.0" in text
    assert 'VLLM_CPU_KVCACHE_SPACE="4"' in text and 'GREETING="a b\\$c"' in text
    cmd = json.loads(next(line for line in lines if line.startswith("CMD "))[4:])
    assert cmd[:3] == ["python", "-m", "vllm.entrypoints.openai.api_server"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"


def test_serve_yaml(published):
    recipe, result = published
    config = yaml.safe_load(read(result, "serve.yaml"))
    assert isinstance(config, list) and len(config) == 1
    item = config[0]
    assert item["serve_id"] == "vllm_model" and item["engine"] == "vllm"
    args = item["engine_args"]
    assert args["dtype"] == recipe.dtype
    assert args["model"] == "Qwen/Qwen2.5-0.5B-Instruct" and args["port"] == 8000 and args["host"] == "0.0.0.0"
    assert args["max_model_len"] == 2048 and args["enforce_eager"] is True
    assert item["env"]["OMP_NUM_THREADS"] == "8"


def test_env_file_is_shell_sourceable(published):
    _, result = published
    text = read(result, "fr-agent.env")
    assert "OMP_NUM_THREADS=8" in text.splitlines()
    assert "GREETING='a b$c'" in text.splitlines()
    assert "# HF_TOKEN=<redacted>" in text


def test_recipe_json_round_trips_redacted(published):
    _, result = published
    recipe = Recipe.model_validate_json(read(result, "recipe.json"))
    assert recipe.env["HF_TOKEN"] == "<redacted>" and recipe.env["OMP_NUM_THREADS"] == "8"


def test_no_secret_in_any_file(published):
    _, result = published
    for path in result.out_dir.iterdir():
        text = path.read_text(encoding="utf-8")
        assert HF not in text and SK not in text and PASSWORD not in text, path.name


def test_readme_lists_secrets_as_redacted(published):
    _, result = published
    text = read(result, "README.md")
    assert "- `HF_TOKEN=<redacted>`" in text and "- `DB_PASSWORD=<redacted>`" in text
    assert '"key": "max_model_len"' in text  # tool args stay readable


def test_no_placeholder_text(published):
    _, result = published
    text = read(result, "README.md")
    for marker in ["More Information Needed", "TODO", "{{", "<your", "XXX"]:
        assert marker not in text
