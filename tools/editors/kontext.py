"""FLUX.1 Kontext [dev]: an in-context instruction editor (12 B rectified-flow transformer), ``kontext``.

The loaded pipeline is ``FluxKontextPipeline``; with ``inpaint`` the same components run as
``FluxKontextInpaintPipeline`` (``from_pipe``, no second copy of the weights), which repaints only
inside the mask at ``strength``. :mod:`tools.edit` composites the result over the untouched original.

Knobs: ``num_inference_steps`` (28 in BFL's examples); ``guidance_scale``: FLUX's distilled guidance,
an input of the transformer (one pass a step; 2.5 in BFL's examples); ``true_cfg_scale`` > 1 with a
``negative_prompt`` adds real classifier-free guidance (two passes a step). The work size is given
(``_auto_resize`` off), so the crop's size from :mod:`tools.crop` is the size it works at.

The weights are under the FLUX.1 [dev] Non-Commercial License: ``localedit models download kontext``
says so before it fetches them.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from PIL import Image

from tools.editors import EditorOutput, ProgressFn, inpaint_variant, pipeline_progress

NATIVE_AREA = 1024 * 1024
"""FLUX.1 Kontext's preferred working area (its ``max_area`` default)."""


class KontextEditor:
    """Instruction editing on a loaded ``FluxKontextPipeline``."""

    def __init__(self, pipe):
        self.pipe = pipe

    INPAINT = "FluxKontextInpaintPipeline"
    """The inpaint pipeline built on the same components."""

    def size_kwargs(self, width: int, height: int) -> dict:
        """What makes the pipeline work at exactly ``width`` x ``height`` (no resize of its own)."""
        return {"height": height, "width": width, "max_area": width * height, "_auto_resize": False}

    @torch.no_grad()
    def __call__(
        self,
        image: Image.Image,
        mask: np.ndarray,
        instruction: str,
        *,
        num_inference_steps: int = 28,
        guidance_scale: float = 2.5,
        true_cfg_scale: float = 1.0,
        negative_prompt: str = "",
        inpaint: bool = False,
        strength: float = 1.0,
        generator: Optional[torch.Generator] = None,
        progress: Optional[ProgressFn] = None,
    ) -> EditorOutput:
        """Edit ``image`` as ``instruction`` says (the region is kept by the composite).

        Args:
            image (`PIL.Image.Image`): the RGB crop at the work size (sides multiples of 16).
            mask (`np.ndarray`): bool ``(height, width)`` work-size mask (dilated); the inpaint
                pipeline repaints only there.
            instruction (`str`): the edit, e.g. "make the cat red".
            num_inference_steps (`int`): denoising steps.
            guidance_scale (`float`): FLUX's distilled guidance (a transformer input).
            true_cfg_scale (`float`): real classifier-free guidance against ``negative_prompt``
                (used only above 1 and with a negative prompt).
            negative_prompt (`str`): what true CFG steers away from.
            inpaint (`bool`): run ``FluxKontextInpaintPipeline`` inside ``mask`` at ``strength``.
            strength (`float`): the inpaint pipeline's strength in ``(0, 1]``.
            generator (`torch.Generator`): the seeded generator.
            progress (`Callable[[int, int], None]`): called after every step (raises to stop).

        Returns:
            `EditorOutput`: the edited image at ``image.size``.
        """
        width, height = image.size
        common = dict(prompt=instruction, guidance_scale=guidance_scale, **self.size_kwargs(width, height),
                      num_inference_steps=num_inference_steps, generator=generator, output_type="pil",
                      callback_on_step_end=pipeline_progress(progress))
        if true_cfg_scale > 1 and negative_prompt:
            common.update(true_cfg_scale=true_cfg_scale, negative_prompt=negative_prompt)
        pipe = self.pipe
        if inpaint:
            pipe = inpaint_variant(self.pipe, self.INPAINT)
            mask_image = Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255, "L")
            edited = pipe(image=image, mask_image=mask_image, strength=strength, **common).images[0]
        else:
            edited = pipe(image=image, **common).images[0]
        if edited.size != image.size:
            edited = edited.resize(image.size, Image.Resampling.LANCZOS)
        info = {"pipeline": type(pipe).__name__, "guidance_scale": guidance_scale,
                "true_cfg_scale": common.get("true_cfg_scale", 1.0),
                "denoising_steps": int(getattr(pipe, "num_timesteps", num_inference_steps)),
                "scheduler": type(pipe.scheduler).__name__}
        if inpaint:
            info["strength"] = strength
        return EditorOutput(edited, info)


__all__ = ["NATIVE_AREA", "KontextEditor"]
