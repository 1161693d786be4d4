"""The seam of a composite: does the edit's edge look pasted? (pure numpy, no model).

ZONE smooths the edge of its composite because a hard one looks pasted on (ZONE supplementary,
Table C: the edge smoother lifts the user preference rate from 22.7 % to 77.3 %), and Region in
Context judges a region in the context of the whole image for the same reason (its Fig. 2: a
blended-in region that still "exhibits unnatural appearances"). Neither paper gives a number for
a seam, so this module measures one from the pixels, against the input:

Let ``R`` be the region a masked editor was allowed to change (``EditResult.region``; outside it
the output is bit-identical to the input) and ``R_d`` its ``d``-th pixel layer counted inwards
from the edge (``R_1`` touches the outside). With ``D(d)`` the mean over ``R_d`` of the
channel-mean ``|output - input|`` (pixels in [0, 1]):

- ``seam = D(1) / max_{d <= BAND} D(d)``, 0-1: how much of the change the edit makes near its
  edge happens in the one pixel step across the edge. A hard paste changes the first layer as
  much as the inside (about 1); a composite feathered over ``f`` px changes it by the feather's
  first alpha against its alpha at :data:`BAND` px (0.09 for the default 6 px, 0.26 for 2 px, 0.5 for
  1 px).
- ``seam_step = max(0, D(1) - E)``: the step the composite adds across its edge beyond ``E``,
  the input's own mean step across the same edge (a seam that runs along an edge the photo
  already had is hidden by it).

Both are independent of how strong the edit is inside; they are None when the region is empty,
covers the whole image, or nothing changed within :data:`BAND` px of its edge.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from PIL import Image

__all__ = ["BAND", "seam_profile", "SeamProfile"]

BAND = 4
"""Layers (full-size px) inside the region's edge that the profile looks at: deep enough to see a
feather's ramp rise (to 0.61 of the change at 4 px for the default 6 px feather), shallow enough that
the layers show the same content (the ring the dilation adds around the object), not the object."""

SeamProfile = tuple[Optional[float], Optional[float], list[float]]
"""``(seam, seam_step, D)``: the sharpness, the step beyond the input's edge, and ``D(1..BAND)``."""


def _grow(mask: np.ndarray) -> np.ndarray:
    """One 4-neighbour dilation step."""
    p = np.pad(mask, 1, constant_values=False)
    return mask | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]


def seam_profile(original: Image.Image, edited: Image.Image, region: Optional[np.ndarray],
                 band: int = BAND) -> SeamProfile:
    """The seam measures of ``edited`` against ``original`` at the edge of ``region`` (see the module).

    Args:
        original, edited: same-size images (any mode; RGB is used).
        region: bool ``(H, W)``, the pixels the edit may change; None gives ``(None, None, [])``.
        band: layers inside the edge to profile.

    Only the region's bounding box grown by one pixel is read, so the cost follows the region,
    not the photo.
    """
    if region is None:
        return None, None, []
    r = np.asarray(region, dtype=bool)
    if r.shape != (original.height, original.width) or not r.any() or r.all():
        return None, None, []
    rows, cols = np.flatnonzero(r.any(axis=1)), np.flatnonzero(r.any(axis=0))
    y0, y1 = max(0, rows[0] - 1), min(r.shape[0], rows[-1] + 2)
    x0, x1 = max(0, cols[0] - 1), min(r.shape[1], cols[-1] + 2)
    box = (int(x0), int(y0), int(x1), int(y1))
    a = np.asarray(original.convert("RGB").crop(box), dtype=np.int16)
    b = np.asarray(edited.convert("RGB").crop(box), dtype=np.int16)
    inside = r[y0:y1, x0:x1]
    change = np.abs(a - b).mean(axis=2) / 255.0  # (h, w), 0-1

    layers: list[float] = []
    outside = ~inside
    reached = outside
    for _ in range(max(1, int(band))):
        grown = _grow(reached)
        layer = grown & inside & ~reached
        if not layer.any():
            break
        layers.append(float(change[layer].mean()))
        reached = grown
    top = max(layers) if layers else 0.0
    if top <= 0.0:
        return None, None, layers
    first = _grow(outside) & inside
    # the input's own step across the edge: each first-layer pixel against its outside 4-neighbours
    edge = _edge_step(a, first, outside)
    return layers[0] / top, max(0.0, layers[0] - edge), layers


def _edge_step(pixels: np.ndarray, first: np.ndarray, outside: np.ndarray) -> float:
    """Mean channel-mean ``|p - q|`` (0-1) over pairs of a first-layer pixel ``p`` and an outside 4-neighbour ``q``."""
    total, count = 0.0, 0
    h, w = first.shape
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        ys, xs = np.nonzero(first)
        qy, qx = ys + dy, xs + dx
        ok = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
        ys, xs, qy, qx = ys[ok], xs[ok], qy[ok], qx[ok]
        pair = outside[qy, qx]
        if pair.any():
            diff = np.abs(pixels[ys[pair], xs[pair]] - pixels[qy[pair], qx[pair]]).mean(axis=1) / 255.0
            total += float(diff.sum())
            count += int(pair.sum())
    return total / count if count else 0.0
