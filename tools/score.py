"""The metrics of one edit, as the papers define them and on their scales.

With ``E_img`` / ``E_txt`` CLIP's unit image / text embeddings:

- **CLIP-I** (InstructPix2Pix, CMU): ``cos(E_img(original), E_img(edited))``, 0-1.
- **CLIP-T** (InstructEdit's "CLIP score" / 100): ``cos(E_img(edited), E_txt(target_caption))``, 0-1.
- **CLIP direction** (InstructPix2Pix): ``cos(E_img(edited) - E_img(original),
  E_txt(target_caption) - E_txt(source_caption))``, -1..1; 0.0 when either difference is zero.
  ``clip_dir_region`` is the same formula on the object alone (each target box's crop, black outside
  the undilated mask, of original and output; the mean over boxes): did the region move toward the
  instruction. The judge checks it for masked editors and compares it with the baseline's.
- **CLIP-RC** (R-SIE section 4.3): the target box is cropped from the output and classified
  zero-shot by CLIP over the labels {target category, source category, COCO's 80 categories}
  (prompt ``"a photo of a {label}."``): ``100 * softmax_k(s * cos(E_img(crop), E_txt(label_k)))``
  at the target, with ``s`` the model's own logit scale (100 for OpenAI's CLIP). 0-100; R-SIE's
  Figure 4 reads 60.27 for a success and 1.10 for a failure. With several boxes, the mean.
  ``clip_rc_source`` is the same classifier's probability of the source category (R-SIE's
  Delete "RC", lower is better); ``clip_crop_t`` the raw ``cos(E_img(crop), E_txt(target_caption))``.
- **CLIP-GC** (R-SIE section 4.3): the target box(es) blanked (filled with black) in both the
  original and the output, ``100 * cos`` of their embeddings, 0-100 (87-94 in R-SIE's Table 2).
- **L1 / L2 outside** (R-SIE Table 3, ZONE): mean ``|o - e|`` / ``(o - e)^2`` over every channel
  of the pixels outside the undilated object mask (the boxes when there is no mask), pixels in
  [0, 1]; ``l1`` / ``l2`` over the whole image; ``l1_inside`` the mean ``|o - e|`` inside the mask
  (the boxes without one): whether the region changed at all. Computed from the uint8 pixels in bands of rows,
  so a 64-megapixel image needs a few megabytes, never a float copy of itself.

The region is the sample's evaluation region (:mod:`tools.region`), the same for every attempt
and editor. Embeddings are L2-normalised float32 vectors on the CPU; image embeddings are cached
in a :class:`~tools.cache.ByteLRU` by content hash and text embeddings by text, so every distinct
image and label goes through CLIP once. Images larger than ``CLIP_MAX_SIDE`` are downscaled before
CLIP (its processor resizes to a few hundred pixels anyway).
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageDraw

from tools.cache import ByteLRU
from tools.images import box_to_mask, content_hash, crop_box, mask_bbox, resize_mask
from tools.types import Box, Scores

__all__ = ["Scorer", "cosine", "direction_similarity", "masked_l1_l2", "zero_shot_probabilities",
           "label_set", "coco_categories", "features_tensor", "PROMPT", "CLIP_MAX_SIDE"]

DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
PROMPT = "a photo of a {}."
"""CLIP's zero-shot prompt (Radford et al., 2021) for one CLIP-RC label."""
CLIP_MAX_SIDE = 1024
"""Images with a longer side are downscaled to it before CLIP (which sees 224 px)."""
CHUNK_PIXELS = 1 << 20
"""Pixels per band of rows in the pixel metrics: bounds their memory whatever the image size."""
_EPS = 1e-12

ImageLike = Union[Image.Image, np.ndarray]


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


