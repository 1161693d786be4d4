"""Plain data passed between the agent, the worker and the vision tools (no torch here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Protocol, runtime_checkable

import numpy as np
from PIL import Image

Box = tuple[float, float, float, float]
"""A box ``(x0, y0, x1, y1)`` in original-image pixels."""

Point = tuple[float, float]
"""A point ``(x, y)`` in original-image pixels (a click on the object, a SAM point prompt)."""

EDITORS = ("ip2p", "ip2p-composite", "diffedit", "regionwise", "inpaint", "qwen-edit", "kontext", "klein")
"""Every editor the engine knows, by name."""

MAX_TEXT = 2000
"""The longest text localedit acts on, in characters: a chat message (a longer one is answered
"too long", never cut and acted on; the LLM and the parser are sent no more), and an edit request's
instruction or caption (CLIP and the text encoders read 77 tokens of it anyway)."""

MASKED_EDITORS = ("ip2p-composite", "diffedit", "regionwise", "inpaint", "qwen-edit", "kontext", "klein")
"""Editors that need a mask and keep everything outside it unchanged."""


class LocaleditError(Exception):
    """An error with a message meant for the user: one clear sentence, no traceback."""


class ImageError(LocaleditError):
    """The input is not a usable image (not an image, truncated, empty, too large)."""


class ModelMissingError(LocaleditError):
    """A model's weights are not on this machine and cannot be fetched."""


class WorkerUnavailableError(LocaleditError):
    """The (remote) worker cannot be reached or did not answer in time."""


class NetworkError(LocaleditError):
    """A download needs the network (the Hugging Face Hub, a checkpoint URL) and cannot reach it."""


class Cancelled(LocaleditError):
    """The work was stopped on request (Stop, Ctrl-C, a client that went away) before it finished."""


@runtime_checkable
class CancelFlag(Protocol):
    """Anything with ``is_set()`` (a ``threading.Event``): once set, long work stops at its next step."""

    def is_set(self) -> bool: ...


@dataclass
class Detection:
    """One grounded object: the phrase it matched, its confidence and its box."""

    label: str
    score: float
    box: Box

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": round(float(self.score), 4),
                "box": [round(float(v), 1) for v in self.box]}


@dataclass
class Caption:
    """BLIP-2's description of an image (InstructEdit's two questions)."""

    text: str
    kind: str = ""
    cache_hit: bool = False


@dataclass
class Segmentation:
    """A binary mask at the original image size, from SAM or from the box itself."""

    mask: np.ndarray  # bool, (H, W), original pixels
    score: float  # SAM's predicted IoU (1.0 for a box fallback or a user mask)
    source: str = "sam"  # "sam", "box" (SAM gave nothing usable) or "user"
    note: str = ""  # why a fallback happened, for the report
    cache_hit: bool = False  # whether the SAM image embedding came from the cache

    @property
    def area(self) -> int:
        return int(self.mask.sum())


@dataclass
class EditRequest:
    """What to run: the editor and its knobs. ``None`` means the configured default."""

    editor: str = "ip2p-composite"
    instruction: str = ""  # InstructPix2Pix form: "turn the cat into a fox"
    source_caption: str = ""  # DiffEdit / CLIP direction: "a photo of a cat"
    target_caption: str = ""  # "a photo of a fox"
    seed: Optional[int] = None
    steps: Optional[int] = None
    guidance_scale: Optional[float] = None
    image_guidance_scale: Optional[float] = None
    strength: Optional[float] = None  # DiffEdit encoding ratio / region-wise / inpaint strength
    black_mask: Optional[bool] = None  # ip2p-composite: black out the background before editing
    max_side: Optional[int] = None  # long side the models work at (LOCALEDIT_MAX_SIDE)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EditResult:
    """The edited image at the input's size, and what produced it."""

    image: Image.Image
    editor: str
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)
    region: Optional[np.ndarray] = None  # bool (H, W): the only pixels a masked editor may have changed
    whole: Optional[Image.Image] = None  # ip2p-composite: InstructPix2Pix's whole-image output before the
    # composite, at the input's size: plain InstructPix2Pix with the same knobs, the judge's free baseline


