"""Which edits to try, in what order, and whether a result is good enough.

The order follows DESIGN.md: the editor that suits the action; the same editor at another
strength; another editor; another candidate object when the choice was not certain; and last,
plain InstructPix2Pix on the whole image (the baseline every paper compares against). The judge
keeps the best attempt by a combined score.
"""

from __future__ import annotations

from typing import Any, Optional

from tools.config import Settings

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


def primary_editor(action: str, settings: Settings) -> str:
    """The editor to try first for ``action`` (the configured one, unless 'auto' or global)."""
    if action == "global":
        return "ip2p"
    if settings.editor != "auto":
        return settings.editor
    return EDITOR_FOR_ACTION[action]


def attempt_queue(action: str, settings: Settings, *, strength: Optional[float] = None,
                  seed: Optional[int] = None, alternatives: list[int] = (), certain: bool = True) -> list[dict[str, Any]]:
    """The attempts for one edit, best guess first; at most ``settings.max_attempts``.

    Each attempt is ``{"editor", "strength", "seed", "candidate" (index or None), "why"}``.
    """
    seed = settings.seed if seed is None else seed
    first = primary_editor(action, settings)
    base = strength if strength is not None else (1.0 if first == "inpaint" else settings.encoding_ratio)
    queue = [{"editor": first, "strength": base, "seed": seed, "candidate": None, "why": "first try"}]
    if not settings.auto_retry or settings.max_attempts == 1:
        return queue
    if action != "global":
        queue.append({"editor": first, "strength": min(1.0, base + 0.15), "seed": seed + 1,
                      "candidate": None, "why": "stronger edit"})
        other = ALTERNATIVE_FOR_ACTION.get(action, ALTERNATIVE_EDITOR[first])
        queue.append({"editor": other, "strength": 1.0 if other == "inpaint" else settings.encoding_ratio,
                      "seed": seed, "candidate": None, "why": "another editor"})
        if not certain and alternatives:
            queue.append({"editor": first, "strength": base, "seed": seed, "candidate": alternatives[0],
                          "why": "the other candidate"})
    else:
        queue.append({"editor": "ip2p", "strength": base, "seed": seed + 1, "candidate": None, "why": "another seed"})
    fallback = {"editor": "ip2p", "strength": base, "seed": seed, "candidate": None,
                "why": "fallback: plain InstructPix2Pix on the whole image"}
    queue = queue[: settings.max_attempts - 1] + ([fallback] if action != "global" else [])
    return queue[: settings.max_attempts]


def problems(scores: dict[str, Any], settings: Settings, localized: bool) -> list[str]:
    """Why a result is poor (empty: good enough). Missing metrics are not held against it."""
    found = []
    if _below(scores.get("clip_dir"), settings.min_clip_dir):
        found.append(f"the change does not follow the instruction (CLIP direction {scores['clip_dir']:.2f})")
    if localized and _below(scores.get("clip_rc"), settings.min_clip_rc):
        found.append(f"the region does not look like the target (CLIP-RC {scores['clip_rc']:.2f})")
    if localized and _below(scores.get("clip_gc"), settings.min_clip_gc):
        found.append(f"the background moved (CLIP-GC {scores['clip_gc']:.2f})")
    l1 = scores.get("l1_outside")
    if localized and l1 is not None and l1 > settings.max_l1_outside:
        found.append(f"pixels outside the region changed (L1 {l1:.3f})")
    return found


def combined(scores: dict[str, Any]) -> float:
    """One number to keep the best attempt by: follow the instruction, match the target, keep the rest."""
    return ((scores.get("clip_dir") or 0.0) + (scores.get("clip_rc") or 0.0)
            + 0.5 * (scores.get("clip_gc") or 0.0) - (scores.get("l1_outside") or 0.0))


def _below(value: Optional[float], floor: float) -> bool:
    return value is not None and value < floor
