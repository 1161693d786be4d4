"""An ASGI app served for real in this process: uvicorn on a loopback port, in a thread, with the
guard's header timeout (``tools.http_guard.make_server``), stopped when the block ends."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Iterator

from tools.http_guard import bind, make_server


@contextlib.contextmanager
def served(app, header_timeout: float = 10.0, max_connections: int = 256) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` while ``app`` is served there."""
    sock = bind("127.0.0.1", 0)
    server = make_server(app, header_timeout, max_connections)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
