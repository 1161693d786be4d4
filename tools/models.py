"""The model registry: one name per role, its public default, and where it is loaded from.

A role is loaded from, in order of precedence:

1. ``$LOCALEDIT_MODELS_DIR/<role>/`` when that folder exists (``localedit models make-tiny``
   writes such a folder; so can you, with real weights);
2. the ``models_config`` TOML file (``role = "hub/id"`` or ``role = "/a/local/folder"``);
3. the default Hugging Face id below, from the local Hugging Face cache.

Loading never downloads (``localedit models download`` does that, with a progress bar), so a
missing model fails at once with one sentence that names it and the command that fixes it.
Only safetensors or plain state dicts are read (``torch.load(weights_only=True)``).
Models load lazily, once, and stay resident in the ``ModelRegistry`` that loaded them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import tomllib
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from tools.config import Settings, get_settings
from tools.types import LocaleditError, ModelMissingError

log = logging.getLogger(__name__)

SAM_URLS = {
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
}


@dataclass(frozen=True)
class ModelSpec:
    """One role: what it is for people, and its default public weights."""

    role: str
    title: str
    default: str  # Hugging Face id (SAM: a checkpoint URL chosen by settings.sam_type)
    size: str  # download size, for the help text


SPECS: dict[str, ModelSpec] = {s.role: s for s in [
    ModelSpec("caption", "BLIP-2 captioner", "Salesforce/blip2-opt-2.7b", "15 GB"),
    ModelSpec("detector", "GroundingDINO detector", "IDEA-Research/grounding-dino-base", "0.9 GB"),
    ModelSpec("sam", "Segment Anything", "segment-anything", "0.4 GB (vit_b) / 2.6 GB (vit_h)"),
    ModelSpec("ip2p", "InstructPix2Pix editor", "timbrooks/instruct-pix2pix", "2.6 GB"),
    ModelSpec("sd", "Stable Diffusion 1.5 (DiffEdit)", "stable-diffusion-v1-5/stable-diffusion-v1-5", "2.7 GB"),
    ModelSpec("inpaint", "Stable Diffusion inpainting", "stable-diffusion-v1-5/stable-diffusion-inpainting", "2.7 GB"),
    ModelSpec("clip", "CLIP ViT-L/14 scorer", "openai/clip-vit-large-patch14", "1.7 GB"),
    ModelSpec("taesd", "Tiny autoencoder (TAESD, previews)", "madebyollin/taesd", "10 MB"),
]}

DIFFUSION_ROLES = ("ip2p", "sd", "inpaint")
IP2P_SCHEDULERS = {"euler_a": "EulerAncestralDiscreteScheduler", "dpm++": "DPMSolverMultistepScheduler",
                   "unipc": "UniPCMultistepScheduler", "ddim": "DDIMScheduler"}
"""``settings.ip2p_scheduler`` -> the diffusers scheduler class built from the pipeline's config."""


@dataclass
class Loaded:
    """A loaded model with what it needs beside it (processor, tokenizer)."""

    model: Any
    processor: Any = None


def resolve_device(settings: Settings) -> tuple[torch.device, torch.dtype]:
    """The device and dtype to run on: CUDA fp16 where available, else CPU fp32."""
    name = settings.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if settings.dtype == "auto":
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    else:
        dtype = getattr(torch, settings.dtype)
    return device, dtype


def model_sources(settings: Settings) -> dict[str, str]:
    """Where each role will be loaded from (a local folder or a public id)."""
    configured: dict[str, str] = {}
    if settings.models_config:
        try:
            configured = {k: str(v) for k, v in tomllib.loads(Path(settings.models_config).read_text()).items()}
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise LocaleditError(f"The models config file {settings.models_config} cannot be read: {err}.") from err
    sources = {}
    for role, spec in SPECS.items():
        local = Path(settings.models_dir) / role if settings.models_dir else None
        if local is not None and local.is_dir():
            sources[role] = str(local)
        elif role in configured:
            sources[role] = configured[role]
        elif role == "sam":
            sources[role] = SAM_URLS[settings.sam_type]
        else:
            sources[role] = spec.default
    return sources


def _missing(role: str, source: str, err: BaseException) -> ModelMissingError:
    spec = SPECS[role]
    return ModelMissingError(
        f"The {spec.title} ({source}) is not available on this machine: run "
        f"`localedit models download {role}` or point LOCALEDIT_MODELS_DIR at a folder with a "
        f"'{role}' model ({type(err).__name__}).")


# --- loaders: one per role -------------------------------------------------------------------

def _pretrained_kwargs(source: str, dtype: torch.dtype) -> dict:
    return {"dtype": dtype, "local_files_only": True, "use_safetensors": True}


