"""CLIP metrics of one edit: how faithful to the instruction, how much of the rest survived.

The metrics, as in the papers they come from:

- **CLIP-I**: ``cos(E_img(original), E_img(edited))`` (image similarity).
- **CLIP-T**: ``cos(E_img(edited), E_txt(target_caption))``.
- **CLIP direction** (InstructPix2Pix): ``cos(E_img(edited) - E_img(original),
  E_txt(target_caption) - E_txt(source_caption))``; 0.0 when either difference is zero.
- **CLIP-RC** (R-SIE, region vs class): ``cos(E_img(edited cropped to the target box),
  E_txt(target_text or target_caption))``; the box defaults to the mask's bounding box.
- **CLIP-GC** (R-SIE, global context): ``cos(E_img(original with the region removed),
  E_img(edited with the same region removed))``; "removed" = filled with black, the
  region being the mask (or the box when there is no mask).
- **L1 / L2 outside the mask**: mean ``|o - e|`` / ``(o - e)^2`` over the pixels outside the
  mask (all three channels, pixels in [0, 1]); ``l1`` / ``l2`` are the same over the
  whole image.

Embeddings are L2-normalised float32 vectors on the CPU. Image embeddings are cached in a
:class:`~tools.cache.ByteLRU` by content hash, so every distinct image goes through the CLIP
vision tower once; text embeddings are cached by text. Cosines are computed in float32.
"""

from __future__ import annotations

import threading
from typing import Any, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from tools.cache import ByteLRU
from tools.images import black_out, box_to_mask, content_hash, crop_box, mask_bbox, resize_mask
from tools.types import Box, Scores

__all__ = ["Scorer", "cosine", "direction_similarity", "masked_l1_l2", "to_unit_array",
           "features_tensor"]

DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
_EPS = 1e-12


# --------------------------------------------------------------------------- pure formulas


def _vec(x: Any) -> torch.Tensor:
    """``x`` (tensor, array or sequence) as a flat float32 CPU tensor."""
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float32))
    return t.to(device="cpu", dtype=torch.float32).reshape(-1)


def cosine(a: Any, b: Any) -> float:
    """Cosine similarity of two vectors in float32; 0.0 when either is (numerically) zero."""
    va, vb = _vec(a), _vec(b)
    if va.shape != vb.shape:
        raise ValueError(f"cosine of vectors of different lengths {va.numel()} and {vb.numel()}.")
    na, nb = torch.linalg.vector_norm(va), torch.linalg.vector_norm(vb)
    if float(na) <= _EPS or float(nb) <= _EPS:
        return 0.0
    value = float(torch.dot(va, vb) / (na * nb))
    return max(-1.0, min(1.0, value))


def direction_similarity(img0: Any, img1: Any, txt0: Any, txt1: Any) -> float:
    """InstructPix2Pix's CLIP direction similarity: ``cos(img1 - img0, txt1 - txt0)``.

    ``img0`` / ``txt0`` are the original image and source caption embeddings, ``img1`` /
    ``txt1`` the edited image and target caption. A zero change (identical images or
    captions) gives 0.0.
    """
    return cosine(_vec(img1) - _vec(img0), _vec(txt1) - _vec(txt0))


def to_unit_array(image: Any) -> np.ndarray:
    """An image (PIL or array) as float64 ``(H, W, C)`` or ``(H, W)`` in [0, 1].

    uint8 input is divided by 255; float input is taken to be in [0, 1] already.
    """
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    return arr.astype(np.float64)


def masked_l1_l2(a: Any, b: Any, mask: Optional[np.ndarray] = None
                 ) -> tuple[Optional[float], Optional[float]]:
    """Mean absolute and mean squared difference of ``a`` and ``b`` OUTSIDE ``mask``.

    ``a`` and ``b`` are same-shape images (PIL, uint8 arrays scaled to [0, 1], or float
    arrays already in [0, 1]), ``(H, W)`` or ``(H, W, C)``; ``mask`` is bool ``(H, W)``:
    its True pixels are excluded. ``mask=None`` compares the whole image. The mean runs
    over every channel of every counted pixel. ``(None, None)`` when no pixel is counted
    (the mask covers the whole image).
    """
    x, y = to_unit_array(a), to_unit_array(b)
    if x.shape != y.shape:
        raise ValueError(f"images have different shapes {x.shape} and {y.shape}.")
    diff = x - y
    if mask is not None:
        m = np.asarray(mask).astype(bool)
        if m.shape != x.shape[:2]:
            raise ValueError(f"mask has shape {m.shape}, the images are {x.shape[:2]} (height, width).")
        diff = diff[~m]
    if diff.size == 0:
        return None, None
    return float(np.mean(np.abs(diff))), float(np.mean(diff * diff))


