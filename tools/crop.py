"""Edit the region at its own resolution: the crop around it that a masked editor sees.

Every editor resizes what it is given to its working size (Stable Diffusion 1.5's 512 px long side,
Qwen-Image-Edit's and FLUX.1 Kontext's 1024 x 1024 area). Given the whole photo, a small object gets
few working pixels: a cat covering 5 % of a 2000 x 1330 photo is about 450 x 300 px, and at a 512 px
long side it is edited at about 115 x 77. Given a crop around the region (the region plus
:data:`CONTEXT` of its size on each side, at least the editor's native size where the photo allows),
the same cat is edited at its own resolution, and the transformer or UNet works only on pixels the
composite keeps (its cost grows with the working area; see ``python -m bench.crop``).

:func:`plan_crop` chooses the crop; :mod:`tools.edit` runs the editor on it, composites the result
over the crop's original pixels inside the region and pastes the crop back, so every pixel outside
the region stays bit-identical. Global edits (no region) stay whole-image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from PIL import Image

CONTEXT = 0.5
"""Context kept around the region on each side, as a fraction of the region's extent."""

MAX_SHARE = 0.5
"""A crop is used only where it is at most this share of the photo's area (so the region gets at
least twice the working pixels); a larger crop would gain little, and the whole photo is edited."""

MULTIPLE = 16
"""Working sides are multiples of this (8 px VAE cells x 2 px transformer patches)."""


@dataclass(frozen=True)
class Crop:
    """A crop ``box`` ``(x0, y0, x1, y1)`` (integer pixels of the photo) and the ``work`` size the
    editor sees it at."""

    box: tuple[int, int, int, int]
    work: tuple[int, int]

    @property
    def size(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.box
        return x1 - x0, y1 - y0

    def info(self, photo: tuple[int, int], region_box: tuple[int, int, int, int]) -> dict[str, Any]:
        """What the report says: the crop, its working size, the region's share of the photo and
        the working pixels the region gets."""
        w, h = self.size
        rw, rh = region_box[2] - region_box[0], region_box[3] - region_box[1]
        scale = self.work[0] / w
        return {"box": list(self.box), "size": [w, h], "work_size": list(self.work),
                "region_share": round(rw * rh / (photo[0] * photo[1]), 4),
                "region_work_pixels": [round(rw * scale), round(rh * self.work[1] / h)]}


def area_size(size: tuple[int, int], area: int, multiple: int = MULTIPLE) -> tuple[int, int]:
    """``size`` scaled to about ``area`` pixels, aspect kept, sides multiples of ``multiple``
    (how Qwen-Image-Edit and FLUX.1 Kontext choose their working size)."""
    w, h = size
    scale = math.sqrt(area / (w * h))
    return (max(multiple, int(round(w * scale / multiple)) * multiple),
            max(multiple, int(round(h * scale / multiple)) * multiple))


def region_box(mask: np.ndarray) -> Optional[tuple[int, int, int, int]]:
    """The tight integer box ``(x0, y0, x1, y1)`` (x1, y1 exclusive) of a bool mask, or None if empty."""
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    if not rows.any():
        return None
    y0, y1 = np.flatnonzero(rows)[[0, -1]]
    x0, x1 = np.flatnonzero(cols)[[0, -1]]
    return int(x0), int(y0), int(x1) + 1, int(y1) + 1


def _span(lo: int, hi: int, want: int, limit: int) -> tuple[int, int]:
    """An interval of length ``min(want, limit)`` centred on ``[lo, hi)``, shifted inside ``[0, limit)``."""
    want = min(max(want, hi - lo), limit)
    start = int(round((lo + hi) / 2 - want / 2))
    start = min(max(0, start), limit - want)
    return start, start + want


def plan_crop(mask: np.ndarray, native_side: int, *, context: float = CONTEXT,
              max_share: float = MAX_SHARE) -> Optional[Crop]:
    """The crop a masked editor should see for the region ``mask``, or None for the whole photo.

    Args:
        mask: bool ``(height, width)`` of the photo: the region (undilated; the crop's context
            margin covers the editor's dilation and feather).
        native_side: the editor's native working side: the crop is at least ``native_side`` on each
            side where the photo allows (a square of the native area around a small region).
        context: context on each side of the region, as a fraction of its extent.
        max_share: the crop is used only when its area is at most this share of the photo's.

    Returns:
        A :class:`Crop` whose ``work`` is the crop scaled to the native area (sides multiples of
        :data:`MULTIPLE`), or None: empty mask, or a crop too close to the whole photo to gain.
    """
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    box = region_box(mask)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    grow_x, grow_y = int(math.ceil((x1 - x0) * (1 + 2 * context))), int(math.ceil((y1 - y0) * (1 + 2 * context)))
    side = max(grow_x, grow_y, native_side)  # square where the photo allows: the native area's shape
    cx0, cx1 = _span(x0, x1, side, w)
    cy0, cy1 = _span(y0, y1, side, h)
    if (cx1 - cx0) * (cy1 - cy0) > max_share * w * h:
        return None
    size = (cx1 - cx0, cy1 - cy0)
    return Crop(box=(cx0, cy0, cx1, cy1), work=area_size(size, native_side * native_side))


def paste_back(original: Image.Image, edited_crop: Image.Image, crop_region: np.ndarray,
               crop: Crop) -> tuple[Image.Image, np.ndarray]:
    """``original`` with ``edited_crop`` (already composited over the crop's original pixels, so equal
    to them outside ``crop_region``) pasted at ``crop.box``, and the region in photo coordinates:
    ``(image, region)``, region bool ``(height, width)`` of the photo."""
    x0, y0, x1, y1 = crop.box
    out = original.copy()
    out.paste(edited_crop, (x0, y0))
    region = np.zeros((original.height, original.width), dtype=bool)
    region[y0:y1, x0:x1] = crop_region
    return out, region


__all__ = ["CONTEXT", "MAX_SHARE", "MULTIPLE", "Crop", "area_size", "paste_back", "plan_crop", "region_box"]
