"""Tiny, randomly initialised versions of every model localedit uses.

``make_tiny(directory)`` writes one sub-folder per role, in the same on-disk formats as the real
weights (``save_pretrained`` safetensors for transformers and diffusers, a state-dict ``.pth``
for Segment Anything), so pointing ``LOCALEDIT_MODELS_DIR`` at the folder runs the whole program
through the real loading code with no network. It is a wiring check: the outputs are noise.
Everything is seeded, so two calls write identical weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from tools.vocab import CLIP_CONTEXT as TEXT_LEN
from tools.vocab import bert_tokenizer, clip_tokenizer, gpt2_tokenizer

SAM_IMG_SIZE = 64  # tiny SAM works on 64 px inputs (real: 1024)
SD_SCHEDULE = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
               "steps_offset": 1}  # Stable Diffusion 1.5's noise schedule


# --- one builder per role --------------------------------------------------------------------

def _clip_text_config(vocab_size: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                          num_hidden_layers=2, num_attention_heads=4, projection_dim=32,
                          max_position_embeddings=TEXT_LEN, bos_token_id=0, eos_token_id=1,
                          pad_token_id=1)


def make_clip(out: Path) -> None:
    """CLIP (the scorer): CLIPModel + CLIPProcessor at 32 px."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPVisionConfig

    tok = clip_tokenizer()
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, image_size=32, patch_size=8, projection_dim=32)
    config = CLIPConfig(text_config=_clip_text_config(len(tok)).to_dict(),
                        vision_config=vision.to_dict(), projection_dim=32)
    model = CLIPModel(config).eval()
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tok).save_pretrained(out)
    model.save_pretrained(out)


def make_caption(out: Path) -> None:
    """BLIP-2 (the captioner): Blip2ForConditionalGeneration with a tiny OPT + Blip2Processor."""
    from transformers import (Blip2Config, Blip2ForConditionalGeneration, Blip2Processor,
                              Blip2QFormerConfig, Blip2VisionConfig, BlipImageProcessor, OPTConfig)

    tok = gpt2_tokenizer(out / "_tok")
    num_query = 4
    vision = Blip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=4, image_size=32, patch_size=8)
    qformer = Blip2QFormerConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, encoder_hidden_size=32, vocab_size=64)
    text = OPTConfig(vocab_size=len(tok), hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                     num_attention_heads=4, word_embed_proj_dim=32, max_position_embeddings=128,
                     pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                     eos_token_id=tok.eos_token_id)
    config = Blip2Config(vision_config=vision.to_dict(), qformer_config=qformer.to_dict(),
                         text_config=text.to_dict(), num_query_tokens=num_query,
                         image_token_index=tok.convert_tokens_to_ids("<image>"))
    model = Blip2ForConditionalGeneration(config).eval()
    images = BlipImageProcessor(size={"height": 32, "width": 32})
    Blip2Processor(image_processor=images, tokenizer=tok, num_query_tokens=num_query).save_pretrained(out)
    model.save_pretrained(out)
    for f in (out / "_tok").iterdir():
        f.unlink()
    (out / "_tok").rmdir()


def make_detector(out: Path) -> None:
    """GroundingDINO (the grounder): GroundingDinoForObjectDetection + GroundingDinoProcessor."""
    from transformers import (BertConfig, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoImageProcessor, GroundingDinoProcessor, SwinConfig)

    tok = bert_tokenizer()
    backbone = SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1],
                          num_heads=[1, 2, 2, 4], window_size=4, out_features=["stage2", "stage3", "stage4"])
    text = BertConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=1, num_attention_heads=4, max_position_embeddings=64)
    config = GroundingDinoConfig(backbone_config=backbone.to_dict(), text_config=text.to_dict(),
                                 d_model=32, num_queries=16, encoder_layers=1, decoder_layers=2,
                                 encoder_ffn_dim=64, decoder_ffn_dim=64, encoder_attention_heads=2,
                                 decoder_attention_heads=2, num_feature_levels=3, max_text_len=32,
                                 encoder_n_points=2, decoder_n_points=2)
    model = GroundingDinoForObjectDetection(config).eval()
    images = GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})
    GroundingDinoProcessor(image_processor=images, tokenizer=tok).save_pretrained(out)
    model.save_pretrained(out)


