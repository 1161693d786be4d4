"""Stage benchmark: time and peak memory of every stage, a whole turn, the speed options, memory modes.

    python -m bench.stages                                    # tiny random models (wiring + overhead)
    localedit models make-random /tmp/full                    # full-size random models (no weights on disk)
    python -m bench.stages --models /tmp/full --device cpu --dtype bfloat16 --max-side 256 --steps 2
    python -m bench.stages --models /tmp/full --device cuda --max-side 256,512 --steps 20 --runs 3

Prints, labelled with device, dtype, sizes, steps and date:

1. **stages**: per work size, each stage (caption, ground, segment, each editor, score) with its cold
   time (first call on a new photo: every encoder runs), the median warm time (same photo: the
   per-image caches hit) and the stage's peak memory: CUDA peak allocated on a GPU, the process's
   peak RSS on the CPU (Linux ``VmHWM``, reset before each stage), and how much it rose above the
   memory held before the stage (the activations). Model loading is timed per role.
2. **turn**: one localized agent turn ("make the cat on the left red") through the real graph,
   with its attempts, time and peak memory.
3. **options**: each speed setting against the default, in the same run, on the ip2p-composite edit:
   fp16 and bf16 against the run's dtype, SDPA attention, ``torch.compile``, the few-step samplers
   (DPM++ / UniPC at ``--few-steps``), the tiny autoencoder, and 1 / 2 / 4 concurrent edits batched
   into one pipeline call (the Ray Serve worker's batching).
4. **memory**: what each mode needs on a GPU in fp16: parameter bytes (counted) plus the largest
   activation measured above; all models resident against 24 GB, ``LOCALEDIT_OFFLOAD=model`` (the
   small models resident, the largest other one on the GPU for its stage) against 12 GB.

``--one-at-a-time`` (the default on the CPU) loads one role, runs its stages and releases it, so a
full-size run stays under about 10 GB of RAM in bf16; the turn then finds the caption in the cache
(BLIP-2 already released) and loads the roles it uses. A benchmark, not a test: it prints tables.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

from PIL import Image, ImageDraw

from tools.config import Settings
from tools.types import EDITORS, MASKED_EDITORS, EditRequest

GB = 1024 ** 3
BENCH_CALL_LIMIT = 3600.0
"""Seconds each call of the benchmark's turn may take (a user's turn has 30 s to ground: see ``Settings``)."""

def bench_limits() -> dict[str, float]:
    """The settings that give every call of a benchmark's turn :data:`BENCH_CALL_LIMIT` seconds."""
    return {f"{call}_timeout": BENCH_CALL_LIMIT for call in ("caption", "ground", "segment", "score", "worker")}


DEFAULT_EDITORS = tuple(e for e in EDITORS if e not in ("qwen-edit", "kontext", "klein"))
"""The editors timed by default: the Stable Diffusion ones, all at the same work side."""


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


# --------------------------------------------------------------------------- memory


