"""tools.edit and tools.editors: every editor on the tiny random pipelines.

The tiny models are random, so these tests check properties that hold for any weights: sizes,
bit-identical backgrounds, determinism, progress, errors, what the pipeline is fed, and the
latent bookkeeping of the region-wise and DiffEdit loops.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import scene
from tests.helpers.editing import photo_and_mask, request
from tools.edit import MODERN_EDITORS, Editor
from tools.editors import edit_region, latent_mask
from tools.images import mask_bbox, to_work, work_size
from tools.types import EDITORS, MASKED_EDITORS, EditRequest, LocaleditError

SD_EDITORS = [e for e in EDITORS if e not in MODERN_EDITORS]
SD_MASKED = [e for e in MASKED_EDITORS if e not in MODERN_EDITORS]
"""The Stable Diffusion editors; qwen-edit and kontext (their work size is an area, their native size
another setting) have the same checks in tests/tools/editors/test_modern.py."""

STOCHASTIC = ("ip2p", "ip2p-composite", "regionwise", "inpaint")


# ----------------------------------------------------------------------------- helpers


def one_sentence(msg: str) -> bool:
    return msg.endswith(".") and "\n" not in msg and ". " not in msg and len(msg) < 300


@pytest.fixture
def editor(registry, settings) -> Editor:
    return Editor(registry, settings)


# ----------------------------------------------------------------------------- sizes and background


@pytest.mark.parametrize("editor_name", SD_MASKED)
@pytest.mark.parametrize("size,max_side", [((157, 101), 64), ((300, 200), 64), ((160, 120), 96)],
                         ids=["157x101", "300x200", "160x120@96"])
def test_masked_editor_keeps_everything_outside_the_mask(registry, settings, editor_name, size, max_side):
    s = settings.model_copy(update={"max_side": max_side})
    img, mask = photo_and_mask(size)
    result = Editor(registry, s).edit(img, mask, request(editor_name))

    work = work_size(size, max_side)
    assert result.image.size == size and result.image.mode == "RGB"
    assert result.editor == editor_name
    assert result.info["work_size"] == list(work) and result.info["input_size"] == list(size)
    assert work[0] % 8 == 0 and work[1] % 8 == 0 and max(work) <= max_side

    _, region = edit_region(mask, size, work, s.mask_dilate)
    assert region[mask].all()  # the region covers the whole mask
    # ... and stays close to it: within the work dilation (plus a resize pixel), scaled up.
    margin = math.ceil((s.mask_dilate + 1) * max(size[0] / work[0], size[1] / work[1])) + 1
    x0, y0, x1, y1 = mask_bbox(mask)
    rx0, ry0, rx1, ry1 = mask_bbox(region)
    assert rx0 >= x0 - margin and ry0 >= y0 - margin and rx1 <= x1 + margin and ry1 <= y1 + margin

    before, after = np.asarray(img), np.asarray(result.image)
    assert np.array_equal(after[~region], before[~region])  # bit-identical background
    assert (after[mask] != before[mask]).any()  # and the object was edited

    info = result.info
    assert info["editor"] == editor_name and info["steps"] == settings.steps and info["seed"] == settings.seed
    assert info["mask_area"] == int(mask.sum()) and info["edit_area"] == int(region.sum())
    assert info["denoising_steps"] >= 1


def test_work_size_is_below_a_large_input(editor):
    img, mask = photo_and_mask((300, 200))
    result = editor.edit(img, mask, request("regionwise"))
    w, h = result.info["work_size"]
    assert w < 300 and h < 200 and result.image.size == (300, 200)


@pytest.mark.parametrize("size", [(157, 101), (300, 200)])
def test_ip2p_edits_the_whole_image_at_the_input_size(editor, size):
    img, mask = photo_and_mask(size)
    result = editor.edit(img, None, request("ip2p"))
    assert result.image.size == size and result.image.mode == "RGB"
    assert not np.array_equal(np.asarray(result.image), np.asarray(img))
    assert "edit_area" not in result.info

    with_mask = editor.edit(img, mask, request("ip2p"))  # the mask is ignored, and says so
    assert np.array_equal(np.asarray(with_mask.image), np.asarray(result.image))
    assert "ignored" in with_mask.info["note"]


def test_non_rgb_input_is_edited_as_rgb(editor):
    img, mask = photo_and_mask((157, 101))
    grey = img.convert("L")
    result = editor.edit(grey, mask, request("ip2p-composite"))
    assert result.image.mode == "RGB" and result.image.size == grey.size
    _, region = edit_region(mask, grey.size, tuple(result.info["work_size"]), editor.settings.mask_dilate)
    assert np.array_equal(np.asarray(result.image)[~region], np.asarray(grey.convert("RGB"))[~region])


def test_models_load_lazily(settings):
    from tools.models import ModelRegistry

    registry = ModelRegistry(settings)
    editor = Editor(registry, settings)
    assert registry.loaded() == []
    img, mask = photo_and_mask((157, 101))
    editor.edit(img, mask, request("diffedit"))
    assert registry.loaded() == ["sd"]


# ----------------------------------------------------------------------------- seeds and progress


@pytest.mark.parametrize("editor_name", STOCHASTIC)
def test_same_seed_same_pixels_other_seed_other_pixels(editor, editor_name):
    img, mask = photo_and_mask((157, 101))
    kw = dict(steps=4, strength=0.9 if editor_name != "inpaint" else None)
    a = editor.edit(img, mask, request(editor_name, seed=1, **kw))
    b = editor.edit(img, mask, request(editor_name, seed=1, **kw))
    c = editor.edit(img, mask, request(editor_name, seed=2, **kw))
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))
    assert a.info["seed"] == 1 and c.info["seed"] == 2


def test_diffedit_is_deterministic_whatever_the_seed(editor):
    img, mask = photo_and_mask((157, 101))
    a = editor.edit(img, mask, request("diffedit", seed=1, steps=4))
    b = editor.edit(img, mask, request("diffedit", seed=2, steps=4))
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert a.info["deterministic"] is True


@pytest.mark.parametrize("editor_name", SD_EDITORS)
def test_progress_counts_up_to_the_total(editor, editor_name):
    img, mask = photo_and_mask((157, 101))
    calls: list[tuple[int, int]] = []
    editor.edit(img, mask, request(editor_name, steps=3, strength=1.0),
                progress=lambda step, total: calls.append((step, total)))
    assert calls, "progress was never called"
    steps, totals = [c[0] for c in calls], {c[1] for c in calls}
    assert len(totals) == 1
    total = totals.pop()
    assert steps == list(range(1, total + 1))  # every step, increasing, up to the total
    assert total >= 3


def test_diffedit_encoding_ratio_sets_the_number_of_steps(editor):
    img, mask = photo_and_mask((157, 101))
    runs = {}
    for ratio in (0.3, 0.9):
        calls: list[tuple[int, int]] = []
        result = editor.edit(img, mask, request("diffedit", steps=10, strength=ratio),
                             progress=lambda step, total: calls.append((step, total)))
        runs[ratio] = (calls, result.info)
    (low, low_info), (high, high_info) = runs[0.3], runs[0.9]
    # inversion then decoding, int(10 * ratio) steps each
    assert low_info["denoising_steps"] == 3 and high_info["denoising_steps"] == 9
    assert len(low) == 6 and len(high) == 18
    assert low[-1] == (6, 6) and high[-1] == (18, 18)
    assert low_info["start_timestep"] < high_info["start_timestep"]


# ----------------------------------------------------------------------------- errors and defaults


def test_unknown_editor_names_the_known_ones(editor, photo):
    with pytest.raises(LocaleditError) as err:
        editor.edit(photo, None, EditRequest(editor="magic"))
    msg = str(err.value)
    assert one_sentence(msg) and "magic" in msg
    assert all(name in msg for name in EDITORS)


@pytest.mark.parametrize("editor_name", MASKED_EDITORS)
def test_masked_editor_without_a_usable_mask(editor, photo, editor_name):
    w, h = photo.size
    bad_masks = [None, np.zeros((h, w), bool), np.ones((h + 1, w), bool)]
    for mask in bad_masks:
        with pytest.raises(LocaleditError) as err:
            editor.edit(photo, mask, request(editor_name))
        assert one_sentence(str(err.value)), str(err.value)


@pytest.mark.parametrize("field,value", [("strength", 0.0), ("strength", 1.5), ("steps", 0), ("seed", -1)])
def test_out_of_range_knobs_are_refused(editor, photo, field, value):
    mask = np.zeros(photo.size[::-1], bool)
    mask[40:90, 20:60] = True
    with pytest.raises(LocaleditError) as err:
        editor.edit(photo, mask, request("regionwise", **{field: value}))
    assert one_sentence(str(err.value))


def test_defaults_come_from_the_settings(editor):
    r = editor.resolve(EditRequest(editor="diffedit"))
    s = editor.settings
    assert (r.steps, r.seed, r.guidance_scale, r.image_guidance_scale, r.strength, r.black_mask) == (
        s.steps, s.seed, s.guidance_scale, s.image_guidance_scale, s.encoding_ratio, s.black_mask_input)
    # region-wise diffusion starts at T, as R-SIE sec. 4.1 (eq. 6): every step of the schedule runs
    assert editor.resolve(EditRequest(editor="regionwise")).strength == s.regionwise_encoding_ratio == 1.0
    assert editor.resolve(EditRequest(editor="inpaint")).strength == 1.0
    assert editor.resolve(EditRequest(editor="ip2p")).strength is None
    assert editor.resolve(EditRequest(editor="inpaint", strength=0.5, steps=7, seed=3)).strength == 0.5


def test_inpaint_prompts():
    from tools.editors.inpaint import REMOVE_PROMPT, inpaint_prompts

    assert inpaint_prompts("remove the lamp", "a lamp", "") == (REMOVE_PROMPT, "a lamp")
    assert inpaint_prompts("Please delete the dog", "", "") == (REMOVE_PROMPT, "")
    assert inpaint_prompts("remove the lamp", "a lamp", "an empty table") == ("an empty table", "a lamp")
    assert inpaint_prompts("add a vase on the table", "", "a vase of flowers") == ("a vase of flowers", "")
    assert inpaint_prompts("add a vase", "", "") == ("add a vase", "")
    assert inpaint_prompts("", "", "") == (REMOVE_PROMPT, "")


# ----------------------------------------------------------------------------- black-masked input


def test_black_mask_feeds_ip2p_a_blacked_out_background(editor, registry, monkeypatch):
    pipe = registry.get("ip2p").model
    pipe_cls = type(pipe)
    real_call = pipe_cls.__call__
    fed: list[Image.Image] = []

    def recording_call(self, *args, **kwargs):
        fed.append(kwargs["image"].copy())
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(pipe_cls, "__call__", recording_call)
    img, mask = photo_and_mask((157, 101))
    work = work_size(img.size, editor.settings.max_side)
    work_mask, region = edit_region(mask, img.size, work, editor.settings.mask_dilate)

    black = editor.edit(img, mask, request("ip2p-composite", black_mask=True))
    plain = editor.edit(img, mask, request("ip2p-composite", black_mask=False))
    assert len(fed) == 2
    blacked, normal = (np.asarray(f) for f in fed)
    assert blacked.shape[:2] == (work[1], work[0])
    assert (blacked[~work_mask] == 0).all()  # background blacked out
    assert np.array_equal(blacked[work_mask], normal[work_mask])  # the object as it is
    assert np.array_equal(normal, np.asarray(to_work(img, editor.settings.max_side)))
    assert normal[~work_mask].any()
    assert black.info["black_mask"] is True and plain.info["black_mask"] is False
    for result in (black, plain):  # both still keep the background
        assert np.array_equal(np.asarray(result.image)[~region], np.asarray(img)[~region])

    # the settings' default applies when the request leaves it open
    on = Editor(registry, editor.settings.model_copy(update={"black_mask_input": True}))
    on.edit(img, mask, request("ip2p-composite"))
    assert (np.asarray(fed[-1])[~work_mask] == 0).all()
    editor.edit(img, mask, request("ip2p"))  # never for the global editor
    assert np.array_equal(np.asarray(fed[-1]), normal)


# ----------------------------------------------------------------------------- latent bookkeeping


def test_latent_mask_marks_every_touched_cell():
    m = np.zeros((16, 24), bool)
    m[0, 0] = True  # one pixel in the first 8x8 cell
    m[9:11, 17:20] = True  # a few pixels in cell (1, 2)
    cells = latent_mask(m, (2, 3), torch.device("cpu"))
    assert cells.shape == (1, 1, 2, 3) and cells.dtype == torch.bool
    assert cells[0, 0].tolist() == [[True, False, False], [False, False, True]]


def _regionwise_run(registry, image, mask, seed=5, n=4, **kw):
    """Run RegionwiseEditor with a step hook; returns (steps, output)."""
    from tools.editors.regionwise import RegionwiseEditor

    steps = []
    out = RegionwiseEditor(registry.get("ip2p").model)(
        image, mask, "make it blue", strength=1.0, num_inference_steps=n,
        generator=torch.Generator("cpu").manual_seed(seed), step_hook=steps.append, **kw)
    return steps, out


def _region_fixture(registry):
    image = to_work(scene((157, 101)), 96)  # 96x64: 12x8 latents
    mask = np.zeros((image.height, image.width), bool)
    mask[20:45, 10:40] = True
    return image, mask


def test_regionwise_outside_the_mask_follows_the_reconstruction_path(registry):
    """R-SIE eq. 5-9, written out independently: z_T = (1 - m) z_rec,T + m z_gen,T with z_gen,T the
    generator's second draw; outside m every step is the scheduler-only reconstruction with
    alpha* eps_rec (eq. 8-9), and alpha* minimises eq. 7's reconstruction error."""
    from diffusers import DDIMScheduler
    from diffusers.utils.torch_utils import randn_tensor

    from tools.editors import ddim_config

    pipe = registry.get("ip2p").model
    image, mask = _region_fixture(registry)
    seed, n = 5, 4
    steps, out = _regionwise_run(registry, image, mask, seed, n)

    pixels = pipe.image_processor.preprocess(image)
    x0 = pipe.vae.encode(pixels).latent_dist.mode() * pipe.vae.config.scaling_factor
    gen = torch.Generator("cpu").manual_seed(seed)
    eps = randn_tensor(x0.shape, generator=gen, dtype=x0.dtype)
    z_gen = randn_tensor(x0.shape, generator=gen, dtype=x0.dtype)
    sched = DDIMScheduler.from_config(ddim_config(pipe.scheduler.config))
    sched.set_timesteps(n)
    timesteps = sched.timesteps
    m = latent_mask(mask, tuple(x0.shape[-2:]), torch.device("cpu"))
    outside = ~m.expand_as(x0)

    def path(alpha):
        z, out_ = sched.add_noise(x0, eps, timesteps[:1]), []
        for t in timesteps:
            z = sched.step(alpha * eps, t, z).prev_sample
            out_.append(z)
        return out_

    def loss(alpha):
        return float(((path(alpha)[-1] - x0) ** 2).mean())

    alpha = steps[0].alpha
    assert loss(alpha) <= min(loss(1.0), loss(alpha - 1e-3), loss(alpha + 1e-3))  # eq. 7's minimiser
    assert out.info["alpha"] == pytest.approx(alpha, abs=1e-6) and alpha != 1.0
    start = sched.add_noise(x0, eps, timesteps[:1])
    assert torch.allclose(steps[0].start[outside], start[outside], atol=1e-6)  # eq. 5 / 6: background
    assert torch.equal(steps[0].start[~outside], z_gen[~outside])  # eq. 6: the region is pure noise
    expected = path(alpha)
    assert [s.index for s in steps] == list(range(n)) and steps[-1].timestep is None
    for s, e in zip(steps, expected):
        assert torch.equal(s.mask, m) and torch.equal(s.noise, eps) and torch.equal(s.generation, z_gen)
        assert torch.allclose(s.latents[outside], e[outside], atol=1e-5)  # the reconstruction path
        assert torch.allclose(s.reconstruction, e, atol=1e-5)
        assert not torch.allclose(s.latents[~outside], e[~outside], atol=1e-3)  # generated, not reconstructed
    assert float(((steps[-1].latents[outside] - x0[outside]) ** 2).mean()) < 1e-6  # ends on the input


