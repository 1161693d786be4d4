"""The in-process worker: the vision tools in this process, each model loaded once and kept."""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator, Optional, Sequence

import numpy as np
from PIL import Image

from tools.stopping import current_flag, either, stop_between_blocks
from tools.types import (Box, CancelFlag, Caption, Detection, EditRequest, EditResult, LocaleditError, Point, Scores,
                         Segmentation)
from tools.worker.interface import ProgressFn

STOPPABLE = {"caption": ("caption",), "ground": ("detector", "sam3"), "segment": ("sam", "sam2", "sam3"),
             "score": ("clip",)}
"""The model roles each non-diffusion tool may run (those loaded get stop hooks: :mod:`tools.stopping`)."""


class LocalWorker:
    """The in-process worker: loads each model on first use and keeps it, with per-image caches.

    Args:
        settings: configuration (defaults to the environment's).
        registry: the model registry to use (defaults to a new one for ``settings``).
    """

    def __init__(self, settings=None, registry=None):
        from tools.cache import ByteLRU
        from tools.config import get_settings

        self.settings = settings or get_settings()
        self._registry = registry
        self.caches = {name: ByteLRU(self.settings.cache_bytes, name) for name in ("caption", "sam", "clip")}
        self._tools: dict[str, object] = {}
        self._build_lock = threading.Lock()
        # one model call at a time: pipelines keep scheduler state, predictors keep the set image
        self._run_lock = threading.RLock()

    @property
    def registry(self):
        if self._registry is None:
            from tools.models import ModelRegistry

            self._registry = ModelRegistry(self.settings)
        return self._registry

    def _tool(self, name: str):
        """Build each tool once, around the model the registry loads for it."""
        with self._build_lock:
            if name not in self._tools:
                self._tools[name] = self._build(name)
            return self._tools[name]

    def _build(self, name: str):
        reg = self.registry
        if name == "caption":
            from tools.caption import Captioner

            loaded = reg.get("caption")
            return Captioner(loaded.model, loaded.processor, reg.device, reg.dtype, cache=self.caches["caption"])
        if name == "ground" and self.settings.grounder == "sam3":
            from tools.ground_sam3 import build_grounder

            return build_grounder(reg, self.settings)
        if name == "segment" and (self.settings.grounder == "sam3" or self.settings.segmenter == "sam2"):
            from tools.ground_sam3 import build_segmenter
            from tools.segment import Segmenter

            return build_segmenter(reg, self.settings, self._sam, lambda: self._tools.get("ground"))
        if name == "ground":
            from tools.ground import Grounder

            loaded = reg.get("detector")
            return Grounder(loaded.model, loaded.processor, reg.device, reg.dtype_of("detector"),
                            box_threshold=self.settings.box_threshold,
                            text_threshold=self.settings.text_threshold)
        if name == "segment":
            return self._sam()
        if name == "score":
            from tools.score import Scorer

            loaded = reg.get("clip")
            return Scorer(loaded.model, loaded.processor, reg.device, reg.dtype, cache=self.caches["clip"])
        if name == "edit":
            from tools.edit import Editor

            return Editor(reg, self.settings)
        raise KeyError(name)

    def _sam(self):
        """SAM behind :class:`tools.segment.Segmenter`, its image encoder in bf16 on CUDA (``LOCALEDIT_SAM_BF16``)."""
        from tools.segment import Segmenter, encoder_dtype

        reg = self.registry
        return Segmenter(reg.get("sam").model, cache=self.caches["sam"],
                         encoder_dtype=encoder_dtype(reg.device, self.settings.sam_bf16))

    def caption(self, image: Image.Image) -> Caption:
        from tools.caption import Captioner

        with self._run_lock:
            hit = Captioner.cached(self.caches["caption"], image)  # a known photo: BLIP-2 need not load
            if hit is not None:
                return hit
            with self.registry.stage("caption"), self._stoppable("caption") as tool:
                return tool.caption(image)

    def ground(self, image: Image.Image, phrase: str, *, box_threshold: Optional[float] = None,
               text_threshold: Optional[float] = None) -> list[Detection]:
        with self._run_lock, self.registry.stage("detector"), self._stoppable("ground") as tool:
            return tool.detect(image, phrase, box_threshold=box_threshold,
                                               text_threshold=text_threshold)

    def segment(self, image: Image.Image, boxes: Sequence[Box] = (), points: Sequence[Point] = (),
                point_labels: Optional[Sequence[int]] = None) -> Segmentation:
        with self._run_lock, self.registry.stage("sam"), self._stoppable("segment") as tool:
            return tool.segment(image, boxes, points=points, point_labels=point_labels)

    def edit(self, image: Image.Image, mask: Optional[np.ndarray], request: EditRequest,
             progress: Optional[ProgressFn] = None, cancel: Optional[CancelFlag] = None) -> EditResult:
        from tools.edit import ROLES

        # a turn cancelled (or a call given up) while it waited here stops before its first step
        cancel = either(cancel, current_flag())
        with self._run_lock, self.registry.stage(ROLES.get(request.editor, "ip2p")):
            return self._tool("edit").edit(image, mask, request, progress=progress, cancel=cancel)

    def batch_pays(self) -> bool:
        """Whether several edits in one batched call cost clearly less than one by one: on a GPU, where one
        InstructPix2Pix step leaves the device mostly idle; not on a CPU, busy at one edit already
        (docs/speed.md). Loads no model."""
        return self.registry.device.type == "cuda"

    def edit_batch(self, image: Image.Image, masks: Sequence[Optional[np.ndarray]], requests: Sequence[EditRequest],
                   progress: Optional[ProgressFn] = None, cancel: Optional[CancelFlag] = None) -> list[Any]:
        """Several edits of ``image`` at once: those that share the InstructPix2Pix pipeline (same work size
        and steps; knobs, seeds and masks may differ) run as ONE batched pipeline call
        (:func:`tools.worker.batch.run_grouped`), the rest one by one. Each gets the pixels it gets alone
        (up to floating-point batching). Returns per request its :class:`EditResult` or the
        :class:`~tools.types.LocaleditError` it raised (the first request's other errors are raised); ``progress`` follows the first request (the
        call); ``cancel`` stops them all. A batch that ran out of GPU memory runs the first alone.
        """
        import torch

        from tools.worker.batch import BatchItem, edit_item, run_grouped

        cancel = either(cancel, current_flag())
        items = [BatchItem(image, mask, request, progress if i == 0 else None, cancel)
                 for i, (mask, request) in enumerate(zip(masks, requests))]
        with self._run_lock, self.registry.stage("ip2p"):  # an item that runs alone: self.edit, its own stage
            answers = run_grouped(self.registry, self.settings, items, lambda item: edit_item(self, item))
            first = answers[0]
            if len(items) > 1 and isinstance(first, LocaleditError) and \
                    isinstance(first.__cause__, torch.cuda.OutOfMemoryError):
                answers = [edit_item(self, items[0])] + [first] * (len(items) - 1)
        if isinstance(answers[0], Exception) and not isinstance(answers[0], LocaleditError):
            raise answers[0]  # the edit asked for fails as it would alone; one run ahead only answers its error
        return [LocaleditError(f"The edit failed ({type(a).__name__}: {a}).")
                if isinstance(a, Exception) and not isinstance(a, LocaleditError) else a for a in answers]

    def score(self, original: Image.Image, edited: Image.Image, *, mask: Optional[np.ndarray] = None,
              box: Optional[Box] = None, boxes: Sequence[Box] = (), source_caption: str = "",
              target_caption: str = "", target_text: str = "", source_text: str = "") -> Scores:
        with self._run_lock, self.registry.stage("clip"), self._stoppable("score") as tool:
            return tool.score(original, edited, mask=mask, box=box, boxes=boxes,
                                             source_caption=source_caption, target_caption=target_caption,
                                             target_text=target_text, source_text=source_text)

    @contextlib.contextmanager
    def _stoppable(self, name: str) -> Iterator[Any]:
        """Tool ``name``, its loaded models stopping at their next block once the call running here
        is given up (:func:`tools.stopping.stop_between_blocks`; nothing is added outside such a call)."""
        tool = self._tool(name)
        if current_flag() is None:
            yield tool
            return
        loaded = set(self.registry.loaded())
        models = [self.registry.get(role).model for role in STOPPABLE[name] if role in loaded]
        with stop_between_blocks(models, what=f"the {name} model"):
            yield tool

    def release(self, role: str) -> bool:
        """Unload ``role`` and the tools built on it (the caches stay); True if it was loaded.
        The benchmark does this to keep one full-size model in memory at a time."""
        uses = {"caption": ("caption",), "detector": ("ground",), "sam": ("segment",), "clip": ("score",)}
        with self._run_lock, self._build_lock:
            for name in uses.get(role, ("edit",) if role in ("ip2p", "sd", "inpaint", "taesd", "qwen-edit", "kontext",
                                                             "klein") else ()):
                self._tools.pop(name, None)
            return self._registry.release(role) if self._registry is not None else False

    def status(self) -> dict:
        reg = self._registry
        return {
            "kind": "local",
            "device": str(reg.device) if reg else None,
            "dtype": str(reg.dtype).replace("torch.", "") if reg else None,
            "loaded": reg.loaded() if reg else [],
            "caches": {name: cache.stats() for name, cache in self.caches.items()},
        }
