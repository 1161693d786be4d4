"""Hand-made CLIP embeddings with known answers, for the tests of what the metrics *mean*.

The tiny CLIP the other tests load is random: its numbers are right in kind (shapes, caching,
ranges) but mean nothing, so no test can say "this edit followed the instruction backwards" with
it. ``ColourClip`` stands in where a test needs known embeddings (the issue asks for exactly
that): an image's embedding is its mean colour minus mid-grey, ``(R, G, B) - 128``; a text's is
the colour word it names (``"a photo of a red ball"`` -> ``(1, -1, -1)``), the zero vector when it
names none. ``Scorer`` drives it through the same calls as the real CLIP (``get_image_features``,
``get_text_features``, ``logit_scale``, the processor's ``image_processor`` and ``tokenizer``).

With its logit scale ``ln 81``, a pure red crop classified among {"red ball", "ball", COCO's 80}
has cosine 1 with "red ball" and 0 with the 81 others: ``P = 81 / (81 + 81) = 0.5``, CLIP-RC 50.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from tools.score import Scorer

COLOURS = {"red": (1, -1, -1), "green": (-1, 1, -1), "blue": (-1, -1, 1), "yellow": (1, 1, -1),
           "purple": (1, -1, 1), "white": (1, 1, 1), "black": (-1, -1, -1)}
LOGIT_SCALE = math.log(81.0)


def text_vector(text: str) -> tuple[float, float, float]:
    """The colour a text names (the last colour word wins), or zeros."""
    found = (0.0, 0.0, 0.0)
    for word in text.lower().replace(".", " ").split():
        if word in COLOURS:
            found = tuple(float(v) for v in COLOURS[word])
    return found


class _Images:
    def __call__(self, images, return_tensors="pt"):
        means = [np.asarray(im.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(axis=0) - 128.0
                 for im in images]
        return {"pixel_values": torch.tensor(np.stack(means), dtype=torch.float32)}


class _Tokens:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, texts, padding=True, truncation=True, return_tensors="pt"):
        ids = []
        for text in texts:
            self.seen.append(text)
            ids.append([len(self.seen) - 1])
        ids_t = torch.tensor(ids)
        return {"input_ids": ids_t, "attention_mask": torch.ones_like(ids_t)}


class ColourProcessor:
    """The processor half: mean colours for images, an index per text."""

    def __init__(self) -> None:
        self.image_processor = _Images()
        self.tokenizer = _Tokens()


class ColourClip(torch.nn.Module):
    """The model half: identity on mean colours, colour words for texts."""

    def __init__(self, processor: ColourProcessor) -> None:
        super().__init__()
        self.processor = processor
        self.logit_scale = torch.nn.Parameter(torch.tensor(math.log(LOGIT_SCALE)), requires_grad=False)

    def get_image_features(self, pixel_values):
        return pixel_values

    def get_text_features(self, input_ids, attention_mask=None):
        texts = [self.processor.tokenizer.seen[int(i)] for i in input_ids[:, 0]]
        return torch.tensor([text_vector(t) for t in texts], dtype=torch.float32)


def colour_scorer() -> Scorer:
    """A real :class:`~tools.score.Scorer` on the hand-made embeddings."""
    processor = ColourProcessor()
    return Scorer(ColourClip(processor), processor, "cpu", torch.float32)