def test_regionwise_region_starts_from_noise_independent_of_the_input(registry):
    """Two inputs that differ only inside the mask: the same seed gives the same starting region."""
    image, mask = _region_fixture(registry)
    other = np.asarray(image).copy()
    other[mask] = (250, 250, 10)
    a, _ = _regionwise_run(registry, image, mask)
    b, _ = _regionwise_run(registry, Image.fromarray(other), mask)
    region = a[0].mask.expand_as(a[0].start)
    assert not torch.equal(a[0].init_latents, b[0].init_latents)  # the inputs do differ
    assert torch.equal(a[0].start[region], b[0].start[region])  # ... but not where the region starts
    # the old behaviour (the input noised to the strength) would carry the input into the region
    assert not torch.allclose(a[0].start[region], b[0].start[region] + (a[0].init_latents - b[0].init_latents)[region])


def test_regionwise_alpha_fit_cost_is_reported_capped_and_can_be_turned_off(registry, settings):
    image, mask = _region_fixture(registry)
    _, out = _regionwise_run(registry, image, mask)
    fit = out.info["alpha_fit"]
    assert fit["converged"] and 1 <= fit["iterations"] <= 100
    assert fit["scheduler_steps"] == (fit["iterations"] + 1) * out.info["denoising_steps"]  # no UNet in it
    assert fit["loss"] < fit["loss_at_one"] and fit["seconds"] >= 0
    _, capped = _regionwise_run(registry, image, mask, alpha_iters=1)
    assert capped.info["alpha_fit"]["iterations"] == 1
    steps, off = _regionwise_run(registry, image, mask, fit_alpha=False)
    assert off.info["alpha"] == 1.0 and off.info["alpha_fit"] == {"enabled": False} and steps[0].alpha == 1.0
    # the setting reaches the editor
    img, full_mask = photo_and_mask((157, 101))
    result = Editor(registry, settings.model_copy(update={"regionwise_fit_alpha": False})).edit(
        img, full_mask, request("regionwise"))
    assert result.info["alpha"] == 1.0 and result.info["alpha_fit"] == {"enabled": False}


