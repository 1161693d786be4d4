"""The edit metrics: formulas against hand-computed values, the scorer on tiny CLIP (plumbing,
caching, regions) and on hand-made embeddings with known answers (what CLIP-RC / CLIP-GC mean)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from tests.conftest import scene
from tools.cache import ByteLRU
from tools.images import box_to_mask
from tools.score import (Scorer, coco_categories, cosine, direction_similarity, features_tensor, label_set,
                         masked_l1_l2, zero_shot_probabilities)
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
    # original, edited, the region crop (the mask fills the box, so it is also the edited object's crop of
    # the direction on the region), the original object's crop, and the two region-removed images
    n_images = 6
    assert vision_counter.images == n_images
    assert first.cache_hits == 0
    calls = vision_counter.calls
    second = scorer.score(photo, edited, **kwargs)
    assert vision_counter.calls == calls  # no new vision forward at all
    assert second.cache_hits == n_images
    assert scorer.image_forwards == n_images and scorer.image_hits == n_images
    for name in ("clip_i", "clip_t", "clip_dir", "clip_dir_region", "clip_rc", "clip_gc", "l1_outside", "l1_inside"):
        assert getattr(second, name) == pytest.approx(getattr(first, name), abs=1e-6)


def test_duplicate_images_in_one_call_are_embedded_once(scorer, photo, vision_counter):
    mask = _mask(photo.size, (20, 40, 60, 90))
    s = scorer.score(photo, _edit_inside(photo, mask), mask=mask)
    # original, edited, the box crop, and ONE blanked image: the edit is inside the box only
    assert vision_counter.images == 4
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


def test_clip_gc_blanks_the_box_and_l1_outside_counts_everything_but_the_mask(scorer, photo):
    """CLIP-GC blanks the target box (R-SIE), L1 outside excludes only the object mask: a change in
    the box's corners (outside the round object) leaves CLIP-GC at 100 but counts in L1 outside."""
    box = (18.0, 38.0, 62.0, 92.0)
    drawn = Image.new("L", photo.size)
    ImageDraw.Draw(drawn).ellipse((20, 40, 60, 90), fill=255)  # the object's own pixels, as the scene draws it
    ball = np.asarray(drawn) > 0
    inside = _edit_inside(photo, ball)
    s = scorer.score(photo, inside, mask=ball, boxes=[box], target_text="ball")
    assert s.clip_gc == pytest.approx(100.0, abs=1e-3) and s.l1_outside == 0.0 and s.l2_outside == 0.0
    assert s.l1 > 0.0  # the whole-image metric does see the edit
    corners = box_to_mask(box, photo.size) & ~ball
    band = _edit_inside(inside, corners, colour=(255, 0, 255))
    s = scorer.score(photo, band, mask=ball, boxes=[box], target_text="ball")
    assert s.clip_gc == pytest.approx(100.0, abs=1e-3)  # the box is blanked in both
    n = (~ball).sum() * 3
    expected = np.abs(np.asarray(band, float) - np.asarray(photo, float))[~ball].sum() / 255 / n
    assert s.l1_outside == pytest.approx(expected) and s.l1_outside > 0.0
    outside = _edit_inside(inside, ~box_to_mask(box, photo.size), colour=(255, 0, 255))
    s = scorer.score(photo, outside, mask=ball, boxes=[box])
    assert s.clip_gc < 100.0 - 1e-2  # outside the box: the background moved


def test_clip_gc_uses_the_box_when_there_is_no_mask(scorer, photo):
    box = (18.0, 38.0, 62.0, 92.0)
    edited = _edit_inside(photo, _mask(photo.size, (18, 38, 62, 92)))
    s = scorer.score(photo, edited, box=box, target_text="blue ball")
    assert s.clip_gc == pytest.approx(100.0, abs=1e-3)
    assert s.clip_rc is not None and 0.0 < s.clip_rc < 100.0
    assert s.l1_outside == 0.0  # without a mask, outside the box
    moved = _edit_inside(edited, _mask(photo.size, (100, 0, 160, 120)), colour=(0, 0, 0))
    s = scorer.score(photo, moved, box=box)
    assert s.l1_outside > 0.0 and s.clip_gc < 100.0


