"""Qwen-Image-Edit: an instruction editor (20 B MMDiT, Qwen2.5-VL text encoder), ``qwen-edit``.

The loaded pipeline is ``QwenImageEditPipeline`` (Qwen/Qwen-Image-Edit) or
``QwenImageEditPlusPipeline`` (Qwen-Image-Edit-2509 / 2511, whose prompt names "Picture 1"); with
``inpaint`` the same components run as ``QwenImageEditInpaintPipeline`` (``from_pipe``: no second copy
of the weights), which keeps the latents outside the mask on the input's path at ``strength``.
Either way :mod:`tools.edit` composites the result over the untouched original inside the mask.

Knobs: ``num_inference_steps``; ``true_cfg_scale`` (Qwen's real classifier-free guidance against
``negative_prompt``; at 1 or below there is one transformer pass per step, above it two); ``strength``
for the inpaint pipeline. The pipelines resize their input to a 1024 x 1024 area (their native size);
``area`` changes that area (tests on tiny models, smaller GPUs) by scaling the size the pipeline
module computes, under a lock because it is module state.
"""

from __future__ import annotations

import importlib
import threading
from contextlib import contextmanager
from typing import Iterator, Optional

import numpy as np
import torch
from PIL import Image

from tools.editors import EditorOutput, ProgressFn, inpaint_variant, pipeline_progress

NATIVE_AREA = 1024 * 1024
"""The working area the Qwen-Image-Edit pipelines resize to."""

NEGATIVE_PROMPT = " "
"""Qwen's own examples use a single space as the negative prompt for true CFG."""

_MODULES = ("pipeline_qwenimage_edit", "pipeline_qwenimage_edit_plus", "pipeline_qwenimage_edit_inpaint")
_area_lock = threading.Lock()


@contextmanager
def working_area(area: int) -> Iterator[None]:
    """Make the Qwen-Image-Edit pipelines work at ``area`` pixels instead of 1024 x 1024 (a no-op at
    the native area). Their ``calculate_dimensions(target_area, ratio)`` is wrapped to scale every
    target area (the output's and Edit Plus's 384 x 384 condition image alike) by ``area / 1024**2``."""
    if area == NATIVE_AREA:
        yield
        return
    scale = area / NATIVE_AREA
    with _area_lock:
        modules = [importlib.import_module(f"diffusers.pipelines.qwenimage.{m}") for m in _MODULES]
        originals = [m.calculate_dimensions for m in modules]
        try:
            for module, original in zip(modules, originals):
                module.calculate_dimensions = (lambda target, ratio, f=original: f(target * scale, ratio))
            yield
        finally:
            for module, original in zip(modules, originals):
                module.calculate_dimensions = original


class QwenEditEditor:
    """Instruction editing on a loaded Qwen-Image-Edit (or Edit Plus) pipeline."""

    def __init__(self, pipe):
        self.pipe = pipe

    @torch.no_grad()
    def __call__(
        self,
        image: Image.Image,
        mask: np.ndarray,
        instruction: str,
        *,
        num_inference_steps: int = 20,
        true_cfg_scale: float = 4.0,
        negative_prompt: str = NEGATIVE_PROMPT,
        inpaint: bool = False,
        strength: float = 1.0,
        area: int = NATIVE_AREA,
        generator: Optional[torch.Generator] = None,
        progress: Optional[ProgressFn] = None,
        guidance_scale: Optional[float] = None,
    ) -> EditorOutput:
        """Edit ``image`` as ``instruction`` says (the region is kept by the composite).

        Args:
            image (`PIL.Image.Image`): the RGB crop at the work size (sides multiples of 16).
            mask (`np.ndarray`): bool ``(height, width)`` work-size mask (dilated); the inpaint
                pipeline repaints only there.
            instruction (`str`): the edit, e.g. "make the cat red".
            num_inference_steps (`int`): denoising steps.
            true_cfg_scale (`float`): Qwen's true classifier-free guidance (> 1: two passes a step).
            negative_prompt (`str`): what true CFG steers away from.
            inpaint (`bool`): run ``QwenImageEditInpaintPipeline`` inside ``mask`` at ``strength``.
            strength (`float`): the inpaint pipeline's strength in ``(0, 1]``.
            area (`int`): working area in pixels (1024 x 1024 natively).
            generator (`torch.Generator`): the seeded generator.
            progress (`Callable[[int, int], None]`): called after every step (raises to stop).
            guidance_scale (`float`): unused by Qwen-Image-Edit (no distilled guidance); accepted so
                the call matches the other editors.

        Returns:
            `EditorOutput`: the edited image at ``image.size``.
        """
        width, height = image.size
        common = dict(prompt=instruction, negative_prompt=negative_prompt, true_cfg_scale=true_cfg_scale,
                      num_inference_steps=num_inference_steps, generator=generator, output_type="pil",
                      callback_on_step_end=pipeline_progress(progress))
        pipe = self.pipe
        with working_area(area):
            if inpaint:
                pipe = inpaint_variant(self.pipe, "QwenImageEditInpaintPipeline")
                mask_image = Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255, "L")
                edited = pipe(image=image, mask_image=mask_image, strength=strength, **common).images[0]
            else:
                edited = pipe(image=image, height=height, width=width, **common).images[0]
        if edited.size != image.size:
            edited = edited.resize(image.size, Image.Resampling.LANCZOS)
        info = {"pipeline": type(pipe).__name__, "true_cfg_scale": true_cfg_scale,
                "denoising_steps": int(getattr(pipe, "num_timesteps", num_inference_steps)),
                "scheduler": type(pipe.scheduler).__name__, "area": area}
        if inpaint:
            info["strength"] = strength
        return EditorOutput(edited, info)


__all__ = ["NATIVE_AREA", "QwenEditEditor", "working_area"]
