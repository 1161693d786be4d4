"""The CUDA code paths (fp16 placement, generators, caches on the GPU), with tiny models.

Skipped where no CUDA device exists (CI has none); on a GPU machine ``pytest tests/tools/test_gpu.py``.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch

from tests.conftest import scene
from tools.config import Settings
from tools.edit import ROLES
from tools.types import EDITORS, MASKED_EDITORS, EditRequest

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(scope="module")
def gpu_worker(tiny_models_dir, tmp_path_factory):
    from tools.worker import LocalWorker

    settings = Settings(models_dir=tiny_models_dir, data_dir=tmp_path_factory.mktemp("gpu-data"),
                        device="auto", dtype="auto", max_side=96, steps=3, _env_file=None)
    return LocalWorker(settings)


def test_auto_picks_cuda_fp16(gpu_worker):
    reg = gpu_worker.registry
    assert reg.device.type == "cuda" and reg.dtype == torch.float16
    assert reg.get("ip2p").model.unet.dtype == torch.float16
    assert reg.get("clip").model.device.type == "cuda"
    assert next(reg.get("sam").model.parameters()).dtype == torch.float32  # SAM stays fp32


@contextmanager
def finite_outputs(pipe):
    """Record whether every UNet and VAE-decoder output of ``pipe`` is finite while the block runs.

    fp16 overflows show up there as NaN / Inf; after the decoder the image processor clamps them
    into ordinary (black) uint8 pixels, so the converted image cannot tell.
    """
    seen = {"calls": 0, "bad": []}

    def check(module, args, output):
        tensor = output[0] if isinstance(output, (tuple, list)) else getattr(output, "sample", output)
        seen["calls"] += 1
        if not torch.isfinite(tensor).all():
            seen["bad"].append(type(module).__name__)

    handles = [m.register_forward_hook(check) for m in (pipe.unet, pipe.vae.decoder)]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("editor", EDITORS)
def test_every_editor_on_cuda_fp16_keeps_the_background(gpu_worker, editor):
    image = scene((157, 101), boxes=((10, 20, 60, 80), (90, 15, 150, 90)))
    seg = gpu_worker.segment(image, [(10, 20, 60, 80)])
    request = EditRequest(editor=editor, instruction="make it red", source_caption="a photo of a ball",
                          target_caption="a photo of a red ball", seed=3)
    with finite_outputs(gpu_worker.registry.get(ROLES[editor]).model) as seen:
        result = gpu_worker.edit(image, seg.mask, request)
    assert seen["calls"] >= 2 and seen["bad"] == [], seen  # the UNet's noise and the decoded pixels, in fp16
    out = np.asarray(result.image)
    assert out.shape == (101, 157, 3)
    if editor in MASKED_EDITORS:
        assert np.array_equal(out[~result.region], np.asarray(image)[~result.region])
    again = gpu_worker.edit(image, seg.mask, request)
    assert np.array_equal(np.asarray(again.image), out)  # seeded on the GPU too


def test_caches_hit_on_the_gpu(gpu_worker):
    image = scene((120, 90))
    first = gpu_worker.segment(image, [(20, 40, 60, 90)])
    second = gpu_worker.segment(image, [(90, 30, 110, 80)])
    assert not first.cache_hit and second.cache_hit
    assert gpu_worker.caption(image).text and gpu_worker.caption(image).cache_hit
    scores = gpu_worker.score(image, image, mask=first.mask, target_caption="a photo")
    assert abs(scores.clip_i - 1.0) < 1e-3


def test_offload_moves_the_large_models_to_the_gpu_per_stage(tiny_models_dir, tmp_path):
    """LOCALEDIT_OFFLOAD=model: BLIP-2 and the pipelines wait in CPU memory; each goes to the GPU for
    its stage and leaves it when another large one comes; the results stay right."""
    from tools.worker import LocalWorker

    settings = Settings(models_dir=tiny_models_dir, data_dir=tmp_path, device="cuda", max_side=96, steps=2,
                        offload="model", _env_file=None)
    worker = LocalWorker(settings)
    reg = worker.registry
    assert reg.offloading
    image = scene((157, 101), boxes=((10, 20, 60, 80), (90, 15, 150, 90)))
    worker.caption(image)
    assert reg.on_device() == "caption" and reg.get("caption").model.device.type == "cuda"
    seg = worker.segment(image, [(10, 20, 60, 80)])
    assert reg.on_device() == "caption"  # SAM is small: it stays resident, nothing moves
    result = worker.edit(image, seg.mask, EditRequest("ip2p-composite", "make it red", seed=1))
    assert reg.on_device() == "ip2p" and reg.get("caption").model.device.type == "cpu"
    out = np.asarray(result.image)
    assert np.array_equal(out[~result.region], np.asarray(image)[~result.region])
    worker.edit(image, seg.mask, EditRequest("inpaint", "remove it", seed=1))
    assert reg.on_device() == "inpaint"
    assert all(p.device.type == "cpu" for p in reg.get("ip2p").model.unet.parameters())  # back in CPU memory
    assert worker.caption(image).cache_hit and reg.on_device() == "inpaint"  # a cached caption moves nothing


def test_cuda_fast_math_sets_tf32_and_channels_last_unets(gpu_worker):
    import torch

    reg = gpu_worker.registry
    unet = reg.get("ip2p").model.unet
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    weight = next(p for p in unet.parameters() if p.dim() == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last)


def test_sam_encoder_runs_in_bf16_on_cuda_with_fp32_weights(gpu_worker):
    """``LOCALEDIT_SAM_BF16`` (on by default): the worker's segmenter autocasts SAM's image encoder to bf16."""
    from PIL import Image

    sam = gpu_worker.registry.get("sam").model
    seen = []
    handle = sam.image_encoder.blocks[0].attn.qkv.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    try:
        seg = gpu_worker.segment(Image.new("RGB", (96, 72), (120, 80, 40)), [(10, 10, 60, 50)])
    finally:
        handle.remove()
    assert seen == [torch.bfloat16] and seg.mask.shape == (72, 96)
    assert next(sam.parameters()).dtype == torch.float32


def test_a_worker_on_cuda_says_a_batch_pays_before_any_model_loads(tiny_models_dir, tmp_path):
    """``LOCALEDIT_BATCH_RETRIES=auto`` batches the judge's attempts on a GPU, from the first call on."""
    from agent.conversation.pipeline import batch_limit
    from tools.worker import LocalWorker

    settings = Settings(models_dir=tiny_models_dir, data_dir=tmp_path, device="auto", _env_file=None)
    worker = LocalWorker(settings)
    assert worker.batch_pays() and batch_limit(worker, settings) == 1 and worker.registry.loaded() == []
