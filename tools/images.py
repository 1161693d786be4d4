"""Image helpers shared by the agent and the vision tools (pure PIL + numpy, no torch).

Loading any user image to RGB with clear one-sentence errors, the work size models run
at, bool-mask helpers (resize, dilate, erode, feather), the full-resolution composite that
keeps every pixel outside the mask bit-identical, and box helpers. The pictures shown to people
(mask/box overlays, numbered candidates, before/after) are in :mod:`tools.pictures`.

Conventions: sizes are PIL ``(width, height)``; masks are numpy ``bool`` arrays of shape
``(height, width)``; boxes are :data:`tools.types.Box` ``(x0, y0, x1, y1)`` in pixels,
``x1``/``y1`` exclusive (a box ``(0, 0, 10, 10)`` covers 10 x 10 pixels).
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import re
import warnings
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageOps

from tools.files import human_bytes, read_file
from tools.types import Box, ImageError, LocaleditError, Point

log = logging.getLogger(__name__)

__all__ = [
    "BoxParseError", "load_image", "content_hash", "work_size", "to_work", "resize_mask",
    "mask_to_work", "mask_from_work", "dilate", "erode", "feather", "composite", "region_at_full",
    "probe_image", "check_dimensions", "human_bytes",
    "black_out", "box_to_mask", "mask_bbox", "clip_mask_to_box", "crop_box", "iou",
    "parse_box", "parse_point", "box_containing", "load_mask", "to_png_bytes", "from_png_bytes",
]

Source = Union[str, Path, bytes, bytearray]

READABLE = "PNG, JPEG, WebP, GIF, BMP, TIFF"
MIN_SIDE = 64


class BoxParseError(LocaleditError, ValueError):
    """A box typed by the user is malformed or outside the image (one clear sentence)."""


# --------------------------------------------------------------------------- loading


def _limits(max_bytes: Optional[int], max_pixels: Optional[int], max_side: Optional[int] = None,
            max_aspect: Optional[float] = None) -> tuple[int, int, int, float]:
    """The limits to load with: the arguments, and the settings for those left None."""
    if None in (max_bytes, max_pixels, max_side, max_aspect):
        from tools.config import get_settings

        settings = get_settings()
        max_bytes = settings.max_upload_bytes if max_bytes is None else max_bytes
        max_pixels = settings.max_image_pixels if max_pixels is None else max_pixels
        max_side = settings.max_image_side if max_side is None else max_side
        max_aspect = settings.max_aspect_ratio if max_aspect is None else max_aspect
    return int(max_bytes), int(max_pixels), int(max_side), float(max_aspect)


def _read_source(source: Source, max_bytes: int) -> tuple[bytes, str]:
    """The file's bytes and how to name it in a message; a path is read by :func:`tools.files.read_file`
    (regular files only, at most ``max_bytes``, never trusting ``stat()`` alone)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "The uploaded image"
    else:
        name = f"The file {str(source)!r}"
        data = read_file(source, max_bytes, name=name, error=ImageError)
    if len(data) == 0:
        raise ImageError(f"{name} is empty (0 bytes).")
    if len(data) > max_bytes:
        raise ImageError(f"{name} is {human_bytes(len(data))}, more than the "
                         f"{human_bytes(max_bytes)} limit.")
    return data, name


def _too_many_pixels(name: str, pixels: Optional[int], limit: int, wh: str = "") -> ImageError:
    what = f"{wh} pixels" if wh else (f"{pixels:,} pixels" if pixels else "too many pixels")
    return ImageError(f"{name} is {what}, more than the {limit:,} pixel limit "
                      f"(possibly a decompression bomb).")


def check_dimensions(size: tuple[int, int], name: str, max_pixels: int, max_side: int, max_aspect: float) -> None:
    """Refuse a ``size`` (width, height) over the pixel limit, the side limit or the aspect-ratio limit."""
    w, h = int(size[0]), int(size[1])
    if w < 1 or h < 1:
        raise ImageError(f"{name} has no pixels ({w}x{h}).")
    if w * h > max_pixels:
        raise _too_many_pixels(name, w * h, max_pixels, f"{w}x{h}")
    if max(w, h) > max_side:
        raise ImageError(f"{name} is {w}x{h} pixels; its long side is more than the {max_side:,} pixel limit.")
    if max(w, h) / min(w, h) > max_aspect:
        raise ImageError(f"{name} is {w}x{h} pixels, a strip more than {max_aspect:g} times longer than it is "
                         f"wide, which the models cannot work on.")


