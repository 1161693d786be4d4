"""Settings live in one place (``tools.config``) and a ``.env`` file sets every one of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.config import Settings
from tools.worker import configured_token
from tools.worker.cli import worker_token


@pytest.fixture
def in_tmp(monkeypatch, tmp_path: Path) -> Path:
    """A working directory of its own with no LOCALEDIT_ / OPENAI_ variables in the environment."""
    import os

    for name in list(os.environ):
        if name.startswith(("LOCALEDIT_", "OPENAI_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_dotenv_sets_the_settings_added_for_hardening_conversations_and_rwdp(in_tmp):
    (in_tmp / ".env").write_text(
        "LOCALEDIT_TURN_WAIT=2.5\nLOCALEDIT_KEEP_CHECKPOINTS=7\nLOCALEDIT_MAX_ASPECT_RATIO=8\n"
        "LOCALEDIT_UPLOAD_TIMEOUT=4\nLOCALEDIT_MAX_REQUEST_MEMORY=268435456\nLOCALEDIT_CAPTION_TIMEOUT=3\n"
        "LOCALEDIT_REGIONWISE_FIT_ALPHA=false\nLOCALEDIT_OFFLOAD=model\n"
        'LOCALEDIT_CHAT_ORIGINS=["https://edit.example.org"]\nLOCALEDIT_CHAT_PASSWORD=a-long-secret\n')
    s = Settings()
    assert (s.turn_wait, s.keep_checkpoints, s.max_aspect_ratio, s.upload_timeout) == (2.5, 7, 8.0, 4.0)
    assert (s.max_request_memory, s.caption_timeout, s.regionwise_fit_alpha, s.offload) == (
        268435456, 3.0, False, "model")
    assert s.chat_origins == ["https://edit.example.org"]
    assert s.chat_password.get_secret_value() == "a-long-secret" and "a-long-secret" not in repr(s)


def test_the_environment_wins_over_dotenv(in_tmp, monkeypatch):
    (in_tmp / ".env").write_text("LOCALEDIT_TURN_WAIT=2.5\n")
    monkeypatch.setenv("LOCALEDIT_TURN_WAIT", "9")
    assert Settings().turn_wait == 9


def test_the_worker_token_file_from_dotenv_is_read_by_every_worker_path(in_tmp):
    token_file = in_tmp / "token"
    token_file.write_text("s3cret-token-from-a-file\n")
    token_file.chmod(0o600)
    (in_tmp / ".env").write_text(f"LOCALEDIT_WORKER_TOKEN_FILE={token_file}\n")
    s = Settings()
    # the client (make_worker), `localedit worker` and the Ray Serve replica all use configured_token
    assert configured_token(s) == "s3cret-token-from-a-file"
    assert worker_token(s) == "s3cret-token-from-a-file"
    assert worker_token(s, token="from-argv") == "from-argv"
    (in_tmp / ".env").write_text(f"LOCALEDIT_WORKER_TOKEN=plain-token\nLOCALEDIT_WORKER_TOKEN_FILE={token_file}\n")
    assert configured_token(Settings()) == "plain-token"
    (in_tmp / ".env").write_text("")
    assert configured_token(Settings()) is None
