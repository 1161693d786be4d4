"""What every part of the chat app shares: the backend, the conversations' store and the picture files.

Made once per server process, on import (``chat_ui.app`` imports it before registering Chainlit's
callbacks): ``backend`` (``chat_ui.backend``), ``history`` (Chainlit's data layer: SQLite in the
data folder) and ``files`` (the pictures it keeps), and :func:`publish`, which puts a picture there
and gives the URL the page loads it from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import chainlit as cl
from PIL import Image as PILImage

from chat_ui.backend import Backend, get_backend
from chat_ui.history import FileStore, SQLiteDataLayer, picture_mime
from tools.files import private_dir
from tools.images import to_png_bytes

THUMB_SIDE = 96  # px: the long side of a version strip's thumbnail
_thumbs: dict[str, str] = {}  # image path (content-addressed, never rewritten) -> its thumbnail's URL

backend: Backend = get_backend()
_data = private_dir(backend.settings.data_dir)
files = FileStore(_data / "chat_files")
history = SQLiteDataLayer(_data / "chat_threads.sqlite", files)


def publish(picture: Any) -> str:
    """A picture (a path, PNG bytes or a PIL image) in the chat's file store; returns its URL."""
    if isinstance(picture, PILImage.Image):
        picture = to_png_bytes(picture)
    if isinstance(picture, (bytes, bytearray)):
        return FileStore.url(files.put(bytes(picture), "image/png"))
    return FileStore.url(files.put_file(Path(picture)))


def thumbnail(path: str) -> str:
    """The URL of a small copy of the image at ``path`` (long side ``THUMB_SIDE``), made once per image."""
    url = _thumbs.get(path)
    if url is None:
        with PILImage.open(path) as im:
            small = im.convert("RGB")
            small.thumbnail((THUMB_SIDE, THUMB_SIDE))
        url = _thumbs[path] = publish(small)
    return url


def image_element(picture: Any, alt: str, size: str = "medium") -> cl.Image:
    """An inline picture whose URL outlives the session (alt text = ``alt``)."""
    return cl.Image(name=alt, url=publish(picture), display="inline", size=size, mime=picture_mime(picture))
