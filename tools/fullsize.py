"""Full-size random models: every role's real architecture from its published configuration.

``make_random(directory)`` (``localedit models make-random DIR [ROLES]``) writes one folder per role
in the layout of the real repositories: the published configurations (kept in the package as data,
:data:`CONFIGS`), the processors and schedulers, and stand-in tokenizers with the real vocabulary
sizes (:mod:`tools.vocab`). By default it writes no weights, only a marker
(:data:`tools.random_init.MARKER`): the registry then builds each module from its configuration on
the meta device and fills it at random when it loads (seconds, no disk), through the same loaders
as real weights. ``weights=True`` materialises the weights and saves them as safetensors (SAM: a
state-dict ``.pth``), as the real downloads are, in ``dtype`` (fp16 by default: 7.5 GB for BLIP-2
instead of 15 GB in fp32); those folders load exactly as downloaded ones do.

Compute does not depend on weight values, so these cost what the real models cost: time, memory
and parameter counts (SAM vit_b 93.7 M, GroundingDINO-base 233 M, InstructPix2Pix's UNet + VAE +
text encoder 1.07 B, BLIP-2 OPT-2.7b 3.74 B, CLIP ViT-L/14 428 M). Their outputs are noise.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional

import torch

from tools.random_init import MARKER, materialize
from tools.vocab import bert_tokenizer, clip_tokenizer, gpt2_tokenizer

CONFIGS = Path(__file__).with_name("public_configs")
"""The published configurations, one JSON file per architecture (package data)."""

CLIP_VOCAB, BERT_VOCAB, OPT_VOCAB = 49408, 30522, 50265
UNET_IN_CHANNELS = {"sd": 4, "ip2p": 8, "inpaint": 9}
"""SD-1.5's UNet takes the noisy latents; InstructPix2Pix adds the image latents (8), inpainting
the mask and the masked-image latents (9)."""
SAM_TYPES = ("vit_b", "vit_h")
PIPELINE_CLASSES = {"ip2p": "StableDiffusionInstructPix2PixPipeline", "sd": "StableDiffusionPipeline",
                    "inpaint": "StableDiffusionInpaintPipeline"}


@lru_cache(maxsize=None)
def _published(name: str) -> dict:
    data = json.loads((CONFIGS / f"{name}.json").read_text())
    return {k: v for k, v in data.items() if k != "_source"}


def public_config(name: str) -> dict:
    """A copy of the published configuration ``name`` (a file in :data:`CONFIGS`, without ``.json``)."""
    return json.loads(json.dumps(_published(name)))


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _image_processor(role: str):
    import transformers

    config = public_config("processors")[role]
    return getattr(transformers, config.pop("image_processor_type"))(**config)


# --- one layout per role ------------------------------------------------------------------------

def write_caption(out: Path) -> None:
    """BLIP-2 OPT-2.7b: ``config.json`` and a ``Blip2Processor`` (BLIP image processor, OPT-sized tokenizer)."""
    from transformers import Blip2Processor

    config = public_config("blip2-opt-2.7b")
    with tempfile.TemporaryDirectory() as tmp:
        tok = gpt2_tokenizer(Path(tmp), OPT_VOCAB)
        assert tok.convert_tokens_to_ids("<image>") == config["image_token_index"]
        Blip2Processor(image_processor=_image_processor("caption"), tokenizer=tok,
                       num_query_tokens=config["num_query_tokens"]).save_pretrained(out)
    _write_json(out / "config.json", config)


def write_detector(out: Path) -> None:
    """GroundingDINO-base: ``config.json`` and a ``GroundingDinoProcessor`` (800-1333 px, BERT-sized tokenizer)."""
    from transformers import GroundingDinoProcessor

    GroundingDinoProcessor(image_processor=_image_processor("detector"),
                           tokenizer=bert_tokenizer(BERT_VOCAB)).save_pretrained(out)
    _write_json(out / "config.json", public_config("grounding-dino-base"))


def write_clip(out: Path) -> None:
    """CLIP ViT-L/14: ``config.json`` and a ``CLIPProcessor`` (224 px, CLIP-sized tokenizer)."""
    from transformers import CLIPProcessor

    CLIPProcessor(image_processor=_image_processor("clip"), tokenizer=clip_tokenizer(CLIP_VOCAB)).save_pretrained(out)
    _write_json(out / "config.json", public_config("clip-vit-large-patch14"))


def _write_pipeline(role: str, out: Path) -> None:
    """A Stable Diffusion 1.5 pipeline folder: ``model_index.json`` and one folder per component
    (safety checker listed as in the real repositories, never written nor loaded)."""
    import diffusers

    scheduler = public_config("sd15-schedulers")[role]
    _write_json(out / "model_index.json", {
        "_class_name": PIPELINE_CLASSES[role], "_diffusers_version": diffusers.__version__,
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "requires_safety_checker": True, "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
        "scheduler": ["diffusers", scheduler["_class_name"]], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"]})
    _write_json(out / "unet" / "config.json", {**public_config("sd15-unet"), "in_channels": UNET_IN_CHANNELS[role]})
    _write_json(out / "vae" / "config.json", public_config("sd15-vae"))
    _write_json(out / "text_encoder" / "config.json", public_config("sd15-text-encoder"))
    _write_json(out / "scheduler" / "scheduler_config.json", scheduler)
    clip_tokenizer(CLIP_VOCAB).save_pretrained(out / "tokenizer")
    _image_processor("clip").save_pretrained(out / "feature_extractor")


def write_sam(out: Path) -> None:
    """Segment Anything: no configuration file; segment-anything's builders know ``vit_b`` and ``vit_h``."""
    out.mkdir(parents=True, exist_ok=True)


