"""The ``localedit`` command line.

    localedit edit photo.jpg "turn the cat into a fox" --target cat -o out.png
    localedit models download [ROLE ...]     # fetch weights, with progress
    localedit models download --dry-run      # the files and sizes it would fetch, per role
    localedit models make-tiny DIR           # tiny random models for a no-network wiring check
    localedit models make-random DIR         # full-size random models (real architectures) for benchmarks
    localedit models list [--params --json]  # where each model will be loaded from (and its size)
    localedit parse "make the left cat red" --json
    localedit chat [--port 8000] [--models DIR]   # the chat UI in the browser
    localedit chat-cli [--image photo.jpg]   # a terminal chat: /image PATH, /undo, /redo, /mask, /save PATH, /quit
    localedit eval MANIFEST --editors ip2p,ip2p-composite,diffedit,regionwise --out DIR
    localedit worker [--host H --port P --token T] [--ray]   # the vision models behind an HTTP API

Errors a user can cause print one line (``error: ...``) and exit non-zero; nothing is written.
Exit codes: 0 done, 1 unexpected failure, 2 bad input, 3 model missing, 4 nothing found to edit,
5 worker unreachable, 6 no network for a download (docs/errors.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

EXIT_UNEXPECTED, EXIT_INPUT, EXIT_MODEL, EXIT_NOTHING, EXIT_WORKER, EXIT_NETWORK = 1, 2, 3, 4, 5, 6


OPTIONS = {"models_dir": ("models", "--models"), "device": ("device", "--device"),
           "max_side": ("max_side", "--max-side"), "worker_url": ("worker_url", "--worker-url"),
           "box_threshold": ("box_threshold", "--box-threshold"), "text_threshold": ("text_threshold", "--text-threshold"),
           "editor": ("editor", "--editor"), "seed": ("seed", "--seed"), "steps": ("steps", "--steps"),
           "guidance_scale": ("guidance", "--guidance"), "image_guidance_scale": ("image_guidance", "--image-guidance"),
           "black_mask_input": ("black_mask", "--black-mask"), "max_attempts": ("attempts", "--attempts"),
           "grounder": ("grounder", "--grounder"), "segmenter": ("segmenter", "--segmenter")}
"""The settings the command line can override: setting -> (argument, option)."""


def _settings(args: argparse.Namespace):
    """Settings from the environment, with the command line's overrides on top.

    A flag left off (``--black-mask``: False) keeps the configured value. A value out of range
    (``--max-side 10``, ``--steps 0``, ``LOCALEDIT_STEPS=abc``) is a :class:`LocaleditError`
    naming the option or variable: bad input (exit 2), one line.
    """
    from pydantic import ValidationError

    from tools.config import Settings
    from tools.types import LocaleditError

    overrides = {k: v for k, (arg, _) in OPTIONS.items() if (v := getattr(args, arg, None)) is not None and v is not False}
    try:
        return Settings(**overrides)
    except ValidationError as err:
        first = err.errors()[0]
        name = str(first.get("loc", ("setting",))[0])
        where = OPTIONS[name][1] if name in overrides else f"LOCALEDIT_{name.upper()}"
        value = overrides.get(name, first.get("input"))
        raise LocaleditError(f"{where} {value!r} is not accepted: {str(first.get('msg', 'bad value')).removeprefix('Value error, ').rstrip('.')}.") \
            from None


def _progress_bar(desc: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A tqdm bar on stderr driven by ``progress(step, total)`` calls."""
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def progress(step: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc=desc, unit="step", file=sys.stderr, leave=False)
        bar["bar"].n = step
        bar["bar"].refresh()

    def close() -> None:
        if "bar" in bar:
            bar["bar"].close()

    return progress, close


# --- edit ------------------------------------------------------------------------------------

