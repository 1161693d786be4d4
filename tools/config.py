"""All of localedit's settings, in one place.

Every field can be set by an environment variable prefixed ``LOCALEDIT_`` (for example
``LOCALEDIT_MAX_SIDE=768``) or by a ``.env`` file in the working directory. The LLM is
``LOCALEDIT_LLM_MODEL`` plus ``LOCALEDIT_LLM_BASE_URL`` and/or ``LOCALEDIT_LLM_API_KEY``; the
standard ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` variables are read as their fallbacks (from the
environment or ``.env`` alike).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal, Optional

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "localedit"


class Settings(BaseSettings):
    """localedit configuration. Env vars: ``LOCALEDIT_<FIELD>`` (case-insensitive)."""

    model_config = SettingsConfigDict(env_prefix="LOCALEDIT_", env_file=".env", extra="ignore",
                                      populate_by_name=True)

    # --- models -----------------------------------------------------------------------
    models_dir: Optional[Path] = Field(
        None, description="Folder with one sub-folder per model role (caption, detector, sam, "
        "ip2p, sd, inpaint, clip); a role found there is loaded from it instead of the Hub.")
    models_config: Optional[Path] = Field(
        None, description="TOML file mapping a role to a Hub id or a local folder, e.g. "
        "`clip = \"/models/clip\"`. Overrides the defaults; models_dir wins over it.")
    device: str = Field("auto", description="'auto' (cuda if available, else cpu), 'cpu', 'cuda', 'cuda:1', ...")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="'auto' is float16 on CUDA and float32 on CPU.")
    sam_type: Literal["vit_b", "vit_l", "vit_h"] = "vit_b"

    # --- images -----------------------------------------------------------------------
    max_side: int = Field(512, ge=64, le=2048, description="Models work at this long side (multiple of 8).")
    max_upload_bytes: int = Field(40 * 1024 * 1024, description="Largest accepted image file.")
    max_image_pixels: int = Field(64_000_000, description="Largest accepted image (width x height); decompression-bomb guard.")

    # --- grounding and masks ------------------------------------------------------------
    box_threshold: float = 0.3
    text_threshold: float = 0.25
    mask_dilate: int = Field(4, ge=0, description="Pixels (at work size) the SAM mask grows before editing.")
    feather: int = Field(6, ge=0, description="Feather radius (at full size) of the composite edge.")

    # --- diffusion --------------------------------------------------------------------
    steps: int = Field(20, ge=1, le=200)
    guidance_scale: float = 7.5
    image_guidance_scale: float = 1.5
    encoding_ratio: float = Field(0.7, gt=0, le=1, description="DiffEdit / region-wise strength.")
    seed: int = 0
    black_mask_input: bool = Field(False, description="ip2p-composite: black out the background before editing (CMU).")

    # --- agent ------------------------------------------------------------------------
    data_dir: Path = Field(default_factory=_default_data_dir)
    llm_model: Optional[str] = Field(None, description="Chat model name; with llm_base_url or llm_api_key set, "
                                     "enables the LLM.")
    llm_base_url: Optional[str] = Field(
        None, validation_alias=AliasChoices("LOCALEDIT_LLM_BASE_URL", "OPENAI_BASE_URL"),
        description="OpenAI-compatible server, e.g. http://127.0.0.1:11434/v1 (Ollama); unset: OpenAI's API. "
        "Falls back to OPENAI_BASE_URL.")
    llm_api_key: Optional[SecretStr] = Field(
        None, validation_alias=AliasChoices("LOCALEDIT_LLM_API_KEY", "OPENAI_API_KEY"),
        description="API key; a local server needs none. Falls back to OPENAI_API_KEY.")
    llm_timeout: float = Field(30.0, gt=0, le=600, description="Seconds one request to the LLM may take.")
    llm_retries: int = Field(1, ge=0, le=5, description="Retries of a failed LLM request (connection error, 429, "
                             "5xx); a timed-out request to a local server is never retried.")
    llm_turn_budget: float = Field(60.0, gt=0, le=1800, description="Seconds of LLM time per turn, all requests "
                                   "together; after that the built-in parser answers.")
    llm_max_tokens: int = Field(200, ge=16, le=4096, description="Longest LLM answer, in tokens (a plan needs "
                                "about 150); sent as max_completion_tokens and max_tokens.")
    editor: str = Field("auto", description="Preferred editor for localized edits, or 'auto' (by action).")
    max_attempts: int = Field(3, ge=1, le=10, description="Edits tried per turn before keeping the best.")
    auto_retry: bool = True
    min_clip_dir: float = Field(0.05, description="Judge: a CLIP direction similarity below this is a poor edit.")
    min_clip_rc: float = Field(0.18, description="Judge: the edited region must match the target text this well.")
    min_clip_gc: float = Field(0.85, description="Judge: below this the background moved too much.")
    max_l1_outside: float = Field(0.02, description="Judge: mean background change allowed (pixels in [0, 1]).")

    # --- worker -----------------------------------------------------------------------
    worker_url: Optional[str] = Field(None, description="Remote worker base URL; unset = in-process worker.")
    worker_token: Optional[str] = None
    worker_timeout: float = 300.0
    cache_bytes: int = Field(512 * 1024 * 1024, description="Bound of each per-image cache (LRU by bytes).")
    torch_compile: bool = Field(False, description="torch.compile the diffusion UNets: a slow first call, "
                                "faster after (GPU workers).")
    ip2p_scheduler: Literal["default", "euler_a", "dpm++", "unipc", "ddim"] = Field(
        "default", description="InstructPix2Pix's sampler: 'default' keeps the pipeline's own; 'dpm++' or "
        "'unipc' make usable edits in 8-12 steps (lower LOCALEDIT_STEPS with them).")
    preview_vae: bool = Field(False, description="Decode diffusion latents with the tiny autoencoder (TAESD, "
                              "model role 'taesd'): much faster decoding at preview quality.")
    attention: Literal["default", "sdpa", "eager"] = Field(
        "default", description="Attention kernels: 'default' keeps each library's own (PyTorch SDPA where "
        "supported), 'sdpa' asks for SDPA explicitly, 'eager' the plain implementation.")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
