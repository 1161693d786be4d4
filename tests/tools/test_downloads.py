"""Downloads fetch exactly what the loaders read: file selection from real repository layouts.

The listings below are the layouts of the public repositories (root single-file checkpoints,
``.bin`` twins, fp16 variants, a safety checker, ``non_ema`` weights); the Hub cannot be reached
here, so the selection is checked on them and the dry run's offline answer is checked as users see it.
"""

from __future__ import annotations

import pytest

from agent.cli import main
from tools.downloads import select_files
from tools.types import LocaleditError

PIPELINE_PARTS = {
    "unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "text_encoder": "model",
    "safety_checker": "model",
}


def sd_listing(fp16: bool = True, root: tuple[str, ...] = ("v1-5-pruned.safetensors", "v1-5-pruned.ckpt",
                                                           "v1-5-pruned-emaonly.safetensors")) -> list[str]:
    """A Stable Diffusion 1.5 style repository."""
    files = ["model_index.json", "README.md", ".gitattributes", *root,
             "scheduler/scheduler_config.json", "tokenizer/vocab.json", "tokenizer/merges.txt",
             "tokenizer/tokenizer_config.json", "tokenizer/special_tokens_map.json",
             "feature_extractor/preprocessor_config.json", "unet/diffusion_pytorch_model.non_ema.safetensors"]
    for folder, stem in PIPELINE_PARTS.items():
        files += [f"{folder}/config.json", f"{folder}/{stem}.safetensors", f"{folder}/{stem}.bin"]
        if fp16:
            files += [f"{folder}/{stem}.fp16.safetensors", f"{folder}/{stem}.fp16.bin"]
    return files


def test_pipeline_files_are_its_folders_never_root_checkpoints_or_the_safety_checker():
    chosen = select_files("sd", sd_listing(), cuda_fp16=False)
    assert chosen == sorted([
        "model_index.json", "feature_extractor/preprocessor_config.json", "scheduler/scheduler_config.json",
        "text_encoder/config.json", "text_encoder/model.safetensors",
        "tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json",
        "tokenizer/vocab.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json", "vae/diffusion_pytorch_model.safetensors"])
    ip2p = select_files("ip2p", sd_listing(root=("instruct-pix2pix-00-22000.safetensors",
                                                 "instruct-pix2pix-00-22000.ckpt")), cuda_fp16=False)
    assert not [f for f in ip2p if "/" not in f and f != "model_index.json"]
    assert not [f for f in ip2p if f.startswith("safety_checker/") or f.endswith((".bin", ".ckpt"))]


def test_fp16_variant_on_cuda_only_and_only_when_every_weight_folder_has_it():
    chosen = select_files("inpaint", sd_listing(), cuda_fp16=True)
    weights = [f for f in chosen if f.endswith(".safetensors")]
    assert weights == ["text_encoder/model.fp16.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
                       "vae/diffusion_pytorch_model.fp16.safetensors"]
    partial = [f for f in sd_listing() if f != "vae/diffusion_pytorch_model.fp16.safetensors"]
    weights = [f for f in select_files("inpaint", partial, cuda_fp16=True) if f.endswith(".safetensors")]
    assert ".fp16." not in "".join(weights) and len(weights) == 3  # all default files, as the loader reads
    assert select_files("sd", sd_listing(fp16=False), cuda_fp16=True) == select_files("sd", sd_listing(), False)


def test_transformers_files_are_config_processor_and_safetensors_shards():
    listing = ["config.json", "generation_config.json", "preprocessor_config.json", "processor_config.json",
               "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
               "added_tokens.json", "README.md", ".gitattributes",
               "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json",
               "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin", "pytorch_model.bin.index.json",
               "tf_model.h5", "flax_model.msgpack"]
    chosen = select_files("caption", listing, cuda_fp16=True)
    assert "model-00001-of-00002.safetensors" in chosen and "model.safetensors.index.json" in chosen
    assert not [f for f in chosen if f.endswith((".bin", ".h5", ".msgpack", ".md")) or "pytorch_model" in f]
    assert "README.md" not in chosen and "preprocessor_config.json" in chosen


def test_a_repository_without_safetensors_is_refused_in_one_sentence():
    with pytest.raises(LocaleditError, match="no safetensors weights in vae/"):
        select_files("sd", [f for f in sd_listing(fp16=False) if not f.startswith("vae/diffusion_pytorch_model.s")],
                     cuda_fp16=False)


def test_dry_run_offline_says_it_needs_the_network(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("LOCALEDIT_MODELS_DIR", raising=False)
    assert main(["models", "download", "--dry-run", "ip2p"]) == 6  # a network failure has its own code
    assert capsys.readouterr().err == ("error: Listing or fetching timbrooks/instruct-pix2pix needs the network, and "
                                       "HF_HUB_OFFLINE is set; unset it (or set it to 0) where huggingface.co can be "
                                       "reached.\n")  # whole: it was cut mid-word ("unset the `HF_HUB_O).")


def test_dry_run_of_local_folders_fetches_nothing(tiny_models_dir, capsys):
    assert main(["models", "download", "--dry-run", "clip", "sam", "--models", str(tiny_models_dir)]) == 0
    out = capsys.readouterr().out
    assert "clip: a local folder, nothing to download" in out and out.strip().endswith("total: 0 B")
