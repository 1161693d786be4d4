"""The worker's wire format: images, masks, requests and results as JSON values.

Shared by the HTTP server (:mod:`tools.worker.server`) and its client (:mod:`tools.worker.client`).

* an image is a base64 string of its lossless PNG bytes (:func:`encode_image`);
* a mask is a base64 1-bit PNG of the image's size, white = True (:func:`encode_mask`);
* a box is ``[x0, y0, x1, y1]`` and a point ``[x, y]`` in original pixels, a point label 1 (on the
  object) or 0 (not on it); the results are their dataclasses' fields.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import asdict, fields
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image

from tools.images import load_image, to_png_bytes
from tools.types import Box, Caption, Detection, EditRequest, EditResult, ImageError, Point, Scores, Segmentation

REPLICA_HEADER = "X-Localedit-Replica"
"""The response header naming the replica (process) that served a request."""

AFFINITY_HEADER = "serve_multiplexed_model_id"
"""The request header carrying the content hash of the photo a request is about. Ray Serve's model
multiplexing routes requests with the same value to the replica that holds it (that replica's
caption, SAM-embedding and CLIP-embedding caches have the photo); a plain worker ignores it."""



def encode_image(image: Image.Image) -> str:
    """An image as base64 PNG text (lossless: the same pixels come out)."""
    return base64.b64encode(to_png_bytes(image)).decode("ascii")


def field_bytes(text: str, field: str) -> bytes:
    """The bytes of a base64 field, or an :class:`~tools.types.ImageError` naming the field."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ImageError(f"The field '{field}' is not valid base64.") from err


def image_from_bytes(data: bytes, field: str = "image", **limits: Any) -> Image.Image:
    """Encoded image bytes of ``field`` as RGB; ``limits`` as :func:`tools.images.load_image` takes them."""
    try:
        return load_image(data, **limits)
    except ImageError as err:
        raise ImageError(str(err).replace("The uploaded image", f"The field '{field}'")) from err


def mask_from_bytes(data: bytes, field: str = "mask", **limits: Any) -> np.ndarray:
    """Encoded mask bytes as a bool ``(H, W)`` array (any image: non-black = True)."""
    return np.asarray(image_from_bytes(data, field, **limits).convert("L")) > 127


def decode_image(text: str, field: str = "image", *, max_bytes: Optional[int] = None,
                 max_pixels: Optional[int] = None) -> Image.Image:
    """Inverse of :func:`encode_image`; size limits as :func:`tools.images.load_image`."""
    return image_from_bytes(field_bytes(text, field), field, max_bytes=max_bytes, max_pixels=max_pixels)


def encode_mask(mask: np.ndarray) -> str:
    """A bool ``(H, W)`` mask as base64 text of a 1-bit PNG (white = True)."""
    img = Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255, "L").convert("1")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_mask(text: str, field: str = "mask", *, max_bytes: Optional[int] = None,
                max_pixels: Optional[int] = None) -> np.ndarray:
    """Inverse of :func:`encode_mask`: a bool ``(H, W)`` array (any image: non-black = True)."""
    return mask_from_bytes(field_bytes(text, field), field, max_bytes=max_bytes, max_pixels=max_pixels)


def caption_to_wire(c: Caption) -> dict[str, Any]:
    return asdict(c)


def detections_to_wire(dets: Sequence[Detection]) -> dict[str, Any]:
    return {"detections": [{"label": d.label, "score": float(d.score), "box": [float(v) for v in d.box]}
                           for d in dets]}


def segmentation_to_wire(s: Segmentation) -> dict[str, Any]:
    return {"mask": encode_mask(s.mask), "score": float(s.score), "source": s.source, "note": s.note,
            "cache_hit": bool(s.cache_hit)}


def edit_result_to_wire(r: EditResult) -> dict[str, Any]:
    return {"image": encode_image(r.image), "editor": r.editor, "seconds": float(r.seconds),
            "info": json.loads(json.dumps(r.info, default=str)),
            "region": None if r.region is None else encode_mask(r.region),
            "whole": None if r.whole is None else encode_image(r.whole)}


def scores_to_wire(s: Scores) -> dict[str, Any]:
    return asdict(s)


def request_to_wire(r: EditRequest) -> dict[str, Any]:
    return asdict(r)


def segment_request_to_wire(image: Image.Image, boxes: Sequence[Box], points: Sequence[Point] = (),
                            point_labels: Optional[Sequence[int]] = None) -> dict[str, Any]:
    """The ``/segment`` body: ``{image, boxes, points?, point_labels?}`` (points only when given,
    so a boxes-only request is what older workers accept)."""
    body: dict[str, Any] = {"image": encode_image(image), "boxes": [[float(v) for v in b] for b in boxes]}
    if points:
        body["points"] = [[float(v) for v in p] for p in points]
        body["point_labels"] = [1] * len(points) if point_labels is None else [int(v) for v in point_labels]
    return body


def caption_from_wire(d: dict) -> Caption:
    return Caption(text=d["text"], kind=d.get("kind", ""), cache_hit=bool(d.get("cache_hit")))


def detections_from_wire(d: dict) -> list[Detection]:
    return [Detection(x["label"], float(x["score"]), tuple(float(v) for v in x["box"])) for x in d["detections"]]


def segmentation_from_wire(d: dict) -> Segmentation:
    return Segmentation(mask=decode_mask(d["mask"]), score=float(d["score"]), source=d.get("source", "sam"),
                        note=d.get("note", ""), cache_hit=bool(d.get("cache_hit")))


def edit_result_from_wire(d: dict) -> EditResult:
    region, whole = d.get("region"), d.get("whole")
    return EditResult(image=decode_image(d["image"]), editor=d["editor"], seconds=float(d["seconds"]),
                      info=d.get("info") or {}, region=None if region is None else decode_mask(region),
                      whole=None if whole is None else decode_image(whole))


def scores_from_wire(d: dict) -> Scores:
    known = {f.name for f in fields(Scores)}
    return Scores(**{k: v for k, v in d.items() if k in known})


__all__ = ["REPLICA_HEADER", "encode_image", "decode_image", "encode_mask", "decode_mask", "field_bytes",
           "image_from_bytes", "mask_from_bytes",
           "caption_to_wire", "detections_to_wire", "segmentation_to_wire", "edit_result_to_wire",
           "scores_to_wire", "request_to_wire", "segment_request_to_wire", "caption_from_wire", "detections_from_wire",
           "segmentation_from_wire", "edit_result_from_wire", "scores_from_wire"]
