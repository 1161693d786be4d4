"""Which edits to try, in what order, with which knobs, and whether a result is good enough.

The order follows DESIGN.md: the editor that suits the action; the same editor made stronger
(the knob it really reads moved: :func:`move_knobs`), or weaker when the first result spilled
into the background; another editor; another candidate object when the choice was not certain;
and last, plain InstructPix2Pix on the whole image (the baseline every paper compares against).
The judge keeps the best attempt by a combined score.

Every check (:func:`problems`) reads a metric on the papers' scale (``tools.types.SCORE_SCALES``)
measured on the sample's one evaluation region (:mod:`tools.region`), with the thresholds of
``tools.config.Settings`` (each justified there by an R-SIE or InstructEdit table), and each can
fail for every editor it polices: the whole-image baseline and a masked editor's dilation and
feather band both count outside the object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from tools.config import Settings
from tools.models_modern import default_guidance

EDITOR_FOR_ACTION = {
    "replace": "ip2p-composite",
    "attribute": "ip2p-composite",
    "remove": "inpaint",
    "add": "ip2p-composite",  # keeps the object; the new thing appears on or around it
    "global": "ip2p",
}
ALTERNATIVE_FOR_ACTION = {"add": "inpaint"}
ALTERNATIVE_EDITOR = {"ip2p-composite": "regionwise", "regionwise": "diffedit", "diffedit": "ip2p-composite",
                      "inpaint": "regionwise", "ip2p": "ip2p"}

IP2P_EDITORS = ("ip2p", "ip2p-composite")
RATIO_EDITORS = ("diffedit", "regionwise")  # their knob is the encoding ratio (InstructEdit section 4.5)
SEEDLESS_EDITORS = ("diffedit",)
"""Editors that draw no noise: DiffEdit's DDIM inversion and mask-guided DDIM decoding (InstructEdit
eq. 2-4) are deterministic, so another seed gives the same pixels and is no retry."""
GUIDANCE_AT_THE_TOP = ("inpaint", "diffedit")
"""Editors whose "stronger" moves the text guidance once their strength / encoding ratio is at 1:
both run classifier-free guidance on a caption (DiffEdit on the edited caption, InstructEdit eq. 4)."""

# How far one "stronger" / "weaker" moves a knob, and the range it stays in. InstructPix2Pix's
# guidance study varies text guidance over about 3-10 and image guidance over 1.0-2.2: one step
# is a visible change inside that range. Image guidance stays >= 1: below it the pipeline turns
# classifier-free guidance off altogether.
GUIDANCE_STEP, GUIDANCE_RANGE = 2.5, (1.5, 20.0)
IMAGE_GUIDANCE_STEP, IMAGE_GUIDANCE_RANGE = 0.25, (1.0, 5.0)
STRENGTH_STEP, STRENGTH_RANGE = 0.15, (0.1, 1.0)
KNOB_NAMES = {"guidance_scale": "text guidance", "image_guidance_scale": "image guidance",
              "strength": "strength", "encoding_ratio": "encoding ratio"}


def primary_editor(action: str, settings: Settings) -> str:
    """The editor to try first for ``action`` (the configured one, unless 'auto' or global)."""
    if action == "global":
        return "ip2p"
    if settings.editor != "auto":
        return settings.editor
    return EDITOR_FOR_ACTION[action]


# --------------------------------------------------------------------------- knobs


def base_knobs(editor: str, settings: Settings, given: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The knobs ``editor`` runs with: ``given`` where set, else the configured defaults.

    ``{"guidance_scale", "image_guidance_scale", "strength"}``; strength is None for the
    InstructPix2Pix editors (they do not read it), 1.0 for inpaint, the encoding ratio otherwise.
    """
    given = given or {}
    strength = given.get("strength")
    if editor in IP2P_EDITORS:
        strength = None
    elif strength is None:
        strength = 1.0 if editor == "inpaint" else settings.encoding_ratio
    guidance = given.get("guidance_scale")
    if guidance is None:  # qwen-edit / kontext / klein: their own guidance (Qwen's true CFG, FLUX's distilled)
        guidance = default_guidance(editor, settings)
    image_guidance = given.get("image_guidance_scale")
    return {"guidance_scale": float(settings.guidance_scale if guidance is None else guidance),
            "image_guidance_scale": float(settings.image_guidance_scale if image_guidance is None else image_guidance),
            "strength": None if strength is None else float(strength)}


@dataclass
class KnobMove:
    """The knobs after one "stronger" / "weaker", and what moved, in words."""

    knobs: dict[str, Any]
    text: str  # "text guidance 7.5 -> 10.0, image guidance 1.5 -> 1.25"
    moved: bool  # False: every knob of the editor was already at its end


