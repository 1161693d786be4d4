"""The judge's attempts of one turn that share the InstructPix2Pix pipeline run on speculation in ONE batched
call (``settings.batch_retries``; issue 22): the chat and ``pipeline.run`` give the same attempts, verdicts and
pixels as one call per attempt, in fewer calls; a result run ahead and never asked for is dropped unwritten."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.conversation import judge, pipeline
from agent.runtime.store import ImageStore
from bench.hostside import InstantWorker
from tests.conftest import scene
from tests.helpers.judging import BLUE, recolour, unchanged
from tests.helpers.scenes import SIZE, SceneWorker
from tools.config import Settings
from tools.worker import LocalWorker

CAT = (60, 30, 110, 95)
STRONGER_FIRST = ["primary", "stronger", "baseline"]


# --------------------------------------------------------------------------- which attempts share a call


def mates(settings: Settings, limit: int, *, action: str = "attribute", baseline_known: bool = False,
          alternatives=(), certain=True) -> list[str]:
    queue = judge.attempt_queue(action, settings, alternatives=list(alternatives), certain=certain)
    return [a["why"] for a in pipeline.batch_mates(queue[0], queue[1:], settings, limit,
                                                   baseline_known=baseline_known)]


def test_the_attempts_that_share_the_first_ones_call():
    base = Settings(_env_file=None)
    stronger = base.model_copy(update={"attempt_order": STRONGER_FIRST})
    black = stronger.model_copy(update={"black_mask_input": True})
    assert mates(stronger, 0) == []  # off: one attempt per call
    # ip2p-composite on the unmasked photo gives the baseline for free (its pre-composite output): not run again
    assert mates(stronger, 1) == mates(stronger, 4) == ["stronger edit"]
    # black-masked input: the baseline is its own edit, batched too
    assert mates(black, 4) == ["stronger edit", judge.BASELINE_WHY]
    assert mates(black, 4, baseline_known=True) == ["stronger edit"]
    # the default queue: region-wise is its own loop (not the pipeline's call), so only the baseline qualifies
    assert mates(base.model_copy(update={"black_mask_input": True}), 4) == [judge.BASELINE_WHY]
    # crop 'all': the masked attempt works on its crop, the whole-image baseline at another size
    assert mates(black.model_copy(update={"crop": "all"}), 4) == ["stronger edit"]
    # the other candidate has its own mask
    order = ["primary", "other-candidate", "stronger", "baseline"]
    tie = stronger.model_copy(update={"attempt_order": order, "max_attempts": 4})
    assert mates(tie, 4, alternatives=[1], certain=False) == ["stronger edit"]
    # an editor whose call does not batch gets no mates
    assert mates(stronger.model_copy(update={"editor": "inpaint"}), 4) == []


def test_how_many_attempts_may_share_a_call(settings, registry):
    fresh = LocalWorker(settings)  # nothing built or loaded yet (a global edit asks before any model ran)
    assert pipeline.batch_limit(fresh, settings) == 0  # auto on a CPU: a batch costs its calls one by one
    assert fresh.registry.loaded() == []
    assert pipeline.batch_limit(fresh, settings.model_copy(update={"batch_retries": 2})) == 2
    # a worker without edit_batch (a remote one batches its users' requests itself)
    assert pipeline.batch_limit(InstantWorker((0, 0, 8, 8)), settings.model_copy(update={"batch_retries": 2})) == 0

    class OnCuda(LocalWorker):  # auto where the worker says a batch pays (its CUDA check: tests/tools/test_gpu.py)
        def batch_pays(self):
            return True

    assert pipeline.batch_limit(OnCuda(settings), settings) == 1


# --------------------------------------------------------------------------- localedit edit / eval: pipeline.run


class CountingWorker(SceneWorker):
    """The scene worker, counting its edit calls and how many edits each carried."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[int] = []

    def edit(self, *args, **kwargs):
        self.calls.append(1)
        return super().edit(*args, **kwargs)

    def edit_batch(self, image, masks, requests, **kwargs):
        self.calls.append(len(requests))
        return super().edit_batch(image, masks, requests, **kwargs)


