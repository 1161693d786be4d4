"""Soak: hundreds of mixed good and hostile requests, several at once, against one worker on loopback.

    python -m bench.soak                              # starts `localedit worker` (tiny models, CPU) and soaks it
    python -m bench.soak --requests 2000 --concurrency 16
    python -m bench.soak --url http://127.0.0.1:8800 --token-file ~/.tok   # a worker already running
    python -m bench.soak --memory                     # peak memory per route and size vs the estimate

A soak request is drawn from :data:`CASES`: every tool route with good inputs (edits streamed and
not, some cancelled half way), and every kind of client mistake the worker must answer with 4xx and
one sentence (broken and hostile JSON, NaN, deep nesting, wrong token, oversize bodies, a flat
7999x7999 PNG whose decoding would cost gigabytes, strips, bad base64, boxes outside the image,
tiny strengths, stalled and aborted uploads, clients that go away). The run passes when no answer
is a 5xx, the worker still serves, and its peak resident memory stays within the stated bound:
the memory after warm-up plus ``LOCALEDIT_MAX_REQUEST_MEMORY`` (the budget the running requests'
estimates share) plus 128 MB (bodies in flight, Python's allocator). Prints one table per run.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import httpx
import numpy as np
from PIL import Image

SLACK = 128 << 20
"""Memory allowed above warm-up + the request budget (bodies being read, allocator slack)."""


# --------------------------------------------------------------------------- inputs


def png_b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def photo(seed: int, size=(96, 72)) -> Image.Image:
    """A small photo with a gradient and a blob, distinct per ``seed``."""
    rng = np.random.default_rng(seed)
    w, h = size
    x = np.linspace(40, 200, w, dtype=np.float32)[None, :, None]
    arr = np.broadcast_to(x, (h, w, 3)).astype(np.uint8).copy()
    arr[h // 4:h // 2, w // 4:w // 2] = rng.integers(0, 256, 3, dtype=np.uint8)
    return Image.fromarray(arr)


def mask_b64(size=(96, 72), box=(24, 18, 48, 36)) -> str:
    m = np.zeros((size[1], size[0]), np.uint8)
    m[box[1]:box[3], box[0]:box[2]] = 255
    return png_b64(Image.fromarray(m).convert("1"))


@dataclass
class Inputs:
    """Encoded inputs shared by every case (built once)."""

    image: str = field(default_factory=lambda: png_b64(photo(0)))
    other: str = field(default_factory=lambda: png_b64(photo(1)))
    mask: str = field(default_factory=mask_b64)
    bomb: str = field(default_factory=lambda: png_b64(Image.new("RGB", (7999, 7999), (120, 130, 140))))
    bomb_mask: str = field(default_factory=lambda: png_b64(Image.new("1", (7999, 7999), 1)))
    strip: str = field(default_factory=lambda: png_b64(Image.new("RGB", (8000, 2), (9, 9, 9))))


# --------------------------------------------------------------------------- the cases


@dataclass
class Outcome:
    case: str
    status: int  # HTTP status (0: no answer was expected, e.g. the client went away on purpose)
    seconds: float


class Soak:
    """Runs soak cases against ``url`` (``token`` for the bearer header)."""

    def __init__(self, url: str, token: Optional[str] = None, timeout: float = 60.0):
        self.url = url.rstrip("/")
        self.host, self.port = self.url.split("//", 1)[1].split(":")[0], int(self.url.rsplit(":", 1)[1])
        self.token = token
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=self.url, timeout=timeout, headers=self.auth)
        self.inputs = Inputs()

    def close(self) -> None:
        self.client.close()

    # --- transports ---------------------------------------------------------------------------

    def post(self, path: str, body: bytes, **headers: str) -> int:
        return self.client.post(path, content=body, headers={"Content-Type": "application/json", **headers}).status_code

    def post_json(self, path: str, value: dict) -> int:
        return self.post(path, json.dumps(value).encode())

    def raw(self, path: str, body: bytes, declared: int, *, hold: float = 0.0, read: bool = True) -> int:
        """A request on a plain socket; the body may stop short of ``declared`` bytes."""
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in self.auth.items()) + f"Content-Length: {declared}\r\n\r\n")
        with socket.create_connection((self.host, self.port), timeout=30) as sock:
            sock.sendall(head.encode() + body)
            if hold:
                time.sleep(hold)
            if not read:
                return 0
            answer = sock.recv(64)
        return int(answer.split()[1]) if answer.startswith(b"HTTP/") else 0

    def stream_edit(self, value: dict, stop_after: Optional[int] = None) -> int:
        """A streamed edit; with ``stop_after`` the client closes the stream after that many lines."""
        with self.client.stream("POST", "/edit", json={**value, "stream": True}) as response:
            if response.status_code != 200:
                response.read()
                return response.status_code
            for n, line in enumerate(response.iter_lines()):
                if stop_after is not None and n >= stop_after:
                    return 0  # the client went away mid-edit
                if line.startswith('{"error"'):
                    return int(json.loads(line)["error"]["status"])
                if line.startswith('{"result"'):
                    return 200
        return 0

    # --- good requests ------------------------------------------------------------------------

    def edit_body(self, **request) -> dict:
        return {"image": self.inputs.image, "mask": self.inputs.mask,
                "request": {"editor": "ip2p-composite", "instruction": "make it red", "steps": 1, **request}}

    def good_caption(self) -> int:
        return self.post_json("/caption", {"image": random.choice([self.inputs.image, self.inputs.other])})

    def good_ground(self) -> int:
        return self.post_json("/ground", {"image": self.inputs.image, "phrase": "a red square"})

    def good_segment(self) -> int:
        return self.post_json("/segment", {"image": self.inputs.image, "boxes": [[20, 15, 50, 40]]})

    def good_score(self) -> int:
        return self.post_json("/score", {"original": self.inputs.image, "edited": self.inputs.other,
                                         "mask": self.inputs.mask, "box": [24, 18, 48, 36],
                                         "source_caption": "a photo", "target_caption": "a red photo"})

    def good_edit(self) -> int:
        return self.post_json("/edit", self.edit_body(seed=random.randrange(1000)))

    def good_edit_stream(self) -> int:
        return self.stream_edit(self.edit_body(editor=random.choice(["ip2p-composite", "regionwise", "inpaint"]),
                                               steps=2))

    def cancelled_edit(self) -> int:
        return self.stream_edit(self.edit_body(steps=200), stop_after=2)

    # --- client mistakes ----------------------------------------------------------------------

    def broken_json(self) -> int:
        return self.post("/caption", random.choice([b"{not json", b"[1, 2]", b"", b"\xff\xfe", b"null"]))

    def nan_json(self) -> int:
        body = json.dumps(self.edit_body()).replace('"steps": 1', random.choice(
            ['"steps": NaN', '"guidance_scale": Infinity', '"seed": -Infinity'])).encode()
        return self.post("/edit", body)

    def deep_json(self) -> int:
        depth = random.choice([20, 5000, 200_000])
        return self.post("/caption", b'{"image": ' + b"[" * depth + b"]" * depth + b"}")

    def wrong_token(self) -> int:
        return httpx.post(f"{self.url}/caption", json={"image": self.inputs.image},
                          headers={"Authorization": "Bearer wrong"}, timeout=30).status_code

    def oversize(self) -> int:
        """A body declared larger than the worker takes: refused before it is read."""
        return self.raw("/caption", b'{"image": "', declared=10**10)

    def memory_bomb(self) -> int:
        return self.post_json("/edit", {"image": self.inputs.bomb, "mask": self.inputs.bomb_mask,
                                        "request": {"editor": "ip2p-composite", "instruction": "red"}})

    def strip(self) -> int:
        return self.post_json("/caption", {"image": self.inputs.strip})

    def bad_image(self) -> int:
        return self.post_json("/caption", {"image": random.choice(["%%%", "aGVsbG8=", ""])})

    def bad_fields(self) -> int:
        body = random.choice([
            ("/segment", {"image": self.inputs.image, "boxes": [[50, 50, 10, 10]]}),
            ("/segment", {"image": self.inputs.image, "boxes": [[5000, 5000, 6000, 6000]]}),
            ("/segment", {"image": self.inputs.image, "boxes": []}),
            ("/ground", {"image": self.inputs.image, "phrase": ""}),
            ("/ground", {"image": self.inputs.image, "phrase": "cat", "box_threshold": 3}),
            ("/score", {"original": self.inputs.image, "edited": self.inputs.image, "box": [1, 1, 0, 0]}),
            ("/caption", {"image": self.inputs.image, "extra": 1}),
            ("/edit", {"image": self.inputs.image, "mask": mask_b64((40, 30), (1, 1, 5, 5)),
                       "request": {"editor": "ip2p-composite"}}),
        ])
        return self.post_json(*body)

    def bad_knobs(self) -> int:
        return self.post_json("/edit", self.edit_body(**random.choice([
            {"editor": "nope"}, {"editor": "inpaint", "strength": 1e-9}, {"steps": 0}, {"steps": 10**9},
            {"max_side": 10}, {"guidance_scale": 1e300}, {"seed": -1}, {"strength": 7},
            {"instruction": "x" * 10_000}, {"steps": "many"}])))

    def stalled_upload(self) -> int:
        return self.raw("/caption", b'{"image": "', declared=100_000)  # the worker answers 408 after its limit

    def aborted_upload(self) -> int:
        return self.raw("/edit", b'{"image": "' + b"A" * 20_000, declared=200_000, hold=0.05, read=False)

    def gone_client(self) -> int:
        """A caption whose client leaves before the answer (it may be queued behind an edit)."""
        body = json.dumps({"image": png_b64(photo(random.randrange(10**6)))}).encode()
        return self.raw("/caption", body, declared=len(body), hold=0.02, read=False)


GOOD = {"caption": 3, "ground": 2, "segment": 2, "score": 2, "edit": 2, "edit_stream": 1, "cancelled_edit": 1}
BAD = {"broken_json": 2, "nan_json": 2, "deep_json": 1, "wrong_token": 1, "oversize": 1, "memory_bomb": 1,
       "strip": 1, "bad_image": 1, "bad_fields": 2, "bad_knobs": 2, "stalled_upload": 1, "aborted_upload": 1,
       "gone_client": 1}
CASES = {**{f"good_{k}" if not k.startswith("cancelled") else k: v for k, v in GOOD.items()}, **BAD}
"""Case name (a :class:`Soak` method) -> weight in the mix."""


def soak(url: str, token: Optional[str], requests: int = 300, concurrency: int = 6, seed: int = 0,
         memory: Optional[Callable[[], dict[str, int]]] = None) -> dict:
    """Run ``requests`` mixed cases, ``concurrency`` at a time. Returns counts, 5xx answers, failures
    of the client itself, wall time and (with ``memory``) the worker's memory before and after."""
    rng = random.Random(seed)
    names = rng.choices(list(CASES), weights=list(CASES.values()), k=requests)
    runner = Soak(url, token)
    outcomes: list[Outcome] = []
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    before = memory() if memory else None

    def one(name: str) -> None:
        started = time.perf_counter()
        try:
            status = getattr(runner, name)()
        except (httpx.HTTPError, OSError) as err:  # the client's own transport: counted, not hidden
            with lock:
                errors[f"{name}: {type(err).__name__}"] += 1
            return
        with lock:
            outcomes.append(Outcome(name, status, time.perf_counter() - started))

    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, names))
        serving = runner.good_caption() == 200
    finally:
        runner.close()
    by_case: dict[str, Counter[int]] = {}
    for o in outcomes:
        by_case.setdefault(o.case, Counter())[o.status] += 1
    return {"requests": requests, "concurrency": concurrency, "wall_s": round(time.perf_counter() - started, 1),
            "by_case": by_case, "server_errors": [o for o in outcomes if o.status >= 500],
            "client_errors": dict(errors), "serving_after": serving, "memory_before": before,
            "memory_after": memory() if memory else None}


