"""set_env_var: set one environment variable for every process the sandbox starts.

`recipe.env` reaches every process of the sandbox, the installer (uv) included (sandboxes/local.py:
`_uv_env`), so a variable that changes where packages, models or certificates come from would undo the
name checks of install_dependency: those are refused. Loader and interpreter search paths are real fixes
on vendor stacks (an Ascend or CUDA library dir missing from LD_LIBRARY_PATH), so they are admitted only
with absolute directories that exist in the sandbox and that the run cannot write, and are shown to a
person for approval.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path, PurePosixPath

from pydantic import field_validator

from fr_agent.core.config import Settings
from fr_agent.core.errors import ToolRejected
from fr_agent.core.recipe import Recipe
from fr_agent.sandboxes.base import Sandbox, probe_verdict
from fr_agent.tools.base import Tool, ToolArgs, Verification, change, run_check

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Variables that would hand a planner arbitrary code execution or break the sandbox's isolation.
FORBIDDEN = {
    "HOME",
    "VIRTUAL_ENV",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONUSERBASE",
    "PYTHONBREAKPOINT",
    "PYTHONINSPECT",
    "BASH_ENV",
    "ENV",
    "LD_PRELOAD",
    "LD_AUDIT",
    "SHELL",
    "PROMPT_COMMAND",
    "NETRC",
}
# Name patterns (matched on the upper-cased name) that change the installer or where downloads and
# certificates come from, each with the reason given back.
REFUSED = [
    (r"UV_\w*", "configures uv, the installer (recipe.env reaches its environment)"),
    (r"PIP_\w*|PYPI_\w*|CONDA_\w*|MAMBA_\w*|POETRY_\w*", "configures a package installer or its index"),
    (r"XDG_CONFIG_\w*", "moves the installer's config files (uv.toml, pip.conf)"),
    (r"GIT_\w*", "configures git, which the installer runs for git dependencies"),
    (r"\w*_PROXY", "routes downloads through a proxy"),
    (r"SSL_CERT_\w*|\w*_CA_BUNDLE|\w*_CA_CERTS?|\w*CAINFO", "replaces the certificates downloads are checked with"),
    (r"\w*ENDPOINT\w*|\w*_URLS?|\w*_MIRROR\w*|\w*INDEX_URL\w*", "points downloads at another source"),
]
# Search paths: each entry an existing absolute directory the run cannot write.
SEARCH_PATHS = {
    "PATH",
    "PYTHONPATH",
    "LD_LIBRARY_PATH",
    "LIBRARY_PATH",
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "PKG_CONFIG_PATH",
}
# Vendor toolkit locations and the programs they run (ASCEND_OPP_PATH, CUDA_HOME, TRITON_PTXAS_PATH): each
# entry an existing absolute path the run cannot write. Caches, dumps and logs are meant to be writable.
TOOLKIT_PATH = re.compile(
    r"(?!\w*(?:CACHE|DUMP|LOG|TMP))"
    r"(?:(?:ASCEND|ATB|CANN|TOOLCHAIN|CUDA|CUDNN|NCCL|ROCM|HIP|HSA|MUSA|NEUWARE|MLU|CNCL|MACA|METAX|COREX|IXRT|XPU"
    r"|KUNLUN|TRITON|NVCC|ONEAPI|HABANA|GAUDI)\w*_(?:PATH|HOME|ROOT|DIR|LIB|BIN))|CC|CXX|CUDAHOSTCXX"
)
SANDBOXES_ON_THIS_MACHINE = ("local", "host")
# Entries that exist in the sandbox, checked there (a container's filesystem is not this machine's).
EXISTS_CHECK = """
import json, os, sys
missing = [p for p in sys.argv[1:] if not os.path.exists(p)]
print(json.dumps({"ok": not missing, "missing": missing, "error": f"{', '.join(missing)} not found in the sandbox"}))
"""


def refusal(name: str) -> str | None:
    upper = name.upper()
    if upper in FORBIDDEN:
        return f"{name} may not be set by a repair tool"
    for pattern, why in REFUSED:
        if re.fullmatch(pattern, upper):
            return f"{name} may not be set by a repair tool: it {why}"
    return None


def path_checked(name: str) -> bool:
    upper = name.upper()
    return upper in SEARCH_PATHS or upper.endswith("_LIBRARY_PATH") or bool(TOOLKIT_PATH.fullmatch(upper))


def writable_roots(sandbox: Sandbox) -> list[Path]:
    """Where the run writes: its folder (the sandbox's root lies in it) and the temp dirs."""
    temps = {tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"}
    return [sandbox.root.resolve().parent, *(Path(t).resolve() for t in sorted(temps))]


def entry_problem(name: str, entry: str, sandbox: Sandbox) -> str | None:
    """Why one path entry is not acceptable, judged without touching the filesystem except on this machine."""
    path = PurePosixPath(entry)
    if not entry or not path.is_absolute():
        return f"{name} entry {entry!r} is not an absolute path"
    if ".." in path.parts or "//" in entry or entry != os.path.normpath(entry):
        return f"{name} entry {entry!r} is not a normalized path"
    on_host = sandbox.name in SANDBOXES_ON_THIS_MACHINE
    resolved = Path(os.path.realpath(entry)) if on_host else Path(entry)
    for root in writable_roots(sandbox):
        if resolved == root or resolved.is_relative_to(root):
            return f"{name} entry {entry!r} is writable by the run (under {root})"
    if on_host:
        if not resolved.exists():
            return f"{name} entry {entry!r} does not exist"
        if name.upper() in SEARCH_PATHS and not resolved.is_dir():
            return f"{name} entry {entry!r} is not a directory"
    return None


def admit(args: SetEnvVarArgs, recipe: Recipe, sandbox: Sandbox) -> None:
    if not path_checked(args.name):
        return
    entries = args.value.split(":")
    for entry in entries:
        if problem := entry_problem(args.name, entry, sandbox):
            raise ToolRejected(problem)
    if sandbox.name not in SANDBOXES_ON_THIS_MACHINE:
        result = sandbox.run([sandbox.python, "-c", EXISTS_CHECK, *entries], recipe, timeout=60, log_name="admit-env")
        verdict = probe_verdict(result)
        if not (result.ok and verdict.get("ok")):
            raise ToolRejected(f"{args.name}: {verdict.get('error') or 'cannot check its paths in the sandbox'}")


def needs_approval(args: SetEnvVarArgs, recipe: Recipe) -> str | None:
    if path_checked(args.name) and recipe.env.get(args.name) != args.value:
        return f"{args.name} changes where programs and libraries are loaded from"
    return None


class SetEnvVarArgs(ToolArgs):
    name: str
    value: str

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not ENV_NAME.match(v):
            raise ValueError(f"{v!r} is not a valid environment variable name")
        if reason := refusal(v):
            raise ValueError(reason)
        return v

    @field_validator("value")
    @classmethod
    def _value(cls, v: str) -> str:
        if len(v) > 4096 or any(ch in v for ch in "\n\r\x00"):
            raise ValueError("value must be one line of at most 4096 characters")
        return v


def apply(recipe: Recipe, args: SetEnvVarArgs) -> Recipe:
    return recipe.with_change(
        change("set_env_var", args, f"set {args.name}={args.value}"), env={**recipe.env, args.name: args.value}
    )


def verify(sandbox: Sandbox, recipe: Recipe, args: SetEnvVarArgs, settings: Settings) -> Verification:
    argv = [sandbox.python, sandbox.probe("env_check.py"), args.name, args.value]
    return run_check(
        sandbox, recipe, settings, argv, "verify-set_env_var", lambda v: f"{args.name} visible inside the sandbox"
    )


TOOL = Tool(
    name="set_env_var",
    description=(
        "Set one environment variable for all processes in the sandbox (not installer, index, proxy or "
        "certificate variables; search paths only with existing read-only directories)."
    ),
    args_model=SetEnvVarArgs,
    apply=apply,
    verify=verify,
    admit=admit,
    needs_approval=needs_approval,
    rerun_from=lambda args: "import",
)