def cmd_edit(args: argparse.Namespace) -> int:
    """``localedit edit``: the chat's pipeline (:func:`agent.conversation.pipeline.run`: ground, select, segment,
    then the judge's attempts, each scored and judged, the best kept). Every output path is checked
    before any model runs, and the outputs are written all-or-nothing once the edit succeeded."""
    import numpy as np
    from PIL import Image

    from agent.conversation import pipeline
    from tools.edit import resolve_request
    from tools.files import image_bytes, write_all
    from tools.images import load_image, load_mask, parse_box, parse_point
    from tools.pictures import overlay
    from tools.types import LocaleditError
    from tools.worker import make_worker

    settings = _settings(args)  # --editor, --seed, --steps, --guidance, --attempts ... over LOCALEDIT_*
    t0 = time.perf_counter()
    _check_texts(args)
    outputs = _check_outputs(args)
    image = load_image(args.image, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels)
    box = parse_box(args.box, image.size) if args.box else None
    mask = load_mask(args.mask, image.size) if args.mask else None
    prompts = [parse_point(p, image.size) for p in args.point or []]
    points, point_labels = [xy for xy, _ in prompts], [label for _, label in prompts]
    if points and box is None and 1 not in point_labels:
        from tools.images import BoxParseError

        raise BoxParseError("Give at least one --point on the object (X,Y); X,Y,0 points only mark what to leave out.")
    plan = _plan_for(args.instruction)
    job = _edit_job(args, plan)
    localized = bool(job.phrase or box is not None or mask is not None or points)
    if not localized and args.mask_out:  # a global edit has no region: the file would silently not appear
        raise LocaleditError(f"--mask-out {args.mask_out!r} would stay empty: this edit is global (no --target, "
                             f"--box, --mask or --point, and the instruction names no object); drop it or say where.")
    first = {"knobs": {"strength": args.strength}} if args.strength is not None else None
    action = ("attribute" if job.action == "global" else job.action) if localized else "global"  # as run() does
    first_try = pipeline.queue_for(action, settings, first=first)[0]
    resolve_request(pipeline.request_for(first_try, job, settings), settings)  # out of range: refused before loading
    worker = make_worker(settings)  # in-process, or LOCALEDIT_WORKER_URL / --worker-url
    progress, close = _progress_bar("edit")
    try:
        report = pipeline.run(worker, image, job, settings, box=box, mask=mask, points=points,
                              point_labels=point_labels, score_it=not args.no_score, first=first,
                              box_threshold=args.box_threshold, text_threshold=args.text_threshold,
                              progress=progress, choose=_chooser(plan) if plan is not None and not args.target else None)
    finally:
        close()
    files = {outputs["output"]: image_bytes(report.image, outputs["output"])}
    if "mask" in outputs and report.mask is not None:
        mask_image = Image.fromarray(report.mask.astype(np.uint8) * 255)
        files[outputs["mask"]] = image_bytes(mask_image, outputs["mask"])
    if "overlay" in outputs:
        boxes = [d.box for d in report.detections] or ([report.box] if report.box else [])
        labels = [f"{d.label} {d.score:.2f}" for d in report.detections]
        drawn = overlay(image, mask=report.mask, boxes=boxes, labels=labels,
                        chosen=report.chosen or ([0] if report.box else []))
        files[outputs["overlay"]] = image_bytes(drawn, outputs["overlay"])
    written = {kind: str(path) for kind, path in outputs.items() if path in files}
    data = report.to_dict()
    data.update(input={"path": str(args.image), "size": list(image.size)}, files=written,
                plan=plan.model_dump() if plan is not None else None,
                worker=worker.status())  # asked before writing: a worker gone now fails with nothing written
    write_all(files)  # every file or none
    data["timings"]["wall"] = round(time.perf_counter() - t0, 3)
    print(json.dumps(data, indent=2))
    return 0


def _edit_job(args: argparse.Namespace, plan):
    """``localedit edit``'s :class:`agent.conversation.pipeline.Job`: the parser's plan, with --target and the
    captions on top; an instruction the parser cannot read edits the region it is given as a change
    of look (no region: the whole image)."""
    from agent.conversation.pipeline import Job
    from tools.region import rc_labels

    job = Job.from_plan(plan) if plan is not None else Job(action="attribute", instruction=args.instruction)
    target = args.target or (job.phrase if job.action != "global" else None)
    job.phrase = target
    if args.target:
        job.bare = None
    job.source_caption = args.source_caption or job.source_caption or (f"a photo of a {target}" if target else "")
    job.target_caption = args.target_caption or job.target_caption
    if plan is not None:
        job.labels = rc_labels(plan.action, plan.target or target, plan.new_value)
    else:
        job.labels = ("", target or "")
    return job


