"""Helpers the test modules share (not test modules: pytest collects nothing here)."""

import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]
"""The repository root, wherever a test module sits below ``tests/``."""


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60.0, every: float = 0.05) -> None:
    """Waits for the event ``condition()`` stands for (polled every ``every`` s), not for a fixed time;
    fails with ``what`` did not happen after ``timeout`` s (generous: the machine may be loaded)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout:g} s")
        time.sleep(every)
