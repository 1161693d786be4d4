"""Throughput benchmark: turns per second and latency with 1, 2, 4 and 8 concurrent sessions.

    python -m bench.throughput                               # tiny random models, in-process worker, CPU
    python -m bench.throughput --url http://127.0.0.1:8800   # against a running `localedit worker` (or --ray)
    python -m bench.throughput --models DIR --device cuda --max-side 512 --steps 20 --turns 8
    python -m bench.throughput --ray --replicas 2            # cache affinity on Ray Serve, with and without

A turn is what the agent asks of the worker for one instruction: caption, ground, segment (from a fixed
box, as grounding on random weights is noise), edit (ip2p-composite) and score. A "cold" turn uses a
photo the worker has never seen (every encoder runs); a "cached" turn repeats its session's photo, so
the caption, SAM-embedding and CLIP-embedding caches hit. Prints one table: per mode and concurrency,
turns per second, p50 / p95 turn latency and the cache hits counted by the worker. A benchmark, not a test.

``--ray --replicas N`` starts a local Ray Serve app with N replicas (tiny models unless ``--models``) and
runs a follow-up-heavy workload twice, with cache affinity (the client sends each photo's content hash,
Ray Serve's model multiplexing routes it to the replica that cached it) and without: every session
opens a new photo and then makes ``--followups`` more turns on it. It prints, per mode, the follow-up
cache hit rate (of the caption, the SAM embedding and the CLIP embedding of the photo, as each answer
reports), p50 / p95 of the follow-up and of all turns, and how many replicas served.
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


def one_turn(worker, image: Image.Image, steps: Optional[int], hits: Optional[list] = None) -> float:
    """The worker calls of one agent turn; returns its seconds. ``hits`` (if given) gets three
    booleans: whether the caption, the SAM embedding and the photo's CLIP embedding were cached."""
    w, h = image.size
    box = (w * 0.1, h * 0.3, w * 0.4, h * 0.8)
    start = time.perf_counter()
    caption = worker.caption(image)
    worker.ground(image, "object")
    seg = worker.segment(image, [box])
    mask = seg.mask if seg.mask.any() else box_to_mask(box, image.size)
    result = worker.edit(image, mask, EditRequest("ip2p-composite", "make it blue", steps=steps,
                                                  source_caption=caption.text, target_caption="a blue object"))
    scores = worker.score(image, result.image, mask=result.region, box=box, source_caption=caption.text,
                          target_caption="a blue object", target_text="blue object")
    if hits is not None:
        hits += [caption.cache_hit, seg.cache_hit, scores.cache_hits > 0]
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
            "p95": percentile(latencies, 0.95),
            "cache_hits": cache_hits(worker) - hits_before}


def table(rows: list[dict]) -> str:
    head = f"{'mode':7} {'sessions':>8} {'turns':>6} {'turns/s':>8} {'p50 s':>7} {'p95 s':>7} {'cache hits':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['mode']:7} {r['sessions']:>8} {r['turns']:>6} {r['turns_per_s']:>8.2f} "
                     f"{r['p50']:>7.2f} {r['p95']:>7.2f} {r['cache_hits']:>10}")
    return "\n".join(lines)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def followups(worker, sessions: int, turns: int, size: tuple[int, int], steps: Optional[int]) -> dict:
    """``sessions`` concurrent sessions; each opens a new photo, then makes ``turns`` follow-up turns on it."""
    def session(_: int) -> tuple[list[float], list[float], list[bool]]:
        photo, first, later, hits = fresh_photo(size), [], [], []
        first.append(one_turn(worker, photo, steps))
        for _ in range(turns):
            later.append(one_turn(worker, photo, steps, hits))
        return first, later, hits

    before = dict(getattr(worker, "replicas", {}))
    start = time.perf_counter()
    with ThreadPoolExecutor(sessions) as pool:
        done = list(pool.map(session, range(sessions)))
    wall = time.perf_counter() - start
    first = [t for f, _, _ in done for t in f]
    later = [t for _, lt, _ in done for t in lt]
    hits = [h for _, _, hs in done for h in hs]
    served = {k for k, v in getattr(worker, "replicas", {}).items() if v > before.get(k, 0) and k != "?"}
    return {"sessions": sessions, "turns": len(first) + len(later), "turns_per_s": (len(first) + len(later)) / wall,
            "hit_rate": sum(hits) / len(hits) if hits else 0.0, "follow_p50": statistics.median(later),
            "follow_p95": percentile(later, 0.95), "all_p50": statistics.median(first + later),
            "all_p95": percentile(first + later, 0.95), "replicas": len(served)}


