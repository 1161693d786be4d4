"""Image captions with BLIP-2, asked InstructEdit's two questions, cached per image content.

First "is this a photo, a painting, or another kind of art?" gives the kind ("a photo"), then
BLIP-2 continues "<kind> of" into the description: "a photo of a cat on a sofa". The caption
gives the language model context about the picture and seeds DiffEdit's source caption.
"""

from __future__ import annotations

import contextlib
import re
import threading
from typing import Any, Iterator, Optional

import torch
from PIL import Image

from tools.cache import ByteLRU
from tools.images import content_hash
from tools.types import Caption

KIND_QUESTION = "Question: Is this a photo, a painting, or another kind of art? Answer:"
DEFAULT_KIND = "a photo"
MAX_CHARS = 200
KIND_TOKENS = 8

# (pattern in the answer, the noun phrase used in the caption); first match wins.
_KINDS: list[tuple[str, str]] = [
    (r"oil painting", "an oil painting"),
    (r"water ?colou?r", "a watercolor painting"),
    (r"digital (?:art|painting)", "a digital painting"),
    (r"(?:3d|three dimensional) render(?:ing)?|\brender(?:ing)?\b", "a 3d render"),
    (r"\bphoto(?:graph)?s?\b|\bphotography\b|\bpicture\b|\bsnapshot\b", "a photo"),
    (r"\bpainting\b|\bpainted\b", "a painting"),
    (r"\bpencil\b|\bsketch", "a sketch"),
    (r"\bdrawing\b|\bdrawn\b", "a drawing"),
    (r"\billustration\b", "an illustration"),
    (r"\bcartoon\b|\banime\b|\bcomic\b|\bmanga\b", "a cartoon"),
    (r"\bposter\b", "a poster"),
    (r"\bscreenshot\b", "a screenshot"),
    (r"\bsculpture\b|\bstatue\b", "a sculpture"),
    (r"\bmosaic\b", "a mosaic"),
    (r"\bprint\b|\bengraving\b|\bwoodcut\b", "a print"),
]
_CUT = re.compile(r"\b(?:question|answer)\s*:|\n", re.IGNORECASE)


def normalise_kind(answer: str) -> str:
    """A short noun phrase ("a photo", "a painting", ...) for BLIP-2's answer; "a photo" if unclear."""
    text = " ".join(str(answer or "").lower().split())[:80]
    for pattern, kind in _KINDS:
        if re.search(pattern, text):
            return kind
    return DEFAULT_KIND


def clean_text(text: str, max_chars: int = MAX_CHARS) -> str:
    """Printable, single-spaced text, cut at a follow-up "Question:"/"Answer:" or line break,
    at most ``max_chars`` (on a word boundary), without trailing punctuation."""
    text = _CUT.split(str(text or "").lstrip(), maxsplit=1)[0]
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = " ".join(text.split())
    if len(text) > max_chars:
        cut = text[:max_chars]
        text = cut.rsplit(" ", 1)[0] if " " in cut else cut
    return text.strip(" .,;:!?-")


class _VisionOnce(torch.nn.Module):
    """Stands in for BLIP-2's ``vision_model`` while one image is asked several questions: the first
    call runs the vision tower (ViT-g, about 1 B parameters), later calls return its output again."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner
        self.output: Any = None
        self.calls = 0

    def forward(self, pixel_values: torch.Tensor, **kwargs: Any) -> Any:
        self.calls += 1
        if self.output is None:
            self.output = self.inner(pixel_values, **kwargs)
        return self.output


class Captioner:
    """BLIP-2 captioner: ``caption(image) -> Caption``, cached by pixel content."""

    def __init__(self, model: Any, processor: Any, device: torch.device | str, dtype: torch.dtype,
                 cache: Optional[ByteLRU] = None, max_new_tokens: int = 30):
        self.model = model
        self.processor = processor
        self.device = torch.device(device)
        self.dtype = dtype
        self.cache = cache
        self.max_new_tokens = int(max_new_tokens)
        self._one_image = threading.Lock()
        self.vision_runs = 0  # vision-tower passes so far (one per captioned image)

    @contextlib.contextmanager
    def one_image(self) -> Iterator[None]:
        """While open, every question is about one image: BLIP-2's vision tower runs once for all of
        them (:class:`_VisionOnce`), not once per ``generate``. One image at a time per captioner."""
        with self._one_image:
            inner = getattr(self.model, "vision_model", None)
            if not isinstance(inner, torch.nn.Module):
                yield
                return
            once = _VisionOnce(inner)
            self.model.vision_model = once
            try:
                yield
            finally:
                self.model.vision_model = inner
                self.vision_runs += once.output is not None

    @staticmethod
    def cached(cache: Optional[ByteLRU], image: Image.Image) -> Optional[Caption]:
        """The caption ``cache`` holds for ``image`` (``cache_hit=True``), or None: lets a worker
        answer a known photo without loading (or moving to the GPU) BLIP-2."""
        if cache is None:
            return None
        image = image if image.mode == "RGB" else image.convert("RGB")
        found = cache.get(("caption", content_hash(image)))
        if found is None:
            return None
        text, kind = found
        return Caption(text=text, kind=kind, cache_hit=True)

    def caption(self, image: Image.Image) -> Caption:
        """``Caption(text="a photo of ...", kind="a photo")``; ``cache_hit`` when no model ran."""
        image = image if image.mode == "RGB" else image.convert("RGB")
        key = ("caption", content_hash(image))
        hit = self.cached(self.cache, image)
        if hit is not None:
            return hit
        with self.one_image():  # two questions, one pass of the vision tower
            kind = normalise_kind(self.ask(image, KIND_QUESTION, max_new_tokens=KIND_TOKENS))
            description = clean_text(self.ask(image, f"{kind} of"))
        text = clean_text(f"{kind} of {description}" if description else f"{kind} of a scene")
        if self.cache is not None:
            self.cache.put(key, (text, kind))
        return Caption(text=text, kind=kind, cache_hit=False)

    @torch.no_grad()
    def ask(self, image: Image.Image, prompt: str, max_new_tokens: Optional[int] = None) -> str:
        """BLIP-2's raw continuation of ``prompt`` about ``image`` (greedy, prompt removed)."""
        inputs = self.processor(images=image, text=prompt, return_tensors="pt")
        inputs = {k: (v.to(self.device, self.dtype) if k == "pixel_values" else v.to(self.device))
                  for k, v in inputs.items()}
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens or self.max_new_tokens,
                                  do_sample=False, num_beams=1)
        prompt_ids = inputs["input_ids"]
        n = prompt_ids.shape[1]
        # Decoder-only language models (OPT) return the prompt followed by the new tokens.
        if out.shape[1] >= n and torch.equal(out[:, :n].to(prompt_ids.device), prompt_ids):
            out = out[:, n:]
        text = self.processor.batch_decode(out, skip_special_tokens=True)[0]
        text = " ".join(text.split())
        if text.lower().startswith(prompt.lower()):  # a model that echoes the prompt as text
            text = text[len(prompt):]
        return text.strip()
