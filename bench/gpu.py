"""One command for a real-size run: every stage and whole turns, both memory modes, compile vs eager.

    python -m bench.gpu                                        # on a GPU: full-size random models, 512 px, 20 steps, fp16
    python -m bench.gpu --device cpu --max-side 64 --steps 2   # the same table on a CPU (bf16), small and quick
    python -m bench.gpu --models tiny --device cpu --max-side 64 --steps 2   # tiny random models: a wiring check

Without ``--models`` it first builds the full-size random models (``localedit models make-random``:
the published architectures, random weights, so the cost of the real models; no download) in a
temporary folder. Then, for each memory mode (``resident``: every model on the device;
``offload``: ``LOCALEDIT_OFFLOAD=model``, BLIP-2 and the pipelines moved to the GPU for their stage
only, a no-op on a CPU), it

1. loads every role (timed) and warms up at the real shape: one edit at the work size and step
   count, so the first timed call pays no kernel selection or allocator growth;
2. times each stage (caption, ground, segment, each editor, score) cold (a new photo) and warm (the
   same photo again: the per-image caches hit);
3. times whole agent turns through the real graph with the offline parser: a cold localized turn on
   a new photo with ``max_attempts`` fixed at 1 and at the default, a follow-up ("now make it blue":
   the same region, no grounding or SAM) and a global turn ("make it look like winter").

In the resident mode it also times the judge's retries one call each against one batched call
(:func:`retry_rows`, ``LOCALEDIT_BATCH_RETRIES``), and the ip2p-composite edit with ``torch.compile``
against eager, in the same run (on by default on CUDA; ``--compile`` on a CPU needs a C++ compiler
and minutes).

Every row has its peak memory: on CUDA the allocator's peak allocated and peak reserved bytes and the
device memory in use at the row's end (``cudaMemGetInfo``: the CUDA context, workspaces and
everything the process holds); on a CPU the process's peak RSS. All figures are measured by this
run; the header says device, dtype, size, steps and date. A benchmark, not a test: it prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Optional

from bench.stages import GB, Bench, PeakMemory, _KnownBox, bench_limits, measured, run_settings
from tools.config import Settings

MODES = {"resident": "none", "offload": "model"}
"""Each memory mode and its ``LOCALEDIT_OFFLOAD`` value."""

STAGES = ("caption", "ground", "segment", "edit", "score")
EDITORS = ("ip2p-composite", "regionwise", "diffedit", "inpaint", "ip2p")
TURNS = (("localized, cold", "make the cat on the left red"),
         ("follow-up", "now make it blue"),
         ("global", "make it look like winter"))
"""The turns of one conversation: a new photo, a follow-up on the region just edited, a global edit."""


COMPILE_NOT_RUN = "not run: off by default on a CPU (inductor compiles C++, minutes); --compile"
"""The compile row's text where ``torch.compile`` was not timed (a CPU without ``--compile``)."""


def _memory(mem: PeakMemory) -> dict[str, float]:
    return {"peak": mem.peak, "reserved": mem.reserved, "in_use": mem.in_use}


def conversation(bench: Bench, settings: Settings, tmp: Path, attempts: Optional[int]) -> list[dict]:
    """The turns of :data:`TURNS` on a photo no cache has seen, each timed with its memory.

    ``attempts``: ``max_attempts`` fixed for the conversation (None: the settings' default).
    """
    from agent.language.llm import Understander
    from agent.runtime.session import Conversations

    # the per-call limits of a user's turn (30 s to ground, ...) would abandon a cold full-size model on a CPU
    settings = settings.model_copy(update=bench_limits())
    if attempts is not None:
        settings = settings.model_copy(update={"max_attempts": attempts})
    label = f"{settings.max_attempts}" + ("" if attempts is not None else " (default)")
    folder = tmp / f"turns-{label.split()[0]}-{time.monotonic_ns()}"
    folder.mkdir(parents=True)
    conv = Conversations(settings.model_copy(update={"data_dir": folder}),
                         worker=_KnownBox(bench.worker, bench.box), understander=Understander(None))
    rows = []
    try:
        chat = conv.session()
        photo = folder / "photo.png"
        bench.fresh().save(photo)
        chat.send("", image=photo)
        for name, text in TURNS:
            seconds, mem, reply = measured(lambda: chat.send(text), bench.device)
            rows.append({"row": f"turn: {name}", "attempts_cap": label, "seconds": seconds, **_memory(mem),
                         "attempts": [a.get("editor") for a in reply.attempts], "reply": reply.text})
            if not reply.attempts:  # no edit: its time is not a turn's time
                rows[-1]["failed"] = reply.text
            print(f"  {rows[-1]['row']} (attempts {label}): {seconds:.2f} s, "
                  f"{len(rows[-1]['attempts'])} attempt(s){'; FAILED: ' + reply.text if not reply.attempts else ''}",
                  flush=True)
    finally:
        conv.close()
    return rows