def _step(value: float, delta: float, bounds: tuple[float, float]) -> float:
    return round(min(bounds[1], max(bounds[0], value + delta)), 4)


def move_knobs(editor: str, knobs: dict[str, Any], direction: int) -> KnobMove:
    """Move the knob ``editor`` reads one step: ``direction`` +1 stronger, -1 weaker.

    InstructPix2Pix editors: text guidance up and image guidance down (stronger), the reverse
    (weaker). DiffEdit / regionwise: the encoding ratio. Inpaint: the strength, and once it is
    at 1 (the most), the text guidance.
    """
    new = dict(knobs)
    if editor in IP2P_EDITORS:
        new["guidance_scale"] = _step(knobs["guidance_scale"], direction * GUIDANCE_STEP, GUIDANCE_RANGE)
        new["image_guidance_scale"] = _step(knobs["image_guidance_scale"], -direction * IMAGE_GUIDANCE_STEP,
                                            IMAGE_GUIDANCE_RANGE)
        names = ("guidance_scale", "image_guidance_scale")
    else:
        new["strength"] = _step(knobs["strength"], direction * STRENGTH_STEP, STRENGTH_RANGE)
        names = ("strength",)
        if editor in GUIDANCE_AT_THE_TOP and new["strength"] == knobs["strength"] and direction > 0:
            new["guidance_scale"] = _step(knobs["guidance_scale"], GUIDANCE_STEP, GUIDANCE_RANGE)
            names = ("strength", "guidance_scale")
    label = {**KNOB_NAMES, "strength": "encoding ratio" if editor in RATIO_EDITORS else "strength"}
    parts = [f"{label[k]} {knobs[k]:g} -> {new[k]:g}" if new[k] != knobs[k] else f"{label[k]} already {knobs[k]:g}"
             for k in names]
    return KnobMove(new, ", ".join(parts), any(new[k] != knobs[k] for k in names))


def knob_summary(attempt: dict[str, Any]) -> str:
    """The knobs an attempt's editor read, in words: "text guidance 7.5, image guidance 1.5"."""
    editor = attempt.get("editor")
    if editor in IP2P_EDITORS:
        return (f"text guidance {attempt.get('guidance_scale') or 0:g}, "
                f"image guidance {attempt.get('image_guidance_scale') or 0:g}")
    name = "encoding ratio" if editor in RATIO_EDITORS else "strength"
    text = f"{name} {attempt.get('strength') or 0:g}"
    return text + (f", text guidance {attempt['guidance_scale']:g}" if editor in GUIDANCE_AT_THE_TOP and
                   attempt.get("guidance_scale") is not None else "")


def _attempt(editor: str, knobs: dict[str, Any], seed: int, why: str, *, candidate: Optional[int] = None,
             knob: Optional[str] = None) -> dict[str, Any]:
    return {"editor": editor, "seed": seed, **knobs, "candidate": candidate, "why": why, "knob": knob}


def attempt_queue(action: str, settings: Settings, *, first: Optional[dict[str, Any]] = None,
                  alternatives: list[int] = (), certain: bool = True) -> list[dict[str, Any]]:
    """The attempts for one edit, best guess first; at most ``settings.max_attempts``.

    Each attempt is ``{"editor", "seed", "guidance_scale", "image_guidance_scale", "strength",
    "candidate" (index or None), "why", "knob" (what moved, in words, or None)}``. ``first``
    fixes the first attempt (a re-run: ``{"editor", "seed", "knobs", "why", "knob"}``, any
    part left out takes its default).
    """
    first = first or {}
    editor = first.get("editor") or primary_editor(action, settings)
    seed = settings.seed if first.get("seed") is None else int(first["seed"])
    knobs = base_knobs(editor, settings, first.get("knobs"))
    queue = [_attempt(editor, knobs, seed, first.get("why") or "first try", knob=first.get("knob"))]
    if not settings.auto_retry or settings.max_attempts == 1:
        return queue
    stronger = move_knobs(editor, knobs, +1)
    if stronger.moved:
        queue.append(_attempt(editor, stronger.knobs, seed, "stronger edit", knob=stronger.text))
    elif editor not in SEEDLESS_EDITORS:  # a seed DiffEdit never reads would repeat the same pixels
        queue.append(_attempt(editor, knobs, seed + 1, "another seed", knob=f"seed {seed} -> {seed + 1}"))
    if action != "global":
        other = ALTERNATIVE_FOR_ACTION.get(action, ALTERNATIVE_EDITOR.get(editor, "ip2p-composite"))  # qwen-edit...
        if other == editor:
            other = "regionwise"
        queue.append(_attempt(other, base_knobs(other, settings), seed, "another editor"))
        if not certain and alternatives:
            queue.append(_attempt(editor, knobs, seed, "the other candidate", candidate=alternatives[0]))
        fallback = _attempt("ip2p", base_knobs("ip2p", settings), seed,
                            "fallback: plain InstructPix2Pix on the whole image")
        queue = queue[: settings.max_attempts - 1] + [fallback]
    return queue[: settings.max_attempts]


