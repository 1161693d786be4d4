"""FLUX.2 [klein] 4B: a step-distilled editor and generator (4 B transformer, Qwen3-4B text encoder), ``klein``.

``Flux2KleinPipeline`` takes the crop as its reference image and the instruction as its prompt; with
``inpaint`` the same components run as ``Flux2KleinInpaintPipeline`` (``from_pipe``) inside the mask at
``strength``. :mod:`tools.edit` composites the result over the untouched original. The call is
:class:`tools.editors.kontext.KontextEditor`'s (the same FLUX family contract); only the working size is
given as ``height`` / ``width`` (klein has no ``max_area``), and ``guidance_scale`` is real classifier-free
guidance for the base models and ignored by the step-distilled 4 B one (4 steps in BFL's examples).

The 4 B weights are Apache-2.0 (Black Forest Labs' model table); the 9 B ones are under the FLUX
Non-Commercial License and are not the default.
"""

from __future__ import annotations

from tools.editors.kontext import KontextEditor

NATIVE_AREA = 1024 * 1024
"""FLUX.2 [klein]'s working area."""


class KleinEditor(KontextEditor):
    """Instruction editing on a loaded ``Flux2KleinPipeline``."""

    INPAINT = "Flux2KleinInpaintPipeline"

    def size_kwargs(self, width: int, height: int) -> dict:
        return {"height": height, "width": width}


__all__ = ["NATIVE_AREA", "KleinEditor"]
