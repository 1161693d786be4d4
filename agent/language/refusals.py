"""What LLM servers refused in this process: tool definitions (:mod:`agent.language.llm_client`) and
images (:mod:`agent.language.vision`).

A server (``"base-url model"``) that refused one of them once is not sent it again until the process
restarts or :func:`forget` runs (tests; a server restarted with other options), and the reply says so
the first time only (:meth:`Refused.remember` is True once).
"""

from __future__ import annotations

import threading


class Refused:
    """The servers that refused one thing; safe to share between threads."""

    def __init__(self) -> None:
        self._servers: set[str] = set()
        self._lock = threading.Lock()

    def __contains__(self, server: str) -> bool:
        with self._lock:
            return server in self._servers

    def remember(self, server: str) -> bool:
        """Record that ``server`` refused it; True the first time (so the reply says it once)."""
        with self._lock:
            new = server not in self._servers
            self._servers.add(server)
        return new

    def clear(self) -> None:
        with self._lock:
            self._servers.clear()


TOOLS = Refused()
"""Servers that rejected tool definitions (answered in JSON text instead)."""
IMAGES = Refused()
"""Servers that refused images (sent the photo's caption instead)."""


def forget() -> None:
    """Forget every refusal learnt in this process."""
    TOOLS.clear()
    IMAGES.clear()
