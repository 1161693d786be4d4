"""Typed selection is a turn of the graph (its ``point`` node): "select the cat on the left" then "make it
red" edits that cat without a question, in chat-cli and ``Session`` alike; a typed selection stops on Stop
and gives up after the worker's time limit like any other call of a turn, and then changes nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agent.language.llm import Understander
from agent.runtime.session import Conversations
from tests.conftest import scene
from tests.helpers.scenes import CATS, SIZE, SceneWorker, agent_settings, edited_region, inside
from tools.config import Settings

EXE = Path(sys.executable).parent / "localedit"


def test_select_the_cat_on_the_left_then_make_it_red_edits_that_cat(chat):
    unasked = chat.send("make it red")  # nothing selected, no edit yet: "it" has no referent
    assert unasked.question
    chat.send("cancel")
    picked = chat.send("select the cat on the left")
    assert not picked.error and picked.text.startswith("Selected the cat") and "selection" in picked.images
    assert "point" in picked.report["ran"] and chat.selection()["box"] == list(CATS[0])
    assert not chat.versions()[-1].get("record")  # a selection makes no version
    reply = chat.send("make it red")
    assert not reply.question and "the cat you selected" in reply.text, reply.text
    assert inside(edited_region(chat), CATS[0], work=(64, 48)) and chat.selection() is None


class HangingGround(SceneWorker):
    """The scene worker whose grounding waits until ``release`` is set (a hung GPU worker)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.entered, self.release = threading.Event(), threading.Event()

    def ground(self, image, phrase, **kwargs):
        self.entered.set()
        self.release.wait(30)
        return super().ground(image, phrase, **kwargs)


class Remote:
    """A worker that is not the in-process one (so the per-call time limits apply), delegating to ``inner``."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("how", ["stop", "time limit"])
def test_a_typed_selection_stops_and_times_out_like_any_call(settings, registry, tmp_path, photo_path, how):
    s = agent_settings(settings, tmp_path, ground_timeout=1.0)
    hanging = HangingGround(s, registry=registry)
    worker = hanging if how == "stop" else Remote(hanging)
    conversations = Conversations(s, worker=worker, understander=Understander(None))
    try:
        chat = conversations.session()
        chat.send("", image=str(photo_path))
        replies = []
        turn = threading.Thread(target=lambda: replies.append(chat.send("select the cat on the left")))
        turn.start()
        assert hanging.entered.wait(30)
        if how == "stop":
            assert chat.cancel()
        turn.join(30)
        assert not turn.is_alive()
        reply = replies[0]
        if how == "stop":
            assert reply.cancelled and "stopped" in reply.text.lower(), reply.text
        else:
            assert reply.error and "did not answer within 1 s" in reply.text, reply.text
        assert chat.selection() is None  # nothing changed
    finally:
        hanging.release.set()
        conversations.close()


@pytest.mark.server
def test_chat_cli_select_the_cat_on_the_left_then_make_it_red(tiny_models_dir, tmp_path):
    """The tiny GroundingDINO's boxes are noise; with both thresholds at 0 it finds many "cats", so
    "make the cat red" alone would ask which one. After the typed selection, "make it red" edits it."""
    scene(SIZE, boxes=CATS).save(tmp_path / "photo.png")
    env = {**os.environ, "LOCALEDIT_MODELS_DIR": str(tiny_models_dir), "LOCALEDIT_MAX_SIDE": "64",
           "LOCALEDIT_STEPS": "1", "LOCALEDIT_DEVICE": "cpu", "LOCALEDIT_DATA_DIR": str(tmp_path / "data"),
           "LOCALEDIT_MAX_ATTEMPTS": "1", "LOCALEDIT_BOX_THRESHOLD": "0", "LOCALEDIT_TEXT_THRESHOLD": "0",
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "OPENAI_API_KEY": "", "OPENAI_BASE_URL": "",
           "LOCALEDIT_LLM_MODEL": ""}
    script = "/image photo.png\nselect the cat on the left\nmake it red\n/quit\n"
    out = subprocess.run([str(EXE), "chat-cli"], input=script, capture_output=True, text=True, timeout=600,
                         cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert "\nlocaledit: Selected the cat" in out.stdout, out.stdout
    assert "you selected" in out.stdout and "answer with" not in out.stdout, out.stdout
    thread = re.search(r"thread (\S+?)\)", out.stdout).group(1)
    conversations = Conversations(Settings(models_dir=tiny_models_dir, data_dir=tmp_path / "data", device="cpu",
                                           _env_file=None), understander=Understander(None))
    try:
        record = conversations.session(thread).record()
        assert record["where"]["how"] == "selected" and len(record["boxes"]) == 1  # the selection's one box
    finally:
        conversations.close()


def test_a_reply_carries_the_versions_and_state_it_was_read_with(chat, conversations, monkeypatch):
    """One read of the checkpoint gives the reply, its versions and its state (the UI and chat-cli need
    no further reads after a turn); a turn reads it twice (is a question open? then the reply)."""
    graph = conversations.graph
    reads = []
    real = graph.get_state
    monkeypatch.setattr(graph, "get_state", lambda *a, **k: reads.append(1) or real(*a, **k))
    reply = chat.send("make the leftmost cat red")
    assert len(reads) == 2, len(reads)
    assert reply.versions == chat.versions() and reply.current["number"] == 2 == len(reply.versions)
    assert reply.state["cursor"] == 1 and reply.current["record"]["instruction"] == "make the leftmost cat red"
    asked = chat.send("make the cat blue")  # three cats: a question, with the versions as they are
    assert asked.question and asked.versions == chat.versions() and asked.current["number"] == 2