OUTPUT_OPTIONS = {"output": "-o", "mask": "--mask-out", "overlay": "--overlay-out"}
"""``localedit edit``'s outputs: report key -> its option."""


def _check_outputs(args: argparse.Namespace) -> dict[str, Path]:
    """Every output path of ``localedit edit``, checked before any work: a known image extension,
    an existing writable folder, not a folder; no two outputs the same file, none the input's."""
    from tools.files import FileError, check_output

    given = {"output": args.output or _default_output(args.image),
             "mask": args.mask_out, "overlay": args.overlay_out}
    outputs: dict[str, Path] = {}
    for kind, raw in given.items():
        if raw is None:
            continue
        option = OUTPUT_OPTIONS[kind]
        path = check_output(raw, what=f"The {option} path")
        for other, seen in outputs.items():
            if path.resolve() == seen.resolve():
                raise FileError(f"{option} and {OUTPUT_OPTIONS[other]} name the same file {raw!r}.")
        for source in (args.image, args.mask):
            if source and Path(source).expanduser().resolve() == path.resolve():
                raise FileError(f"{option} {raw!r} would overwrite an input of this edit; choose another path.")
        outputs[kind] = path
    return outputs


TEXT_OPTIONS = {"instruction": "The instruction", "target": "--target", "source_caption": "--source-caption",
                "target_caption": "--target-caption"}
"""``localedit edit``'s free-text arguments: argument -> how the user gave it."""


def _check_texts(args: argparse.Namespace) -> None:
    """An empty instruction, or a text longer than ``MAX_TEXT``, is refused (naming the option the
    user gave) before any model loads."""
    from tools.types import MAX_TEXT, LocaleditError

    if not args.instruction.strip():
        raise LocaleditError('The instruction is empty; say what to change, e.g. "make the cat red".')
    for name, option in TEXT_OPTIONS.items():
        text = getattr(args, name) or ""
        if len(text) > MAX_TEXT:
            raise LocaleditError(f"{option} is {len(text):,} characters long; the most is {MAX_TEXT:,}.")


def _default_output(image: str) -> str:
    """``-o``'s default: ``<image's folder>/<image's name>-edited.png``, control characters (a newline
    in the name) replaced by ``_``."""
    import re

    path = Path(image).expanduser()
    stem = re.sub(r"[\x00-\x1f\x7f]+", "_", path.stem).strip() or "image"
    return str(path.with_name(f"{stem}-edited.png"))


def _plan_for(instruction: str):
    """The offline parser's plan for an instruction, or None if it is not an edit."""
    from agent.language.parser import parse
    from agent.language.plan import EditPlan

    result = parse(instruction)
    return result if isinstance(result, EditPlan) else None


def _chooser(plan):
    """Pick detections as the instruction says ("the leftmost cat", "all the cats"), as the chat does
    (``agent.conversation.select.chooser``); where the chat would ask which one, say how to tell it instead."""
    from agent.conversation.select import WouldAsk, chooser
    from tools.types import LocaleditError

    chat = chooser(plan)

    def pick(detections, size):
        try:
            return chat(detections, size)
        except WouldAsk as asked:
            raise LocaleditError(f"{asked.question.split(' Reply')[0]} Say which in the instruction "
                                 f"(e.g. 'the leftmost {plan.target}') or give --box.") from None
    return pick


# --- models ----------------------------------------------------------------------------------

