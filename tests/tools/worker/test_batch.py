"""Several InstructPix2Pix edits in one pipeline call (issue 22: "retries batched where the editor allows"):
the judge's attempts of one turn differ in their guidances, seeds, inputs and masks, and each gets, batched,
the pixels it gets alone. Tiny random models on the CPU (tests/conftest.py)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import scene
from tests.helpers.scenes import CATS, SIZE
from tools.editors.ip2p import guided_batch
from tools.images import box_to_mask
from tools.types import Cancelled, EditRequest, EditResult, LocaleditError
from tools.worker import LocalWorker


def photo(i: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8))


def mean_diff(a, b, where=None) -> float:
    """Mean absolute pixel difference of two images (inside the bool mask ``where``, if given)."""
    diff = np.abs(np.asarray(a).astype(np.int16) - np.asarray(b).astype(np.int16))
    return float(diff[where].mean() if where is not None else diff.mean())


def test_each_item_of_a_guided_batch_gets_its_own_guidance_as_alone(registry):
    """Items 0 and 1 share photo and seed and differ in their guidances only (a "stronger edit"); item 2 is
    another photo and seed. Batched, each equals the pipeline's own call for it alone; and the guidances
    matter, so a batch that gave every item the first item's guidance would fail here."""
    pipe = registry.get("ip2p").model
    items = [(photo(0), 7.5, 1.5, 5), (photo(0), 10.0, 1.25, 5), (photo(1), 7.5, 1.5, 6)]

    def alone(image, guidance, image_guidance, seed):
        return pipe(prompt="make it red", image=image, num_inference_steps=3, guidance_scale=guidance,
                    image_guidance_scale=image_guidance, generator=torch.Generator().manual_seed(seed)).images[0]

    singles = [alone(*item) for item in items]
    pipe._num_timesteps = None  # set again by the batch, or the check below fails
    steps: list[int] = []
    batched = guided_batch(pipe, ["make it red"] * 3, [i[0] for i in items],
                           [torch.Generator().manual_seed(i[3]) for i in items], [i[1] for i in items],
                           [i[2] for i in items], num_inference_steps=3,
                           callback_on_step_end=lambda p, i, t, kw: steps.append(i) or kw)
    for single, got in zip(singles, batched):
        diff = np.abs(np.asarray(single).astype(np.int16) - np.asarray(got).astype(np.int16))
        assert diff.max() <= 2 and diff.mean() < 0.05  # batched float maths may round a pixel apart
    assert mean_diff(singles[0], singles[1]) > 1  # 20x the batching noise: the guidance is what tells items 0 and 1 apart
    assert steps == [0, 1, 2] and pipe.num_timesteps == 3


def test_a_guided_batch_refuses_an_item_with_guidance_off(registry):
    pipe = registry.get("ip2p").model
    with pytest.raises(ValueError, match="guidance off"):
        guided_batch(pipe, ["a", "b"], [photo(0), photo(1)], [torch.Generator(), torch.Generator()],
                     [7.5, 1.0], [1.5, 1.5], num_inference_steps=1)


def test_the_workers_edit_batch_matches_edits_one_by_one(settings, registry):
    """The judge's queue of one turn: the first try, its stronger edit, the baseline on the whole photo
    (black-masked input: three different InstructPix2Pix inputs) share one call; region-wise runs alone."""
    worker = LocalWorker(settings, registry=registry)
    image, mask = scene(SIZE, boxes=CATS), box_to_mask(CATS[0], SIZE)
    requests = [EditRequest("ip2p-composite", "make it red", seed=3, black_mask=True),
                EditRequest("ip2p-composite", "make it red", seed=3, black_mask=True, guidance_scale=10.0,
                            image_guidance_scale=1.25),
                EditRequest("ip2p", "make it red", seed=3),
                EditRequest("regionwise", "make it red", seed=3)]
    masks = [mask, mask, None, mask]
    steps: list[int] = []
    results = worker.edit_batch(image, masks, requests, progress=lambda s, t: steps.append(s))
    assert [r.info["batch_size"] for r in results] == [3, 3, 3, 1]
    assert steps == [1, 2]  # the first request's progress: the batched call
    for m, request, got in zip(masks, requests, results):
        single = worker.edit(image, m, request)
        assert isinstance(got, EditResult) and mean_diff(got.image, single.image, got.region) < 0.1, request
        if m is not None:  # a masked editor's background stays the photo's, bit for bit
            assert np.array_equal(np.asarray(got.image)[~got.region], np.asarray(image)[~got.region])
    assert mean_diff(results[0].image, results[1].image, results[0].region) > 1  # the stronger edit is its own


