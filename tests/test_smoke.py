"""The smoke path at the default settings: tiny models, `localedit edit` at a work size of 512 and 20 steps.

Before the tiny UNet kept its attention to latents / 4, one such edit took 11-17 s on two CPU cores
(88 % of it self-attention over 3072 tokens); now it takes about 2 s, so this runs at the real
default size. Speed itself is measured by ``bench.stages``, not asserted here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from agent.cli import main
from tests.conftest import scene

ROOT = Path(__file__).resolve().parent.parent


def test_tiny_edit_at_the_default_size(tiny_models_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LOCALEDIT_MAX_SIDE", raising=False)
    monkeypatch.delenv("LOCALEDIT_STEPS", raising=False)
    photo = tmp_path / "photo.png"
    scene((640, 480), boxes=((60, 150, 260, 400), (380, 100, 600, 340))).save(photo)
    out = tmp_path / "out.png"
    code = main(["edit", str(photo), "turn the cat into a fox", "--box", "60,150,260,400", "-o", str(out),
                 "--models", str(tiny_models_dir), "--device", "cpu"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["info"]["work_size"] == [512, 384] and report["info"]["steps"] == 20
    edited = np.asarray(Image.open(out))
    assert edited.shape == (480, 640, 3)
    original = np.asarray(Image.open(photo))
    assert np.array_equal(edited[:, 300:], original[:, 300:])  # outside the box (and its feather) untouched


def test_the_shipped_photo_and_its_licence():
    photo = ROOT / "tools" / "data" / "chelsea.png"
    with Image.open(photo) as im:
        assert im.size == (451, 300) and im.mode == "RGB"
    note = (ROOT / "tools" / "data" / "PHOTOS.md").read_text()
    assert "chelsea.png" in note and "CC0" in note
