"""The model registry: sources, real loading of the tiny models, and a missing model's message."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tools.config import Settings
from tools.models import SPECS, ModelRegistry, model_sources, resolve_device
from tools.types import ModelMissingError


def test_make_tiny_writes_every_role_in_the_real_formats(tiny_models_dir: Path):
    for role in SPECS:
        assert (tiny_models_dir / role).is_dir(), role
    # transformers models and processors: safetensors + processor files, no pickles
    for role in ("caption", "detector", "clip"):
        folder = tiny_models_dir / role
        assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
        assert (folder / "processor_config.json").is_file() or (folder / "preprocessor_config.json").is_file()
    # diffusers pipelines: model_index.json and one folder per component
    for role in ("ip2p", "sd", "inpaint"):
        folder = tiny_models_dir / role
        assert (folder / "model_index.json").is_file()
        assert list((folder / "unet").glob("*.safetensors")) and list((folder / "vae").glob("*.safetensors"))
    # SAM: a state-dict checkpoint like the official ones
    assert (tiny_models_dir / "sam" / "sam.pth").is_file()
    assert not list(tiny_models_dir.rglob("*.bin")), "no pickled .bin weights"


def test_models_dir_wins_over_config_file_and_defaults(tmp_path: Path):
    (tmp_path / "models" / "clip").mkdir(parents=True)
    config = tmp_path / "models.toml"
    config.write_text('clip = "/elsewhere/clip"\nip2p = "me/my-ip2p"\n')
    sources = model_sources(Settings(models_dir=tmp_path / "models", models_config=config, _env_file=None))
    assert sources["clip"] == str(tmp_path / "models" / "clip")
    assert sources["ip2p"] == "me/my-ip2p"
    assert sources["caption"] == "Salesforce/blip2-opt-2.7b"
    assert sources["detector"] == "IDEA-Research/grounding-dino-base"
    assert sources["sam"].endswith("sam_vit_b_01ec64.pth")
    vit_h = model_sources(Settings(sam_type="vit_h", _env_file=None))["sam"]
    assert vit_h.endswith("sam_vit_h_4b8939.pth")


def test_every_role_loads_through_the_registry_once(registry: ModelRegistry):
    loaded = {role: registry.get(role) for role in SPECS}
    assert type(loaded["caption"].model).__name__ == "Blip2ForConditionalGeneration"
    assert type(loaded["detector"].model).__name__ == "GroundingDinoForObjectDetection"
    assert type(loaded["clip"].model).__name__ == "CLIPModel"
    assert type(loaded["sam"].model).__name__ == "Sam"
    assert type(loaded["ip2p"].model).__name__ == "StableDiffusionInstructPix2PixPipeline"
    assert loaded["ip2p"].model.unet.config.in_channels == 8
    assert loaded["inpaint"].model.unet.config.in_channels == 9
    # the same objects on a second request: loaded once, resident
    assert all(registry.get(role) is loaded[role] for role in SPECS)
    assert registry.loaded() == sorted(SPECS)


def test_weights_are_the_saved_ones_not_fresh_random(registry: ModelRegistry, tiny_models_dir: Path):
    from safetensors.torch import load_file

    saved = load_file(str(tiny_models_dir / "clip" / "model.safetensors"))
    name, tensor = next((k, v) for k, v in saved.items() if v.ndim == 2)
    live = dict(registry.get("clip").model.named_parameters())
    assert torch.equal(live[name].detach().cpu(), tensor)


def test_missing_model_gives_one_clear_sentence(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty Hub cache
    reg = ModelRegistry(Settings(models_dir=tmp_path / "none", device="cpu", _env_file=None))
    for role in ("clip", "ip2p", "sam"):
        with pytest.raises(ModelMissingError) as info:
            reg.get(role)
        message = str(info.value)
        assert SPECS[role].title in message
        assert f"localedit models download {role}" in message
        assert "\n" not in message
    assert reg.loaded() == []


def test_device_and_dtype_choice():
    device, dtype = resolve_device(Settings(device="cpu", _env_file=None))
    assert (device.type, dtype) == ("cpu", torch.float32)
    device, dtype = resolve_device(Settings(device="cpu", dtype="bfloat16", _env_file=None))
    assert dtype == torch.bfloat16
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(Settings(_env_file=None))[0].type == expected


def test_download_skips_local_folders_and_fails_in_one_line_offline(tiny_models_dir, tmp_path, monkeypatch):
    from tools.downloads import download
    from tools.types import LocaleditError

    done = download(["clip", "sam"], Settings(models_dir=tiny_models_dir, _env_file=None))
    assert all("nothing to download" in v for v in done.values())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(LocaleditError) as info:
        download(["ip2p"], Settings(models_dir=tmp_path / "none", _env_file=None))
    assert "timbrooks/instruct-pix2pix" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(LocaleditError, match="Unknown model role 'fish'"):
        download(["fish"], Settings(_env_file=None))