def cmd_models(args: argparse.Namespace) -> int:
    from tools.types import LocaleditError

    settings = _settings(args)
    if args.action == "list":
        return _list_models(settings, args)
    if args.action in ("make-tiny", "make-random"):
        if not args.names:
            raise LocaleditError(f"Give the folder to write, e.g. `localedit models {args.action} ./models`.")
        folder, roles = Path(args.names[0]), args.names[1:]
        if args.action == "make-tiny":
            from tools.tiny import make_tiny

            make_tiny(folder, roles or None)
            kind = "tiny random models. They are a wiring check (outputs are noise)"
        else:
            from tools.fullsize import make_random

            make_random(folder, roles or None, weights=args.weights, dtype=args.dtype)
            kind = ("full-size random models (the published architectures; outputs are noise; weights "
                    + ("written" if args.weights else "drawn when loaded") + ")")
        print(f"Wrote {kind} to {folder}: export LOCALEDIT_MODELS_DIR={folder.resolve()}")
        return 0
    from tools import downloads

    if args.dry_run:
        print(downloads.describe(downloads.dry_run(args.names, settings)))
        return 0
    for role, where in downloads.download(args.names, settings).items():
        print(f"{role}: {where}")
    return 0


def _list_models(settings, args: argparse.Namespace) -> int:
    """``localedit models list [--params] [--json]``: where each role loads from (and its size)."""
    from tools import models

    rows = {}
    for role, source in models.model_sources(settings).items():
        spec = models.SPECS[role]
        row: dict[str, Any] = {"title": spec.title, "source": source, "licence": spec.licence,
                               "commercial_use": spec.commercial}
        if args.params:
            counts = models.parameter_counts(role, source, settings)
            row.update(counts or {"params": None, "available": False})
        rows[role] = row
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for role, row in rows.items():
        size = ""
        if args.params:
            n = row["params"]
            size = f"{'-' if n is None else _count(n):>8}  " + ("random  " if row.get("random") else "        ")
        print(f"{role:9} {row['title']:36} {size}{row['source']}  [{row['licence']}]")
    return 0


def _count(n: int) -> str:
    """A parameter count for people: '93.7 M', '3.74 B'."""
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M"


# --- parse -----------------------------------------------------------------------------------

def cmd_parse(args: argparse.Namespace) -> int:
    from agent.language.parser import parse

    context = _history_context(args.history) if args.history else None
    result = parse(args.instruction, context)
    data = {"kind": type(result).__name__.lower(), **result.model_dump()}
    print(json.dumps(data, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in data.items()))
    return 0


HISTORY_BYTES = 1 << 20


def _history_context(path: str):
    """The ``ParseContext`` in a ``--history`` file ``{"last_plan": {...}, "caption": "..."}``; a
    malformed one is a :class:`LocaleditError` (exit 2, one line)."""
    from pydantic import ValidationError

    from agent.language.parser import ParseContext
    from agent.language.plan import EditPlan
    from tools.files import read_file
    from tools.types import LocaleditError

    name = f"The history file {path!r}"
    try:
        history = json.loads(read_file(path, HISTORY_BYTES, name=name))
    except (ValueError, RecursionError):
        raise LocaleditError(f"{name} is not valid JSON.") from None
    if not isinstance(history, dict):
        raise LocaleditError(f"{name} must hold a JSON object like {{\"last_plan\": {{...}}, \"caption\": \"...\"}}.")
    last, caption = history.get("last_plan"), history.get("caption")
    if last is not None and not isinstance(last, dict):
        raise LocaleditError(f"{name} has a last_plan that is not an object.")
    if caption is not None and not isinstance(caption, str):
        raise LocaleditError(f"{name} has a caption that is not text.")
    try:
        plan = EditPlan(**last) if last else None
    except (ValidationError, TypeError) as err:
        where = err.errors()[0] if isinstance(err, ValidationError) else {"loc": (), "msg": str(err)}
        field = ".".join(str(p) for p in where.get("loc", ())) or "last_plan"
        raise LocaleditError(f"{name} has an invalid last_plan ({field}: "
                             f"{str(where.get('msg', 'bad value')).rstrip('.')}).") from None
    return ParseContext(last_plan=plan, has_image=True, caption=caption)


# --- chat-cli --------------------------------------------------------------------------------

def cmd_chat_cli(args: argparse.Namespace) -> int:
    """``localedit chat-cli``: the terminal chat (:mod:`agent.chat_cli`) on the command line's settings."""
    from agent.chat_cli import run_chat

    return run_chat(args, _settings(args))


