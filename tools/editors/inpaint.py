"""Stable Diffusion inpainting inside the (dilated) mask: ZONE's remove and add actions.

The inpainting UNet sees the noisy latents, the mask and the masked-out image (9 channels) and
repaints only the masked region. For a removal the prompt describes what should be there
instead (the background); for an addition it describes the new object.
"""

from __future__ import annotations

import re
from typing import Optional

import numpy as np
import torch
from PIL import Image

from tools.editors import EditorOutput, ProgressFn, pipeline_progress

REMOVE_PROMPT = "background, empty scene"
"""What an emptied region should show when no target caption says otherwise."""

_REMOVAL = re.compile(r"^\s*(please\s+)?(remove|delete|erase|get rid of|take (out|away))\b", re.I)


def inpaint_prompts(instruction: str, source_caption: str, target_caption: str) -> tuple[str, str]:
    """``(prompt, negative_prompt)`` for inpainting.

    The target caption wins when given. Otherwise a removal instruction ("remove the lamp")
    becomes :data:`REMOVE_PROMPT` with the source caption (the object) as the negative prompt,
    and any other instruction is used as the prompt itself.
    """
    removal = bool(_REMOVAL.match(instruction or ""))
    negative = source_caption if removal else ""
    if target_caption.strip():
        return target_caption, negative
    if removal or not instruction.strip():
        return REMOVE_PROMPT, negative
    return instruction, ""


class InpaintEditor:
    """Masked repainting on a loaded ``StableDiffusionInpaintPipeline``."""

    def __init__(self, pipe):
        self.pipe = pipe

    @torch.no_grad()
    def __call__(
        self,
        image: Image.Image,
        mask: np.ndarray,
        prompt: str,
        *,
        negative_prompt: str = "",
        strength: float = 1.0,
        num_inference_steps: int = 20,
        guidance_scale: float = 7.5,
        generator: Optional[torch.Generator] = None,
        progress: Optional[ProgressFn] = None,
    ) -> EditorOutput:
        """Repaint the masked region of ``image`` to show ``prompt``.

        Args:
            image (`PIL.Image.Image`):
                The RGB image at the work size (sides multiples of 8).
            mask (`np.ndarray`):
                Bool ``(height, width)`` work-size mask of the region to repaint (already dilated).
            prompt (`str`):
                What the region should show ("background, empty scene", "a vase of flowers").
            negative_prompt (`str`, defaults to ""):
                What it should not show (for a removal: the removed object).
            strength (`float`, defaults to 1.0):
                In ``(0, 1]``; 1 repaints the region from pure noise, lower keeps some of it.
            num_inference_steps (`int`, defaults to 20):
                Steps of the full schedule; ``int(num_inference_steps * strength)`` run. When that
                would be zero the schedule is lengthened so that one step runs.
            guidance_scale (`float`, defaults to 7.5):
                Classifier-free guidance on ``prompt``.
            generator (`torch.Generator`, *optional*):
                The seeded generator that makes the result reproducible.
            progress (`Callable[[int, int], None]`, *optional*):
                Called as ``progress(step, total)`` after every denoising step.

        Returns:
            `EditorOutput`: the repainted image at the work size.
        """
        steps = num_inference_steps
        if int(steps * strength) < 1:  # the pipeline refuses to run zero steps
            steps = int(np.ceil(1.0 / strength))
        width, height = image.size
        mask_image = Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255, "L")  # white = repaint
        edited = self.pipe(
            prompt=prompt,
            negative_prompt=negative_prompt or None,
            image=image,
            mask_image=mask_image,
            height=height,
            width=width,
            strength=strength,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            generator=generator,
            output_type="pil",
            callback_on_step_end=pipeline_progress(progress),
        ).images[0]
        info = {"prompt": prompt, "negative_prompt": negative_prompt,
                "denoising_steps": int(getattr(self.pipe, "num_timesteps", steps)),
                "scheduler": type(self.pipe.scheduler).__name__}
        if steps != num_inference_steps:
            info["steps_raised_to"] = steps
        return EditorOutput(edited, info)
