"""SAM's image encoder under bf16 autocast (``LOCALEDIT_SAM_BF16``, on CUDA by default): the encoder really
runs in bf16, its embedding comes back in fp32 for the decoder, and the masks match the fp32 ones. CUDA is
not needed to test the code path: autocast on the CPU runs the same ``Segmenter`` branch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import scene
from tools.cache import ByteLRU
from tools.segment import Segmenter, encoder_dtype

BOX = (20, 20, 90, 80)


def test_bf16_only_where_it_is_asked_for_and_on_cuda():
    assert encoder_dtype(torch.device("cpu"), True) is None  # the CPU keeps fp32
    assert encoder_dtype(torch.device("cuda"), False) is None  # switched off
    cuda = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    assert encoder_dtype(torch.device("cuda"), True) == (torch.bfloat16 if cuda else None)


@pytest.fixture
def encoder_dtypes(sam):
    """The dtype the image encoder's first attention projection computed in, per encoder run since the
    test started (the encoder's own output is fp32 either way: its last LayerNorm's weights are fp32)."""
    seen = []
    handle = sam.image_encoder.blocks[0].attn.qkv.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    yield seen
    handle.remove()


def test_the_encoder_runs_in_bf16_and_the_embedding_comes_back_in_fp32(sam, encoder_dtypes):
    photo = scene()
    plain, fast = Segmenter(sam), Segmenter(sam, encoder_dtype=torch.bfloat16)
    plain.set_image(photo)
    fast.set_image(photo)
    assert encoder_dtypes == [torch.float32, torch.bfloat16]
    ref, got = plain.predictor.features, fast.predictor.features
    assert got.dtype == torch.float32 and got.shape == ref.shape
    cosine = torch.nn.functional.cosine_similarity(ref.flatten(), got.flatten(), dim=0)
    assert cosine > 0.99, float(cosine)
    a, b = plain.segment(photo, [BOX]), fast.segment(photo, [BOX])
    union = (a.mask | b.mask).sum()
    assert union == 0 or (a.mask & b.mask).sum() / union > 0.9  # the same mask, up to bf16 rounding at its edge


def test_a_cached_fp32_embedding_is_not_served_to_the_bf16_encoder(sam, encoder_dtypes):
    cache = ByteLRU(64 << 20, "sam")
    Segmenter(sam, cache=cache).set_image(scene())
    assert Segmenter(sam, cache=cache, encoder_dtype=torch.bfloat16).set_image(scene()) is False
    assert Segmenter(sam, cache=cache, encoder_dtype=torch.bfloat16).set_image(scene()) is True
    assert encoder_dtypes == [torch.float32, torch.bfloat16]
