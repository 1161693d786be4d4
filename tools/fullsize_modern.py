"""Full-size random layouts of the issue-20 models, for :mod:`tools.fullsize` (``make-random``).

Each writes the published configurations (``tools/public_configs``), the scheduler, and stand-in
tokenizers / processors of the real classes and vocabulary sizes (:mod:`tools.vocab`), in the layout
of the real repository. The weights are drawn when loaded (or counted on the meta device):

=============  =====================================================  ============================
role           components (published size)                            counted here (meta device)
=============  =====================================================  ============================
``qwen-edit``  QwenImageTransformer2DModel (20 B), Qwen2.5-VL-7B       see docs/editors.md
               (8.3 B), AutoencoderKLQwenImage (127 M)
``kontext``    FluxTransformer2DModel (12 B), T5-XXL encoder (4.8 B),
               CLIP-L text (123 M), FLUX.1 VAE (84 M)
``klein``      Flux2Transformer2DModel (4 B), Qwen3-4B (4.0 B),
               AutoencoderKLFlux2
``sam3``       Sam3Model (848 M)
``sam2``       Sam2Model, Hiera-L (224 M with the video memory modules)
=============  =====================================================  ============================
"""

from __future__ import annotations

import json
from pathlib import Path

QWEN_VOCAB, CLIP_VOCAB, T5_VOCAB = 152064, 49408, 32128

QWEN_SCHEDULER = {"_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5,
                  "invert_sigmas": False, "max_image_seq_len": 8192, "max_shift": 0.9, "num_train_timesteps": 1000,
                  "shift": 1.0, "shift_terminal": 0.02, "stochastic_sampling": False,
                  "time_shift_type": "exponential", "use_beta_sigmas": False, "use_dynamic_shifting": True,
                  "use_exponential_sigmas": False, "use_karras_sigmas": False}
"""Qwen/Qwen-Image-Edit scheduler/scheduler_config.json."""

FLUX_SCHEDULER = {"_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5,
                  "max_image_seq_len": 4096, "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 3.0,
                  "use_dynamic_shifting": True}
"""black-forest-labs/FLUX.1-Kontext-dev scheduler/scheduler_config.json."""


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _config(name: str) -> dict:
    """A published configuration of ``tools/public_configs`` (read here: :mod:`tools.fullsize` imports this module)."""
    data = json.loads((Path(__file__).with_name("public_configs") / f"{name}.json").read_text())
    return {k: v for k, v in data.items() if k != "_source"}


def write_qwen_edit(out: Path) -> None:
    """Qwen-Image-Edit-2509's layout: ``QwenImageEditPlusPipeline`` with its three weight folders,
    the scheduler, a Qwen2 tokenizer of 152064 ids and a ``Qwen2VLProcessor``."""
    import diffusers
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    from tools.vocab import qwen2_tokenizer

    _write_json(out / "model_index.json", {
        "_class_name": "QwenImageEditPlusPipeline", "_diffusers_version": diffusers.__version__,
        "processor": ["transformers", "Qwen2VLProcessor"], "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "Qwen2_5_VLForConditionalGeneration"],
        "tokenizer": ["transformers", "Qwen2Tokenizer"], "transformer": ["diffusers", "QwenImageTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKLQwenImage"]})
    _write_json(out / "transformer" / "config.json", _config("qwen-image-edit-transformer"))
    _write_json(out / "vae" / "config.json", _config("qwen-image-vae"))
    _write_json(out / "text_encoder" / "config.json", _config("qwen2.5-vl-7b"))
    _write_json(out / "scheduler" / "scheduler_config.json", QWEN_SCHEDULER)
    tok = qwen2_tokenizer(QWEN_VOCAB)
    tok.save_pretrained(out / "tokenizer")
    Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(), tokenizer=tok,
                     video_processor=Qwen2VLVideoProcessor()).save_pretrained(out / "processor")


