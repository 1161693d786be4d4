"""Tiny random versions of the newer editors and segmenters (issue 20), for :mod:`tools.tiny`.

Same classes and the same on-disk layout as the published repositories (``save_pretrained``), with
every size scaled down so a 2-step edit runs in seconds on a CPU:

* ``qwen-edit``: ``QwenImageEditPipeline`` (``QwenImageTransformer2DModel``, ``AutoencoderKLQwenImage``,
  ``Qwen2_5_VLForConditionalGeneration`` + ``Qwen2VLProcessor``), the layout of Qwen/Qwen-Image-Edit;
* ``kontext``: ``FluxKontextPipeline`` (``FluxTransformer2DModel``, ``AutoencoderKL`` with FLUX's 16
  latent channels, ``CLIPTextModel`` + ``T5EncoderModel``), the layout of FLUX.1-Kontext-dev;
* ``sam3``: ``Sam3Model`` + ``Sam3Processor`` (text-prompted detection and masks in one model);
* ``sam2``: ``Sam2Model`` + ``Sam2Processor`` (SAM 2.1, box / point prompts).

The sizes follow the libraries' own tests (diffusers' ``get_dummy_components``, transformers' model
testers), which are the smallest configurations the classes accept.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tools.vocab import clip_tokenizer, qwen2_tokenizer, qwen_special_ids, t5_tokenizer

TINY_VL_PIXELS = 56 * 56
"""The tiny Qwen2.5-VL image processor sees at most this many pixels (real: 1280 * 28 * 28)."""


def _flow_scheduler(**extra):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(**extra)


def make_qwen_edit(out: Path) -> None:
    """Qwen-Image-Edit: a 2-layer MMDiT over a 4-channel Wan-style VAE, a 2-layer Qwen2.5-VL encoder."""
    from diffusers import AutoencoderKLQwenImage, QwenImageEditPipeline, QwenImageTransformer2DModel
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessor,
                              Qwen2VLProcessor, Qwen2VLVideoProcessor)

    z_dim, hidden = 4, 16
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=z_dim * 4, out_channels=z_dim, num_layers=2, attention_head_dim=16,
        num_attention_heads=3, joint_attention_dim=hidden, guidance_embeds=False, axes_dims_rope=(8, 4, 4))
    vae = AutoencoderKLQwenImage(base_dim=z_dim * 6, z_dim=z_dim, dim_mult=[1, 2, 4], num_res_blocks=1,
                                 temperal_downsample=[False, True], latents_mean=[0.0] * z_dim,
                                 latents_std=[1.0] * z_dim)
    tok = qwen2_tokenizer()
    config = Qwen2_5_VLConfig(
        text_config={"hidden_size": hidden, "intermediate_size": hidden, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": len(tok),
                     "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
                     "rope_theta": 1000000.0, "bos_token_id": None, "eos_token_id": None},
        vision_config={"depth": 2, "hidden_size": hidden, "intermediate_size": hidden, "num_heads": 2,
                       "out_hidden_size": hidden, "fullatt_block_indexes": [1], "window_size": 56},
        hidden_size=hidden, vocab_size=len(tok), bos_token_id=None, eos_token_id=None,
        pad_token_id=None, **qwen_special_ids(tok))
    text_encoder = Qwen2_5_VLForConditionalGeneration(config).eval()
    images = Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=TINY_VL_PIXELS)
    videos = Qwen2VLVideoProcessor(min_pixels=28 * 28, max_pixels=TINY_VL_PIXELS)
    processor = Qwen2VLProcessor(image_processor=images, tokenizer=tok, video_processor=videos)
    pipe = QwenImageEditPipeline(transformer=transformer, vae=vae, scheduler=_flow_scheduler(),
                                 text_encoder=text_encoder, tokenizer=tok, processor=processor)
    pipe.save_pretrained(out)


def make_kontext(out: Path) -> None:
    """FLUX.1 Kontext: a 1+1-layer FLUX transformer, a 16-channel KL autoencoder, CLIP and T5 encoders."""
    from diffusers import AutoencoderKL, FluxKontextPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    latent = 4
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=latent * 4, num_layers=1, num_single_layers=1,
        attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
        guidance_embeds=True, axes_dims_rope=[4, 4, 8])
    clip_tok, t5_tok = clip_tokenizer(), t5_tokenizer()
    clip = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(clip_tok), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, projection_dim=32, max_position_embeddings=77, bos_token_id=0,
        eos_token_id=1, pad_token_id=1)).eval()
    t5 = T5EncoderModel(T5Config(vocab_size=len(t5_tok), d_model=32, d_kv=8, d_ff=37, num_layers=2,
                                 num_heads=4, relative_attention_num_buckets=8, feed_forward_proj="gated-gelu",
                                 pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)).eval()
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=latent, norm_num_groups=8,
                        block_out_channels=(8, 16, 16, 16), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, sample_size=64, use_quant_conv=False,
                        use_post_quant_conv=False, shift_factor=0.1159, scaling_factor=0.3611)
    scheduler = _flow_scheduler(base_image_seq_len=256, base_shift=0.5, max_image_seq_len=4096,
                                max_shift=1.15, use_dynamic_shifting=True)
    pipe = FluxKontextPipeline(scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=clip_tok,
                               text_encoder_2=t5, tokenizer_2=t5_tok, transformer=transformer,
                               image_encoder=None, feature_extractor=None)
    pipe.save_pretrained(out)


QWEN3_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}")
"""Qwen3's chat template, reduced to what ``Flux2KleinPipeline`` renders (one user message, thinking off)."""