@pytest.mark.slow
def test_pipeline_run_batched_gives_the_attempts_and_pixels_of_one_call_each(settings, registry):
    """The tiny models' edits are judged poor, so every attempt runs: the first try, its stronger edit and
    the baseline (black-masked input: three different edits). Batched, they take one call, with the same
    knobs, scores, verdicts and kept image (up to floating-point batching)."""
    job = pipeline.Job(action="attribute", phrase="cat", instruction="make the cat red",
                       source_caption="a photo of a cat", target_caption="a photo of a red cat")
    runs = {}
    for limit in (0, 1, 2):
        s = settings.model_copy(update={"max_attempts": 3, "attempt_order": STRONGER_FIRST, "black_mask_input": True,
                                        "batch_retries": limit})
        worker = CountingWorker(s, registry=registry, objects={"cat": [CAT]})
        runs[limit] = (pipeline.run(worker, scene(SIZE, boxes=[CAT]), job, s), worker.calls)
    (alone, calls0), (two, calls1), (three, calls2) = runs[0], runs[1], runs[2]
    assert calls0 == [1, 1, 1] and calls1 == [2, 1] and calls2 == [3]
    assert [a["why"] for a in alone.attempts] == ["first try", "stronger edit", judge.BASELINE_WHY]
    assert not any(a.get("reused") for a in alone.attempts)
    assert [bool(a.get("reused")) for a in two.attempts] == [False, True, False]
    assert [a.get("reused") for a in three.attempts][1:] == ["run in one batched call with attempt 1"] * 2
    for report in (two, three):
        assert [(a["editor"], a["guidance_scale"], a["image_guidance_scale"], a["failed"]) for a in report.attempts] \
            == [(a["editor"], a["guidance_scale"], a["image_guidance_scale"], a["failed"]) for a in alone.attempts]
        for a, b in zip(report.attempts, alone.attempts):
            assert a["scores"]["clip_dir_region"] == pytest.approx(b["scores"]["clip_dir_region"], abs=0.01)
        assert report.kept == alone.kept
        diff = np.abs(np.asarray(report.image).astype(int) - np.asarray(alone.image).astype(int))
        assert diff.mean() < 0.1 and diff.max() <= 3


@pytest.mark.slow
def test_a_global_edit_runs_its_stronger_retry_ahead(settings, registry):
    """A global edit (no region): plain InstructPix2Pix and its stronger retry in one call, the same verdicts."""
    job = pipeline.Job(action="global", instruction="make it look like winter", source_caption="a photo",
                       target_caption="a photo in winter")
    runs = {}
    for limit in (0, 1):
        s = settings.model_copy(update={"max_attempts": 2, "attempt_order": ["primary", "stronger"],
                                        "batch_retries": limit})
        worker = CountingWorker(s, registry=registry)
        runs[limit] = (pipeline.run(worker, scene(SIZE), job, s), worker.calls)
    (alone, calls0), (batched, calls1) = runs[0], runs[1]
    assert calls0 == [1, 1] and calls1 == [2] and batched.path == "global"
    assert [a["why"] for a in batched.attempts] == ["first try", "stronger edit"]
    assert batched.attempts[1]["reused"] == "run in one batched call with attempt 1"
    assert [a["failed"] for a in batched.attempts] == [a["failed"] for a in alone.attempts]


@pytest.mark.slow
def test_a_result_run_ahead_on_another_region_is_not_reused(settings, registry):
    """First try on cat 1, then the other candidate (cat 2: its own mask), then the stronger edit, which ran
    ahead on cat 1's mask. One call each, it would run on the region the turn has by then (cat 2's): so
    it runs again rather than reuse pixels of the wrong region."""
    from types import SimpleNamespace

    job = pipeline.Job(action="attribute", phrase="cat", instruction="make the cat red",
                       source_caption="a photo of a cat", target_caption="a photo of a red cat")
    other = (10, 20, 50, 70)
    tie = lambda detections, size: SimpleNamespace(indices=[0], alternatives=[1], certain=False)  # noqa: E731
    runs = {}
    for limit in (0, 1):
        s = settings.model_copy(update={"max_attempts": 3, "attempt_order": ["primary", "other-candidate", "stronger"],
                                        "batch_retries": limit})
        worker = CountingWorker(s, registry=registry, objects={"cat": [CAT, other]})
        runs[limit] = (pipeline.run(worker, scene(SIZE, boxes=[CAT, other]), job, s, choose=tie), worker.calls)
    (alone, calls0), (batched, calls1) = runs[0], runs[1]
    assert [a["why"] for a in alone.attempts] == ["first try", "the other candidate", "stronger edit"]
    assert calls0 == [1, 1, 1] and calls1 == [2, 1, 1]  # the stronger edit ran ahead, then again
    assert not any(a.get("reused") for a in batched.attempts)
    assert [a["indices"] for a in batched.attempts] == [a["indices"] for a in alone.attempts]
    for a, b in zip(batched.attempts, alone.attempts):
        assert a["scores"]["clip_dir_region"] == pytest.approx(b["scores"]["clip_dir_region"], abs=0.01)


