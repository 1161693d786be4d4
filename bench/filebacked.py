"""Model weights moved into file-backed memory, so a benchmark can share a machine's RAM.

``python -m bench.gpu --device cpu --file-backed DIR`` holds every model of a mode at once (about 16 GB
in bf16 at full size). On a CPU their weights are anonymous memory, which without swap cannot be
given back: a second large process on the same machine (another benchmark) and the kernel's
out-of-memory killer ends one of them. :func:`file_back` copies each parameter into a shared memory
map of an (unlinked) file under ``DIR``: the same values, the same dtype, read by the same modules, but
pages the kernel may write back and drop under pressure and read again when touched. What it costs:
a stage whose weights were dropped reads them from disk again (slower, and counted in that row's
time), and the peak RSS counts the weight pages resident at the time. A benchmark option, never used
by the product.
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch


def modules_of(model: Any) -> list[torch.nn.Module]:
    """The torch modules of a loaded model: itself, or a pipeline's components."""
    if isinstance(model, torch.nn.Module):
        return [model]
    components = getattr(model, "components", None) or {}
    return [m for m in components.values() if isinstance(m, torch.nn.Module)]


def file_back(model: Any, folder: str | Path) -> int:
    """Move every CPU parameter of ``model`` into file-backed shared memory under ``folder``; the bytes moved.

    One map per dtype; tied parameters (one ``Parameter`` in two places) are moved once and stay tied.
    The files are unlinked at once: their space is freed when the model is.
    """
    params: dict[torch.dtype, list[torch.nn.Parameter]] = defaultdict(list)
    seen: set[int] = set()
    for module in modules_of(model):
        for p in module.parameters():
            if id(p) not in seen and p.device.type == "cpu":
                seen.add(id(p))
                params[p.dtype].append(p)
    moved = 0
    for dtype, group in params.items():
        total = sum(p.numel() for p in group)
        fd, name = tempfile.mkstemp(dir=folder, suffix=".weights")
        os.close(fd)
        try:
            flat = torch.from_file(name, shared=True, size=total, dtype=dtype)
        finally:
            os.unlink(name)
        offset = 0
        with torch.no_grad():
            for p in group:
                view = flat[offset:offset + p.numel()].view(p.shape)
                view.copy_(p.data)
                p.data = view
                offset += p.numel()
        moved += total * flat.element_size()
    return moved
