"""Batched edits for the worker: several requests' InstructPix2Pix calls run as one pipeline call.

:class:`BatchedPipe` stands in for the pipeline shared by the threads of one batch
(:meth:`tools.worker.server.WorkerService._run_batched`); :class:`PipeRegistry` hands it to the
normal :class:`~tools.edit.Editor` in place of the real pipeline.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Iterator, Optional

from tools.types import Cancelled


class BatchBroken(RuntimeError):
    """The members of a batch did not all arrive in time."""


class BatchedPipe:
    """Stands in for a diffusers pipeline shared by ``n`` threads: their ``pipe(...)`` calls wait for
    each other and run as ONE call with lists of prompts, images and (per-request) generators, so each
    request keeps its own seed. Every other keyword must be the same for all (the batch key).

    Each member runs inside :meth:`member`; one that leaves it without calling (it failed or was
    cancelled first) is taken off the batch, which runs without it. A member cancelled during the call (its step callback raises
    :class:`~tools.types.Cancelled`) stops receiving progress and gets its ``Cancelled`` back at the
    end; the call itself stops only when every member is cancelled.
    """

    PER_ITEM = ("prompt", "image", "generator", "callback_on_step_end")

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
        with self._cond:
            if not self._cond.wait_for(lambda: self._done, timeout=self._timeout):
                raise BatchBroken(f"the other edits of the batch did not arrive within {self._timeout:g} s")
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
            self._images = self._pipe(**shared, prompt=[c["prompt"] for c in calls],
                                      image=[c["image"] for c in calls],
                                      generator=[c["generator"] for c in calls],
                                      callback_on_step_end=on_step_end).images
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
