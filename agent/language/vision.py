"""The planner sees the photo: images for vision LLMs, servers that refuse them, and the boxes they give.

* :func:`attach_photo` puts the photo on screen into the turn's last user message as an OpenAI
  ``image_url`` part (a JPEG data URL, long side ``LOCALEDIT_LLM_IMAGE_SIDE``) with a line saying how to
  give a box (``agent/language/prompts/vision.txt``); langchain-openai passes the part through to the server. The
  caption stays in the system prompt: the context for a model that cannot see, and the fallback.
* A server that refuses images (vLLM 400 "<model> is not a multimodal model", llama.cpp without
  ``--mmproj`` 500 "image input is not supported - hint: ... mmproj", Ollama with a text model
  "vision model not found", LM Studio "Model does not support images") is asked again without them
  and remembered for this process (:mod:`agent.language.refusals`), as tool definitions are in
  :mod:`agent.language.llm_client`: detected once per server (``LOCALEDIT_LLM_VISION=auto``), or never sent (``off``).
* A box the model gives (``bbox_2d`` in ``edit_region``) is in pixels of the image as sent
  (Qwen2.5-VL) or on a 0-1000 grid (Qwen3-VL, Gemma 3): :func:`box_format` says which per model
  family (or ``LOCALEDIT_LLM_BOX_FORMAT``) and :func:`to_pixels` maps it onto the photo. In the
  ground step :func:`hint_detections` makes it a grounding hint: it picks the detection it overlaps,
  or stands in for the object when the detector found none; SAM refines it into the mask, and a
  qualifier or plural ("the leftmost", "all the cats") is still the selection rules' to decide.
"""

from __future__ import annotations

import base64
import io
import logging
import re
from typing import Any, Optional, Sequence

from agent.language import refusals
from agent.language.prompts import render_prompt
from tools.images import iou
from tools.types import Box, Detection

log = logging.getLogger(__name__)

IMAGE_ERROR_STATUSES = {400, 404, 415, 422, 500, 501}
_IMAGE_ERROR_RE = re.compile(r"not a multimodal model|image input is not supported|mmproj|vision model not found|"
                             r"does not support (?:images|image input|vision)|image_url|multimodal", re.I)
MIN_HINT_IOU = 0.3
"""Overlap (IoU) at which the model's box and a detection are the same object."""

def is_images_error(exc: BaseException, status: Optional[int]) -> bool:
    """Whether a failed request is a server refusing the image parts (the texts in the module docstring)."""
    if status not in IMAGE_ERROR_STATUSES:
        return False
    text = " ".join(filter(None, (str(exc), str(getattr(exc, "body", "") or ""))))
    return bool(_IMAGE_ERROR_RE.search(text))


def has_images(messages: Sequence[Any]) -> bool:
    """Whether any message carries an ``image_url`` part."""
    return any(isinstance(m.content, list) and any(isinstance(p, dict) and p.get("type") == "image_url"
                                                   for p in m.content) for m in messages)


def without_images(messages: Sequence[Any]) -> list[Any]:
    """The messages with every image part (and the line about it, the second text part) taken out."""
    out = []
    for m in messages:
        if isinstance(m.content, list):
            texts = [p["text"] for p in m.content if isinstance(p, dict) and p.get("type") == "text"]
            m = m.model_copy(update={"content": texts[0] if texts else ""})  # the message's own text comes first
        out.append(m)
    return out


def photo_data_url(image: Any, max_side: int) -> tuple[str, tuple[int, int]]:
    """``(data URL of a JPEG of image, long side at most max_side; its (width, height))``."""
    image = image.convert("RGB")
    scale = min(1.0, max_side / max(image.size))
    if scale < 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode(), image.size


def box_format(model: Optional[str], setting: str = "auto") -> str:
    """``"pixels"`` or ``"grid1000"``: how ``model`` writes boxes (``setting`` unless it is ``auto``)."""
    if setting != "auto":
        return setting
    name = re.sub(r"[\s_.:-]", "", (model or "").lower())
    return "pixels" if "qwen25vl" in name else "grid1000"