def test_zero_shot_probabilities_by_hand():
    # logits ln2 * (1, 0, 0) -> softmax (2, 1, 1) / 4
    probs = zero_shot_probabilities([3.0, 0.0], [[1.0, 0.0], [0.0, 2.0], [0.0, -1.0]], math.log(2.0))
    assert probs.tolist() == pytest.approx([0.5, 0.25, 0.25])
    # the image's length does not matter, only its direction (cosines)
    assert zero_shot_probabilities([1.0, 1.0], [[1.0, 1.0], [-1.0, -1.0]], 1.0).tolist() == pytest.approx(
        [math.e / (math.e + 1 / math.e), (1 / math.e) / (math.e + 1 / math.e)])


def test_label_set_and_coco():
    coco = coco_categories()
    assert len(coco) == 80 and coco[0] == "person" and coco[-1] == "toothbrush" and "teddy bear" in coco
    labels = label_set("fox", "cat")
    assert labels[:2] == ["fox", "cat"] and len(labels) == 81  # COCO's "cat" is the source, once
    assert label_set("Red  ball", "", ["ball", "red ball"]) == ["Red ball", "ball"]
    assert label_set("", "dog", ["cat"]) == ["dog", "cat"]


def _boxes_scene(colours, size=(120, 60)) -> tuple[Image.Image, list]:
    """Grey image with a pure-colour square per colour; returns it and the squares' boxes."""
    img = Image.new("RGB", size, (128, 128, 128))
    draw = ImageDraw.Draw(img)
    boxes = []
    for i, colour in enumerate(colours):
        box = (10 + 50 * i, 10, 50 + 50 * i, 50)
        draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=colour)
        boxes.append(tuple(float(v) for v in box))
    return img, boxes


def test_clip_rc_known_answer_on_hand_made_embeddings():
    """R-SIE's CLIP-RC on embeddings with a known answer (tests.helpers.colour_clip): a pure red crop has
    cosine 1 with "a photo of a red ball." and 0 with the 81 other labels, logit scale ln 81."""
    from tests.helpers.colour_clip import colour_scorer

    scorer = colour_scorer()
    red, (box,) = _boxes_scene([(255, 1, 1)])  # minus 128: exactly (127, -127, -127)
    s = scorer.score(red, red, boxes=[box], target_text="red ball", source_text="ball")
    assert s.clip_rc == pytest.approx(50.0, abs=1e-4)  # 81 / (81 + 81 * 1)
    assert s.clip_rc_source == pytest.approx(100 / 162, abs=1e-4)
    # unchanged (green): cos(green, red) = -1/3, so P(red ball) = 81^(-1/3) / (81^(-1/3) + 81)
    green, _ = _boxes_scene([(1, 255, 1)])
    s = scorer.score(green, green, boxes=[box], target_text="red ball", source_text="ball")
    low = 81 ** (-1 / 3)
    assert s.clip_rc == pytest.approx(100 * low / (low + 81), abs=1e-4)
    assert s.clip_rc_source == pytest.approx(100 / (low + 81), abs=1e-4) and s.clip_rc_source > s.clip_rc
    # two boxes: the mean over their crops
    both, boxes = _boxes_scene([(255, 1, 1), (1, 255, 1)])
    s = scorer.score(both, both, boxes=boxes, target_text="red ball", source_text="ball")
    assert s.clip_rc == pytest.approx((50.0 + 100 * low / (low + 81)) / 2, abs=1e-4)
    # no category, no CLIP-RC; the raw crop-caption cosine has its own name
    s = scorer.score(red, red, boxes=[box], target_caption="a photo of a red ball")
    assert s.clip_rc is None and s.clip_crop_t == pytest.approx(1.0, abs=1e-6)


