"""DiffEdit (Couairon et al., 2022) with a given mask.

DiffEdit computes its own mask from the difference of noise estimates under two captions; here
the mask comes from SAM (InstructEdit) or the user, so only DiffEdit's editing half runs:

1. **encode**: the work image to latents ``x_0`` with the VAE;
2. **invert**: deterministic DDIM inversion ``x_0 -> x_r`` conditioned on the source caption
   (guidance 1), up to ``r = encoding_ratio`` of the schedule, keeping every ``x_t`` on the way;
3. **decode**: DDIM from ``x_r`` with classifier-free guidance on the target caption; after each
   step the latents outside the (latent-resolution) mask are replaced by the inverted latents of
   the same timestep, so the background is reconstructed and only the masked region changes:
   InstructEdit eq. 4, ``y~_t = M y_t + (1 - M) x_t`` with ``y_r = x_r`` (inversion: its eq. 3).

No step draws noise (DDIM, eta = 0), so the seed changes nothing: a retry must move the encoding
ratio or the guidance (``agent.conversation.judge.SEEDLESS_EDITORS``).

The loop is owned here because diffusers' ``StableDiffusionDiffEditPipeline`` is deprecated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler
from PIL import Image

from tools.editors import (EditorOutput, ProgressFn, ddim_config, decode_latents, denoising_count,
                           encode_image, latent_mask)


@dataclass
class DiffEditStep:
    """The state after one decoding step, for ``step_hook`` (tests, debugging, previews)."""

    index: int  # 0-based decoding step
    latents: torch.Tensor  # after the background was replaced
    inverted: torch.Tensor  # the inverted latents of the timestep reached (x_0 after the last step)
    mask: torch.Tensor  # (1, 1, h, w) bool latent mask, True = edited region


class DiffEditEditor:
    """Mask-guided DDIM editing on a loaded ``StableDiffusionPipeline``."""

    def __init__(self, pipe):
        self.pipe = pipe
        config = ddim_config(pipe.scheduler.config)
        self.scheduler = DDIMScheduler.from_config(config)
        self.inverse_scheduler = DDIMInverseScheduler.from_config(config)

    def encode_text(self, prompt: str) -> torch.Tensor:
        """The text encoder's hidden states for ``prompt``, ``(1, 77, dim)``."""
        embeds, _ = self.pipe.encode_prompt(prompt, self.pipe._execution_device, 1, False)
        return embeds

    @torch.no_grad()
    def invert(self, latents: torch.Tensor, embeds: torch.Tensor, timesteps: torch.Tensor,
               progress: Optional[ProgressFn] = None, total: int = 0) -> list[torch.Tensor]:
        """Deterministic DDIM inversion of clean ``latents`` through ascending ``timesteps``.

        Returns ``[x_0, x_t1, x_t2, ...]``: the clean latents, then the latents at each timestep.
        """
        unet, scheduler = self.pipe.unet, self.inverse_scheduler
        trajectory = [latents]
        for i, t in enumerate(timesteps):
            noise_pred = unet(latents, t, encoder_hidden_states=embeds, return_dict=False)[0]
            latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]
            trajectory.append(latents)
            if progress is not None:
                progress(i + 1, total)
        return trajectory

    @torch.no_grad()
    def __call__(
        self,
        image: Image.Image,
        mask: np.ndarray,
        source_caption: str,
        target_caption: str,
        *,
        encoding_ratio: float = 0.7,
        num_inference_steps: int = 20,
        guidance_scale: float = 7.5,
        progress: Optional[ProgressFn] = None,
        step_hook: Optional[Callable[[DiffEditStep], None]] = None,
    ) -> EditorOutput:
        """Edit the masked region of ``image`` from ``source_caption`` to ``target_caption``.

        Args:
            image (`PIL.Image.Image`):
                The RGB image at the work size (sides multiples of 8).
            mask (`np.ndarray`):
                Bool ``(height, width)`` work-size mask of the region to edit (already dilated).
            source_caption (`str`):
                What the image shows now ("a photo of a cat"); conditions the inversion.
            target_caption (`str`):
                What it should show ("a photo of a fox"); guides the decoding.
            encoding_ratio (`float`, defaults to 0.7):
                How far into the noise schedule to invert, in ``(0, 1]``: higher allows larger
                changes, lower keeps more of the original inside the mask.
            num_inference_steps (`int`, defaults to 20):
                Steps of the full schedule; ``int(num_inference_steps * encoding_ratio)`` of them
                (at least one) run, both when inverting and when decoding.
            guidance_scale (`float`, defaults to 7.5):
                Classifier-free guidance on the target caption while decoding.
            progress (`Callable[[int, int], None]`, *optional*):
                Called as ``progress(step, total)`` after every UNet step, inversion steps first
                (``total`` = inversion + decoding steps).
            step_hook (`Callable[[DiffEditStep], None]`, *optional*):
                Called after every decoding step with the latents and what they were blended with.

        Returns:
            `EditorOutput`: the edited image at the work size. Deterministic: no random draws,
            so the seed does not change the result.
        """
        pipe, device = self.pipe, self.pipe._execution_device
        _, x0 = encode_image(pipe, image)
        x0 = x0.to(pipe.unet.dtype)
        m = latent_mask(mask, tuple(x0.shape[-2:]), device)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        self.inverse_scheduler.set_timesteps(num_inference_steps, device=device)
        n = denoising_count(num_inference_steps, encoding_ratio)
        total = 2 * n
        # The inverse schedule visits the same timesteps as the forward one, ascending.
        up = self.inverse_scheduler.timesteps[:n]
        down = self.scheduler.timesteps[num_inference_steps - n:]

        source = self.encode_text(source_caption)
        trajectory = self.invert(x0, source, up, progress, total)

        do_cfg = guidance_scale > 1.0
        target = self.encode_text(target_caption)
        embeds = torch.cat([self.encode_text(""), target]) if do_cfg else target

        latents = trajectory[n]
        for i, t in enumerate(down):
            model_input = torch.cat([latents] * 2) if do_cfg else latents
            noise_pred = pipe.unet(model_input, t, encoder_hidden_states=embeds, return_dict=False)[0]
            if do_cfg:
                uncond, text = noise_pred.chunk(2)
                noise_pred = uncond + guidance_scale * (text - uncond)
            latents = self.scheduler.step(noise_pred, t, latents, return_dict=False)[0]
            # Mask guidance: outside the region, the inverted latents of the timestep reached.
            background = trajectory[n - 1 - i]
            latents = torch.where(m, latents, background)
            if step_hook is not None:
                step_hook(DiffEditStep(i, latents, background, m))
            if progress is not None:
                progress(n + i + 1, total)

        info = {"inversion_steps": n, "denoising_steps": n, "scheduler": "DDIMScheduler",
                "start_timestep": int(down[0]), "deterministic": True}
        return EditorOutput(decode_latents(pipe, latents), info)
