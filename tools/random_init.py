"""Random weights for a real architecture, fast: build on the meta device, then fill.

A full-size model built the ordinary way runs every layer's own initialiser (minutes of CPU for
BLIP-2's 3.8 B parameters, in fp32: 15 GB). Built under :func:`empty_init` its parameters are
meta tensors (no memory, no work: that is also how parameters are counted for free);
:func:`materialize` then gives each one real storage on the target device and dtype and fills it
by copying tiles of one seeded block of random numbers, scaled per tensor, at memory speed.

The fill keeps activations finite through deep stacks in fp16: weight matrices and convolution
kernels get uniform values of variance ``1 / fan_in`` (fan-in = elements per output row), the
weights of normalisation layers are 1 and every bias is 0, embeddings and other vectors get a
standard deviation of 0.02, and CLIP's ``logit_scale`` its initial log(1 / 0.07). Compute cost
does not depend on the values, so a random model costs what the trained one costs.
"""

from __future__ import annotations

import json
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Optional

import torch
from torch import nn

MARKER = "localedit-random.json"
"""A model folder holding this file has configurations but no weights: they are drawn at load."""

POOL = 1_000_003
"""Size of the random block the fills copy from (a prime, so tiles never line up with tensor rows)."""

TILE = 16 * POOL
"""Elements per copy when filling a large tensor."""

LOGIT_SCALE = math.log(1 / 0.07)


@contextmanager
def empty_init(include_buffers: bool = False) -> Iterator[None]:
    """Construct modules with their parameters (and, if asked, buffers) on the meta device."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=include_buffers):
        yield


def count_parameters(module: nn.Module) -> int:
    """Distinct parameters of ``module`` (tied weights counted once); works on meta tensors."""
    return sum(p.numel() for p in module.parameters())


def random_marker(folder: Path) -> Optional[dict]:
    """The contents of ``folder``'s random-weights marker, or None for a folder with real weights."""
    path = Path(folder) / MARKER
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d)) or "Norm" in type(module).__name__


def _fp32_names(model: nn.Module, dtype: torch.dtype) -> tuple[str, ...]:
    """Module names transformers keeps in fp32 when loading in ``dtype`` (as ``from_pretrained`` does)."""
    names = set()
    if dtype == torch.float16:
        names |= set(getattr(model, "_keep_in_fp32_modules", None) or ())
    if dtype in (torch.float16, torch.bfloat16):
        names |= set(getattr(model, "_keep_in_fp32_modules_strict", None) or ())
    return tuple(names)


def _keeps_fp32(name: str, keep: Iterable[str]) -> bool:
    parts = name.split(".")
    return any(k in parts or name.startswith(k + ".") or name == k for k in keep)


class _Filler:
    """Fills tensors from one seeded block of unit-variance uniform numbers, tile by tile.

    The block (:data:`POOL` numbers) is repeated into a :data:`TILE`-long run per dtype, so a large
    tensor takes a few long multi-threaded copies; fresh memory is zeroed first, which faults its
    pages in on all threads (a first touch inside single copies is several times slower).
    """

    def __init__(self, device: torch.device, seed: int):
        gen = torch.Generator(device="cpu").manual_seed(seed)
        block = (torch.rand(POOL, generator=gen, dtype=torch.float32) * 2 - 1) * math.sqrt(3.0)
        self.block = block.to(device)
        self.runs: dict[torch.dtype, torch.Tensor] = {}
        self.offset = 0

    def _run(self, dtype: torch.dtype) -> torch.Tensor:
        if dtype not in self.runs:
            reps = -(-(TILE + POOL) // POOL)
            self.runs[dtype] = self.block.repeat(reps)[:TILE + POOL].to(dtype)
        return self.runs[dtype]

    def fill(self, tensor: torch.Tensor, std: float) -> None:
        flat = tensor.view(-1)
        n, run = flat.numel(), self._run(tensor.dtype)
        if n > POOL:
            flat.zero_()
        start, done = self.offset % POOL, 0
        while done < n:
            take = min(TILE, n - done)
            flat[done:done + take].copy_(run[start:start + take])
            done += take
            start = (start + take) % POOL
        flat.mul_(std)
        self.offset += 7919  # the next tensor starts elsewhere in the block


def _value_rule(module: nn.Module, name: str, param: torch.Tensor) -> tuple[str, float]:
    """``("const", value)`` or ``("random", std)`` for parameter ``name`` of ``module``."""
    if _is_norm(module):
        return ("const", 1.0) if name == "weight" else ("const", 0.0)
    if "bias" in name:
        return "const", 0.0
    if param.ndim == 0:
        return ("const", LOGIT_SCALE) if name == "logit_scale" else ("const", 0.0)
    if param.ndim == 1 or isinstance(module, nn.Embedding) or any(k in name for k in ("embed", "token", "pos")):
        return "random", 0.02
    fan_in = max(1, param.numel() // param.shape[0])
    return "random", 1.0 / math.sqrt(fan_in)


@torch.no_grad()
def materialize(model: nn.Module, device: torch.device | str, dtype: torch.dtype, seed: int = 0) -> nn.Module:
    """Give every meta parameter of ``model`` storage on ``device`` in ``dtype``, filled at random.

    Tied parameters stay tied (one new tensor for all their places); modules transformers keeps in
    fp32 (``_keep_in_fp32_modules``) stay fp32; floating buffers are moved and cast the same way.
    Returns ``model`` in eval mode with gradients off. Deterministic for a given ``seed``.
    """
    device = torch.device(device)
    keep = _fp32_names(model, dtype)
    filler = _Filler(device, seed)
    new: dict[int, nn.Parameter] = {}
    for mod_name, module in model.named_modules():
        for name, param in list(module._parameters.items()):
            if param is None:
                continue
            if id(param) not in new:
                full = f"{mod_name}.{name}" if mod_name else name
                want = torch.float32 if _keeps_fp32(full, keep) else (dtype if param.is_floating_point() else param.dtype)
                tensor = torch.empty(param.shape, dtype=want, device=device)
                kind, value = _value_rule(module, name, param)
                if kind == "const":
                    tensor.fill_(value)
                else:
                    filler.fill(tensor, value)
                new[id(param)] = nn.Parameter(tensor, requires_grad=False)
            module._parameters[name] = new[id(param)]
        for name, buf in list(module._buffers.items()):
            if buf is None or buf.device.type == "meta":
                continue
            full = f"{mod_name}.{name}" if mod_name else name
            want = (torch.float32 if _keeps_fp32(full, keep) else dtype) if buf.is_floating_point() else buf.dtype
            module._buffers[name] = buf.to(device=device, dtype=want)
    return model.eval().requires_grad_(False)


__all__ = ["MARKER", "empty_init", "count_parameters", "random_marker", "materialize"]
