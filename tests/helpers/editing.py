"""An editor's test input: a drawn scene of any size with a mask of its first object, and an edit
request (used by the editors' tests and the stopping tests)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from tests.conftest import scene
from tools.types import EditRequest


def blob(size: tuple[int, int], box: tuple[float, float, float, float]) -> np.ndarray:
    """An elliptical bool mask of ``size`` (w, h) inside ``box``."""
    im = Image.new("L", size, 0)
    ImageDraw.Draw(im).ellipse(box, fill=255)
    return np.asarray(im) > 127


def photo_and_mask(size: tuple[int, int]) -> tuple[Image.Image, np.ndarray]:
    """A scene of ``size`` with two objects, and a mask of the first (a bit larger than it)."""
    w, h = size
    a = (0.12 * w, 0.3 * h, 0.4 * w, 0.75 * h)
    b = (0.62 * w, 0.25 * h, 0.88 * w, 0.8 * h)
    img = scene(size, boxes=(a, b))
    grow = (a[0] - 2, a[1] - 2, a[2] + 2, a[3] + 2)
    return img, blob(size, grow)


def request(editor: str, **kw) -> EditRequest:
    """An ``EditRequest`` for ``editor``: "turn it into a fox" on "a red ball", ``kw`` the knobs."""
    return EditRequest(editor=editor, instruction="turn it into a fox", source_caption="a red ball",
                       target_caption="a fox", **kw)
