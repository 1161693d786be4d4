"""BLIP-2's caption and grounding overlap on the first turn on a photo (``agent.conversation.prefetch``):
with a slow stand-in worker, grounding starts while the caption is still running, its result is used
once (no second grounding) and the turn ends exactly as it does with the overlap off; a guess the
caption corrects ("capybarra" -> "capybara") is grounded again and its early result never used."""

from __future__ import annotations

import threading
import time

import pytest

from agent.language.llm import Understander
from agent.runtime.session import Conversations
from bench.hostside import InstantWorker, photo
from tools.config import Settings
from tools.types import Caption

SIZE = (320, 240)
BOX = (32.0, 72.0, 128.0, 192.0)


class SlowCaptioner(InstantWorker):
    """The instant stand-in, with a BLIP-2 that takes its time: the caption waits (up to ``patience``
    seconds) for a grounding to start, and records whether one did while it ran."""

    def __init__(self, caption: str, patience: float):
        super().__init__(BOX)
        self.text, self.patience = caption, patience
        self.grounding = threading.Event()
        self.overlapped: list[bool] = []
        self.phrases: list[str] = []
        self.segments: list[str] = []  # the thread of each call

    def caption(self, image):
        self.overlapped.append(self.grounding.wait(self.patience))
        return Caption(self.text, kind="stand-in")

    def ground(self, image, phrase, **kwargs):
        self.phrases.append(phrase)
        self.grounding.set()
        time.sleep(0.05)
        return super().ground(image, phrase, **kwargs)

    def segment(self, image, boxes=(), points=(), point_labels=None):
        self.segments.append(threading.current_thread().name)
        return super().segment(image, boxes, points, point_labels)


def _turn(tmp_path, name: str, text: str, caption: str, overlap: bool, patience: float = 10.0):
    folder = tmp_path / name
    folder.mkdir()
    worker = SlowCaptioner(caption, patience)
    conv = Conversations(Settings(data_dir=folder, overlap_caption=overlap, _env_file=None), worker=worker,
                         understander=Understander(None))
    try:
        chat = conv.session()
        path = folder / "photo.png"
        photo(SIZE, 0).save(path)
        chat.send("", image=path)
        reply = chat.send(text)
        state = chat.state()
        return worker, reply, state
    finally:
        conv.close()


def test_the_caption_and_grounding_overlap_and_the_turn_is_unchanged(tmp_path):
    worker, reply, state = _turn(tmp_path, "on", "make the cat on the left red", "a photo of a cat", True)
    assert worker.overlapped == [True]  # grounding had started while BLIP-2 was still captioning
    assert worker.phrases == ["cat"]  # grounded once: the ground stage took the early result
    deadline = time.monotonic() + 10
    while "localedit-prefetch-ground" not in worker.segments and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "localedit-prefetch-ground" in worker.segments  # SAM's embedding was started early too
    assert not reply.error and len(state["versions"]) == 2
    off, off_reply, off_state = _turn(tmp_path, "off", "make the cat on the left red", "a photo of a cat", False,
                                      patience=0.3)
    assert off.overlapped == [False] and off.phrases == ["cat"]
    assert "localedit-prefetch-ground" not in off.segments
    for key in ("detections", "choice", "plan"):
        assert state[key] == off_state[key], key
    assert reply.text == off_reply.text
    assert [(r["stage"], r["ran"]) for r in state["report"]] == [(r["stage"], r["ran"]) for r in off_state["report"]]


def test_a_guess_the_caption_corrects_is_grounded_again(tmp_path):
    worker, reply, state = _turn(tmp_path, "typo", "make the capybarra blue", "a photo of a capybara on a sofa", True)
    assert worker.overlapped == [True]
    assert sorted(worker.phrases) == ["capybara", "capybarra"]  # the early guess, then the plan's own phrase
    assert state["plan"]["target"] == "capybara" and [d["label"] for d in state["detections"]] == ["capybara"]
    assert not reply.error


def test_no_overlap_when_the_caption_is_known(tmp_path):
    """The second edit on a photo: its caption came from the plan, no BLIP-2 call, nothing to overlap."""
    folder = tmp_path / "known"
    folder.mkdir()
    worker = SlowCaptioner("a photo of a cat", 10.0)
    conv = Conversations(Settings(data_dir=folder, _env_file=None), worker=worker, understander=Understander(None))
    try:
        chat = conv.session()
        photo(SIZE, 0).save(folder / "p.png")
        chat.send("", image=folder / "p.png")
        chat.send("make the cat on the left red")
        worker.grounding.clear()
        chat.send("make the sofa green")
        assert worker.overlapped == [True] and worker.phrases == ["cat", "sofa"]  # one caption only
    finally:
        conv.close()
