"""One turn at a time per conversation thread, across threads and processes; a cancel flag.

``ThreadLock(folder, thread_id)`` is an advisory ``flock`` on ``<folder>/<hash of the thread>.lock``.
``flock`` locks belong to an open file description, so two processes, two ``Session`` objects in
one process, or two threads sending on one ``Session`` all exclude each other; the kernel drops the
lock when its holder dies, so a crashed process never leaves a thread locked.

``CancelToken`` is the flag a turn's work checks (``tools.types.CancelFlag``): ``set()`` is a plain
attribute write, so it is safe from another thread and from a signal handler.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from pathlib import Path
from typing import Optional

POLL = 0.05
"""Seconds between tries while waiting for a busy thread."""


class CancelToken:
    """A flag that only ever goes from clear to set (one per turn): ``set()``, ``is_set()``."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


class ThreadLock:
    """The lock of one conversation thread (a file under ``folder``); not re-entrant.

    Args:
        folder: where the lock files live (``$LOCALEDIT_DATA_DIR/locks``).
        thread_id: the conversation thread; any string (the file name is its hash).
    """

    def __init__(self, folder: str | Path, thread_id: str):
        self.folder = Path(folder)
        digest = hashlib.sha256(thread_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        self.path = self.folder / f"{digest}.lock"
        self._fd: Optional[int] = None

    def acquire(self, wait: float = 0.0, cancel=None) -> bool:
        """Take the lock, waiting at most ``wait`` seconds; False if it stayed busy (or ``cancel`` was set)."""
        if self._fd is not None:
            raise RuntimeError("this ThreadLock is already held")
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline or (cancel is not None and cancel.is_set()):
                    os.close(fd)
                    return False
                time.sleep(POLL)
                continue
            self._fd = fd
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {time.time():.0f}\n".encode())  # who holds it, for a person looking
            return True

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None
