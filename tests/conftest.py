"""Shared fixtures: tiny random models built once per test run, and small test scenes.

No test downloads anything: ``HF_HUB_OFFLINE`` is forced on, and every model is a tiny random
one written by ``tools.tiny.make_tiny`` (what ``localedit models make-tiny`` runs) and loaded
back through the real registry code.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tools.config import Settings


# Markers that follow from a fixture: a test that uses one of these (directly or through another
# fixture) starts a server process, or drives Chromium. Tests that start a process themselves carry
# their markers explicitly. The fast subset is ``pytest -m "not slow and not browser and not server"``
# (docs/testing.md).
FIXTURE_MARKERS = {
    "worker_process": ("server",), "chat_server": ("server",), "chat_server_with_password": ("server",),
    "ray_worker": ("server", "slow"), "smollm2_server": ("server", "slow"), "browser": ("browser",),
}


# Tests over ~3 s of CPU each (over 15 s of wall time in a fast-subset run on the 2-core machine under a
# load average of 16, where wall time was 4.6x CPU time; 2026-12-06), marked slow so that the fast subset
# runs in a few minutes. The tests of the evaluation run share one module fixture that costs as much.
# A parametrized test is listed once, for all its cases. tests/test_suite_rules.py checks that each exists.
SLOW_TESTS = {
    "tests/bench/test_bench_stages.py::test_bench_stages_reports_every_stage_the_turn_an_option_and_the_memory_modes",
    "tests/agent/test_cli.py::test_console_script_make_tiny_and_list",
    "tests/agent/test_cli.py::test_edit_grounds_the_target_and_reports_detections",
    "tests/agent/test_cli.py::test_edit_honours_the_instructions_qualifier",
    "tests/agent/test_cli.py::test_edit_takes_the_target_from_the_instruction",
    "tests/tools/editors/test_edit.py::test_black_mask_feeds_ip2p_a_blacked_out_background",
    "tests/tools/editors/test_edit.py::test_cancel_set_before_the_edit_runs_no_model",
    "tests/tools/editors/test_edit.py::test_diffedit_background_latents_follow_the_ddim_inversion",
    "tests/tools/editors/test_edit.py::test_diffedit_encoding_ratio_sets_the_number_of_steps",
    "tests/tools/editors/test_edit.py::test_diffedit_is_deterministic_whatever_the_seed",
    "tests/tools/editors/test_edit.py::test_ip2p_edits_the_whole_image_at_the_input_size",
    "tests/tools/editors/test_edit.py::test_masked_editor_keeps_everything_outside_the_mask",
    "tests/tools/editors/test_edit.py::test_regionwise_alpha_fit_cost_is_reported_capped_and_can_be_turned_off",
    "tests/tools/editors/test_edit.py::test_regionwise_outside_the_mask_follows_the_reconstruction_path",
    "tests/tools/editors/test_edit.py::test_regionwise_region_starts_from_noise_independent_of_the_input",
    "tests/tools/editors/test_edit.py::test_same_seed_same_pixels_other_seed_other_pixels",
    "tests/tools/editors/test_edit.py::test_work_size_is_below_a_large_input",
    "tests/bench/test_evaluate.py::test_cli_limit_and_shard",
    "tests/bench/test_evaluate.py::test_eval_picks_the_cat_the_chat_picks_and_says_where_the_chat_would_ask",
    "tests/bench/test_evaluate.py::test_nothing_found_runs_global_and_records_a_miss",
    "tests/bench/test_evaluate.py::test_one_region_per_sample_counts_the_baseline_and_the_edit_band",
    "tests/tools/test_fullsize.py::test_random_pipelines_edit_through_the_worker",
    "tests/agent/conversation/test_judge.py::test_the_automatic_retry_changes_the_pixels",
    "tests/tools/worker/test_ray_serve.py::test_a_cancelled_batch_member_does_not_fail_the_others",
    "tests/tools/worker/test_ray_serve.py::test_batched_edits_match_one_by_one_and_bad_ones_fail_alone",
    "tests/test_smoke.py::test_tiny_edit_at_the_default_size",
}
SLOW_FIXTURES = {("tests/bench/test_evaluate.py", "run")}  # the whole evaluation run (96 s of wall time there)


def pytest_collection_modifyitems(config, items) -> None:
    """Adds the markers ``FIXTURE_MARKERS`` names to every test whose fixture closure holds the fixture,
    and ``slow`` to ``SLOW_TESTS`` and the evaluation run's tests."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        for name in fixtures:
            for marker in FIXTURE_MARKERS.get(name, ()):
                item.add_marker(marker)
        path = item.nodeid.split("::")[0]
        if item.nodeid.split("[")[0] in SLOW_TESTS or any((path, f) in SLOW_FIXTURES for f in fixtures):
            item.add_marker("slow")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    """A folder with every model role, tiny and random, in the real on-disk formats."""
    from tools.tiny import make_tiny

    return make_tiny(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def settings(tiny_models_dir, tmp_path_factory) -> Settings:
    """Settings pointing at the tiny models; small work size and few steps for speed."""
    return Settings(models_dir=tiny_models_dir, data_dir=tmp_path_factory.mktemp("data"),
                    device="cpu", max_side=64, steps=2, _env_file=None)


@pytest.fixture(scope="session")
def registry(settings):
    """One registry for the whole run: each tiny model is loaded once."""
    from tools.models import ModelRegistry

    return ModelRegistry(settings)


@pytest.fixture
def sam(registry):
    """The tiny SAM model."""
    return registry.get("sam").model


@pytest.fixture
def segmenter(sam):
    """A ``Segmenter`` around the tiny SAM, with its own embedding cache."""
    from tools.cache import ByteLRU
    from tools.segment import Segmenter

    return Segmenter(sam, cache=ByteLRU(64 << 20, "sam"))


@pytest.fixture
def encoder_runs(sam):
    """How many times SAM's image encoder has run since the test started."""
    runs = []
    handle = sam.image_encoder.register_forward_hook(lambda *_: runs.append(1))
    yield runs
    handle.remove()


@pytest.fixture
def empty_decoder(sam):
    """SAM's mask decoder answering with all-background logits (an empty mask for any prompt)."""
    import torch

    def hook(module, args, output):
        low_res, iou_pred = output
        return torch.full_like(low_res, -100.0), iou_pred

    handle = sam.mask_decoder.register_forward_hook(hook)
    yield
    handle.remove()


def scene(size=(160, 120), boxes=((20, 40, 60, 90), (100, 30, 140, 100))) -> Image.Image:
    """A test photo: a grey gradient background with coloured blobs (the 'objects') at ``boxes``."""
    w, h = size
    x = np.linspace(60, 200, w, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 40, h, dtype=np.float32)[:, None, None]
    bg = np.broadcast_to(x + y, (h, w, 3)).astype(np.uint8).copy()
    img = Image.fromarray(bg)
    draw = ImageDraw.Draw(img)
    colours = [(200, 40, 40), (40, 160, 60), (40, 60, 200), (220, 200, 40)]
    for i, box in enumerate(boxes):
        draw.ellipse(box, fill=colours[i % len(colours)])
    return img


@pytest.fixture
def photo() -> Image.Image:
    """A 160x120 scene with two objects at known boxes."""
    return scene()


@pytest.fixture
def photo_path(tmp_path) -> Path:
    """The three-cats scene of ``tests.helpers.scenes`` saved as a PNG."""
    from tests.helpers.scenes import CATS, SIZE

    path = tmp_path / "cats.png"
    scene(SIZE, boxes=CATS).save(path)
    return path


@pytest.fixture
def scene_objects() -> dict[str, list] | None:
    """What the scene worker's grounding knows (``{phrase word: boxes}``); None: the three cats.
    A test module overrides this fixture to put other objects in the scene."""
    return None


@pytest.fixture
def conversations(settings, registry, tmp_path, scene_objects):
    """``Conversations`` on the test scene: the real tiny models, grounding fixed to ``scene_objects``,
    lenient judge thresholds, the offline parser (``tests.helpers.scenes.open_conversations``)."""
    from tests.helpers.scenes import open_conversations

    conv = open_conversations(settings, registry, tmp_path, objects=scene_objects)
    yield conv
    conv.close()


@pytest.fixture
def chat(conversations, photo_path):
    """A new session on the ``conversations`` fixture, the photo of ``photo_path`` uploaded."""
    session = conversations.session()
    session.send("", image=photo_path)
    return session


@pytest.fixture(scope="module")
def worker_process(tiny_models_dir, tmp_path_factory):
    """The HTTP worker (``python -m tools.worker``) with the tiny models on a loopback port, token
    ``tests.helpers.worker.TOKEN``: one per test module, started and stopped by its PID."""
    from tests.helpers.worker import TOKEN, WorkerProcess

    proc = WorkerProcess(tiny_models_dir, free_port(), tmp_path_factory.mktemp("worker") / "worker.log",
                         token=TOKEN).start()
    yield proc
    proc.stop()