def _open_header(data: bytes, name: str, max_pixels: int, max_side: int, max_aspect: float) -> Image.Image:
    """The image opened lazily (its header read, no pixel decoded) and its dimensions checked."""
    try:
        with warnings.catch_warnings():
            # Our own checks below are authoritative; Pillow's warning is noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        m = re.search(r"\((\d+) pixels\)", str(exc))
        raise _too_many_pixels(name, int(m.group(1)) if m else None, max_pixels) from exc
    except Exception as exc:  # UnidentifiedImageError, SyntaxError, struct, EOF ...
        raise ImageError(f"{name} is not an image localedit can read ({READABLE}).") from exc
    check_dimensions(img.size, name, max_pixels, max_side, max_aspect)
    return img


def probe_image(data: bytes, *, max_bytes: Optional[int] = None, max_pixels: Optional[int] = None,
                max_side: Optional[int] = None, max_aspect: Optional[float] = None,
                name: str = "The uploaded image") -> tuple[tuple[int, int], str]:
    """``((width, height), mode)`` of encoded image bytes, from the header alone (nothing decoded).

    The same limits as :func:`load_image` are checked, so a caller can size the work (memory) a
    request will need before any pixel is allocated.
    """
    max_bytes, max_pixels, max_side, max_aspect = _limits(max_bytes, max_pixels, max_side, max_aspect)
    if not data:
        raise ImageError(f"{name} is empty (0 bytes).")
    if len(data) > max_bytes:
        raise ImageError(f"{name} is {human_bytes(len(data))}, more than the {human_bytes(max_bytes)} limit.")
    img = _open_header(data, name, max_pixels, max_side, max_aspect)
    return img.size, img.mode


def _open_raw(source: Source, max_bytes: Optional[int] = None, max_pixels: Optional[int] = None,
              max_side: Optional[int] = None, max_aspect: Optional[float] = None) -> Image.Image:
    """Open, size-check (before decoding), fully decode and EXIF-rotate the first frame, in its own mode."""
    max_bytes, max_pixels, max_side, max_aspect = _limits(max_bytes, max_pixels, max_side, max_aspect)
    data, name = _read_source(source, max_bytes)
    img = _open_header(data, name, max_pixels, max_side, max_aspect)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_many_pixels(name, None, max_pixels) from exc
    except MemoryError as exc:
        raise ImageError(f"{name} is too large to decode in memory.") from exc
    except Exception as exc:  # OSError "truncated", SyntaxError, zlib, struct, EOF ...
        raise ImageError(f"{name} is truncated or damaged and cannot be decoded.") from exc
    try:
        img = ImageOps.exif_transpose(img) or img
    except Exception as exc:  # a broken EXIF block must not make a good image unreadable
        log.debug("ignoring a broken EXIF block (%s)", exc)
    return img


