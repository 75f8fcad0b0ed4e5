"""The images a Docker sandbox starts from: the chip's base image, and the sandbox image on top of it.

- Base image: the chip profile's `base_image`. Vendor images are pulled; the cpu chip's base is built
  here, since no registry may be reachable: `debootstrap --variant=minbase --include=python3` and
  `docker import`. The root filesystem is kept as a tarball in the cache, so a fresh engine imports it in
  seconds instead of bootstrapping again.
- Sandbox image: `dockerfiles/<family>.Dockerfile` built FROM the base (uv, the CA bundle, an empty venv at
  /opt/venv, and for cpu a compiler and Python headers). Its tag is a digest of everything that goes
  into it, so a changed Dockerfile or base builds a new one and an unchanged one is reused.
A run's own environment (its packages) is committed on top of the sandbox image by the sandbox.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import certifi
import docker
from docker.errors import APIError, DockerException, ImageNotFound
from uv import find_uv_bin

from fr_agent.core.catalog import ChipProfile
from fr_agent.core.errors import FrAgentError

DOCKERFILES = Path(__file__).parent / "dockerfiles"
VENV_PYTHON = "/opt/venv/bin/python"
LABEL = "fr-agent"


@dataclass(frozen=True)
class LocalBase:
    """A base image built on this machine instead of pulled."""

    suite: str
    include: tuple[str, ...]
    mirror: str = "http://deb.debian.org/debian"


LOCAL_BASES = {"fr-agent/cpu-base:bookworm": LocalBase(suite="bookworm", include=("python3",))}


def dockerfile_for(chip: ChipProfile) -> Path:
    own = DOCKERFILES / f"{chip.vendor}.Dockerfile"
    return own if own.exists() else DOCKERFILES / "vendor.Dockerfile"


def host_ca_bundle() -> Path:
    """The CA bundle this host trusts (it may include a TLS-intercepting proxy's CA), else certifi's."""
    for candidate in (os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return Path(certifi.where())


def image_exists(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
        return True
    except ImageNotFound:
        return False


def split_ref(ref: str) -> tuple[str, str]:
    repo, _, tag = ref.rpartition(":")
    return (repo, tag) if repo and "/" not in tag else (ref, "latest")


def bootstrap_rootfs(base: LocalBase, tarball: Path, log_path: Path) -> float:
    """debootstrap a minimal root into a tarball; returns the seconds it took."""
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise FrAgentError("building the cpu base image needs debootstrap: apt-get install -y debootstrap")
    started = time.monotonic()
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tarball.parent, prefix="rootfs-") as root, log_path.open("ab") as log:
        argv = [debootstrap, "--variant=minbase", f"--include={','.join(base.include)}", base.suite, root, base.mirror]
        log.write(("$ " + " ".join(argv) + "\n").encode())
        log.flush()
        if subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode != 0:
            raise FrAgentError(f"debootstrap of {base.suite} failed; see {log_path}")
        partial = tarball.with_suffix(".partial")
        if (
            subprocess.run(
                ["tar", "-C", root, "--numeric-owner", "-cf", str(partial), "."], stdout=log, stderr=subprocess.STDOUT
            ).returncode
            != 0
        ):
            raise FrAgentError(f"cannot pack the {base.suite} root into {partial}; see {log_path}")
        partial.replace(tarball)
    return time.monotonic() - started


def ensure_base_image(client: docker.DockerClient, chip: ChipProfile, cache_dir: Path, log_path: Path) -> str:
    """The chip's base image, present in the engine: found, imported from the cached root, built, or pulled."""
    ref = chip.base_image
    if image_exists(client, ref):
        return ref
    local = LOCAL_BASES.get(ref)
    if local is None:
        repo, tag = split_ref(ref)
        try:
            client.images.pull(repo, tag=tag)
        except DockerException as err:
            raise FrAgentError(
                f"base image {ref} of chip {chip.name} is not in the engine and cannot be pulled "
                f"({str(err).splitlines()[0][:200]}): `docker load` it, then run setup again"
            ) from None
        return ref
    tarball = cache_dir / "docker" / f"{ref.replace('/', '_').replace(':', '_')}.tar"
    if not tarball.exists():
        bootstrap_rootfs(local, tarball, log_path)
    repo, tag = split_ref(ref)
    client.api.import_image_from_file(
        str(tarball), repository=repo, tag=tag, changes=["ENV LANG=C.UTF-8", f"LABEL {LABEL}=base"]
    )
    if not image_exists(client, ref):
        raise FrAgentError(f"importing {tarball} as {ref} left no image")
    return ref


def sandbox_image_tag(client: docker.DockerClient, chip: ChipProfile) -> str:
    """fr-agent/sandbox-<chip>:<digest of the Dockerfile, the base image's id, uv and the CA bundle>."""
    digest = hashlib.sha256()
    digest.update(dockerfile_for(chip).read_bytes())
    digest.update(client.images.get(chip.base_image).id.encode())
    digest.update(version("uv").encode())
    digest.update(host_ca_bundle().read_bytes())
    return f"fr-agent/sandbox-{chip.name}:{digest.hexdigest()[:12]}"


def build_sandbox_image(client: docker.DockerClient, chip: ChipProfile, cache_dir: Path, log_path: Path) -> str:
    """The sandbox image for a chip, built if missing (base image first). Returns its tag."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    base = ensure_base_image(client, chip, cache_dir, log_path)
    tag = sandbox_image_tag(client, chip)
    if image_exists(client, tag):
        return tag
    with tempfile.TemporaryDirectory(prefix="fr-image-") as context, log_path.open("a") as log:
        shutil.copy(dockerfile_for(chip), Path(context) / "Dockerfile")
        shutil.copy(host_ca_bundle(), Path(context) / "ca-bundle.crt")
        shutil.copy(find_uv_bin(), Path(context) / "uv")
        log.write(
            f"$ docker build --network host --build-arg BASE_IMAGE={base} -t {tag} ({dockerfile_for(chip).name})\n"
        )
        error = None
        try:
            # The build reaches OS package mirrors and the package index: host networking, since the
            # private engine has no bridge.
            for chunk in client.api.build(
                path=context,
                tag=tag,
                buildargs={"BASE_IMAGE": base},
                network_mode="host",
                rm=True,
                forcerm=True,
                decode=True,
                labels={LABEL: "sandbox", "fr-agent.chip": chip.name},
            ):
                if "stream" in chunk:
                    log.write(chunk["stream"])
                elif "error" in chunk:
                    error = chunk["error"]
                    log.write(error + "\n")
        except APIError as err:
            error = str(err)
        log.flush()
    if error or not image_exists(client, tag):
        raise FrAgentError(
            f"building the {chip.name} sandbox image failed: {(error or 'no image').strip()[:300]} (log: {log_path})"
        )
    for image in client.images.list(name=tag.rsplit(":", 1)[0]):  # superseded builds of this chip's image
        for old in (t for t in image.tags if t != tag):
            try:
                client.images.remove(old)
            except APIError:
                pass  # still the parent of a run's image: it stays until that run is pruned
    return tag
