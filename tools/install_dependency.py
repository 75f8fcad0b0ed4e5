"""install_dependency: install, upgrade, downgrade or remove one package in the sandbox.

Names are checked against the package index before anything is installed: a planner (an LLM in
particular) can hallucinate a plausible name that an attacker has registered, or one that does not
exist at all.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import httpx

from fr_agent.core.config import Settings
from fr_agent.core.errors import ToolRejected
from fr_agent.core.recipe import PackageName, PackagePin, Recipe, Version, normalize_name
from fr_agent.sandboxes.base import Sandbox, probe_verdict
from fr_agent.tools.base import Tool, ToolArgs, Verification, change, verdict_from

INDEX_URL = os.environ.get("FR_AGENT_PACKAGE_INDEX", "https://pypi.org/pypi")


class InstallDependencyArgs(ToolArgs):
    package: PackageName
    version: Version | None = None
    action: Literal["install", "upgrade", "downgrade", "remove"] = "install"


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
    if in_wheel_dirs(args.package, args.version, list(sandbox.find_links)):
        return
    reason = release_exists(args.package, args.version)
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


TOOL = Tool(
    name="install_dependency",
    description="Install, upgrade, downgrade or remove one Python package in the sandbox (name checked on the index).",
    args_model=InstallDependencyArgs,
    apply=apply,
    verify=verify,
    admit=admit,
    rerun_from=lambda args: "install",
)
