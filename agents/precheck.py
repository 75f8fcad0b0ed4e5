"""Pre-check: can this machine run the attempt at all? Python, package index, compiler, the chip's
devices (its CLI, device nodes, torch build), disk, shared memory, and the weights. A missing device
fails here, with what it would take, before any install."""

from __future__ import annotations

import glob
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from fr_agent.agents.analyse import Analysis, local_snapshot
from fr_agent.core.catalog import ChipProfile
from fr_agent.core.checks import Check, Precheck, disk_needed_gb
from fr_agent.core.config import Settings


def check_python(recipe_python: str) -> Check:
    have = f"{sys.version_info.major}.{sys.version_info.minor}"
    return Check(name="python", ok=have == recipe_python, detail=f"python {have} (recipe wants {recipe_python})")


def check_package_index(find_links: Sequence[str]) -> Check:
    local = [link for link in find_links if Path(link.removeprefix("file://")).is_dir()]
    try:
        reachable = httpx.head("https://pypi.org/simple/pip/", timeout=10, follow_redirects=True).status_code < 500
    except httpx.HTTPError:
        reachable = False
    ok = reachable or bool(local)
    detail = ("PyPI reachable" if reachable else "PyPI unreachable") + (
        f"; wheel dirs: {', '.join(local)}" if local else ""
    )
    return Check(name="package index", ok=ok, detail=detail)


def check_compiler() -> Check:
    compiler = shutil.which("cc") or shutil.which("gcc")
    return Check(
        name="compiler",
        ok=compiler is not None,
        detail=f"C compiler {compiler} (Triton and torch.compile build kernels)"
        if compiler
        else "no C compiler on PATH: torch.compile / Triton cannot build kernels (install gcc)",
    )


def check_device(chip: ChipProfile) -> Check:
    if chip.torch_device == "cpu":
        return Check(name="device", ok=True, detail=f"cpu: {os.cpu_count()} cores")
    found = []
    if chip.detection.cli and shutil.which(chip.detection.cli):
        found.append(f"`{chip.detection.cli}` on PATH")
    nodes = [n for pattern in chip.detection.device_nodes for n in glob.glob(pattern)]
    if nodes:
        found.append(f"device nodes {', '.join(sorted(nodes)[:4])}")
    if found:
        return Check(name="device", ok=True, detail=f"{chip.vendor}: " + "; ".join(found))
    need = [
        f"the {chip.vendor} driver with `{chip.detection.cli}`" if chip.detection.cli else f"the {chip.vendor} driver",
        f"device nodes {' '.join(chip.detection.device_nodes)}" if chip.detection.device_nodes else None,
        f"{chip.torch.package}=={chip.torch.version} ({chip.torch.source})",
        f"{chip.visible_devices_env} to pick cards" if chip.visible_devices_env else None,
        f"base image {chip.base_image}",
    ]
    return Check(
        name="device",
        ok=False,
        detail=f"no {chip.name} device visible: `{chip.detection.cli}` not found and no "
        f"{' '.join(chip.detection.device_nodes) or 'device nodes'}; needs " + ", ".join(n for n in need if n),
    )


def check_disk(home: Path, needed_gb: float) -> Check:
    home.mkdir(parents=True, exist_ok=True)
    free_gb = shutil.disk_usage(home).free / 2**30
    return Check(
        name="disk", ok=free_gb >= needed_gb, detail=f"{free_gb:.0f} GiB free at {home}, ~{needed_gb:.0f} GiB needed"
    )


def check_shm(min_gb: float = 0.25) -> Check:
    try:
        size_gb = shutil.disk_usage("/dev/shm").total / 2**30
    except OSError:
        return Check(name="shm", ok=False, detail="/dev/shm missing: vLLM's workers exchange tensors through it")
    return Check(name="shm", ok=size_gb >= min_gb, detail=f"/dev/shm {size_gb:.1f} GiB")


def check_weights(analysis: Analysis) -> tuple[Check, str | None]:
    if analysis.model.path:
        return Check(name="weights", ok=True, detail=f"local snapshot {analysis.model.path}"), analysis.model.path
    snapshot = local_snapshot(analysis.model.repo_id) if analysis.model.repo_id else None
    if snapshot:
        return Check(name="weights", ok=True, detail=f"snapshot {snapshot}"), str(snapshot)
    return Check(
        name="weights",
        ok=False,
        detail=f"weights of {analysis.model.repo_id} are not in the HF cache and the "
        "hub is not reachable (set HF_HOME to a cache that has them, or pass a local model directory)",
    ), None


def precheck(analysis: Analysis, chip: ChipProfile, settings: Settings, find_links: Sequence[str]) -> Precheck:
    device = check_device(chip)
    checks = [
        check_python(analysis.recipe.python),
        device,
        check_package_index(find_links),
        check_compiler(),
        check_disk(settings.home, disk_needed_gb(analysis.facts.params_b)),
        check_shm(),
    ]
    path = None
    if device.ok:  # weights are only worth fetching where the chip is
        weights, path = check_weights(analysis)
        checks.append(weights)
    return Precheck(checks=checks, model_path=path)