def retry_rows(bench: Bench, settings: Settings) -> list[dict]:
    """The judge's attempts of one localized turn (first try, stronger edit, baseline: the queue of
    ``attempt_order = primary, stronger, baseline``, black-masked input so each is its own edit) for
    1, 2 and 3 of them: one call each, against ONE batched call (``LOCALEDIT_BATCH_RETRIES``), warm."""
    from agent.conversation import judge, pipeline
    from tools.images import box_to_mask

    s = settings.model_copy(update={"attempt_order": ["primary", "stronger", "baseline"], "max_attempts": 3,
                                    "black_mask_input": True})
    queue = judge.attempt_queue("attribute", s)
    job = pipeline.Job(action="attribute", phrase="cat", instruction="make the cat red",
                       source_caption="a photo of a cat", target_caption="a photo of a red cat")
    photo, w = bench.fresh(), bench.worker
    mask = box_to_mask(bench.box, photo.size)
    requests = [pipeline.request_for(a, job, s) for a in queue]
    masks = [mask if pipeline.is_masked(a["editor"]) else None for a in queue]
    rows = []
    for n in (1, 2, 3):
        ways = {"one call each": lambda: [w.edit(photo, m, r) for m, r in zip(masks[:n], requests[:n])],
                "one batched call": lambda: w.edit_batch(photo, masks[:n], requests[:n])}
        for way, call in ways.items():
            if n == 1 and way == "one batched call":
                continue
            call()  # warm: this batch size's kernels and allocations
            seconds, mem, _ = measured(call, bench.device)
            rows.append({"row": f"retries: {n} attempt(s), {way}", "warm": seconds, **_memory(mem)})
            print(f"  {rows[-1]['row']}: {seconds:.2f} s", flush=True)
    return rows


def compile_rows(settings: Settings, bench: Bench, side: int) -> list[dict]:
    """The ip2p-composite edit with ``torch.compile`` against eager, cold and warm, in this run."""
    rows = []
    for option in bench.options(side, ["compile"]):
        if "warm" not in option:
            rows.append({"row": f"edit ip2p-composite, {option['option']}", "error": option.get("error")})
            continue
        rows.append({"row": f"edit ip2p-composite, {'eager' if option['option'] == 'default' else 'compile'}",
                     "cold": option["cold"], "warm": option["warm"], "peak": option["peak"]})
    return rows


def run_mode(mode: str, settings: Settings, args: argparse.Namespace, tmp: Path) -> list[dict]:
    """Every row of one memory mode."""
    settings = settings.model_copy(update={"offload": MODES[mode]})
    ns = argparse.Namespace(device=args.device, size=args.size, runs=1, one_at_a_time=False,
                            option_steps=None, few_steps=args.steps)
    bench = Bench(settings, ns)
    side = settings.max_side
    print(f"{mode}:", flush=True)
    if args.only == "retries":
        bench.load("ip2p")
        rows = retry_rows(bench, settings)
        for row in rows:
            row["mode"] = mode
        return rows
    for role in ("caption", "detector", "sam", "ip2p", "sd", "inpaint", "clip"):
        bench.load(role)
        if args.file_backed:  # before the next role loads: anonymous memory never holds two roles' copies
            from bench.filebacked import file_back

            file_back(bench.worker.registry.get(role).model, args.file_backed)
    loads = list(bench.loads)  # bench.stages below finds every role loaded (its own load rows are 0 s)
    warm, mem, _ = measured(lambda: warm_up(bench), bench.device)
    print(f"  warm-up at {side} px, {settings.steps} steps: {warm:.1f} s", flush=True)
    bench.stages([side], list(args.editors), list(STAGES))
    rows = [{"row": f"load {r['role']}", "cold": r["seconds"], "peak": r["peak"]} for r in loads]
    rows.append({"row": "warm-up (every stage once at the real shape)", "cold": warm, **_memory(mem)})
    rows += [{"row": r["stage"], "cold": r["cold"], "warm": min(r["warm"], default=None), "peak": r["peak"],
              "reserved": r.get("reserved", 0), "in_use": r.get("in_use", 0)} for r in bench.rows]
    rows += conversation(bench, settings, tmp, 1)
    rows += conversation(bench, settings, tmp, None)
    if mode == "resident":
        rows += retry_rows(bench, settings)
    if mode == "resident" and args.compile:
        for role in list(bench.worker.registry.loaded()):
            bench.worker.release(role)
        rows += compile_rows(settings, bench, side)
    elif mode == "resident":
        rows.append({"row": "edit ip2p-composite, compile", "error": COMPILE_NOT_RUN})
    for row in rows:
        row["mode"] = mode
    del bench
    gc.collect()
    return rows


