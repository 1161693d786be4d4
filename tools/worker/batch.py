"""Batched edits: several InstructPix2Pix edits run as one pipeline call.

Two kinds of batch meet here: concurrent requests of different users on one served worker
(:meth:`tools.worker.server.WorkerService.edit_batch`), and the judge's attempts of one turn that
share the InstructPix2Pix pipeline, run together on speculation (:meth:`tools.worker.local.LocalWorker.edit_batch`,
``settings.batch_retries``). Either way :func:`run_batched` runs the normal :class:`~tools.edit.Editor`
once per edit, each in its own thread, and their pipeline calls meet in a :class:`BatchedPipe`, which
:class:`PipeRegistry` hands to the editor in place of the real pipeline. Items that differ only in
prompt, image, seed or guidances share a call; different guidances go through
:func:`tools.editors.ip2p.guided_batch` (guidance per item).
"""

from __future__ import annotations

import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, Iterator, Optional

import numpy as np

from tools.types import Cancelled, EditRequest, EditResult

BATCHABLE = ("ip2p", "ip2p-composite")
"""Editors whose work is one InstructPix2Pix pipeline call (regionwise shares the weights, not the call)."""


class BatchBroken(RuntimeError):
    """The members of a batch did not all arrive in time."""


class BatchedPipe:
    """Stands in for a diffusers pipeline shared by ``n`` threads: their ``pipe(...)`` calls wait for
    each other and run as ONE call with lists of prompts, images and (per-request) generators, so each
    request keeps its own seed, and per-item guidances (:func:`tools.editors.ip2p.guided_batch` when they
    differ). Every other keyword must be the same for all (the batch key).

    Each member runs inside :meth:`member`; one that leaves it without calling (it failed or was
    cancelled first) is taken off the batch, which runs without it. A member cancelled during the call (its step callback raises
    :class:`~tools.types.Cancelled`) stops receiving progress and gets its ``Cancelled`` back at the
    end; the call itself stops only when every member is cancelled.
    """

    PER_ITEM = ("prompt", "image", "generator", "callback_on_step_end", "guidance_scale", "image_guidance_scale")

    def __init__(self, pipe, n: int, timeout: float):
        self._pipe = pipe
        self._expected = n
        self._timeout = timeout
        self._calls: list[dict] = []
        self._member = threading.local()  # whether this thread's member has called the pipe
        self._images: list = []
        self._dropped: dict[int, BaseException] = {}
        self._error: Optional[BaseException] = None
        self._started = self._done = False
        self._cond = threading.Condition()

    def __getattr__(self, name: str):  # scheduler, num_timesteps, ...: the real pipeline's
        return getattr(self._pipe, name)

    def __call__(self, **kwargs):
        with self._cond:
            slot = len(self._calls)
            self._calls.append(kwargs)
            self._member.called = True
            runner = self._claim()
        if runner:
            self._run()
        with self._cond:  # the limit is on the others' arrival; a batch that started runs as long as it needs
            if not self._cond.wait_for(lambda: self._started, timeout=self._timeout):
                raise BatchBroken(f"the other edits of the batch did not arrive within {self._timeout:g} s")
            self._cond.wait_for(lambda: self._done)
        if self._error is not None:
            raise self._error
        if slot in self._dropped:
            raise self._dropped[slot]
        return SimpleNamespace(images=[self._images[slot]])

    @contextmanager
    def member(self) -> Iterator[None]:
        """One member's work (in its own thread); leaving it without a pipe call leaves the batch."""
        self._member.called = False
        try:
            yield
        finally:
            if not self._member.called:
                with self._cond:
                    self._expected -= 1
                    runner = self._claim()
                if runner:
                    self._run()

    def _claim(self) -> bool:
        """(Under the lock) whether the caller should run the batch now: everyone expected is here."""
        if self._started or len(self._calls) < self._expected or not self._calls:
            return False
        self._started = True
        return True

    def _run(self) -> None:
        calls = self._calls
        shared = {k: v for k, v in calls[0].items() if k not in self.PER_ITEM}
        callbacks = [c.get("callback_on_step_end") for c in calls]

        def on_step_end(pipe, i, t, kwargs):
            for slot, callback in enumerate(callbacks):
                if callback is None or slot in self._dropped:
                    continue
                try:
                    callback(pipe, i, t, kwargs)
                except Exception as err:  # noqa: BLE001 - Cancelled (or a broken progress): this member only
                    self._dropped[slot] = err
            if len(self._dropped) == len(calls):
                raise Cancelled(f"every edit of the batch was stopped (step {i + 1}).")
            return kwargs

        try:
            if any({k: v for k, v in c.items() if k not in self.PER_ITEM} != shared for c in calls[1:]):
                raise ValueError("the batched edits do not share their settings")
            items = {k: [c[k] for c in calls] for k in ("prompt", "image", "generator", "guidance_scale",
                                                         "image_guidance_scale")}
            if len(set(zip(items["guidance_scale"], items["image_guidance_scale"]))) == 1:  # the pipeline's own call
                self._images = self._pipe(**shared, prompt=items["prompt"], image=items["image"],
                                          generator=items["generator"], guidance_scale=calls[0]["guidance_scale"],
                                          image_guidance_scale=calls[0]["image_guidance_scale"],
                                          callback_on_step_end=on_step_end).images
            else:
                from tools.editors.ip2p import guided_batch

                self._images = guided_batch(self._pipe, **items, num_inference_steps=shared["num_inference_steps"],
                                            callback_on_step_end=on_step_end)
        except BaseException as err:  # noqa: BLE001 - handed to every caller
            self._error = next(iter(self._dropped.values())) if len(self._dropped) == len(calls) else err
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()


