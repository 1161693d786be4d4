"""What ``localedit eval`` reads and writes besides the edits: the LPIPS metric (when its weights are on
this machine) and ``results.jsonl``, the log a resumed run reads back (:mod:`bench.evaluate`)."""

from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image

RETRYABLE = ("WorkerUnavailableError",)
"""Error kinds a resumed run tries again without ``--retry-errors``."""


# --------------------------------------------------------------------------- LPIPS


class Lpips:
    """LPIPS (AlexNet) between the input and the output, when its weights are on this machine.

    The ``lpips`` package ships its linear layers but takes the AlexNet trunk from
    torchvision's pretrained weights in the torch hub cache; nothing is downloaded here.
    Without them :attr:`available` is False, the cells stay empty and :attr:`note` says why.
    """

    WEIGHTS = "alexnet-owt-7be5be79.pth"

    def __init__(self) -> None:
        self._model = None
        self._lock = threading.Lock()
        self.available, self.note = self._probe()

    @classmethod
    def weights_path(cls) -> Path:
        import torch

        return Path(torch.hub.get_dir()) / "checkpoints" / cls.WEIGHTS

    @classmethod
    def _probe(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("lpips") is None:
            return False, "LPIPS cells are empty: the lpips package is not installed."
        weights = cls.weights_path()
        if not weights.exists():
            return False, (f"LPIPS cells are empty: torchvision's AlexNet weights are not at {weights} "
                           f"(they are not downloaded; put {cls.WEIGHTS} there to get LPIPS).")
        return True, f"LPIPS: AlexNet trunk from {weights}."

    def __call__(self, original: Image.Image, edited: Image.Image) -> Optional[float]:
        if not self.available:
            return None
        import torch

        with self._lock:
            if self._model is None:
                import lpips

                self._model = lpips.LPIPS(net="alex", verbose=False).eval()
            tensors = [torch.from_numpy(np.asarray(im.convert("RGB").resize(original.size), dtype=np.float32))
                       .permute(2, 0, 1)[None] / 127.5 - 1.0 for im in (original, edited)]
            with torch.inference_mode():
                return float(self._model(*tensors).item())


# --------------------------------------------------------------------------- results log


class ResultsLog:
    """``results.jsonl``: rows appended as pairs finish, read back to resume (the last row wins)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    def read(self) -> dict[tuple[str, str], dict[str, Any]]:
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        if not self.path.exists():
            return rows
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a crash
                continue
            if isinstance(row, dict) and "sample" in row and "editor" in row:
                rows[(str(row["sample"]), str(row["editor"]))] = row
        return rows

    def append(self, row: dict[str, Any]) -> None:
        line = json.dumps(row, default=str) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()


def is_finished(row: Optional[dict[str, Any]], retry_errors: bool) -> bool:
    """Whether a logged row means its pair need not run again."""
    if row is None:
        return False
    if row.get("status") == "ok":
        return True
    return not retry_errors and row.get("error_kind") not in RETRYABLE
