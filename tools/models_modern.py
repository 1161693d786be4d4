"""The newer models' roles (issue 20): Qwen-Image-Edit, FLUX.1 Kontext [dev], SAM 3 and SAM 2.1.

:mod:`tools.models` reads these tables; the loaders are the same ones (``from_pretrained`` with
``local_files_only``, safetensors only, random weights for a marked folder). The two editors are
diffusers pipelines whose weight-holding components differ from Stable Diffusion's (a transformer
instead of a UNet, one or two large text encoders), so they have their own component table
(:data:`MODERN_MODELS`) and a loader that checks the folder's ``model_index.json`` names a pipeline
class the editor knows (:data:`MODERN_PIPELINES`). SAM 3 and SAM 2.1 are ordinary transformers
models with processors (:data:`MODERN_TRANSFORMERS`).

Licences (each model card's licence field): Qwen-Image-Edit Apache-2.0; FLUX.1 Kontext [dev] the
FLUX.1 [dev] Non-Commercial License (said before download); FLUX.2 [klein] 4B Apache-2.0 (the 9 B
models are non-commercial and not used); SAM 3 Meta's SAM License; SAM 2.1 Apache-2.0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

MODERN_PIPELINES: dict[str, tuple[str, ...]] = {
    "qwen-edit": ("QwenImageEditPlusPipeline", "QwenImageEditPipeline"),
    "kontext": ("FluxKontextPipeline",),
    "klein": ("Flux2KleinPipeline",),
}
"""The diffusers pipeline classes a role's ``model_index.json`` may name (the first: the default's)."""

MODERN_MODELS: dict[str, dict[str, tuple[str, str]]] = {
    "qwen-edit": {"transformer": ("diffusers", "QwenImageTransformer2DModel"),
                  "vae": ("diffusers", "AutoencoderKLQwenImage"),
                  "text_encoder": ("transformers", "Qwen2_5_VLForConditionalGeneration")},
    "kontext": {"transformer": ("diffusers", "FluxTransformer2DModel"), "vae": ("diffusers", "AutoencoderKL"),
                "text_encoder": ("transformers", "CLIPTextModel"),
                "text_encoder_2": ("transformers", "T5EncoderModel")},
    "klein": {"transformer": ("diffusers", "Flux2Transformer2DModel"), "vae": ("diffusers", "AutoencoderKLFlux2"),
              "text_encoder": ("transformers", "Qwen3ForCausalLM")},
}
"""The weight-holding components of each modern pipeline: ``{folder: (library, class)}``."""

MODERN_WHOLE_FOLDERS: dict[str, tuple[str, ...]] = {
    "qwen-edit": ("scheduler", "tokenizer", "processor"),
    "kontext": ("scheduler", "tokenizer", "tokenizer_2"),
    "klein": ("scheduler", "tokenizer"),
}
"""Small folders a modern pipeline reads whole (scheduler config, tokenizers, processor)."""

MODERN_TRANSFORMERS: dict[str, tuple[str, str]] = {
    "sam3": ("Sam3Model", "Sam3Processor"),
    "sam2": ("Sam2Model", "Sam2Processor"),
}
"""Roles loaded as one transformers model plus its processor."""

MODERN_ROLES = tuple(MODERN_PIPELINES)
"""The modern diffusion roles (editors)."""

LICENCES: dict[str, tuple[str, bool]] = {
    "caption": ("MIT", True),
    "detector": ("Apache-2.0", True),
    "sam": ("Apache-2.0", True),
    "ip2p": ("MIT", True),
    "sd": ("CreativeML OpenRAIL-M", True),
    "inpaint": ("CreativeML OpenRAIL-M", True),
    "clip": ("MIT", True),
    "taesd": ("MIT", True),
    "qwen-edit": ("Apache-2.0", True),
    "kontext": ("FLUX.1 [dev] Non-Commercial License", False),
    "klein": ("Apache-2.0", True),
    "sam3": ("SAM License (Meta; gated on the Hub)", True),
    "sam2": ("Apache-2.0", True),
}
"""Per role: the licence of its default weights (the model card's licence field) and whether it
allows commercial use."""


def default_guidance(editor: str, settings: Any) -> Optional[float]:
    """The guidance a modern editor runs with when a request gives none: Qwen's true CFG
    (``qwen_true_cfg``), FLUX.1 Kontext's distilled guidance (``kontext_guidance``), klein's CFG
    (``klein_guidance``); None for the other editors (``settings.guidance_scale``). Torch-free, so
    the judge can ask it."""
    return {"qwen-edit": settings.qwen_true_cfg, "kontext": settings.kontext_guidance,
            "klein": settings.klein_guidance}.get(editor)


def pipeline_class(role: str, folder: Path) -> str:
    """The pipeline class ``folder``'s ``model_index.json`` names, checked against the role's."""
    from tools.types import LocaleditError

    name = json.loads((Path(folder) / "model_index.json").read_text()).get("_class_name", "")
    if name not in MODERN_PIPELINES[role]:
        raise LocaleditError(f"The {role} model folder {folder} holds a {name or 'unknown'} pipeline; "
                             f"localedit runs {' or '.join(MODERN_PIPELINES[role])} there.")
    return name


def modern_dtype(settings: Any, device: Any, dtype: Any) -> Any:
    """The dtype a modern pipeline runs in: bfloat16 on CUDA when the dtype is 'auto' (the
    published weights are bf16, and Qwen-Image's activations overflow fp16), else ``dtype``."""
    import torch

    if settings.dtype == "auto" and getattr(device, "type", str(device)) == "cuda":
        return torch.bfloat16
    return dtype


def non_commercial_notice(role: str) -> str:
    """The sentence said before downloading weights whose licence forbids commercial use ('' if none)."""
    licence, commercial = LICENCES.get(role, ("", True))
    if commercial:
        return ""
    return (f"Note: the {role} weights are under the {licence}: you may not use them, or what they make, "
            f"commercially. Read the licence on the model card before you use them.")


__all__ = ["LICENCES", "default_guidance", "MODERN_MODELS", "MODERN_PIPELINES", "MODERN_ROLES", "MODERN_TRANSFORMERS",
           "MODERN_WHOLE_FOLDERS", "modern_dtype", "non_commercial_notice", "pipeline_class"]