def test_a_stopped_batch_stops_every_edit_and_a_bad_request_fails_alone(settings, registry):
    worker = LocalWorker(settings, registry=registry)
    image, mask = scene(SIZE, boxes=CATS), box_to_mask(CATS[0], SIZE)
    stop = threading.Event()
    stop.set()
    answers = worker.edit_batch(image, [mask, None], [EditRequest("ip2p-composite", "make it red"),
                                                      EditRequest("ip2p", "make it red")], cancel=stop)
    assert all(isinstance(a, Cancelled) for a in answers)
    answers = worker.edit_batch(image, [mask, mask], [EditRequest("ip2p-composite", "make it red"),
                                                      EditRequest("ip2p-composite", "x", steps=0)])
    assert isinstance(answers[0], EditResult) and answers[0].info["batch_size"] == 1
    assert isinstance(answers[1], LocaleditError) and "steps" in str(answers[1])


def test_a_batch_out_of_gpu_memory_runs_the_first_edit_alone(settings, registry):
    """A batch may not fit where one edit does: the first edit (the attempt the turn needs) runs alone;
    the speculative ones answer the error. The real UNet refuses more rows than one edit's three guidance
    branches, as a GPU out of memory would."""
    worker = LocalWorker(settings, registry=registry)
    image, mask = scene(SIZE, boxes=CATS), box_to_mask(CATS[0], SIZE)
    unet = registry.get("ip2p").model.unet

    def full(module, args, kwargs):
        if args[0].shape[0] > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (this test)")

    hook = unet.register_forward_pre_hook(full, with_kwargs=True)
    try:
        answers = worker.edit_batch(image, [mask, None], [EditRequest("ip2p-composite", "make it red", seed=1),
                                                          EditRequest("ip2p", "make it red", seed=1)])
    finally:
        hook.remove()
    assert isinstance(answers[0], EditResult)
    assert mean_diff(answers[0].image, worker.edit(image, mask, EditRequest("ip2p-composite", "make it red",
                                                                            seed=1)).image) == 0
    assert isinstance(answers[1], LocaleditError) and "ran out of memory" in str(answers[1])


def test_a_batch_that_runs_longer_than_the_wait_for_its_members_is_not_run_again(settings, registry):
    """The worker's time limit bounds the wait for the batch's members to arrive, not the batched call:
    a batch slower than it (a CPU at 512 px) finishes once, and no edit of it runs again alone."""
    import time

    worker = LocalWorker(settings.model_copy(update={"worker_timeout": 0.3}), registry=registry)
    image, mask = scene(SIZE, boxes=CATS), box_to_mask(CATS[0], SIZE)
    unet = registry.get("ip2p").model.unet
    passes: list[int] = []
    hook = unet.register_forward_pre_hook(lambda module, args: passes.append(args[0].shape[0]))
    try:
        answers = worker.edit_batch(image, [mask, None], [EditRequest("ip2p-composite", "make it red", steps=3),
                                                          EditRequest("ip2p", "make it red", steps=3)],
                                    progress=lambda s, t: time.sleep(0.25))  # 0.75 s in all
    finally:
        hook.remove()
    assert [a.info["batch_size"] for a in answers] == [2, 2]
    assert passes == [6, 6, 6]  # one batched call of two edits (three guidance branches each), nothing again


class OneToolFails(LocalWorker):
    """The real worker, whose region-wise edits fail with an error no editor expects (a bug, say)."""

    def edit(self, image, mask, request, progress=None, cancel=None):
        if request.editor == "regionwise":
            raise RuntimeError("boom")
        return super().edit(image, mask, request, progress=progress, cancel=cancel)


def test_an_edit_run_ahead_that_breaks_never_fails_the_one_asked_for(settings, registry):
    worker = OneToolFails(settings, registry=registry)
    image, mask = scene(SIZE, boxes=CATS), box_to_mask(CATS[0], SIZE)
    asked, ahead = EditRequest("ip2p-composite", "make it red"), EditRequest("regionwise", "make it red")
    answers = worker.edit_batch(image, [mask, mask], [asked, ahead])
    assert isinstance(answers[0], EditResult)
    assert isinstance(answers[1], LocaleditError) and "RuntimeError: boom" in str(answers[1])
    with pytest.raises(RuntimeError, match="boom"):  # the edit asked for fails as it fails alone
        worker.edit_batch(image, [mask, mask], [ahead, asked])
    answers = worker.edit_batch(image, [mask, mask], [asked, EditRequest("ip2p-composite", "x", steps="many")])
    assert isinstance(answers[0], EditResult) and isinstance(answers[1], LocaleditError)  # a malformed one: alone
