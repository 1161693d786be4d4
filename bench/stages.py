"""Stage-timing benchmark: how long each stage of an edit takes, cold and warm.

    python -m bench.stages                      # tiny random models on this machine (wiring + overhead)
    python -m bench.stages --models DIR --device cuda --max-side 512 --runs 5   # real weights, a GPU

Prints one table: per stage, the first (cold) call and the median / min / max of the warm calls.
"Cold" for caption / segment / score is the first call on a new image (encoders run); "warm"
repeats on the same image (the per-image caches hit). Model loading is timed per role.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

from PIL import Image, ImageDraw

from tools.config import Settings
from tools.types import EDITORS, MASKED_EDITORS, EditRequest


def test_photo(size: tuple[int, int]) -> Image.Image:
    """A synthetic photo with two objects (the benchmark needs no files)."""
    img = Image.new("RGB", size, (120, 140, 160))
    draw = ImageDraw.Draw(img)
    w, h = size
    draw.ellipse((w * 0.1, h * 0.3, w * 0.4, h * 0.8), fill=(200, 60, 40))
    draw.rectangle((w * 0.6, h * 0.2, w * 0.9, h * 0.7), fill=(40, 160, 60))
    return img


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(settings: Settings, runs: int, size: tuple[int, int], editors: list[str]) -> list[tuple]:
    """Time every stage; returns rows (stage, cold seconds, warm timings)."""
    from tools.models import SPECS
    from tools.worker import LocalWorker

    worker = LocalWorker(settings)
    rows = []
    for role in SPECS:
        rows.append((f"load {role}", timed(lambda: worker.registry.get(role)), []))
    photo = test_photo(size)
    box = (size[0] * 0.1, size[1] * 0.3, size[0] * 0.4, size[1] * 0.8)
    others = [test_photo(size).rotate(5 * (i + 1)) for i in range(runs + 1)]  # new pixels: cold caches

    def stage(name: str, cold: Callable[[Image.Image], object], warm: Callable[[], object]) -> None:
        first = timed(lambda: cold(others[0]))
        rows.append((name, first, [timed(warm) for _ in range(runs)]))

    stage("caption", worker.caption, lambda: worker.caption(photo))
    stage("ground", lambda im: worker.ground(im, "cat"), lambda: worker.ground(photo, "cat"))
    stage("segment", lambda im: worker.segment(im, [box]), lambda: worker.segment(photo, [box]))
    mask = worker.segment(photo, [box]).mask
    for editor in editors:
        req = EditRequest(editor=editor, instruction="turn it into a fox",
                          source_caption="a photo of a cat", target_caption="a photo of a fox")
        m = mask if editor in MASKED_EDITORS else None
        stage(f"edit {editor}", lambda im: worker.edit(im, m, req), lambda: worker.edit(photo, m, req))
    edited = worker.edit(photo, mask, EditRequest(editor="ip2p-composite", instruction="x")).image
    score = dict(mask=mask, box=box, source_caption="a photo of a cat", target_caption="a photo of a fox")
    stage("score", lambda im: worker.score(im, edited, **score), lambda: worker.score(photo, edited, **score))
    return rows


def table(rows: list[tuple]) -> str:
    lines = [f"| {'stage':24} | {'cold s':>8} | {'warm p50 s':>10} | {'warm min s':>10} | {'warm max s':>10} |",
             f"|{'-' * 26}|{'-' * 10}|{'-' * 12}|{'-' * 12}|{'-' * 12}|"]
    for name, cold, warm in rows:
        cells = [f"{statistics.median(warm):10.4f}", f"{min(warm):10.4f}", f"{max(warm):10.4f}"] if warm else [" " * 10] * 3
        lines.append(f"| {name:24} | {cold:8.4f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", help="models folder (default: tiny random models made in a temp folder)")
    p.add_argument("--device", default="auto")
    p.add_argument("--max-side", type=int, default=512)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--size", default="640x480", help="photo size WxH")
    p.add_argument("--editors", default=",".join(EDITORS))
    args = p.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        models = args.models
        if models is None:
            from tools.tiny import make_tiny

            models = make_tiny(Path(tmp) / "tiny")
            print("tiny random models (a wiring and overhead check; outputs are noise)")
        settings = Settings(models_dir=models, device=args.device, max_side=args.max_side, steps=args.steps)
        rows = run(settings, args.runs, size, args.editors.split(","))
    from tools.models import resolve_device

    device, dtype = resolve_device(settings)
    print(f"device {device}, dtype {dtype}, photo {size[0]}x{size[1]}, max side {args.max_side}, "
          f"{args.steps} steps, {args.runs} warm runs")
    print(table(rows))


if __name__ == "__main__":
    main()
