"""The edit tool: run one of the diffusion editors on a photo and return it at full size.

``Editor(registry, settings).edit(image, mask, request, progress)`` fills the request's
defaults from the settings, checks it, runs the editor at the work size (long side at most
``settings.max_side``, sides multiples of 8, aspect kept: never a forced square) and brings the
result back to the input's size. Masked editors see the mask resized to the work size and grown
by ``settings.mask_dilate``; their result is composited over the original with a feathered
alpha that is exactly 0 outside that region, so every pixel outside it is bit-identical to
the input.

=================  ==================  ======================================================
editor             pipeline (role)     algorithm (see ``tools.editors.<module>``)
=================  ==================  ======================================================
``ip2p``           ``ip2p``            InstructPix2Pix on the whole image
``ip2p-composite`` ``ip2p``            InstructPix2Pix (optionally on the black-masked input),
                                       then the masked region pasted over the original
``diffedit``       ``sd``              DDIM inversion to the encoding ratio, mask-guided DDIM
``regionwise``     ``ip2p``            R-SIE RwDP: the region from independent noise, the
                                       background on the input's reconstruction path
``inpaint``        ``inpaint``         Stable Diffusion inpainting inside the mask
=================  ==================  ======================================================
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from typing import Any, Callable, Optional

import numpy as np
import torch
from PIL import Image

from tools.config import Settings
from tools.editors import EditorOutput, edit_region
from tools.images import composite, to_work, work_size
from tools.models import ModelRegistry
from tools.types import EDITORS, MASKED_EDITORS, MAX_TEXT, CancelFlag, Cancelled, EditRequest, EditResult, LocaleditError

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


GUIDANCE_RANGE = {"guidance_scale": (0.0, 50.0), "image_guidance_scale": (0.0, 50.0)}
"""The accepted range of each guidance knob."""

ROLES = {"ip2p": "ip2p", "ip2p-composite": "ip2p", "diffedit": "sd", "regionwise": "ip2p", "inpaint": "inpaint"}
"""The model role (``ModelRegistry.get``) each editor's pipeline is loaded as."""


def resolve_request(request: EditRequest, settings: Settings) -> EditRequest:
    """A copy of ``request`` with every ``None`` knob set from the settings, checked.

    ``strength`` defaults to ``settings.encoding_ratio`` for diffedit, to
    ``settings.regionwise_encoding_ratio`` (1: every step, as R-SIE) for regionwise and to 1.0 for inpaint; it stays None for the InstructPix2Pix editors, which do not use it.
    ``max_side`` defaults to ``settings.max_side``. Raises :class:`LocaleditError` for an
    unknown editor or a value out of range (NaN and infinity included), so a bad request
    is refused before any model runs.
    """
    s = settings
    if request.editor not in EDITORS:
        raise LocaleditError(f"Unknown editor '{request.editor}'; the editors are {', '.join(EDITORS)}.")
    strength = request.strength
    if strength is None and request.editor == "diffedit":
        strength = s.encoding_ratio
    elif strength is None and request.editor == "regionwise":  # R-SIE starts at T (sec. 4.1, eq. 6)
        strength = s.regionwise_encoding_ratio
    elif strength is None and request.editor == "inpaint":
        strength = 1.0
    r = replace(
        request,
        seed=s.seed if request.seed is None else int(request.seed),
        steps=s.steps if request.steps is None else int(request.steps),
        guidance_scale=s.guidance_scale if request.guidance_scale is None else float(request.guidance_scale),
        image_guidance_scale=(s.image_guidance_scale if request.image_guidance_scale is None
                              else float(request.image_guidance_scale)),
        strength=None if strength is None else float(strength),
        black_mask=s.black_mask_input if request.black_mask is None else bool(request.black_mask),
        max_side=s.max_side if request.max_side is None else int(request.max_side),
    )
    for name in ("instruction", "source_caption", "target_caption"):
        if len(getattr(r, name)) > MAX_TEXT:
            raise LocaleditError(f"The {name.replace('_', ' ')} is longer than {MAX_TEXT} characters.")
    for name, (lo, hi) in GUIDANCE_RANGE.items():
        value = getattr(r, name)
        if not (math.isfinite(value) and lo <= value <= hi):
            raise LocaleditError(f"The {name.replace('_', ' ')} must be a number from {lo:g} to {hi:g}, "
                                 f"not {value}.")
    if not 64 <= r.max_side <= 2048:
        raise LocaleditError(f"The long side to work at must be between 64 and 2048 pixels, not {r.max_side}.")
    if not 1 <= r.steps <= 1000:
        raise LocaleditError(f"The number of steps must be between 1 and 1000, not {r.steps}.")
    if r.strength is not None and not (math.isfinite(r.strength) and 0.0 < r.strength <= 1.0):
        raise LocaleditError(f"The strength (encoding ratio) must be above 0 and at most 1, not {r.strength}.")
    if r.editor == "inpaint" and int(r.steps * r.strength) < 1:  # diffusers would run no step and fail
        raise LocaleditError(f"An inpaint strength of {r.strength:g} with {r.steps} steps runs no denoising "
                             f"step; use a strength of at least {1 / r.steps:.3g} or more steps.")
    if not 0 <= r.seed < 2**63:
        raise LocaleditError(f"The seed must be a non-negative integer below 2**63, not {r.seed}.")
    return r


