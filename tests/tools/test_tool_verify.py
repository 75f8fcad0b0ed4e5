"""Each tool's verify() checks its own effect inside a real sandbox, and fails when the effect is absent."""

from __future__ import annotations

import pytest

from fr_agent.core.config import Settings
from fr_agent.core.recipe import ModelRef, OperatorPlan, PackagePin, Recipe
from fr_agent.sandboxes.local import LocalSandbox
from fr_agent.tools import TOOLS
from tests.sandboxes.conftest import build_wheel


@pytest.fixture(scope="module")
def sandbox(fr_home, tmp_path_factory) -> LocalSandbox:
    box = LocalSandbox(tmp_path_factory.mktemp("verify-box"), fr_home / "cache", fr_home / "hf")
    recipe = base_recipe()
    assert box.prepare(recipe).ok and box.sync_packages(recipe, log_name="base").ok
    return box


def base_recipe() -> Recipe:
    return Recipe(
        model=ModelRef(name="m"),
        chip="cpu",
        base_image="img",
        dtype="float32",
        packages=[PackagePin(name="torch", version="2.13.0"), PackagePin(name="triton", version="3.9.0")],
        operators=OperatorPlan(backend="kernels", ops=["rms_norm", "silu_and_mul", "softmax"]),
    )


def applied(name: str, recipe: Recipe, raw: dict):
    tool = TOOLS[name]
    args = tool.validate(raw)
    return tool, args, tool.apply(recipe, args)


def test_install_dependency_verifies_install_and_removal(sandbox):
    settings = Settings()
    tool, args, recipe = applied("install_dependency", base_recipe(), {"package": "six", "version": "1.16.0"})
    result = tool.verify(sandbox, recipe, args, settings)
    assert result.ok and "six 1.16.0 installed; imports six" in result.detail
    tool, args, recipe = applied("install_dependency", recipe, {"package": "six", "action": "remove"})
    assert tool.verify(sandbox, recipe, args, settings).ok


@pytest.fixture(scope="module")
def wheel_box(fr_home, tmp_path_factory) -> LocalSandbox:
    """A bare sandbox whose installs also resolve from a wheel dir holding a sentencepiece-like wheel (its
    top_level.txt lists module paths, as sentencepiece 0.2.3's does) and one whose import needs a missing
    dependency."""
    wheels = tmp_path_factory.mktemp("wheels")
    build_wheel(
        wheels,
        "fr-spm-like",
        "0.2.3",
        {
            "fr_spm_like/__init__.py": "from fr_spm_like._version import __version__\n",
            "fr_spm_like/_version.py": "__version__ = '0.2.3'\n",
            "fr_spm_like-0.2.3.dist-info/top_level.txt": "fr_spm_like\nfr_spm_like/__init__\nfr_spm_like/_version\n",
        },
    )
    build_wheel(wheels, "fr-needs-dep", "1.0", {"fr_needs_dep/__init__.py": "import fr_absent_dependency\n"})
    box = LocalSandbox(
        tmp_path_factory.mktemp("wheel-box"), fr_home / "cache", fr_home / "hf", find_links=[str(wheels)]
    )
    assert box.prepare(bare_recipe()).ok
    return box


def bare_recipe() -> Recipe:
    return Recipe(model=ModelRef(name="m"), chip="cpu", base_image="img", packages=[])


def test_install_dependency_verifies_a_package_whose_top_level_lists_paths(wheel_box):
    tool, args, recipe = applied("install_dependency", bare_recipe(), {"package": "fr-spm-like", "version": "0.2.3"})
    tool.admit(args, recipe, wheel_box)  # found in the wheel dir, so no index lookup
    result = tool.verify(wheel_box, recipe, args, Settings())
    assert result.ok and result.detail == "fr-spm-like 0.2.3 installed; imports fr_spm_like"


def test_install_dependency_names_a_failure_in_another_package(wheel_box):
    """Installed as asked, but its import needs a module nobody installed: failed, saying which and why."""
    tool, args, recipe = applied("install_dependency", bare_recipe(), {"package": "fr-needs-dep"})
    result = tool.verify(wheel_box, recipe, args, Settings())
    assert not result.ok
    assert result.detail.startswith(
        "fr-needs-dep 1.0 is installed as asked, but importing fr_needs_dep fails in another "
        "package, fr_absent_dependency: ModuleNotFoundError: No module named "
        "'fr_absent_dependency'"
    )


def test_set_env_var_is_visible_inside(sandbox):
    tool, args, recipe = applied("set_env_var", base_recipe(), {"name": "VLLM_CPU_KVCACHE_SPACE", "value": "2"})
    assert tool.verify(sandbox, recipe, args, Settings()).ok
    assert not tool.verify(sandbox, base_recipe(), args, Settings()).ok  # without the change it is not there


def test_patch_operator_repairs_a_triton_kernel_without_a_driver(sandbox):
    """On a CPU without TRITON_INTERPRET, our Triton rms_norm cannot launch; the reference fixes it."""
    tool, args, recipe = applied("patch_operator", base_recipe(), {"op": "rms_norm", "strategy": "reference"})
    broken = tool.verify(sandbox, base_recipe(), args, Settings())
    assert not broken.ok
    log = open(broken.log_path).read()
    assert "0 active drivers" in log
    from fr_agent.playbooks.diagnose import diagnose_text

    diagnosis = diagnose_text(log, "operators")
    assert diagnosis.playbook == "triton-no-driver" and diagnosis.tool_calls[0].args == {
        "op": "rms_norm",
        "strategy": "reference",
    }
    fixed = tool.verify(sandbox, recipe, args, Settings())
    assert fixed.ok and "reference" in fixed.detail
