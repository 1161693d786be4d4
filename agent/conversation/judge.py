"""Which edits to try, in what order, with which knobs, and whether a result is good enough.

**The checks each editor can fail, and only those** (DESIGN.md: "a check the judge makes must be
able to fail for every editor it polices, and polices only editors it can fail for"). A masked
editor (:data:`tools.types.MASKED_EDITORS`: every editor that composites its region over the
untouched input, the new ones included) cannot move the background: outside the object it
changes only its dilation and feather band, 0.4-0.7 % of a typical photo, far from CLIP-GC's
or L1-outside's reach. So it is judged on what can go wrong with it (:data:`CHECKS`):

- ``unchanged``: the region did not change (mean pixel change inside the object mask);
- ``direction``: the region changed away from the instruction (CLIP direction on the target-box
  crops, InstructPix2Pix's formula);
- ``category``: for a replace, the crop still looks more like the source category than the
  target (R-SIE sec. 4.3's CLIP-RC classifier; sec. 4.2 accepts a region only when CLIP classifies
  it as the target); for a remove, the source category still scores above R-SIE Table 2's Delete
  RC. R-SIE's category changes (sec. 3.1: ``c_target != c_source``) are replace and remove; an
  attribute or an addition keeps the category, so CLIP-RC is reported but not a check there;
- ``seam``: the composite's edge looks pasted (:mod:`tools.seam`; ZONE's edge smoother);
- ``mask``: the object mask covers too little of its box (a part, not the object);
- ``baseline``: the region follows the instruction worse than plain InstructPix2Pix on the same
  region, by more than ``baseline_margin`` (the CMU study's per-sample deltas).

A whole-image editor (``ip2p``: the baseline, or a global edit) is judged as before on the
direction and, in a localized turn, on the background (CLIP-GC, L1 outside the object).

**The attempts** (:func:`attempt_queue`): ``settings.attempt_order`` cut to ``max_attempts`` with
the baseline kept last. By default: the action's editor, a different editor (region-wise or
DiffEdit for replace / attribute, region-wise for remove), and the baseline. The baseline runs at
most once per turn: free when ip2p-composite ran unmasked (its pre-composite output is plain
InstructPix2Pix), else lazily, when a localized attempt passed every other check and must be
compared with it (:func:`needs_baseline`); a queued baseline attempt then reuses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from agent.conversation.state import Attempt
from tools.config import Settings
from tools.models_modern import default_guidance
from tools.types import MASKED_EDITORS

EDITOR_FOR_ACTION = {
    "replace": "ip2p-composite",
    "attribute": "ip2p-composite",
    "remove": "inpaint",
    "add": "ip2p-composite",  # keeps the object; the new thing appears on or around it
    "global": "ip2p",
}
OTHER_EDITORS = {"replace": ("regionwise", "diffedit"), "attribute": ("regionwise", "diffedit"),
                 "remove": ("regionwise", "inpaint"), "add": ("inpaint", "ip2p-composite")}
"""The "different editor" of each action, in preference order: the first that is not the primary."""

BASELINE = "ip2p"
BASELINE_WHY = "fallback: plain InstructPix2Pix on the whole image"

CHECKS = {
    "masked": ("unchanged", "direction", "category", "seam", "mask", "baseline"),
    "whole": ("direction", "category", "background", "pixels"),
    "global": ("direction", "unchanged"),
}
"""The checks each kind of editor is judged on (see the module docstring); :func:`editor_kind` picks the row."""

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
    InstructPix2Pix editors (they do not read it), 1.0 for inpaint, ``regionwise_encoding_ratio`` for
    regionwise (1: R-SIE's start at T) and ``encoding_ratio`` for DiffEdit.
    """
    given = given or {}
    strength = given.get("strength")
    if editor in IP2P_EDITORS:
        strength = None
    elif strength is None:
        strength = {"inpaint": 1.0, "regionwise": settings.regionwise_encoding_ratio}.get(editor,
                                                                                        settings.encoding_ratio)
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


def _guidances(knobs: dict[str, Any], direction: int) -> dict[str, float]:
    """InstructPix2Pix's guidances one step stronger (+1: text up, image down) or weaker (-1)."""
    return {"guidance_scale": _step(knobs["guidance_scale"], direction * GUIDANCE_STEP, GUIDANCE_RANGE),
            "image_guidance_scale": _step(knobs["image_guidance_scale"], -direction * IMAGE_GUIDANCE_STEP,
                                          IMAGE_GUIDANCE_RANGE)}


