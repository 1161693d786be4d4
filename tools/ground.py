"""Open-vocabulary detection with GroundingDINO: a phrase in, scored boxes in original pixels out.

``Grounder`` holds a loaded ``GroundingDinoForObjectDetection`` and its ``GroundingDinoProcessor``
(both from ``registry.get("detector")``). ``detect(image, "cat")`` returns the boxes GroundingDINO
finds for the phrase, clamped to the image, near-duplicates suppressed, best first.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Iterable, Optional, Sequence

import torch
from PIL import Image
from torchvision.ops import nms

from tools.types import Detection

NMS_IOU = 0.8
"""Boxes overlapping a better one by more than this IoU are dropped as duplicates."""

MIN_BOX_SIDE = 1.0
"""Boxes narrower or shorter than this (original pixels, after clamping) are dropped."""

_SPECIAL = re.compile(r"\[(?:CLS|SEP|PAD|UNK|MASK)\]", re.IGNORECASE)


def split_phrases(text: str) -> list[str]:
    """The phrases of a prompt: lower-cased, split on ".", whitespace collapsed, empties dropped."""
    cleaned = _SPECIAL.sub(" ", str(text or "")).lower()
    return [" ".join(p.split()) for p in cleaned.split(".") if p.strip()]


def make_prompt(phrases: str | Iterable[str]) -> str:
    """GroundingDINO's prompt form: ``["Cat", "a dog."]`` -> ``"cat. a dog."`` ("" if none)."""
    if isinstance(phrases, str):
        phrases = [phrases]
    parts = [p for phrase in phrases for p in split_phrases(phrase)]
    return " ".join(f"{p}." for p in parts)


def clean_label(text: str) -> str:
    """A detection label without special tokens, word-piece marks or trailing dots."""
    text = _SPECIAL.sub(" ", str(text or "")).replace(" ##", "").replace("##", "")
    return " ".join(text.split()).strip(" .")


def keep_boxes(boxes: torch.Tensor, scores: torch.Tensor, size: tuple[int, int]) -> list[int]:
    """Indices of the boxes to keep, best first: ``boxes`` (float ``(n, 4)`` x0 y0 x1 y1, clamped to
    the image ``size`` in place), degenerate (a side under :data:`MIN_BOX_SIDE`) and non-finite ones
    dropped, near-duplicates (IoU > :data:`NMS_IOU` with a better one) suppressed."""
    if len(scores) == 0:
        return []
    w, h = size
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    ok = ((boxes[:, 2] - boxes[:, 0]) >= MIN_BOX_SIDE) & ((boxes[:, 3] - boxes[:, 1]) >= MIN_BOX_SIDE)
    ok &= torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)
    idx = torch.nonzero(ok).flatten()
    if idx.numel() == 0:
        return []
    return idx[nms(boxes[idx], scores[idx], NMS_IOU)].tolist()  # nms returns best first


class Grounder:
    """GroundingDINO over one image at a time: ``detect(image, phrase) -> [Detection]``.

    ``box_threshold`` keeps boxes whose best token score exceeds it; ``text_threshold`` goes
    to GroundingDINO's post-processing, whose token-subset labels can be word-piece fragments
    ("##la cat"), so each label here is instead the whole prompt phrase the box scored best.
    """

    def __init__(self, model: Any, processor: Any, device: torch.device | str,
                 dtype: torch.dtype, box_threshold: float = 0.3, text_threshold: float = 0.25):
        self.model = model
        self.processor = processor
        self.device = torch.device(device)
        self.dtype = dtype
        self.box_threshold = float(box_threshold)
        self.text_threshold = float(text_threshold)
        self.max_text_len = int(getattr(model.config, "max_text_len", 256))
        self._lock = threading.Lock()

    @torch.no_grad()
    def detect(self, image: Image.Image, phrase: str | Sequence[str], *,
               box_threshold: Optional[float] = None,
               text_threshold: Optional[float] = None) -> list[Detection]:
        """Boxes for ``phrase`` (or several phrases) in ``image``, best score first.

        Boxes are in original-image pixels, clamped to the image; degenerate boxes and
        near-duplicates (IoU > 0.8 with a better box) are dropped. Each label is the prompt
        phrase the box matched best. An empty phrase gives ``[]``.
        """
        phrases = split_phrases(phrase) if isinstance(phrase, str) else \
            [p for item in phrase for p in split_phrases(item)]
        if not phrases:
            return []
        prompt = make_prompt(phrases)
        box_t = self.box_threshold if box_threshold is None else float(box_threshold)
        text_t = self.text_threshold if text_threshold is None else float(text_threshold)
        image = image if image.mode == "RGB" else image.convert("RGB")
        w, h = image.size

        inputs = self.processor(images=image, text=prompt, truncation=True,
                                max_length=self.max_text_len, return_tensors="pt")
        inputs = {k: (v.to(self.device, self.dtype) if k == "pixel_values" else v.to(self.device))
                  for k, v in inputs.items()}
        with self._lock:
            outputs = self.model(**inputs)
        outputs.logits = outputs.logits.float()
        outputs.pred_boxes = outputs.pred_boxes.float()
        result = self.processor.post_process_grounded_object_detection(
            outputs, inputs["input_ids"], threshold=box_t, text_threshold=text_t,
            target_sizes=[(h, w)])[0]

        # The same selection post-processing made (scores > threshold, in query order), so each
        # kept box can be matched to the prompt phrase whose tokens it scored highest.
        probs = outputs.logits[0].sigmoid()
        kept = torch.nonzero(probs.max(dim=-1).values > box_t).flatten().tolist()
        scores = result["scores"].detach().float().cpu()
        boxes = result["boxes"].detach().float().cpu()
        if len(kept) != len(scores):  # should not happen; fall back to the first phrase
            kept = [-1] * len(scores)
        spans = self._phrase_spans(inputs["input_ids"][0].tolist(), phrases)

        detections = []
        for i in keep_boxes(boxes, scores, (w, h)):
            query = kept[i]
            label = self._best_phrase(probs[query], spans) if query >= 0 else phrases[0]
            x0, y0, x1, y1 = (float(v) for v in boxes[i])
            detections.append(Detection(label=label, score=float(scores[i]), box=(x0, y0, x1, y1)))
        detections.sort(key=lambda d: d.score, reverse=True)
        return detections

    def _phrase_spans(self, input_ids: list[int], phrases: list[str]) -> list[tuple[str, list[int]]]:
        """``(phrase, token positions)`` for each phrase of the prompt, in order."""
        tokenizer = self.processor.tokenizer
        special = set(tokenizer.all_special_ids)
        dot = tokenizer.convert_tokens_to_ids(".")
        spans: list[list[int]] = [[]]
        for pos, tok in enumerate(input_ids):
            if tok == dot:
                spans.append([])
            elif tok not in special:
                spans[-1].append(pos)
        return [(p, s) for p, s in zip(phrases, spans) if s] or [(phrases[0], [])]

    @staticmethod
    def _best_phrase(token_probs: torch.Tensor, spans: list[tuple[str, list[int]]]) -> str:
        """The phrase whose tokens this box scored highest (the only phrase if there is one)."""
        if len(spans) == 1:
            return clean_label(spans[0][0])
        best = max(spans, key=lambda s: float(token_probs[s[1]].max()) if s[1] else -1.0)
        return clean_label(best[0])
