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
``qwen-edit``      ``qwen-edit``       Qwen-Image-Edit on the region's crop (1024 x 1024 area)
``kontext``        ``kontext``         FLUX.1 Kontext [dev] on the region's crop
``klein``          ``klein``           FLUX.2 [klein] 4B on the region's crop
=================  ==================  ======================================================

Masked editors may work on a crop around the region (:mod:`tools.crop`, ``settings.crop``): the
editor sees the region plus context at its native size, and the crop is pasted back.
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
from tools.crop import Crop, area_size, paste_back, plan_crop, region_box
from tools.editors import EditorOutput, edit_region
from tools.images import composite, to_work, work_size
from tools.models import ModelRegistry
from tools.models_modern import default_guidance
from tools.types import EDITORS, MASKED_EDITORS, MAX_TEXT, CancelFlag, Cancelled, EditRequest, EditResult, LocaleditError

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]

MODERN_EDITORS = ("qwen-edit", "kontext", "klein")
"""The transformer editors of issue 20 (:mod:`tools.editors.qwen_edit`, :mod:`tools.editors.kontext`)."""


GUIDANCE_RANGE = {"guidance_scale": (0.0, 50.0), "image_guidance_scale": (0.0, 50.0)}
"""The accepted range of each guidance knob."""

ROLES = {"ip2p": "ip2p", "ip2p-composite": "ip2p", "diffedit": "sd", "regionwise": "ip2p", "inpaint": "inpaint",
         "qwen-edit": "qwen-edit", "kontext": "kontext", "klein": "klein"}
"""The model role (``ModelRegistry.get``) each editor's pipeline is loaded as."""


