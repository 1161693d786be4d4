"""Attempts and the InstructPix2Pix baseline are staged, not written (issue 22): only the kept attempt
becomes a file, before the turn records its version; the others never reach the disk, and nothing a
user can reach is lost (a staged image pushed out of memory is written, a failed write leaves it staged)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.runtime import store as store_module
from agent.runtime.store import ImageStore
from tests.helpers.judging import BLUE, recolour, tinted_background


def _photo(seed: int, w: int = 40, h: int = 30) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_a_staged_image_is_read_from_memory_and_written_only_when_kept(tmp_path):
    store, photo = ImageStore(tmp_path), _photo(0)
    path = store.stage(photo)
    assert not Path(path).exists() and path in ImageStore.staged()
    assert np.array_equal(np.asarray(ImageStore.open(path)), np.asarray(photo))
    assert store.keep(path) == path and Path(path).exists() and path not in ImageStore.staged()
    with Image.open(path) as img:  # lossless, and named as put() names it
        assert np.array_equal(np.asarray(img.convert("RGB")), np.asarray(photo)) and store.put(photo) == path
    store.forget([path, None])  # a written path: nothing to forget, nothing removed
    assert Path(path).exists()


def test_a_forgotten_image_never_reaches_the_disk(tmp_path):
    store = ImageStore(tmp_path)
    path = store.stage(_photo(1))
    store.stage(_photo(1))  # the same pixels staged twice: both stagings must end
    store.forget([path])
    assert path in ImageStore.staged()
    store.forget([path])
    assert path not in ImageStore.staged() and not Path(path).exists()
    with pytest.raises(FileNotFoundError):
        store.keep(path)


def test_too_many_staged_images_are_written_not_dropped(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "STAGED", 2)
    store = ImageStore(tmp_path)
    paths = [store.stage(_photo(10 + i)) for i in range(3)]
    assert Path(paths[0]).exists() and not Path(paths[1]).exists() and not Path(paths[2]).exists()
    assert np.array_equal(np.asarray(ImageStore.open(paths[0])), np.asarray(_photo(10)))
    store.forget(paths)
    assert not set(paths) & set(ImageStore.staged())


def test_a_failed_keep_leaves_no_part_file_and_the_image_staged(tmp_path, monkeypatch):
    store = ImageStore(tmp_path)
    path = store.stage(_photo(2))

    def broken(self, fp, *args, **kwargs):
        fp.write(b"half")
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(Image.Image, "save", broken)
        with pytest.raises(OSError):
            store.keep(path)
    assert not list(tmp_path.glob("*.part")) and not Path(path).exists() and path in ImageStore.staged()
    store.keep(path)  # space again: the same image is written
    assert Path(path).exists()


def _turn_files(chat) -> tuple[list[str], str]:
    state = chat.state()
    return [a["path"] for a in state["attempts"] if a.get("path")], state["baseline"]["path"]


def test_the_free_baseline_not_kept_is_never_written(judged):
    chat, worker = judged(recolour(BLUE), baseline=tinted_background)
    reply = chat.send("make the leftmost cat blue")
    assert not reply.error, reply.text
    (kept,), baseline = _turn_files(chat)
    assert chat.current_image_path() == kept and Path(kept).exists()
    assert not Path(baseline).exists() and baseline not in ImageStore.staged() and kept not in ImageStore.staged()
    assert all(Path(p).exists() for p in reply.images.values())


def test_a_kept_baseline_is_written_before_its_version_is_recorded(judged):
    """The fallback to the free baseline: the composite (attempt 1) is dropped, the baseline kept."""
    chat, worker = judged(recolour((255, 1, 255)), baseline=recolour(BLUE))
    chat.send("make the leftmost cat blue")
    (composite, reused), baseline = _turn_files(chat)
    assert reused == baseline == chat.current_image_path() and Path(baseline).exists()
    assert not Path(composite).exists() and not {composite, baseline} & set(ImageStore.staged())
    chat.send("undo")
    chat.send("redo")  # the version reads back from disk
    assert chat.current_image_path() == baseline
    assert np.asarray(ImageStore.open(baseline))[..., 2].max() == 255
