"""R-SIE region-wise diffusion on InstructPix2Pix.

Only the source-object region is generated from the instruction; the background follows the
input image. With ``x_0`` the input's latents and one noise ``eps`` drawn once and reused:

1. start from the input noised to ``strength``:  ``x_T' = sqrt(a_T') x_0 + sqrt(1 - a_T') eps``;
2. each DDIM step denoises with InstructPix2Pix's three-way guidance (text + image, image only,
   unconditional) on the 8-channel input ``[x_t, image latents]``;
3. after each step the latents outside the (latent-resolution) mask are set to the input noised
   to the timestep reached, ``sqrt(a_t) x_0 + sqrt(1 - a_t) eps`` (``scheduler.add_noise`` with the
   same ``eps``); after the last step that is ``x_0`` itself.

A deterministic DDIM scheduler built from the pipeline's config is used, so the only random
draw is ``eps``: the first draw of the seeded generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from diffusers import DDIMScheduler
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from tools.editors import (EditorOutput, ProgressFn, ddim_config, decode_latents, denoising_count,
                           encode_image, latent_mask)


@dataclass
class RegionStep:
    """The state after one region-wise step, for ``step_hook`` (tests, debugging, previews)."""

    index: int  # 0-based step
    timestep: Optional[int]  # the timestep the latents are now at; None once fully denoised
    latents: torch.Tensor  # after the background was reset
    init_latents: torch.Tensor  # x_0: the input image's latents
    noise: torch.Tensor  # eps, drawn once
    mask: torch.Tensor  # (1, 1, h, w) bool latent mask, True = generated region


def noised_background(scheduler: DDIMScheduler, init_latents: torch.Tensor, noise: torch.Tensor,
                      timestep: Optional[torch.Tensor]) -> torch.Tensor:
    """The input's latents noised to ``timestep`` with the reused ``noise`` (``x_0`` when None):
    ``sqrt(alpha_bar_t) * x_0 + sqrt(1 - alpha_bar_t) * eps``."""
    if timestep is None:
        return init_latents
    return scheduler.add_noise(init_latents, noise, timestep.reshape(1))


class RegionwiseEditor:
    """Region-wise InstructPix2Pix on a loaded ``StableDiffusionInstructPix2PixPipeline``."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.scheduler = DDIMScheduler.from_config(ddim_config(pipe.scheduler.config))

    @torch.no_grad()
    def __call__(
        self,
        image: Image.Image,
        mask: np.ndarray,
        instruction: str,
        *,
        strength: float = 0.7,
        num_inference_steps: int = 20,
        guidance_scale: float = 7.5,
        image_guidance_scale: float = 1.5,
        generator: Optional[torch.Generator] = None,
        progress: Optional[ProgressFn] = None,
        step_hook: Optional[Callable[[RegionStep], None]] = None,
    ) -> EditorOutput:
        """Edit the masked region of ``image`` as ``instruction`` says; the rest follows the input.

        Args:
            image (`PIL.Image.Image`):
                The RGB image at the work size (sides multiples of 8).
            mask (`np.ndarray`):
                Bool ``(height, width)`` work-size mask of the source object (already dilated).
            instruction (`str`):
                The InstructPix2Pix instruction, e.g. "turn the cat into a fox".
            strength (`float`, defaults to 0.7):
                The encoding ratio in ``(0, 1]``: the fraction of the schedule the input is
                noised to before denoising; 1 regenerates the region from pure noise.
            num_inference_steps (`int`, defaults to 20):
                Steps of the full schedule; ``int(num_inference_steps * strength)`` (at least one) run.
            guidance_scale (`float`, defaults to 7.5):
                Text guidance (instruction).
            image_guidance_scale (`float`, defaults to 1.5):
                Image guidance (closeness to the input image).
            generator (`torch.Generator`, *optional*):
                The seeded generator; its first draw is the reused noise ``eps``.
            progress (`Callable[[int, int], None]`, *optional*):
                Called as ``progress(step, total)`` after every denoising step.
            step_hook (`Callable[[RegionStep], None]`, *optional*):
                Called after every step with the latents and what they were blended with.

        Returns:
            `EditorOutput`: the edited image at the work size.
        """
        pipe, device = self.pipe, self.pipe._execution_device
        dtype = pipe.unet.dtype
        do_cfg = guidance_scale > 1.0 and image_guidance_scale >= 1.0  # as the pipeline decides

        # Text: [instruction, "", ""] for the three guidance branches (pipeline order).
        embeds = pipe._encode_prompt(instruction, device, 1, do_cfg)
        # Image: x_0 for the background, and the unscaled latents InstructPix2Pix is conditioned
        # on ([image, image, zeros] with guidance), exactly as the pipeline forms them.
        pixels, x0 = encode_image(pipe, image)
        x0 = x0.to(dtype)
        image_latents = pipe.prepare_image_latents(pixels, 1, 1, embeds.dtype, device, do_cfg)
        m = latent_mask(mask, tuple(x0.shape[-2:]), device)
        noise = randn_tensor(x0.shape, generator=generator, device=device, dtype=dtype)

        scheduler = self.scheduler
        scheduler.set_timesteps(num_inference_steps, device=device)
        n = denoising_count(num_inference_steps, strength)
        timesteps = scheduler.timesteps[num_inference_steps - n:]
        latents = noised_background(scheduler, x0, noise, timesteps[0])

        for i, t in enumerate(timesteps):
            model_input = torch.cat([latents] * 3) if do_cfg else latents
            model_input = torch.cat([scheduler.scale_model_input(model_input, t), image_latents], dim=1)
            noise_pred = pipe.unet(model_input, t, encoder_hidden_states=embeds, return_dict=False)[0]
            if do_cfg:
                text, img, uncond = noise_pred.chunk(3)
                noise_pred = uncond + guidance_scale * (text - img) + image_guidance_scale * (img - uncond)
            latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]
            # The background follows the input: noised to the timestep reached, same eps.
            reached = timesteps[i + 1] if i + 1 < len(timesteps) else None
            background = noised_background(scheduler, x0, noise, reached)
            latents = torch.where(m, latents, background)
            if step_hook is not None:
                step_hook(RegionStep(i, None if reached is None else int(reached), latents, x0, noise, m))
            if progress is not None:
                progress(i + 1, n)

        info = {"denoising_steps": n, "scheduler": "DDIMScheduler", "start_timestep": int(timesteps[0])}
        return EditorOutput(decode_latents(pipe, latents), info)