def features_tensor(output: Any) -> torch.Tensor:
    """The projected embeddings from ``get_image_features`` / ``get_text_features``.

    transformers 4 returns the tensor itself; transformers 5 returns a
    ``BaseModelOutputWithPooling`` whose ``pooler_output`` holds the projection (or, as a
    tuple, that output's second element).
    """
    if isinstance(output, torch.Tensor):
        return output
    for name in ("image_embeds", "text_embeds", "pooler_output"):
        value = getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(output, (tuple, list)) and len(output) > 1 and isinstance(output[1], torch.Tensor):
        return output[1]
    raise TypeError(f"Cannot find the CLIP embeddings in a {type(output).__name__}.")


def _normalise(features: torch.Tensor) -> torch.Tensor:
    """Rows of ``features`` as float32 CPU unit vectors."""
    f = features.detach().to(device="cpu", dtype=torch.float32)
    return f / f.norm(dim=-1, keepdim=True).clamp_min(_EPS)


# --------------------------------------------------------------------------- scorer


class Scorer:
    """CLIP embeddings (cached) and the edit metrics built on them.

    ``cache`` holds image embeddings by content hash and text embeddings by text (a fresh
    64 MB :class:`ByteLRU` when None; it may be shared with other tools: keys are tuples
    starting with ``"clip-image"`` / ``"clip-text"``). Thread-safe: model calls are serialised.
    """

    def __init__(self, model: Any, processor: Any, device: torch.device | str,
                 dtype: torch.dtype, cache: Optional[ByteLRU] = None):
        self.model = model
        self.processor = processor
        self.device = torch.device(device)
        self.dtype = dtype
        self.cache = cache if cache is not None else ByteLRU(DEFAULT_CACHE_BYTES, name="clip")
        self.image_hits = 0  # image embeddings served from the cache
        self.image_forwards = 0  # images run through the vision tower
        self.text_hits = 0
        self.text_forwards = 0
        self._lock = threading.RLock()

    # ---- embeddings -------------------------------------------------------------------

    def _image_processor(self) -> Any:
        return getattr(self.processor, "image_processor", None) or self.processor

    def _tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", None) or self.processor

    @torch.inference_mode()
    def _encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        pixels = self._image_processor()(images=list(images), return_tensors="pt")["pixel_values"]
        pixels = pixels.to(device=self.device, dtype=self.dtype)
        return _normalise(features_tensor(self.model.get_image_features(pixel_values=pixels)))

    @torch.inference_mode()
    def _encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        tok = self._tokenizer()(list(texts), padding=True, truncation=True, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in tok.items() if k in ("input_ids", "attention_mask")}
        return _normalise(features_tensor(self.model.get_text_features(**inputs)))

    def image_embeddings(self, images: Sequence[Image.Image]) -> tuple[list[torch.Tensor], int]:
        """Unit embeddings of ``images`` and how many distinct ones came from the cache.

        Duplicates (same content hash) are embedded once; all cache misses run in one batch.
        """
        rgb = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
        keys = [("clip-image", content_hash(im)) for im in rgb]
        found: dict[tuple, torch.Tensor] = {}
        hits = 0
        with self._lock:
            missing: dict[tuple, Image.Image] = {}
            for key, im in zip(keys, rgb):
                if key in found or key in missing:
                    continue
                value = self.cache.get(key)
                if value is not None:
                    found[key] = value
                    hits += 1
                else:
                    missing[key] = im
            if missing:
                embs = self._encode_images(list(missing.values()))
                for key, emb in zip(missing, embs):
                    emb = emb.clone()
                    found[key] = emb
                    self.cache.put(key, emb)
                self.image_forwards += len(missing)
            self.image_hits += hits
        return [found[k] for k in keys], hits

    def image_embedding(self, image: Image.Image) -> torch.Tensor:
        """L2-normalised CLIP embedding (float32, CPU, 1-D) of one RGB image; cached."""
        return self.image_embeddings([image])[0][0]

    def text_embeddings(self, texts: Sequence[str]) -> list[torch.Tensor]:
        """Unit embeddings of ``texts``; cached by text, misses run in one batch."""
        keys = [("clip-text", str(t)) for t in texts]
        found: dict[tuple, torch.Tensor] = {}
        with self._lock:
            missing: list[tuple] = []
            for key in keys:
                if key in found or key in missing:
                    continue
                value = self.cache.get(key)
                if value is not None:
                    found[key] = value
                    self.text_hits += 1
                else:
                    missing.append(key)
            if missing:
                embs = self._encode_texts([k[1] for k in missing])
                for key, emb in zip(missing, embs):
                    emb = emb.clone()
                    found[key] = emb
                    self.cache.put(key, emb)
                self.text_forwards += len(missing)
        return [found[k] for k in keys]

    def text_embedding(self, text: str) -> torch.Tensor:
        """L2-normalised CLIP embedding (float32, CPU, 1-D) of ``text``; cached."""
        return self.text_embeddings([text])[0]

    def stats(self) -> dict[str, int]:
        """Counters for the worker's status report."""
        return {"image_hits": self.image_hits, "image_forwards": self.image_forwards,
                "text_hits": self.text_hits, "text_forwards": self.text_forwards}

    # ---- metrics ----------------------------------------------------------------------

    def score(self, original: Image.Image, edited: Image.Image, *,
              mask: Optional[np.ndarray] = None, box: Optional[Box] = None,
              source_caption: str = "", target_caption: str = "",
              target_text: str = "") -> Scores:
        """Every metric the inputs allow; the others are None.

        ``mask`` is bool ``(H, W)`` at the original's size (resized to it if not). The edited
        image is resized to the original's size when they differ, and that resized image is
        the one every metric sees. Without a mask ``l1_outside`` / ``l2_outside`` are None
        (``l1`` / ``l2`` always cover the whole image); without a mask and a box CLIP-RC and
        CLIP-GC are None. ``cache_hits`` counts the distinct images of this call whose
        embeddings came from the cache.
        """
        original = original if original.mode == "RGB" else original.convert("RGB")
        edited = edited if edited.mode == "RGB" else edited.convert("RGB")
        if edited.size != original.size:
            edited = edited.resize(original.size, Image.Resampling.LANCZOS)
        w, h = original.size
        m: Optional[np.ndarray] = None
        if mask is not None:
            m = np.asarray(mask).astype(bool)
            if m.shape != (h, w):
                m = resize_mask(m, (w, h))

        scores = Scores()
        scores.l1, scores.l2 = masked_l1_l2(original, edited, None)
        if m is not None:
            scores.l1_outside, scores.l2_outside = masked_l1_l2(original, edited, m)

        # The images to embed: original, edited, then the region crop and the removed pair.
        images = [original, edited]
        region_box: Optional[Box] = box if box is not None else (mask_bbox(m) if m is not None else None)
        rc_text = target_text or target_caption
        crop_at = gc_at = None
        if region_box is not None and rc_text:
            crop_at = len(images)
            images.append(crop_box(edited, region_box))
        removed = m if m is not None else (box_to_mask(box, (w, h)) if box is not None else None)
        if removed is not None:
            gc_at = len(images)
            images += [black_out(original, ~removed), black_out(edited, ~removed)]
        embs, scores.cache_hits = self.image_embeddings(images)
        e_orig, e_edit = embs[0], embs[1]

        scores.clip_i = cosine(e_orig, e_edit)
        texts = [t for t in (source_caption, target_caption, rc_text) if t]
        text_emb = dict(zip(texts, self.text_embeddings(texts))) if texts else {}
        if target_caption:
            scores.clip_t = cosine(e_edit, text_emb[target_caption])
            if source_caption:
                scores.clip_dir = direction_similarity(e_orig, e_edit, text_emb[source_caption],
                                                       text_emb[target_caption])
        if crop_at is not None:
            scores.clip_rc = cosine(embs[crop_at], text_emb[rc_text])
        if gc_at is not None:
            scores.clip_gc = cosine(embs[gc_at], embs[gc_at + 1])
        return scores