def write_taesd(out: Path) -> None:
    """TAESD: ``config.json`` of the ``AutoencoderTiny``."""
    _write_json(out / "config.json", public_config("taesd"))


LAYOUTS: dict[str, Callable[[Path], None]] = {
    "caption": write_caption, "detector": write_detector, "sam": write_sam,
    "ip2p": lambda out: _write_pipeline("ip2p", out), "sd": lambda out: _write_pipeline("sd", out),
    "inpaint": lambda out: _write_pipeline("inpaint", out), "clip": write_clip, "taesd": write_taesd,
}


def _modern_layout(role: str) -> Callable[[Path], None]:
    """A layout of :mod:`tools.fullsize_modern` (the issue-20 models), imported when it runs."""
    def write(out: Path) -> None:
        from tools.fullsize_modern import LAYOUTS as MODERN

        MODERN[role](out)

    return write


LAYOUTS.update({role: _modern_layout(role) for role in ("qwen-edit", "kontext", "klein", "sam3", "sam2")})


# --- weights: a marker, or materialised files --------------------------------------------------

def _save_weights(role: str, out: Path, dtype: torch.dtype, seed: int) -> None:
    """Materialise ``role``'s random modules on the CPU and save them as the real repositories do."""
    from tools.config import Settings
    from tools.models import architectures
    from tools.random_init import empty_init

    kinds = SAM_TYPES if role == "sam" else (None,)
    for kind in kinds:
        settings = Settings(sam_type=kind, _env_file=None) if kind else Settings(_env_file=None)
        for i, (name, build) in enumerate(architectures(role, out, settings).items()):
            with empty_init():
                module = build()
            module = materialize(module, "cpu", torch.float32 if role == "sam" else dtype, seed=seed + i)
            if role == "sam":
                torch.save(module.state_dict(), out / f"sam_{kind}.pth")
            else:
                module.save_pretrained(out if name == "model" else out / name, safe_serialization=True)
            del module


def make_random(directory: str | Path, roles: Optional[list[str]] = None, *, weights: bool = False,
                dtype: torch.dtype | str = torch.float16, seed: int = 0) -> Path:
    """Write full-size random models for ``roles`` (default: all) under ``directory/<role>``.

    Args:
        directory: the models folder to fill (``LOCALEDIT_MODELS_DIR``).
        roles: which roles (names of :data:`LAYOUTS`); a role's folder is replaced.
        weights: also write the weights (safetensors; SAM ``.pth`` files for vit_b and vit_h); by
            default only the marker, and the weights are drawn at load.
        dtype: the dtype of written weights, or its name (SAM is always float32, as it runs).
        seed: the random seed (each module of a role gets ``seed + i``).
    """
    from tools.types import LocaleditError

    directory = Path(directory)
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    unknown = [r for r in roles or [] if r not in LAYOUTS]
    if unknown:
        raise LocaleditError(f"Unknown model role '{unknown[0]}'; known: {', '.join(LAYOUTS)}.")
    for role in roles or list(LAYOUTS):
        out = directory / role
        if out.exists():
            shutil.rmtree(out)
        LAYOUTS[role](out)
        if weights:
            _save_weights(role, out, dtype, seed)
        else:
            marker = {"weights": "random, drawn when loaded (tools.random_init.materialize)", "seed": seed,
                      "made_by": "localedit models make-random"}
            if role == "sam":
                marker["sam_types"] = list(SAM_TYPES)
            _write_json(out / MARKER, marker)
    return directory


__all__ = ["CONFIGS", "LAYOUTS", "SAM_TYPES", "make_random", "public_config"]
