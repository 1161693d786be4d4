"""The judge's test scene: attempts whose pixels the test paints, so each fails or passes a check for a
known reason (``JudgedWorker``), and the painters (``recolour``, ``tinted_background``, ...). Used by
the ``judged`` fixture (tests/agent/conftest.py)."""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from tests.helpers.colour_clip import colour_scorer
from tests.helpers.scenes import CATS, SIZE, SceneWorker
from tools.images import box_to_mask, dilate
from tools.types import EditRequest, EditResult, LocaleditError, Segmentation

BLUE = (1, 1, 255)
Painter = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def ellipse(box) -> np.ndarray:
    """The object the scene draws in ``box`` (an ellipse), as a bool mask."""
    im = Image.new("L", SIZE)
    ImageDraw.Draw(im).ellipse(box, fill=255)
    return np.asarray(im) > 0


# ----------------------------------------------------------------------------- painted attempts


def recolour(colour) -> Painter:
    """The object turned ``colour``; nothing else touched."""
    def paint(arr, mask, box_mask):
        arr[mask] = colour
        return arr
    return paint


def unchanged(arr, mask, box_mask):
    return arr


def tinted_background(arr, mask, box_mask):
    """The object turned blue, and everything outside its box washed towards blue (InstructPix2Pix on
    the whole image, as R-SIE's Table 2 finds it: CLIP-GC 87-89)."""
    arr[mask] = BLUE
    outside = ~box_mask
    arr[outside] = (arr[outside] * 0.4 + np.array([0, 0, 255]) * 0.6).astype(np.uint8)
    return arr


def wide_band(arr, mask, box_mask):
    """The object turned blue and a 12-pixel band around it repainted (a far too wide feather)."""
    arr[mask] = BLUE
    arr[dilate(mask, 12) & ~mask] = (255, 0, 255)
    return arr


def whole_blue(arr, mask, box_mask):
    """The whole photo washed towards blue (a global edit)."""
    return (arr * 0.5 + np.array([0, 0, 255]) * 0.5).astype(np.uint8)


class JudgedWorker(SceneWorker):
    """The scene worker, with SAM's mask the drawn object (or ``part`` of it), CLIP the hand-made colour
    embeddings, and each edit's pixels painted after the real tiny editor ran: a masked attempt by the
    next of ``painters`` (kept inside the region the editor was allowed to change), plain
    InstructPix2Pix by ``baseline`` (also ip2p-composite's pre-composite output, the free baseline).
    Edit number ``n`` in ``fail_at`` raises the editor's out-of-memory error instead."""

    def __init__(self, *args, painters: list[Painter], baseline: Painter | None = None, part: bool = False,
                 fail_at: tuple[int, ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.painters = list(painters)
        self.baseline = baseline
        self.part = part
        self.fail_at = fail_at
        self.requests: list[EditRequest] = []
        self.batches: list[list[str]] = []  # the editors of each batched call (edit_batch)

    def _build(self, name):
        return colour_scorer() if name == "score" else super()._build(name)

    def segment(self, image, boxes=(), points=(), point_labels=None):
        mask = np.zeros(SIZE[::-1], bool)
        for box in boxes:
            mask |= ellipse(box)
        if self.part:  # SAM's multimask candidate with the best IoU can be a part: the top of the object
            rows = np.flatnonzero(mask.any(axis=1))
            mask[rows[0] + max(1, len(rows) // 8):] = False
        return Segmentation(mask=mask, score=1.0, source="drawn")

    def edit(self, image, mask, request, progress=None, cancel=None):
        self.requests.append(request)
        if len(self.requests) in self.fail_at:
            raise LocaleditError("The GPU ran out of memory editing at 64x48; lower LOCALEDIT_MAX_SIDE and try again.")
        return self._paint(image, request, super().edit(image, mask, request, progress=progress, cancel=cancel))

    def edit_batch(self, image, masks, requests, progress=None, cancel=None):
        """The real batched call, each answer painted as :meth:`edit` paints it (in the order of the requests)."""
        self.batches.append([r.editor for r in requests])
        self.requests.extend(requests)
        answers = super().edit_batch(image, masks, requests, progress=progress, cancel=cancel)
        return [self._paint(image, r, a) if isinstance(a, EditResult) else a for r, a in zip(requests, answers)]

    def _paint(self, image, request, real: EditResult) -> EditResult:
        obj, box = ellipse(CATS[0]), box_to_mask(CATS[0], SIZE)
        arr = np.array(image.convert("RGB"))
        if request.editor == "ip2p" and self.baseline is not None:
            painted = self.baseline(arr, obj, box)
        else:
            painted = self.painters.pop(0)(arr.copy(), obj, box)
            if real.region is not None:  # a masked editor changes nothing outside its region
                painted = np.where(real.region[..., None], painted, arr)
        whole = None
        if real.whole is not None and self.baseline is not None:
            whole = Image.fromarray(self.baseline(np.array(image.convert("RGB")), obj, box))
        return EditResult(Image.fromarray(painted.astype(np.uint8)), real.editor, real.seconds, real.info,
                          real.region, whole)