class PeakMemory:
    """Peak memory of a block: CUDA peak allocated on ``cuda``, else the process's peak RSS.

    ``peak`` is the absolute peak during the block, ``rise`` how far it went above the memory held
    when the block started (on a GPU: above the allocated bytes; on the CPU: above RSS). On a GPU
    also ``reserved``, the caching allocator's peak reserved bytes, and ``in_use``, the device memory
    in use when the block ends (``cudaMemGetInfo``: the CUDA context and workspaces included); both
    are 0 on the CPU.
    """

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.peak = self.rise = self.reserved = self.in_use = 0

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            _trim()
            with contextlib.suppress(OSError):
                Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self.start = _status("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
            self.reserved = torch.cuda.max_memory_reserved()
            free, total = torch.cuda.mem_get_info()
            self.in_use = total - free
        else:
            self.peak = _status("VmHWM")
        self.rise = max(0, self.peak - self.start)


def _status(field: str) -> int:
    """A ``/proc/self/status`` memory field in bytes (0 where there is no /proc)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _trim() -> None:
    """Give freed heap memory back to the system, so RSS measures what is held (glibc only)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def measured(fn: Callable[[], Any], device: str) -> tuple[float, PeakMemory, Any]:
    """``(seconds, memory, result)`` of one call."""
    with PeakMemory(device) as mem:
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
    return seconds, mem, result


# --------------------------------------------------------------------------- the stages

ROLE_STAGES = [("caption", ["caption"]), ("detector", ["ground"]), ("sam", ["segment"]),
               ("ip2p", ["ip2p", "ip2p-composite", "regionwise"]), ("sd", ["diffedit"]),
               ("inpaint", ["inpaint"]), ("clip", ["score"])]
"""Each role and the stages that use it, in the order they run (one role in memory at a time)."""


class Bench:
    """One benchmark run: a worker, the photo, and the rows collected."""

    def __init__(self, settings: Settings, args: argparse.Namespace):
        from tools.worker import LocalWorker

        self.settings, self.args = settings, args
        self.device = str(args.device)
        self.worker = LocalWorker(settings)
        self.size = tuple(int(v) for v in args.size.lower().split("x"))
        self.photo = test_photo(self.size)
        w, h = self.size
        self.box = (w * 0.1, h * 0.3, w * 0.4, h * 0.8)
        self.rows: list[dict] = []
        self.loads: list[dict] = []
        self.masks: dict[int, Any] = {}
        self.edited: dict[int, Image.Image] = {}
        self._fresh = 0

    def fresh(self) -> Image.Image:
        """A photo no cache has seen (rotated a little more each time)."""
        self._fresh += 1
        return self.photo.rotate(3 * self._fresh)

    def settings_at(self, side: int) -> None:
        self.worker.settings = self.settings.model_copy(update={"max_side": side})
        self.worker._tools.pop("edit", None)  # the editor reads max_side from its settings

    def load(self, role: str) -> None:
        seconds, mem, _ = measured(lambda: self.worker.registry.get(role), self.device)
        self.loads.append({"role": role, "seconds": seconds, "peak": mem.peak, "rise": mem.rise})

    def stage(self, name: str, side: int, call: Callable[[Image.Image], object]) -> None:
        """``call`` on a new photo (cold: every encoder runs), then ``--runs`` times on the same one
        (warm: the per-image caches hit where the stage has one)."""
        photo = self.fresh()
        seconds, mem, _ = measured(lambda: call(photo), self.device)
        warm_times = []
        for _ in range(self.args.runs):
            t, m, _ = measured(lambda: call(photo), self.device)
            warm_times.append(t)
            mem.peak, mem.rise = max(mem.peak, m.peak), max(mem.rise, m.rise)
            mem.reserved, mem.in_use = max(mem.reserved, m.reserved), max(mem.in_use, m.in_use)
        self.rows.append({"stage": name, "side": side, "cold": seconds, "warm": warm_times,
                          "peak": mem.peak, "rise": mem.rise, "reserved": mem.reserved, "in_use": mem.in_use})
        print(f"  {name} @ {side}: cold {seconds:.2f} s, warm {_median(warm_times)}, peak {mem.peak / GB:.2f} GB",
              flush=True)

    def run_stage(self, name: str, side: int) -> None:
        w, box = self.worker, self.box
        if name == "caption":
            self.stage(name, side, w.caption)
        elif name == "ground":
            self.stage(name, side, lambda im: w.ground(im, "cat"))
        elif name == "segment":
            self.stage(name, side, lambda im: self.masks.__setitem__(side, w.segment(im, [box]).mask))
        elif name == "score":
            kw = dict(mask=self._mask(side), box=box, source_caption="a photo of a cat",
                      target_caption="a photo of a fox")
            self.stage(name, side, lambda im: w.score(im, self.edited.get(side, im), **kw))
        else:
            req = EditRequest(editor=name, instruction="turn it into a fox", source_caption="a photo of a cat",
                              target_caption="a photo of a fox")
            m = self._mask(side) if name in MASKED_EDITORS else None

            def edit(im: Image.Image) -> None:
                result = w.edit(im, m, req)
                if name == "ip2p-composite":
                    self.edited[side] = result.image
            self.stage(f"edit {name}", side, edit)

    def _mask(self, side: int):
        if side not in self.masks:
            from tools.images import box_to_mask

            self.masks[side] = box_to_mask(self.box, self.size)
        return self.masks[side]

    def stages(self, sides: list[int], editors: list[str], stages: list[str]) -> None:
        wanted = {*(s for s in stages if s != "edit"), *(editors if "edit" in stages else [])}
        for role, names in ROLE_STAGES:
            names = [n for n in names if n in wanted]
            if not names:
                continue
            print(f"{role}:", flush=True)
            self.load(role)
            for side in sides:
                self.settings_at(side)
                for name in names:
                    self.run_stage(name, side)
            if self.args.one_at_a_time:
                self.worker.release(role)

    # ----------------------------------------------------------------------- a whole turn

    def turn(self, side: int, tmp: Path) -> dict:
        """One localized turn through the agent graph (offline parser), with its attempts."""
        from agent.language.llm import Understander
        from agent.runtime.session import Conversations

        # A benchmark measures the turn whatever it costs: the per-call limits a user's turn has (30 s to
        # ground, ...) would abandon a cold full-size model on a CPU and time nothing.
        settings = self.settings.model_copy(update={"max_side": side, "data_dir": tmp / "turn", **bench_limits()})
        self.worker.settings = settings
        self.worker._tools.clear()
        if self.args.one_at_a_time:  # caption first and release BLIP-2: the turn finds it in the cache
            self.worker.caption(self.photo)
            self.worker.release("caption")
        conv = Conversations(settings, worker=_KnownBox(self.worker, self.box), understander=Understander(None))
        try:
            chat = conv.session()
            path = tmp / "turn.png"
            self.photo.save(path)
            chat.send("", image=path)
            seconds, mem, reply = measured(lambda: chat.send("make the cat on the left red"), self.device)
        finally:
            conv.close()
        attempts = [f"{a.get('editor')}" for a in reply.attempts]
        return {"side": side, "seconds": seconds, "peak": mem.peak, "attempts": attempts, "text": reply.text,
                "caption_cached": "caption" not in self.worker.registry.loaded()}

    # ----------------------------------------------------------------------- speed options

    def options(self, side: int, names: list[str]) -> list[dict]:
        """The ip2p-composite edit under each speed option, against the default, in this run."""
        from tools.worker import LocalWorker

        base = self.settings.model_copy(update={"max_side": side})
        steps, few = self.args.option_steps or self.settings.steps, self.args.few_steps
        variants: dict[str, tuple[dict, int]] = {"default": ({}, steps)}
        table = {"fp32": ({"dtype": "float32"}, steps), "fp16": ({"dtype": "float16"}, steps),
                 "bf16": ({"dtype": "bfloat16"}, steps), "sdpa": ({"attention": "sdpa"}, steps),
                 "eager": ({"attention": "eager"}, steps), "compile": ({"torch_compile": True}, steps),
                 "dpm++": ({"ip2p_scheduler": "dpm++"}, few), "unipc": ({"ip2p_scheduler": "unipc"}, few),
                 "taesd": ({"preview_vae": True}, steps)}
        variants.update({n: table[n] for n in names if n in table})
        rows = []
        mask = self._mask(side)
        for name, (update, n_steps) in variants.items():
            worker = LocalWorker(base.model_copy(update=update))
            req = EditRequest("ip2p-composite", "turn it into a fox", steps=n_steps)
            try:
                worker.registry.get("ip2p")
                cold, mem, _ = measured(lambda: worker.edit(self.fresh(), mask, req), self.device)
                warm, mem2, _ = measured(lambda: worker.edit(self.photo, mask, req), self.device)
                rows.append({"option": name, "steps": n_steps, "cold": cold, "warm": warm,
                             "peak": max(mem.peak, mem2.peak), "dtype": str(worker.registry.dtype)})
            except Exception as err:  # noqa: BLE001 - an option this device lacks is reported, not fatal
                rows.append({"option": name, "steps": n_steps, "error": f"{type(err).__name__}: {err}"[:120]})
            finally:
                for role in ("ip2p", "taesd"):
                    worker.release(role)
                del worker
                gc.collect()
            print(f"  option {name}: {rows[-1]}", flush=True)
        if "batch" in names:
            rows += self.batching(base, steps, mask)
        return rows

    def batching(self, settings: Settings, steps: int, mask) -> list[dict]:
        """1, 2 and 4 concurrent ip2p-composite edits run as one batched pipeline call."""
        from tools.worker import LocalWorker
        from tools.worker.server import EditJob, WorkerService

        service = WorkerService(settings, worker=LocalWorker(settings))
        service.worker.registry.get("ip2p")
        rows = []
        req = EditRequest("ip2p-composite", "turn it into a fox", steps=steps)
        service.edit_batch([EditJob(self.photo, mask, req)])  # warm
        for n in (1, 2, 4):
            jobs = [EditJob(self.fresh(), mask, req) for _ in range(n)]
            seconds, mem, answers = measured(lambda: service.edit_batch(jobs), self.device)
            bad = [a for a in answers if not isinstance(a, dict)]
            rows.append({"option": f"batch {n}", "steps": steps, "warm": seconds, "per_edit": seconds / n,
                         "peak": mem.peak, "error": str(bad[0]) if bad else None})
            print(f"  {rows[-1]}", flush=True)
        service.worker.release("ip2p")
        return rows


class _KnownBox:
    """The bench's worker for the turn: GroundingDINO runs (and is timed) as usual, but where random
    weights find nothing that matches, the photo's known object box stands in (as the tests' scenes do)."""

    def __init__(self, worker, box):
        self._worker, self._box = worker, box

    def __getattr__(self, name: str):
        return getattr(self._worker, name)

    def ground(self, image, phrase, **kwargs):
        from tools.types import Detection

        found = self._worker.ground(image, phrase, **kwargs)
        return found or [Detection(phrase, 0.5, self._box)]


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s" if values else "-"


# --------------------------------------------------------------------------- memory profile


def memory_profile(settings: Settings, rows: list[dict]) -> list[dict]:
    """What each mode needs on a GPU in fp16: parameter bytes plus the largest measured activation.

    Parameters are counted on the meta device (fp16: 2 bytes each; SAM runs in fp32: 4). The
    activation of a role is the largest rise in memory over its stages in this run (measured in the
    run's dtype; an fp16 activation has the same size as a bf16 one and half an fp32 one).
    """
    from tools.models import model_sources, parameter_counts

    sources = model_sources(settings)
    elem = {"float32": 4}.get(settings.dtype, 2) if settings.dtype != "auto" else (
        4 if str(settings.device) == "cpu" else 2)
    per_role: list[dict] = []
    stage_role = {s: role for role, names in ROLE_STAGES for s in names}
    for role in sources:
        counts = parameter_counts(role, sources[role], settings)
        if counts is None:
            continue
        bytes_fp16 = counts["params"] * (4 if role == "sam" else 2)
        rises = [r["rise"] for r in rows if stage_role.get(r["stage"].removeprefix("edit ")) == role]
        act = max(rises, default=0) * (2 / elem)
        per_role.append({"role": role, "params": counts["params"], "weights": bytes_fp16, "activation": act})
    return per_role


COMPUTED = ("GPU memory per mode, COMPUTED (not measured on a GPU): parameters counted on the meta device x 2 bytes "
            "(fp16; SAM 4, fp32) plus each role's largest activation, measured in this run as the rise of the "
            "process's RSS and scaled to fp16; it leaves out the CUDA context, cuDNN/cuBLAS workspaces, allocator "
            "slack and the SAM embeddings cached on the GPU. `python -m bench.gpu` on a GPU measures them.")
"""The label over the computed memory figures."""


def memory_modes(per_role: list[dict]) -> dict[str, float]:
    """Bytes needed with every model resident, and with ``LOCALEDIT_OFFLOAD=model``."""
    from tools.models import OFFLOADED

    resident = [r for r in per_role if r["role"] not in OFFLOADED]
    offloaded = [r for r in per_role if r["role"] in OFFLOADED]
    act = max((r["activation"] for r in per_role), default=0.0)
    everything = sum(r["weights"] for r in per_role) + act
    small = sum(r["weights"] for r in resident)
    largest = max((r["weights"] + r["activation"] for r in offloaded), default=0.0)
    small_act = max((r["activation"] for r in resident), default=0.0)
    return {"all resident": everything, "offload": small + max(largest, small_act)}


# --------------------------------------------------------------------------- printing


def _gb(n: float) -> str:
    return f"{n / GB:.2f}"


def print_report(bench: Bench, header: str, turn: Optional[dict], options: list[dict],
                 per_role: list[dict]) -> None:
    print("\n" + header)
    print("\n| load | s | peak GB |\n|---|---|---|")
    for r in bench.loads:
        print(f"| {r['role']} | {r['seconds']:.1f} | {_gb(r['peak'])} |")
    print("\n| stage | work size | cold s | warm p50 s | peak GB | rise GB |\n|---|---|---|---|---|---|")
    for r in bench.rows:
        warm = f"{statistics.median(r['warm']):.2f}" if r["warm"] else "-"
        print(f"| {r['stage']} | {r['side']} | {r['cold']:.2f} | {warm} | {_gb(r['peak'])} | {_gb(r['rise'])} |")
    if turn:
        if not turn["attempts"]:  # the turn edited nothing: its time is not a turn's time
            print(f"\nturn at {turn['side']}: FAILED, no edit was made ({turn['seconds']:.1f} s); "
                  f"reply: {turn['text'][:160]}")
        else:
            print(f"\nturn at {turn['side']}: {turn['seconds']:.1f} s, peak {_gb(turn['peak'])} GB, "
                  f"{len(turn['attempts'])} attempt(s): {', '.join(turn['attempts'])}"
                  f"{' (caption from the cache)' if turn['caption_cached'] else ''}; reply: {turn['text'][:100]}")
    if options:
        default = next((o for o in options if o["option"] == "default" and "warm" in o), None)
        print("\n| option (ip2p-composite) | steps | cold s | warm s | vs default | peak GB |\n|---|---|---|---|---|---|")
        for o in options:
            if o.get("error") and "warm" not in o:
                print(f"| {o['option']} | {o['steps']} | - | - | {o['error']} | - |")
                continue
            per_edit = o.get("per_edit") or o.get("warm")  # batches: throughput per edit against one default edit
            ratio = f"{default['warm'] / per_edit:.2f}x" if default and per_edit else "-"
            cold = f"{o['cold']:.2f}" if "cold" in o else "-"
            extra = f" ({o['per_edit']:.2f} s per edit)" if "per_edit" in o else ""
            print(f"| {o['option']} | {o['steps']} | {cold} | {o['warm']:.2f}{extra} | {ratio} | {_gb(o['peak'])} |")
    if per_role:
        print(f"\n{COMPUTED}\n\n| role (fp16 on a GPU) | params | weights GB (computed) | activation GB (measured "
              f"here, scaled to fp16) |\n|---|---|---|---|")
        for r in per_role:
            print(f"| {r['role']} | {r['params'] / 1e6:,.1f} M | {_gb(r['weights'])} | {_gb(r['activation'])} |")
        for mode, need in memory_modes(per_role).items():
            budget = 24 if mode == "all resident" else 12
            print(f"{mode}: computed need {_gb(need)} GB (weights + largest activation; no CUDA context, "
                  f"workspaces or allocator slack) -> {'would fit' if need <= budget * GB else 'would NOT fit'} "
                  f"a {budget} GB GPU (computed, not measured on a GPU)")


def run_settings(models: str, device: str, dtype: str, steps: int, side: int):
    """``(settings, device, dtype, device name)`` of a benchmark run. ``dtype="auto"`` is fp16 on CUDA and
    bf16 on a CPU (BLIP-2 alone is 15 GB in fp32, and bf16 is faster there too)."""
    import torch

    from tools.models import resolve_device

    settings = Settings(models_dir=models, device=device, dtype=dtype, steps=steps, max_side=side, _env_file=None)
    resolved, torch_dtype = resolve_device(settings)
    if dtype == "auto" and resolved.type == "cpu":
        settings = settings.model_copy(update={"dtype": "bfloat16"})
        resolved, torch_dtype = resolve_device(settings)
    name = (torch.cuda.get_device_name(resolved) if resolved.type == "cuda"
            else f"CPU ({torch.get_num_threads()} threads)")
    return settings, resolved, torch_dtype, name


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", help="models folder (default: tiny random models made in a temp folder)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                   help="auto: fp16 on CUDA, bf16 on the CPU (a full-size fp32 BLIP-2 alone needs 15 GB)")
    p.add_argument("--max-side", default="256,512", help="work sizes (long side), comma-separated")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--runs", type=int, default=3, help="warm runs per stage (0: cold only)")
    p.add_argument("--size", default="640x480", help="photo size WxH")
    p.add_argument("--editors", default=",".join(DEFAULT_EDITORS),
                   help="editors to time (default: the Stable Diffusion ones; qwen-edit, kontext and klein work at "
                        "LOCALEDIT_MODERN_SIDE, see python -m bench.crop)")
    p.add_argument("--stages", default="caption,ground,segment,edit,score", help="stages to run (edit: --editors)")
    p.add_argument("--options", help="speed options to compare with the default ('none' for none; default on "
                   "CUDA: bf16,fp32,sdpa,compile,dpm++,unipc,taesd,batch; on the CPU, where fp16 and torch.compile "
                   "take too long to be worth it: fp32,sdpa,dpm++,unipc,taesd,batch)")
    p.add_argument("--option-side", type=int, help="work size of the option runs (default: the first size)")
    p.add_argument("--option-steps", type=int, help="steps of the option runs (default: --steps)")
    p.add_argument("--few-steps", type=int, default=10, help="steps of the few-step samplers (8-12)")
    p.add_argument("--no-turn", action="store_true", help="skip the whole-turn run")
    p.add_argument("--one-at-a-time", action=argparse.BooleanOptionalAction, default=None,
                   help="release each role after its stages (default: on for the CPU)")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):  # each line out as it is printed, to a terminal, a pipe or a file:
        sys.stdout.reconfigure(line_buffering=True)  # a run that dies later keeps what it measured
    import torch

    sides = [int(v) for v in args.max_side.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        models = args.models
        if models is None:
            from tools.tiny import make_tiny

            models = str(make_tiny(Path(tmp) / "tiny"))
            print("tiny random models (a wiring and overhead check; outputs are noise)")
        settings, device, dtype, name = run_settings(models, args.device, args.dtype, args.steps, sides[0])
        args.device = str(device)
        if args.one_at_a_time is None:
            args.one_at_a_time = device.type == "cpu"
        header = (f"device {name}, dtype {str(dtype).replace('torch.', '')}, torch {torch.__version__}, "
                  f"photo {args.size}, work sizes {sides}, {args.steps} steps, {args.runs} warm run(s), "
                  f"models {models}, {datetime.date.today().isoformat()}, load average at start "
                  f"{os.getloadavg()[0]:.1f}"
                  + (", one role in memory at a time" if args.one_at_a_time else ""))
        print(header, flush=True)
        bench = Bench(settings, args)
        editors = [e for e in args.editors.split(",") if e]
        bench.stages(sides, editors, args.stages.split(","))
        turn = None if args.no_turn else bench.turn(sides[0], Path(tmp))
        print(f"turn: {turn}", flush=True)
        if args.options is None:
            args.options = ("bf16,fp32,sdpa,compile,dpm++,unipc,taesd,batch" if device.type == "cuda"
                            else "fp32,sdpa,dpm++,unipc,taesd,batch")
        names = [] if args.options == "none" else args.options.split(",")
        bench.worker._tools.clear()
        for role in list(bench.worker.registry.loaded()):
            bench.worker.release(role)
        options = bench.options(args.option_side or sides[0], names) if names else []
        per_role = memory_profile(settings, bench.rows)
    print_report(bench, header, turn, options, per_role)
    if args.json:
        Path(args.json).write_text(json.dumps({"header": header, "loads": bench.loads, "stages": bench.rows,
                                               "turn": turn, "options": options, "memory": per_role,
                                               "modes": memory_modes(per_role)}, indent=2, default=str))


if __name__ == "__main__":
    main()
