"""The host half of reaching a server in a container without a network: a TCP listener on
127.0.0.1:PORT whose connections go to a unix socket that `probes/unix_relay.py` serves inside the
container (and forwards to the engine's own 127.0.0.1:PORT there). The stages and the eval keep talking
plain HTTP to 127.0.0.1:PORT, as with the local sandbox.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from pathlib import Path

# The probe is standalone (it runs in the container); its copy loop serves this half too.
from fr_agent.sandboxes.probes.unix_relay import pump


class _Handler(socketserver.BaseRequestHandler):
    server: TcpToUnixRelay

    def handle(self) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(str(self.server.socket_path))
        except OSError:
            upstream.close()
            return  # the container side is not up yet: the client sees a closed connection
        back = threading.Thread(target=pump, args=(upstream, self.request), daemon=True)
        back.start()
        pump(self.request, upstream)
        back.join()
        upstream.close()


class TcpToUnixRelay(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, socket_path: Path):
        self.socket_path = socket_path
        super().__init__(("127.0.0.1", port), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()
