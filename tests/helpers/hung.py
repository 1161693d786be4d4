"""A TCP server that never answers: a hung LLM or worker. Used by ``test_conversation`` and ``test_cli``."""

from __future__ import annotations

import socket
import threading


class HungServer:
    """A TCP server that accepts connections and never answers (a hung LLM or worker)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = threading.Event()
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)
            self.accepted.set()

    def close(self) -> None:
        for conn in self.connections:
            conn.close()
        self.sock.close()
