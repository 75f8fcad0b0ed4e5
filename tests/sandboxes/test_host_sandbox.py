"""`--sandbox host`: a venv over the host interpreter's packages, pins moved to what the host has, nothing
installed when the host satisfies every pin (a GPU machine with no package index)."""

from __future__ import annotations

import importlib.metadata
import sys

from fr_agent.core.catalog import load_catalog
from fr_agent.core.checks import Check, Precheck
from fr_agent.core.recipe import ModelRef, PackagePin, Recipe
from fr_agent.sandboxes.local import HostSandbox


def test_host_sandbox_uses_the_hosts_stack(tmp_path):
    sandbox = HostSandbox(tmp_path / "sb", tmp_path / "cache", tmp_path / "hf")
    torch_version = importlib.metadata.version("torch")
    recipe = Recipe(
        model=ModelRef(name="m", path="/m"),
        chip="nvidia",
        base_image="img",
        python="3.0",
        packages=[PackagePin(name="torch", version="0.0.1"), PackagePin(name="PyYAML")],
    )
    adopted, note = sandbox.adopt_host_stack(recipe)
    assert adopted.package("torch").version == torch_version
    assert adopted.python == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"torch {torch_version} (recipe had 0.0.1)" in note and "python" in note
    # the venv imports the host's packages (torch is not installed into it)
    probe = sandbox.run(
        [sandbox.python, "-c", "import torch, sys; print(torch.__file__, sys.prefix)"],
        adopted,
        timeout=120,
        log_name="probe",
    )
    assert probe.ok and str(sandbox.venv) in probe.output and "site-packages/torch" in probe.output
    result = sandbox.sync_packages(adopted, log_name="install")
    assert result.ok and result.argv == ["host: nothing to install"]
    assert sandbox.installed(adopted)["torch"] == torch_version
    assert sandbox.adopt_host_stack(adopted) == (adopted, None)  # already the host's


def test_host_sandbox_rejudges_python_and_index_checks(tmp_path):
    sandbox = HostSandbox(tmp_path / "sb", tmp_path / "cache", tmp_path / "hf")
    recipe = Recipe(model=ModelRef(name="m", path="/m"), chip="nvidia", base_image="img", python="3.0", packages=[])
    result = Precheck(
        checks=[
            Check(name="python", ok=False, detail="python 3.11 (recipe wants 3.0)"),
            Check(name="package index", ok=False, detail="PyPI unreachable"),
            Check(name="device", ok=False, detail="no device"),
        ]
    )
    checked = sandbox.precheck(result, recipe, load_catalog().chip("cpu"), params_b=0.001)
    assert [c.ok for c in checked.checks] == [True, True, False]  # a missing device still fails
