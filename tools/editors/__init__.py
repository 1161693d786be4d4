"""The diffusion editors, one module each, written like diffusers pipelines.

=================  ==========================================================================
module             editor
=================  ==========================================================================
``ip2p``           ``ip2p`` and ``ip2p-composite``: InstructPix2Pix on the (optionally
                   black-masked) work image
``diffedit``       ``diffedit``: DDIM inversion to the encoding ratio, mask-guided DDIM decoding
``regionwise``     ``regionwise``: R-SIE region-wise diffusion on InstructPix2Pix
``inpaint``        ``inpaint``: Stable Diffusion inpainting inside the mask
``qwen_edit``      ``qwen-edit``: Qwen-Image-Edit (or Edit Plus; its inpaint pipeline on request)
``kontext``        ``kontext``: FLUX.1 Kontext [dev] (its inpaint pipeline on request)
=================  ==========================================================================

Each editor wraps a loaded diffusers pipeline, takes the work-size image (and the work-size
mask, already dilated) and returns an :class:`EditorOutput` at the work size. Everything about
sizes, defaults, validation and the full-resolution composite lives in :mod:`tools.edit`.

This module holds the small helpers the editors share. It does not import the editor modules,
so they can import from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch
from PIL import Image

from tools.images import dilate, mask_to_work, region_at_full

ProgressFn = Callable[[int, int], None]
"""``progress(step, total)``, called after every diffusion step (UNet evaluation)."""


@dataclass
class EditorOutput:
    """What an editor returns: the edited image at the work size, and notes for ``EditResult.info``."""

    image: Image.Image
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- masks


def edit_region(mask: np.ndarray, image_size: tuple[int, int], work: tuple[int, int],
                dilate_px: int) -> tuple[np.ndarray, np.ndarray]:
    """The region an edit may touch, at the work size and at the original size.

    ``mask`` (original size) is resized to ``work`` and grown by ``dilate_px`` work pixels: that
    is what the editors see. Brought back to ``image_size`` and united with ``mask`` (resizing
    must never lose a pixel the user asked for), it is what the composite may change; every
    pixel outside it stays bit-identical. Returns ``(work_mask, full_mask)``.
    """
    work_mask = dilate(mask_to_work(mask, work), dilate_px)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (image_size[1], image_size[0]):
        raise ValueError(f"mask has shape {mask.shape}, the image is {image_size[::-1]} (height, width).")
    return work_mask, region_at_full(mask, work_mask)


def latent_mask(work_mask: np.ndarray, latent_hw: tuple[int, int], device: torch.device) -> torch.Tensor:
    """The work mask at latent resolution, a bool ``(1, 1, h, w)`` tensor (True = edit).

    A latent cell belongs to the region when ANY pixel of the image patch it covers does, so
    the generated region always covers the whole mask (the composite trims it back).
    """
    h, w = latent_hw
    H, W = work_mask.shape
    if H % h or W % w:
        raise ValueError(f"mask {W}x{H} is not a whole multiple of the latents {w}x{h}")
    cells = work_mask.reshape(h, H // h, w, W // w).any(axis=(1, 3))
    return torch.from_numpy(cells)[None, None].to(device)


# --------------------------------------------------------------------------- latents


def encode_image(pipe, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pixels, latents)``: the image as a ``[-1, 1]`` tensor, and its VAE latents scaled
    by ``vae.config.scaling_factor`` (the space the UNet denoises in). The latents are the mode of
    the VAE posterior, so encoding is deterministic."""
    pixels = pipe.image_processor.preprocess(image).to(device=pipe._execution_device, dtype=pipe.vae.dtype)
    latents = pipe.vae.encode(pixels).latent_dist.mode() * pipe.vae.config.scaling_factor
    return pixels, latents


def decode_latents(pipe, latents: torch.Tensor) -> Image.Image:
    """The PIL image of ``latents`` (in the UNet's scaled latent space)."""
    image = pipe.vae.decode(latents.to(pipe.vae.dtype) / pipe.vae.config.scaling_factor, return_dict=False)[0]
    return pipe.image_processor.postprocess(image, output_type="pil")[0]


def ddim_config(config) -> dict[str, Any]:
    """A pipeline's scheduler config made fit for deterministic DDIM (and its inverse).

    The noise schedule (betas, offset, prediction type) is kept. Sampling in SD's latent space
    must not clip x0 to ``[-1, 1]`` (DDIM's default), the last step goes to ``alphas_cumprod[0]``
    as in SD's own DDIM config, and the spacing must be one DDIMInverseScheduler knows.
    """
    cfg = dict(config)
    spacing = cfg.get("timestep_spacing", "leading")
    cfg.update(clip_sample=False, set_alpha_to_one=False,
               timestep_spacing=spacing if spacing in ("leading", "trailing") else "leading")
    return cfg


def denoising_count(num_inference_steps: int, strength: float) -> int:
    """How many of ``num_inference_steps`` run at ``strength`` (as diffusers' ``get_timesteps``),
    at least one."""
    return max(1, min(int(num_inference_steps * strength), num_inference_steps))


def pipeline_progress(progress: Optional[ProgressFn]):
    """A ``callback_on_step_end`` for a diffusers pipeline that reports ``progress(i + 1, total)``."""
    if progress is None:
        return None

    def on_step_end(pipe, i: int, t, callback_kwargs: dict) -> dict:
        progress(i + 1, int(getattr(pipe, "num_timesteps", 0) or i + 1))
        return callback_kwargs

    return on_step_end


def inpaint_variant(pipe, class_name: str):
    """The inpaint pipeline ``class_name`` (diffusers) on ``pipe``'s components (``from_pipe``: no second
    copy of the weights), built once and kept on ``pipe``."""
    cached = getattr(pipe, "_localedit_inpaint", None)
    if cached is None or type(cached).__name__ != class_name:
        import diffusers

        cached = getattr(diffusers, class_name).from_pipe(pipe)
        cached.set_progress_bar_config(disable=True)
        pipe._localedit_inpaint = cached
    return cached


__all__ = ["EditorOutput", "inpaint_variant", "ProgressFn", "edit_region", "latent_mask", "encode_image", "decode_latents",
           "ddim_config", "denoising_count", "pipeline_progress"]
