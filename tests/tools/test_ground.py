"""tools.ground: GroundingDINO boxes in original pixels, thresholds, duplicates, labels."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from tests.conftest import scene
from tools.ground import Grounder, clean_label, make_prompt, split_phrases
from tools.images import iou


@pytest.fixture
def grounder(registry, settings) -> Grounder:
    loaded = registry.get("detector")
    return Grounder(loaded.model, loaded.processor, registry.device, registry.dtype,
                    box_threshold=settings.box_threshold, text_threshold=settings.text_threshold)


def assert_valid(dets, size):
    w, h = size
    for d in dets:
        x0, y0, x1, y1 = d.box
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, d
        assert x1 - x0 >= 1 and y1 - y0 >= 1
        assert 0.0 <= d.score <= 1.0
    scores = [d.score for d in dets]
    assert scores == sorted(scores, reverse=True)
    for i, a in enumerate(dets):  # near-duplicates suppressed
        for b in dets[i + 1:]:
            assert iou(a.box, b.box) <= 0.8 + 1e-6


def test_boxes_inside_image_sorted_and_labelled(grounder, photo):
    dets = grounder.detect(photo, "Cat", box_threshold=0.0)
    assert dets, "threshold 0 keeps every query that survives clamping and NMS"
    assert_valid(dets, photo.size)
    for d in dets:
        assert d.label == "cat"
        assert "[SEP]" not in d.label and not d.label.endswith(".")


@pytest.mark.parametrize("size", [(64, 200), (300, 70)])
def test_odd_aspect_ratios(grounder, size):
    image = scene().resize(size)
    assert_valid(grounder.detect(image, "cat", box_threshold=0.0), size)


def test_box_threshold_filters(grounder, photo):
    everything = grounder.detect(photo, "cat", box_threshold=0.0)
    assert grounder.detect(photo, "cat", box_threshold=1.0) == []  # sigmoid never exceeds 1
    assert len(everything) > 0
    for t in (0.3, 0.5, 0.99):
        some = grounder.detect(photo, "cat", box_threshold=t)
        assert all(d.score > t for d in some)
        assert len(some) <= len(everything)
        # Greedy NMS on a score-filtered set: exactly the low-threshold result, filtered.
        assert [(d.box, d.score) for d in some] == [(d.box, d.score) for d in everything if d.score > t]


def test_default_thresholds_come_from_the_constructor(grounder, photo, settings):
    dets = grounder.detect(photo, "cat")
    assert all(d.score > settings.box_threshold for d in dets)
    strict = Grounder(grounder.model, grounder.processor, grounder.device, grounder.dtype,
                      box_threshold=1.0)
    assert strict.detect(photo, "cat") == []
    assert strict.detect(photo, "cat", box_threshold=0.0) == grounder.detect(photo, "cat", box_threshold=0.0)


def test_boxes_are_in_original_pixels(grounder):
    small = scene()
    big = small.resize((small.width * 2, small.height * 2), Image.Resampling.BICUBIC)
    a = grounder.detect(small, "cat", box_threshold=0.0)
    b = grounder.detect(big, "cat", box_threshold=0.0)
    assert a and b
    for d in a:  # every box of the small image, doubled, is a box of the big one
        err = min(max(abs(2 * u - v) for u, v in zip(d.box, e.box)) for e in b)
        assert err <= 3.0, (d, err)


def test_boxes_match_the_model_output(grounder, photo):
    """The top box is the model's normalised (cx, cy, w, h) scaled to the original image."""
    w, h = photo.size
    inputs = grounder.processor(images=photo, text="cat.", return_tensors="pt")
    with torch.no_grad():
        out = grounder.model(**inputs)
    scores = out.logits[0].sigmoid().max(-1).values
    q = int(scores.argmax())
    cx, cy, bw, bh = out.pred_boxes[0, q].tolist()
    expected = (max(0, (cx - bw / 2) * w), max(0, (cy - bh / 2) * h),
                min(w, (cx + bw / 2) * w), min(h, (cy + bh / 2) * h))
    top = grounder.detect(photo, "cat", box_threshold=0.0)[0]
    assert top.score == pytest.approx(float(scores[q]), abs=1e-5)
    assert top.box == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("phrase", ["", "   ", ".", " . . ", "[SEP]"])
def test_empty_phrase_gives_nothing(grounder, photo, phrase):
    assert grounder.detect(photo, phrase, box_threshold=0.0) == []


def test_several_phrases_label_each_box_with_one_of_them(grounder, photo):
    dets = grounder.detect(photo, ["Black cat", "dog."], box_threshold=0.0)
    assert dets
    assert {d.label for d in dets} <= {"black cat", "dog"}
    assert dets == grounder.detect(photo, "black cat. dog.", box_threshold=0.0)


def test_long_phrase_is_truncated_not_an_error(grounder, photo):
    long = "a very long description of a small cat sitting on a wooden table next to a dog"
    assert len(long) > grounder.max_text_len  # the tiny tokenizer is character level
    assert_valid(grounder.detect(photo, long, box_threshold=0.0), photo.size)


def test_rgba_input(grounder, photo):
    assert_valid(grounder.detect(photo.convert("RGBA"), "cat", box_threshold=0.0), photo.size)


def test_prompt_helpers():
    assert make_prompt(["Cat", " a  dog. "]) == "cat. a dog."
    assert make_prompt("cat. dog") == "cat. dog."
    assert make_prompt([]) == "" and make_prompt(" . ") == ""
    assert split_phrases("Cat.Dog. [SEP]") == ["cat", "dog"]
    assert clean_label("cat. [SEP]") == "cat"
    assert clean_label("bl ##ack cat .") == "black cat"


def test_label_is_the_phrase_whose_tokens_scored_highest():
    spans = [("black cat", [1, 2, 3]), ("dog", [5])]
    probs = torch.zeros(8)
    probs[5] = 0.9
    probs[2] = 0.4
    assert Grounder._best_phrase(probs, spans) == "dog"
    probs[1] = 0.95
    assert Grounder._best_phrase(probs, spans) == "black cat"
    assert Grounder._best_phrase(probs, spans[:1]) == "black cat"