def test_ddim_config_is_fit_for_inversion(registry):
    from tools.editors import ddim_config

    for role in ("ip2p", "sd"):
        cfg = ddim_config(registry.get(role).model.scheduler.config)
        assert cfg["clip_sample"] is False and cfg["set_alpha_to_one"] is False
        assert cfg["timestep_spacing"] in ("leading", "trailing")


def test_diffedit_background_latents_follow_the_ddim_inversion(registry):
    from tools.editors.diffedit import DiffEditEditor, DiffEditStep

    pipe = registry.get("sd").model
    image = to_work(scene((160, 120)), 96)  # 96x72: 12x9 latents
    mask = np.zeros((image.height, image.width), bool)
    mask[20:45, 10:40] = True
    steps: list[DiffEditStep] = []
    DiffEditEditor(pipe)(image, mask, "a red ball", "a fox", encoding_ratio=0.5,
                         num_inference_steps=4, step_hook=steps.append)

    # deterministic DDIM inversion, written out: x_t = sqrt(a_t) x0_pred + sqrt(1 - a_t) eps
    pixels = pipe.image_processor.preprocess(image)
    x0 = pipe.vae.encode(pixels).latent_dist.mode() * pipe.vae.config.scaling_factor
    source = pipe.encode_prompt("a red ball", torch.device("cpu"), 1, False)[0]
    alpha_bar = pipe.scheduler.alphas_cumprod
    inverted, x, a_prev = [x0], x0, alpha_bar[0]
    with torch.no_grad():
        for t in (1, 251):  # SD's leading schedule for 4 steps is 751, 501, 251, 1; ratio 0.5 -> 2
            eps = pipe.unet(x, t, encoder_hidden_states=source).sample
            x0_pred = (x - (1 - a_prev).sqrt() * eps) / a_prev.sqrt()
            x = alpha_bar[t].sqrt() * x0_pred + (1 - alpha_bar[t]).sqrt() * eps
            inverted.append(x)
            a_prev = alpha_bar[t]

    m = latent_mask(mask, tuple(x0.shape[-2:]), torch.device("cpu"))
    outside = ~m.expand_as(x0)
    assert [s.index for s in steps] == [0, 1]
    for s, expected in zip(steps, (inverted[1], inverted[0])):  # 251 -> 1, then 1 -> clean
        assert torch.equal(s.mask, m)
        assert torch.allclose(s.inverted, expected, atol=1e-4)
        assert torch.equal(s.latents[outside], s.inverted[outside])
        assert not torch.allclose(s.latents[~outside], expected[~outside], atol=1e-3)  # edited


