"""Box- and point-prompted masks with Segment Anything, the image embedding cached per image content.

``Segmenter.set_image`` runs SAM's image encoder once per distinct picture (or takes the
embedding from the cache); ``segment(image, boxes)`` then asks SAM for one mask per box (its single-mask output, as
Grounded-SAM does for detector boxes; the multimask output only for a lone click), keeps
each mask inside its box (grown by 10%), falls back to the box itself where SAM gives nothing
usable, and returns the union at the original image size.

``segment(image, boxes, points=..., point_labels=...)`` is the interactive form (a click on the
object, shift-clicks that add or remove parts): the points (label 1 = on the object, 0 = not on
it) and at most one box (the detection the click fell in) go into *one* SAM prompt, as in SAM's
interactive use (Kirillov et al., "Segment Anything", sec. 3: a prompt is any set of points and a
box; one ambiguous point asks for the multimask output and the best predicted IoU is kept, several
prompts for the single mask).

On CUDA the image encoder (ViT at 1024x1024: nearly all of SAM's compute) runs under bf16 autocast
(``LOCALEDIT_SAM_BF16``, :func:`encoder_dtype`); its embedding goes back to fp32, so the prompt
encoder and mask decoder run as before. The weights stay fp32.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from tools.cache import ByteLRU
from tools.images import box_to_mask, clip_mask_to_box, content_hash, resize_mask
from tools.types import Box, Point, Segmentation

BOX_GROW = 0.1
"""Each box's mask is kept inside the box grown by this fraction of its size on each side."""

MIN_MASK_FRACTION = 0.02
"""A mask covering less than this fraction of its box counts as empty: the box is used."""

BATCH = 8
"""Boxes decoded per SAM call (the masks come back at full image size, so keep it bounded)."""

MIN_POINT_MASK_FRACTION = 0.001
"""A point-only mask covering less than this fraction of the image counts as empty."""

POINT_FALLBACK = 0.08
"""Where SAM finds nothing at the points (and there is no box), the square around the positive
points grown to this fraction of the image's short side is used."""

MAX_POINTS = 64
"""Most points one prompt may carry."""


def encoder_dtype(device: torch.device, sam_bf16: bool) -> Optional[torch.dtype]:
    """The autocast dtype of SAM's image encoder on ``device``: bf16 on a CUDA GPU that has it when
    ``sam_bf16`` (``LOCALEDIT_SAM_BF16``) is on; None (fp32, as loaded) otherwise and on a CPU."""
    if sam_bf16 and device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


