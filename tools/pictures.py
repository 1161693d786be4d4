"""The pictures shown to people: mask and box overlays, numbered candidates, before/after.

Pure PIL + numpy. Conventions as in :mod:`tools.images`: sizes are ``(width, height)``, masks bool
``(height, width)``, boxes ``(x0, y0, x1, y1)`` in pixels.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tools.images import _check_mask, _clamp_box, _to_rgb, erode, resize_mask
from tools.types import Box, Detection

__all__ = ["overlay", "side_by_side", "MASK_TINT", "PALETTE"]

MASK_TINT = (255, 0, 170)
STRONG = (255, 200, 0)
MUTED = (150, 150, 150)
PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (0, 128, 128), (170, 110, 40)]


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's default font at ``size`` px (bitmap default font without FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except Exception:
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    l, t, r, b = draw.textbbox((0, 0), text, font=font)
    return r - l, b - t


def _scale(size: tuple[int, int]) -> tuple[int, int, int]:
    """Line width, label font size and badge font size for an image of ``size``."""
    long_side = max(size)
    return max(1, round(long_side / 300)), max(10, round(long_side / 45)), max(14, round(long_side / 16))


def _tint_mask(base: np.ndarray, mask: np.ndarray, lw: int) -> np.ndarray:
    """``base`` with ``mask`` blended towards MASK_TINT and its outline drawn solid."""
    out = base.copy()
    tint = np.array(MASK_TINT, dtype=np.float32)
    blended = np.rint(0.55 * base[mask].astype(np.float32) + 0.45 * tint)
    out[mask] = blended.astype(np.uint8)
    edge = mask & ~erode(mask, lw)
    out[edge] = MASK_TINT
    return out


def _label_for(item, label: Optional[str]) -> tuple[Box, Optional[str]]:
    if isinstance(item, Detection):
        return item.box, label if label is not None else f"{item.label} {item.score:.2f}"
    return tuple(float(v) for v in item), label  # type: ignore[return-value]


def overlay(image: Image.Image, *, mask: Optional[np.ndarray] = None,
            boxes: Sequence[Union[Box, Detection]] = (), labels: Sequence[str] = (),
            chosen: Sequence[int] = (), numbered: bool = False) -> Image.Image:
    """The photo with ``mask`` tinted and outlined, ``boxes`` drawn and labelled.

    ``chosen`` boxes are drawn thick in a strong colour and the others thin and grey (all
    strong when nothing is chosen). ``numbered`` puts big badges "1", "2", ... at each box's
    top-left corner: the candidate numbers a user answers with, in the order given.
    Detections may be passed as boxes; their label defaults to "label score".
    """
    base = np.array(_to_rgb(image), dtype=np.uint8)
    lw, font_px, badge_px = _scale(image.size)
    if mask is not None:
        m = _check_mask(mask)
        if m.shape != base.shape[:2]:
            m = resize_mask(m, image.size)
        base = _tint_mask(base, m, lw)
    out = Image.fromarray(base, "RGB")
    draw = ImageDraw.Draw(out)
    font, badge_font = _font(font_px), _font(badge_px)
    chosen_set = {int(i) for i in chosen}
    w, h = out.size
    items = [_label_for(b, labels[i] if i < len(labels) else None) for i, b in enumerate(boxes)]
    order = sorted(range(len(items)), key=lambda i: i in chosen_set)  # chosen drawn last, on top
    for i in order:
        box, label = items[i]
        if numbered:
            colour = PALETTE[i % len(PALETTE)] if not chosen_set or i in chosen_set else MUTED
        else:
            colour = STRONG if not chosen_set or i in chosen_set else MUTED
        width = lw * 2 if (i in chosen_set or not chosen_set) else lw
        x0, y0, x1, y1 = _clamp_box(box, (w, h))
        x1, y1 = max(x0, x1 - 1), max(y0, y1 - 1)
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=width)
        text_x = x0
        if numbered:
            text_x = _draw_badge(draw, str(i + 1), (x0 + width, y0 + width), colour, badge_font, (w, h))
        if label:
            _draw_label(draw, label, (text_x, y0), colour, font, (w, h), inside=numbered)
    return out


def _draw_badge(draw: ImageDraw.ImageDraw, text: str, corner: tuple[int, int], colour,
                font, size: tuple[int, int]) -> int:
    """A filled circle with ``text`` whose top-left touches ``corner``; returns its right x."""
    tw, th = _text_size(draw, text, font)
    r = int(max(tw, th) * 0.5 + max(4, th * 0.35))
    cx = min(max(corner[0] + r, r), max(r, size[0] - r - 1))
    cy = min(max(corner[1] + r, r), max(r, size[1] - r - 1))
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour, outline=(255, 255, 255),
                 width=max(1, r // 8))
    draw.text((cx, cy), text, fill=(255, 255, 255), font=font, anchor="mm",
              stroke_width=max(1, r // 10), stroke_fill=(0, 0, 0))
    return cx + r + 2


def _draw_label(draw: ImageDraw.ImageDraw, text: str, at: tuple[int, int], colour, font,
                size: tuple[int, int], inside: bool = False) -> None:
    """``text`` on a filled tag just above (or, without room, just inside) the box's top."""
    tw, th = _text_size(draw, text, font)
    pad = max(2, th // 4)
    x, y = at
    tag_h = th + 2 * pad
    ty = y - tag_h if (y - tag_h >= 0 and not inside) else y + 1
    x = min(max(0, x), max(0, size[0] - tw - 2 * pad))
    draw.rectangle((x, ty, x + tw + 2 * pad, ty + tag_h), fill=colour)
    dark = sum(colour) < 382
    l, t, _, _ = draw.textbbox((0, 0), text, font=font)
    draw.text((x + pad - l, ty + pad - t), text, font=font,
              fill=(255, 255, 255) if dark else (0, 0, 0))


def side_by_side(before: Image.Image, after: Image.Image,
                 labels: Sequence[str] = ("before", "after")) -> Image.Image:
    """``before`` and ``after`` next to each other at the same height, captioned above."""
    a, b = _to_rgb(before), _to_rgb(after)
    h = max(a.height, b.height)
    if a.height != h:
        a = a.resize((max(1, round(a.width * h / a.height)), h), Image.Resampling.LANCZOS)
    if b.height != h:
        b = b.resize((max(1, round(b.width * h / b.height)), h), Image.Resampling.LANCZOS)
    gap = max(4, h // 64)
    font = _font(max(12, round(h / 20)))
    header = int(max(12, round(h / 20)) * 1.6) if any(labels) else 0
    canvas = Image.new("RGB", (a.width + gap + b.width, h + header), (255, 255, 255))
    canvas.paste(a, (0, header))
    canvas.paste(b, (a.width + gap, header))
    if header:
        draw = ImageDraw.Draw(canvas)
        for text, (x, width) in zip(labels, ((0, a.width), (a.width + gap, b.width))):
            if text:
                draw.text((x + width // 2, header // 2), str(text), fill=(0, 0, 0), font=font, anchor="mm")
    return canvas
