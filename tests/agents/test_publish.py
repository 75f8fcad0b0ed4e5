import json
import shlex

import pytest
import yaml
from huggingface_hub import ModelCard
from release_data import HF, PASSWORD, SK, make_recipe, make_report

from fr_agent.agents.publish import SECTIONS, publish
from fr_agent.core.recipe import Recipe

FILES = ["README.md", "Dockerfile", "serve.yaml", "fr-agent.env", "eval.json", "eval.md", "recipe.json", "eval.png"]


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    recipe = make_recipe()
    result = publish(
        recipe,
        make_report(),
        tmp_path_factory.mktemp("release") / "out",
        run_id="run-123",
        chip_description="x86 host CPU",
    )
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
    assert card.data.fr_agent == {
        "run_id": "run-123",
        "chip": "cpu-x86",
        "engine": "vllm",
        "dtype": "bfloat16",
        "gate_passed": True,
    }
    assert "run-123" in card.text and "x86 host CPU" in card.text
    headings = [line[3:] for line in card.text.splitlines() if line.startswith("## ")]
    assert headings == list(SECTIONS)


def test_license_kwarg(tmp_path):
    result = publish(make_recipe(), make_report(), tmp_path, run_id="r", license="mit")
    assert ModelCard.load(result.out_dir / "README.md").data.license == "mit"


def test_eval_table_has_the_numbers(published):
    _, result = published
    for name in ["README.md", "eval.md"]:
        text = read(result, name)
        assert "| greedy_token_agreement | 1 | 0.97 | 0.03 | 3.00% |" in text
        assert "| perplexity | 8.1 | 8.3 | 0.2 | 2.47% |" in text
        assert "| throughput_c1 (tok/s) | 300 | 410 | 110 | 36.67% |" in text
        assert "Gate passed" in text and make_report().gate_reason in text
        assert "throughput ratio 1.37x >= 1x" in text
        assert "- lm-eval: skipped, lm-evaluation-harness is not installed" in text
        assert "![" in text and "](eval.png)" in text


def test_eval_json(published):
    _, result = published
    data = json.loads(read(result, "eval.json"))
    assert data["run_id"] == "run-123" and data["chip"] == "cpu-x86"
    assert data["model"] == "Qwen/Qwen2.5-0.5B-Instruct" and data["gate_passed"] is True
    assert [m["migrated"] for m in data["metrics"]] == [0.97, 8.3, 0.25, 410.0, 0.08]
    assert data["perf_ratio"] == pytest.approx(410 / 300) and data["min_perf_ratio"] == 1.0
    assert [m["kind"] for m in data["metrics"]] == ["accuracy", "accuracy", "accuracy", "throughput", "latency"]


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
        if path.suffix == ".png":
            assert HF.encode() not in path.read_bytes()
            continue
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


def test_chart_is_a_png_and_publishing_again_gives_the_same_bytes(tmp_path):
    first = publish(make_recipe(), make_report(), tmp_path / "a", run_id="r")
    second = publish(make_recipe(), make_report(), tmp_path / "b", run_id="r")
    assert (first.out_dir / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for path in first.files:
        assert path.read_bytes() == (second.out_dir / path.name).read_bytes(), path.name


def test_hf_engine_release_carries_its_server(tmp_path):
    recipe = make_recipe(engine="hf")
    result = publish(recipe, make_report(), tmp_path, run_id="r")
    assert (tmp_path / "hf_server.py").read_text().startswith('"""The `hf` engine')
    docker = read(result, "Dockerfile")
    assert "COPY hf_server.py /app/hf_server.py" in docker
    cmd = json.loads(next(line for line in docker.splitlines() if line.startswith("CMD "))[4:])
    assert cmd[:3] == ["python", "hf_server.py", "Qwen/Qwen2.5-0.5B-Instruct"]
    assert "--dtype" in cmd and cmd[cmd.index("--dtype") + 1] == "bfloat16"
    assert yaml.safe_load(read(result, "serve.yaml"))[0]["engine"] == "hf"
    assert "served by fr-agent's transformers server" in read(result, "README.md")
