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

EDITORS = ("ip2p", "ip2p-composite", "diffedit", "regionwise", "inpaint")
"""Every editor the engine knows, by name."""

MASKED_EDITORS = ("ip2p-composite", "diffedit", "regionwise", "inpaint")
"""Editors that need a mask and keep everything outside it unchanged."""


class LocaleditError(Exception):
    """An error with a message meant for the user: one clear sentence, no traceback."""


class ImageError(LocaleditError):
    """The input is not a usable image (not an image, truncated, empty, too large)."""


class ModelMissingError(LocaleditError):
    """A model's weights are not on this machine and cannot be fetched."""


class WorkerUnavailableError(LocaleditError):
    """The (remote) worker cannot be reached or did not answer in time."""


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


@dataclass
class Scores:
    """CLIP metrics of one edit (None where an input was missing, e.g. no mask)."""

    clip_i: Optional[float] = None  # cosine(original image, edited image)
    clip_t: Optional[float] = None  # cosine(edited image, target caption)
    clip_dir: Optional[float] = None  # cosine(image change, caption change)
    clip_rc: Optional[float] = None  # cosine(edited target-box crop, target text)
    clip_gc: Optional[float] = None  # cosine(original, edited), target region removed from both
    l1_outside: Optional[float] = None  # mean |orig - edit| outside the mask, pixels in [0, 1]
    l2_outside: Optional[float] = None  # mean (orig - edit)^2 outside the mask
    l1: Optional[float] = None  # whole image
    l2: Optional[float] = None
    cache_hits: int = 0  # CLIP image embeddings that came from the cache

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}