# --- entry point -----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from agent.usage import OneLineParser

    p = OneLineParser(prog="localedit", description="Conversational, localized image editing.")
    p.add_argument("--debug", action="store_true", help="show tracebacks (and what --verbose shows)")
    p.add_argument("--verbose", action="store_true", help="show the libraries' progress bars and warnings")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("edit", help="edit one image once and print a JSON report")
    e.add_argument("image")
    e.add_argument("instruction", help='e.g. "turn the cat into a fox"')
    e.add_argument("--target", help="what to edit, a phrase to ground (default: from the instruction)")
    e.add_argument("--box", help="region x0,y0,x1,y1 in pixels (skips grounding)")
    e.add_argument("--mask", help="region as a mask image (skips grounding and SAM)")
    e.add_argument("--point", action="append", metavar="X,Y[,0]",
                   help="a point on the object (what a click sends; repeat to refine; X,Y,0 = not on it): "
                        "SAM's point prompt, with --box or the target's detection that contains it")
    e.add_argument("--editor", choices=["ip2p", "ip2p-composite", "diffedit", "regionwise", "inpaint", "qwen-edit",
                                        "kontext", "klein"],
                   help="the editor the judge tries first (default LOCALEDIT_EDITOR, 'auto': by action)")
    e.add_argument("--grounder", choices=["groundingdino", "sam3"],
                   help="what finds the object: GroundingDINO + SAM (default) or SAM 3 (instances with masks)")
    e.add_argument("--segmenter", choices=["sam", "sam2"], help="box / point segmenter: SAM (default) or SAM 2.1")
    e.add_argument("-o", "--output", help="edited image path (default: <image>-edited.png beside the image)")
    e.add_argument("--mask-out", help="save the edit region (the mask, dilated) as a PNG")
    e.add_argument("--overlay-out", help="save boxes + mask drawn over the photo")
    e.add_argument("--source-caption", help='DiffEdit / CLIP direction, e.g. "a photo of a cat"')
    e.add_argument("--target-caption", help='e.g. "a photo of a fox"')
    e.add_argument("--seed", type=int)
    e.add_argument("--steps", type=int)
    e.add_argument("--strength", type=float, help="DiffEdit encoding ratio / region-wise / inpaint strength")
    e.add_argument("--guidance", type=float, help="text guidance scale")
    e.add_argument("--image-guidance", type=float, help="InstructPix2Pix image guidance scale")
    e.add_argument("--black-mask", action="store_true", help="ip2p-composite: black out the background first")
    e.add_argument("--box-threshold", type=float)
    e.add_argument("--text-threshold", type=float)
    e.add_argument("--max-side", type=int, help="long side the models work at (default 512)")
    e.add_argument("--models", help="folder of local models (as LOCALEDIT_MODELS_DIR)")
    e.add_argument("--device", help="cpu, cuda, cuda:1 (default: auto)")
    e.add_argument("--worker-url", help="a running `localedit worker` to use (as LOCALEDIT_WORKER_URL; "
                   "default: the models in this process)")
    e.add_argument("--attempts", type=int, help="edits the judge may try before keeping the best, as the chat "
                   "does (1: one attempt, no retry; default LOCALEDIT_MAX_ATTEMPTS, 3)")
    e.add_argument("--no-score", action="store_true", help="skip the CLIP metrics (and with them the judge: one "
                   "attempt)")
    e.set_defaults(func=cmd_edit)

    m = sub.add_parser("models", help="list, download, or make tiny or full-size random models")
    m.add_argument("action", choices=["list", "download", "make-tiny", "make-random"])
    m.add_argument("names", nargs="*", help="download: roles (default all); make-tiny / make-random: "
                   "the folder, then roles (default all)")
    m.add_argument("--models", help="folder of local models (as LOCALEDIT_MODELS_DIR)")
    m.add_argument("--params", action="store_true", help="list: parameter counts (counted on the meta device)")
    m.add_argument("--json", action="store_true", help="list: as JSON, {role: {params, source, ...}}")
    m.add_argument("--dry-run", action="store_true", help="download: print the files and sizes per role, fetch nothing")
    m.add_argument("--weights", action="store_true", help="make-random: write the weights too (default: drawn at load)")
    m.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"],
                   help="make-random --weights: dtype of the written weights")
    m.set_defaults(func=cmd_models)

    r = sub.add_parser("parse", help="show the plan the offline parser makes of an instruction")
    r.add_argument("instruction")
    r.add_argument("--history", help="JSON file with {last_plan: {...}, caption: ...}")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_parse)

    c = sub.add_parser("chat-cli", help="chat in the terminal (reads stdin; scripts can drive it)")
    c.add_argument("--thread", help="resume this conversation thread")
    c.add_argument("--image", help="start with this photo")
    c.add_argument("--models", help="folder of local models (as LOCALEDIT_MODELS_DIR)")
    c.add_argument("--device", help="cpu, cuda, cuda:1 (default: auto)")
    c.set_defaults(func=cmd_chat_cli)

    for _, add in registered_commands():  # chat, eval, worker, api, mcp: their packages add them
        add(sub)
    return p


