"""Abandoned work stops (issue 23): a vision call the turn gives up stops at the model's next block.

Real tiny random models through the turn's own ``call`` (agent.conversation.node_runtime): the model
is held at its first block until the call has been given up (an event, not a sleep), then every
block that runs afterwards is counted. Without the stop hooks the whole model ran on in the
background; with them nothing more runs, the helper thread ends, the next call works and no hook is
left on the model.
"""

from __future__ import annotations

import threading

import pytest

from agent.conversation.node_runtime import call
from tests.conftest import scene
from tests.helpers.scenes import CATS, SIZE
from tools.stopping import abandon_flag, blocks, current_flag, either, stop_between_blocks
from tools.types import Cancelled, WorkerUnavailableError
from tools.worker.local import LocalWorker

CALLS = {
    "ground": ("detector", lambda w, im: w.ground(im, "the cat")),
    "segment": ("sam", lambda w, im: w.segment(im, [CATS[0]])),
    "caption": ("caption", lambda w, im: w.caption(im)),
    "score": ("clip", lambda w, im: w.score(im, im, box=CATS[0], target_text="cat")),
}


class Watch:
    """Hooks of the test's own on every block of ``model``: the first block to run waits until the call
    running it is given up; ``after`` counts the blocks that ran to their end after that."""

    def __init__(self, model, hold: bool):
        self.hold, self.held, self.after, self.ran = hold, threading.Event(), 0, 0
        self.gave_up: threading.Event | None = None
        self.handles = [h for b in blocks(model) for h in (b.register_forward_pre_hook(self.pre),
                                                            b.register_forward_hook(self.post))]

    def pre(self, module, args) -> None:
        if self.hold and self.gave_up is None:
            self.gave_up = current_flag()
            self.held.set()
            assert self.gave_up is not None and self.gave_up.wait(30), "the call was never given up"

    def post(self, module, args, output) -> None:
        self.ran += 1
        self.after += bool(self.gave_up is not None and self.gave_up.is_set())

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def hook_count(model) -> int:
    return sum(len(b._forward_pre_hooks) for b in blocks(model))


@pytest.mark.parametrize("tool", list(CALLS))
def test_a_call_given_up_stops_at_the_next_block_and_the_next_call_works(settings, registry, tool):
    role, run = CALLS[tool]
    worker = LocalWorker(settings, registry=registry)
    model = registry.get(role).model
    assert blocks(model), f"the {role} model has no blocks to stop at"
    hooks_before = hook_count(model)
    photos = iter(scene(SIZE, boxes=CATS).rotate(5 * i) for i in range(1, 4))  # new photos: no cache hit

    whole = Watch(model, hold=False)  # the count a call that is not given up runs: the whole model
    try:
        call(f"the {tool} model", run, worker, next(photos))
    finally:
        whole.remove()
    assert whole.ran > 0

    watch = Watch(model, hold=True)
    try:
        with pytest.raises(WorkerUnavailableError, match="did not answer within 0.01 s"):
            call(f"the {tool} model", run, worker, next(photos), timeout=0.01)
        assert watch.held.is_set()  # the model was running when the call was given up
        helper = next(t for t in threading.enumerate() if t.name == f"localedit-the {tool} model")
        helper.join(30)
        assert not helper.is_alive()
        assert watch.after == 0 and watch.ran < whole.ran  # it stopped at its next block
    finally:
        watch.remove()
    assert hook_count(model) == hooks_before  # the stop hooks went with the call
    assert call(f"the {tool} model", run, worker, next(photos)) is not None  # the next call works
    assert hook_count(model) == hooks_before


def test_a_call_given_up_before_it_starts_runs_nothing_and_without_a_flag_nothing_is_added(registry):
    model = registry.get("detector").model
    given_up = threading.Event()
    given_up.set()
    with pytest.raises(Cancelled, match="given up before it started"):
        with abandon_flag(given_up), stop_between_blocks([model], what="the detector"):
            raise AssertionError("the block ran")
    before = hook_count(model)
    with stop_between_blocks([model]):  # no call with a flag runs here: no hook
        assert hook_count(model) == before
    with abandon_flag(threading.Event()), stop_between_blocks([model]):  # a call with a flag: one per block
        assert hook_count(model) == before + len(blocks(model))
    assert hook_count(model) == before


def test_an_edit_given_up_stops_at_its_next_step(settings, registry):
    """The diffusion editors take the call's flag beside the turn's Stop: its first UNet step held until
    the call is given up, the edit stops at the end of that step (step 2 never runs), its thread ends."""
    from tests.helpers.editing import photo_and_mask, request

    worker = LocalWorker(settings, registry=registry)
    img, mask = photo_and_mask((64, 48))
    unet, runs, steps = registry.get("ip2p").model.unet, [], []

    def hold(module, args) -> None:
        runs.append(current_flag())
        assert runs[0] is not None and runs[0].wait(30), "the call was never given up"

    handle = unet.register_forward_pre_hook(hold)
    try:
        with pytest.raises(WorkerUnavailableError):
            call("the editor", worker.edit, img, mask, request("ip2p-composite", steps=6),
                 progress=lambda i, n: steps.append(i), timeout=0.01)
        helper = next(t for t in threading.enumerate() if t.name == "localedit-the editor")
        helper.join(30)
    finally:
        handle.remove()
    assert not helper.is_alive() and len(runs) == 1 and steps == []
    assert call("the editor", worker.edit, img, mask, request("ip2p-composite")).image.size == img.size


def test_either_flag_is_set_when_one_of_its_flags_is():
    stop, gave_up = threading.Event(), threading.Event()
    assert either(None, None) is None and either(stop, None) is stop
    both = either(stop, gave_up)
    assert not both.is_set()
    gave_up.set()
    assert both.is_set()
