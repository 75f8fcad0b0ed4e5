"""The Ray executor on a real local cluster: a head node advertising chip:cpu and a second node advertising
chip:kunlunxin, both started with `ray start --block` here. Each job asks for its chip's resource, so it
runs on the node that has that chip; a chip no node advertises is reported, not launched."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from fr_agent.core.catalog import load_catalog
from fr_agent.shell.batch_ray import host_resources
from tests.cli_helpers import fr_agent

RAY = str(Path(sys.executable).parent / "ray")
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_node(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            [RAY, "start", "--block", "--disable-usage-stats", "--num-cpus=1", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_node(node: subprocess.Popen) -> None:
    """A throwaway node: its whole process group (raylet, GCS, workers) is killed, no graceful drain."""
    try:
        os.killpg(node.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    node.wait(timeout=30)


@pytest.fixture
def ray_cluster(fr_home, tmp_path):
    port = free_port()
    env = {**os.environ, **RAY_ENV, "FR_AGENT_HOME": str(fr_home), "HF_HUB_OFFLINE": "1"}
    # Ray's own files go to a private, short directory (its socket paths must stay under 107 bytes).
    temp_dir = tempfile.mkdtemp(prefix="frray-")
    nodes = [
        start_node(
            [
                "--head",
                "--node-ip-address=127.0.0.1",
                f"--port={port}",
                "--include-dashboard=false",
                f"--temp-dir={temp_dir}",
                f"--resources={json.dumps({'chip:cpu': 2})}",
            ],
            env,
            tmp_path / "head.log",
        )
    ]
    try:
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while subprocess.run([RAY, "status", f"--address={address}"], env=env, capture_output=True).returncode != 0:
            assert nodes[0].poll() is None and time.monotonic() < deadline, (tmp_path / "head.log").read_text()[-3000:]
            time.sleep(1)
        nodes.append(
            start_node(
                [
                    f"--address={address}",
                    "--node-ip-address=127.0.0.1",
                    f"--temp-dir={temp_dir}",
                    f"--resources={json.dumps({'chip:kunlunxin': 1})}",
                ],
                env,
                tmp_path / "worker.log",
            )
        )
        while (
            "chip:kunlunxin"
            not in subprocess.run(
                [RAY, "status", f"--address={address}"], env=env, capture_output=True, text=True
            ).stdout
        ):
            assert nodes[1].poll() is None and time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[
                -3000:
            ]
            time.sleep(1)
        yield address
    finally:
        for node in reversed(nodes):
            stop_node(node)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_jobs_run_on_the_node_that_advertises_their_chip(fr_home, tmp_path, ray_cluster):
    jobs = tmp_path / "ray-jobs.yaml"
    jobs.write_text("""
concurrency: 3
retries: 0
include:
  - {model: no-such-org/no-such-model, chip: cpu}   # launched on the chip:cpu node; fails there as bad input
  - {model: tiny-llama, chip: kunlunxin}            # launched on the chip:kunlunxin node; its precheck finds no card
  - {model: tiny-llama, chip: ascend}               # no node advertises chip:ascend: never launched
""")
    result = fr_agent(
        "batch",
        str(jobs),
        "--executor",
        "ray",
        "--address",
        ray_cluster,
        "--json",
        home=fr_home,
        timeout=300,
        env=RAY_ENV,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["executor"] == "ray"
    rows = {r["job"]: r for r in report["jobs"]}
    assert rows["no-such-org-no-such-model@cpu"]["status"] == "error"
    assert "unknown model 'no-such-org/no-such-model'" in rows["no-such-org-no-such-model@cpu"]["reason"]
    assert rows["tiny-llama@kunlunxin"]["status"] == "precheck_failed"
    assert "no kunlunxin device visible" in rows["tiny-llama@kunlunxin"]["reason"]
    assert rows["tiny-llama@ascend"]["status"] == "no_host" and rows["tiny-llama@ascend"]["launches"] == 0
    assert "no Ray node advertises chip:ascend (the cluster has: cpu, kunlunxin)" == rows["tiny-llama@ascend"]["reason"]
    state = json.loads((Path(report["batch_dir"]) / "batch.json").read_text())
    host = {
        job: state["jobs"][job]["tries"][0]["launches"][0]["host"]
        for job in ("no-such-org-no-such-model@cpu", "tiny-llama@kunlunxin")
    }
    assert all("/" in h for h in host.values()) and len(set(host.values())) == 2, host  # two different Ray nodes
    run_dir = fr_home / "runs" / rows["tiny-llama@kunlunxin"]["run_id"]
    assert json.loads((run_dir / "request.json").read_text())["chip"] == "kunlunxin"  # written by the Ray task


def test_a_host_advertises_the_chips_it_has():
    catalog = load_catalog()
    assert host_resources(catalog, cpu_slots=3) == {"chip:cpu": 3.0}  # no accelerator on this machine kind
    shown = fr_agent("ray-resources", "--cpu-slots", "2", home=Path("/tmp"), timeout=60)
    assert shown.returncode == 0 and json.loads(shown.stdout) == {"chip:cpu": 2.0}
