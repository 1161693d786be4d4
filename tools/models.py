"""The model registry: one name per role, its public default, and where it is loaded from.

A role is loaded from, in order of precedence:

1. ``$LOCALEDIT_MODELS_DIR/<role>/`` when that folder exists (``localedit models make-tiny`` and
   ``make-random`` write such folders; so can you, with real weights);
2. the ``models_config`` TOML file (``role = "hub/id"`` or ``role = "/a/local/folder"``);
3. the default Hugging Face id below, from the local Hugging Face cache.

Loading never downloads (``localedit models download`` does that, see :mod:`tools.downloads`), so a
missing model fails at once with one sentence that names it and the command that fixes it.
Only safetensors or plain state dicts are read (``torch.load(weights_only=True)``). A folder with a
random-weights marker (:data:`tools.random_init.MARKER`, written by ``make-random``) holds the
published configurations only: its modules are built from them on the meta device and filled at
random (:func:`tools.random_init.materialize`), then assembled by the same code as real weights.
Models load lazily, once, and stay resident in the ``ModelRegistry`` that loaded them; with
``LOCALEDIT_OFFLOAD=model`` on CUDA the large ones wait in CPU memory and move to the GPU per stage.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import time
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import torch

from tools.config import Settings, get_settings
from tools.models_modern import (LICENCES, MODERN_MODELS, MODERN_ROLES, MODERN_TRANSFORMERS, modern_dtype,
                                 pipeline_class)
from tools.random_init import count_parameters, empty_init, materialize, random_marker
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
    size: str  # download size, for the help text (`localedit models download --dry-run` has the exact one)

    @property
    def licence(self) -> str:
        """The licence of the default weights (the model card's), from :data:`tools.models_modern.LICENCES`."""
        return LICENCES.get(self.role, ("unknown", True))[0]

    @property
    def commercial(self) -> bool:
        """Whether that licence allows commercial use."""
        return LICENCES.get(self.role, ("unknown", True))[1]


SPECS: dict[str, ModelSpec] = {s.role: s for s in [
    ModelSpec("caption", "BLIP-2 captioner", "Salesforce/blip2-opt-2.7b", "15 GB"),
    ModelSpec("detector", "GroundingDINO detector", "IDEA-Research/grounding-dino-base", "0.9 GB"),
    ModelSpec("sam", "Segment Anything", "segment-anything", "0.4 GB (vit_b) / 2.6 GB (vit_h)"),
    ModelSpec("ip2p", "InstructPix2Pix editor", "timbrooks/instruct-pix2pix", "4.3 GB"),
    ModelSpec("sd", "Stable Diffusion 1.5 (DiffEdit)", "stable-diffusion-v1-5/stable-diffusion-v1-5",
              "4.3 GB (fp32) / 2.1 GB (fp16 on CUDA)"),
    ModelSpec("inpaint", "Stable Diffusion inpainting", "stable-diffusion-v1-5/stable-diffusion-inpainting",
              "4.3 GB (fp32) / 2.1 GB (fp16 on CUDA)"),
    ModelSpec("clip", "CLIP ViT-L/14 scorer", "openai/clip-vit-large-patch14", "1.7 GB"),
    ModelSpec("taesd", "Tiny autoencoder (TAESD, previews)", "madebyollin/taesd", "10 MB"),
    ModelSpec("qwen-edit", "Qwen-Image-Edit editor", "Qwen/Qwen-Image-Edit-2509", "58 GB (bf16)"),
    ModelSpec("kontext", "FLUX.1 Kontext [dev] editor", "black-forest-labs/FLUX.1-Kontext-dev", "34 GB (bf16)"),
    ModelSpec("klein", "FLUX.2 [klein] 4B editor", "black-forest-labs/FLUX.2-klein-4B", "16 GB (bf16)"),
    ModelSpec("sam3", "SAM 3 grounder and segmenter", "facebook/sam3", "3.4 GB"),
    ModelSpec("sam2", "SAM 2.1 segmenter", "facebook/sam2.1-hiera-large", "0.9 GB"),
]}

DIFFUSION_ROLES = ("ip2p", "sd", "inpaint")
IP2P_SCHEDULERS = {"euler_a": "EulerAncestralDiscreteScheduler", "dpm++": "DPMSolverMultistepScheduler",
                   "unipc": "UniPCMultistepScheduler", "ddim": "DDIMScheduler"}
"""``settings.ip2p_scheduler`` -> the diffusers scheduler class built from the pipeline's config."""

TRANSFORMERS_ROLES = {
    "caption": ("Blip2ForConditionalGeneration", "Blip2Processor"),
    "detector": ("GroundingDinoForObjectDetection", "GroundingDinoProcessor"),
    "clip": ("CLIPModel", "CLIPProcessor"),
    **MODERN_TRANSFORMERS,
}
"""Roles loaded as one transformers model plus its processor: ``role -> (model class, processor class)``."""

PIPELINES = {"ip2p": "StableDiffusionInstructPix2PixPipeline", "sd": "StableDiffusionPipeline",
             "inpaint": "StableDiffusionInpaintPipeline"}
PIPELINE_MODELS = {"unet": ("diffusers", "UNet2DConditionModel"), "vae": ("diffusers", "AutoencoderKL"),
                   "text_encoder": ("transformers", "CLIPTextModel")}
"""The components of each pipeline that hold weights (the safety checker is never loaded)."""

OFFLOADED = ("caption", *DIFFUSION_ROLES, *MODERN_ROLES)
"""With ``LOCALEDIT_OFFLOAD=model`` these wait in CPU memory and are moved to the GPU for their stage;
the small ones (detector, SAM, CLIP, TAESD: about 1.8 GB in fp16) stay resident."""


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


def role_dtype(role: str, device: torch.device, dtype: torch.dtype) -> torch.dtype:
    """The dtype ``role`` runs in: ``dtype``, except GroundingDINO on the CPU, always fp32.

    In bf16 (or fp16) on the CPU, GroundingDINO's multi-scale deformable attention feeds
    ``torch.nn.functional.grid_sample`` sampling grids that are NaN (measured 2026-12-06 with the
    full-size random detector at max side 256: 88 of 96 grids non-finite in bf16, 0 of 96 in fp32),
    and the CPU kernel reads out of bounds on non-finite grids (pytorch/pytorch#24823): the process
    died with SIGSEGV in 1 of 3 threaded runs. The detector is small (232 M parameters, 0.93 GB in
    fp32), so it runs in fp32 there; on CUDA it keeps the chosen dtype.
    """
    if role == "detector" and device.type == "cpu" and dtype != torch.float32:
        return torch.float32
    return dtype


def model_sources(settings: Settings) -> dict[str, str]:
    """Where each role will be loaded from (a local folder or a public id)."""
    configured: dict[str, str] = {}
    if settings.models_config:
        try:
            configured = {k: str(v) for k, v in
                          tomllib.loads(Path(settings.models_config).expanduser().read_text()).items()}
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise LocaleditError(f"The models config file {settings.models_config} cannot be read: {err}.") from err
    sources = {}
    for role, spec in SPECS.items():
        local = Path(settings.models_dir).expanduser() / role if settings.models_dir else None  # .env: "~/models"
        if local is not None and local.is_dir():
            sources[role] = str(local)
        elif role in configured:
            sources[role] = configured[role]
        elif role == "sam":
            sources[role] = SAM_URLS[settings.sam_type]
        else:
            sources[role] = spec.default
    return sources


def _missing(role: str, source: str, err: BaseException, models_dir: Optional[Path] = None) -> ModelMissingError:
    """The one sentence for a role that cannot be loaded; it names a models folder that does not exist
    (a mistyped ``--models`` / ``LOCALEDIT_MODELS_DIR``), which is the likelier fix."""
    spec = SPECS[role]
    folder = (f"the models folder {str(models_dir)!r} (LOCALEDIT_MODELS_DIR, --models) does not exist; "
              if models_dir is not None and not Path(models_dir).expanduser().is_dir() else "")
    return ModelMissingError(
        f"The {spec.title} ({source}) is not available on this machine: {folder}run "
        f"`localedit models download {role}` or point LOCALEDIT_MODELS_DIR at a folder with a "
        f"'{role}' model ({type(err).__name__}).")


# --- where a role's files are ------------------------------------------------------------------

def index_file(role: str) -> str:
    """The file at the root of a role's folder that says what it holds."""
    return "model_index.json" if role in (*DIFFUSION_ROLES, *MODERN_ROLES) else "config.json"


def local_folder(role: str, source: str, settings: Settings) -> Optional[Path]:
    """The folder (SAM: the checkpoint file or folder) ``source`` is read from on this machine,
    or None when it is not here (a Hub id not in the Hugging Face cache, a URL not downloaded)."""
    path = Path(source)
    if path.exists():
        return path
    if role == "sam":
        try:
            return _sam_checkpoint(source, settings)
        except FileNotFoundError:
            return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(source, index_file(role))
    return Path(found).parent if isinstance(found, str) else None


def fp16_variant(files: Iterable[str], role: str, fp16: bool) -> Optional[str]:
    """``"fp16"`` when the fp16 weights should be read: on CUDA in fp16, and only when every weight
    folder of the role has them (``*.fp16.safetensors``); else None (the default files). The
    download (:mod:`tools.downloads`) and the loader apply this same rule to the same file list."""
    if not fp16 or role not in (*DIFFUSION_ROLES, *TRANSFORMERS_ROLES, "taesd"):
        return None  # the modern pipelines run in bf16: their default files
    files = list(files)
    folders = [f"{c}/" for c in pipeline_models(role)] if role in DIFFUSION_ROLES else [""]
    for folder in folders:
        inside = [f[len(folder):] for f in files if f.startswith(folder) and "/" not in f[len(folder):]]
        if not any(f.endswith(".safetensors") and ".fp16" in f for f in inside):
            return None
    return "fp16"


def _variant_for(role: str, folder: Optional[Path], dtype: torch.dtype, device: torch.device) -> Optional[str]:
    if folder is None or not folder.is_dir():
        return None
    files = [p.relative_to(folder).as_posix() for p in folder.rglob("*.safetensors")]
    return fp16_variant(files, role, device.type == "cuda" and dtype == torch.float16)


# --- architectures: the modules of a role, from its configuration files -----------------------

def pipeline_models(role: str) -> dict[str, tuple[str, str]]:
    """The weight-holding components of a pipeline role: ``{folder: (library, class name)}``."""
    return MODERN_MODELS[role] if role in MODERN_ROLES else PIPELINE_MODELS


def architectures(role: str, folder: Path, settings: Settings) -> dict[str, Callable[[], torch.nn.Module]]:
    """Constructors of ``role``'s weight-holding modules from the configuration files in ``folder``
    (no weights are read): ``{"model": ...}``, or a pipeline's ``{"unet", "vae", "text_encoder"}``.
    Call them under :func:`tools.random_init.empty_init` to build on the meta device."""
    if role in TRANSFORMERS_ROLES:
        import transformers

        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
        model_cls = getattr(transformers, TRANSFORMERS_ROLES[role][0])
        return {"model": lambda: model_cls(config)}
    if role in (*DIFFUSION_ROLES, *MODERN_ROLES):
        import diffusers
        import transformers

        built = {}
        for name, (library, cls_name) in pipeline_models(role).items():
            cls = getattr(diffusers if library == "diffusers" else transformers, cls_name)
            if library == "diffusers":
                config = cls.load_config(folder / name)
                built[name] = (lambda cls=cls, config=config: cls.from_config(config))
            else:
                config = transformers.AutoConfig.from_pretrained(folder / name, local_files_only=True)
                built[name] = (lambda cls=cls, config=config: cls(config))
        return built
    if role == "sam":
        kind = _sam_kind(folder, settings)
        return {"model": lambda: _sam_builder(folder, kind)}
    if role == "taesd":
        from diffusers import AutoencoderTiny

        config = AutoencoderTiny.load_config(folder)
        return {"model": lambda: AutoencoderTiny.from_config(config)}
    raise LocaleditError(f"Unknown model role '{role}'; known: {', '.join(SPECS)}.")


def parameter_counts(role: str, source: str, settings: Settings) -> Optional[dict]:
    """``{"params": N, "components": {name: n}, "random": bool, "folder": str}`` for ``role`` as it
    would load from ``source``, counted on the meta device (nothing is allocated or read but the
    configurations), or None when the role's files are not on this machine."""
    folder = local_folder(role, source, settings)
    if folder is None:
        return None
    with empty_init(include_buffers=True):
        modules = {name: build() for name, build in architectures(role, folder, settings).items()}
    counts = {name: count_parameters(m) for name, m in modules.items()}
    info = {"params": sum(counts.values()), "components": counts, "folder": str(folder),
            "random": random_marker(folder if folder.is_dir() else folder.parent) is not None}
    if role == "sam":
        info["sam_type"] = _sam_kind(folder, settings)
    return info


def _random_modules(role: str, folder: Path, settings: Settings, device: torch.device,
                    dtype: torch.dtype) -> dict[str, torch.nn.Module]:
    """The role's modules from ``folder``'s configurations, with random weights on ``device``."""
    seed = int((random_marker(folder) or {}).get("seed", 0))
    out = {}
    for i, (name, build) in enumerate(architectures(role, folder, settings).items()):
        with empty_init():
            module = build()
        out[name] = materialize(module, device, dtype, seed=seed + i)
    return out


# --- loaders: one per kind of role ---------------------------------------------------------------

def load_transformers(role: str, source: str, device: torch.device, dtype: torch.dtype,
                      settings: Settings) -> Loaded:
    """A transformers model and its processor (weights from safetensors, or random for a marked folder)."""
    import transformers

    model_name, processor_name = TRANSFORMERS_ROLES[role]
    folder = local_folder(role, source, settings)
    where = str(folder) if folder is not None else source  # a Hub id not cached: from_pretrained says so
    processor = getattr(transformers, processor_name).from_pretrained(where, local_files_only=True)
    if folder is not None and random_marker(folder) is not None:
        return Loaded(_random_modules(role, folder, settings, device, dtype)["model"], processor)
    model = getattr(transformers, model_name).from_pretrained(
        where, dtype=dtype, local_files_only=True, use_safetensors=True,
        variant=_variant_for(role, folder, dtype, device))
    return Loaded(model.to(device).eval(), processor)


def load_pipeline(role: str, source: str, device: torch.device, dtype: torch.dtype, settings: Settings) -> Loaded:
    """A diffusers pipeline without its safety checker; a marked folder's UNet, VAE and text encoder
    are built at random and handed to ``from_pretrained``, which reads the rest (tokenizer, scheduler)."""
    import diffusers

    folder = local_folder(role, source, settings)
    components: dict[str, Any] = {}
    if folder is not None and random_marker(folder) is not None:
        components = _random_modules(role, folder, settings, device, dtype)
    pipe = getattr(diffusers, PIPELINES[role]).from_pretrained(
        str(folder) if folder is not None else source, dtype=dtype, local_files_only=True, use_safetensors=True, safety_checker=None,
        requires_safety_checker=False, variant=None if components else _variant_for(role, folder, dtype, device),
        **components)
    pipe.set_progress_bar_config(disable=True)
    return Loaded(pipe.to(device))


def load_modern_pipeline(role: str, source: str, device: torch.device, dtype: torch.dtype,
                         settings: Settings) -> Loaded:
    """Qwen-Image-Edit or FLUX.1 Kontext: the pipeline class its ``model_index.json`` names (checked),
    in bfloat16 on CUDA; a marked folder's components are built at random from their configurations."""
    import diffusers

    folder = local_folder(role, source, settings)
    if folder is None:
        raise FileNotFoundError(f"{source} is not in the Hugging Face cache")
    dtype = modern_dtype(settings, device, dtype)
    components: dict[str, Any] = {}
    if random_marker(folder) is not None:
        components = _random_modules(role, folder, settings, device, dtype)
    pipe = getattr(diffusers, pipeline_class(role, folder)).from_pretrained(
        str(folder), dtype=dtype, local_files_only=True, use_safetensors=True, **components)
    pipe.set_progress_bar_config(disable=True)
    return Loaded(pipe.to(device))


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


def _sam_builder(where: Path, kind: str):
    """A ``Sam`` with no weights loaded: from ``sam_config.json`` beside the checkpoint (the tiny one),
    else segment-anything's own builder for ``kind`` (``vit_b`` / ``vit_l`` / ``vit_h``)."""
    from segment_anything import sam_model_registry

    config_file = (where if where.is_dir() else where.parent) / "sam_config.json"
    if config_file.is_file():
        return build_sam(json.loads(config_file.read_text()))
    return sam_model_registry[kind](checkpoint=None)


def _sam_kind(where: Path, settings: Settings) -> str:
    """The SAM size of a checkpoint file (by its name), or of a folder's (random) model."""
    if where.is_file():
        return _sam_type_of(where, settings)
    marker = random_marker(where)
    if marker is not None:
        kinds = marker.get("sam_types") or []
        if settings.sam_type not in kinds:
            raise FileNotFoundError(f"{where} has random SAM models of types {kinds}, not {settings.sam_type}")
    return settings.sam_type


def _sam_checkpoint(source: str, settings: Settings) -> Path:
    """The ``.pth`` for ``source``: a file, a folder holding one (the one named for
    ``settings.sam_type`` where there are several), a random folder itself, or a URL already downloaded."""
    path = Path(source)
    if path.is_dir():
        if random_marker(path) is not None:
            return path
        found = sorted(path.glob("*.pth")) + sorted(path.glob("*.safetensors"))
        if not found:
            raise FileNotFoundError(f"no .pth or .safetensors in {path}")
        named = [f for f in found if settings.sam_type in f.name]
        return (named or found)[0]
    if path.is_file():
        return path
    cached = sam_cache_dir() / source.rsplit("/", 1)[-1]
    if cached.is_file():
        return cached
    raise FileNotFoundError(str(cached))


def load_sam(source: str, device: torch.device, dtype: torch.dtype, settings: Settings) -> Loaded:
    """Segment Anything from a state-dict checkpoint (never unpickles arbitrary objects)."""
    ckpt = _sam_checkpoint(source, settings)
    kind = _sam_kind(ckpt, settings)
    # SAM runs in float32: its image encoder is numerically fragile in fp16 and small enough.
    if ckpt.is_dir():  # a random-weights folder
        return Loaded(_random_modules("sam", ckpt, settings, device, torch.float32)["model"])
    sam = _sam_builder(ckpt, kind)
    if ckpt.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(ckpt))
    else:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    sam.load_state_dict(state)
    return Loaded(sam.to(device).eval())