def warm_up(bench: Bench) -> None:
    """One call of every stage on a throwaway photo at the real work size and step count."""
    from tools.images import box_to_mask
    from tools.types import EditRequest

    photo, w = bench.fresh(), bench.worker
    w.caption(photo)
    w.ground(photo, "cat")
    w.segment(photo, [bench.box])
    mask = box_to_mask(bench.box, bench.size)
    edited = w.edit(photo, mask, EditRequest("ip2p-composite", "turn it into a fox")).image
    w.score(photo, edited, mask=mask, box=bench.box, source_caption="a photo of a cat",
            target_caption="a photo of a fox")


def _cell(row: dict, key: str, scale: float = 1.0, fmt: str = "{:.2f}") -> str:
    value = row.get(key)
    return fmt.format(value / scale) if isinstance(value, (int, float)) and value else "-"


def print_table(header: str, rows: list[dict], cuda: bool) -> None:
    print("\n" + header + "\n")
    mem = ("peak allocated GB | peak reserved GB | device in use GB" if cuda else "peak RSS GB")
    print(f"| mode | row | attempts | cold s | warm s | {mem} |")
    print("|---" * (6 + (2 if cuda else 0)) + "|")
    for r in rows:
        if r.get("error"):
            print(f"| {r['mode']} | {r['row']} | - | {r['error'][:80]} | - |" + " - |" * (3 if cuda else 1))
            continue
        attempts = f"{len(r['attempts'])} of {r['attempts_cap']}" if "attempts" in r else "-"
        if r.get("failed"):
            attempts = f"FAILED, no edit: {r['failed'][:60]}"
        cold = r.get("cold", r.get("seconds"))
        cells = [r["mode"], r["row"], attempts, _cell({"v": cold}, "v"), _cell(r, "warm"), _cell(r, "peak", GB)]
        if cuda:
            cells += [_cell(r, "reserved", GB), _cell(r, "in_use", GB)]
        print("| " + " | ".join(cells) + " |")


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", help="models folder; 'tiny' for tiny random models (default: full-size random "
                   "models built in a temporary folder)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                   help="default: float16 on CUDA, bfloat16 on a CPU")
    p.add_argument("--max-side", type=int, default=512, help="work size (long side)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--size", default="640x480", help="photo size WxH")
    p.add_argument("--modes", default="resident,offload", help="memory modes: resident, offload")
    p.add_argument("--editors", default=",".join(EDITORS))
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="time torch.compile against eager (default: on CUDA only)")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.add_argument("--file-backed", metavar="DIR", help="CPU only: keep the weights in file-backed memory under "
                   "DIR (bench.filebacked), so the run can share the machine's RAM with another large process; "
                   "rows whose weights the kernel dropped read them again")
    p.add_argument("--only", choices=["all", "retries"], default="all",
                   help="'retries': only the judge's retries one call each against one batched call (resident "
                   "mode, InstructPix2Pix loaded alone): minutes, not the whole table's")
    args = p.parse_args(argv)
    args.editors = [e for e in args.editors.split(",") if e]
    import torch

    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        models, kind = _models(args.models, Path(tmp))
        settings, device, dtype, name = run_settings(models, args.device, args.dtype, args.steps, args.max_side)
        args.device = str(device)
        if args.file_backed and device.type != "cpu":
            p.error("--file-backed is for a CPU run (its weights live in the process's memory)")
        if args.compile is None:
            args.compile = device.type == "cuda"
        header = (f"bench.gpu: device {name}, dtype {str(dtype).replace('torch.', '')}, torch {torch.__version__}, "
                  f"{kind}, photo {args.size}, work size {args.max_side}, {args.steps} steps, "
                  f"{datetime.date.today().isoformat()}, load average at start {os.getloadavg()[0]:.1f}; measured"
                  + ("; weights in file-backed memory (--file-backed)" if args.file_backed else ""))
        print(header, flush=True)
        rows: list[dict] = []
        if args.only == "retries":
            args.modes = "resident"
        for mode in [m for m in args.modes.split(",") if m]:
            if mode not in MODES:
                p.error(f"--modes: {mode!r} is not one of {', '.join(MODES)}")
            rows += run_mode(mode, settings, args, Path(tmp))
    print_table(header, rows, device.type == "cuda")
    print(f"\nwall time of the whole run (models built, both modes): {(time.monotonic() - started) / 60:.1f} min")
    if args.json:
        Path(args.json).write_text(json.dumps({"header": header, "rows": rows}, indent=2, default=str))
    return 0


def _models(models: Optional[str], tmp: Path) -> tuple[str, str]:
    """The models folder and how to describe it."""
    if models == "tiny":
        from tools.tiny import make_tiny

        return str(make_tiny(tmp / "tiny")), "tiny random models (a wiring check; outputs are noise)"
    if models is None:
        from tools.fullsize import make_random

        print("building the full-size random models (configurations only; weights drawn at load) ...", flush=True)
        make_random(tmp / "full")
        return str(tmp / "full"), "full-size random models (published architectures, random weights)"
    return models, f"models {models}"


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        raise SystemExit(main())
