"""agent.runtime.store: versions lossless and named by content, previews as JPEG, nothing half-written."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from agent.runtime.store import PREVIEW_SIDE, ImageStore, for_preview


def _photo(w: int = 300, h: int = 200) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_versions_are_lossless_pngs_named_by_content(tmp_path):
    store = ImageStore(tmp_path)
    photo = _photo()
    path = store.put(photo)
    assert path.endswith(".png") and store.put(photo.copy()) == path
    with Image.open(path) as img:
        assert img.format == "PNG" and np.array_equal(np.asarray(img.convert("RGB")), np.asarray(photo))
    assert np.array_equal(np.asarray(ImageStore.open(path)), np.asarray(photo))


def test_open_gives_a_copy_the_caller_may_change(tmp_path):
    store = ImageStore(tmp_path)
    path = store.put(_photo())
    first = ImageStore.open(path)
    first.paste((0, 0, 0), (0, 0, 50, 50))
    assert not np.array_equal(np.asarray(ImageStore.open(path)), np.asarray(first))


def test_previews_are_jpeg_and_scaled_down(tmp_path):
    store = ImageStore(tmp_path)
    big = _photo(PREVIEW_SIDE * 2, PREVIEW_SIDE)
    mask = np.zeros((PREVIEW_SIDE, PREVIEW_SIDE * 2), bool)
    mask[100:300, 200:600] = True
    small, small_mask, boxes = for_preview(big, mask, ((200, 100, 600, 300),))
    assert small.size == (PREVIEW_SIDE, PREVIEW_SIDE // 2) and small_mask.shape == (PREVIEW_SIDE // 2, PREVIEW_SIDE)
    assert boxes == [(100.0, 50.0, 300.0, 150.0)]
    assert small_mask[50:150, 100:300].all() and not small_mask[:40].any()
    path = store.put_preview(small)
    with Image.open(path) as img:
        assert path.endswith(".jpg") and img.format == "JPEG" and img.size == small.size
    photo = _photo()
    assert for_preview(photo)[0] is photo  # small enough already


def test_a_failed_write_leaves_no_part_file(tmp_path, monkeypatch):
    store = ImageStore(tmp_path)

    def broken(self, fp, *args, **kwargs):
        fp.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken)
    with pytest.raises(OSError):
        store.put(_photo())
    assert list(tmp_path.iterdir()) == []
