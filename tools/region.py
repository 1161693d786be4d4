"""The evaluation region of a sample, and the one function that scores an edit on it.

R-SIE (section 4.3) measures an edit on the *target* region, not on whatever an editor chose to
change: CLIP-RC crops the target box b_target from the output, CLIP-GC "removes the target object
region from both the output image and the input image". So every attempt of a turn and every
editor of an evaluation sample is scored against the same :class:`EvalRegion`:

- ``boxes``: the target box(es), original pixels; CLIP-RC crops each, CLIP-GC blanks them all;
- ``mask``: the undilated object mask (bool ``(H, W)``); L1 / L2 outside are taken outside it,
  so a masked editor's dilation and feather band count against it, and so does every pixel the
  whole-image baseline moves. Without a mask the boxes stand in for it.

:func:`score_edit` is what the pipeline's score stage (``agent.conversation.pipeline.score``) calls, for the
chat, ``localedit edit`` and ``localedit eval`` alike. It goes through anything with the worker's
``score`` method (:class:`Scorer`; a ``tools.worker.Worker``), so this module never imports torch,
nor the worker package (a vision module sits below it: tests/test_layout.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

import numpy as np
from PIL import Image

from tools.images import box_to_mask, mask_bbox
from tools.seam import seam_profile
from tools.types import Box, Scores

__all__ = ["EvalRegion", "Scorer", "evaluation_region", "rc_labels", "score_edit"]


class Scorer(Protocol):
    """What :func:`score_edit` needs of a worker: ``tools.worker.Worker.score``."""

    def score(self, original: Image.Image, edited: Image.Image, *, mask: Optional[np.ndarray] = None,
              box: Optional[Box] = None, boxes: Sequence[Box] = (), source_caption: str = "",
              target_caption: str = "", target_text: str = "", source_text: str = "") -> Scores: ...


@dataclass(frozen=True)
class EvalRegion:
    """The region every attempt and editor of one sample is measured on."""

    boxes: tuple[Box, ...]  # target box(es), (x0, y0, x1, y1) original pixels; at least one
    mask: Optional[np.ndarray] = None  # undilated object mask, bool (H, W); None: the boxes
    source: str = ""  # where it came from: "grounded", "gt-mask", "gt-box", "user-mask", "box"

    def fill(self) -> Optional[float]:
        """How much of its box(es) the mask covers, 0-1 (None without a mask): the judge's check that
        the mask is the object and not a part of it (``agent.conversation.judge``)."""
        if self.mask is None or not self.boxes:
            return None
        h, w = self.mask.shape
        boxes = np.zeros((h, w), bool)
        for b in self.boxes:
            boxes |= box_to_mask(b, (w, h))
        area = int(boxes.sum())
        return None if area == 0 else float((self.mask & boxes).sum()) / area


def evaluation_region(boxes: Sequence[Box] = (), mask: Optional[np.ndarray] = None,
                      source: str = "") -> Optional[EvalRegion]:
    """The :class:`EvalRegion` of ``boxes`` and ``mask``; None when they name no region.

    Without boxes the mask's bounding box is the target box (R-SIE's ``b_target``); an empty
    mask with no boxes is no region.
    """
    m = None if mask is None else np.asarray(mask, dtype=bool)
    found = tuple(tuple(float(v) for v in b) for b in boxes)
    if not found and m is not None and m.any():
        found = (mask_bbox(m),)
    if not found:
        return None
    return EvalRegion(boxes=found, mask=m, source=source)


def _bare(label: Optional[str]) -> str:
    """A category name without a leading article: 'a fox' -> 'fox'."""
    return re.sub(r"^(a|an|the|some)\s+", "", (label or "").strip(), flags=re.I)


def rc_labels(action: str, target: Optional[str], new_value: Optional[str]) -> tuple[str, str]:
    """``(target category, source category)`` for CLIP-RC from an edit's action and names.

    R-SIE's categories are object classes (``c_target`` replaces ``c_source``). Here: replace ->
    the new value ("fox") against the target ("cat"); attribute -> "red cat" against "cat"; add
    -> "cat with a hat" against "cat"; remove -> no target category (CLIP-RC is None) and the
    source category, whose probability (``clip_rc_source``) should drop, as R-SIE's Delete RC.
    A global edit has neither.
    """
    source = _bare(target)
    value = (new_value or "").strip()
    if action == "replace":
        return _bare(value), source
    if action == "attribute":
        return (f"{value} {source}".strip() if value else ""), source
    if action == "add":
        return (f"{source} with {value}" if source and value else _bare(value)), source
    if action == "remove":
        return "", source
    return "", ""


def score_edit(worker: Scorer, original: Image.Image, edited: Image.Image, region: Optional[EvalRegion], *,
               source_caption: str = "", target_caption: str = "", target_label: str = "",
               source_label: str = "", edit_region: Optional[np.ndarray] = None) -> Scores:
    """The metrics of ``edited`` against ``original`` on ``region`` (see :class:`~tools.types.Scores`).

    Args:
        worker: the vision worker that runs CLIP.
        original: the image the edit started from, RGB.
        edited: the edit's result (resized to ``original``'s size by the scorer if it differs).
        region: the sample's evaluation region; None (a global edit) leaves CLIP-RC, CLIP-GC and
            L1 / L2 outside empty.
        source_caption, target_caption: the captions of CLIP-T and CLIP direction.
        target_label, source_label: CLIP-RC's target and source categories (:func:`rc_labels`).
        edit_region: what a masked editor was allowed to change (``EditResult.region``, bool ``(H, W)``):
            the seam (:mod:`tools.seam`) is measured at its edge, here (pixels only, no model).
    """
    if region is None:
        scores = worker.score(original, edited, source_caption=source_caption, target_caption=target_caption)
    else:
        scores = worker.score(original, edited, mask=region.mask, boxes=list(region.boxes),
                              source_caption=source_caption, target_caption=target_caption,
                              target_text=target_label, source_text=source_label)
    if edit_region is not None:
        view = edited if edited.size == original.size else edited.resize(original.size, Image.Resampling.LANCZOS)
        scores.seam, scores.seam_step, _ = seam_profile(original, view, edit_region)
    return scores