def write_kontext(out: Path) -> None:
    """FLUX.1-Kontext-dev's layout: ``FluxKontextPipeline``, its transformer, VAE, CLIP-L and T5-XXL
    encoders, the scheduler and both tokenizers."""
    import diffusers

    from tools.vocab import clip_tokenizer, t5_tokenizer

    _write_json(out / "model_index.json", {
        "_class_name": "FluxKontextPipeline", "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None], "image_encoder": [None, None],
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "T5Tokenizer"], "transformer": ["diffusers", "FluxTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"]})
    _write_json(out / "transformer" / "config.json", _config("flux1-kontext-transformer"))
    _write_json(out / "vae" / "config.json", _config("flux1-vae"))
    _write_json(out / "text_encoder" / "config.json", _config("sd15-text-encoder"))  # CLIP ViT-L/14's text tower
    _write_json(out / "text_encoder_2" / "config.json", _config("t5-v1_1-xxl-encoder"))
    _write_json(out / "scheduler" / "scheduler_config.json", FLUX_SCHEDULER)
    clip_tokenizer(CLIP_VOCAB).save_pretrained(out / "tokenizer")
    t5_tokenizer(T5_VOCAB).save_pretrained(out / "tokenizer_2")


KLEIN_SCHEDULER = {"_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5,
                   "max_image_seq_len": 4096, "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 3.0,
                   "use_dynamic_shifting": True}
"""black-forest-labs/FLUX.2-klein-4B scheduler/scheduler_config.json (FLUX's flow-matching schedule)."""


def write_klein(out: Path) -> None:
    """FLUX.2-klein-4B's layout: ``Flux2KleinPipeline`` (step-distilled), its transformer, VAE and
    Qwen3-4B text encoder, the scheduler and a Qwen2 tokenizer of 151936 ids with Qwen3's chat template."""
    import diffusers

    from tools.tiny_modern import QWEN3_CHAT_TEMPLATE
    from tools.vocab import qwen2_tokenizer

    _write_json(out / "model_index.json", {
        "_class_name": "Flux2KleinPipeline", "_diffusers_version": diffusers.__version__, "is_distilled": True,
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"], "text_encoder": ["transformers", "Qwen3ForCausalLM"],
        "tokenizer": ["transformers", "Qwen2Tokenizer"], "transformer": ["diffusers", "Flux2Transformer2DModel"],
        "vae": ["diffusers", "AutoencoderKLFlux2"]})
    _write_json(out / "transformer" / "config.json", _config("flux2-klein-4b-transformer"))
    _write_json(out / "vae" / "config.json", _config("flux2-vae"))
    _write_json(out / "text_encoder" / "config.json", _config("qwen3-4b"))
    _write_json(out / "scheduler" / "scheduler_config.json", KLEIN_SCHEDULER)
    tok = qwen2_tokenizer(151936)
    tok.chat_template = QWEN3_CHAT_TEMPLATE
    tok.save_pretrained(out / "tokenizer")


def write_sam3(out: Path) -> None:
    """facebook/sam3's layout: ``config.json`` and a ``Sam3Processor`` (1008 px, CLIP-sized tokenizer)."""
    from transformers import Sam3ImageProcessor, Sam3Processor

    from tools.vocab import clip_tokenizer

    Sam3Processor(image_processor=Sam3ImageProcessor(), tokenizer=clip_tokenizer(CLIP_VOCAB)).save_pretrained(out)
    _write_json(out / "config.json", _config("sam3"))


def write_sam2(out: Path) -> None:
    """facebook/sam2.1-hiera-large's layout: ``config.json`` and a ``Sam2Processor`` (1024 px)."""
    from transformers import Sam2ImageProcessor, Sam2Processor

    Sam2Processor(image_processor=Sam2ImageProcessor()).save_pretrained(out)
    _write_json(out / "config.json", _config("sam2.1-hiera-large"))


LAYOUTS = {"qwen-edit": write_qwen_edit, "kontext": write_kontext, "klein": write_klein, "sam3": write_sam3,
           "sam2": write_sam2}

__all__ = ["LAYOUTS", "write_klein", "write_kontext", "write_qwen_edit", "write_sam2", "write_sam3"]
