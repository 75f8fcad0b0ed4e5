"""The main job in containers: `fr-agent run ... --sandbox docker` against a real engine, through the CLI.

The engine is `hf` (transformers serving itself) with a small eval, so the run fits in CI. The model's
own code imports a package the recipe lacks, a real and common failure (transformers refuses to load
remote code whose imports are missing). The scripted planner first proposes a package that breaks the
environment: it installs fine, then its start-up hook kills every Python process. Its check fails, the
loop rolls the container back to the snapshot taken before the fix, and the next proposal (the missing
package) repairs the run. On the local sandbox the broken package would stay installed and every later
stage would die: the run passing is the proof that the rollback took the package away.
"""

from __future__ import annotations

import json
import secrets
import shutil
from importlib import resources
from pathlib import Path

import pytest
import yaml

from fr_agent.core.events import (
    NoteEvent,
    PrecheckEvent,
    ToolCallEvent,
    VerificationEvent,
    first,
    of_kind,
    read_events,
)
from tests.cli_helpers import fr_agent, replay_reproduces
from tests.sandboxes.conftest import build_wheel

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# Small, except the task suites: the card linter blocks a card with a zero score, which the tiny model
# gets on a one-item category; 20 per category it scores above zero on each.
SMALL_EVAL = {
    "prompts": 2,
    "max_new_tokens": 4,
    "topk_tokens": 4,
    "heldout_tokens": 32,
    "tasks_per_category": 20,
    "concurrency": [],
}
MODELING = '''"""A tiny Llama whose code needs a package of its own, as many hub models' code does."""
import fr_test_accel  # noqa: F401

from transformers import LlamaForCausalLM


class TinyRemoteForCausalLM(LlamaForCausalLM):
    pass
'''


def remote_code_model(tiny_model: Path, hf_home: Path, tmp: Path) -> str:
    """The tiny Llama with `auto_map` pointing at its own modeling file, registered in the HF cache."""
    from fr_agent.evals.tiny_model import register_in_hf_cache

    model = tmp / "tiny-remote"
    model.mkdir()
    for item in tiny_model.iterdir():
        shutil.copy(item.resolve(), model / item.name)
    (model / "modeling_tiny_remote.py").write_text(MODELING)
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_tiny_remote.TinyRemoteForCausalLM"}
    (model / "config.json").write_text(json.dumps(config, indent=2))
    repo_id = "fr-agent/tiny-remote-code"
    register_in_hf_cache(model, repo_id, hf_home)
    return repo_id


def test_main_job_in_docker_rolls_back_a_fix_that_breaks_the_environment(
    fr_home, tiny_model, docker_client, cpu_image, breaking_wheels, tmp_path
):
    build_wheel(breaking_wheels, "fr-test-accel", "1.0", {"fr_test_accel/__init__.py": ""})
    repo_id = remote_code_model(tiny_model, fr_home / "hf", tmp_path)
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "chips.yaml").write_text(resources.files("fr_agent.core.catalog").joinpath("chips.yaml").read_text())
    models = yaml.safe_load(resources.files("fr_agent.core.catalog").joinpath("models.yaml").read_text())
    models["tiny-remote-code"] = {
        **{k: v for k, v in models["tiny-llama"].items() if k != "fixture"},
        "repo_id": repo_id,
        "trust_remote_code": True,
    }
    (catalog / "models.yaml").write_text(yaml.safe_dump(models))
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"eval": SMALL_EVAL, "sandbox": {"find_links": [str(breaking_wheels)]}}))
    script = tmp_path / "planner.yaml"
    script.write_text(
        json.dumps(
            [
                [{"tool": "install_dependency", "args": {"package": "fr-env-breaker", "version": "1.0"}}],
                [{"tool": "install_dependency", "args": {"package": "fr-test-accel", "version": "1.0"}}],
            ]
        )
    )

    run_id = f"docker-e2e-{secrets.token_hex(3)}"
    try:
        check_the_run(run_id, fr_home, docker_client, catalog, settings, script)
    finally:  # the run's and its replay's images (environments and snapshots) are a GB or more
        for image in docker_client.images.list(name=f"fr-agent-run/{run_id}-*"):
            for tag in image.tags:
                docker_client.images.remove(tag)


def check_the_run(run_id, fr_home, docker_client, catalog, settings, script):
    result = fr_agent(
        "run",
        "tiny-remote-code",
        "--chip",
        "cpu",
        "--engine",
        "hf",
        "--sandbox",
        "docker",
        "--catalog",
        str(catalog),
        "--config",
        str(settings),
        "--planner",
        f"script:{script}",
        "--yes",
        "--run-id",
        run_id,
        "--json",
        home=fr_home,
        timeout=900,
        env={"HF_HOME": str(fr_home / "hf")},
    )
    summary = json.loads(result.stdout or "{}")
    assert result.returncode == 0, (result.stderr[-3000:], summary.get("reason"), summary.get("stages"))
    assert summary["status"] == "passed" and summary["publish_dir"]
    assert [(f["tool"], f["args"]["package"]) for f in summary["fixes"]] == [("install_dependency", "fr-test-accel")]
    load = [s for s in summary["stages"] if s["stage"] == "load"]
    assert [s["ok"] for s in load] == [False, True]
    assert (
        "requires the following packages that were not found in your environment: fr_test_accel"
        in Path(load[0]["log_path"]).read_text()
    )

    events = read_events(Path(summary["transcript"]))
    verifications = [(e.args["package"], e.ok) for e in of_kind(events, VerificationEvent)]
    assert verifications == [("fr-env-breaker", False), ("fr-test-accel", True)]
    notes = [e.message for e in of_kind(events, NoteEvent)]
    snapshot = next(n for n in notes if n.startswith("sandbox snapshot ")).removeprefix("sandbox snapshot ")
    assert f"sandbox rolled back to {snapshot}" in notes
    precheck = first(events, PrecheckEvent)
    assert any(c.name == "python headers" and c.ok and c.detail.startswith("in container:") for c in precheck.checks)

    # The run's environment is an image: the rolled-back package is not in it, the fix is.
    images = [tag for image in docker_client.images.list(name=f"fr-agent-run/{run_id}-*") for tag in image.tags]
    assert any(tag.endswith(":work") for tag in images) and any(":snap-" in tag for tag in images)
    listing = docker_client.containers.run(
        next(t for t in images if t.endswith(":work")),
        [
            "/opt/venv/bin/python",
            "-c",
            "import importlib.metadata as m; print(sorted(d.metadata['Name'] for d in m.distributions()))",
        ],
        remove=True,
        network_mode="none",
    ).decode()
    assert "fr-test-accel" in listing and "fr-env-breaker" not in listing

    # Replay in containers too: the same graph, the kept fix re-applied, no planner, every stage and the gate pass.
    replay_events = replay_reproduces(
        run_id, "--sandbox", "docker", "--config", str(settings), home=fr_home, hf_home=fr_home / "hf"
    )
    assert [(e.status, e.args["package"]) for e in of_kind(replay_events, ToolCallEvent)] == [
        ("replayed", "fr-test-accel")
    ]
    assert not of_kind(replay_events, VerificationEvent)
