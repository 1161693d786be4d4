"""Downloads that fetch exactly the files the loaders read, and a dry run that lists them.

A repository holds far more than a loader reads: Stable Diffusion 1.5's has root single-file
checkpoints (``v1-5-pruned.safetensors``, ``v1-5-pruned-emaonly.safetensors``, their ``.ckpt``
twins: about 12 GB), a safety checker we never load, ``.bin`` copies of every weight file and
fp16 variants; InstructPix2Pix's has ``instruct-pix2pix-00-22000.safetensors`` (7.7 GB). So the
files to fetch are chosen per role from the repository's listing (:func:`select_files`), by the
rules the loaders in :mod:`tools.models` follow:

* a diffusers pipeline (``ip2p``, ``sd``, ``inpaint``) is loaded by ``from_pretrained`` with
  ``use_safetensors=True`` and ``safety_checker=None``: ``model_index.json``, each weight folder's
  ``config.json`` and safetensors (``unet``, ``vae``, ``text_encoder``), and the small folders whole
  (``scheduler``, ``tokenizer``, ``feature_extractor``); never a root checkpoint, ``.bin``, ``.ckpt``,
  ``safety_checker`` or ``non_ema`` file;
* on CUDA in fp16, the ``fp16`` variant (``*.fp16.safetensors``, half the bytes) where every weight
  folder has it (:func:`tools.models.fp16_variant`, the same rule the loader applies);
* a transformers model (``caption``, ``detector``, ``clip``) and TAESD: the root configuration,
  processor and tokenizer files and the safetensors weights (one file, or an index and its shards);
* SAM: the one official checkpoint for ``LOCALEDIT_SAM_TYPE``.

``localedit models download --dry-run`` prints these files with their sizes and the total per role;
it needs the network (offline it says so in one line). The download is ``snapshot_download`` of
exactly those files, with progress bars.
"""

from __future__ import annotations

import re
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from tools.config import Settings
from tools.models import DIFFUSION_ROLES, PIPELINE_MODELS, SPECS, TRANSFORMERS_ROLES, fp16_variant, \
    model_sources, resolve_device, sam_cache_dir
from tools.failures import is_disk_full
from tools.models_modern import MODERN_MODELS, MODERN_ROLES, MODERN_WHOLE_FOLDERS, non_commercial_notice
from tools.types import LocaleditError, NetworkError

ROOT_FILES = frozenset({
    "config.json", "generation_config.json", "preprocessor_config.json", "processor_config.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
    "vocab.txt", "added_tokens.json", "chat_template.json", "chat_template.jinja",
})
"""Non-weight files a transformers model or processor (or TAESD) reads from its folder's root."""

WHOLE_FOLDERS = ("scheduler", "tokenizer", "feature_extractor")
"""Pipeline folders read whole: a scheduler's config, a tokenizer's vocabulary, an image processor's config."""

_SHARD = r"(?:-\d{5}-of-\d{5})?"


def weight_files(names: Iterable[str], variant: Optional[str]) -> set[str]:
    """The safetensors weights (and their shard index) among the file names of ONE folder.

    ``variant=None``: ``model.safetensors`` / ``diffusion_pytorch_model.safetensors`` or their
    ``-0000k-of-0000n`` shards with ``.safetensors.index.json``; ``"fp16"``: the ``.fp16.`` files.
    """
    tag = re.escape(f".{variant}") if variant else ""
    weights = re.compile(rf"^(?:model|diffusion_pytorch_model){tag}{_SHARD}\.safetensors$")
    index = re.compile(rf"^(?:model|diffusion_pytorch_model)\.safetensors\.index{tag}\.json$")
    return {n for n in names if weights.match(n) or index.match(n)}