def test_clip_gc_known_answer_on_hand_made_embeddings():
    """CLIP-GC x100 = 100 cos of the blanked images' embeddings, here their mean colours - 128."""
    from tests.helpers.colour_clip import colour_scorer

    scorer = colour_scorer()
    img, boxes = _boxes_scene([(255, 0, 0), (0, 255, 0)])
    edited = img.copy()
    ImageDraw.Draw(edited).rectangle((100, 0, 119, 59), fill=(128, 128, 255))  # a blue strip outside the boxes
    s = scorer.score(img, edited, boxes=boxes[:1])

    def blanked_mean(image):
        a = np.asarray(image, float).copy()
        a[10:50, 10:50] = 0
        return a.reshape(-1, 3).mean(axis=0) - 128

    u, v = blanked_mean(img), blanked_mean(edited)
    assert s.clip_gc == pytest.approx(100 * u @ v / np.linalg.norm(u) / np.linalg.norm(v), abs=1e-3)
    assert s.clip_gc < 100.0


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
    assert s.l1_outside is None and s.clip_gc == pytest.approx(100.0, abs=1e-3)  # both all black
    assert s.clip_rc is not None  # the crop is the whole image
    empty = np.zeros((photo.height, photo.width), bool)
    s = scorer.score(photo, edited, mask=empty, target_text="ball")
    assert s.clip_rc is None and s.clip_gc is None  # no region: nothing to crop or blank
    assert s.l1_outside == pytest.approx(s.l1)


def test_pixel_metrics_of_a_large_image_are_exact_in_bounded_memory():
    """6000 x 4000 flat images: the chunked uint8 sums equal the naive float formula on a 4 x 3 image
    of the same colours, and the call never allocates a float copy of the image."""
    import tracemalloc

    size, a, b = (6000, 4000), (10, 200, 30), (13, 190, 255)
    big_a, big_b = Image.new("RGB", size, a), Image.new("RGB", size, b)
    mask = np.zeros(size[::-1], bool)
    mask[1000:3000, 2000:5000] = True
    small_a, small_b = (np.full((3, 4, 3), c, np.float64) / 255 for c in (a, b))
    d = small_a - small_b
    naive = (float(np.mean(np.abs(d))), float(np.mean(d * d)))
    tracemalloc.start()
    got = masked_l1_l2(big_a, big_b, mask)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert got == pytest.approx(naive, rel=1e-12)
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB: a float64 copy would be {6000 * 4000 * 3 * 8 / 2**20:.0f} MiB"
    # the mask excluded what it should: only the outside pixels count
    c = np.asarray(big_b.crop((0, 0, 8, 8)), np.float64)
    c[:4] = np.asarray(big_a.crop((0, 0, 8, 4)), np.float64)  # half the pixels unchanged
    half = masked_l1_l2(np.asarray(big_a.crop((0, 0, 8, 8))), c.astype(np.uint8))
    assert half[0] == pytest.approx(naive[0] / 2)


def test_non_rgb_inputs(scorer, photo):
    s = scorer.score(photo.convert("L"), photo.convert("RGBA"))
    assert s.clip_i is not None and math.isfinite(s.clip_i)


def test_the_direction_on_the_region_sees_the_object_alone():
    """``clip_dir_region`` crops each box black outside the undilated mask, before and after: a change to
    the object counts, a change to the background inside its box does not (hand-made colour embeddings)."""
    from PIL import ImageDraw

    from tests.helpers.colour_clip import colour_scorer

    image = Image.new("RGB", (160, 120), (128, 128, 128))
    box = (20, 30, 80, 100)
    ImageDraw.Draw(image).ellipse(box, fill=(200, 40, 40))
    mask = np.asarray(image)[..., 1] == 40
    blue_object, blue_around = np.array(image), np.array(image)
    blue_object[mask] = (1, 1, 255)
    blue_around[_mask(image.size, box) & ~mask] = (1, 1, 255)
    kwargs = dict(mask=mask, boxes=[box], source_caption="a photo of a cat", target_caption="a photo of a blue cat")
    scorer = colour_scorer()
    on = scorer.score(image, Image.fromarray(blue_object), **kwargs)
    around = scorer.score(image, Image.fromarray(blue_around), **kwargs)
    assert on.clip_dir_region > 0.7 and on.l1_inside > 0.3
    assert around.clip_dir_region == 0.0 and around.l1_inside == 0.0
    from tools.images import crop_box
    from tools.score import direction_similarity

    crops = [scorer.image_embedding(crop_box(im, box)) for im in (image, Image.fromarray(blue_around))]
    texts = scorer.text_embeddings([kwargs["source_caption"], kwargs["target_caption"]])
    assert direction_similarity(*crops, *texts) > 0.5  # the plain box crop would have counted the blue around it