def _load_transformers(model_cls_name: str, processor_cls_name: str) -> Callable[[str, torch.device, torch.dtype], Loaded]:
    def load(source: str, device: torch.device, dtype: torch.dtype) -> Loaded:
        import transformers

        model_cls = getattr(transformers, model_cls_name)
        processor = getattr(transformers, processor_cls_name).from_pretrained(source, local_files_only=True)
        model = model_cls.from_pretrained(source, **_pretrained_kwargs(source, dtype))
        return Loaded(model.to(device).eval(), processor)
    return load


def _load_diffusers(pipeline_cls_name: str) -> Callable[[str, torch.device, torch.dtype], Loaded]:
    def load(source: str, device: torch.device, dtype: torch.dtype) -> Loaded:
        import diffusers

        pipe_cls = getattr(diffusers, pipeline_cls_name)
        pipe = pipe_cls.from_pretrained(source, dtype=dtype, local_files_only=True,
                                        use_safetensors=True, safety_checker=None,
                                        requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return Loaded(pipe.to(device))
    return load


def build_sam(config: dict):
    """Assemble a ``Sam`` of any size from segment-anything's modules (as its registry does)."""
    from functools import partial

    from segment_anything.modeling import (ImageEncoderViT, MaskDecoder, PromptEncoder, Sam,
                                           TwoWayTransformer)

    img_size, patch, dim = config["img_size"], config["patch_size"], config["prompt_embed_dim"]
    embed_size = img_size // patch
    encoder = ImageEncoderViT(
        depth=config["encoder_depth"], embed_dim=config["encoder_embed_dim"], img_size=img_size,
        mlp_ratio=4, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=config["encoder_num_heads"], patch_size=patch, qkv_bias=True, use_rel_pos=True,
        global_attn_indexes=config["encoder_global_attn_indexes"], window_size=config.get("window_size", 14),
        out_chans=dim)
    prompt = PromptEncoder(embed_dim=dim, image_embedding_size=(embed_size, embed_size),
                           input_image_size=(img_size, img_size), mask_in_chans=16)
    decoder = MaskDecoder(num_multimask_outputs=3, transformer_dim=dim, iou_head_depth=3,
                          iou_head_hidden_dim=config.get("iou_hidden", 256),
                          transformer=TwoWayTransformer(depth=2, embedding_dim=dim,
                                                        mlp_dim=config["mlp_dim"], num_heads=8))
    return Sam(image_encoder=encoder, prompt_encoder=prompt, mask_decoder=decoder,
               pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])


def _sam_checkpoint(source: str, settings: Settings) -> Path:
    """The ``.pth`` for ``source``: a file, a folder holding one, or a URL already downloaded."""
    path = Path(source)
    if path.is_dir():
        found = sorted(path.glob("*.pth")) + sorted(path.glob("*.safetensors"))
        if not found:
            raise FileNotFoundError(f"no .pth or .safetensors in {path}")
        return found[0]
    if path.is_file():
        return path
    cached = sam_cache_dir() / source.rsplit("/", 1)[-1]
    if cached.is_file():
        return cached
    raise FileNotFoundError(str(cached))


def load_sam(source: str, device: torch.device, dtype: torch.dtype, settings: Settings) -> Loaded:
    """Segment Anything from a state-dict checkpoint (never unpickles arbitrary objects)."""
    from segment_anything import sam_model_registry

    ckpt = _sam_checkpoint(source, settings)
    config_file = ckpt.parent / "sam_config.json"
    if config_file.is_file():
        sam = build_sam(json.loads(config_file.read_text()))
    else:
        sam = sam_model_registry[_sam_type_of(ckpt, settings)](checkpoint=None)
    if ckpt.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(ckpt))
    else:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    sam.load_state_dict(state)
    # SAM runs in float32: its image encoder is numerically fragile in fp16 and small enough.
    return Loaded(sam.to(device).eval())


def _sam_type_of(ckpt: Path, settings: Settings) -> str:
    for kind in ("vit_h", "vit_l", "vit_b"):
        if kind in ckpt.name:
            return kind
    return settings.sam_type


def sam_cache_dir() -> Path:
    return Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "localedit-sam"


def _load_autoencoder_tiny(source: str, device: torch.device, dtype: torch.dtype) -> Loaded:
    from diffusers import AutoencoderTiny

    vae = AutoencoderTiny.from_pretrained(source, dtype=dtype, local_files_only=True, use_safetensors=True)
    return Loaded(vae.to(device).eval())


LOADERS: dict[str, Callable[..., Loaded]] = {
    "caption": _load_transformers("Blip2ForConditionalGeneration", "Blip2Processor"),
    "detector": _load_transformers("GroundingDinoForObjectDetection", "GroundingDinoProcessor"),
    "clip": _load_transformers("CLIPModel", "CLIPProcessor"),
    "ip2p": _load_diffusers("StableDiffusionInstructPix2PixPipeline"),
    "sd": _load_diffusers("StableDiffusionPipeline"),
    "inpaint": _load_diffusers("StableDiffusionInpaintPipeline"),
    "taesd": _load_autoencoder_tiny,
}