def zero_shot_probabilities(image: Any, labels: Sequence[Any], logit_scale: float) -> torch.Tensor:
    """CLIP zero-shot classification: ``softmax_k(logit_scale * cos(image, labels[k]))``.

    ``image`` is one embedding, ``labels`` the embeddings of the label prompts; returns the
    float32 probabilities, one per label, summing to 1 (CLIP's ``logits_per_image.softmax``).
    """
    img = _vec(image)
    img = img / torch.linalg.vector_norm(img).clamp_min(_EPS)
    txt = torch.stack([_vec(t) for t in labels])
    txt = txt / torch.linalg.vector_norm(txt, dim=-1, keepdim=True).clamp_min(_EPS)
    return torch.softmax(float(logit_scale) * (txt @ img), dim=0)


@lru_cache(maxsize=1)
def coco_categories() -> tuple[str, ...]:
    """COCO's 80 object categories (package data ``tools/coco_categories.txt``)."""
    text = (Path(__file__).with_name("coco_categories.txt")).read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def label_set(target: str, source: str = "", common: Sequence[str] = ()) -> list[str]:
    """CLIP-RC's labels: ``target``, then ``source``, then ``common`` (COCO's 80 by default).

    Empty names are left out and each name appears once (case-insensitive), so "cat" as the
    source and COCO's "cat" are one label.
    """
    found: dict[str, str] = {}
    for name in (target, source, *(common or coco_categories())):
        name = " ".join(str(name or "").split())
        if name and name.lower() not in found:
            found[name.lower()] = name
    return list(found.values())


def _rgb(image: ImageLike) -> ImageLike:
    return image.convert("RGB") if isinstance(image, Image.Image) and image.mode != "RGB" else image


def _size_hw(image: ImageLike) -> tuple[int, ...]:
    """``(H, W)`` or ``(H, W, C)`` of a PIL image or an array."""
    if isinstance(image, Image.Image):
        return (image.height, image.width, len(image.getbands()))
    return tuple(np.shape(image))


