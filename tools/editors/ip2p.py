"""InstructPix2Pix editors: ``ip2p`` (the whole image) and ``ip2p-composite``.

``ip2p-composite`` is the CMU localized-editing recipe: run InstructPix2Pix, then paste only the
masked region of its output over the untouched original (done by :mod:`tools.edit`). With
``black_mask`` InstructPix2Pix sees the black-masked input, everything but the (dilated) object
set to black, which the study found more robust than a white background.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from PIL import Image

from tools.editors import EditorOutput, ProgressFn, pipeline_progress
from tools.images import black_out


class InstructPix2PixEditor:
    """Whole-image InstructPix2Pix on a loaded ``StableDiffusionInstructPix2PixPipeline``."""

    def __init__(self, pipe):
        self.pipe = pipe

    @torch.no_grad()
    def __call__(
        self,
        image: Image.Image,
        instruction: str,
        *,
        mask: Optional[np.ndarray] = None,
        black_mask: bool = False,
        num_inference_steps: int = 20,
        guidance_scale: float = 7.5,
        image_guidance_scale: float = 1.5,
        generator: Optional[torch.Generator] = None,
        progress: Optional[ProgressFn] = None,
    ) -> EditorOutput:
        """Edit ``image`` as ``instruction`` says.

        Args:
            image (`PIL.Image.Image`):
                The RGB image at the work size (sides multiples of 8).
            instruction (`str`):
                The InstructPix2Pix instruction, e.g. "turn the cat into a fox".
            mask (`np.ndarray`, *optional*):
                Bool ``(height, width)`` work-size mask of the region to edit; only used with
                ``black_mask``.
            black_mask (`bool`, defaults to `False`):
                Feed InstructPix2Pix the image with everything outside ``mask`` blacked out.
            num_inference_steps (`int`, defaults to 20):
                Denoising steps.
            guidance_scale (`float`, defaults to 7.5):
                Text guidance: how strongly the edit follows the instruction.
            image_guidance_scale (`float`, defaults to 1.5):
                Image guidance: how strongly the result stays close to the input image.
            generator (`torch.Generator`, *optional*):
                The seeded generator that makes the edit reproducible.
            progress (`Callable[[int, int], None]`, *optional*):
                Called as ``progress(step, total)`` after every denoising step.

        Returns:
            `EditorOutput`: the edited image at the work size.
        """
        info: dict = {"scheduler": type(self.pipe.scheduler).__name__}
        source = image
        if black_mask:
            if mask is None:
                raise ValueError("black_mask needs a mask")
            source = black_out(image, mask)
            info["black_mask"] = True
        edited = self.pipe(
            prompt=instruction,
            image=source,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            image_guidance_scale=image_guidance_scale,
            generator=generator,
            output_type="pil",
            callback_on_step_end=pipeline_progress(progress),
        ).images[0]
        info["denoising_steps"] = int(getattr(self.pipe, "num_timesteps", num_inference_steps))
        return EditorOutput(edited, info)


@torch.no_grad()
def guided_batch(
    pipe,
    prompt: list[str],
    image: list[Image.Image],
    generator: list[torch.Generator],
    guidance_scale: list[float],
    image_guidance_scale: list[float],
    *,
    num_inference_steps: int = 20,
    callback_on_step_end=None,
) -> list[Image.Image]:
    """InstructPix2Pix on a batch whose items have their OWN guidances, in one call per step.

    The diffusers pipeline takes one text and one image guidance for the whole batch; the judge's
    retries of one editor differ exactly there (a "stronger edit": text guidance up, image guidance
    down). This runs the pipeline's own denoising loop (its prompt encoding, image latents, noise,
    scheduler and decoding, in its order) with InstructPix2Pix's three-branch classifier-free guidance
    (the paper's eq. 3; the pipeline's ``uncond + s_T (text - image) + s_I (image - uncond)``) taken
    per item, so item ``k`` gets the pixels the pipeline gives it alone, up to floating-point batching.

    Args:
        pipe (`StableDiffusionInstructPix2PixPipeline`):
            The loaded pipeline (its components and scheduler are used as they are).
        prompt (`list[str]`):
            One instruction per item.
        image (`list[PIL.Image.Image]`):
            One RGB work image per item, all the same size (sides multiples of 8).
        generator (`list[torch.Generator]`):
            One seeded generator per item: its draws are the item's noise, as when it runs alone.
        guidance_scale (`list[float]`):
            Text guidance per item (above 1).
        image_guidance_scale (`list[float]`):
            Image guidance per item (at least 1: every item runs the three guidance branches).
        num_inference_steps (`int`, defaults to 20):
            Denoising steps, the same for every item.
        callback_on_step_end (*optional*):
            Called as the pipeline calls it, ``callback_on_step_end(pipe, i, t, {})`` after every step.

    Returns:
        `list[PIL.Image.Image]`: the edited images, in the order of the items.
    """
    n = len(prompt)
    if not n == len(image) == len(generator) == len(guidance_scale) == len(image_guidance_scale):
        raise ValueError("every item needs its prompt, image, generator and both guidances")
    if min(guidance_scale) <= 1.0 or min(image_guidance_scale) < 1.0:
        raise ValueError("items with guidance off (text guidance <= 1 or image guidance < 1) cannot share a batch")
    device = pipe._execution_device
    embeds = pipe._encode_prompt(prompt, device, 1, True)  # [text x n, "" x n, "" x n], the pipeline's order
    pixels = pipe.image_processor.preprocess(image)
    pipe.scheduler.set_timesteps(num_inference_steps, device=device)
    timesteps = pipe.scheduler.timesteps
    image_latents = pipe.prepare_image_latents(pixels, n, 1, embeds.dtype, device, True)
    height, width = (side * pipe.vae_scale_factor for side in image_latents.shape[-2:])
    latents = pipe.prepare_latents(n, pipe.vae.config.latent_channels, height, width, embeds.dtype, device,
                                   generator)
    step_kwargs = pipe.prepare_extra_step_kwargs(generator, 0.0)
    # float32 scales: 7.3 stays 7.3 in an fp16 / bf16 run, as the pipeline's Python float does
    text_scale = torch.tensor(guidance_scale, device=device, dtype=torch.float32).view(n, 1, 1, 1)
    image_scale = torch.tensor(image_guidance_scale, device=device, dtype=torch.float32).view(n, 1, 1, 1)
    pipe._num_timesteps = len(timesteps)
    for i, t in enumerate(timesteps):
        model_input = pipe.scheduler.scale_model_input(torch.cat([latents] * 3), t)
        model_input = torch.cat([model_input, image_latents], dim=1)
        noise = pipe.unet(model_input, t, encoder_hidden_states=embeds, return_dict=False)[0]
        text, img, uncond = noise.chunk(3)
        noise = (uncond + text_scale * (text - img) + image_scale * (img - uncond)).to(latents.dtype)
        latents = pipe.scheduler.step(noise, t, latents, **step_kwargs, return_dict=False)[0]
        if callback_on_step_end is not None:
            callback_on_step_end(pipe, i, t, {})
    decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
    decoded, nsfw = pipe.run_safety_checker(decoded, device, embeds.dtype)
    keep = [True] * n if nsfw is None else [not flagged for flagged in nsfw]
    images = pipe.image_processor.postprocess(decoded, output_type="pil", do_denormalize=keep)
    pipe.maybe_free_model_hooks()
    return images