class PipeRegistry:
    """A model registry whose ``role`` answers with ``pipe`` (everything else: the real registry)."""

    def __init__(self, registry, role: str, pipe):
        self._registry, self._role, self._pipe = registry, role, pipe
        self.device, self.dtype = registry.device, registry.dtype

    def get(self, role: str):
        from tools.models import Loaded

        return Loaded(self._pipe) if role == self._role else self._registry.get(role)


@dataclass
class BatchItem:
    """One edit of a batch: what :meth:`tools.edit.Editor.edit` takes."""

    image: Any  # PIL image, RGB
    mask: Optional[np.ndarray]
    request: EditRequest
    progress: Optional[Callable[[int, int], None]] = None
    cancel: Any = None  # a CancelFlag


def batch_key(editor, item: BatchItem) -> Optional[tuple]:
    """What the edits of one batch must share, or None for an edit that runs alone (``editor``: a
    :class:`~tools.edit.Editor`). Raises :class:`~tools.types.LocaleditError` for a bad request.

    The InstructPix2Pix editors at the same work size (a crop has its own), steps and black mask
    share a call; guidances may differ as long as every item runs the three guidance branches."""
    req = editor.resolve(item.request)
    mask = editor.check_mask(item.image, item.mask, req.editor)
    if req.editor not in BATCHABLE:
        return None
    crop = editor.crop_for(req, mask)
    work = crop.work if crop else editor.work_for(req, item.image.size)
    guided = req.guidance_scale > 1.0 and req.image_guidance_scale >= 1.0
    return ("ip2p", work, req.steps, guided or (req.guidance_scale, req.image_guidance_scale))


def run_batched(registry, settings, items: list[BatchItem]) -> list[Any]:
    """Run ``items`` (of one :func:`batch_key`) as one pipeline call; per item its
    :class:`~tools.types.EditResult` or the exception it raised.

    Each item runs the normal :class:`~tools.edit.Editor` in its own thread; their pipeline calls
    meet in a :class:`BatchedPipe`. An item that fails or is cancelled before its pipeline call
    leaves the batch; one cancelled during the call drops out of it alone. A batch that broke (its
    members did not all arrive) runs its unfinished items one by one."""
    from tools.edit import Editor

    pipe = BatchedPipe(registry.get("ip2p").model, len(items), timeout=settings.worker_timeout)
    editor = Editor(PipeRegistry(registry, "ip2p", pipe), settings)

    def run(item: BatchItem) -> Any:
        with pipe.member():  # leaving without a pipeline call (failed or cancelled first): the rest go on
            return edit_item(editor, item)

    with ThreadPoolExecutor(max_workers=len(items), thread_name_prefix="edit-batch") as pool:
        # each thread in a copy of the caller's context: its progress may write to the caller's stream
        # (LangGraph's stream writer and the stop flags are context variables)
        contexts = [contextvars.copy_context() for _ in items]  # copied here, in the caller's thread
        answers = list(pool.map(lambda context, item: context.run(run, item), contexts, items))
    if any(isinstance(a, BatchBroken) for a in answers):
        alone = Editor(registry, settings)
        return [a if isinstance(a, EditResult) else edit_item(alone, i) for a, i in zip(answers, items)]
    return answers


def edit_item(editor, item: BatchItem) -> Any:
    """``item`` on ``editor`` (an :class:`~tools.edit.Editor`, a worker, or an editor on a batch's pipe): its
    result or the exception it raised."""
    try:
        return editor.edit(item.image, item.mask, item.request, progress=item.progress, cancel=item.cancel)
    except Exception as err:  # noqa: BLE001 - this item's answer
        return err


def run_grouped(registry, settings, items: list[BatchItem], alone: Callable[[BatchItem], Any]) -> list[Any]:
    """Every item, those of one :func:`batch_key` together (:func:`run_batched`), the rest through
    ``alone``; per item its result or the exception it raised (a bad request answers its own error)."""
    from tools.edit import Editor

    editor = Editor(registry, settings)
    results: list[Any] = [None] * len(items)
    groups: dict[Any, list[int]] = {}
    for i, item in enumerate(items):
        try:
            groups.setdefault(batch_key(editor, item) or ("alone", i), []).append(i)
        except Exception as err:  # noqa: BLE001 - a bad request answers its own error, the others go on
            results[i] = err
    for members in groups.values():
        batch = [items[i] for i in members]
        answers = run_batched(registry, settings, batch) if len(batch) > 1 else [alone(batch[0])]
        for i, answer in zip(members, answers):
            if isinstance(answer, EditResult):
                answer.info["batch_size"] = len(batch)
            results[i] = answer
    return results