def move_knobs(editor: str, knobs: dict[str, Any], direction: int) -> KnobMove:
    """Move the knob ``editor`` reads one step: ``direction`` +1 stronger, -1 weaker.

    InstructPix2Pix editors: text guidance up and image guidance down (stronger), the reverse
    (weaker). DiffEdit / regionwise: the encoding ratio. Inpaint: the strength, and once it is
    at 1 (the most), the text guidance. Regionwise at ratio 1 (its default, R-SIE's start at T):
    InstructPix2Pix's two guidances, which its generation noise reads (eq. 8).
    """
    new = dict(knobs)
    if editor in IP2P_EDITORS:
        new.update(_guidances(knobs, direction))
        names: tuple[str, ...] = ("guidance_scale", "image_guidance_scale")
    else:
        new["strength"] = _step(knobs["strength"], direction * STRENGTH_STEP, STRENGTH_RANGE)
        names = ("strength",)
        if editor in GUIDANCE_AT_THE_TOP and new["strength"] == knobs["strength"] and direction > 0:
            new["guidance_scale"] = _step(knobs["guidance_scale"], GUIDANCE_STEP, GUIDANCE_RANGE)
            names = ("strength", "guidance_scale")
        elif editor == "regionwise" and new["strength"] == knobs["strength"] and direction > 0:
            new.update(_guidances(knobs, direction))
            names = ("strength", "guidance_scale", "image_guidance_scale")
    label = {**KNOB_NAMES, "strength": "encoding ratio" if editor in RATIO_EDITORS else "strength"}
    parts = [f"{label[k]} {knobs[k]:g} -> {new[k]:g}" if new[k] != knobs[k] else f"{label[k]} already {knobs[k]:g}"
             for k in names]
    return KnobMove(new, ", ".join(parts), any(new[k] != knobs[k] for k in names))


def knob_summary(attempt: Attempt) -> str:
    """The knobs an attempt's editor read, in words: "text guidance 7.5, image guidance 1.5"."""
    editor = attempt.get("editor")
    if editor in IP2P_EDITORS:
        return (f"text guidance {attempt.get('guidance_scale') or 0:g}, "
                f"image guidance {attempt.get('image_guidance_scale') or 0:g}")
    name = "encoding ratio" if editor in RATIO_EDITORS else "strength"
    text = f"{name} {attempt.get('strength') or 0:g}"
    if editor == "regionwise":
        return (f"{text}, text guidance {attempt.get('guidance_scale') or 0:g}, "
                f"image guidance {attempt.get('image_guidance_scale') or 0:g}")
    return text + (f", text guidance {attempt['guidance_scale']:g}" if editor in GUIDANCE_AT_THE_TOP and
                   attempt.get("guidance_scale") is not None else "")


def _attempt(editor: str, knobs: dict[str, Any], seed: int, why: str, *, candidate: Optional[int] = None,
             knob: Optional[str] = None) -> Attempt:
    return {"editor": editor, "seed": seed, **knobs, "candidate": candidate, "why": why, "knob": knob}


def other_editor(action: str, primary: str) -> Optional[str]:
    """The "different editor" for ``action`` (:data:`OTHER_EDITORS`): the first that is not ``primary``."""
    return next((e for e in OTHER_EDITORS.get(action, ()) if e != primary), None)


def baseline_attempt(settings: Settings) -> Attempt:
    """The baseline's attempt: plain InstructPix2Pix on the whole image, default knobs and seed."""
    return {**_attempt(BASELINE, base_knobs(BASELINE, settings), settings.seed, BASELINE_WHY), "baseline": True}


def attempt_queue(action: str, settings: Settings, *, first: Optional[Attempt] = None,
                  alternatives: list[int] = (), certain: bool = True) -> list[Attempt]:
    """The attempts for one edit, best guess first; at most ``settings.max_attempts``.

    ``settings.attempt_order`` names them (see :class:`tools.config.Settings`); the primary comes
    first, the baseline (for a localized edit) last, and the rest in the given order up to the
    budget. Each attempt is ``{"editor", "seed", "guidance_scale", "image_guidance_scale",
    "strength", "candidate" (index or None), "why", "knob" (what moved, in words, or None)}``, and
    the baseline's has ``"baseline": True``. ``first`` fixes the first attempt (a re-run:
    ``{"editor", "seed", "knobs", "why", "knob"}``, any part left out takes its default).
    """
    first = first or {}
    editor = first.get("editor") or primary_editor(action, settings)
    seed = settings.seed if first.get("seed") is None else int(first["seed"])
    knobs = base_knobs(editor, settings, first.get("knobs"))
    primary = _attempt(editor, knobs, seed, first.get("why") or "first try", knob=first.get("knob"))
    if not settings.auto_retry or settings.max_attempts == 1:
        return [primary]
    order = list(settings.attempt_order)
    rest: list[Attempt] = []
    for token in order:
        if token == "other-editor" and action != "global":
            other = other_editor(action, editor)
            if other is not None:
                rest.append(_attempt(other, base_knobs(other, settings), seed, "another editor"))
        elif token == "stronger":
            stronger = move_knobs(editor, knobs, +1)
            if stronger.moved:
                rest.append(_attempt(editor, stronger.knobs, seed, "stronger edit", knob=stronger.text))
            elif editor not in SEEDLESS_EDITORS:  # a seed DiffEdit never reads would repeat the same pixels
                rest.append(_attempt(editor, knobs, seed + 1, "another seed", knob=f"seed {seed} -> {seed + 1}"))
        elif token == "other-candidate" and action != "global" and not certain and alternatives:
            rest.append(_attempt(editor, knobs, seed, "the other candidate", candidate=alternatives[0]))
    if action != "global" and editor != BASELINE and "baseline" in order:
        return [primary, *rest][: settings.max_attempts - 1] + [baseline_attempt(settings)]
    return [primary, *rest][: settings.max_attempts]