def select_files(role: str, files: Iterable[str], cuda_fp16: bool) -> list[str]:
    """The files of a Hub repository that ``role``'s loader reads, from the repository's listing.

    Args:
        role: a role of a Hugging Face repository (not ``sam``).
        files: every file path in the repository (``a/b.json`` for files in folders).
        cuda_fp16: whether the models will run on CUDA in fp16 (then the fp16 variant is chosen
            where the repository has it for every weight folder).

    Raises :class:`LocaleditError` when a weight folder has no safetensors (localedit reads no pickles).
    """
    files = set(files)
    variant = fp16_variant(files, role, cuda_fp16)

    def in_folder(folder: str) -> set[str]:
        prefix = f"{folder}/" if folder else ""
        return {f[len(prefix):] for f in files if f.startswith(prefix) and "/" not in f[len(prefix):]}

    def weights_of(folder: str) -> set[str]:
        found = weight_files(in_folder(folder), variant)
        if not found:
            raise LocaleditError(f"The {SPECS[role].title} repository has no safetensors weights "
                                 f"{f'in {folder}/ ' if folder else ''}(localedit reads only safetensors).")
        return {f"{folder}/{f}" if folder else f for f in found}

    if role in (*DIFFUSION_ROLES, *MODERN_ROLES):
        modern = role in MODERN_ROLES
        chosen = {"model_index.json"}
        for component in (MODERN_MODELS[role] if modern else PIPELINE_MODELS):
            chosen |= {f"{component}/config.json"} | weights_of(component)
        for folder in (MODERN_WHOLE_FOLDERS[role] if modern else WHOLE_FOLDERS):
            chosen |= {f"{folder}/{f}" for f in in_folder(folder)}
    elif role in TRANSFORMERS_ROLES or role == "taesd":
        chosen = (in_folder("") & ROOT_FILES) | weights_of("")
    else:
        raise LocaleditError(f"The {role} model is not a Hugging Face repository.")
    return sorted(chosen & files)


@dataclass
class FilePlan:
    """What one role's download fetches: ``files`` as ``(path, bytes)``, from ``source``."""

    role: str
    source: str
    files: list[tuple[str, int]]

    @property
    def total(self) -> int:
        return sum(size for _, size in self.files)


def _offline(source: str, err: BaseException) -> NetworkError:
    """The one sentence for a listing or download that could not reach the network."""
    if _hub_offline() or type(err).__name__ == "OfflineModeIsEnabled":
        return NetworkError(f"Listing or fetching {source} needs the network, and HF_HUB_OFFLINE is set; "
                            f"unset it (or set it to 0) where huggingface.co can be reached.")
    why = " ".join(f"{type(err).__name__}: {err}".split("\n")[0].split())
    if len(why) > 200:  # cut at a word, never mid-word
        why = why[:200].rsplit(" ", 1)[0] + " ..."
    return NetworkError(f"Listing or fetching {source} needs the network, and it cannot be reached from here ({why}).")


def _hub_offline() -> bool:
    import os

    from huggingface_hub import constants

    set_now = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return set_now or bool(constants.HF_HUB_OFFLINE)


REACH_TIMEOUT = 10.0
"""Seconds to wait for a connection to the download host before saying it cannot be reached."""


def _check_reachable(source: str) -> None:
    """Raise :class:`NetworkError` at once when ``source``'s host (the Hub for a repository id, the
    URL's host for SAM) cannot be connected to, instead of after the Hub client's five retries
    (about 25 s of "Retrying in 8s" lines on stderr)."""
    import socket
    from urllib.parse import urlparse

    if _hub_offline():
        raise _offline(source, RuntimeError("HF_HUB_OFFLINE"))
    if source.startswith(("http://", "https://")):
        url = urlparse(source)
    else:
        from huggingface_hub import constants

        url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=REACH_TIMEOUT).close()
    except OSError as err:
        raise _offline(source, err) from None


def _hub_listing(repo_id: str) -> dict[str, int]:
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    return {f.path: int(f.size or 0) for f in HfApi().list_repo_tree(repo_id, recursive=True)
            if isinstance(f, RepoFile)}