def affinity_table(rows: list[dict]) -> str:
    head = (f"{'affinity':8} {'sessions':>8} {'turns':>6} {'turns/s':>8} {'hit rate':>8} {'follow p50':>10} "
            f"{'follow p95':>10} {'all p50':>8} {'all p95':>8} {'replicas':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['mode']:8} {r['sessions']:>8} {r['turns']:>6} {r['turns_per_s']:>8.2f} "
                     f"{r['hit_rate']:>8.0%} {r['follow_p50']:>10.2f} {r['follow_p95']:>10.2f} "
                     f"{r['all_p50']:>8.2f} {r['all_p95']:>8.2f} {r['replicas']:>8}")
    return "\n".join(lines)


def run_ray(args: argparse.Namespace, size: tuple[int, int]) -> None:
    """Deploy the worker on a local Ray Serve with ``args.replicas`` replicas; compare affinity on / off."""
    import os
    import socket

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve

    from tools.config import Settings
    from tools.worker.client import RemoteWorker
    from tools.worker.serve import build_app, start_ray

    models = args.models or str(_tiny())
    settings = Settings(models_dir=models, device=args.device, max_side=args.max_side, steps=args.steps,
                        _env_file=None)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # as `localedit worker --ray` starts it: token auth on, every Ray process on loopback, no dashboard
    start_ray(num_cpus=max(2, args.replicas), log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app({"settings": settings.model_dump(mode="json"), "num_cpus": 1,
                             "min_replicas": args.replicas, "max_replicas": args.replicas}),
                  name="localedit-bench", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        rows = []
        for affinity in (False, True):
            worker = RemoteWorker(url, timeout=600, affinity=affinity)
            try:
                rows.append({"mode": "on" if affinity else "off",
                             **followups(worker, args.ray_sessions, args.followups, size, args.steps)})
            finally:
                worker.close()
        print(f"Ray Serve, {args.replicas} replicas, {args.ray_sessions} sessions x (1 + {args.followups} "
              f"follow-up turns), steps: {args.steps}, photo: {size[0]}x{size[1]}, models: {models}")
        print(affinity_table(rows))
    finally:
        serve.shutdown()
        ray.shutdown()


def _tiny():
    from tools.tiny import make_tiny

    return make_tiny(tempfile.mkdtemp(prefix="localedit-tiny-"))


def make_worker(args: argparse.Namespace):
    """A RemoteWorker for ``--url``, else an in-process worker (tiny models unless ``--models``)."""
    if args.url:
        from tools.worker.client import RemoteWorker

        return RemoteWorker(args.url, token=args.token, timeout=600)
    from tools.config import Settings
    from tools.worker import LocalWorker

    models = args.models or str(_tiny())
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
    p.add_argument("--ray", action="store_true", help="start a local Ray Serve app and compare cache affinity on / off")
    p.add_argument("--replicas", type=int, default=2, help="--ray: replicas")
    p.add_argument("--ray-sessions", type=int, default=6, help="--ray: concurrent sessions (a new photo each)")
    p.add_argument("--followups", type=int, default=4, help="--ray: follow-up turns per session")
    args = p.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    if args.ray:
        run_ray(args, size)
        return
    worker = make_worker(args)
    one_turn(worker, fresh_photo(size), args.steps)  # load and warm every model before timing
    rows = [run(worker, n, args.turns, cached, size, args.steps)
            for cached in (False, True) for n in (int(v) for v in args.sessions.split(","))]
    print(f"worker: {worker.status().get('kind')}  device: {worker.status().get('device')}  "
          f"steps: {args.steps}  photo: {size[0]}x{size[1]}")
    print(table(rows))


if __name__ == "__main__":
    main()
