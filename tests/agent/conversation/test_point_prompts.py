"""Point prompts (a click on the object) from SAM up: the segmenter, the worker over HTTP, ``agent.conversation.pipeline.run``,
``localedit edit --point`` and the evaluation manifest's ``points``.

SAM is the real tiny random model, so its masks are noise: the tests check what the prompt carries
(a hook on SAM's prompt encoder sees the points and labels), the clipping to the clicked box, the
fallbacks and the refusals, not the shape of the object.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from agent.cli import EXIT_INPUT, main
from tests.conftest import scene
from tests.helpers.scenes import CATS, SIZE, SceneWorker, inside
from agent.conversation.pipeline import Job, run
from tools.images import box_containing, box_to_mask, grow_box, parse_point
from tools.worker import LocalWorker
from tools.worker.client import RemoteWorker
from tools.worker.server import WorkerService, create_app

BOX = (20, 40, 60, 90)


@pytest.fixture
def prompts(sam):
    """What SAM's prompt encoder receives: ``(points, labels, boxes)`` per call, in SAM's input frame."""
    seen = []

    def hook(module, args, kwargs):
        points = kwargs.get("points", args[0] if args else None)
        boxes = kwargs.get("boxes", args[1] if len(args) > 1 else None)
        seen.append((None if points is None else (points[0].clone(), points[1].clone()),
                     None if boxes is None else boxes.clone()))

    handle = sam.prompt_encoder.register_forward_pre_hook(hook, with_kwargs=True)
    yield seen
    handle.remove()


def test_points_and_labels_reach_sam_in_one_prompt(segmenter, sam, prompts, photo):
    seg = segmenter.segment(photo, [BOX], points=[(40, 60), (50, 80)], point_labels=[1, 0])
    assert len(prompts) == 1, "one click and its refinement are one SAM prompt"
    (coords, labels), boxes = prompts[0]
    assert coords.shape == (1, 2, 2) and labels.tolist() == [[1, 0]]
    scale = sam.image_encoder.img_size / max(photo.size)  # SAM's ResizeLongestSide frame
    assert torch.allclose(coords[0], torch.tensor([[40.0, 60.0], [50.0, 80.0]]) * scale, atol=0.5)
    assert boxes is not None and boxes.shape == (1, 4)
    assert seg.mask.dtype == bool and seg.mask.shape == (photo.height, photo.width)
    outside = seg.mask & ~box_to_mask(grow_box(BOX, 0.1, photo.size), photo.size)
    assert not outside.any(), "with a box, the mask stays inside it (grown 10%)"

    prompts.clear()
    segmenter.segment(photo, points=[(40, 60)])  # one point, no box: labels default to "on the object"
    (coords, labels), boxes = prompts[0]
    assert labels.tolist() == [[1]] and boxes is None


def test_a_click_reuses_the_cached_image_embedding(segmenter, encoder_runs, photo):
    first = segmenter.segment(photo, points=[(40, 60)])
    again = segmenter.segment(photo, [BOX], points=[(40, 60), (30, 50)])
    assert len(encoder_runs) == 1 and not first.cache_hit and again.cache_hit


def test_nothing_found_at_the_points_falls_back_to_the_box_or_a_square(segmenter, empty_decoder, photo):
    boxed = segmenter.segment(photo, [BOX], points=[(40, 60)])
    assert boxed.source == "box" and np.array_equal(boxed.mask, box_to_mask(BOX, photo.size))
    assert "used the box" in boxed.note
    alone = segmenter.segment(photo, points=[(40, 60)])
    assert alone.source == "box" and alone.mask[60, 40] and "square" in alone.note
    ys, xs = np.nonzero(alone.mask)
    assert xs.max() - xs.min() < 0.2 * photo.width  # a small square, not the whole picture


@pytest.mark.parametrize("kwargs, message", [
    ({}, "at least one box or point"),
    ({"points": [(500, 60)]}, "at least one point on the object"),
    ({"points": [(40, 60)], "point_labels": [0]}, "at least one point on the object"),
    ({"points": [(40, 60)], "point_labels": [1, 0]}, "1 points but 2 point labels"),
    ({"points": [(40, 60)], "point_labels": [2]}, r"1 \(on the object\) or 0"),
    ({"points": [(40, 60)], "boxes": [BOX, BOX]}, "at most one box"),
    ({"points": [(40, 60)], "boxes": [(500, 500, 600, 600)]}, "outside the image"),
])
def test_unusable_prompts_are_refused_with_a_reason(segmenter, photo, kwargs, message):
    with pytest.raises(ValueError, match=message):
        segmenter.segment(photo, **kwargs)


def test_off_image_points_are_skipped_and_said(segmenter, photo):
    seg = segmenter.segment(photo, points=[(40, 60), (float("nan"), 3), (-5, 10)])
    assert "point 2 lies outside" in seg.note and "point 3 lies outside" in seg.note


def test_parse_point_and_the_box_a_click_falls_in():
    assert parse_point("12,34") == ((12.0, 34.0), 1) and parse_point("(12.5, 3, 0)") == ((12.5, 3.0), 0)
    for bad in ("12", "1,2,3", "a,b", "1,2,1,2"):
        with pytest.raises(ValueError):
            parse_point(bad)
    with pytest.raises(ValueError, match="outside"):
        parse_point("200,10", (160, 120))
    nested = [(0, 0, 100, 100), (10, 10, 30, 30), (50, 50, 90, 90)]
    assert box_containing((20, 20), nested) == 1  # the smallest box holding the click wins
    assert box_containing((95, 5), nested) == 0 and box_containing((120, 5), nested) is None


def test_points_travel_over_http_and_bad_ones_get_422(settings, registry, photo):
    local = LocalWorker(settings, registry=registry)
    app = create_app(WorkerService(settings, worker=local), warm_in_background=False)
    remote = RemoteWorker("http://worker")
    remote._client = TestClient(app, base_url="http://worker")  # the real routes, in this process
    try:
        want = local.segment(photo, [BOX], points=[(40, 60), (45, 85)], point_labels=[1, 0])
        got = remote.segment(photo, [BOX], points=[(40, 60), (45, 85)], point_labels=[1, 0])
        assert np.array_equal(got.mask, want.mask) and got.source == want.source
        assert np.array_equal(remote.segment(photo, [BOX]).mask, local.segment(photo, [BOX]).mask)
        from tools.worker.wire import encode_image

        image = encode_image(photo)
        for body, reason in [
            ({"image": image}, "at least one box or point"),
            ({"image": image, "points": [[1, 2]], "boxes": [BOX, BOX]}, "at most one box"),
            ({"image": image, "points": [[1, 2]], "point_labels": [1, 1]}, "point labels"),
            ({"image": image, "points": [[1, 2]], "point_labels": [3]}, "point_labels"),
            ({"image": image, "points": [[999, 2]]}, "at least one point on the object"),
        ]:
            answer = remote._client.post("/segment", json=body)
            assert answer.status_code == 422 and reason in answer.json()["detail"], (body.keys(), answer.text)
    finally:
        remote.close()


def test_the_pipeline_with_a_click_edits_the_detection_it_falls_in(settings, registry):
    worker = SceneWorker(settings, registry=registry)
    photo = scene(SIZE, boxes=CATS)
    job = Job(action="attribute", instruction="make the cat red", phrase="cat")
    one_step = settings.model_copy(update={"steps": 1, "editor": "ip2p-composite"})
    middle = CATS[1]
    report = run(worker, photo, job, one_step, points=[(85, 60)], score_it=False)
    assert report.chosen == [1] and report.box == middle and report.points == [(85.0, 60.0, 1)]
    assert report.mask.any() and inside(report.mask, middle, work=(64, 48))
    # a click on no detection: the point alone is the prompt
    report = run(worker, photo, job, one_step, points=[(5, 5)], score_it=False)
    assert report.chosen == [] and report.box is not None and report.segmentation is not None


def test_localedit_edit_takes_points(monkeypatch, tiny_models_dir, tmp_path, capsys):
    for name, value in {"LOCALEDIT_MODELS_DIR": str(tiny_models_dir), "LOCALEDIT_MAX_SIDE": "64",
                        "LOCALEDIT_STEPS": "1", "LOCALEDIT_DEVICE": "cpu",
                        "LOCALEDIT_DATA_DIR": str(tmp_path / "data")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    scene(SIZE, boxes=CATS).save(tmp_path / "photo.png")
    code = main(["edit", "photo.png", "make it red", "--box", "60,30,110,95", "--point", "85,60",
                 "--point", "70,90,0", "-o", "out.png", "--no-score"])
    out, _ = capsys.readouterr()
    assert code == 0, out
    report = json.loads(out)
    assert report["points"] == [[85.0, 60.0, 1], [70.0, 90.0, 0]] and report["box"] == [60.0, 30.0, 110.0, 95.0]
    assert (tmp_path / "out.png").is_file()
    for bad in ("85", "500,60", "85,60,7"):
        code = main(["edit", "photo.png", "make it red", "--point", bad, "-o", "bad.png"])
        _, err = capsys.readouterr()
        assert code == EXIT_INPUT and "point" in err and "Traceback" not in err
    code = main(["edit", "photo.png", "make it red", "--point", "85,60,0", "-o", "bad.png"])
    assert code == EXIT_INPUT and "on the object" in capsys.readouterr().err
    assert not (tmp_path / "bad.png").exists()


def test_manifest_points_are_read_and_used_as_the_region(tmp_path):
    from bench.evaluate import Prepared, _region
    from bench.manifests import ManifestError, read_jsonl

    manifest = tmp_path / "samples.jsonl"
    manifest.write_text(json.dumps({"image": "a.png", "instruction": "make it red", "points": [[10, 20], [5, 6, 0]]})
                        + "\n" + json.dumps({"image": "b.png", "instruction": "make it red", "points": "1,2;3,4,0",
                                             "target": "cat"}) + "\n")
    first, second = read_jsonl(manifest)
    assert first.points == [(10.0, 20.0, 1), (5.0, 6.0, 0)] and second.points == [(1.0, 2.0, 1), (3.0, 4.0, 0)]
    region, source = _region(Prepared(first, scene(), None, "", "", 0), use_gt=False)
    assert source == "points" and region == {"points": [(10.0, 20.0), (5.0, 6.0)], "point_labels": [1, 0]}
    region, source = _region(Prepared(second, scene(), "cat", "", "", 0), use_gt=False)
    assert source == "grounded+points" and region["target"] == "cat"
    manifest.write_text(json.dumps({"image": "a.png", "instruction": "x", "points": [[1]]}) + "\n")
    with pytest.raises(ManifestError, match="line 1"):
        list(read_jsonl(manifest))