def attach_photo(messages: Sequence[Any], image: Any, max_side: int, fmt: str) -> tuple[list[Any], tuple[int, int]]:
    """The messages with ``image`` added to the last user message; ``(messages, size as sent)``."""
    url, sent = photo_data_url(image, max_side)
    coords = (f"pixels of this {sent[0]}x{sent[1]} image" if fmt == "pixels"
              else "coordinates from 0 to 1000 across the image's width and height")
    out = list(messages)
    last = out[-1]
    note = render_prompt("vision", width=sent[0], height=sent[1], coordinates=coords).strip()
    out[-1] = last.model_copy(update={"content": [
        {"type": "text", "text": str(last.content)},
        {"type": "text", "text": note},
        {"type": "image_url", "image_url": {"url": url}}]})
    return out, sent


def to_pixels(box: Optional[Sequence[float]], fmt: str, sent: tuple[int, int], size: tuple[int, int]) -> Optional[Box]:
    """A model's box as pixels of the photo (``size``), clipped; None when it is not a usable box."""
    if box is None or len(box) != 4:
        return None
    x0, y0, x1, y1 = (float(v) for v in box)
    if fmt == "grid1000":
        sx, sy = size[0] / 1000.0, size[1] / 1000.0
    else:
        sx, sy = size[0] / float(sent[0]), size[1] / float(sent[1])
    x0, x1 = sorted((max(0.0, min(size[0], x0 * sx)), max(0.0, min(size[0], x1 * sx))))
    y0, y1 = sorted((max(0.0, min(size[1], y0 * sy)), max(0.0, min(size[1], y1 * sy))))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return (round(x0, 1), round(y0, 1), round(x1, 1), round(y1, 1))


def hint_detections(found: list[Detection], hint: Box, label: str, decides: bool) -> tuple[list[Detection], str]:
    """The detections the selection step sees, given the model's box ``hint``; and why, in words.

    ``decides``: the plan names no qualifier and is not plural, so the hint may pick the object.
    Nothing detected: the hint is the object (SAM refines it). Else, when it may decide, the
    detection it overlaps most (IoU at least ``MIN_HINT_IOU``) is the only candidate; otherwise
    the detections stand and the selection rules decide.
    """
    if not found:
        return [Detection(label, 1.0, tuple(hint))], "the language model's box (the detector found nothing)"
    if not decides:
        return found, "the selection rules decide (a qualifier or plural); the model's box is not needed"
    best = max(found, key=lambda d: iou(d.box, hint))
    if iou(best.box, hint) < MIN_HINT_IOU:
        return found, "the language model's box overlaps no detection; the selection rules decide"
    return [best], "the detection the language model's box points at"


def with_photo(messages: list[Any], context: Any, server: str, model: Optional[str], mode: str, side: int,
               fmt: str) -> tuple[list[Any], Optional[tuple]]:
    """``messages`` with the photo on screen (``context.photo``) attached, and ``(box format, size sent,
    photo size)``; unchanged and None when ``mode`` is off, ``server`` refuses images or there is no photo."""
    path = getattr(context, "photo", None)
    if mode == "off" or not path or server in refusals.IMAGES:
        return list(messages), None
    from agent.runtime.store import ImageStore

    try:
        image = ImageStore.open(path)
    except OSError as err:  # the photo went missing: the caption still describes it
        log.warning("the photo could not be read for the language model (%s)", err)
        return list(messages), None
    fmt = box_format(model, fmt)
    messages, sent = attach_photo(messages, image, side, fmt)
    return messages, (fmt, sent, image.size)


def seen(result: Any, photo: Optional[tuple], server: str) -> Any:
    """A plan's box in pixels of the photo; dropped when the model did not see the photo (``photo`` None,
    or ``server`` refused the images)."""
    box = getattr(result, "box", None)
    if box is None:
        return result
    ok = photo is not None and server not in refusals.IMAGES
    return result.model_copy(update={"box": to_pixels(box, *photo) if ok else None})
