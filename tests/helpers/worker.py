"""The HTTP worker as the tests start it: ``python -m tools.worker`` in a subprocess on a loopback
port with the tiny models (``WorkerProcess``), and the client whose grounding answers with the test
scene's boxes (``SceneRemoteWorker``). Used by ``test_worker_http``, ``test_soak`` and ``test_ray_serve``
(and by the ``worker_process`` fixture in ``tests/conftest.py``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Optional

import httpx
import pytest

from bench.soak import wait_until_ready
from tests.helpers import REPO
from tests.helpers.scenes import CATS
from tools.types import Detection
from tools.worker.client import RemoteWorker

TOKEN = "test-token-0123456789"
MAX_UPLOAD = 300_000  # bytes per image: small, so an oversize request is cheap to make
MAX_REQUEST_MEMORY = 128 << 20  # the worker's memory estimate limit: a 7999x7999 edit is far above it


class WorkerProcess:
    """``python -m tools.worker`` on 127.0.0.1:``port``; started, killed and restarted by its PID."""

    def __init__(self, models_dir: Path, port: int, log: Path, token: Optional[str] = None,
                 extra_args: tuple[str, ...] = (), **env: str):
        self.port, self.log, self.token, self.extra_args = port, log, token, tuple(extra_args)
        self.url = f"http://127.0.0.1:{port}"
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "LOCALEDIT_DEVICE": "cpu", "LOCALEDIT_MAX_SIDE": "64",
                    "LOCALEDIT_STEPS": "2", "LOCALEDIT_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
                    "LOCALEDIT_MAX_REQUEST_MEMORY": str(MAX_REQUEST_MEMORY), "LOCALEDIT_UPLOAD_TIMEOUT": "2",
                    "LOCALEDIT_WORKER_TIMEOUT": "60", "OMP_NUM_THREADS": "1", **env}
        self.env.pop("LOCALEDIT_WORKER_TOKEN", None)
        self.models_dir = models_dir
        self.proc: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 120.0) -> "WorkerProcess":
        args = [sys.executable, "-m", "tools.worker", "--port", str(self.port), "--models", str(self.models_dir),
                *self.extra_args]
        if self.token:  # from a file, as a user should: never on the command line
            token_file = self.log.with_name("worker-token")
            token_file.write_text(self.token + "\n")
            token_file.chmod(0o600)
            args += ["--token-file", str(token_file)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_ready(self.proc, self.url, timeout, self.log)
        except RuntimeError as err:
            self.stop()
            pytest.fail(str(err))
        return self

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as when a machine dies."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 15) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def status(self) -> dict:
        return httpx.get(f"{self.url}/status", headers={"Authorization": f"Bearer {self.token}"}, timeout=10).json()

    def memory(self) -> dict[str, int]:
        """The worker process's resident memory now and at its peak (bytes, from /proc)."""
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines())
        return {k: int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}


class SceneRemoteWorker(RemoteWorker):
    """The remote worker; /ground runs on the server, the answer is the test scene's boxes."""

    def ground(self, image, phrase, **kwargs):
        super().ground(image, phrase, **kwargs)
        if "cat" in phrase.lower().split():
            return [Detection("cat", 0.9 - 0.01 * i, box) for i, box in enumerate(CATS)]
        return []


def no_tracebacks(server) -> None:
    """Fails with the log's first traceback, if the worker's log has one."""
    log = server.log.read_text(errors="replace")
    assert "Traceback" not in log, log[log.find("Traceback") - 500:][:3000]
