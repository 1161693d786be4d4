"""The chat app as the browser tests start it: Chainlit running ``tests/helpers/ui_helpers.py`` (the real app,
grounding fixed to the test scene) as a child process on a free loopback port, and the Chromium they
drive it with. Used by ``test_chat_ui`` and ``test_chat_auth``.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.helpers import REPO

ARTIFACTS = REPO / "artifacts" / "ui"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

class Server:
    """The chat app under test, as a child process on a loopback port (restartable)."""

    def __init__(self, models: Path, data: Path, log: Path, **env):
        self.port, self.data, self.log = free_port(), data, log
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {"LOCALEDIT_MODELS_DIR": str(models), "LOCALEDIT_DATA_DIR": str(data),
                    "LOCALEDIT_MAX_SIDE": "64", "LOCALEDIT_STEPS": "2", "LOCALEDIT_DEVICE": "cpu",
                    "LOCALEDIT_MAX_ATTEMPTS": "2", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "OPENAI_API_KEY": None, "OPENAI_BASE_URL": None, "LOCALEDIT_LLM_MODEL": None,
                    "LOCALEDIT_CHAT_PASSWORD": None, "OMP_NUM_THREADS": "1", **env}
        self.proc = None

    def start(self) -> None:
        from chat_ui.launch import start, wait_until_up

        out = open(self.log, "ab")
        self.proc = start("127.0.0.1", self.port, self.data, app_file=REPO / "tests" / "helpers" / "ui_helpers.py",
                          env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=str(self.data.parent))
        out.close()
        if not wait_until_up("127.0.0.1", self.port, self.proc, 120):
            self.stop()
            pytest.fail(f"the chat app did not start; its log:\n{self.tail()}")

    def stop(self) -> None:
        from chat_ui.launch import stop

        if self.proc is not None:
            stop(self.proc)  # by this child's PID only
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]) if self.log.exists() else ""


def needs_chainlit() -> None:
    if importlib.util.find_spec("chainlit") is None:  # not imported here: it writes files where it is imported
        pytest.skip("chainlit is not installed (pip install chainlit)")
