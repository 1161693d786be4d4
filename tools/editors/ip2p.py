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
