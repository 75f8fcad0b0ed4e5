"""Parts of the docker sandbox that need no engine: Dockerfile per chip family, names, sizes, the relay,
and the CLI's one-line errors when no engine answers."""

from __future__ import annotations

import re
import socket
import threading
from pathlib import Path

import pytest

from fr_agent.core.catalog import load_catalog
from fr_agent.core.errors import FrAgentError
from fr_agent.sandboxes.docker import parse_size, repository_for
from fr_agent.sandboxes.docker_engine import engine_paths, reachable
from fr_agent.sandboxes.docker_images import DOCKERFILES, dockerfile_for
from fr_agent.sandboxes.relay import TcpToUnixRelay
from tests.cli_helpers import fr_agent, one_line_error


@pytest.mark.parametrize("chip", sorted(load_catalog(None).chips))
def test_every_chip_has_a_dockerfile_from_its_base_image(chip):
    profile = load_catalog(None).chip(chip)
    text = dockerfile_for(profile).read_text()
    assert re.search(r"^ARG BASE_IMAGE\b", text, re.M) and re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M)
    assert "COPY uv /usr/local/bin/uv" in text and "/opt/venv" in text
    family = {"cpu": "cpu.Dockerfile", "ascend": "ascend.Dockerfile"}.get(profile.vendor, "vendor.Dockerfile")
    assert dockerfile_for(profile) == DOCKERFILES / family
    # vendor torch builds live in the image's own Python: the venv must see them
    assert ("--system-site-packages" in text) == (profile.vendor != "cpu")


def test_names_and_sizes():
    repo = repository_for("20261123-141500-Qwen3.8B_x-cpu-ab12", Path("/runs/x/sandbox"))
    assert re.fullmatch(r"fr-agent-run/20261123-141500-qwen3-8b-x-cpu-ab12-[0-9a-f]{6}", repo)
    assert repo != repository_for("20261123-141500-Qwen3.8B_x-cpu-ab12", Path("/other/x/sandbox"))
    assert parse_size("16g") == 16 * 2**30 and parse_size("512m") == 512 * 2**20 and parse_size("8G") == 8 * 2**30
    with pytest.raises(FrAgentError, match="cannot read size"):
        parse_size("lots")
    assert len(str(engine_paths(Path("/" + "d" * 300)).socket)) < 100  # unix sockets stop at 107 bytes


def test_relay_carries_a_conversation_both_ways(tmp_path):
    sock_path = tmp_path / "s.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.listen(1)

    def echo_upper():
        conn, _ = listener.accept()
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data.upper())

    threading.Thread(target=echo_upper, daemon=True).start()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    relay = TcpToUnixRelay(port, sock_path)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"hello container")
            client.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := client.recv(1024):
                reply += chunk
        assert reply == b"HELLO CONTAINER"
    finally:
        relay.close()
        listener.close()


def test_no_engine_is_one_clear_line(tmp_path):
    if reachable("unix:///var/run/docker.sock"):
        pytest.skip("a Docker engine answers on the default socket here")
    result = fr_agent(
        "run",
        "tiny-llama",
        "--chip",
        "cpu",
        "--sandbox",
        "docker",
        "--yes",
        home=tmp_path,
        env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"},
    )
    assert result.returncode == 2
    assert "no Docker engine answers" in one_line_error(result) and "fr-agent sandbox engine" in result.stderr


def test_unknown_sandbox_is_one_clear_line(tmp_path):
    result = fr_agent("run", "tiny-llama", "--chip", "cpu", "--sandbox", "vm", "--yes", home=tmp_path)
    line = one_line_error(result)
    assert result.returncode == 2 and "unknown sandbox 'vm'" in line and "'docker'" in line