def _band(image: ImageLike, r0: int, r1: int) -> np.ndarray:
    """Rows ``r0:r1`` of ``image`` as an array (a copy of the band only, never of the image)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.crop((0, r0, image.width, r1)))
    return np.asarray(image)[r0:r1]


def masked_l1_l2(a: ImageLike, b: ImageLike, mask: Optional[np.ndarray] = None, *,
                 chunk_pixels: int = CHUNK_PIXELS) -> tuple[Optional[float], Optional[float]]:
    """Mean absolute and mean squared difference of ``a`` and ``b`` OUTSIDE ``mask``.

    ``a`` and ``b`` are same-shape images: PIL images or uint8 arrays (read as pixel / 255),
    or float arrays already in [0, 1]; ``(H, W)`` or ``(H, W, C)``. ``mask`` is bool ``(H, W)``:
    its True pixels are excluded; None compares the whole image. The mean runs over every
    channel of every counted pixel. ``(None, None)`` when no pixel is counted.

    The images are read ``chunk_pixels`` at a time: two uint8 images are differenced in int32
    and summed exactly in int64, so memory stays a few bands whatever the image size.
    """
    a, b = _rgb(a), _rgb(b)
    shape = _size_hw(a)
    if shape != _size_hw(b):
        raise ValueError(f"images have different shapes {shape} and {_size_hw(b)}.")
    h, w = shape[0], shape[1]
    m = None
    if mask is not None:
        m = np.asarray(mask).astype(bool, copy=False)
        if m.shape != (h, w):
            raise ValueError(f"mask has shape {m.shape}, the images are {(h, w)} (height, width).")
    rows = max(1, int(chunk_pixels) // max(1, w))
    total_abs = total_sq = 0
    count = 0
    integer = None
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)  # PIL's crop would pad past the last row with black
        x, y = _band(a, r0, r1), _band(b, r0, r1)
        if integer is None:
            integer = x.dtype == np.uint8 and y.dtype == np.uint8
        if integer:
            d = x.astype(np.int32) - y.astype(np.int32)
        else:
            d = _unit(x) - _unit(y)
        if m is not None:
            d = d[~m[r0:r1]]
        count += d.size
        total_abs += np.abs(d).sum(dtype=np.int64 if integer else np.float64)
        total_sq += (d * d).sum(dtype=np.int64 if integer else np.float64)
    if count == 0:
        return None, None
    scale = 255.0 if integer else 1.0
    return float(total_abs) / (scale * count), float(total_sq) / (scale * scale * count)


def _unit(x: np.ndarray) -> np.ndarray:
    """A band as float64 in [0, 1] (uint8 divided by 255)."""
    return x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)


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


def clip_view(image: Image.Image, max_side: int = CLIP_MAX_SIDE) -> tuple[Image.Image, float]:
    """``image`` downscaled so its long side is at most ``max_side``, and the scale applied."""
    long_side = max(image.size)
    if long_side <= max_side:
        return image, 1.0
    scale = max_side / long_side
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0), scale


def object_crop(image: Image.Image, mask: Optional[np.ndarray], box: Box) -> Image.Image:
    """``image`` cropped to ``box`` with every pixel outside ``mask`` black (the mask's own box
    crop when ``mask`` is None): the object alone, for the direction on the region."""
    crop = crop_box(image, box)
    if mask is None:
        return crop
    x0, y0 = (max(0, int(np.floor(float(v)))) for v in box[:2])
    keep = np.asarray(mask[y0:y0 + crop.height, x0:x0 + crop.width], dtype=bool)
    if keep.shape != (crop.height, crop.width):
        return crop
    pixels = np.asarray(crop.convert("RGB")).copy()
    pixels[~keep] = 0
    return Image.fromarray(pixels)


def blank_boxes(image: Image.Image, boxes: Sequence[Box], scale: float = 1.0) -> Image.Image:
    """A copy of ``image`` with every box (times ``scale``) filled with black (R-SIE's "removed")."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    for box in boxes:
        x0, y0, x1, y1 = (float(v) * scale for v in box)
        if x1 > x0 and y1 > y0:  # PIL's rectangle includes its last pixel: end one before x1 / y1
            draw.rectangle((int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)) - 1, int(np.ceil(y1)) - 1),
                           fill=(0, 0, 0))
    return out


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
        # CLIP's learned temperature exp(logit_scale) (100 for OpenAI's CLIP): CLIP-RC's softmax scale
        scale = getattr(model, "logit_scale", None)
        self.logit_scale = float(scale.detach().float().exp()) if isinstance(scale, torch.Tensor) else 100.0

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
              mask: Optional[np.ndarray] = None, boxes: Sequence[Box] = (), box: Optional[Box] = None,
              source_caption: str = "", target_caption: str = "",
              target_text: str = "", source_text: str = "") -> Scores:
        """Every metric the inputs allow; the others are None.

        Args:
            original, edited: the images; ``edited`` is resized to ``original``'s size when they
                differ, and every metric sees that resized image.
            mask: the undilated object mask, bool ``(H, W)`` at the original's size (resized if
                not); L1 / L2 outside exclude it.
            boxes, box: the target box(es) (``box`` is one more); CLIP-RC crops each, CLIP-GC
                blanks them all. Without any, the mask's bounding box.
            source_caption, target_caption: CLIP-T, CLIP direction and ``clip_crop_t``.
            target_text, source_text: CLIP-RC's target and source categories ("fox", "cat").

        Without a mask the boxes are the region of L1 / L2 outside; without a mask and a box
        CLIP-RC, CLIP-GC and the outside metrics are None. ``cache_hits`` counts the distinct
        images of this call whose embeddings came from the cache.
        """
        original = original if original.mode == "RGB" else original.convert("RGB")
        edited = edited if edited.mode == "RGB" else edited.convert("RGB")
        if edited.size != original.size:
            edited = edited.resize(original.size, Image.Resampling.LANCZOS)
        w, h = original.size
        m: Optional[np.ndarray] = None
        if mask is not None:
            m = np.asarray(mask).astype(bool, copy=False)
            if m.shape != (h, w):
                m = resize_mask(m, (w, h))
        regions = [tuple(float(v) for v in b) for b in [*boxes, *([box] if box is not None else [])]]
        if not regions and m is not None and m.any():
            regions = [mask_bbox(m)]
        outside = m
        if outside is None and regions:
            outside = np.zeros((h, w), bool)
            for b in regions:
                outside |= box_to_mask(b, (w, h))

        scores = Scores()
        scores.l1, scores.l2 = masked_l1_l2(original, edited, None)
        if outside is not None:
            scores.l1_outside, scores.l2_outside = masked_l1_l2(original, edited, outside)
            scores.l1_inside = masked_l1_l2(original, edited, ~outside)[0]

        # The images to embed: original, edited, one crop of each per box, then the two blanked images.
        view_o, scale = clip_view(original)
        view_e, _ = clip_view(edited)
        images = [view_o, view_e]
        crops = [clip_view(crop_box(edited, b))[0] for b in regions]
        # the direction's crops show the object alone (black outside the undilated mask), before and after
        direction = bool(source_caption and target_caption)
        images += crops + [clip_view(object_crop(im, m, b))[0] for im in (original, edited) for b in regions
                           if direction]
        if regions:
            images += [blank_boxes(view_o, regions, scale), blank_boxes(view_e, regions, scale)]
        embs, scores.cache_hits = self.image_embeddings(images)
        e_orig, e_edit = embs[0], embs[1]
        e_crops = embs[2:2 + len(crops)]
        e_objects = embs[2 + len(crops):2 + 3 * len(crops)] if direction else []
        e_objects_orig, e_objects_edit = e_objects[:len(crops)], e_objects[len(crops):]

        scores.clip_i = cosine(e_orig, e_edit)
        texts = [t for t in (source_caption, target_caption) if t]
        text_emb = dict(zip(texts, self.text_embeddings(texts))) if texts else {}
        if target_caption:
            scores.clip_t = cosine(e_edit, text_emb[target_caption])
            if source_caption:
                scores.clip_dir = direction_similarity(e_orig, e_edit, text_emb[source_caption],
                                                       text_emb[target_caption])
            if e_crops:
                scores.clip_crop_t = float(np.mean([cosine(e, text_emb[target_caption]) for e in e_crops]))
                if source_caption:  # the direction on the region: each box's object, before and after
                    scores.clip_dir_region = float(np.mean([
                        direction_similarity(o, e, text_emb[source_caption], text_emb[target_caption])
                        for o, e in zip(e_objects_orig, e_objects_edit)]))
        if e_crops and (target_text or source_text):
            scores.clip_rc, scores.clip_rc_source = self.region_class(e_crops, target_text, source_text)
        if regions:
            scores.clip_gc = 100.0 * cosine(embs[-2], embs[-1])
        return scores

    def region_class(self, crops: Sequence[torch.Tensor], target: str, source: str = ""
                     ) -> tuple[Optional[float], Optional[float]]:
        """R-SIE's CLIP-RC of the crops' embeddings: ``(P(target) x100, P(source) x100)``, means over crops.

        The labels are :func:`label_set` (target, source, COCO's 80) in :data:`PROMPT`; a name
        left empty gives None.
        """
        labels = label_set(target, source)
        label_embs = self.text_embeddings([PROMPT.format(name) for name in labels])
        keys = [name.lower() for name in labels]
        probs = [zero_shot_probabilities(e, label_embs, self.logit_scale) for e in crops]

        def mean_of(name: str) -> Optional[float]:
            name = " ".join(name.split()).lower()
            if not name:
                return None
            k = keys.index(name)
            return 100.0 * float(np.mean([float(p[k]) for p in probs]))

        return mean_of(target), mean_of(source)