def make_klein(out: Path) -> None:
    """FLUX.2 [klein]: a 1+1-layer FLUX.2 transformer, a 4-channel FLUX.2 autoencoder, and a 28-layer
    Qwen3 text encoder of width 16 (the pipeline reads its hidden states 9, 18 and 27, as from Qwen3-4B)."""
    from diffusers import AutoencoderKLFlux2, Flux2KleinPipeline, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tok = qwen2_tokenizer()
    tok.chat_template = QWEN3_CHAT_TEMPLATE
    hidden = 16
    text_encoder = Qwen3ForCausalLM(Qwen3Config(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden, num_hidden_layers=28,
        num_attention_heads=2, num_key_value_heads=2, head_dim=8, max_position_embeddings=512,
        bos_token_id=None, eos_token_id=None, pad_token_id=None)).eval()
    latent = 4
    transformer = Flux2Transformer2DModel(
        patch_size=1, in_channels=latent * 4, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=3 * hidden, timestep_guidance_channels=256,
        axes_dims_rope=[4, 4, 4, 4], guidance_embeds=False)
    vae = AutoencoderKLFlux2(in_channels=3, out_channels=3, latent_channels=latent, norm_num_groups=8,
                             block_out_channels=(8, 16, 16, 16), down_block_types=("DownEncoderBlock2D",) * 4,
                             up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, sample_size=64,
                             use_quant_conv=False, use_post_quant_conv=False)
    pipe = Flux2KleinPipeline(scheduler=_flow_scheduler(), vae=vae, text_encoder=text_encoder, tokenizer=tok,
                              transformer=transformer, is_distilled=True)
    pipe.save_pretrained(out)


SAM3_IMG_SIZE = 112
"""Tiny SAM 3 works on 112 px inputs (8 x 8 patches of 14 px; real: 1008)."""


def make_sam3(out: Path) -> None:
    """SAM 3: a 2-layer ViT with a 2-level FPN, a CLIP text encoder, 1-layer DETR encoder / decoder."""
    from transformers import Sam3Config, Sam3ImageProcessor, Sam3Model, Sam3Processor
    from transformers.models.sam3.configuration_sam3 import (Sam3DETRDecoderConfig, Sam3DETREncoderConfig,
                                                             Sam3GeometryEncoderConfig, Sam3MaskDecoderConfig,
                                                             Sam3VisionConfig, Sam3ViTConfig)

    tok = clip_tokenizer()
    backbone = Sam3ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                             image_size=SAM3_IMG_SIZE, patch_size=14, window_size=4, global_attn_indexes=[1])
    config = Sam3Config(
        vision_config=Sam3VisionConfig(backbone_config=backbone, fpn_hidden_size=32, scale_factors=[2.0, 1.0]),
        text_config={"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "projection_dim": 32,
                     "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 32,
                     "hidden_act": "gelu", "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
        geometry_encoder_config=Sam3GeometryEncoderConfig(hidden_size=32, num_layers=1, num_attention_heads=4,
                                                          intermediate_size=64, mask_fuser_hidden_size=32,
                                                          mask_fuser_num_layers=1),
        detr_encoder_config=Sam3DETREncoderConfig(hidden_size=32, num_layers=1, num_attention_heads=4,
                                                  intermediate_size=64),
        detr_decoder_config=Sam3DETRDecoderConfig(hidden_size=32, num_layers=1, num_queries=8,
                                                  num_attention_heads=4, intermediate_size=64),
        mask_decoder_config=Sam3MaskDecoderConfig(hidden_size=32, num_upsampling_stages=2))
    Sam3Model(config).eval().save_pretrained(out)
    tok.model_max_length = 32
    images = Sam3ImageProcessor(size={"height": SAM3_IMG_SIZE, "width": SAM3_IMG_SIZE})
    Sam3Processor(image_processor=images, tokenizer=tok).save_pretrained(out)


SAM2_IMG_SIZE = 64
"""Tiny SAM 2.1 works on 64 px inputs (real: 1024)."""


def make_sam2(out: Path) -> None:
    """SAM 2.1: a 4-stage Hiera of 1, 1, 2, 1 blocks (dims 8-64), a 32-wide mask decoder."""
    from transformers import Sam2Config, Sam2ImageProcessor, Sam2Model, Sam2Processor
    from transformers.models.sam2.configuration_sam2 import (Sam2HieraDetConfig, Sam2MaskDecoderConfig,
                                                             Sam2PromptEncoderConfig, Sam2VisionConfig)

    s = SAM2_IMG_SIZE
    backbone = Sam2HieraDetConfig(hidden_size=8, image_size=[s, s], blocks_per_stage=[1, 1, 2, 1],
                                  embed_dim_per_stage=[8, 16, 32, 64], num_attention_heads_per_stage=[1, 1, 2, 2],
                                  window_size_per_stage=[4, 4, 4, 4], global_attention_blocks=[3],
                                  window_positional_embedding_background_size=[2, 2])
    vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=[64, 32, 16, 8],
                              backbone_feature_sizes=[[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]],
                              fpn_hidden_size=32)
    config = Sam2Config(vision_config=vision,
                        prompt_encoder_config=Sam2PromptEncoderConfig(hidden_size=32, image_size=s, patch_size=16),
                        mask_decoder_config=Sam2MaskDecoderConfig(hidden_size=32, mlp_dim=64, num_attention_heads=2,
                                                                  iou_head_hidden_dim=32))
    Sam2Model(config).eval().save_pretrained(out)
    images = Sam2ImageProcessor(size={"height": s, "width": s}, mask_size={"height": s // 4, "width": s // 4})
    Sam2Processor(image_processor=images, target_size=s).save_pretrained(out)


__all__ = ["make_qwen_edit", "make_kontext", "make_klein", "make_sam3", "make_sam2"]