class Editor:
    """Runs :class:`EditRequest` s on the registry's diffusion pipelines (loaded on first use)."""

    def __init__(self, registry: ModelRegistry, settings: Settings):
        self.registry = registry
        self.settings = settings

    # ------------------------------------------------------------------ request

    def resolve(self, request: EditRequest) -> EditRequest:
        """:func:`resolve_request` with this editor's settings."""
        return resolve_request(request, self.settings)

    def check_mask(self, image: Image.Image, mask: Optional[np.ndarray], editor: str) -> Optional[np.ndarray]:
        """The mask as bool ``(height, width)`` of the image, or a :class:`LocaleditError`."""
        if mask is None:
            if editor in MASKED_EDITORS:
                raise LocaleditError(f"The {editor} editor edits only a region and needs a mask of it.")
            return None
        mask = np.asarray(mask)
        w, h = image.size
        if mask.shape != (h, w):
            raise LocaleditError(f"The mask is {mask.shape[1] if mask.ndim > 1 else '?'}x{mask.shape[0]} "
                                 f"but the image is {w}x{h}, so they do not line up.")
        mask = mask.astype(bool)
        if editor in MASKED_EDITORS and not mask.any():
            raise LocaleditError(f"The mask is empty, so the {editor} editor has nothing to edit.")
        return mask

    # ------------------------------------------------------------------ edit

    def edit(self, image: Image.Image, mask: Optional[np.ndarray], request: EditRequest,
             progress: Optional[ProgressFn] = None, cancel: Optional[CancelFlag] = None) -> EditResult:
        """Run ``request.editor`` on ``image`` and return the result at ``image.size``.

        Masked editors change only pixels inside the mask grown by ``settings.mask_dilate``
        work pixels (see :func:`tools.editors.edit_region`); ``ip2p`` ignores the mask.
        ``progress(step, total)`` is called after every diffusion step. Once ``cancel`` is set
        the edit raises :class:`~tools.types.Cancelled` at the next step (checked before the
        first one too). The same request on the same inputs gives the same pixels.
        """
        started = time.perf_counter()
        progress = cancellable(progress, cancel)
        req = self.resolve(request)
        mask = self.check_mask(image, mask, req.editor)
        original = image if image.mode == "RGB" else image.convert("RGB")
        work = work_size(original.size, req.max_side)
        work_image = to_work(original, req.max_side)

        info: dict[str, Any] = {
            "editor": req.editor, "input_size": list(original.size), "work_size": list(work),
            "steps": req.steps, "seed": req.seed, "strength": req.strength,
            "guidance_scale": req.guidance_scale, "max_side": req.max_side,
            "mask_area": int(mask.sum()) if mask is not None else 0,
        }
        work_mask = full_mask = None
        if req.editor in MASKED_EDITORS:
            work_mask, full_mask = edit_region(mask, original.size, work, self.settings.mask_dilate)
            info.update(edit_area=int(full_mask.sum()), mask_dilate=self.settings.mask_dilate,
                        feather=self.settings.feather)
        elif mask is not None:
            info["note"] = "ip2p edits the whole image; the mask was ignored."

        generator = torch.Generator(device=self.registry.device).manual_seed(req.seed)
        if cancel is not None and cancel.is_set():
            raise Cancelled("The edit was stopped before it started.")
        try:
            out = self._run(req, work_image, work_mask, generator, progress)
        except torch.cuda.OutOfMemoryError as err:
            raise LocaleditError(f"The GPU ran out of memory editing at {work[0]}x{work[1]}; "
                                 f"lower LOCALEDIT_MAX_SIDE and try again.") from err
        info.update(out.info)

        # ip2p-composite on the unmasked whole image ran plain InstructPix2Pix: the judge's baseline, for free
        free = req.editor == "ip2p-composite" and not info.get("black_mask")
        whole = None
        if full_mask is None or free:
            whole = out.image if out.image.size == original.size else \
                out.image.resize(original.size, Image.Resampling.LANCZOS)
        edited = whole if full_mask is None else composite(original, out.image, full_mask, self.settings.feather)
        whole = whole if free else None
        seconds = time.perf_counter() - started
        log.info("edit %s at %sx%s, %s steps: %.2fs", req.editor, work[0], work[1], req.steps, seconds)
        return EditResult(image=edited, editor=req.editor, seconds=seconds, info=info, region=full_mask, whole=whole)

    def _pipe(self, editor: str):
        return self.registry.get(ROLES[editor]).model

    def _run(self, req: EditRequest, image: Image.Image, mask: Optional[np.ndarray],
             generator: torch.Generator, progress: Optional[ProgressFn]) -> EditorOutput:
        """Dispatch to the editor module (imported here: each pulls in diffusers)."""
        common = dict(num_inference_steps=req.steps, guidance_scale=req.guidance_scale, progress=progress)
        if req.editor in ("ip2p", "ip2p-composite"):
            from tools.editors.ip2p import InstructPix2PixEditor

            black = bool(req.black_mask) and req.editor == "ip2p-composite"
            out = InstructPix2PixEditor(self._pipe(req.editor))(
                image, req.instruction, mask=mask, black_mask=black,
                image_guidance_scale=req.image_guidance_scale, generator=generator, **common)
            out.info.update(black_mask=black, image_guidance_scale=req.image_guidance_scale)
            return out
        if req.editor == "diffedit":
            from tools.editors.diffedit import DiffEditEditor

            return DiffEditEditor(self._pipe("diffedit"))(
                image, mask, req.source_caption, req.target_caption, encoding_ratio=req.strength, **common)
        if req.editor == "regionwise":
            from tools.editors.regionwise import RegionwiseEditor

            out = RegionwiseEditor(self._pipe("regionwise"))(
                image, mask, req.instruction, strength=req.strength,
                image_guidance_scale=req.image_guidance_scale, fit_alpha=self.settings.regionwise_fit_alpha,
                alpha_iters=self.settings.regionwise_alpha_iters, generator=generator, **common)
            out.info["image_guidance_scale"] = req.image_guidance_scale
            return out
        from tools.editors.inpaint import InpaintEditor, inpaint_prompts

        prompt, negative = inpaint_prompts(req.instruction, req.source_caption, req.target_caption)
        return InpaintEditor(self._pipe("inpaint"))(
            image, mask, prompt, negative_prompt=negative, strength=req.strength, generator=generator, **common)


def cancellable(progress: Optional[ProgressFn], cancel: Optional[CancelFlag]) -> Optional[ProgressFn]:
    """``progress`` that first raises :class:`~tools.types.Cancelled` once ``cancel`` is set.

    Every editor calls its progress function after every diffusion step (the diffusers step
    callback, or its own loop), so this is where a Stop reaches the denoising loop.
    """
    if cancel is None:
        return progress

    def step(i: int, total: int) -> None:
        if cancel.is_set():
            raise Cancelled(f"The edit was stopped at step {i} of {total}.")
        if progress is not None:
            progress(i, total)

    return step


__all__ = ["Editor", "ROLES", "cancellable"]