COMMAND_GROUP = "localedit.commands"
"""The entry-point group of the sub-commands other packages add: ``name = "module:add_cli"`` in
pyproject.toml's ``[project.entry-points."localedit.commands"]``; ``add_cli(subparsers)`` adds them.
So ``agent`` never imports ``bench`` or ``chat_ui`` (tests/test_layout.py): they register themselves."""


def command_registrations() -> list[tuple[str, str]]:
    """``(name, "module:function")`` of the registered sub-commands, from the installed package's
    metadata; an install made before the group existed (an old editable install) has none there,
    and then the same table is read from the pyproject.toml beside the source."""
    from importlib.metadata import entry_points

    found = [(ep.name, ep.value) for ep in entry_points(group=COMMAND_GROUP)]
    if found:
        return found
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if not pyproject.is_file():
        return []
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    table = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("entry-points", {})
    return list(table.get(COMMAND_GROUP, {}).items())


def registered_commands() -> list[tuple[str, Callable[[Any], Any]]]:
    """``(name, add_cli)`` for every registered sub-command, imported by name."""
    import importlib

    out = []
    for name, target in command_registrations():
        module, _, attr = target.partition(":")
        out.append((name, getattr(importlib.import_module(module), attr)))
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from agent.usage import join_negative_values

    parser = build_parser()
    argv = join_negative_values(sys.argv[1:] if argv is None else argv, ("--point", "--box"))
    args, extra = parser.parse_known_args(argv)
    if "--verbose" in extra:  # `localedit chat-cli --verbose`: after the command, as users type it
        extra.remove("--verbose")
        args.verbose = True
    from tools.quiet import announce_loads, quiet_libraries

    quiet_libraries(verbose=args.verbose or args.debug)
    if args.command in ("edit", "chat-cli"):
        announce_loads()
    if extra and args.command == "models" and not any(e.startswith("-") for e in extra):
        args.names += extra  # `models download --dry-run ip2p`: roles after an option are still roles
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from tools.types import ImageError, LocaleditError, ModelMissingError, NetworkError, WorkerUnavailableError

    try:
        return args.func(args)
    except ModelMissingError as err:
        return _fail(err, EXIT_MODEL, args.debug)
    except WorkerUnavailableError as err:  # not the input's fault: the same command may work later
        return _fail(err, EXIT_WORKER, args.debug)
    except NetworkError as err:  # a download with no network: not the input's fault either
        return _fail(err, EXIT_NETWORK, args.debug)
    except ImageError as err:
        return _fail(err, EXIT_INPUT, args.debug)
    except LocaleditError as err:
        from agent.conversation.pipeline import NothingFoundError

        return _fail(err, EXIT_NOTHING if isinstance(err, NothingFoundError) else EXIT_INPUT, args.debug)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `localedit models list | head -1`: the reader left; say nothing, as `ls` would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush must not fail again
        return 128 + 13  # what a shell reports for a program SIGPIPE ended
    except Exception as err:  # the last net: one line, never a traceback (unless --debug)
        if args.debug:
            raise
        print(f"error: unexpected failure ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
              f"run with --debug for details", file=sys.stderr)
        return EXIT_UNEXPECTED


def _fail(err: BaseException, code: int, debug: bool) -> int:
    if debug:
        raise err
    print(f"error: {err}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