def resolve_request(request: EditRequest, settings: Settings) -> EditRequest:
    """A copy of ``request`` with every ``None`` knob set from the settings, checked.

    ``strength`` defaults to ``settings.encoding_ratio`` for diffedit, to
    ``settings.regionwise_encoding_ratio`` (1: every step, as R-SIE) for regionwise and to 1.0 for
    inpaint; it stays None for the InstructPix2Pix editors, which do not use it.
    ``max_side`` defaults to ``settings.max_side``; qwen-edit, kontext and klein always work at
    ``settings.modern_side`` (their native area, whatever the request's long side). Raises :class:`LocaleditError` for an
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
    elif strength is None and request.editor in MODERN_EDITORS and s.modern_inpaint:
        strength = 0.8
    guidance = request.guidance_scale
    if guidance is None:
        guidance = default_guidance(request.editor, s)
        guidance = s.guidance_scale if guidance is None else guidance
    r = replace(
        request,
        seed=s.seed if request.seed is None else int(request.seed),
        steps=s.steps if request.steps is None else int(request.steps),
        guidance_scale=float(guidance),
        image_guidance_scale=(s.image_guidance_scale if request.image_guidance_scale is None
                              else float(request.image_guidance_scale)),
        strength=None if strength is None else float(strength),
        black_mask=s.black_mask_input if request.black_mask is None else bool(request.black_mask),
        max_side=native_side(request.editor, s) if request.max_side is None or request.editor in MODERN_EDITORS
        else int(request.max_side),
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
    inpainting = r.editor == "inpaint" or (r.editor in MODERN_EDITORS and s.modern_inpaint)
    if inpainting and r.strength is not None and int(r.steps * r.strength) < 1:  # diffusers would run no step
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
        crop = self.crop_for(req, mask)
        view = original.crop(crop.box) if crop else original  # what the editor sees
        view_mask = mask[crop.box[1]:crop.box[3], crop.box[0]:crop.box[2]] if crop else mask
        work = crop.work if crop else self.work_for(req, view.size)
        work_image = view.resize(work, Image.Resampling.LANCZOS) if view.size != work else view.copy()

        info: dict[str, Any] = {
            "editor": req.editor, "input_size": list(original.size), "work_size": list(work),
            "steps": req.steps, "seed": req.seed, "strength": req.strength,
            "guidance_scale": req.guidance_scale, "max_side": req.max_side,
            "mask_area": int(mask.sum()) if mask is not None else 0,
        }
        work_mask = full_mask = None
        if req.editor in MASKED_EDITORS:
            work_mask, full_mask = edit_region(view_mask, view.size, work, self.settings.mask_dilate)
            info.update(edit_area=int(full_mask.sum()), mask_dilate=self.settings.mask_dilate,
                        feather=self.settings.feather)
            if crop:
                info["crop"] = crop.info(original.size, region_box(mask))
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

        # ip2p-composite on the unmasked, uncropped photo ran plain InstructPix2Pix: the judge's baseline, for free
        free = req.editor == "ip2p-composite" and not info.get("black_mask") and crop is None
        whole = None
        if full_mask is None or free:
            whole = out.image if out.image.size == original.size else \
                out.image.resize(original.size, Image.Resampling.LANCZOS)
        if full_mask is None:
            edited = whole
        else:
            edited = composite(view, out.image, full_mask, self.settings.feather)
            if crop:  # the crop's pixels outside the region are the original's: paste it back
                edited, full_mask = paste_back(original, edited, full_mask, crop)
        whole = whole if free else None
        seconds = time.perf_counter() - started
        log.info("edit %s at %sx%s, %s steps: %.2fs", req.editor, work[0], work[1], req.steps, seconds)
        return EditResult(image=edited, editor=req.editor, seconds=seconds, info=info, region=full_mask, whole=whole)

    def crop_for(self, req: EditRequest, mask: Optional[np.ndarray]) -> Optional[Crop]:
        """The crop around the region a masked editor sees (:func:`tools.crop.plan_crop`), or None:
        a global edit, cropping off for this editor (``settings.crop``), or a region too large to gain."""
        mode = self.settings.crop
        if mask is None or req.editor not in MASKED_EDITORS or mode == "off" or \
                (mode == "modern" and req.editor not in MODERN_EDITORS):
            return None
        crop = plan_crop(mask, req.max_side)
        if crop is not None and req.editor not in MODERN_EDITORS:  # SD editors: long side, not area
            crop = replace(crop, work=work_size(crop.size, req.max_side))
        return crop

    def work_for(self, req: EditRequest, size: tuple[int, int]) -> tuple[int, int]:
        """The work size of a whole photo: the native area for qwen-edit and kontext, else the long
        side ``req.max_side`` (:func:`tools.images.work_size`)."""
        if req.editor in MODERN_EDITORS:
            return area_size(size, req.max_side * req.max_side)
        return work_size(size, req.max_side)

    def _pipe(self, editor: str):
        return self.registry.get(ROLES[editor]).model

    def _run(self, req: EditRequest, image: Image.Image, mask: Optional[np.ndarray],
             generator: torch.Generator, progress: Optional[ProgressFn]) -> EditorOutput:
        """Dispatch to the editor module (imported here: each pulls in diffusers)."""
        common = dict(num_inference_steps=req.steps, guidance_scale=req.guidance_scale, progress=progress)
        if req.editor in MODERN_EDITORS:
            return self._run_modern(req, image, mask, generator, progress)
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

    def _run_modern(self, req: EditRequest, image: Image.Image, mask: np.ndarray, generator: torch.Generator,
                    progress: Optional[ProgressFn]) -> EditorOutput:
        """qwen-edit, kontext or klein on the work image (the crop), at its size; their inpaint pipelines with
        ``settings.modern_inpaint``. ``req.guidance_scale`` is Qwen's true CFG / FLUX's distilled guidance."""
        inpaint = self.settings.modern_inpaint
        common = dict(num_inference_steps=req.steps, inpaint=inpaint, strength=req.strength or 1.0,
                      generator=generator, progress=progress)
        if req.editor == "qwen-edit":
            from tools.editors.qwen_edit import QwenEditEditor

            return QwenEditEditor(self._pipe("qwen-edit"))(
                image, mask, req.instruction, true_cfg_scale=req.guidance_scale,
                area=image.size[0] * image.size[1], **common)
        if req.editor == "klein":
            from tools.editors.klein import KleinEditor as Flux
        else:
            from tools.editors.kontext import KontextEditor as Flux

        return Flux(self._pipe(req.editor))(image, mask, req.instruction, guidance_scale=req.guidance_scale, **common)


def native_side(editor: str, settings: Settings) -> int:
    """The side an editor works at by default: ``settings.modern_side`` (a square area) for qwen-edit
    and kontext, ``settings.max_side`` (the long side) for the Stable Diffusion editors."""
    return settings.modern_side if editor in MODERN_EDITORS else settings.max_side


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


__all__ = ["Editor", "MODERN_EDITORS", "ROLES", "cancellable", "native_side"]