class ModelRegistry:
    """Loads each role lazily, once, and keeps it resident. Thread-safe."""

    def __init__(self, settings: Optional[Settings] = None):
        self.settings = settings or get_settings()
        self.device, self.dtype = resolve_device(self.settings)
        self.sources = model_sources(self.settings)
        self._loaded: dict[str, Loaded] = {}
        self._lock = threading.Lock()

    def get(self, role: str) -> Loaded:
        """The loaded model for ``role`` (loading it on first use)."""
        if role not in SPECS:
            raise LocaleditError(f"Unknown model role '{role}'; known: {', '.join(SPECS)}.")
        with self._lock:
            if role not in self._loaded:
                self._loaded[role] = self._load(role)
            return self._loaded[role]

    def _load(self, role: str) -> Loaded:
        source = self.sources[role]
        log.info("loading %s from %s on %s (%s)", role, source, self.device, self.dtype)
        try:
            if role == "sam":
                return load_sam(source, self.device, self.dtype, self.settings)
            loaded = LOADERS[role](source, self.device, self.dtype)
        except OSError as err:  # loads are local_files_only: absent or incomplete weights raise OSError
            raise _missing(role, source, err) from err
        return self._speed_up(role, loaded)

    def _speed_up(self, role: str, loaded: Loaded) -> Loaded:
        """Apply the speed settings (all off by default, which leaves the model as loaded)."""
        s = self.settings
        if role in DIFFUSION_ROLES:
            pipe = loaded.model
            if role == "ip2p" and s.ip2p_scheduler != "default":
                import diffusers

                pipe.scheduler = getattr(diffusers, IP2P_SCHEDULERS[s.ip2p_scheduler]).from_config(pipe.scheduler.config)
            if s.attention != "default":
                from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

                pipe.unet.set_attn_processor(AttnProcessor2_0() if s.attention == "sdpa" else AttnProcessor())
            if s.preview_vae:
                if "taesd" not in self._loaded:  # get() holds the lock already
                    self._loaded["taesd"] = self._load("taesd")
                decode_with_tiny_vae(pipe.vae, self._loaded["taesd"].model)
            if s.torch_compile:
                pipe.unet.compile()
        elif s.attention != "default" and hasattr(loaded.model, "set_attn_implementation"):
            try:
                loaded.model.set_attn_implementation(s.attention)
            except (ValueError, ImportError) as err:  # a model without that kernel keeps its own
                log.info("%s keeps its attention implementation: %s", role, err)
        return loaded

    def loaded(self) -> list[str]:
        return sorted(self._loaded)


def decode_with_tiny_vae(vae, tiny) -> None:
    """Make ``vae.decode`` (what the pipelines and editors call) decode with ``tiny`` (TAESD).

    Callers pass ``latents / vae.config.scaling_factor``; TAESD takes the scaled latents, so they are
    scaled back. Encoding stays with the full autoencoder.
    """
    scale = vae.config.scaling_factor

    def decode(z: torch.Tensor, return_dict: bool = True, generator=None):
        return tiny.decode(z.to(tiny.dtype) * scale, return_dict=return_dict)

    vae.decode = decode


# --- download --------------------------------------------------------------------------------

def download(roles: list[str], settings: Optional[Settings] = None) -> dict[str, str]:
    """Fetch the weights of ``roles`` (all if empty) into the local caches, with progress bars."""
    settings = settings or get_settings()
    sources = model_sources(settings)
    done = {}
    for role in roles or list(SPECS):
        if role not in SPECS:
            raise LocaleditError(f"Unknown model role '{role}'; known: {', '.join(SPECS)}.")
        source = sources[role]
        if Path(source).exists():
            done[role] = f"local folder {source} (nothing to download)"
            continue
        print(f"Downloading {SPECS[role].title} ({source}, about {SPECS[role].size}) ...", file=sys.stderr)
        try:
            done[role] = _download_sam(source) if role == "sam" else _download_hub(source)
        except Exception as err:  # network errors come in many types; report one line
            raise LocaleditError(f"Downloading {source} failed: {type(err).__name__}: {err}".split("\n")[0]) from err
    return done


def _download_hub(repo_id: str) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(repo_id, allow_patterns=["*.json", "*.txt", "*.model", "*.safetensors"],
                             ignore_patterns=["*.fp16.safetensors", "*non_ema*", "*.ckpt"])


def _download_sam(url: str) -> str:
    from tqdm import tqdm

    target = sam_cache_dir() / url.rsplit("/", 1)[-1]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    with urllib.request.urlopen(url, timeout=60) as response:
        total = int(response.headers.get("Content-Length") or 0)
        with open(partial, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, desc=target.name) as bar:
            while chunk := response.read(1 << 20):
                f.write(chunk)
                bar.update(len(chunk))
    partial.rename(target)
    return str(target)
