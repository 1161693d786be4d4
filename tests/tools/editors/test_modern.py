"""Issue 20: Qwen-Image-Edit and FLUX.1 Kontext editors, the region crop, SAM 3 and SAM 2.1, on tiny models."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from PIL import Image, ImageDraw

from agent.cli import main
from tools.crop import area_size, plan_crop
from tools.edit import Editor
from tools.types import Cancelled, EditRequest, LocaleditError


@pytest.fixture(scope="module")
def modern(settings):
    """The tiny-model settings with the modern editors at a 64 x 64 area."""
    return settings.model_copy(update={"modern_side": 64, "sam3_threshold": 0.0})


@pytest.fixture(scope="module")
def editor(registry, modern):
    return Editor(registry, modern)


def photo(size=(400, 300), box=(150, 100, 250, 200)):
    img = Image.new("RGB", size, (90, 140, 200))
    draw = ImageDraw.Draw(img)
    draw.ellipse(box, fill=(200, 180, 40))
    for x in range(0, size[0], 37):  # texture, so a moved pixel shows
        draw.line((x, 0, x, size[1]), fill=(x % 255, 60, 90))
    mask = np.zeros(size[::-1], dtype=bool)
    mask[box[1]:box[3], box[0]:box[2]] = True
    return img, mask


# --- the crop -----------------------------------------------------------------------------------

def test_a_small_region_of_a_large_photo_is_edited_on_a_crop_at_the_native_size():
    mask = np.zeros((1330, 2000), dtype=bool)
    mask[600:760, 900:1120] = True  # 220 x 160 px: 1.3 % of the photo
    crop = plan_crop(mask, 1024)
    assert crop is not None and crop.size == (1024, 1024) and crop.work == (1024, 1024)
    x0, y0, x1, y1 = crop.box
    assert x0 <= 900 and x1 >= 1120 and y0 <= 600 and y1 >= 760 and x1 <= 2000 and y1 <= 1330
    info = crop.info((2000, 1330), (900, 600, 1120, 760))
    assert info["region_work_pixels"] == [220, 160] and info["region_share"] == pytest.approx(0.0132, abs=1e-4)


def test_the_crop_stays_inside_the_photo_and_is_skipped_when_it_gains_little():
    mask = np.zeros((1330, 2000), dtype=bool)
    mask[1300:1330, 1980:2000] = True  # in the corner: the crop is shifted inside
    crop = plan_crop(mask, 1024)
    assert crop.box == (976, 306, 2000, 1330)
    big = np.zeros((1330, 2000), dtype=bool)
    big[100:1200, 200:1800] = True  # most of the photo: no crop, the whole photo is edited
    assert plan_crop(big, 1024) is None
    assert plan_crop(np.zeros((10, 10), dtype=bool), 1024) is None
    assert area_size((2000, 1330), 1024 * 1024) == (1248, 832)


# --- the editors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["kontext", pytest.param("qwen-edit", marks=pytest.mark.slow),
                                  pytest.param("klein", marks=pytest.mark.slow)])
def test_modern_editor_changes_only_the_region(editor, name):
    img, mask = photo()
    steps = []
    result = editor.edit(img, mask, EditRequest(editor=name, instruction="make the cat red"),
                         progress=lambda i, n: steps.append((i, n)))
    out, orig = np.asarray(result.image), np.asarray(img)
    assert result.image.size == img.size and steps[-1] == (2, 2)
    assert np.array_equal(out[~result.region], orig[~result.region])  # 0 pixels changed outside
    assert (out != orig).any()
    assert result.info["crop"]["work_size"] == [64, 64] and result.info["work_size"] == [64, 64]
    assert result.info["pipeline"] == {"kontext": "FluxKontextInpaintPipeline",
                                       "qwen-edit": "QwenImageEditInpaintPipeline",
                                       "klein": "Flux2KleinInpaintPipeline"}[name]
    assert result.info["strength"] == 0.8
    guidance = {"kontext": editor.settings.kontext_guidance, "qwen-edit": editor.settings.qwen_true_cfg,
                "klein": editor.settings.klein_guidance}[name]
    assert result.info["guidance_scale"] == guidance


@pytest.mark.parametrize("name,pipeline", [("kontext", "FluxKontextPipeline"),
                                           pytest.param("klein", "Flux2KleinPipeline", marks=pytest.mark.slow)])
def test_the_edit_pipelines_edit_the_crop_and_the_region_is_composited(registry, modern, name, pipeline):
    plain = Editor(registry, modern.model_copy(update={"modern_inpaint": False}))
    img, mask = photo()
    result = plain.edit(img, mask, EditRequest(editor=name, instruction="make the cat red"))
    assert result.info["pipeline"] == pipeline and result.info["strength"] is None  # the edit pipelines read none
    assert np.array_equal(np.asarray(result.image)[~result.region], np.asarray(img)[~result.region])


def test_stop_ends_a_modern_edit_between_steps(editor):
    img, mask = photo()
    stop = threading.Event()
    with pytest.raises(Cancelled, match=r"step 2 of \d"):  # set after step 1, seen before step 2 ends the run
        editor.edit(img, mask, EditRequest(editor="kontext", instruction="make the cat red", steps=4),
                    progress=lambda i, n: stop.set(), cancel=stop)


@pytest.mark.slow
def test_qwen_image_edit_plus_folders_load_as_the_plus_pipeline(tiny_models_dir, tmp_path, modern):
    import shutil

    from tools.models import ModelRegistry

    plus = tmp_path / "qwen-edit"
    shutil.copytree(tiny_models_dir / "qwen-edit", plus)
    index = json.loads((plus / "model_index.json").read_text())
    (plus / "model_index.json").write_text(json.dumps({**index, "_class_name": "QwenImageEditPlusPipeline"}))
    settings = modern.model_copy(update={"models_dir": tmp_path, "modern_inpaint": False})
    img, mask = photo()
    result = Editor(ModelRegistry(settings), settings).edit(img, mask, EditRequest(editor="qwen-edit",
                                                                                   instruction="make it red"))
    assert result.info["pipeline"] == "QwenImageEditPlusPipeline"
    assert np.array_equal(np.asarray(result.image)[~result.region], np.asarray(img)[~result.region])

    (plus / "model_index.json").write_text(json.dumps({**index, "_class_name": "QwenImagePipeline"}))
    with pytest.raises(LocaleditError, match="QwenImagePipeline pipeline"):
        ModelRegistry(settings).get("qwen-edit")


def test_a_modern_editor_needs_a_region(editor):
    img, _ = photo()
    with pytest.raises(LocaleditError, match="needs a mask"):
        editor.edit(img, None, EditRequest(editor="qwen-edit", instruction="make it red"))


def test_the_whole_photo_when_the_crop_is_off(registry, modern):
    whole = Editor(registry, modern.model_copy(update={"crop": "off"}))
    img, mask = photo()
    result = whole.edit(img, mask, EditRequest(editor="kontext", instruction="make the cat red"))
    assert "crop" not in result.info and result.info["work_size"] == [80, 48]  # 64 x 64 area, aspect kept
    assert np.array_equal(np.asarray(result.image)[~result.region], np.asarray(img)[~result.region])


# --- the command line: the "done when" ------------------------------------------------------

def _edit(tmp_path, capsys, monkeypatch, tiny_models_dir, *args):
    monkeypatch.setenv("LOCALEDIT_MODERN_SIDE", "64")
    monkeypatch.setenv("LOCALEDIT_STEPS", "2")
    monkeypatch.setenv("LOCALEDIT_SAM3_THRESHOLD", "0")
    img, _ = photo()
    src, out, region = tmp_path / "photo.png", tmp_path / "out.png", tmp_path / "region.png"
    img.save(src)
    code = main(["edit", str(src), "make the cat red", *args, "-o", str(out), "--mask-out", str(region),
                 "--models", str(tiny_models_dir), "--device", "cpu", "--no-score"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    changed = (np.asarray(Image.open(out)) != np.asarray(img)).any(axis=-1)
    inside = np.asarray(Image.open(region).convert("L")) > 127
    assert not changed[~inside].any()  # 0 pixels changed outside the region
    return report


@pytest.mark.slow
def test_cli_qwen_edit_with_a_box(tmp_path, capsys, monkeypatch, tiny_models_dir):
    report = _edit(tmp_path, capsys, monkeypatch, tiny_models_dir, "--box", "150,100,250,200",
                   "--editor", "qwen-edit")
    crop = report["info"]["crop"]
    assert report["editor"] == "qwen-edit" and crop["size"][0] == crop["size"][1] < 300 and crop["work_size"] == [64, 64]


@pytest.mark.slow
def test_cli_sam3_grounds_and_segments_for_kontext(tmp_path, capsys, monkeypatch, tiny_models_dir):
    report = _edit(tmp_path, capsys, monkeypatch, tiny_models_dir, "--grounder", "sam3", "--target", "cat",
                   "--editor", "kontext")
    assert report["detections"] and report["mask"]["source"] == "sam3"


# --- SAM 2.1 -------------------------------------------------------------------------------------

def test_sam2_segments_boxes_and_points(registry):
    from tools.ground_sam3 import Sam2Segmenter

    loaded = registry.get("sam2")
    seg = Sam2Segmenter(loaded.model, loaded.processor, registry.device)
    img, _ = photo()
    by_box = seg.segment(img, [(150, 100, 250, 200)])
    assert by_box.mask.shape == (300, 400) and by_box.mask.any()
    assert not by_box.mask[:, :130].any()  # kept inside the box grown by 10 %
    by_point = seg.segment(img, points=[(200, 150)])
    assert by_point.mask.shape == (300, 400) and by_point.source == "sam2"
    with pytest.raises(ValueError, match="overlaps"):
        seg.segment(img, [(500, 500, 600, 600)])


# --- licences and downloads ------------------------------------------------------------------------

def test_models_list_gives_a_licence_per_role(tiny_models_dir, capsys):
    assert main(["models", "list", "--json", "--models", str(tiny_models_dir)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(row["licence"] for row in rows.values())
    assert rows["kontext"]["commercial_use"] is False and "Non-Commercial" in rows["kontext"]["licence"]
    assert rows["qwen-edit"]["licence"] == rows["klein"]["licence"] == "Apache-2.0"


def test_downloads_fetch_what_the_modern_loaders_read():
    from tools.downloads import describe, FilePlan, select_files
    from tools.models_modern import non_commercial_notice

    listing = ["model_index.json", "README.md", "transformer/config.json",
               *(f"transformer/diffusion_pytorch_model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)),
               "transformer/diffusion_pytorch_model.safetensors.index.json", "vae/config.json",
               "vae/diffusion_pytorch_model.safetensors", "text_encoder/config.json", "text_encoder/model.safetensors",
               "text_encoder_2/config.json", "text_encoder_2/model-00001-of-00002.safetensors",
               "text_encoder_2/model-00002-of-00002.safetensors", "text_encoder_2/model.safetensors.index.json",
               "tokenizer/vocab.json", "tokenizer_2/spiece.model", "scheduler/scheduler_config.json",
               "flux1-kontext-dev.safetensors"]  # the single-file checkpoint is never fetched
    files = select_files("kontext", listing, cuda_fp16=True)
    assert "flux1-kontext-dev.safetensors" not in files and "README.md" not in files
    assert "text_encoder_2/model-00002-of-00002.safetensors" in files and "tokenizer_2/spiece.model" in files
    with pytest.raises(LocaleditError, match="no safetensors"):
        select_files("kontext", [f for f in listing if not f.startswith("vae/diffusion")], cuda_fp16=False)
    text = describe({"kontext": FilePlan("kontext", "black-forest-labs/FLUX.1-Kontext-dev", [(f, 10) for f in files])})
    assert non_commercial_notice("kontext") in text and "Non-Commercial" in text
    assert non_commercial_notice("qwen-edit") == ""


# --- SAM 3 ---------------------------------------------------------------------------------------------

def test_sam3_instances_keep_their_own_masks_and_other_boxes_go_to_the_segmenter(registry, modern):
    from tools.ground_sam3 import InstanceSegmenter, build_grounder
    from tools.segment import Segmenter

    grounder = build_grounder(registry, modern)
    img, _ = photo()
    found = grounder.detect(img, "cat")
    assert found and all(d.label == "cat" for d in found)
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
    seg = InstanceSegmenter(lambda: grounder, Segmenter(registry.get("sam").model))
    chosen = seg.segment(img, [found[0].box])  # what selection hands on: one of the instances' boxes
    assert chosen.source == "sam3" and np.array_equal(chosen.mask, grounder.instance_mask(img, found[0].box))
    other = seg.segment(img, [(10, 10, 60, 60)])  # a --box that is no instance: the box segmenter
    assert other.source in ("sam", "box")
    assert grounder.detect(img, "") == [] and grounder.detect(img, "cat", box_threshold=1.0) == []


def test_the_worker_segments_with_sam2_when_configured(registry, modern):
    from tools.worker.local import LocalWorker

    img, _ = photo()
    worker = LocalWorker(modern.model_copy(update={"segmenter": "sam2"}), registry)
    assert worker.segment(img, [(150, 100, 250, 200)]).source in ("sam2", "box")
    assert type(worker._tool("segment")).__name__ == "Sam2Segmenter"
    default = LocalWorker(modern, registry)
    assert type(default._tool("segment")).__name__ == "Segmenter"  # GroundingDINO + SAM stays the default
    assert type(default._tool("ground")).__name__ == "Grounder"
