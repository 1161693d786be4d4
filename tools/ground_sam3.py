"""SAM 3 as grounder and segmenter in one, and SAM 2.1 as a box / point segmenter (issue 20).

``--grounder sam3`` (``LOCALEDIT_GROUNDER=sam3``): :class:`Sam3Grounder` gives, for the plan's noun
phrase, every instance SAM 3 finds (``Sam3Model`` + ``Sam3Processor``, promptable concept
segmentation), each as a :class:`~tools.types.Detection` (its box and score) with its mask kept
beside it. Selection by position, size or ordinal then works on these instances exactly as on
GroundingDINO's boxes (it sees only the detections), and :class:`InstanceSegmenter` hands back the
chosen instances' own masks instead of running SAM on their boxes. A box that is not one of SAM 3's
instances (``--box``, a click) goes to the box / point segmenter.

``--segmenter sam2`` (``LOCALEDIT_SEGMENTER=sam2``): :class:`Sam2Segmenter` runs SAM 2.1
(``Sam2Model`` + ``Sam2Processor``) on box and point prompts, with the same rules as
:class:`tools.segment.Segmenter` (one prompt per box, the mask kept inside the box grown by 10 %,
the box itself where the mask is empty; points and at most one box in one prompt).

GroundingDINO + SAM stays the default.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from tools.ground import clean_label, keep_boxes, split_phrases
from tools.images import box_to_mask, clip_mask_to_box, content_hash
from tools.segment import BOX_GROW, MAX_POINTS, MIN_MASK_FRACTION, _clamp
from tools.types import Box, Detection, Point, Segmentation

KEPT_IMAGES = 4
"""Instance masks are kept for this many most recent photos (one grounding each, then its selection)."""


def _box_key(box: Sequence[float]) -> tuple[int, ...]:
    return tuple(int(round(float(v))) for v in box)


class Sam3Grounder:
    """SAM 3 over one image at a time: ``detect(image, phrase) -> [Detection]``, masks kept.

    ``threshold`` keeps instances whose score (SAM 3's query score times its presence score)
    exceeds it; ``mask_threshold`` binarises the mask logits.
    """

    def __init__(self, model: Any, processor: Any, device: torch.device | str, dtype: torch.dtype,
                 threshold: float = 0.5, mask_threshold: float = 0.5):
        self.model = model
        self.processor = processor
        self.device = torch.device(device)
        self.dtype = dtype
        self.threshold = float(threshold)
        self.mask_threshold = float(mask_threshold)
        self._masks: OrderedDict[str, dict[tuple[int, ...], np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    @torch.no_grad()
    def detect(self, image: Image.Image, phrase: str | Sequence[str], *, box_threshold: Optional[float] = None,
               text_threshold: Optional[float] = None) -> list[Detection]:
        """Every instance of ``phrase`` (or of each of several phrases) in ``image``, best first.

        Boxes are in original pixels, clamped; degenerate boxes and near-duplicates (IoU > 0.8 with
        a better one) are dropped. ``box_threshold`` overrides the score threshold;
        ``text_threshold`` is GroundingDINO's and is not used. An empty phrase gives ``[]``.
        """
        phrases = split_phrases(phrase) if isinstance(phrase, str) else \
            [p for item in phrase for p in split_phrases(item)]
        if not phrases:
            return []
        threshold = self.threshold if box_threshold is None else float(box_threshold)
        image = image if image.mode == "RGB" else image.convert("RGB")
        w, h = image.size
        found: list[tuple[str, float, torch.Tensor, np.ndarray]] = []
        for text in phrases:
            inputs = self.processor(images=image, text=text, return_tensors="pt")
            sizes = inputs["original_sizes"].tolist()
            inputs = {k: (v.to(self.device, self.dtype) if k == "pixel_values" else v.to(self.device))
                      for k, v in inputs.items() if k != "original_sizes"}
            with self._lock:
                outputs = self.model(**inputs)
            result = self.processor.post_process_instance_segmentation(
                outputs, threshold=threshold, mask_threshold=self.mask_threshold, target_sizes=sizes)[0]
            for score, box, mask in zip(result["scores"], result["boxes"], result["masks"]):
                found.append((clean_label(text), float(score), box.float().cpu(), mask.bool().cpu().numpy()))
        if not found:
            return []
        boxes = torch.stack([f[2] for f in found])
        scores = torch.tensor([f[1] for f in found])
        detections, masks = [], {}
        for i in keep_boxes(boxes, scores, (w, h)):
            box = tuple(float(v) for v in boxes[i])
            detections.append(Detection(label=found[i][0], score=found[i][1], box=box))  # type: ignore[arg-type]
            masks[_box_key(box)] = found[i][3]
        self._remember(content_hash(image), masks)
        detections.sort(key=lambda d: d.score, reverse=True)
        return detections

    def _remember(self, key: str, masks: dict[tuple[int, ...], np.ndarray]) -> None:
        with self._lock:
            self._masks.setdefault(key, {}).update(masks)
            self._masks.move_to_end(key)
            while len(self._masks) > KEPT_IMAGES:
                self._masks.popitem(last=False)

    def instance_mask(self, image: Image.Image, box: Sequence[float]) -> Optional[np.ndarray]:
        """The mask of the instance :meth:`detect` found at ``box`` in ``image``, or None."""
        image = image if image.mode == "RGB" else image.convert("RGB")
        with self._lock:
            return self._masks.get(content_hash(image), {}).get(_box_key(box))


class InstanceSegmenter:
    """SAM 3's own instance masks for the boxes it found; any other prompt goes to ``fallback``
    (a :class:`tools.segment.Segmenter` or :class:`Sam2Segmenter`)."""

    def __init__(self, grounder: Callable[[], Optional[Sam3Grounder]], fallback: Any):
        self.grounder = grounder
        self.fallback = fallback

    def segment(self, image: Image.Image, boxes: Sequence[Box] = (), points: Sequence[Point] = (),
                point_labels: Optional[Sequence[int]] = None) -> Segmentation:
        """The union of SAM 3's masks of ``boxes`` when every box is one of its instances and no
        point is given; otherwise ``fallback.segment``."""
        grounder = self.grounder()
        if boxes and not points and grounder is not None:
            masks = [grounder.instance_mask(image, b) for b in boxes]
            if all(m is not None and m.any() for m in masks):
                union = np.logical_or.reduce(masks)
                return Segmentation(mask=union, score=1.0, source="sam3",
                                    note=f"SAM 3's own mask of {len(masks)} instance(s)")
        return self.fallback.segment(image, boxes, points=points, point_labels=point_labels)

    def __getattr__(self, name: str) -> Any:  # mask_from_user, set_image: the fallback's
        return getattr(self.fallback, name)


class Sam2Segmenter:
    """SAM 2.1 on box and point prompts, with :class:`tools.segment.Segmenter`'s rules."""

    def __init__(self, model: Any, processor: Any, device: torch.device | str):
        self.model = model
        self.processor = processor
        self.device = torch.device(device)
        self._lock = threading.Lock()

    @torch.no_grad()
    def _predict(self, image: Image.Image, boxes: Optional[list[Box]] = None,
                 points: Optional[list[Point]] = None, labels: Optional[list[int]] = None,
                 multimask: bool = True) -> tuple[list[np.ndarray], list[float]]:
        """SAM 2.1's best (highest predicted IoU) mask per prompt, at the image's size.

        ``boxes``: one prompt each; or ``points`` (with ``labels``) and at most one box as one prompt."""
        kwargs: dict[str, Any] = {}
        if points:
            kwargs.update(input_points=[[[list(p) for p in points]]], input_labels=[[list(labels or [])]])
        if boxes:
            kwargs["input_boxes"] = [[list(b) for b in boxes]]
        inputs = self.processor(images=image, return_tensors="pt", **kwargs)
        sizes = inputs["original_sizes"]
        model_inputs = {k: v.to(self.device) for k, v in inputs.items() if k not in ("original_sizes",)}
        model_inputs["pixel_values"] = model_inputs["pixel_values"].to(self.model.dtype)
        with self._lock:
            out = self.model(**model_inputs, multimask_output=multimask)
        masks = self.processor.post_process_masks(out.pred_masks.float().cpu(), sizes)[0]  # (prompts, k, H, W)
        ious = out.iou_scores.float().cpu()[0]  # (prompts, k)
        best = ious.argmax(dim=-1)
        rows = torch.arange(masks.shape[0])
        return list(masks[rows, best].bool().numpy()), [float(v) for v in ious[rows, best]]

    def segment(self, image: Image.Image, boxes: Sequence[Box] = (), points: Sequence[Point] = (),
                point_labels: Optional[Sequence[int]] = None) -> Segmentation:
        """The object(s) the prompts name, as a bool mask at the image's size (see the module)."""
        image = image if image.mode == "RGB" else image.convert("RGB")
        w, h = image.size
        if points:
            labels = [1] * len(points) if point_labels is None else [int(v) for v in point_labels]
            if len(labels) != len(points) or len(points) > MAX_POINTS or len(boxes) > 1:
                raise ValueError("Give one label per point, at most "
                                 f"{MAX_POINTS} points, and at most one box with them.")
            box = _clamp(boxes[0], (w, h)) if boxes else None
            masks, ious = self._predict(image, [box] if box else None, [tuple(map(float, p)) for p in points],
                                        labels, multimask=len(points) == 1 and box is None)
            mask = masks[0] if box is None else clip_mask_to_box(masks[0], box, grow=BOX_GROW)
            return Segmentation(mask=mask, score=ious[0], source="sam2")
        usable = [b for b in (_clamp(b, (w, h)) for b in boxes) if b is not None]
        if not usable:
            raise ValueError("segment() needs a box that overlaps the image, or a point.")
        masks, ious = self._predict(image, usable)
        union = np.zeros((h, w), dtype=bool)
        notes, used = [], 0
        for n, (box, mask) in enumerate(zip(usable, masks), start=1):
            mask = clip_mask_to_box(mask, box, grow=BOX_GROW)
            box_mask = box_to_mask(box, (w, h))
            if mask.sum() < MIN_MASK_FRACTION * max(1, int(box_mask.sum())):
                notes.append(f"SAM 2.1 found too little in box {n}; used the box")
                union |= box_mask
            else:
                union |= mask
                used += 1
        return Segmentation(mask=union, score=float(np.mean(ious)), source="sam2" if used else "box",
                            note="; ".join(notes))

    def mask_from_user(self, mask: np.ndarray, size: tuple[int, int]) -> Segmentation:
        from tools.segment import Segmenter

        return Segmenter.mask_from_user(self, mask, size)  # type: ignore[arg-type]


def build_grounder(registry: Any, settings: Any) -> Sam3Grounder:
    """SAM 3 from the registry's ``sam3`` role, at ``settings.sam3_threshold``."""
    loaded = registry.get("sam3")
    return Sam3Grounder(loaded.model, loaded.processor, registry.device, registry.dtype,
                        threshold=settings.sam3_threshold)


def build_segmenter(registry: Any, settings: Any, default: Callable[[], Any],
                    grounder: Callable[[], Optional[Sam3Grounder]]) -> Any:
    """The segment tool for ``settings``: SAM 2.1 (``segmenter='sam2'``) or ``default()`` (SAM) for
    boxes and points, wrapped so that SAM 3's instances keep their own masks when ``grounder='sam3'``
    (``grounder()`` is the worker's SAM 3 grounder once it has run)."""
    if settings.segmenter == "sam2":
        loaded = registry.get("sam2")
        base = Sam2Segmenter(loaded.model, loaded.processor, registry.device)
    else:
        base = default()
    return InstanceSegmenter(grounder, base) if settings.grounder == "sam3" else base


__all__ = ["InstanceSegmenter", "Sam2Segmenter", "Sam3Grounder", "build_grounder", "build_segmenter"]