def revise_queue(queue: list[Attempt], last: Attempt, kinds: list[str]) -> list[Attempt]:
    """The queue after ``last`` failed the checks ``kinds``.

    - worse than the baseline: fall back to it (the queue keeps only the baseline's attempt);
    - the mask is a part of the object: every masked attempt would edit the same part, so they go;
    - only the background checks (a whole-image editor spilled outside the object): the queued
      "stronger edit" of the same editor would spill more, so it becomes a "weaker edit" of ``last``.
    """
    if "baseline" in kinds:
        return [a for a in queue if a.get("baseline")]
    if "mask" in kinds:
        return [a for a in queue if not is_masked(a["editor"])]
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


# --------------------------------------------------------------------------- the baseline


def is_masked(editor: Optional[str]) -> bool:
    """Whether ``editor`` composites its region over the untouched input (``tools.types.MASKED_EDITORS``)."""
    return editor in MASKED_EDITORS


def editor_kind(editor: Optional[str], action: str) -> str:
    """The row of :data:`CHECKS` that judges ``editor`` on ``action``: "masked", "whole" or "global"."""
    if action == "global":
        return "global"
    return "masked" if is_masked(editor) else "whole"


def is_free_baseline(attempt: Attempt, baseline: Attempt) -> bool:
    """Whether ``attempt``'s pre-composite output IS the baseline: ip2p-composite (unmasked input, see
    ``EditResult.whole``) with the baseline's seed and guidances."""
    return attempt.get("editor") == "ip2p-composite" and all(
        attempt.get(k) == baseline.get(k) for k in ("seed", "guidance_scale", "image_guidance_scale"))


def needs_baseline(attempt: Attempt, found: list["Problem"], action: str, have: bool,
                   queue: list[Attempt], settings: Settings) -> bool:
    """Run the baseline now? Only for a localized masked attempt that passed every other check (its
    comparison decides), when no baseline ran this turn and the budget holds one (lazy: an attempt
    that failed anyway, or a turn that never gets to compare, runs none), and when the comparison can
    fail at all (a margin of 2 or more cannot: directions lie in -1..1)."""
    return (not have and not found and action != "global" and is_masked(attempt.get("editor"))
            and settings.baseline_margin < 2.0 and any(a.get("baseline") for a in queue))


def region_direction(scores: Optional[dict[str, Any]]) -> Optional[float]:
    """CLIP direction on the region's crops, or on the whole image when there is no region."""
    if not scores:
        return None
    value = scores.get("clip_dir_region")
    return scores.get("clip_dir") if value is None else value


def versus_baseline(scores: dict[str, Any], baseline: Optional[dict[str, Any]],
                    settings: Settings) -> Optional[dict[str, Any]]:
    """The CMU comparison of one attempt with the baseline on the same region.

    ``{"metric": "clip_dir_region", "attempt", "baseline", "delta" (attempt - baseline), "margin",
    "worse" (delta below -margin)}``, plus CLIP-RC's pair when both have it (reported, not judged);
    None when either direction is missing.
    """
    mine, theirs = region_direction(scores), region_direction(baseline)
    if mine is None or theirs is None:
        return None
    delta = mine - theirs
    out = {"metric": "clip_dir_region", "attempt": round(mine, 4), "baseline": round(theirs, 4),
           "delta": round(delta, 4), "margin": settings.baseline_margin, "worse": delta < -settings.baseline_margin}
    if scores.get("clip_rc") is not None and (baseline or {}).get("clip_rc") is not None:
        out["clip_rc"] = {"attempt": scores["clip_rc"], "baseline": baseline["clip_rc"]}
    return out