def _sam_type_of(ckpt: Path, settings: Settings) -> str:
    for kind in ("vit_h", "vit_l", "vit_b"):
        if kind in ckpt.name:
            return kind
    return settings.sam_type


def sam_cache_dir() -> Path:
    return Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "localedit-sam"


def load_autoencoder_tiny(source: str, device: torch.device, dtype: torch.dtype, settings: Settings) -> Loaded:
    """TAESD (``AutoencoderTiny``), from safetensors or random for a marked folder."""
    from diffusers import AutoencoderTiny

    folder = local_folder("taesd", source, settings)
    if folder is not None and random_marker(folder) is not None:
        return Loaded(_random_modules("taesd", folder, settings, device, dtype)["model"])
    vae = AutoencoderTiny.from_pretrained(str(folder) if folder is not None else source, dtype=dtype, local_files_only=True, use_safetensors=True,
                                          variant=_variant_for("taesd", folder, dtype, device))
    return Loaded(vae.to(device).eval())


def load_role(role: str, source: str, device: torch.device, dtype: torch.dtype, settings: Settings) -> Loaded:
    """Load ``role`` from ``source`` onto ``device`` (the one function every load goes through)."""
    if role == "sam":
        return load_sam(source, device, dtype, settings)
    if role in TRANSFORMERS_ROLES:
        return load_transformers(role, source, device, dtype, settings)
    if role in DIFFUSION_ROLES:
        return load_pipeline(role, source, device, dtype, settings)
    if role in MODERN_ROLES:
        return load_modern_pipeline(role, source, device, dtype, settings)
    if role == "taesd":
        return load_autoencoder_tiny(source, device, dtype, settings)
    raise LocaleditError(f"Unknown model role '{role}'; known: {', '.join(SPECS)}.")


