"""The CLIP edit metrics: formulas against hand-computed values, then the scorer on tiny CLIP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import scene
from tools.cache import ByteLRU
from tools.score import Scorer, cosine, direction_similarity, features_tensor, masked_l1_l2
from tools.types import Scores

# --------------------------------------------------------------------------- formulas


def test_cosine_hand_values():
    assert cosine([1.0, 0.0], [0.0, 1.0]) == pytest.approx(0.0)
    assert cosine([2.0, 0.0], [5.0, 0.0]) == pytest.approx(1.0)
    assert cosine([1.0, 1.0], [-3.0, -3.0]) == pytest.approx(-1.0)
    # (3, 4) . (4, 3) = 24, |.| = 5 * 5  ->  24 / 25
    assert cosine([3.0, 4.0], [4.0, 3.0]) == pytest.approx(0.96)
    assert cosine(torch.tensor([1.0, 2.0, 2.0]), np.array([2.0, 0.0, 0.0])) == pytest.approx(1 / 3)
    assert isinstance(cosine([1.0], [1.0]), float)


def test_cosine_zero_vector_is_zero_and_fp16_is_computed_in_float32():
    assert cosine([0.0, 0.0], [1.0, 2.0]) == 0.0
    a = torch.tensor([300.0, 400.0], dtype=torch.float16)  # a . a overflows fp16 (> 65504)
    assert cosine(a, a) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError):
        cosine([1.0, 0.0], [1.0, 0.0, 0.0])


def test_direction_similarity_orthogonal_parallel_opposite():
    zero = [0.0, 0.0]
    x, y = [1.0, 0.0], [0.0, 1.0]
    assert direction_similarity(zero, x, zero, y) == pytest.approx(0.0)  # orthogonal changes
    assert direction_similarity(zero, x, zero, [7.0, 0.0]) == pytest.approx(1.0)  # parallel
    assert direction_similarity(x, zero, zero, x) == pytest.approx(-1.0)  # opposite


def test_direction_similarity_3_4_5():
    img0, img1 = [1.0, 1.0], [4.0, 5.0]  # image change (3, 4), length 5
    txt0, txt1 = [2.0, 0.0], [7.0, 0.0]  # caption change (5, 0), length 5
    assert direction_similarity(img0, img1, txt0, txt1) == pytest.approx(15 / 25)  # 3*5 / (5*5)


def test_direction_similarity_no_change_is_zero():
    v, u = [0.6, 0.8], [1.0, 0.0]
    assert direction_similarity(v, v, u, [0.0, 1.0]) == 0.0  # identical images
    assert direction_similarity(u, v, u, u) == 0.0  # identical captions


def test_masked_l1_l2_by_hand():
    a = np.array([[0.0, 0.5], [1.0, 0.25]])
    b = np.array([[0.5, 0.5], [0.0, 0.75]])
    # differences 0.5, 0, 1, 0.5 -> L1 = 2 / 4, L2 = (0.25 + 0 + 1 + 0.25) / 4
    assert masked_l1_l2(a, b) == pytest.approx((0.5, 0.375))
    mask = np.array([[False, False], [True, False]])  # exclude the difference of 1
    assert masked_l1_l2(a, b, mask) == pytest.approx((1.0 / 3, 0.5 / 3))


def test_masked_l1_l2_ignores_changes_inside_the_mask():
    a = np.zeros((3, 4, 3), np.uint8)
    b = a.copy()
    mask = np.zeros((3, 4), bool)
    mask[1, 1:3] = True
    b[mask] = 255  # a change inside the mask only
    assert masked_l1_l2(a, b, mask) == (0.0, 0.0)
    b[0, 0, 0] = 51  # one channel of one outside pixel: 51 / 255 = 0.2
    n = (12 - 2) * 3  # outside pixels x channels
    l1, l2 = masked_l1_l2(a, b, mask)
    assert l1 == pytest.approx(0.2 / n)
    assert l2 == pytest.approx(0.04 / n)
    whole = masked_l1_l2(a, b, None)
    assert whole[0] == pytest.approx((2 * 3 * 1.0 + 0.2) / 36)


def test_masked_l1_l2_edges():
    a = np.zeros((2, 2))
    assert masked_l1_l2(a, np.ones((2, 2)), np.ones((2, 2), bool)) == (None, None)
    with pytest.raises(ValueError):
        masked_l1_l2(a, np.zeros((2, 3)))
    with pytest.raises(ValueError):
        masked_l1_l2(a, a, np.zeros((3, 3), bool))
    # PIL images are read as uint8 and scaled to [0, 1]
    black, white = Image.new("RGB", (4, 2)), Image.new("RGB", (4, 2), (255, 255, 255))
    assert masked_l1_l2(black, white) == pytest.approx((1.0, 1.0))


def test_features_tensor_accepts_every_return_form():
    t = torch.ones(2, 3)

    class Out:
        pooler_output = t

    assert features_tensor(t) is t
    assert features_tensor(Out()) is t
    assert features_tensor((torch.zeros(2, 5, 3), t)) is t
    with pytest.raises(TypeError):
        features_tensor("nope")


# --------------------------------------------------------------------------- with tiny CLIP


@pytest.fixture
def scorer(registry) -> Scorer:
    """A scorer on the tiny CLIP with its own, empty cache."""
    clip = registry.get("clip")
    return Scorer(clip.model, clip.processor, registry.device, registry.dtype,
                  cache=ByteLRU(8 * 1024 * 1024, name="clip-test"))


class VisionCounter:
    """Counts calls of the real CLIP vision tower and the images they carried."""

    def __init__(self, model):
        self.calls = 0
        self.images = 0
        self._handle = model.vision_model.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output):
        pixels = kwargs.get("pixel_values", args[0] if args else None)
        self.calls += 1
        self.images += int(pixels.shape[0])

    def close(self):
        self._handle.remove()


@pytest.fixture
def vision_counter(scorer):
    counter = VisionCounter(scorer.model)
    yield counter
    counter.close()


def _mask(size, box) -> np.ndarray:
    w, h = size
    m = np.zeros((h, w), bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return m


def _edit_inside(image: Image.Image, mask: np.ndarray, colour=(10, 220, 240)) -> Image.Image:
    arr = np.array(image)
    arr[mask] = colour
    return Image.fromarray(arr)


def test_embeddings_are_unit_float32(scorer, photo):
    e = scorer.image_embedding(photo)
    t = scorer.text_embedding("a photo of a cat")
    for v in (e, t):
        assert v.ndim == 1 and v.dtype == torch.float32
        assert float(v.norm()) == pytest.approx(1.0, abs=1e-5)
    assert e.shape == t.shape


def test_identical_images(scorer, photo):
    s = scorer.score(photo, photo.copy())
    assert isinstance(s, Scores)
    assert s.clip_i == pytest.approx(1.0, abs=1e-5)
    assert s.l1 == 0.0 and s.l2 == 0.0


def test_second_score_of_the_same_pair_runs_no_image_forward(scorer, photo, vision_counter):
    mask = _mask(photo.size, (20, 40, 60, 90))
    edited = _edit_inside(scene(boxes=((22, 40, 60, 90), (100, 35, 140, 100))), mask)
    kwargs = dict(mask=mask, source_caption="a red ball", target_caption="a blue ball",
                  target_text="blue ball")
    first = scorer.score(photo, edited, **kwargs)
    n_images = 5  # original, edited, the region crop, and the two region-removed images
    assert vision_counter.images == n_images
    assert first.cache_hits == 0
    calls = vision_counter.calls
    second = scorer.score(photo, edited, **kwargs)
    assert vision_counter.calls == calls  # no new vision forward at all
    assert second.cache_hits == n_images
    assert scorer.image_forwards == n_images and scorer.image_hits == n_images
    for name in ("clip_i", "clip_t", "clip_dir", "clip_rc", "clip_gc", "l1_outside"):
        assert getattr(second, name) == pytest.approx(getattr(first, name), abs=1e-6)


def test_duplicate_images_in_one_call_are_embedded_once(scorer, photo, vision_counter):
    mask = _mask(photo.size, (20, 40, 60, 90))
    s = scorer.score(photo, _edit_inside(photo, mask), mask=mask)
    # original, edited, and ONE region-removed image: the edit is inside the region only
    assert vision_counter.images == 3
    assert s.cache_hits == 0  # duplicates within a call are not cache hits


def test_image_embedding_cached_by_content(scorer, photo, vision_counter):
    a = scorer.image_embedding(photo)
    b = scorer.image_embedding(scene())  # a different object with the same pixels
    assert vision_counter.images == 1
    assert torch.equal(a, b)
    assert scorer.image_hits == 1
    scorer.image_embedding(scene(boxes=((0, 0, 30, 30),)))
    assert vision_counter.images == 2


def test_text_embedding_cached(scorer):
    a = scorer.text_embedding("a fox")
    b = scorer.text_embedding("a fox")
    assert torch.equal(a, b)
    assert scorer.text_forwards == 1 and scorer.text_hits == 1


def test_clip_gc_ignores_changes_inside_the_mask(scorer, photo):
    mask = _mask(photo.size, (18, 38, 62, 92))
    edited = _edit_inside(photo, mask)
    s = scorer.score(photo, edited, mask=mask, target_caption="a blue ball")
    assert s.clip_gc == pytest.approx(1.0, abs=1e-5)
    assert s.l1_outside == 0.0 and s.l2_outside == 0.0
    assert s.l1 > 0.0  # the whole-image metric does see the edit


def test_clip_gc_uses_the_box_when_there_is_no_mask(scorer, photo):
    box = (18.0, 38.0, 62.0, 92.0)
    edited = _edit_inside(photo, _mask(photo.size, (18, 38, 62, 92)))
    s = scorer.score(photo, edited, box=box, target_text="blue ball")
    assert s.clip_gc == pytest.approx(1.0, abs=1e-5)
    assert s.clip_rc is not None and -1.0 <= s.clip_rc <= 1.0
    assert s.l1_outside is None and s.l2_outside is None  # outside metrics need a mask


def test_clip_gc_sees_changes_outside_the_mask(scorer, photo):
    mask = _mask(photo.size, (18, 38, 62, 92))
    edited = _edit_inside(photo, ~mask, colour=(255, 0, 255))
    s = scorer.score(photo, edited, mask=mask)
    assert s.clip_gc < 1.0 - 1e-4
    assert s.l1_outside > 0.0


def test_clip_rc_is_crop_against_target_text(scorer, photo):
    from tools.images import crop_box

    box = (100.0, 30.0, 140.0, 100.0)
    s = scorer.score(photo, photo, box=box, target_caption="a photo of a fox", target_text="fox")
    expected = cosine(scorer.image_embedding(crop_box(photo, box)), scorer.text_embedding("fox"))
    assert s.clip_rc == pytest.approx(expected, abs=1e-6)
    # without target_text the target caption is the class text
    s2 = scorer.score(photo, photo, box=box, target_caption="a photo of a fox")
    assert s2.clip_rc == pytest.approx(
        cosine(scorer.image_embedding(crop_box(photo, box)), scorer.text_embedding("a photo of a fox")),
        abs=1e-6)


def test_clip_rc_defaults_to_the_mask_bbox(scorer, photo):
    from tools.images import crop_box

    mask = np.zeros((photo.height, photo.width), bool)
    mask[40:90, 20:60] = True
    mask[40, 20] = False  # not a rectangle; its bbox is still (20, 40, 60, 90)
    s = scorer.score(photo, photo, mask=mask, target_text="ball")
    expected = cosine(scorer.image_embedding(crop_box(photo, (20, 40, 60, 90))), scorer.text_embedding("ball"))
    assert s.clip_rc == pytest.approx(expected, abs=1e-6)


def test_formulas_match_the_embeddings(scorer, photo):
    edited = scene(boxes=((25, 40, 65, 90), (100, 30, 140, 100)))
    s = scorer.score(photo, edited, source_caption="two balls", target_caption="two cubes")
    e0, e1 = scorer.image_embedding(photo), scorer.image_embedding(edited)
    t0, t1 = scorer.text_embedding("two balls"), scorer.text_embedding("two cubes")
    assert s.clip_i == pytest.approx(float(e0 @ e1), abs=1e-5)
    assert s.clip_t == pytest.approx(float(e1 @ t1), abs=1e-5)
    d_img, d_txt = e1 - e0, t1 - t0
    assert s.clip_dir == pytest.approx(float(d_img @ d_txt / (d_img.norm() * d_txt.norm())), abs=1e-5)
    assert s.clip_rc is None and s.clip_gc is None


def test_missing_captions_give_none(scorer, photo):
    edited = scene(boxes=((25, 40, 65, 90),))
    s = scorer.score(photo, edited)
    assert s.clip_i is not None
    assert s.clip_t is None and s.clip_dir is None and s.clip_rc is None and s.clip_gc is None
    s = scorer.score(photo, edited, target_caption="a ball")
    assert s.clip_t is not None and s.clip_dir is None  # direction needs both captions
    s = scorer.score(photo, edited, source_caption="a ball")
    assert s.clip_t is None and s.clip_dir is None
    s = scorer.score(photo, edited, box=(20, 40, 60, 90))  # no text: no CLIP-RC, CLIP-GC still
    assert s.clip_rc is None and s.clip_gc is not None


def test_identical_images_give_zero_direction(scorer, photo):
    s = scorer.score(photo, photo, source_caption="a ball", target_caption="a cube")
    assert s.clip_dir == 0.0


def test_mask_none_outside_metrics_none_whole_image_set(scorer, photo):
    edited = scene(boxes=((25, 40, 65, 90),))
    s = scorer.score(photo, edited, mask=None)
    assert s.l1_outside is None and s.l2_outside is None
    assert s.l1 is not None and s.l1 > 0 and s.l2 is not None and s.l2 > 0
    d = s.to_dict()  # serialisable with the None fields
    assert d["l1_outside"] is None


def test_edited_at_another_size_is_resized(scorer, photo):
    mask = _mask(photo.size, (20, 40, 60, 90))
    s = scorer.score(photo, photo.resize((320, 240), Image.Resampling.LANCZOS), mask=mask)
    assert s.l1 is not None and s.l1 < 0.05
    assert s.l1_outside is not None and s.clip_gc is not None


def test_full_mask_and_empty_mask_do_not_crash(scorer, photo):
    edited = scene(boxes=((25, 40, 65, 90),))
    full = np.ones((photo.height, photo.width), bool)
    s = scorer.score(photo, edited, mask=full, target_text="ball")
    assert s.l1_outside is None and s.clip_gc == pytest.approx(1.0, abs=1e-5)  # both all black
    empty = np.zeros((photo.height, photo.width), bool)
    s = scorer.score(photo, edited, mask=empty, target_text="ball")
    assert s.clip_rc is None  # no region to crop
    assert s.l1_outside == pytest.approx(s.l1)
    assert s.clip_gc == pytest.approx(s.clip_i, abs=1e-6)


def test_non_rgb_inputs(scorer, photo):
    s = scorer.score(photo.convert("L"), photo.convert("RGBA"))
    assert s.clip_i is not None and math.isfinite(s.clip_i)