def baseline_report(baseline: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The turn's baseline for the report: how it came to be and its scores (None: it never ran)."""
    return None if not baseline else {"editor": BASELINE, "how": baseline.get("how"), "scores": baseline.get("scores")}


# --------------------------------------------------------------------------- the checks


@dataclass
class Problem:
    """One failed check: its kind (a name in :data:`CHECKS`, or "error") and a sentence."""

    kind: str
    text: str


SEAM_LEVEL = 1.0 / 255.0
"""A seam step under one grey level (of 255) is no step: the seam check needs at least this."""


def problems(scores: dict[str, Any], settings: Settings, action: str, editor: Optional[str] = None, *,
             mask_fill: Optional[float] = None, baseline: Optional[dict[str, Any]] = None) -> list[Problem]:
    """Why a result is poor (empty: good enough), by the checks :data:`CHECKS` gives ``editor``.

    ``scores`` are the attempt's metrics on the turn's one region; ``mask_fill`` how much of its box
    the object mask covers (:meth:`tools.region.EvalRegion.fill`); ``baseline`` the baseline's scores
    on the same region (None: not run). Missing metrics are not held against an attempt. ``editor``
    None judges as a whole-image editor.
    """
    kind = editor_kind(editor, action)
    checks = CHECKS[kind]
    found: list[Problem] = []
    if "unchanged" in checks:
        if kind == "global" and _below(scores.get("l1"), settings.min_l1_global):
            found.append(Problem("unchanged", f"the photo barely changed (mean change {scores['l1']:.3f})"))
        if kind == "masked" and _below(scores.get("l1_inside"), settings.min_l1_region):
            found.append(Problem("unchanged", f"the region barely changed (mean change {scores['l1_inside']:.3f})"))
    direction = region_direction(scores) if kind == "masked" else scores.get("clip_dir")
    if _below(direction, settings.min_clip_dir):
        where = " on the region" if kind == "masked" and scores.get("clip_dir_region") is not None else ""
        found.append(Problem("direction", f"the change goes against the instruction (CLIP direction{where} "
                                          f"{direction:.2f})"))
    if "category" in checks:
        found += _category(scores, settings, action)
    if "seam" in checks and _above(scores.get("seam"), settings.max_seam) and \
            (scores.get("seam_step") or 0.0) >= SEAM_LEVEL:
        found.append(Problem("seam", f"the edge looks pasted on ({scores['seam']:.0%} of the change near it is "
                                     f"one step across it)"))
    if "mask" in checks and _below(mask_fill, settings.min_mask_fill):
        found.append(Problem("mask", f"the mask covers {mask_fill:.0%} of the object's box: a part of it, "
                                     f"not the whole object"))
    if "background" in checks:
        gc, l1 = scores.get("clip_gc"), scores.get("l1_outside")
        if _below(gc, settings.min_clip_gc):
            found.append(Problem("background", f"the background moved (CLIP-GC {gc:.1f} of 100)"))
        if _above(l1, settings.max_l1_outside):
            found.append(Problem("pixels", f"pixels outside the object changed (L1 {l1:.3f})"))
    if "baseline" in checks and baseline is not None and not found:  # the last gate: a failed attempt moves on
        versus = versus_baseline(scores, baseline, settings)
        if versus is not None and versus["worse"]:
            found.append(Problem("baseline", f"it follows the instruction worse than plain InstructPix2Pix on the same "
                                             f"region (CLIP direction {versus['attempt']:.2f} against "
                                             f"{versus['baseline']:.2f})"))
    return found


def _category(scores: dict[str, Any], settings: Settings, action: str) -> list[Problem]:
    """CLIP-RC where the edit changes the category (R-SIE sec. 3.1): replace and remove."""
    rc, source = scores.get("clip_rc"), scores.get("clip_rc_source")
    if action == "replace" and rc is not None and source is not None and rc - source < settings.min_rc_lead:
        return [Problem("category", f"the region still looks like the source more than the target "
                                    f"(CLIP-RC {rc:.1f}, source {source:.1f} of 100)")]
    if action == "remove" and _above(source, settings.max_clip_rc_source):
        return [Problem("category", f"the object is still there (its class scores {source:.1f} of 100)")]
    return []


def combined(scores: dict[str, Any], action: str = "replace") -> float:
    """One number to keep the best attempt by, every term on a 0-1 scale: follow the instruction
    (CLIP direction on the region, else on the image), match the target (CLIP-RC / 100; for a
    removal, minus the source's), keep the rest (CLIP-GC / 200, minus L1 outside)."""
    region = -(scores.get("clip_rc_source") or 0.0) if action == "remove" else (scores.get("clip_rc") or 0.0)
    return ((region_direction(scores) or 0.0) + region / 100.0
            + 0.5 * (scores.get("clip_gc") or 0.0) / 100.0 - (scores.get("l1_outside") or 0.0))


def _below(value: Optional[float], floor: float) -> bool:
    return value is not None and value < floor


def _above(value: Optional[float], ceiling: float) -> bool:
    return value is not None and value > ceiling