@dataclass
class Scores:
    """The metrics of one edit, on the papers' scales (None where an input was missing, e.g. no region).

    Every region metric is measured on the sample's evaluation region (its target box(es) and
    undilated object mask, see :mod:`tools.region`), never on an editor's own dilated edit region.
    ``SCORE_SCALES`` gives each field's label, scale and direction.
    """

    clip_i: Optional[float] = None  # cos(original, edited) image embeddings, 0-1 (InstructPix2Pix)
    clip_t: Optional[float] = None  # cos(edited image, target caption), 0-1 (InstructEdit: x100)
    clip_dir: Optional[float] = None  # cos(image change, caption change), -1..1 (InstructPix2Pix)
    clip_dir_region: Optional[float] = None  # the same on the target-box crops of input and output, -1..1
    clip_rc: Optional[float] = None  # P(target category | target-box crop) x100, 0-100 (R-SIE 4.3)
    clip_rc_source: Optional[float] = None  # P(source category | the same crop) x100 (R-SIE "Delete" RC)
    clip_crop_t: Optional[float] = None  # cos(target-box crop, target caption), 0-1 (raw, not R-SIE's)
    clip_gc: Optional[float] = None  # cos(original, edited), target boxes blanked in both, x100 (R-SIE 4.3)
    l1_outside: Optional[float] = None  # mean |orig - edit| outside the object mask, pixels in [0, 1]
    l2_outside: Optional[float] = None  # mean (orig - edit)^2 outside the object mask
    l1: Optional[float] = None  # whole image
    l2: Optional[float] = None
    l1_inside: Optional[float] = None  # mean |orig - edit| inside the undilated object mask (the region changed?)
    seam: Optional[float] = None  # share of the edge-band change made in the one step across the edit's edge, 0-1
    seam_step: Optional[float] = None  # that step beyond the input's own step across the same edge, 0-1
    cache_hits: int = 0  # CLIP image embeddings that came from the cache

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


SCORE_SCALES: dict[str, tuple[str, str, int, str]] = {
    "clip_rc": ("CLIP-RC", "0-100", +1, "CLIP zero-shot probability x100 that the output's target-box crop is the "
                "target category, among {target, source, COCO's 80} (R-SIE 4.3, Table 2 'RC')"),
    "clip_rc_source": ("RC source", "0-100", -1, "the same classifier's probability x100 of the source category: "
                       "the object is still there (R-SIE Table 2, Delete 'RC')"),
    "clip_gc": ("CLIP-GC", "0-100", +1, "cosine x100 of the CLIP embeddings of input and output with the target "
                "box(es) blanked in both (R-SIE 4.3, Table 2 'GC')"),
    "clip_i": ("CLIP-I", "0-1", +1, "cosine of the CLIP image embeddings of input and output (InstructPix2Pix)"),
    "clip_t": ("CLIP-T", "0-1", +1, "cosine of the output and the target caption (InstructEdit's CLIP score / 100)"),
    "clip_dir": ("CLIP-dir", "-1..1", +1, "cosine of the image change and the caption change (InstructPix2Pix)"),
    "clip_crop_t": ("crop-T", "0-1", +1, "cosine of the target-box crop and the target caption (raw, not R-SIE's)"),
    "l1": ("L1", "0-1", -1, "mean absolute pixel difference, whole image, pixels in [0, 1] (R-SIE Table 3)"),
    "l2": ("L2", "0-1", -1, "mean squared pixel difference, whole image (R-SIE Table 3)"),
    "l1_outside": ("L1 out", "0-1", -1, "mean absolute pixel difference outside the undilated object mask"),
    "l2_outside": ("L2 out", "0-1", -1, "mean squared pixel difference outside the undilated object mask"),
}
"""Score field -> (label, scale, direction: +1 higher is better / -1 lower is better, definition), in the
order of R-SIE's Table 2 (RC, GC, CLIP-I), then the rest."""