class Segmenter:
    """Segment Anything behind ``SamPredictor``: set an image once, segment many boxes.

    ``encoder_dtype``: run the image encoder under autocast in this dtype (:func:`encoder_dtype`;
    None: as loaded); the embedding is kept in fp32 either way.
    """

    def __init__(self, sam: Any, cache: Optional[ByteLRU] = None, encoder_dtype: Optional[torch.dtype] = None):
        from segment_anything import SamPredictor

        self.sam = sam
        self.predictor = SamPredictor(sam)
        self.cache = cache
        self.encoder_dtype = encoder_dtype
        self._key: Optional[str] = None  # content hash of the image now set
        self._lock = threading.RLock()

    def set_image(self, image: Image.Image) -> bool:
        """Make ``image`` the current one; True when its embedding was reused (no encoder run)."""
        image = image if image.mode == "RGB" else image.convert("RGB")
        key = content_hash(image)
        with self._lock:
            if self._key == key and self.predictor.is_image_set:
                return True
            cache_key = ("sam", id(self.sam), key, str(self.encoder_dtype))
            cached = self.cache.get(cache_key) if self.cache is not None else None
            if cached is not None:
                features, original_size, input_size = cached
                self.predictor.reset_image()
                self.predictor.features = features
                self.predictor.original_size = tuple(original_size)
                self.predictor.input_size = tuple(input_size)
                self.predictor.is_image_set = True
                self._key = key
                return True
            self._key = None
            precision = (torch.autocast(self.predictor.device.type, dtype=self.encoder_dtype)
                         if self.encoder_dtype is not None else contextlib.nullcontext())
            with precision:
                self.predictor.set_image(np.asarray(image, dtype=np.uint8), image_format="RGB")
            self.predictor.features = self.predictor.features.float()  # the decoder's weights are fp32
            self._key = key
            if self.cache is not None:
                self.cache.put(cache_key, (self.predictor.features,
                                              tuple(self.predictor.original_size),
                                              tuple(self.predictor.input_size)))
            return False

    @torch.no_grad()
    def segment(self, image: Image.Image, boxes: Sequence[Box] = (), points: Sequence[Point] = (),
                point_labels: Optional[Sequence[int]] = None) -> Segmentation:
        """The object(s) the prompts name, as a bool mask at the original image size.

        Args:
            image: the photo (any mode; RGB is used).
            boxes: ``(x0, y0, x1, y1)`` boxes in original pixels, clamped to the image (corners in
                any order). Without points: one SAM prompt per box and the union of the masks; a
                box whose mask is empty or tiny (under 2% of the box) contributes the box itself.
            points: ``(x, y)`` points in original pixels: one prompt with all of them, plus the
                box if exactly one is given (the mask is then kept inside it, grown by 10%).
            point_labels: one per point, 1 = on the object, 0 = not on it (default: all 1).

        The note says where a fallback happened. Raises ValueError when nothing usable is given:
        no box and no point, a box that misses the image, points off the image, only negative
        points and no box, more than one box with points, or labels that do not match the points.
        """
        if points is not None and len(points) > 0:
            return self._segment_points(image, boxes or (), points, point_labels)
        if boxes is None or len(boxes) == 0:
            raise ValueError("segment() needs at least one box or point.")
        w, h = image.size
        usable: list[tuple[int, Box]] = []  # (1-based number for notes, clamped box)
        notes: list[str] = []
        for n, box in enumerate(boxes, start=1):
            clamped = _clamp(box, (w, h))
            if clamped is None:
                notes.append(f"box {n} lies outside the image; skipped it")
            else:
                usable.append((n, clamped))
        if not usable:
            raise ValueError("None of the boxes overlaps the image.")

        with self._lock:
            hit = self.set_image(image)
            masks, ious = self._predict([b for _, b in usable])

        union = np.zeros((h, w), dtype=bool)
        scores: list[float] = []
        sam_used = 0
        for (n, box), mask, iou_pred in zip(usable, masks, ious):
            mask = clip_mask_to_box(mask, box, grow=BOX_GROW)
            box_mask = box_to_mask(box, (w, h))
            box_area = max(1, int(box_mask.sum()))
            if not mask.any():
                notes.append(f"SAM returned an empty mask for box {n}; used the box")
            elif mask.sum() < MIN_MASK_FRACTION * box_area:
                notes.append(f"SAM's mask for box {n} covered {mask.sum() / box_area:.1%} of it; used the box")
            else:
                union |= mask
                scores.append(float(iou_pred))
                sam_used += 1
                continue
            union |= box_mask
            scores.append(1.0)
        source = "sam" if sam_used else "box"
        return Segmentation(mask=union, score=float(np.mean(scores)), source=source,
                            note="; ".join(notes), cache_hit=hit)

    def _segment_points(self, image: Image.Image, boxes: Sequence[Box], points: Sequence[Point],
                        point_labels: Optional[Sequence[int]]) -> Segmentation:
        """One SAM prompt: ``points`` with their labels, and at most one box."""
        w, h = image.size
        labels = [1] * len(points) if point_labels is None else [int(v) for v in point_labels]
        if len(labels) != len(points):
            raise ValueError(f"{len(points)} points but {len(labels)} point labels.")
        if any(v not in (0, 1) for v in labels):
            raise ValueError("A point label is 1 (on the object) or 0 (not on it).")
        if len(points) > MAX_POINTS:
            raise ValueError(f"At most {MAX_POINTS} points per prompt, got {len(points)}.")
        if len(boxes) > 1:
            raise ValueError("Points refine one object: give at most one box with them.")
        box = None
        notes: list[str] = []
        if boxes:
            box = _clamp(boxes[0], (w, h))
            if box is None:
                raise ValueError("The box lies outside the image.")
        kept: list[tuple[Point, int]] = []
        for n, (point, label) in enumerate(zip(points, labels), start=1):
            xy = _point(point)
            if xy is None or not (0 <= xy[0] < w and 0 <= xy[1] < h):
                notes.append(f"point {n} lies outside the image; skipped it")
            else:
                kept.append((xy, label))
        if not any(label == 1 for _, label in kept) and box is None:
            raise ValueError("Give at least one point on the object (label 1) inside the image, or a box.")

        with self._lock:
            hit = self.set_image(image)
            mask, iou_pred = self._predict_points([p for p, _ in kept], [v for _, v in kept], box)

        positive = [p for p, v in kept if v == 1]
        if box is not None:
            mask = clip_mask_to_box(mask, box, grow=BOX_GROW)
            box_area = max(1, int(box_to_mask(box, (w, h)).sum()))
            if mask.sum() < MIN_MASK_FRACTION * box_area:
                notes.append("SAM found too little inside the box at the points; used the box")
                return Segmentation(mask=box_to_mask(box, (w, h)), score=1.0, source="box",
                                    note="; ".join(notes), cache_hit=hit)
        elif mask.sum() < MIN_POINT_MASK_FRACTION * w * h:
            xs, ys = [p[0] for p in positive], [p[1] for p in positive]
            r = POINT_FALLBACK * min(w, h) / 2
            square = (min(xs) - r, min(ys) - r, max(xs) + r, max(ys) + r)
            notes.append("SAM found nothing at the points; used a square around them")
            return Segmentation(mask=box_to_mask(square, (w, h)), score=1.0, source="box",
                                note="; ".join(notes), cache_hit=hit)
        return Segmentation(mask=mask, score=float(iou_pred), source="sam", note="; ".join(notes), cache_hit=hit)

    def _predict_points(self, points: list[Point], labels: list[int],
                        box: Optional[Box]) -> tuple[np.ndarray, float]:
        """SAM's mask for one prompt of points (and a box), at original size.

        One point and no box is ambiguous (a part, the object, the group): SAM's three outputs
        are made and the highest predicted IoU kept; otherwise the single output (SAM's advice
        for prompts that are no longer ambiguous).
        """
        predictor = self.predictor
        device = predictor.device
        coords = labels_t = boxes_t = None
        if points:
            coords = predictor.transform.apply_coords_torch(
                torch.as_tensor([points], dtype=torch.float32, device=device), predictor.original_size)
            labels_t = torch.as_tensor([labels], dtype=torch.int64, device=device)
        if box is not None:
            boxes_t = predictor.transform.apply_boxes_torch(
                torch.as_tensor([box], dtype=torch.float32, device=device), predictor.original_size)
        multimask = len(points) == 1 and box is None
        out, iou_pred, _ = predictor.predict_torch(coords, labels_t, boxes=boxes_t, multimask_output=multimask)
        best = int(iou_pred[0].argmax())
        return out[0, best].bool().cpu().numpy(), float(iou_pred[0, best].float())

    def _predict(self, boxes: list[Box]) -> tuple[list[np.ndarray], list[float]]:
        """SAM's single-mask output for each box, at original size.

        A box names one object, so it is not an ambiguous prompt: as Grounded-SAM does (its
        ``SamPredictor.predict_torch(..., multimask_output=False)`` for detector boxes), we take the
        single output. The multimask output with the highest predicted IoU, which SAM's authors
        advise for one ambiguous click, can return a part of the object (a head for a person's
        box); it stays for a lone click (:meth:`_predict_points`). Boxes go in batches of BATCH to
        bound the memory of the full-size masks on large photos.
        """
        predictor = self.predictor
        masks: list[np.ndarray] = []
        ious: list[float] = []
        for start in range(0, len(boxes), BATCH):
            chunk = torch.as_tensor(boxes[start:start + BATCH], dtype=torch.float32,
                                    device=predictor.device)
            transformed = predictor.transform.apply_boxes_torch(chunk, predictor.original_size)
            out, iou_pred, _ = predictor.predict_torch(None, None, boxes=transformed,
                                                       multimask_output=False)
            masks.extend(m for m in out[:, 0].bool().cpu().numpy())
            ious.extend(float(v) for v in iou_pred[:, 0].float().cpu())
        return masks, ious

    def mask_from_user(self, mask: np.ndarray, size: tuple[int, int]) -> Segmentation:
        """A mask drawn or uploaded by the user as a Segmentation at ``size`` = (width, height)."""
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"A mask must be 2-D (height, width), got shape {mask.shape}.")
        mask = resize_mask(mask.astype(bool), size)
        if not mask.any():
            raise ValueError("The mask is empty.")
        return Segmentation(mask=mask, score=1.0, source="user", note="mask given by the user")


def _point(point: Sequence[float]) -> Optional[Point]:
    """``point`` as two finite floats, or None when it is not finite."""
    try:
        x, y = (float(v) for v in point)
    except (TypeError, ValueError) as err:
        raise ValueError(f"A point must be two numbers (x, y), got {point!r}.") from err
    return (x, y) if np.isfinite([x, y]).all() else None


def _clamp(box: Sequence[float], size: tuple[int, int]) -> Optional[Box]:
    """``box`` clamped to the image, or None when nothing of it is left."""
    w, h = size
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError) as err:
        raise ValueError(f"A box must be four numbers (x0, y0, x1, y1), got {box!r}.") from err
    if not all(np.isfinite([x0, y0, x1, y1])):
        return None
    x0, x1 = sorted((min(max(x0, 0.0), w), min(max(x1, 0.0), w)))
    y0, y1 = sorted((min(max(y0, 0.0), h), min(max(y1, 0.0), h)))
    if x1 - x0 < 1.0 or y1 - y0 < 1.0:
        return None
    return (x0, y0, x1, y1)
