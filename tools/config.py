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
from typing import Literal, Optional, Union
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
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
    sam_type: Literal["vit_b", "vit_l", "vit_h"] = Field(
        "vit_b", description="Segment Anything's image encoder (a make-random folder has vit_b and vit_h).")
    offload: Literal["none", "model"] = Field(
        "none", description="'model': on CUDA, keep BLIP-2 and the diffusion pipelines in CPU memory and move "
        "each to the GPU for its stage (diffusers' model CPU offload for the pipelines); 'none' keeps everything "
        "resident. Computed, not measured (docs/figures.md): about 8.6 GiB on the GPU at once with 'model', "
        "17.3 GiB with 'none', in fp16, before the CUDA context and workspaces.")

    # --- images -----------------------------------------------------------------------
    max_side: int = Field(512, ge=64, le=2048, description="Models work at this long side (multiple of 8).")
    max_upload_bytes: int = Field(40 * 1024 * 1024, ge=1, description="Largest accepted image file.")
    max_image_pixels: int = Field(64_000_000, ge=1, description="Largest accepted image (width x height); decompression-bomb guard.")
    max_image_side: int = Field(16384, ge=64, description="Longest accepted image side in pixels.")
    max_aspect_ratio: float = Field(20.0, ge=1.0, description="Largest accepted long side / short side of an image "
                                    "(a 1,000,000x2 strip fits the pixel limit but no model).")

    # --- grounding and masks ------------------------------------------------------------
    box_threshold: float = Field(0.3, ge=0, le=1, description="GroundingDINO: keep boxes scoring above this.")
    text_threshold: float = Field(0.25, ge=0, le=1, description="GroundingDINO: label tokens scoring above this.")
    mask_dilate: int = Field(4, ge=0, description="Pixels (at work size) the SAM mask grows before editing.")
    feather: int = Field(6, ge=0, description="Feather radius (at full size) of the composite edge.")

    # --- diffusion --------------------------------------------------------------------
    steps: int = Field(20, ge=1, le=200, description="Diffusion steps of an edit.")
    guidance_scale: float = Field(7.5, description="Text guidance (classifier-free guidance scale) of the diffusion editors.")
    image_guidance_scale: float = Field(1.5, description="InstructPix2Pix's image guidance (how closely the edit keeps "
                                        "the input; below 1 the pipeline turns guidance off).")
    encoding_ratio: float = Field(0.7, gt=0, le=1, description="DiffEdit's encoding ratio (InstructEdit sec. 4.5).")
    regionwise_encoding_ratio: float = Field(
        1.0, gt=0, le=1, description="Region-wise diffusion's start as a fraction of the schedule. 1 runs every "
        "step from T, as R-SIE sec. 4.1 (eq. 6) does; below 1 is our departure: it starts later, with the "
        "region's pure noise at a timestep the UNet does not expect it.")
    seed: int = Field(0, description="Seed of the first attempt ('try again' takes the next).")
    black_mask_input: bool = Field(False, description="ip2p-composite: black out the background before editing (CMU).")

    # --- newer editors and segmenters (issue 20; docs/editors.md) ---------------------------
    grounder: Literal["groundingdino", "sam3"] = Field(
        "groundingdino", description="What finds the plan's object: 'groundingdino' (boxes; SAM then segments "
        "the chosen one) or 'sam3' (SAM 3 finds every instance of the noun phrase with its mask in one model).")
    segmenter: Literal["sam", "sam2"] = Field(
        "sam", description="The box / point segmenter: 'sam' (Segment Anything) or 'sam2' (SAM 2.1).")
    sam3_threshold: float = Field(0.5, ge=0, le=1, description="SAM 3: keep instances scoring above this.")
    crop: Literal["modern", "all", "off"] = Field(
        "modern", description="Edit the region at its own resolution: a crop around it (the region plus context, "
        "at least the editor's native size) is what the editor sees. 'modern': for qwen-edit and kontext; "
        "'all': every masked editor; 'off': the whole photo scaled down.")
    modern_side: int = Field(1024, ge=64, le=2048, description="qwen-edit / kontext / klein: the side of the square area "
                             "they work at (natively 1024 x 1024).")
    qwen_true_cfg: float = Field(4.0, ge=0, le=50, description="qwen-edit: true classifier-free guidance (the "
                                 "request's guidance when it gives none; above 1 a step costs two passes).")
    kontext_guidance: float = Field(2.5, ge=0, le=50, description="kontext: FLUX's distilled guidance (the "
                                    "request's guidance when it gives none).")
    klein_guidance: float = Field(1.0, ge=0, le=50, description="klein: classifier-free guidance (the request's "
                                  "guidance when it gives none; the step-distilled 4 B model ignores it).")
    modern_inpaint: bool = Field(True, description="qwen-edit / kontext / klein: run their inpaint pipelines inside the "
                                 "mask at the request's strength (default 0.8; the knob the judge's retries move); "
                                 "false: their edit pipelines edit the whole crop and the region is composited.")

    # --- agent ------------------------------------------------------------------------
    data_dir: Path = Field(default_factory=_default_data_dir, description="Conversations (SQLite), images by content "
                           "hash and the per-thread turn locks; default $XDG_DATA_HOME/localedit or "
                           "~/.local/share/localedit.")
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
    llm_vision: Literal["auto", "on", "off"] = Field(
        "auto", description="Send the photo to the planner LLM (downscaled, as an image_url part): 'auto' sends it "
        "until a server refuses images, then remembers that server and uses the caption; 'off' never sends it.")
    llm_image_side: int = Field(768, ge=64, le=4096, description="Long side, in pixels, of the photo sent to a "
                                "vision LLM.")
    llm_box_format: Literal["auto", "pixels", "grid1000"] = Field(
        "auto", description="How the planner LLM writes a box: 'pixels' of the image as sent (Qwen2.5-VL's "
        "bbox_2d), 'grid1000' on a 0-1000 grid (Qwen3-VL, Gemma 3); 'auto' chooses by the model's name "
        "(qwen2.5-vl / qwen2.5vl: pixels, any other: grid1000).")
    llm_turn_budget: float = Field(60.0, gt=0, le=1800, description="Seconds of LLM time per turn, all requests "
                                   "together; after that the built-in parser answers.")
    llm_max_tokens: int = Field(200, ge=16, le=4096, description="Longest LLM answer, in tokens (a plan needs "
                                "about 150); sent as max_completion_tokens and max_tokens.")
    editor: str = Field("auto", description="Preferred editor for localized edits, or 'auto' (by action).")
    max_attempts: int = Field(3, ge=1, le=10, description="Edits tried per turn before keeping the best; the "
                              "baseline (plain InstructPix2Pix) is always the last of them.")
    auto_retry: bool = Field(True, description="Let the judge retry an edit that fails its checks (up to "
                             "max_attempts).")
    attempt_order: list[Literal["primary", "other-editor", "stronger", "other-candidate", "baseline"]] = Field(
        default_factory=lambda: ["primary", "other-editor", "stronger", "other-candidate", "baseline"],
        description="The judge's attempts in order, cut to max_attempts with the baseline kept last: 'primary' (the "
        "action's editor), 'other-editor' (region-wise or DiffEdit for replace / attribute, region-wise for "
        "remove), 'stronger' (the primary's knob moved), 'other-candidate' (another detected object, when the "
        "choice was a tie), 'baseline' (plain InstructPix2Pix on the whole image).")
    batch_retries: Union[Literal["auto"], int] = Field(
        "auto", description="Queued attempts that share the InstructPix2Pix pipeline with the attempt before them "
        "(a 'stronger edit', another seed, the baseline) run with it in ONE batched call, on speculation: when the "
        "judge asks for one, it is there. How many (0-4: 0 runs one attempt per call); 'auto': 1 on a GPU worker "
        "in this process, 0 on a CPU (a batch there costs about what its calls cost one by one).")
    # The judge's thresholds, on the papers' scales (tools.types.SCORE_SCALES); where each comes from:
    # - CLIP direction: InstructEdit Table 1 has every method's mean positive (0.095-0.153); a negative
    #   value means the image moved away from the target caption: the instruction followed backwards.
    min_clip_dir: float = Field(0.0, description="Judge: a CLIP direction similarity (-1..1) below this is an edit "
                                "that went the wrong way.")
    # - CLIP-RC has no floor: Table 2's replace RC means run from 0.9 (InstructEdit) to 40.2 (R-SIE +RwDP), so a
    #   fixed floor fails whole editors. A replace fails when its crop does not score the target category above
    #   the source (R-SIE sec. 4.2 accepts a generated region only when CLIP classifies it as the target).
    min_rc_lead: float = Field(0.0, ge=-100, le=100, description="Judge, replace: the target category's CLIP-RC "
                               "must lead the source category's by at least this (0-100 points; 0: the crop looks at least as "
                               "much like the target as the source, R-SIE sec. 4.2's CLIP check).")
    # - remove: R-SIE Table 2 Delete RC (lower is better) is 5.9-17.4 for R-SIE (both inferences, both
    #   settings), 17.4-20.1 for plain IP2P, 19.5-31.0 for InstructEdit and 26.9-30.1 for IP2P +RwDP, whose
    #   deletions often fail; above 20 the object is still there.
    max_clip_rc_source: float = Field(20.0, description="Judge, remove: the source category's probability (0-100) "
                                      "in the target box above this: the object is still there.")
    # - CLIP-GC: R-SIE Table 2: plain IP2P, which moves the background, scores 87.2-89.4; every +RwDP and
    #   InstructEdit row 91.7-94.4. Below 90 the background moved.
    min_clip_gc: float = Field(90.0, description="Judge: CLIP-GC (0-100, background with the target boxes blanked) "
                               "below this: the background moved.")
    # - L1 outside: R-SIE Table 3 (whole image, against the ground truth) has 0.0678 for RwDP, the best
    #   background keeper, and 0.1122 for IP2P; outside the object and against the input we allow under half
    #   of RwDP's figure.
    max_l1_outside: float = Field(0.03, description="Judge: mean pixel change (0-1) outside the object mask "
                                  "allowed, the edit's dilation and feather band included.")
    # - A global edit has no region and no outside: its direction alone cannot fail when nothing changed
    #   (a zero image change gives a direction of exactly 0.0, which passes min_clip_dir). R-SIE Table 3's
    #   most conservative whole-image editor (RwDP) still differs by 0.0678; a mean change under 0.01
    #   (about 2.5 of 255 levels) is an edit that did nothing visible.
    min_l1_global: float = Field(0.01, ge=0, le=1, description="Judge, global edits: a mean pixel change (0-1) "
                                 "of the whole photo below this: the photo did not change.")
    # - The same floor inside the object mask for masked editors: a region that moved less than that did not
    #   change (their CLIP direction is then noise around 0).
    min_l1_region: float = Field(0.01, ge=0, le=1, description="Judge, masked editors: a mean pixel change (0-1) "
                                 "inside the object mask below this: the region did not change.")
    # - The baseline comparison (CMU study, Table 3): per sample, the composite's CLIP direction minus plain
    #   InstructPix2Pix's averaged -0.0303 (std 0.085, 20 % of samples worse). A localized attempt whose region
    #   direction is lower than the baseline's by more than that mean loss falls back to the baseline.
    baseline_margin: float = Field(0.03, ge=0, le=2, description="Judge: a localized attempt whose CLIP direction on "
                                   "the region is this much below plain InstructPix2Pix's on the same region falls "
                                   "back to the baseline (CMU Table 3's mean direction delta, -0.0303).")
    # - The seam and the mask have no paper table; each threshold says what it separates (docs/judge.md).
    max_seam: float = Field(0.5, ge=0, le=1, description="Judge, masked editors: the share of the change near the "
                            "edit's edge made in the one pixel step across it (tools.seam) above this, with a step "
                            "beyond the photo's own edge there: a pasted seam. A hard edge scores about 1, a 1 px "
                            "feather 0.5, 2 px 0.26, the default 6 px 0.09.")
    min_mask_fill: float = Field(0.15, ge=0, le=1, description="Judge, masked editors: the object mask covering less "
                                 "than this share of its box is a part of the object (a head in a person's box "
                                 "covers about a tenth of it; thin whole objects such as a bicycle about a quarter).")

    # --- region-wise diffusion (R-SIE RwDP) ----------------------------------------------
    regionwise_fit_alpha: bool = Field(True, description="Fit R-SIE's per-image alpha (eq. 7) that rescales the "
                                       "reused reconstruction noise; off: alpha = 1.")
    regionwise_alpha_iters: int = Field(100, ge=1, le=1000, description="Most optimisation steps of the alpha fit "
                                        "(scheduler only, no UNet); R-SIE uses 100.")

    # --- conversation ---------------------------------------------------------------
    turn_wait: float = Field(10.0, ge=0, description="Seconds a message waits for a turn already running on its "
                             "thread (another tab or process) before the answer is 'still working on your last message'.")
    keep_checkpoints: int = Field(20, ge=2, description="LangGraph checkpoints kept per thread (older ones are "
                                  "pruned; the newest holds every version, image and message).")

    # --- worker -----------------------------------------------------------------------
    worker_url: Optional[str] = Field(None, description="Remote worker base URL; unset = in-process worker.")
    worker_token: Optional[str] = Field(None, description="Bearer token of the remote worker (or of this worker, "
                                        "for `localedit worker`); see worker_token_file.")
    worker_token_file: Optional[Path] = Field(
        None, description="File holding the worker token (first line), so it appears neither in argv nor in the "
        "environment; used when worker_token is unset.")
    worker_timeout: float = Field(300.0, gt=0, description="Seconds an edit may take (the worker's own limit per "
                                  "request, and the remote client's wait for an edit).")

    @field_validator("batch_retries")
    @classmethod
    def _batch_retries(cls, value):
        """'auto' or a count of 0-4."""
        if value != "auto" and not 0 <= int(value) <= 4:
            raise ValueError("give 'auto' or a number of attempts from 0 to 4")
        return value

    @field_validator("worker_url")
    @classmethod
    def _worker_address(cls, url: Optional[str]) -> Optional[str]:
        """An ``http(s)://HOST[:PORT]`` address; empty is unset (the in-process worker)."""
        if url is None or not url.strip():
            return None
        try:
            parts = urlsplit(url.strip())
            ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
        except ValueError:  # "http://[::1", a port past 65535
            ok = False
        if not ok:
            raise ValueError("give the worker's address as http://HOST:PORT")
        return url.strip()
    upload_timeout: float = Field(30.0, gt=0, description="Seconds a client has to send a request body to the "
                                  "worker (408 after): a stalled upload is dropped.")
    header_timeout: float = Field(10.0, gt=0, le=600, description="Seconds a client of the worker, the "
                                  "OpenAI-compatible API or MCP over HTTP has to send its request headers; a "
                                  "connection that has not finished them by then is closed.")
    api_origins: list[str] = Field(
        default_factory=list, description="Extra browser origins allowed to call the worker, the OpenAI-compatible "
        "API and MCP over HTTP (a page's own address is always allowed; other pages get 403).")
    max_request_memory: int = Field(
        1024 * 1024 * 1024, ge=1 << 20, description="The worker refuses (413) a request whose memory estimate "
        "(from the image sizes, before decoding) is above this, and runs at most this much estimated work at once.")
    caption_timeout: float = Field(30.0, gt=0, description="Seconds the agent waits for a remote worker's caption "
                                   "(BLIP-2); a caption that times out is not asked again for that photo.")
    ground_timeout: float = Field(30.0, gt=0, description="Seconds the agent waits for a remote worker's "
                                  "grounding (GroundingDINO).")
    segment_timeout: float = Field(30.0, gt=0, description="Seconds the agent waits for a remote worker's mask (SAM).")
    score_timeout: float = Field(60.0, gt=0, description="Seconds the remote client waits for the CLIP scores.")
    cache_bytes: int = Field(512 * 1024 * 1024, description="Bound of each per-image cache (LRU by bytes).")
    torch_compile: bool = Field(False, description="torch.compile the diffusion UNets: a slow first call, "
                                "faster after (GPU workers).")
    cuda_fast_math: bool = Field(True, description="On CUDA: TF32 matrix products and convolutions for the "
                                 "models that run in fp32 (SAM's image encoder, the fp32 parts of BLIP-2), and the "
                                 "diffusion UNets in channels-last memory format. No effect on a CPU.")
    overlap_caption: bool = Field(True, description="While BLIP-2 captions a new photo, ground the target the "
                                  "parser reads without the caption (and compute SAM's embedding) at the same time; "
                                  "used only when the plan read with the caption grounds the same phrase, so results "
                                  "are unchanged. Off: one model at a time (less GPU memory at once).")
    sam_bf16: bool = Field(True, description="On CUDA: SAM's image encoder (its ViT at 1024x1024, nearly all of "
                           "SAM's compute) under bf16 autocast; the embedding goes back to fp32 for the mask decoder, "
                           "the weights stay fp32. No effect on a CPU.")
    ip2p_scheduler: Literal["default", "euler_a", "dpm++", "unipc", "ddim"] = Field(
        "default", description="InstructPix2Pix's sampler: 'default' keeps the pipeline's own; 'dpm++' or "
        "'unipc' make usable edits in 8-12 steps (lower LOCALEDIT_STEPS with them).")
    preview_vae: bool = Field(False, description="Decode diffusion latents with the tiny autoencoder (TAESD, "
                              "model role 'taesd'): much faster decoding at preview quality.")
    attention: Literal["default", "sdpa", "eager"] = Field(
        "default", description="Attention kernels: 'default' keeps each library's own (PyTorch SDPA where "
        "supported), 'sdpa' asks for SDPA explicitly, 'eager' the plain implementation.")


    # --- chat UI (localedit chat) ------------------------------------------------------
    chat_password: Optional[SecretStr] = Field(
        None, description="Password of the chat UI. Required to listen on any address but loopback "
        "(`localedit chat --host 0.0.0.0`); set, it is asked for on loopback too.")
    chat_user: str = Field("localedit", min_length=1, max_length=64,
                           description="User name that goes with LOCALEDIT_CHAT_PASSWORD.")
    chat_login_failures: int = Field(5, ge=1, le=1000, description="Failed sign-ins one client address may make "
                                     "within LOCALEDIT_CHAT_LOGIN_WINDOW seconds; more are refused (429) until the "
                                     "oldest ages out.")
    chat_login_window: float = Field(60.0, gt=0, le=86400, description="Seconds a failed sign-in counts against "
                                     "its client address.")
    chat_origins: list[str] = Field(
        default_factory=list, description="Extra browser origins allowed to use the chat, e.g. "
        "'[\"https://edit.example.org\"]' behind a proxy; the chat's own address is always allowed.")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