def plan(role: str, settings: Settings) -> Optional[FilePlan]:
    """The files ``role``'s download fetches and their sizes (asks the Hub: needs the network),
    or None for a role loaded from a local folder."""
    source = model_sources(settings)[role]
    if Path(source).exists():
        return None
    _check_reachable(source)
    try:
        if role == "sam":
            request = urllib.request.Request(source, method="HEAD")
            with urllib.request.urlopen(request, timeout=30) as response:
                size = int(response.headers.get("Content-Length") or 0)
            return FilePlan(role, source, [(source.rsplit("/", 1)[-1], size)])
        listing = _hub_listing(source)
    except Exception as err:  # connection, offline mode, DNS: many types, one sentence
        raise _offline(source, err) from err
    device, dtype = resolve_device(settings)
    import torch

    files = select_files(role, listing, device.type == "cuda" and dtype == torch.float16)
    return FilePlan(role, source, [(f, listing[f]) for f in files])


def _check_roles(roles: list[str]) -> list[str]:
    for role in roles:
        if role not in SPECS:
            raise LocaleditError(f"Unknown model role '{role}'; known: {', '.join(SPECS)}.")
    return roles or list(SPECS)


def dry_run(roles: list[str], settings: Settings) -> dict[str, Optional[FilePlan]]:
    """Per role, what :func:`download` would fetch (None: a local folder, nothing to fetch)."""
    return {role: plan(role, settings) for role in _check_roles(roles)}


def download(roles: list[str], settings: Settings) -> dict[str, str]:
    """Fetch the files ``roles`` load (all roles if empty) into the local caches, with progress bars.

    Returns, per role, where it now is. Raises :class:`LocaleditError` (one line) when it fails.
    """
    done = {}
    sources = model_sources(settings)
    for role in _check_roles(roles):
        source = sources[role]
        if Path(source).exists():
            done[role] = f"local folder {source} (nothing to download)"
            continue
        _check_reachable(source)
        if non_commercial_notice(role):
            print(non_commercial_notice(role), file=sys.stderr)
        print(f"Downloading {SPECS[role].title} ({source}, about {SPECS[role].size}) ...", file=sys.stderr)
        try:
            if role == "sam":
                done[role] = _download_sam(source)
            else:
                from huggingface_hub import snapshot_download

                files = [path for path, _ in plan(role, settings).files]
                done[role] = snapshot_download(source, allow_patterns=files)
        except LocaleditError:
            raise
        except OSError as err:
            if is_disk_full(err):
                raise LocaleditError(f"The disk is full: downloading {source} needs about {SPECS[role].size} "
                                     f"free; free some space and run it again.") from err
            raise _offline(source, err) from err
        except Exception as err:  # network errors come in many types; report one line
            raise _offline(source, err) from err
    return done


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


def describe(plans: dict[str, Optional[FilePlan]]) -> str:
    """The dry run as text: per role its files and sizes, its total, and the grand total."""
    lines, grand = [], 0
    for role, p in plans.items():
        if p is None:
            lines.append(f"{role}: a local folder, nothing to download")
            continue
        lines.append(f"{role}: {p.source}  ({len(p.files)} files, {gigabytes(p.total)}; licence: "
                     f"{SPECS[role].licence})")
        if non_commercial_notice(role):
            lines.append(f"    {non_commercial_notice(role)}")
        lines += [f"    {gigabytes(size):>10}  {path}" for path, size in p.files]
        grand += p.total
    lines.append(f"total: {gigabytes(grand)}")
    return "\n".join(lines)


def gigabytes(n: int) -> str:
    """A download size: '15.47 GB', '335.3 MB', '4.7 KB' (decimal units, as the Hub shows them)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}" if unit == "GB" else f"{n / scale:.1f} {unit}"
    return f"{n} B"


__all__ = ["FilePlan", "select_files", "weight_files", "plan", "dry_run", "download", "describe", "gigabytes"]