def _scale_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """Map a 16/32-bit integer or float single-channel array to uint8."""
    if mode.startswith("I;16"):
        return (arr.astype(np.uint32) // 257).astype(np.uint8)
    a = arr.astype(np.float64)
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return np.zeros(a.shape, np.uint8)
    lo, hi = float(finite.min()), float(finite.max())
    a = np.nan_to_num(a, nan=0.0, posinf=hi, neginf=lo)
    if mode == "F" and lo >= 0.0 and hi <= 1.0:  # float in [0, 1]
        a = a * 255.0
    elif lo >= 0.0 and hi <= 255.0:  # already 8-bit range
        pass
    elif mode == "I" and lo >= 0.0 and hi <= 65535.0:  # 16-bit data held in 32 bits
        a = a / 257.0
    else:  # anything else: stretch its range
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def image_from_array(array: np.ndarray) -> Image.Image:
    """A uint8 array ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` (RGBA over white) as an RGB image;
    any other array is an :class:`ImageError` naming its shape and type."""
    a = np.asarray(array)
    channels = a.shape[2] if a.ndim == 3 else 1
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or channels not in (1, 3, 4) or 0 in a.shape:
        raise ImageError(f"An image array must be uint8 of shape (height, width), (height, width, 3) or "
                         f"(height, width, 4), not {a.dtype} of shape {a.shape}.")
    return _to_rgb(Image.fromarray(a[..., 0] if channels == 1 and a.ndim == 3 else a))


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB version of any PIL mode; transparency is composited over white."""
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_scale_to_uint8(np.asarray(img), mode), "L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode == "RGB":
        return img.copy() if img.readonly else img
    return img.convert("RGB")


def load_image(source: Source, *, max_bytes: Optional[int] = None, max_pixels: Optional[int] = None,
               max_side: Optional[int] = None, max_aspect: Optional[float] = None) -> Image.Image:
    """Load a path or bytes as an RGB image at its displayed (EXIF) orientation.

    A path must be a regular file (not a pipe or a device) and is read with a byte cap. The
    header's size is checked against the pixel, side and aspect-ratio limits before any pixel is
    decoded. Transparency is composited over white, 16-bit / float images are scaled to 8 bits,
    multi-frame files give their first frame. Any problem raises :class:`ImageError` with one
    sentence. ``None`` limits come from the settings (max_upload_bytes, max_image_pixels,
    max_image_side, max_aspect_ratio).
    """
    img = _open_raw(source, max_bytes, max_pixels, max_side, max_aspect)
    out = _to_rgb(img)
    out.info.pop("exif", None)
    return out


def to_png_bytes(image: Image.Image) -> bytes:
    """Lossless PNG bytes of ``image`` (modes PNG cannot hold are converted to RGB)."""
    if image.mode not in ("RGB", "RGBA", "L", "LA", "P", "1", "I;16"):
        image = _to_rgb(image)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def from_png_bytes(data: bytes) -> Image.Image:
    """Inverse of :func:`to_png_bytes` (any image bytes, through :func:`load_image`)."""
    return load_image(data)


def content_hash(image: Image.Image) -> str:
    """A 20-hex-digit sha256 of mode, size and pixels: identical pixels, identical hash."""
    h = hashlib.sha256()
    h.update(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    if image.mode in ("P", "PA"):
        h.update(bytes(image.getpalette() or []))
    h.update(image.tobytes())
    return h.hexdigest()[:20]


# --------------------------------------------------------------------------- work size


def work_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The size models work at: long side <= max_side, aspect kept, multiples of 8, >= 64.

    Never larger than the original, except that images smaller than 64 px are scaled up
    so the long side is 64.
    """
    w, h = int(size[0]), int(size[1])
    if w <= 0 or h <= 0:
        raise ValueError(f"Image size {size} must be positive.")
    long_side = max(w, h)
    if long_side > max_side:
        scale = max_side / long_side
    elif long_side < MIN_SIDE:
        scale = MIN_SIDE / long_side
    else:
        scale = 1.0

    def side(orig: int) -> int:
        target = orig * scale
        bound = max(MIN_SIDE, min(max_side, max(orig, MIN_SIDE)))
        s = int(round(target / 8.0)) * 8
        s = min(s, bound // 8 * 8)
        return max(MIN_SIDE, s)

    return side(w), side(h)


def to_work(image: Image.Image, max_side: int) -> Image.Image:
    """``image`` resized (LANCZOS) to :func:`work_size`."""
    size = work_size(image.size, max_side)
    if size == image.size:
        return image.copy()
    return image.resize(size, Image.Resampling.LANCZOS)


# --------------------------------------------------------------------------- masks


def _check_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"A mask must be 2-D (height, width), got shape {mask.shape}.")
    return mask.astype(bool, copy=False)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bool mask resized to ``size`` = (width, height): bilinear (area-aware) then > 0.5."""
    mask = _check_mask(mask)
    w, h = int(size[0]), int(size[1])
    if mask.shape == (h, w):
        return mask.copy()
    im = Image.fromarray(mask.astype(np.uint8) * 255, "L")
    out = np.asarray(im.resize((w, h), Image.Resampling.BILINEAR)) > 127
    if mask.any() and not out.any():  # a thin sliver must not vanish entirely
        out = np.asarray(im.resize((w, h), Image.Resampling.BOX)) > 0
    return out


def mask_to_work(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A full-size mask at the work ``size`` (width, height)."""
    return resize_mask(mask, size)


def mask_from_work(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A work-size mask back at the original ``size`` (width, height)."""
    return resize_mask(mask, size)


def _grow_once(mask: np.ndarray, diagonal: bool) -> np.ndarray:
    """One step of binary dilation (4-neighbours, plus the diagonals when asked)."""
    p = np.pad(mask, 1, constant_values=False)
    out = mask | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]
    if diagonal:
        out |= p[:-2, :-2] | p[:-2, 2:] | p[2:, :-2] | p[2:, 2:]
    return out


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Grow a bool mask by ``radius`` px (octagonal, close to a disk); 0 gives a copy."""
    out = _check_mask(mask).copy()
    for i in range(max(0, int(radius))):
        out = _grow_once(out, diagonal=i % 2 == 0)
    return out


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Shrink a bool mask by ``radius`` px; the image border does not erode it."""
    return ~dilate(~_check_mask(mask), radius)


BAND_PIXELS = 1 << 21
"""Pixels per band when feathering and blending at full resolution: bounds their temporaries."""


def _ring_box(mask: np.ndarray) -> Optional[tuple[int, int, int, int]]:
    """The mask's bounding box grown by a 1 px ring (clamped: image edges stay edges), or None."""
    box = mask_bbox(mask)
    if box is None:
        return None
    h, w = mask.shape
    return (max(0, int(box[0]) - 1), max(0, int(box[1]) - 1), min(w, int(box[2]) + 1), min(h, int(box[3]) + 1))


def _smoothstep_table(radius: int) -> np.ndarray:
    """float32 alpha for each depth 0..radius+1 (px layers inside the mask): smoothstep of depth/(radius+1)."""
    t = np.arange(radius + 2, dtype=np.float32) / np.float32(radius + 1)
    return t * t * (np.float32(3.0) - np.float32(2.0) * t)


def _depth_bands(mask: np.ndarray, radius: int, box: tuple[int, int, int, int]):
    """Yield ``(y0, y1, depth)`` bands covering ``box``: ``depth`` (uint8/uint16, ``(y1-y0, x1-x0)``) is
    how many px layers deep each pixel lies inside ``mask``, capped at ``radius + 1`` (0 outside).

    Each band is eroded with ``radius`` rows of context above and below, so the bands agree with
    eroding the whole box at once while their temporaries stay within :data:`BAND_PIXELS`.
    """
    x0, y0, x1, y1 = box
    rows = max(1, BAND_PIXELS // max(1, x1 - x0))
    dtype = np.uint8 if radius < 255 else np.uint16
    for b0 in range(y0, y1, rows):
        b1 = min(y1, b0 + rows)
        c0, c1 = max(y0, b0 - radius), min(y1, b1 + radius)
        inner = mask[c0:c1, x0:x1]
        depth = inner.astype(dtype)  # 1 for the outermost layer of the mask
        for i in range(radius):
            inner = ~_grow_once(~inner, diagonal=i % 2 == 0)
            if not inner.any():
                break
            depth += inner
        yield b0, b1, depth[b0 - c0:b1 - c0]


def feather(mask: np.ndarray, radius: int) -> np.ndarray:
    """Soft float32 alpha in [0, 1]: exactly 0 outside the mask, 1 deeper than ``radius``.

    The ramp lies inside the mask (smoothstep of the distance to its edge, in px layers),
    so compositing with it never touches a pixel outside the mask. 0 gives the hard mask.
    (:func:`composite` computes the same alpha band by band, in uint8, without this full copy.)
    """
    mask = _check_mask(mask)
    radius = max(0, int(radius))
    out = mask.astype(np.float32)
    box = _ring_box(mask)
    if radius == 0 or box is None:
        return out
    table = _smoothstep_table(radius)
    for b0, b1, depth in _depth_bands(mask, radius, box):
        out[b0:b1, box[0]:box[2]] = table[depth]
    return out


def _rgb_array(image: Image.Image) -> np.ndarray:
    """A writable uint8 ``(H, W, 3)`` copy of an RGB image, converted band by band (``np.array(image)``
    would hold the image's bytes AND the copy at once)."""
    w, h = image.size
    out = np.empty((h, w, 3), np.uint8)
    rows = max(1, BAND_PIXELS // max(1, w))
    for r0 in range(0, h, rows):
        out[r0:r0 + rows] = np.asarray(image.crop((0, r0, w, min(h, r0 + rows))))
    return out


def composite(original: Image.Image, edited: Image.Image, mask: np.ndarray, radius: int) -> Image.Image:
    """``edited`` blended over ``original`` inside ``mask`` with a feathered edge, at the original's size.

    The alpha is :func:`feather` ``(mask, radius)`` quantised to uint8, and the blend is
    ``(o * (255 - a) + e * a + 127) // 255`` in uint16, so where ``a == 0`` (everywhere outside the
    mask) the output byte IS the original's, and where ``a == 255`` it is the edited one. Only the
    mask's bounding box is worked on: ``edited`` (any size) is resized (LANCZOS) over that box alone,
    and alpha and blend run in bands of :data:`BAND_PIXELS`. Memory: the output copy (3 B/px), the
    box of ``edited`` at full size (4 B/px of the box), and bounded band temporaries; no float copy.

    Args:
        original: the input photo, any mode (converted to RGB).
        edited: the editor's output, any size (it covers the same view as ``original``).
        mask: bool ``(height, width)`` of ``original``: the pixels the edit may change.
        radius: the feather radius in px (0: a hard edge).
    """
    out = _rgb_array(_to_rgb(original))  # a copy: background bytes as-is
    h, w = out.shape[:2]
    mask = _check_mask(mask)
    if mask.shape != (h, w):
        raise ValueError(f"mask has shape {mask.shape}, the image is {(h, w)} (height, width).")
    ring = _ring_box(mask)
    if ring is None:
        return Image.fromarray(out, "RGB")
    tight = tuple(int(v) for v in mask_bbox(mask))  # type: ignore[union-attr]
    tx0, ty0, tx1, ty1 = tight
    edited = _to_rgb(edited)
    if edited.size == (w, h):
        region = edited.crop(tight)
    else:
        sx, sy = edited.width / w, edited.height / h
        region = edited.resize((tx1 - tx0, ty1 - ty0), Image.Resampling.LANCZOS,
                               box=(tx0 * sx, ty0 * sy, tx1 * sx, ty1 * sy))
    radius = max(0, int(radius))
    table = np.rint(_smoothstep_table(radius) * 255).astype(np.uint8)
    for b0, b1, depth in _depth_bands(mask, radius, ring):
        r0, r1 = max(b0, ty0), min(b1, ty1)  # alpha is 0 outside the tight box
        if r0 >= r1:
            continue
        a = table[depth[r0 - b0:r1 - b0, tx0 - ring[0]:tx1 - ring[0]]]
        if not a.any():
            continue
        e = np.asarray(region.crop((0, r0 - ty0, tx1 - tx0, r1 - ty0)), dtype=np.uint8).astype(np.uint16)
        o = out[r0:r1, tx0:tx1]  # a view into out
        a16 = a[..., None].astype(np.uint16)
        blend = ((o.astype(np.uint16) * (255 - a16) + e * a16 + 127) // 255).astype(np.uint8)
        np.copyto(o, blend, where=a[..., None] > 0)  # pixels with alpha == 0 are never written
    return Image.fromarray(out, "RGB")


def region_at_full(mask: np.ndarray, work_region: np.ndarray) -> np.ndarray:
    """``mask`` (full size) united with ``work_region`` (a work-size mask) brought to full size
    (bilinear, > 0.5; a sliver that would vanish is kept).

    Only the part of the full image the work region can reach is resized: the work region's box
    grown by the resampling filter's reach, so the temporaries scale with the region, not the photo.
    Returns bool ``(height, width)`` of ``mask``.
    """
    mask = _check_mask(mask)
    work_region = _check_mask(work_region)
    out = mask.copy()
    box = mask_bbox(work_region)
    if box is None:
        return out
    h, w = mask.shape
    wh, ww = work_region.shape
    margin = 2 + int(math.ceil(max(ww / w, wh / h)))  # bilinear reaches 1 source px, more when shrinking
    bx0, by0 = max(0, int(box[0]) - margin), max(0, int(box[1]) - margin)
    bx1, by1 = min(ww, int(box[2]) + margin), min(wh, int(box[3]) + margin)
    sx, sy = w / ww, h / wh
    fx0, fy0 = int(math.floor(bx0 * sx)), int(math.floor(by0 * sy))
    fx1, fy1 = min(w, int(math.ceil(bx1 * sx))), min(h, int(math.ceil(by1 * sy)))
    im = Image.fromarray(work_region.astype(np.uint8) * 255, "L")
    size = (fx1 - fx0, fy1 - fy0)
    src = (fx0 / sx, fy0 / sy, fx1 / sx, fy1 / sy)
    part = np.asarray(im.resize(size, Image.Resampling.BILINEAR, box=src)) > 127
    if not part.any():  # a thin sliver must not vanish entirely
        part = np.asarray(im.resize(size, Image.Resampling.BOX, box=src)) > 0
    out[fy0:fy1, fx0:fx1] |= part
    return out


def black_out(image: Image.Image, mask: np.ndarray) -> Image.Image:
    """RGB ``image`` with everything outside ``mask`` set to black (CMU's masked input)."""
    arr = np.array(_to_rgb(image), dtype=np.uint8)
    mask = _check_mask(mask)
    if mask.shape != arr.shape[:2]:
        raise ValueError(f"mask has shape {mask.shape}, the image is {arr.shape[:2]} (height, width).")
    arr[~mask] = 0
    return Image.fromarray(arr, "RGB")


# --------------------------------------------------------------------------- boxes


def _clamp_box(box: Sequence[float], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer pixel box covering ``box`` (floor / ceil), clamped to the image."""
    w, h = size
    x0 = min(max(int(math.floor(box[0])), 0), w)
    y0 = min(max(int(math.floor(box[1])), 0), h)
    x1 = min(max(int(math.ceil(box[2])), 0), w)
    y1 = min(max(int(math.ceil(box[3])), 0), h)
    return x0, y0, x1, y1


def box_to_mask(box: Box, size: tuple[int, int]) -> np.ndarray:
    """Bool mask (height, width) of the pixels a box covers, clamped to ``size`` = (w, h)."""
    w, h = int(size[0]), int(size[1])
    mask = np.zeros((h, w), dtype=bool)
    x0, y0, x1, y1 = _clamp_box(box, (w, h))
    mask[y0:y1, x0:x1] = True
    return mask


def mask_bbox(mask: np.ndarray) -> Optional[Box]:
    """The tight box ``(x0, y0, x1, y1)`` (x1/y1 exclusive) of a mask, or None if empty."""
    mask = _check_mask(mask)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def union_box(boxes: Sequence[Box]) -> Box:
    """The smallest box containing all of ``boxes``."""
    return (float(min(b[0] for b in boxes)), float(min(b[1] for b in boxes)),
            float(max(b[2] for b in boxes)), float(max(b[3] for b in boxes)))


def grow_box(box: Box, grow: float, size: Optional[tuple[int, int]] = None) -> Box:
    """``box`` grown by ``grow`` x its width / height on each side, clamped to ``size``."""
    x0, y0, x1, y1 = (float(v) for v in box)
    dx, dy = (x1 - x0) * grow, (y1 - y0) * grow
    x0, y0, x1, y1 = x0 - dx, y0 - dy, x1 + dx, y1 + dy
    if size is not None:
        w, h = size
        x0, y0 = max(0.0, x0), max(0.0, y0)
        x1, y1 = min(float(w), x1), min(float(h), y1)
    return (x0, y0, x1, y1)


def clip_mask_to_box(mask: np.ndarray, box: Box, grow: float = 0.1) -> np.ndarray:
    """``mask`` with everything outside ``box`` (grown by ``grow`` of its size) zeroed."""
    mask = _check_mask(mask)
    h, w = mask.shape
    return mask & box_to_mask(grow_box(box, grow, (w, h)), (w, h))


def crop_box(image: Image.Image, box: Box, pad: float = 0.0) -> Image.Image:
    """The part of ``image`` inside ``box`` grown by ``pad`` x its size (at least 1 px)."""
    x0, y0, x1, y1 = _clamp_box(grow_box(box, pad, image.size), image.size)
    w, h = image.size
    x1, y1 = max(x1, min(x0 + 1, w)), max(y1, min(y0 + 1, h))
    x0, y0 = min(x0, x1 - 1), min(y0, y1 - 1)
    return image.crop((x0, y0, x1, y1))


def iou(box_a: Box, box_b: Box) -> float:
    """Intersection over union of two boxes (0.0 when they do not overlap)."""
    ax0, ay0, ax1, ay1 = box_a
    bx0, by0, bx1, by1 = box_b
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = max(0.0, ax1 - ax0) * max(0.0, ay1 - ay0) + max(0.0, bx1 - bx0) * max(0.0, by1 - by0) - inter
    return float(inter / union) if union > 0 else 0.0


_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"


def parse_box(text: str, size: Optional[tuple[int, int]] = None) -> Box:
    """Parse ``"x0,y0,x1,y1"`` (ints or floats, brackets and spaces allowed) into a Box.

    Raises :class:`BoxParseError` (a ValueError) when malformed, empty, or outside ``size``.
    """
    raw = str(text).strip()
    inner = raw.strip("()[]{} ")
    parts = [p for p in re.split(r"[\s,;]+", inner) if p]
    if len(parts) != 4 or not all(re.fullmatch(_NUMBER, p) for p in parts):
        raise BoxParseError(f"The box {raw!r} is not four numbers written as x0,y0,x1,y1.")
    x0, y0, x1, y1 = (float(p) for p in parts)
    if x1 <= x0 or y1 <= y0:
        raise BoxParseError(f"The box {raw!r} is empty: x1 must be greater than x0 and y1 greater than y0.")
    if size is not None:
        w, h = size
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            raise BoxParseError(f"The box {raw!r} lies outside the {w}x{h} image.")
    return (x0, y0, x1, y1)


def parse_point(text: str, size: Optional[tuple[int, int]] = None) -> tuple[Point, int]:
    """Parse ``"x,y"`` (a point on the object) or ``"x,y,0"`` (a point *not* on it) into
    ``((x, y), label)``, label 1 = include, 0 = exclude (SAM's point labels).

    Raises :class:`BoxParseError` (a ValueError) when malformed or outside ``size``.
    """
    raw = str(text).strip()
    parts = [p for p in re.split(r"[\s,;]+", raw.strip("()[]{} ")) if p]
    if len(parts) not in (2, 3) or not all(re.fullmatch(_NUMBER, p) for p in parts[:2]) \
            or (len(parts) == 3 and parts[2] not in ("0", "1")):
        raise BoxParseError(f"The point {raw!r} is not written as x,y (on the object) or x,y,0 (not on it).")
    x, y = float(parts[0]), float(parts[1])
    if size is not None and not (0 <= x < size[0] and 0 <= y < size[1]):
        raise BoxParseError(f"The point {raw!r} lies outside the {size[0]}x{size[1]} image.")
    return (x, y), int(parts[2]) if len(parts) == 3 else 1


def box_containing(point: Point, boxes: Sequence[Box]) -> Optional[int]:
    """Index of the smallest of ``boxes`` that contains ``point`` (the object clicked), or None."""
    x, y = point
    inside = [(max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]), i) for i, b in enumerate(boxes)
              if b[0] <= x <= b[2] and b[1] <= y <= b[3]]
    return min(inside)[1] if inside else None


def load_mask(path: Source, size: tuple[int, int]) -> np.ndarray:
    """Any image file as a bool mask of ``size`` = (width, height).

    White (> 127 in the L channel) is the mask; for an image with real transparency the
    opaque part is. Resized with NEAREST. Raises :class:`ImageError` for a bad file or an
    empty mask.
    """
    img = _open_raw(path)
    alpha: Optional[Image.Image] = None
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        a = img.convert("RGBA").getchannel("A")
        if a.getextrema()[0] < 255:
            alpha = a
    gray = alpha if alpha is not None else _to_rgb(img).convert("L")
    w, h = int(size[0]), int(size[1])
    if gray.size != (w, h):
        gray = gray.resize((w, h), Image.Resampling.NEAREST)
    mask = np.asarray(gray) > 127
    if not mask.any():
        name = "The uploaded mask" if isinstance(path, (bytes, bytearray)) else f"The mask {str(path)!r}"
        raise ImageError(f"{name} is empty (it has no white or opaque pixels).")
    return mask