# --------------------------------------------------------------------------- the chat


def turn_paths(chat) -> list[str]:
    state = chat.state()
    return [p for p in [*(a.get("path") for a in state["attempts"]), *(a["path"] for a in state.get("ahead") or []),
                        (state.get("baseline") or {}).get("path")] if p]


@pytest.mark.slow
def test_the_chat_reuses_a_stronger_edit_run_ahead(judged):
    """The first try leaves the cat as it was; the stronger edit ran with it in one call, so it is there when
    the judge asks for it. The baseline is the first try's pre-composite output (free): two edits in all."""
    chat, worker = judged(unchanged, recolour(BLUE), baseline=recolour(BLUE), attempt_order=STRONGER_FIRST,
                          batch_retries=1)
    reply = chat.send("make the leftmost cat blue")
    first, second, *_ = chat.state()["attempts"]
    assert first["failed"] == ["unchanged"] and second["why"] == "stronger edit" and second["problems"] == []
    assert second["reused"] == "run in one batched call with attempt 1"
    assert worker.batches == [["ip2p-composite", "ip2p-composite"]]
    assert [r.editor for r in worker.requests] == ["ip2p-composite", "ip2p-composite"]  # the baseline was free
    assert second["guidance_scale"] > first["guidance_scale"] and chat.current_image_path() == second["path"]
    assert reply.attempts[1]["reused"] == second["reused"]
    assert not set(turn_paths(chat)) & set(ImageStore.staged())  # kept: written; the rest: forgotten


@pytest.mark.slow
def test_the_lazy_baseline_runs_in_the_first_attempts_call(judged):
    """Black-masked input: the baseline is not free. Purple passes every other check, so the judge compares
    it with the baseline, which ran in the first attempt's call: no second call; the purple loses to it."""
    chat, worker = judged(recolour((255, 1, 255)), baseline=recolour(BLUE), black_mask_input=True, batch_retries=1)
    reply = chat.send("make the leftmost cat blue")
    first, second = chat.state()["attempts"]
    assert worker.batches == [["ip2p-composite", "ip2p"]] and len(worker.requests) == 2
    assert first["failed"] == ["baseline"] and second["reused"] == "run in one batched call with attempt 1"
    assert reply.attempts[0]["versus_baseline"]["worse"]
    assert chat.current_image_path() == second["path"]


@pytest.mark.slow
def test_a_result_run_ahead_and_not_needed_is_never_written(judged):
    """The first try passes: the stronger edit run with it is dropped, unwritten, when the turn ends."""
    chat, worker = judged(recolour(BLUE), recolour((255, 1, 255)), baseline=recolour(BLUE),
                          attempt_order=STRONGER_FIRST, batch_retries=1)
    chat.send("make the leftmost cat blue")
    state = chat.state()
    assert len(state["attempts"]) == 1 and state["attempts"][0]["problems"] == []
    assert worker.batches == [["ip2p-composite", "ip2p-composite"]]
    (ahead,) = state["ahead"]
    stronger = {**state["attempts"][0], **judge.move_knobs("ip2p-composite", state["attempts"][0], +1).knobs}
    assert ahead["key"] == list(pipeline.attempt_key(stronger))
    assert not Path(ahead["path"]).exists() and ahead["path"] not in ImageStore.staged()
    assert Path(chat.current_image_path()).exists()
