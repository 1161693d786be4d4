"""tools.caption: BLIP-2's two questions, the cleaned caption, and the per-image cache."""

from __future__ import annotations

import pytest

from tests.conftest import scene
from tools.cache import ByteLRU
from tools.caption import (DEFAULT_KIND, KIND_QUESTION, MAX_CHARS, Captioner, _KINDS, clean_text,
                           normalise_kind)

KINDS = {kind for _, kind in _KINDS} | {DEFAULT_KIND}


@pytest.fixture
def captioner(registry) -> Captioner:
    loaded = registry.get("caption")
    return Captioner(loaded.model, loaded.processor, registry.device, registry.dtype,
                     cache=ByteLRU(1 << 20, "captions"), max_new_tokens=12)


@pytest.fixture
def generate_calls(captioner, monkeypatch) -> list[dict]:
    """Every call to the real model's ``generate`` (its keyword arguments), in order."""
    calls: list[dict] = []
    real = captioner.model.generate

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(captioner.model, "generate", counting)
    return calls


def test_caption_is_kind_of_description(captioner, photo):
    cap = captioner.caption(photo)
    assert cap.kind in KINDS
    assert cap.text.startswith(cap.kind + " of ")
    assert len(cap.text) > len(cap.kind + " of ")
    assert len(cap.text) <= MAX_CHARS
    assert "\n" not in cap.text and "  " not in cap.text
    assert "Question" not in cap.text and "Answer" not in cap.text
    assert cap.cache_hit is False


def test_two_questions_then_cache_hit_without_model(captioner, generate_calls):
    first = captioner.caption(scene())
    assert len(generate_calls) == 2  # the kind question, then the conditional caption
    again = captioner.caption(scene())  # a new image object with the same pixels
    assert again.cache_hit is True
    assert len(generate_calls) == 2  # no model call on a hit
    assert (again.text, again.kind) == (first.text, first.kind)


def test_the_vision_tower_runs_once_per_caption_and_the_answers_do_not_change(captioner, photo):
    passes = []
    hook = captioner.model.vision_model.register_forward_hook(lambda *_: passes.append(1))
    try:
        kind = normalise_kind(captioner.ask(photo, KIND_QUESTION, max_new_tokens=8))  # one pass per question
        plain = clean_text(captioner.ask(photo, f"{kind} of"))
        assert len(passes) == 2
        cap = captioner.caption(photo)
    finally:
        hook.remove()
    assert len(passes) == 3 and captioner.vision_runs == 1  # both questions of the caption: one pass
    assert cap.text == f"{kind} of {plain}"  # the same answers as two separate passes
    assert captioner.model.vision_model.__class__.__name__ != "_VisionOnce"  # the real tower is back


def test_different_pixels_miss_the_cache(captioner, generate_calls):
    captioner.caption(scene())
    other = captioner.caption(scene(boxes=((0, 0, 40, 40),)))
    assert other.cache_hit is False
    assert len(generate_calls) == 4


def test_without_cache_every_call_runs_the_model(registry, photo):
    loaded = registry.get("caption")
    captioner = Captioner(loaded.model, loaded.processor, registry.device, registry.dtype,
                          max_new_tokens=5)
    assert captioner.caption(photo).cache_hit is False
    assert captioner.caption(photo).cache_hit is False


def test_inputs_in_model_device_and_dtype(captioner, generate_calls, photo):
    captioner.caption(photo)
    model_dtype = next(captioner.model.parameters()).dtype
    for kwargs in generate_calls:
        assert kwargs["pixel_values"].dtype == model_dtype == captioner.dtype
        assert kwargs["pixel_values"].device.type == captioner.device.type
        assert kwargs["input_ids"].device.type == captioner.device.type
        assert kwargs["do_sample"] is False
    assert generate_calls[1]["max_new_tokens"] == 12


def test_prompt_is_stripped_from_the_answer(captioner, photo):
    answer = captioner.ask(photo, KIND_QUESTION, max_new_tokens=4)
    assert "Question" not in answer and "Answer" not in answer


def test_grey_image_is_captioned(captioner):
    cap = captioner.caption(scene().convert("L"))
    assert cap.text.startswith(cap.kind + " of ")


@pytest.mark.parametrize("answer, kind", [
    ("photo", "a photo"), (" a photograph.", "a photo"), ("A PAINTING", "a painting"),
    ("an oil painting of", "an oil painting"), ("watercolour", "a watercolor painting"),
    ("pencil sketch", "a sketch"), ("a drawing", "a drawing"), ("", DEFAULT_KIND),
    ("::::::::", DEFAULT_KIND), ("ĠĊÃ¤", DEFAULT_KIND), ("yes", DEFAULT_KIND),
])
def test_normalise_kind(answer, kind):
    assert normalise_kind(answer) == kind


def test_clean_text():
    assert clean_text("  a cat \n on a sofa") == "a cat"
    assert clean_text("a  cat\ton a sofa. Question: what?") == "a cat on a sofa"
    assert clean_text("a dog\x00 running!!") == "a dog running"
    long = clean_text("word " * 100, max_chars=50)
    assert len(long) <= 50 and not long.endswith(" ") and long.split() == ["word"] * len(long.split())
