"""Throughput benchmark: turns per second and latency with 1, 2, 4 and 8 concurrent sessions.

    python -m bench.throughput                               # tiny random models, in-process worker, CPU
    python -m bench.throughput --url http://127.0.0.1:8800   # against a running `localedit worker` (or --ray)
    python -m bench.throughput --models DIR --device cuda --max-side 512 --steps 20 --turns 8

A turn is what the agent asks of the worker for one instruction: caption, ground, segment (from a fixed
box, as grounding on random weights is noise), edit (ip2p-composite) and score. A "cold" turn uses a
photo the worker has never seen (every encoder runs); a "cached" turn repeats its session's photo, so
the caption, SAM-embedding and CLIP-embedding caches hit. Prints one table: per mode and concurrency,
turns per second, p50 / p95 turn latency and the cache hits counted by the worker. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import count
from typing import Optional

import numpy as np
from PIL import Image

from bench.stages import test_photo
from tools.images import box_to_mask
from tools.types import EditRequest

_unique = count()
_unique_lock = threading.Lock()


def fresh_photo(size: tuple[int, int]) -> Image.Image:
    """A photo with pixels nobody has seen (a unique noise stamp in one corner)."""
    with _unique_lock:
        n = next(_unique)
    arr = np.asarray(test_photo(size)).copy()
    arr[:4, :16] = np.random.default_rng(n).integers(0, 256, (4, 16, 3), dtype=np.uint8)
    return Image.fromarray(arr)


def one_turn(worker, image: Image.Image, steps: Optional[int]) -> float:
    """The worker calls of one agent turn; returns its seconds."""
    w, h = image.size
    box = (w * 0.1, h * 0.3, w * 0.4, h * 0.8)
    start = time.perf_counter()
    caption = worker.caption(image)
    worker.ground(image, "object")
    seg = worker.segment(image, [box])
    mask = seg.mask if seg.mask.any() else box_to_mask(box, image.size)
    result = worker.edit(image, mask, EditRequest("ip2p-composite", "make it blue", steps=steps,
                                                  source_caption=caption.text, target_caption="a blue object"))
    worker.score(image, result.image, mask=result.region, box=box, source_caption=caption.text,
                 target_caption="a blue object", target_text="blue object")
    return time.perf_counter() - start


def cache_hits(worker) -> int:
    status = worker.status()
    return sum(c.get("hits", 0) for c in (status.get("caches") or {}).values())


def run(worker, sessions: int, turns: int, cached: bool, size: tuple[int, int], steps: Optional[int]) -> dict:
    """``sessions`` threads, each doing ``turns`` turns; cold turns use a new photo each time."""
    photos = [fresh_photo(size) for _ in range(sessions)]
    if cached:  # one untimed turn per session puts its photo in the caches
        with ThreadPoolExecutor(sessions) as pool:
            list(pool.map(lambda p: one_turn(worker, p, steps), photos))
    hits_before = cache_hits(worker)

    def session(i: int) -> list[float]:
        return [one_turn(worker, photos[i] if cached else fresh_photo(size), steps) for _ in range(turns)]

    start = time.perf_counter()
    with ThreadPoolExecutor(sessions) as pool:
        latencies = [t for times in pool.map(session, range(sessions)) for t in times]
    wall = time.perf_counter() - start
    latencies.sort()
    return {"mode": "cached" if cached else "cold", "sessions": sessions, "turns": len(latencies),
            "turns_per_s": len(latencies) / wall, "p50": statistics.median(latencies),
            "p95": latencies[min(len(latencies) - 1, int(round(0.95 * (len(latencies) - 1))))],
            "cache_hits": cache_hits(worker) - hits_before}


def table(rows: list[dict]) -> str:
    head = f"{'mode':7} {'sessions':>8} {'turns':>6} {'turns/s':>8} {'p50 s':>7} {'p95 s':>7} {'cache hits':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['mode']:7} {r['sessions']:>8} {r['turns']:>6} {r['turns_per_s']:>8.2f} "
                     f"{r['p50']:>7.2f} {r['p95']:>7.2f} {r['cache_hits']:>10}")
    return "\n".join(lines)


def make_worker(args: argparse.Namespace):
    """A RemoteWorker for ``--url``, else an in-process worker (tiny models unless ``--models``)."""
    if args.url:
        from tools.worker.client import RemoteWorker

        return RemoteWorker(args.url, token=args.token, timeout=600)
    from tools.config import Settings
    from tools.worker import LocalWorker

    models = args.models
    if models is None:
        from tools.tiny import make_tiny

        models = str(make_tiny(tempfile.mkdtemp(prefix="localedit-tiny-")))
    return LocalWorker(Settings(models_dir=models, device=args.device, max_side=args.max_side, steps=args.steps))


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="a running worker's URL (default: in-process)")
    p.add_argument("--token", help="the worker's bearer token")
    p.add_argument("--models", help="models folder for the in-process worker (default: tiny random models)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-side", type=int, default=64)
    p.add_argument("--steps", type=int, default=2, help="diffusion steps per edit (sent with each request)")
    p.add_argument("--sessions", default="1,2,4,8", help="concurrency levels")
    p.add_argument("--turns", type=int, default=3, help="turns per session and level")
    p.add_argument("--size", default="320x240", help="photo size WxH")
    args = p.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    worker = make_worker(args)
    one_turn(worker, fresh_photo(size), args.steps)  # load and warm every model before timing
    rows = [run(worker, n, args.turns, cached, size, args.steps)
            for cached in (False, True) for n in (int(v) for v in args.sessions.split(","))]
    print(f"worker: {worker.status().get('kind')}  device: {worker.status().get('device')}  "
          f"steps: {args.steps}  photo: {size[0]}x{size[1]}")
    print(table(rows))


if __name__ == "__main__":
    main()
