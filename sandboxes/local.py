"""LocalSandbox, the embedded default: one venv per run, packages installed by uv from a shared,
hard-linked cache (a 3.5 GB vLLM stack installs in seconds the second time), its own working dir
and environment, command timeouts and bounded output capture.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import site
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from uv import find_uv_bin

from fr_agent.core.catalog import ChipProfile
from fr_agent.core.checks import Check, Precheck
from fr_agent.core.recipe import Recipe, normalize_name
from fr_agent.core.secrets import child_env, open_private
from fr_agent.sandboxes.base import CommandResult, Sandbox

PROBES = Path(__file__).parent / "probes"
SERVER_PID = "server.pid"  # in the sandbox's logs: the engine server's pid, for a resumed run to stop
HEAD_BYTES = 16_384
# Host variables a sandbox inherits besides `child_env`'s allowlist: the CPU engine's BLAS needs these on
# some hosts. Everything else (tokens, keys, the agent's own env) stays out.
PASSTHROUGH = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def bounded_output(log_path: Path, cap: int) -> tuple[str, int]:
    """Head and tail of a log, at most `cap` bytes in memory, whatever the file's size."""
    size = log_path.stat().st_size if log_path.exists() else 0
    with log_path.open("rb") as handle:
        if size <= cap:
            data = handle.read()
        else:
            head = handle.read(min(HEAD_BYTES, cap // 4))
            handle.seek(size - (cap - len(head)))
            data = head + f"\n... [{size - cap} bytes omitted] ...\n".encode() + handle.read()
    return data.decode("utf-8", errors="replace"), size


def pip_find_links() -> list[str]:
    """Wheel dirs pip is configured with here (env or pip.conf): uv does not read pip's config."""
    links = os.environ.get("PIP_FIND_LINKS", "").split()
    env = child_env(passthrough=("PIP_CONFIG_FILE", "XDG_CONFIG_HOME"))
    try:
        listing = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=30, env=env
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        listing = ""
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        if key.strip().endswith("find-links"):
            links += value.strip().strip("'\"").split()
    return list(dict.fromkeys(link for link in links if link))


class LocalServer:
    def __init__(self, process: subprocess.Popen, url: str, log_path: Path):
        self.process, self.url, self.log_path = process, url, log_path

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        stop_process_group(self.process, grace_s=15)


def _process_stat(pid: int) -> tuple[int, int]:
    """(process group, start time in clock ticks after boot) of a live process, from /proc/PID/stat
    (fields 5 and 22; the name in field 2 may hold spaces and parentheses)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[2]), int(fields[19])


def _boot_time() -> float:
    return next(
        float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
    )


def stale_server_group(pgid: int, written_at: float, marker: str) -> bool:
    """Whether process group `pgid` is what is left of a server started from the sandbox whose path is `marker`,
    and not a stranger's that was given the pid since. A process of the group must have `marker` in its argv;
    if it is the leader, it must have started before its pid file was written (`written_at`; a second of slack,
    as boot time is in whole seconds). A member other than the leader needs no time check: Linux gives no new
    process a pid still used as a group id."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            group, start = _process_stat(int(entry.name))
            argv = (entry / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError):  # gone meanwhile
            continue
        if group != pgid or marker not in argv:
            continue
        if int(entry.name) != pgid:
            return True
        return _boot_time() + start / os.sysconf("SC_CLK_TCK") <= written_at + 1
    return False


def stop_process_group(process: subprocess.Popen, grace_s: float, first: signal.Signals = signal.SIGTERM) -> None:
    """`first` to the whole group, then SIGKILL after `grace_s`."""
    for sig, wait_s in ((first, grace_s), (signal.SIGKILL, 5)):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


class LocalSandbox(Sandbox):
    name = "local"

    def __init__(
        self, root: Path, cache_dir: Path, hf_home: Path, *, output_cap: int = 2_000_000, find_links: Sequence[str] = ()
    ):
        super().__init__(root)
        self.venv = root / "venv"
        # Short on purpose: vLLM puts ZeroMQ IPC sockets in TMPDIR and socket paths stop at 107 bytes.
        self.tmpdir = Path(tempfile.gettempdir()) / f"fr-{hashlib.sha1(str(root).encode()).hexdigest()[:10]}"
        self.cache_dir = cache_dir
        self.hf_home = hf_home
        self.output_cap = output_cap
        self.find_links = [*find_links, *pip_find_links()]
        self._running: set[subprocess.Popen] = set()  # commands in flight, from any thread
        self._running_lock = threading.Lock()
        cache_dir.mkdir(parents=True, exist_ok=True)
        self.tmpdir.mkdir(mode=0o700, exist_ok=True)  # in the shared /tmp: the engine's sockets are its own
        self.tmpdir.chmod(0o700)
        self._stop_stale_server()

    def _stop_stale_server(self) -> None:
        """A killed fr-agent leaves its engine running; a resumed run stops it before starting anew, if the
        pid file's process group is still that server's and not a stranger's that was given its pid since."""
        pidfile = self.logs / SERVER_PID
        if pidfile.exists():
            try:
                pgid = int(pidfile.read_text())
                if stale_server_group(pgid, pidfile.stat().st_mtime, str(self.root)):
                    os.killpg(pgid, signal.SIGKILL)
            except (OSError, ValueError):  # gone, not ours to signal, or a garbled file
                pass
            pidfile.unlink()

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def probe(self, name: str) -> str:
        return str(PROBES / name)

    def environment(self, recipe: Recipe, *, installer: bool = False) -> dict[str, str]:
        """The allowlisted environment of every command and server (`child_env`): the installer's adds the
        host's proxy and CA variables."""
        sets = {
            "PATH": f"{self.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.workdir),
            "TMPDIR": str(self.tmpdir),
            "VIRTUAL_ENV": str(self.venv),
            "HF_HOME": str(self.hf_home),
            "PYTHONNOUSERSITE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        return child_env(sets=sets, recipe=recipe.env, passthrough=PASSTHROUGH, installer=installer)

    def _uv(self, *args: str, resolve: bool = False) -> list[str]:
        links = [arg for link in self.find_links for arg in ("--find-links", link)] if resolve else []
        return [find_uv_bin(), "pip", *args, "--python", self.python, *links]

    def _uv_env(self, recipe: Recipe) -> dict[str, str]:
        env = self.environment(recipe, installer=True)
        return {**env, "UV_CACHE_DIR": str(self.cache_dir / "uv"), "UV_NO_PROGRESS": "1"}

    def prepare(self, recipe: Recipe) -> CommandResult:
        if (self.venv / "bin" / "python").exists():
            return CommandResult(
                argv=["venv exists"], returncode=0, duration_s=0.0, log_path=str(self.logs / "prepare.log")
            )
        base_python = getattr(sys, "_base_executable", sys.executable)
        return self._execute(
            [find_uv_bin(), "venv", "--python", base_python, str(self.venv)],
            self._uv_env(recipe),
            timeout=300,
            log_name="prepare",
        )

    def sync_packages(self, recipe: Recipe, log_name: str) -> CommandResult:
        """Install the recipe's pins, then uninstall what it removes: the same end state every time."""
        requirements = [p.requirement() for p in recipe.packages]
        result = (
            self._execute(
                self._uv("install", *requirements, resolve=True),
                self._uv_env(recipe),
                timeout=self.install_timeout,
                log_name=log_name,
            )
            if requirements
            else self.prepare(recipe)
        )
        present = self.installed(recipe)
        removable = [name for name in recipe.removed if normalize_name(name) in present]
        if result.ok and removable:
            result = self._execute(
                self._uv("uninstall", *removable), self._uv_env(recipe), timeout=300, log_name=f"{log_name}-remove"
            )
        return result

    def installed(self, recipe: Recipe) -> dict[str, str]:
        result = self._execute(self._uv("freeze"), self._uv_env(recipe), timeout=120, log_name="freeze")
        pins = (line.split("==", 1) for line in result.output.splitlines() if "==" in line)
        return {normalize_name(name): version for name, version in pins}

    def run(self, argv: Sequence[str], recipe: Recipe, *, timeout: float, log_name: str) -> CommandResult:
        return self._execute(list(argv), self.environment(recipe), timeout=timeout, log_name=log_name)

    def stop_running(self, grace_s: float = 5) -> int:
        """Stop every command in flight, whichever thread waits on it (parallel probes when the run is
        interrupted: only the main thread sees Ctrl-C). Their callers get a killed-by-signal result."""
        with self._running_lock:
            running = list(self._running)
        for process in running:
            stop_process_group(process, grace_s=grace_s)
        return len(running)

    def start(self, argv: Sequence[str], recipe: Recipe, *, port: int, log_name: str) -> LocalServer:
        log_path = self.logs / f"{log_name}.log"
        with open_private(log_path, "wb") as log:
            process = subprocess.Popen(
                list(argv),
                cwd=self.workdir,
                env=self.environment(recipe),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        with open_private(self.logs / SERVER_PID, "w") as pidfile:  # its mtime dates the server: stale_server_group
            pidfile.write(str(process.pid))
        return LocalServer(process, f"http://127.0.0.1:{port}", log_path)

    def _execute(self, argv: list[str], env: dict[str, str], *, timeout: float, log_name: str) -> CommandResult:
        log_path = self.logs / f"{log_name}.log"
        started = time.monotonic()
        timed_out = False
        with open_private(log_path, "wb") as log:
            log.write(("$ " + " ".join(argv) + "\n").encode())
            log.flush()
            process = subprocess.Popen(
                argv,
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            with self._running_lock:
                self._running.add(process)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                stop_process_group(process, grace_s=5)
                log.write(f"\n[fr-agent] command timed out after {timeout:g}s and was killed\n".encode())
            except BaseException:  # Ctrl-C: leave no orphaned process group behind
                stop_process_group(process, grace_s=5)
                raise
            finally:
                with self._running_lock:
                    self._running.discard(process)
            if process.returncode is not None and process.returncode < 0:
                name = signal.Signals(-process.returncode).name
                log.write(f"\n[fr-agent] process killed by signal {name}\n".encode())
        output, size = bounded_output(log_path, self.output_cap)
        return CommandResult(
            argv=argv,
            returncode=process.returncode,
            timed_out=timed_out,
            duration_s=round(time.monotonic() - started, 2),
            output=output,
            output_bytes=size,
            log_path=str(log_path),
        )


class HostSandbox(LocalSandbox):
    """`--sandbox host`: for a machine whose stack is preinstalled and which has no package index (a GPU
    machine with its vendor torch, triton, transformers, flag_gems). The venv sees the host interpreter's
    site-packages (a .pth file: `--system-site-packages` alone would point at the base interpreter, not at
    a venv the host's python may itself be); the recipe's pins are moved to the versions the host has
    (`adopt_host_stack`, reported as a note), and only packages the host lacks are installed."""

    name = "host"

    def prepare(self, recipe: Recipe) -> CommandResult:
        if (self.venv / "bin" / "python").exists():
            return CommandResult(
                argv=["venv exists"], returncode=0, duration_s=0.0, log_path=str(self.logs / "prepare.log")
            )
        result = self._execute(
            [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(self.venv)],
            self.environment(recipe),
            timeout=300,
            log_name="prepare",
        )
        if result.ok:
            version = f"python{sys.version_info.major}.{sys.version_info.minor}"
            lines = [f"import site; site.addsitedir({path!r})" for path in site.getsitepackages()]
            (self.venv / "lib" / version / "site-packages" / "_fr_agent_host_site.pth").write_text(
                "\n".join(lines) + "\n"
            )
        return result

    def installed(self, recipe: Recipe) -> dict[str, str]:
        code = (
            "import importlib.metadata as m, json; "
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions() if d.metadata['Name']}))"
        )
        result = self._execute([self.python, "-c", code], self.environment(recipe), timeout=120, log_name="freeze")
        line = next((x for x in reversed(result.output.splitlines()) if x.startswith("{")), "{}")
        return {normalize_name(name): version for name, version in json.loads(line).items()}

    def sync_packages(self, recipe: Recipe, log_name: str) -> CommandResult:
        prepared = self.prepare(recipe)
        if not prepared.ok:
            return prepared
        have = self.installed(recipe)
        missing = [
            p
            for p in recipe.packages
            if normalize_name(p.name) not in have or (p.version and have[normalize_name(p.name)] != p.version)
        ]
        if not missing and not any(normalize_name(n) in have for n in recipe.removed):
            log = self.logs / f"{log_name}.log"
            with open_private(log, "w") as handle:
                handle.write("host sandbox: every pin is already satisfied by the host's packages\n")
            return CommandResult(argv=["host: nothing to install"], returncode=0, duration_s=0.0, log_path=str(log))
        return super().sync_packages(recipe.model_copy(update={"packages": missing}), log_name)

    def precheck(self, result: Precheck, recipe: Recipe, chip: ChipProfile, *, params_b: float) -> Precheck:
        """The host's interpreter is the sandbox's, and a package index is needed only for what the host
        lacks (install says so if anything is): those two host checks are re-judged for this sandbox."""

        have = f"{sys.version_info.major}.{sys.version_info.minor}"
        replaced = {
            "python": Check(
                name="python",
                ok=True,
                detail=f"python {have}: the host's interpreter (recipe had "
                f"{recipe.python}; the host sandbox runs what the host has)",
            ),
            "package index": Check(
                name="package index",
                ok=True,
                detail="not needed up front: the host sandbox installs only packages the host lacks",
            ),
        }
        checks = [replaced.get(c.name, c) if not c.ok else c for c in result.checks]
        return result.model_copy(update={"checks": checks})

    def adopt_host_stack(self, recipe: Recipe) -> tuple[Recipe, str | None]:
        """Pins of packages the host already has, moved to the host's versions; and a note saying which."""
        self.prepare(recipe)
        have = self.installed(recipe)
        moved, packages = [], []
        for pin in recipe.packages:
            version = have.get(normalize_name(pin.name))
            if version and version != pin.version:
                moved.append(f"{pin.name} {version} (recipe had {pin.version or 'no pin'})")
                pin = pin.model_copy(update={"version": version})
            packages.append(pin)
        python = f"{sys.version_info.major}.{sys.version_info.minor}"
        if python != recipe.python:
            moved.append(f"python {python} (recipe had {recipe.python})")
        if not moved:
            return recipe, None
        return (
            recipe.model_copy(update={"packages": packages, "python": python}),
            "host stack pinned: " + ", ".join(moved),
        )
