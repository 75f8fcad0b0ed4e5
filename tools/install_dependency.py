"""install_dependency: install, upgrade, downgrade or remove one package in the sandbox.

Names are checked before anything is installed: a planner (an LLM in particular) can hallucinate a
plausible name that an attacker has registered, or one that does not exist at all. A name must exist on
the package index, must not be a known squat or a near-miss of a popular distribution (the shipped list of
the most-downloaded ones, data/popular_distributions.txt), and, when the call names the module it is
for, must be a distribution that provides that module (the shipped mapping, data/install_names.json, or
the same name); verify then reads the installed metadata to confirm it.
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Literal

import httpx
from pydantic import field_validator

from fr_agent.core.config import Settings
from fr_agent.core.errors import ToolRejected
from fr_agent.core.recipe import PackageName, PackagePin, Recipe, Version, normalize_name
from fr_agent.sandboxes.base import Sandbox, probe_verdict
from fr_agent.tools.base import Tool, ToolArgs, Verification, change, run_check, verdict_from

INDEX_URL = os.environ.get("FR_AGENT_PACKAGE_INDEX", "https://pypi.org/pypi")
DATA = Path(__file__).parent / "data"
# The near-miss check compares a name with this many of the most downloaded; any name of the whole list
# is itself popular and passes.
NEAR_MISS_TARGETS = 5000
MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")


class InstallDependencyArgs(ToolArgs):
    package: PackageName
    version: Version | None = None
    action: Literal["install", "upgrade", "downgrade", "remove"] = "install"
    module: str | None = None  # the import name this install is for (`No module named 'X'`), to be confirmed

    @field_validator("module")
    @classmethod
    def _module(cls, v: str | None) -> str | None:
        if v is not None and (len(v) > 128 or not MODULE_NAME.match(v)):
            raise ValueError(f"{v!r} is not a module name")
        return v


@cache
def popular() -> tuple[str, ...]:
    """Normalized names of the most-downloaded distributions, most downloaded first."""
    lines = (DATA / "popular_distributions.txt").read_text().splitlines()
    return tuple(line for line in lines if line and not line.startswith("#"))


@cache
def install_names() -> dict:
    return json.loads((DATA / "install_names.json").read_text())


def edit_distance(a: str, b: str, limit: int) -> int:
    """Damerau-Levenshtein distance (adjacent transpositions count one), or limit + 1 once it is larger."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    before, row = None, list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            current[j] = min(row[j] + 1, current[j - 1] + 1, row[j - 1] + (ca != cb))
            if before is not None and i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], before[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        before, row = row, current
    return row[-1]


def only_digits_differ(a: str, b: str) -> bool:
    """cu12 -> cu13 after a shared family prefix (nvidia-cuda-runtime-): one family's builds, not a typo."""
    return len(a) == len(b) and all(x == y or (x.isdigit() and y.isdigit()) for x, y in zip(a, b, strict=True))


def near_miss(name: str) -> tuple[str, int] | None:
    """The popular distribution `name` looks like a typo of, and how many edits away, if `name` is not
    popular itself."""
    key = normalize_name(name)
    names = popular()
    if key in names:
        return None
    for target in names[:NEAR_MISS_TARGETS]:
        # A shared family prefix (python-, django-, nvidia-) is not part of the typo: compare what follows it.
        shared = os.path.commonprefix([key, target]).rpartition("-")[0]
        mine, theirs = key[len(shared) :], target[len(shared) :]
        limit = 2 if len(mine) >= 8 else 1
        if (edits := edit_distance(mine, theirs, limit)) <= limit and not (shared and only_digits_differ(mine, theirs)):
            return target, edits
    return None


def squat_reason(name: str) -> str | None:
    key = normalize_name(name)
    meant = {normalize_name(k): v for k, v in install_names()["squatted"].items()}.get(key)
    if meant:
        return f"{name!r} is a known squatted or hallucinated name, not the package meant; install {meant}"
    if miss := near_miss(name):
        target, edits = miss
        return (
            f"{name!r} is {edits} edit{'s' if edits > 1 else ''} from the popular package {target!r} "
            f"and not popular itself (a likely typosquat); install {target}"
        )
    return None


def providers(module: str) -> list[str]:
    """Distributions that provide `module`, from the shipped mapping (the longest dotted prefix that has
    one), else the one of the same name."""
    mapping = install_names()["modules"]
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if (prefix := ".".join(parts[:end])) in mapping:
            return mapping[prefix]
    return [parts[0].replace("_", "-")]


def provides_reason(name: str, module: str) -> str | None:
    candidates = providers(module)
    if normalize_name(name) in {normalize_name(c) for c in candidates}:
        return None
    return f"{name!r} is not known to provide module {module!r}; it is provided by {' or '.join(candidates)}"


def in_wheel_dirs(name: str, version: str | None, dirs: list[str]) -> bool:
    stem = normalize_name(name).replace("-", "_")
    for directory in dirs:
        path = Path(directory.removeprefix("file://"))
        if path.is_dir() and any(
            wheel.name.lower().startswith(f"{stem}-{version or ''}".lower()) for wheel in path.glob("*.whl")
        ):
            return True
    return False


def release_exists(name: str, version: str | None) -> str | None:
    """None if the index lists this package (and version); else the reason it does not."""
    try:
        reply = httpx.get(f"{INDEX_URL}/{name}/json", timeout=15, follow_redirects=True)
    except httpx.HTTPError as err:
        return f"cannot reach the package index to check {name!r}: {type(err).__name__}"
    if reply.status_code == 404:
        return f"package {name!r} does not exist on the package index"
    if reply.status_code != 200:
        return f"package index answered {reply.status_code} for {name!r}"
    releases = reply.json().get("releases", {})
    if version and not any(v == version or v.split("+")[0] == version.split("+")[0] for v in releases):
        return f"package {name!r} has no release {version!r} on the package index"
    return None


def admit(args: InstallDependencyArgs, recipe: Recipe, sandbox: Sandbox) -> None:
    if args.action == "remove":
        return
    if args.module and (reason := provides_reason(args.package, args.module)):
        raise ToolRejected(reason)
    if in_wheel_dirs(args.package, args.version, list(sandbox.find_links)):
        return
    reason = squat_reason(args.package) or release_exists(args.package, args.version)
    if reason:
        raise ToolRejected(reason)


def apply(recipe: Recipe, args: InstallDependencyArgs) -> Recipe:
    key = normalize_name(args.package)
    packages = [p for p in recipe.packages if normalize_name(p.name) != key]
    removed = [r for r in recipe.removed if normalize_name(r) != key]
    if args.action == "remove":
        removed.append(args.package)
        summary = f"remove {args.package}"
    else:
        packages.append(PackagePin(name=args.package, version=args.version))
        summary = f"{args.action} {args.package}" + (f"=={args.version}" if args.version else "")
    return recipe.with_change(change("install_dependency", args, summary), packages=packages, removed=removed)


def verify(sandbox: Sandbox, recipe: Recipe, args: InstallDependencyArgs, settings: Settings) -> Verification:
    synced = sandbox.sync_packages(recipe, log_name="verify-install_dependency")
    if not synced.ok:
        return Verification(ok=False, detail=f"installer failed (exit {synced.returncode})", log_path=synced.log_path)
    argv = [sandbox.python, sandbox.probe("package_check.py"), args.package]
    if args.action == "remove":
        argv.append("--absent")
    elif args.version:
        argv.append(args.version)
    result = sandbox.run(argv, recipe, timeout=settings.timeouts.verify, log_name="verify-package")
    verification = verdict_from(result, lambda v: v.get("detail", "ok"))
    verdict = probe_verdict(result)
    if verification.ok and args.module and args.action != "remove":
        return provides_module(sandbox, recipe, args, settings)
    if verification.ok or "failing_package" not in verdict:
        return verification
    # Installed as asked, but an import breaks in another package (a missing dependency, a torch built for
    # another device): still failed, worded so the planner reads the real error, not "this fix is wrong".
    detail = (
        f"{args.package} {verdict['version']} is installed as asked, but importing {verdict['failed_import']} "
        f"fails in another package, {verdict['failing_package']}: {verdict['error_line']} "
        f"(that package is missing or broken; the install itself did what it was asked)"
    )
    return verification.model_copy(update={"detail": detail})


# Which installed distributions own the module's top-level package, read from their metadata (RECORD).
PROVIDERS_CHECK = """
import importlib.metadata, json, re, sys
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
owners = importlib.metadata.packages_distributions().get(sys.argv[2].split(".")[0], [])
print(json.dumps({"ok": norm(sys.argv[1]) in {norm(o) for o in owners}, "owners": owners,
                  "error": f"{sys.argv[1]} does not provide module {sys.argv[2]} (its owners: {owners or 'none'})"}))
"""


def provides_module(sandbox: Sandbox, recipe: Recipe, args: InstallDependencyArgs, settings: Settings) -> Verification:
    argv = [sandbox.python, "-c", PROVIDERS_CHECK, args.package, str(args.module)]
    return run_check(
        sandbox, recipe, settings, argv, "verify-module-owner", lambda v: f"{args.package} provides {args.module}"
    )


TOOL = Tool(
    name="install_dependency",
    description=(
        "Install, upgrade, downgrade or remove one Python package in the sandbox (name checked on the index and "
        "against typosquats; give `module` when the install is for a missing import)."
    ),
    args_model=InstallDependencyArgs,
    apply=apply,
    verify=verify,
    admit=admit,
    rerun_from=lambda args: "install",
)
