"""The sandbox base class declares every member its callers use: a backend lacking a required one cannot be
constructed, the optional ones have documented defaults, and no caller probes a sandbox with getattr/hasattr."""

from __future__ import annotations

import ast
import importlib.util
import inspect
from pathlib import Path

import pytest

from fr_agent.core.catalog import load_catalog
from fr_agent.core.checks import Check, Precheck
from fr_agent.core.recipe import ModelRef, Recipe
from fr_agent.sandboxes.base import Sandbox
from fr_agent.sandboxes.docker import DockerSandbox
from fr_agent.sandboxes.local import HostSandbox, LocalSandbox
from tests.sandboxes.fake_sandbox import FakeSandbox

REQUIRED = {"python", "probe", "prepare", "sync_packages", "installed", "run", "start"}
RECIPE = Recipe(model=ModelRef(name="m", path="/m"), chip="cpu", base_image="img", packages=[])


def test_the_required_members_are_abstract():
    assert Sandbox.__abstractmethods__ == REQUIRED


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_a_backend_lacking_a_required_member_cannot_be_constructed(missing, tmp_path):
    members = {name: value for name, value in vars(FakeSandbox).items() if name != missing}
    partial = type("Partial", (Sandbox,), members)
    with pytest.raises(TypeError, match=missing):
        partial(tmp_path)


def test_the_defaults_do_nothing(tmp_path):
    sandbox = FakeSandbox(tmp_path / "sb")
    assert sandbox.workdir.is_dir() and sandbox.logs.is_dir()
    assert list(sandbox.find_links) == []
    assert sandbox.stop_running() == 0
    assert sandbox.adopt_host_stack(RECIPE) == (RECIPE, None)
    assert sandbox.snapshot("before fix 1") is None and sandbox.rollback("before fix 1") is None
    host = Precheck(checks=[Check(name="python", ok=False, detail="python 3.11 (recipe wants 3.0)")])
    assert sandbox.precheck(host, RECIPE, load_catalog().chip("cpu"), params_b=0.001) is host


@pytest.mark.parametrize("backend", [LocalSandbox, HostSandbox, DockerSandbox])
def test_every_backend_is_a_complete_sandbox(backend):
    assert issubclass(backend, Sandbox) and not inspect.isabstract(backend) and isinstance(backend.name, str)


def sandbox_reference(node: ast.expr) -> bool:
    """`sandbox`, or `<anything>.sandbox` except a settings section (`settings.sandbox.docker` is config)."""
    if isinstance(node, ast.Name):
        return node.id == "sandbox"
    if isinstance(node, ast.Attribute) and node.attr == "sandbox":
        owner = node.value
        return not (
            isinstance(owner, ast.Name)
            and owner.id == "settings"
            or isinstance(owner, ast.Attribute)
            and owner.attr == "settings"
        )
    return False


def project_sources() -> list[Path]:
    roots = [Path(importlib.util.find_spec("fr_agent").origin).parent, Path(__file__).parents[1]]
    for layer in ("kernels", "sandboxes", "tools", "evals", "playbooks", "agents"):
        roots.append(Path(next(iter(importlib.util.find_spec(f"fr_agent.{layer}").submodule_search_locations))))
    return sorted({path for root in roots for path in root.rglob("*.py")})


def test_no_caller_probes_a_sandbox():
    probes = []
    for path in project_sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr")
                and node.args
                and sandbox_reference(node.args[0])
            ):
                probes.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
    assert not probes, "declare the member on fr_agent.sandboxes.base.Sandbox instead:\n" + "\n".join(probes)