class ModelRegistry:
    """Loads each role lazily, once, and keeps it resident. Thread-safe.

    With ``settings.offload == "model"`` on CUDA, the :data:`OFFLOADED` roles are loaded into CPU
    memory; :meth:`stage` moves one of them to the GPU for the duration of its stage (and the one
    there before back): BLIP-2 as a whole, a pipeline through diffusers' model CPU offload (its text
    encoder, UNet and VAE each on the GPU only while it runs).
    """

    def __init__(self, settings: Optional[Settings] = None):
        self.settings = settings or get_settings()
        self.device, self.dtype = resolve_device(self.settings)
        self.sources = model_sources(self.settings)
        self._loaded: dict[str, Loaded] = {}
        self._lock = threading.RLock()
        self._on_device: Optional[str] = None  # the offloaded role now on the GPU
        self._listeners: list[Callable[[dict], None]] = []

    def listen(self, listener: Callable[[dict], None]) -> Callable[[], None]:
        """Call ``listener`` around each model load: ``{"event": "start" | "done" | "failed", "role",
        "title", "loaded": [roles loaded before], "seconds" (done / failed)}``, from the loading
        thread (a UI says what is loading on a cold start). Returns the function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _tell(self, event: dict) -> None:
        for listener in list(self._listeners):
            try:
                listener(dict(event))
            except Exception:  # noqa: BLE001 - a listener's failure must not fail the load
                log.exception("model load listener failed")

    @property
    def offloading(self) -> bool:
        """Whether the large models wait in CPU memory between their stages."""
        return self.settings.offload == "model" and self.device.type == "cuda"

    def get(self, role: str) -> Loaded:
        """The loaded model for ``role`` (loading it on first use)."""
        if role not in SPECS:
            raise LocaleditError(f"Unknown model role '{role}'; known: {', '.join(SPECS)}.")
        with self._lock:
            if role not in self._loaded:
                about = {"role": role, "title": SPECS[role].title, "loaded": sorted(self._loaded)}
                self._tell({"event": "start", **about})
                started = time.perf_counter()
                try:
                    self._loaded[role] = self._load(role)
                except BaseException:
                    self._tell({"event": "failed", "seconds": time.perf_counter() - started, **about})
                    raise
                self._tell({"event": "done", "seconds": time.perf_counter() - started, **about})
            return self._loaded[role]

    def _load(self, role: str) -> Loaded:
        source = self.sources[role]
        offloaded = self.offloading and role in OFFLOADED
        device = torch.device("cpu") if offloaded else self.device
        if self.device.type == "cuda" and self.settings.cuda_fast_math:  # TF32 for SAM and other fp32 parts
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        dtype = role_dtype(role, device, self.dtype)
        log.info("loading %s from %s on %s (%s)", role, source, device, dtype)
        try:
            loaded = load_role(role, source, device, dtype, self.settings)
        except OSError as err:  # loads are local_files_only: absent or incomplete weights raise OSError
            raise _missing(role, source, err, self.settings.models_dir) from err
        if offloaded and role in (*DIFFUSION_ROLES, *MODERN_ROLES):
            loaded.model.enable_model_cpu_offload(device=self.device)
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
                tiny = self.get("taesd")  # the lock is re-entrant
                decode_with_tiny_vae(pipe.vae, tiny.model)
            if s.cuda_fast_math and self.device.type == "cuda":
                pipe.unet.to(memory_format=torch.channels_last)
            if s.torch_compile:
                pipe.unet.compile()
        elif s.attention != "default" and hasattr(loaded.model, "set_attn_implementation"):
            try:
                loaded.model.set_attn_implementation(s.attention)
            except (ValueError, ImportError) as err:  # a model without that kernel keeps its own
                log.info("%s keeps its attention implementation: %s", role, err)
        return loaded

    @contextmanager
    def stage(self, role: str) -> Iterator[None]:
        """Run a stage that uses ``role``: with offloading on, it is moved to the GPU first and the
        offloaded model there before goes back to CPU memory. A no-op otherwise."""
        if not self.offloading or role not in OFFLOADED:
            yield
            return
        with self._lock:
            loaded = self.get(role)
            if self._on_device not in (None, role):
                self._to_cpu(self._on_device)
            if role == "caption":
                loaded.model.to(self.device)
            self._on_device = role
        yield

    def _to_cpu(self, role: str) -> None:
        loaded = self._loaded.get(role)
        if loaded is not None:
            if role in (*DIFFUSION_ROLES, *MODERN_ROLES):
                loaded.model.maybe_free_model_hooks()  # every component back to CPU memory
            else:
                loaded.model.to("cpu")
        self._on_device = None
        torch.cuda.empty_cache()

    def on_device(self) -> Optional[str]:
        """The offloaded role now on the GPU (None: none, or offloading is off)."""
        return self._on_device

    def release(self, role: str) -> bool:
        """Drop ``role``'s model (the benchmark frees memory between roles); True if it was loaded."""
        with self._lock:
            loaded = self._loaded.pop(role, None)
            if self._on_device == role:
                self._on_device = None
        if loaded is None:
            return False
        del loaded
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return True

    def loaded(self) -> list[str]:
        return sorted(self._loaded)

    def dtype_of(self, role: str) -> torch.dtype:
        """The dtype ``role`` runs in (:func:`role_dtype`: the detector is fp32 on the CPU)."""
        return role_dtype(role, self.device, self.dtype)


def decode_with_tiny_vae(vae, tiny) -> None:
    """Make ``vae.decode`` (what the pipelines and editors call) decode with ``tiny`` (TAESD).

    Callers pass ``latents / vae.config.scaling_factor``; TAESD takes the scaled latents, so they are
    scaled back. Encoding stays with the full autoencoder.
    """
    scale = vae.config.scaling_factor

    def decode(z: torch.Tensor, return_dict: bool = True, generator=None):
        return tiny.decode(z.to(tiny.dtype) * scale, return_dict=return_dict)

    vae.decode = decode

