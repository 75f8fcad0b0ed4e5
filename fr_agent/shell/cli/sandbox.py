"""`fr-agent sandbox ...`: the Docker side of things. `setup` builds the sandbox images a chip needs,
`engine` starts a private Docker engine where none runs, `status` shows both, `prune` drops run images."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Annotated, Optional

import docker
import typer

from fr_agent.core.catalog import load_catalog
from fr_agent.core.config import Settings
from fr_agent.core.errors import FrAgentError
from fr_agent.sandboxes.docker_engine import connect, engine_paths, engine_url, private_data_root, start_private_engine
from fr_agent.sandboxes.docker_images import build_sandbox_image
from fr_agent.shell.cli.common import HomeOpt, console, fail, settings_from

sandbox_app = typer.Typer(no_args_is_help=True, help="Docker sandboxes: build images, start an engine, clean up.")

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="settings YAML (sandbox.docker: host, limits)")]
StopOpt = Annotated[bool, typer.Option("--stop", help="stop the private engine instead")]
AllOpt = Annotated[bool, typer.Option("--all", help="also the chips' sandbox images")]


def connected(config: Path | None, home: Path | None) -> tuple[Settings, docker.DockerClient]:
    """The settings and a client of the engine they name; no engine is a one-line error."""
    settings = settings_from(config, home)
    try:
        return settings, connect(settings.home, settings.sandbox.docker.host)
    except FrAgentError as err:
        fail(str(err))


@sandbox_app.command()
def setup(
    chip: Annotated[list[str], typer.Option("--chip", help="chip profile(s) to build for (repeatable)")] = ["cpu"],  # noqa: B006 (typer reads the default; never mutated)
    catalog: Annotated[Optional[Path], typer.Option(help="directory with chips.yaml / models.yaml")] = None,
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Build the sandbox image of each chip (its base image first: pulled, or for cpu bootstrapped here)."""
    try:
        settings = settings_from(config, home)
        profiles = [load_catalog(str(catalog) if catalog else None).chip(name) for name in chip]
        client = connect(settings.home, settings.sandbox.docker.host, timeout=600)
        for profile in profiles:
            started = time.monotonic()
            log = settings.home / "docker" / f"build-{profile.name}.log"
            tag = build_sandbox_image(client, profile, settings.cache_dir, log)
            size = client.images.get(tag).attrs["Size"] / 2**20
            console.print(
                f"[green]ok[/green] {profile.name}: {tag} ({size:.0f} MiB, FROM {profile.base_image}) "
                f"in {time.monotonic() - started:.1f}s; log {log}",
                soft_wrap=True,
            )
    except FrAgentError as err:
        fail(str(err))


@sandbox_app.command()
def engine(stop: StopOpt = False, config: ConfigOpt = None, home: HomeOpt = None) -> None:
    """Start a private Docker engine (dockerd with its own data root and socket under FR_AGENT_HOME, no
    iptables, no bridge); `--sandbox docker` finds it without DOCKER_HOST."""
    settings = settings_from(config, home)
    paths = engine_paths(private_data_root(settings.home))
    if stop:
        try:
            pid = int(paths.pidfile.read_text())
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            fail(f"no private engine running for {settings.home}")
        console.print(f"stopping dockerd (pid {pid})")
        return
    try:
        started = time.monotonic()
        private = start_private_engine(paths.data_root)
    except FrAgentError as err:
        fail(str(err))
    state = "already running" if private.process is None else f"started in {time.monotonic() - started:.1f}s"
    console.print(f"dockerd {state} on {private.url} (data root {paths.data_root}, log {paths.log})")
    console.print(f"other docker clients: export DOCKER_HOST={private.url}")


@sandbox_app.command()
def status(config: ConfigOpt = None, home: HomeOpt = None) -> None:
    """The engine in use, the sandbox images and the runs' images."""
    settings, client = connected(config, home)
    version = client.version()
    url = engine_url(settings.home, settings.sandbox.docker.host)
    console.print(f"engine {url} (Docker {version.get('Version')}, API {version.get('ApiVersion')})")
    # Run images are committed on top of sandbox images and inherit their label.
    tags = {
        tag: image.attrs["Size"] for image in client.images.list(filters={"label": "fr-agent"}) for tag in image.tags
    }
    for tag, size in sorted(tags.items()):
        console.print(f"  {tag:<64} {size / 2**20:8.0f} MiB")


@sandbox_app.command()
def prune(everything: AllOpt = False, config: ConfigOpt = None, home: HomeOpt = None) -> None:
    """Remove the runs' images (their environments and snapshots); the sandbox images stay unless --all."""
    _, client = connected(config, home)
    containers = client.containers.list(all=True, filters={"label": "fr-agent.run"})  # left by killed runs
    for container in containers:
        container.remove(force=True)
    tags = [
        tag
        for image in client.images.list(filters={"label": "fr-agent"})
        for tag in image.tags
        if everything or tag.startswith("fr-agent-run/")
    ]
    for tag in tags:
        client.images.remove(tag)
    freed = client.images.prune(filters={"dangling": True}).get("SpaceReclaimed") or 0  # layers only they used
    console.print(f"removed {len(containers)} containers and {len(tags)} image tags; {freed / 2**30:.1f} GiB freed")
