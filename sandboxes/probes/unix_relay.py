"""Runs inside a serving container that has no network: accepts connections on a unix socket (in a
directory bind-mounted from the host) and forwards each to 127.0.0.1:PORT, where the engine listens.

Usage: unix_relay.py SOCKET_PATH PORT. Stdlib only; one thread per direction per connection.
"""

import os
import socket
import sys
import threading


def pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock, how in ((sink, socket.SHUT_WR), (source, socket.SHUT_RD)):
            try:
                sock.shutdown(how)
            except OSError:
                pass


def serve(client: socket.socket, port: int) -> None:
    try:
        upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError:
        client.close()  # the engine is not listening yet: the host sees a closed connection and retries
        return
    upstream.settimeout(None)
    threads = [
        threading.Thread(target=pump, args=pair, daemon=True) for pair in ((client, upstream), (upstream, client))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.close()
    upstream.close()


def main(path: str, port: int) -> None:
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client, port), daemon=True).start()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
