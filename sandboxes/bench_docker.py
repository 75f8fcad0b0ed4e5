"""Benchmark: what a docker sandbox costs per step against the local sandbox, measured in the same run.

    python -m fr_agent.sandboxes.bench_docker [--repeats 7] [--home DIR]

Both sandboxes get the same recipe (torch from the wheel on disk, via the shared uv cache), then run
the same commands, interleaved so machine load hits both alike: a bare `python -c pass`, `import
torch`, and one HTTP request to a server each sandbox started (the docker one through its relay).
Prints medians and the docker/local ratio of each, plus the install (for docker: install + commit).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from fr_agent.core.catalog import load_catalog
from fr_agent.core.config import load_settings
from fr_agent.core.ports import free_port
from fr_agent.core.recipe import ModelRef, PackagePin, Recipe
from fr_agent.sandboxes.docker import DockerSandbox
from fr_agent.sandboxes.local import LocalSandbox


def timed(fn) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started


def wait_up(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--home", type=Path, default=None, help="FR_AGENT_HOME (uv cache, engine)")
    args = parser.parse_args()
    settings = load_settings(None, home=args.home.absolute() if args.home else None)
    chip = load_catalog(None).chip("cpu")
    recipe = Recipe(
        model=ModelRef(name="bench"),
        chip="cpu",
        base_image=chip.base_image,
        packages=[PackagePin(name=chip.torch.package, version=chip.torch.version)],
    )
    with tempfile.TemporaryDirectory(prefix="fr-bench-") as tmp:
        local = LocalSandbox(Path(tmp) / "local", settings.cache_dir, settings.hf_home)
        docker = DockerSandbox(
            Path(tmp) / "docker",
            "bench",
            chip,
            settings.cache_dir,
            settings.hf_home,
            settings=settings.sandbox.docker,
            home=settings.home,
        )
        build = timed(docker.sandbox_image)  # not compared: a one-off per chip, cached
        print(f"sandbox image ready in {build:.1f}s ({docker.sandbox_image()})")
        rows: dict[str, dict[str, list[float]]] = {}

        def record(name: str, box, fn) -> None:
            rows.setdefault(name, {"local": [], "docker": []})[box.name].append(timed(fn))

        for box in (local, docker):
            record(
                "install torch (docker: + commit)",
                box,
                lambda b=box: b.prepare(recipe).ok and b.sync_packages(recipe, "bench-install"),
            )
        commands = {"python -c pass": ["-c", "pass"], "import torch": ["-c", "import torch"]}
        for _ in range(args.repeats):
            for box in (local, docker):
                for name, argv in commands.items():
                    record(
                        name, box, lambda b=box, a=argv: b.run([b.python, *a], recipe, timeout=120, log_name="bench")
                    )
        for box in (local, docker):
            port = free_port()
            server = box.start(
                [box.python, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                recipe,
                port=port,
                log_name="bench-serve",
            )
            try:
                wait_up(server.url)
                for _ in range(args.repeats * 5):
                    record("HTTP GET to the served process", box, lambda u=server.url: httpx.get(u, timeout=10))
            finally:
                server.stop()
        docker.remove_images()
    print(f"{'step':<36} {'local s':>9} {'docker s':>9} {'docker/local':>13}   (medians, {args.repeats} repeats)")
    for name, by_box in rows.items():
        lo, do = statistics.median(by_box["local"]), statistics.median(by_box["docker"])
        print(f"{name:<36} {lo:9.3f} {do:9.3f} {do / lo:12.2f}x")


if __name__ == "__main__":
    main()