def print_table(result: dict, bound: Optional[int] = None) -> None:
    print(f"soak: {result['requests']} requests, {result['concurrency']} at a time, {result['wall_s']} s")
    print(f"{'case':18} {'n':>4}  answers")
    for case, counts in sorted(result["by_case"].items()):
        shown = ", ".join(f"{s or 'gone'}: {n}" for s, n in sorted(counts.items()))
        print(f"{case:18} {sum(counts.values()):4}  {shown}")
    print(f"5xx answers: {len(result['server_errors'])}; client transport errors: {result['client_errors'] or 0}; "
          f"serving after: {result['serving_after']}")
    if result["memory_after"]:
        mb = 1 << 20
        b, a = result["memory_before"], result["memory_after"]
        print(f"worker memory: {b['VmRSS'] / mb:.0f} MB after warm-up, {a['VmRSS'] / mb:.0f} MB at the end, "
              f"peak {a['VmHWM'] / mb:.0f} MB" + (f" (bound {bound / mb:.0f} MB)" if bound else ""))


# --------------------------------------------------------------------------- a worker to soak


def proc_memory(pid: int) -> dict[str, int]:
    """``{"VmRSS", "VmHWM"}`` of a process, bytes (Linux /proc)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {k: int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}


def reset_peak(pid: int) -> None:
    """Reset the process's peak resident memory (VmHWM) to its current resident memory."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def start_worker(models: Path, port: int, token_file: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """``python -m tools.worker`` on 127.0.0.1:``port``; returns once ``/ready`` answers 200."""
    args = [sys.executable, "-m", "tools.worker", "--port", str(port), "--models", str(models),
            "--token-file", str(token_file)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_ready(proc, f"http://127.0.0.1:{port}", 180, log)
    except RuntimeError:
        proc.terminate()
        raise
    return proc


def wait_until_ready(proc: subprocess.Popen, url: str, timeout: float, log: Path) -> None:
    """Wait until the worker process at ``url`` answers ``/ready`` with 200; RuntimeError (with the
    end of its ``log``) if it exits or is not ready within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the worker was not ready within {timeout:.0f} s: {log.read_text()[-2000:]}")


def memory_table(url: str, token: Optional[str], pid: int, sizes=(1000, 2000, 3000)) -> None:
    """Peak memory of each route at several image sizes, against the worker's own estimate."""
    from tools.worker.limits import estimate_bytes

    client = httpx.Client(base_url=url, timeout=300, headers={"Authorization": f"Bearer {token}"} if token else {})
    print(f"{'route':8} {'size':>10} {'peak MB':>8} {'estimate MB':>12} {'estimate/peak':>14}")
    for side in sizes:
        size = (side, side * 3 // 4)
        rng = np.random.default_rng(side)
        img = png_b64(Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)))
        other = png_b64(Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)))
        m = np.zeros((size[1], size[0]), np.uint8)
        m[size[1] // 4: size[1] // 2, size[0] // 4: size[0] // 2] = 255
        mask = png_b64(Image.fromarray(m).convert("1"))
        whole = png_b64(Image.new("1", size, 1))
        bodies = {
            "caption": {"image": img}, "ground": {"image": img, "phrase": "a thing"},
            "segment": {"image": img, "boxes": [[10, 10, size[0] // 2, size[1] // 2]]},
            "edit": {"image": img, "mask": mask, "request": {"editor": "ip2p-composite", "instruction": "red",
                                                               "steps": 1}},
            "edit-all": {"image": img, "mask": whole, "request": {"editor": "ip2p-composite", "instruction": "red",
                                                                   "steps": 1}},  # a mask of the whole photo
            "score": {"original": img, "edited": other, "mask": mask, "box": [10, 10, size[0] // 2, size[1] // 2]},
        }
        for name, body in bodies.items():
            route = name.split("-")[0]
            data = json.dumps(body).encode()
            base = proc_memory(pid)["VmRSS"]
            reset_peak(pid)
            status = client.post(f"/{route}", content=data, headers={"Content-Type": "application/json"}).status_code
            peak = proc_memory(pid)["VmHWM"] - base
            encoded = sum(len(base64.b64decode(v)) for k, v in body.items() if k in ("image", "mask", "original",
                                                                                    "edited"))
            estimate = estimate_bytes(route, [size], encoded)
            print(f"{name:8} {f'{size[0]}x{size[1]}':>10} {peak / 2**20:8.0f} {estimate / 2**20:12.0f} "
                  f"{estimate / max(peak, 1):14.2f}" + ("" if status == 200 else f"  (HTTP {status})"))
    client.close()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="soak a running worker (default: start one with the tiny models)")
    parser.add_argument("--token-file", help="the running worker's token file")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", help="models folder for the worker it starts (default: tiny random ones)")
    parser.add_argument("--memory", action="store_true", help="print peak memory per route and size instead")
    args = parser.parse_args(argv)
    if args.url:
        token = Path(args.token_file).read_text().strip() if args.token_file else None
        result = soak(args.url, token, args.requests, args.concurrency, args.seed)
        print_table(result)
        return 0 if not result["server_errors"] and result["serving_after"] else 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        models = Path(args.models) if args.models else None
        if models is None:
            from tools.tiny import make_tiny

            models = make_tiny(tmp_path / "tiny")
        token = "soak-" + os.urandom(8).hex()
        (tmp_path / "token").write_text(token)
        budget = 2048 << 20 if args.memory else 256 << 20
        env = {"LOCALEDIT_DEVICE": os.environ.get("LOCALEDIT_DEVICE", "cpu"), "LOCALEDIT_MAX_SIDE": "64",
               "LOCALEDIT_STEPS": "2", "LOCALEDIT_MAX_UPLOAD_BYTES": str(40 << 20), "LOCALEDIT_UPLOAD_TIMEOUT": "2",
               "LOCALEDIT_MAX_REQUEST_MEMORY": str(budget), "HF_HUB_OFFLINE": "1"}
        if args.memory:  # big blocks straight from (and back to) the OS, so each request's peak is its own
            env.update(MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
        port = free_port()
        proc = start_worker(models, port, tmp_path / "token", env, tmp_path / "worker.log")
        try:
            url = f"http://127.0.0.1:{port}"
            if args.memory:
                memory_table(url, token, proc.pid)
                return 0
            result = soak(url, token, args.requests, args.concurrency, args.seed, lambda: proc_memory(proc.pid))
            bound = result["memory_before"]["VmRSS"] + budget + SLACK
            print_table(result, bound)
            ok = not result["server_errors"] and result["serving_after"] and result["memory_after"]["VmHWM"] <= bound
            return 0 if ok else 1
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
