"""Images on disk, named by content hash: the conversation state holds paths, never pixels.

Files are written once (atomically) and never deleted or overwritten, so nothing a user has
seen is ever lost: undo, redo and a restarted server all read the same files.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from tools.images import content_hash


class ImageStore:
    """A folder of PNGs keyed by content hash (``<root>/<hash>.png``)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, image: Image.Image) -> str:
        """Save ``image`` (once) and return its path.

        Written to a ``*.part`` file beside it and renamed into place; on any failure (a full disk,
        an encoder error, Ctrl-C) the temporary file is removed and the error raised as it was.
        """
        path = self.root / f"{content_hash(image)}.png"
        if not path.exists():
            fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out:
                    image.save(out, format="PNG")
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return str(path)

    def put_mask(self, mask: np.ndarray) -> str:
        """Save a boolean mask as a black-and-white PNG and return its path."""
        return self.put(Image.fromarray(mask.astype(np.uint8) * 255, mode="L"))

    @staticmethod
    def open(path: str) -> Image.Image:
        """The RGB image at ``path`` (fully loaded, file closed)."""
        with Image.open(path) as img:
            return img.convert("RGB")

    @staticmethod
    def open_mask(path: str) -> np.ndarray:
        with Image.open(path) as img:
            return np.asarray(img.convert("L")) > 127
