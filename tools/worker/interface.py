"""The ``Worker`` interface: the one door between the agent and the vision models.

The agent, the CLI and the evaluation harness talk to a ``Worker``; :class:`~tools.worker.local.LocalWorker`
runs the tools in this process (the default) and :class:`~tools.worker.client.RemoteWorker` speaks the
same interface over HTTP. Images cross it as PIL images (RGB, original size) and masks as boolean
numpy arrays ``(H, W)``.

One method is optional: ``edit_batch(image, masks, requests, progress=None, cancel=None)``, several
edits of one photo in one batched InstructPix2Pix call (:meth:`tools.worker.local.LocalWorker.edit_batch`).
The agent runs the judge's queued attempts ahead through it where a worker has it
(:func:`agent.conversation.pipeline.batch_limit`); a remote worker batches its users' requests itself.
"""

from __future__ import annotations

from typing import Callable, Optional, Protocol, Sequence, runtime_checkable

import numpy as np
from PIL import Image

from tools.types import Box, CancelFlag, Caption, Detection, EditRequest, EditResult, Point, Scores, Segmentation

ProgressFn = Callable[[int, int], None]
"""Called as ``progress(step, total)`` during long work (diffusion steps)."""


@runtime_checkable
class Worker(Protocol):
    """What the agent may ask of the vision side."""

    def caption(self, image: Image.Image) -> Caption:
        """Describe the image (BLIP-2); cached per image content."""

    def ground(self, image: Image.Image, phrase: str, *, box_threshold: Optional[float] = None,
               text_threshold: Optional[float] = None) -> list[Detection]:
        """Boxes for ``phrase`` (GroundingDINO), best first, in original pixels."""

    def segment(self, image: Image.Image, boxes: Sequence[Box] = (), points: Sequence[Point] = (),
                point_labels: Optional[Sequence[int]] = None) -> Segmentation:
        """One mask covering the objects in ``boxes`` (SAM); embedding cached per image.

        ``points`` (with ``point_labels``: 1 on the object, 0 not on it; default all 1) make one
        prompt together with at most one box: a click on an object, and clicks that refine it.
        See :meth:`tools.segment.Segmenter.segment`.
        """

    def edit(self, image: Image.Image, mask: Optional[np.ndarray], request: EditRequest,
             progress: Optional[ProgressFn] = None, cancel: Optional[CancelFlag] = None) -> EditResult:
        """Run ``request.editor``; masked editors keep pixels outside ``mask`` unchanged.

        ``cancel``: once set, the edit stops at its next diffusion step and raises
        :class:`~tools.types.Cancelled` (no result is returned).
        """

    def score(self, original: Image.Image, edited: Image.Image, *, mask: Optional[np.ndarray] = None,
              box: Optional[Box] = None, boxes: Sequence[Box] = (), source_caption: str = "",
              target_caption: str = "", target_text: str = "", source_text: str = "") -> Scores:
        """CLIP-I, CLIP-T, CLIP direction, CLIP-RC, CLIP-GC and L1/L2 outside (``tools.score``).

        ``mask`` is the undilated object mask, ``boxes`` (and ``box``) the target box(es) of the
        evaluation region (:mod:`tools.region`); ``target_text`` / ``source_text`` are CLIP-RC's
        target and source categories.
        """

    def status(self) -> dict:
        """Which models are loaded, device, dtype, cache sizes and hits."""