# ----------------------------------------------------------------------------- cancellation


class StopAt:
    """A cancel flag that sets itself once the edit reports step ``at`` (a Stop pressed mid-edit)."""

    def __init__(self, at: int):
        self.at, self.steps, self._set = at, [], False

    def progress(self, step: int, total: int) -> None:
        self.steps.append(step)
        if step >= self.at:
            self._set = True

    def is_set(self) -> bool:
        return self._set


@pytest.mark.parametrize("name", SD_EDITORS)
def test_cancel_stops_every_editor_at_the_next_step(editor, name):
    from tools.types import Cancelled

    img, mask = photo_and_mask((64, 48))
    stop = StopAt(1)
    with pytest.raises(Cancelled, match="stopped at step"):
        editor.edit(img, mask, request(name, steps=6, strength=1.0), progress=stop.progress, cancel=stop)
    assert stop.steps == [1], stop.steps  # step 2 never ran


def test_cancel_set_before_the_edit_runs_no_model(editor):
    import threading

    from tools.types import Cancelled

    img, mask = photo_and_mask((64, 48))
    flag, steps = threading.Event(), []
    flag.set()
    with pytest.raises(Cancelled, match="before it started"):
        editor.edit(img, mask, request("ip2p-composite"), progress=lambda s, t: steps.append(s), cancel=flag)
    assert steps == []
    flag.clear()  # an unset flag changes nothing: the same pixels as no flag at all
    plain = editor.edit(img, mask, request("ip2p-composite"))
    flagged = editor.edit(img, mask, request("ip2p-composite"), cancel=flag)
    assert np.array_equal(np.asarray(plain.image), np.asarray(flagged.image))