def revise_queue(queue: list[dict[str, Any]], last: dict[str, Any], kinds: list[str]) -> list[dict[str, Any]]:
    """The queue after ``last`` failed the checks ``kinds``.

    When only the background checks failed (the edit spilled outside the object), the queued
    "stronger edit" of the same editor would spill more: it becomes a "weaker edit" of ``last``.
    """
    if not kinds or not set(kinds) <= {"background", "pixels"}:
        return queue
    out = list(queue)
    for i, attempt in enumerate(out):
        if attempt["why"] == "stronger edit" and attempt["editor"] == last["editor"]:
            knobs = {k: last.get(k) for k in ("guidance_scale", "image_guidance_scale", "strength")}
            weaker = move_knobs(last["editor"], knobs, -1)
            if weaker.moved:
                out[i] = _attempt(last["editor"], weaker.knobs, last["seed"], "weaker edit: the background moved",
                                  knob=weaker.text)
            break
    return out


# --------------------------------------------------------------------------- the checks


@dataclass
class Problem:
    """One failed check: its kind ("direction", "region", "background", "pixels", "unchanged") and a sentence."""

    kind: str
    text: str


def problems(scores: dict[str, Any], settings: Settings, action: str) -> list[Problem]:
    """Why a result is poor (empty: good enough). Missing metrics are not held against it.

    - direction: CLIP direction below ``min_clip_dir`` (the instruction followed backwards);
    - region: CLIP-RC below ``min_clip_rc`` (the target box does not show the target category;
      an unchanged region fails here), or for a removal the source category above
      ``max_clip_rc_source`` (the object is still there);
    - background: CLIP-GC below ``min_clip_gc``;
    - pixels: L1 outside the object mask above ``max_l1_outside``;
    - unchanged (global edits): whole-image L1 below ``min_l1_global`` (nothing changed, which the
      direction alone cannot see: a zero change scores 0.0).
    """
    found = []
    localized = action != "global"
    direction = scores.get("clip_dir")
    if _below(direction, settings.min_clip_dir):
        found.append(Problem("direction", f"the change goes against the instruction (CLIP direction {direction:.2f})"))
    rc, source = scores.get("clip_rc"), scores.get("clip_rc_source")
    if localized and action != "remove" and _below(rc, settings.min_clip_rc):
        still = f"; it still looks like the source, {source:.1f}" if source is not None and source > rc else ""
        found.append(Problem("region", f"the region does not look like the target (CLIP-RC {rc:.1f} of 100{still})"))
    if localized and action == "remove" and source is not None and source > settings.max_clip_rc_source:
        found.append(Problem("region", f"the object is still there (its class scores {source:.1f} of 100)"))
    gc = scores.get("clip_gc")
    if localized and _below(gc, settings.min_clip_gc):
        found.append(Problem("background", f"the background moved (CLIP-GC {gc:.1f} of 100)"))
    l1 = scores.get("l1_outside")
    if localized and l1 is not None and l1 > settings.max_l1_outside:
        found.append(Problem("pixels", f"pixels outside the object changed (L1 {l1:.3f})"))
    whole = scores.get("l1")
    if not localized and _below(whole, settings.min_l1_global):
        found.append(Problem("unchanged", f"the photo barely changed (mean change {whole:.3f})"))
    return found


def combined(scores: dict[str, Any], action: str = "replace") -> float:
    """One number to keep the best attempt by, every term on a 0-1 scale: follow the instruction
    (CLIP direction), match the target (CLIP-RC / 100; for a removal, minus the source's), keep
    the rest (CLIP-GC / 200, minus L1 outside)."""
    region = -(scores.get("clip_rc_source") or 0.0) if action == "remove" else (scores.get("clip_rc") or 0.0)
    return ((scores.get("clip_dir") or 0.0) + region / 100.0
            + 0.5 * (scores.get("clip_gc") or 0.0) / 100.0 - (scores.get("l1_outside") or 0.0))


def _below(value: Optional[float], floor: float) -> bool:
    return value is not None and value < floor