def make_sam(out: Path) -> None:
    """Segment Anything: a tiny ``Sam`` assembled from segment-anything's own modules.

    Saved like the real checkpoints (a state-dict ``.pth``) plus ``sam_config.json`` giving
    the sizes, which the loader reads when present (real checkpoints use the named registry).
    """
    from tools.models import build_sam

    config = {"encoder_embed_dim": 32, "encoder_depth": 2, "encoder_num_heads": 2,
              "encoder_global_attn_indexes": [1], "img_size": SAM_IMG_SIZE, "patch_size": 8,
              "prompt_embed_dim": 32, "mlp_dim": 64}
    sam = build_sam(config)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sam_config.json").write_text(json.dumps(config, indent=2))
    torch.save(sam.state_dict(), out / "sam.pth")


def _unet(in_channels: int):
    """A three-level UNet with attention only at the lowest level (latents / 4).

    Self-attention costs (tokens)^2: at the full latent size of a 512x384 work image (64x48 =
    3072 tokens) one tiny step took 0.86 s on two CPU cores, 88 % of it in attention, so a
    20-step edit at the default size took 11-17 s. At latents / 4 (192 tokens) a step takes
    about 0.06 s. The real SD-1.5 UNet has attention at its upper levels too; this one is a
    wiring check, and every block type (cross-attention down / mid / up) is still exercised.
    """
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8, in_channels=in_channels, out_channels=4, layers_per_block=1,
        block_out_channels=(16, 32, 64), down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        attention_head_dim=8, norm_num_groups=8)


def _sd_parts(in_channels: int) -> dict:
    """UNet, VAE (8x down-sampling, like SD's), text encoder and tokenizer."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel

    tok = clip_tokenizer()
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8,
                        block_out_channels=(8, 16, 16, 16),
                        down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, sample_size=64)
    return {"unet": _unet(in_channels), "vae": vae, "tokenizer": tok,
            "text_encoder": CLIPTextModel(_clip_text_config(len(tok))).eval()}


def make_ip2p(out: Path) -> None:
    """InstructPix2Pix: its UNet takes 8 channels (noisy latents + image latents)."""
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline

    pipe = StableDiffusionInstructPix2PixPipeline(
        **_sd_parts(8), scheduler=EulerAncestralDiscreteScheduler(**SD_SCHEDULE), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(out)


def make_sd(out: Path) -> None:
    """Stable Diffusion 1.5 layout (DiffEdit's backbone)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    scheduler = DDIMScheduler(**SD_SCHEDULE, clip_sample=False, set_alpha_to_one=False)
    pipe = StableDiffusionPipeline(**_sd_parts(4), scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(out)


def make_inpaint(out: Path) -> None:
    """Stable Diffusion inpainting: its UNet takes 9 channels (latents + mask + masked image)."""
    from diffusers import PNDMScheduler, StableDiffusionInpaintPipeline

    pipe = StableDiffusionInpaintPipeline(**_sd_parts(9), scheduler=PNDMScheduler(skip_prk_steps=True, **SD_SCHEDULE),
                                          safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)
    pipe.save_pretrained(out)


def make_taesd(out: Path) -> None:
    """TAESD (the tiny preview autoencoder): an ``AutoencoderTiny`` with SD's 4 latent channels."""
    from diffusers import AutoencoderTiny

    AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                    num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1),
                    latent_channels=4).save_pretrained(out)


def _modern(name: str) -> Callable[[Path], None]:
    """A builder of :mod:`tools.tiny_modern` (the issue-20 models), imported when it runs."""
    def build(out: Path) -> None:
        from tools import tiny_modern

        getattr(tiny_modern, name)(out)

    build.__doc__ = f"tools.tiny_modern.{name}"
    return build


BUILDERS: dict[str, Callable[[Path], None]] = {
    "caption": make_caption, "detector": make_detector, "sam": make_sam, "ip2p": make_ip2p,
    "sd": make_sd, "inpaint": make_inpaint, "clip": make_clip, "taesd": make_taesd,
    "qwen-edit": _modern("make_qwen_edit"), "kontext": _modern("make_kontext"), "klein": _modern("make_klein"),
    "sam3": _modern("make_sam3"),
    "sam2": _modern("make_sam2"),
}


def make_tiny(directory: str | Path, roles: list[str] | None = None, seed: int = 0) -> Path:
    """Write tiny random models for ``roles`` (default: all) under ``directory/<role>``."""
    from tools.types import LocaleditError

    directory = Path(directory)
    unknown = [r for r in roles or [] if r not in BUILDERS]
    if unknown:
        raise LocaleditError(f"Unknown model role '{unknown[0]}'; known: {', '.join(BUILDERS)}.")
    for role in roles or list(BUILDERS):
        torch.manual_seed(seed)
        BUILDERS[role](directory / role)
    return directory
