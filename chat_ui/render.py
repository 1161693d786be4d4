"""A turn's reply and graph state -> what the chat shows: the steps of the work and their pictures.

Pure functions (no Chainlit): ``turn_steps`` lists the collapsible steps (caption, plan,
detections, mask, editor, scores, retries) a turn produced, each with markdown text and the
pictures to attach (file paths, or PNG bytes made here such as the detections picture).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

from agent.session import Reply
from agent.store import ImageStore
from tools.images import overlay, to_png_bytes

PATHS = {"offline": "the built-in offline parser", "offline-fallback": "the offline parser (the LLM failed)",
         "llm-tool": "the LLM (tool call)", "llm-json": "the LLM (JSON answer)",
         "llm-repair": "the LLM (after a repair round)",
         "parser-check": "the offline parser (it overruled the LLM's answer)",
         "parser-fast": "the offline parser (a command: the LLM was not asked)"}
SCORE_NAMES = {"clip_i": "CLIP-I (image similarity)", "clip_t": "CLIP-T (edited image vs target text)",
               "clip_dir": "CLIP direction", "clip_rc": "CLIP-RC (region vs target)",
               "clip_gc": "CLIP-GC (background vs original)", "l1_outside": "L1 outside the region",
               "l2_outside": "L2 outside the region"}
PLAN_FIELDS = ("action", "target", "qualifier", "attribute", "plural", "count", "new_value", "region_hint",
               "instruction", "source_caption", "target_caption", "revise_last")

Picture = Union[str, bytes]  # a file path, or PNG bytes


@dataclass
class StepView:
    """One collapsible step: a name, markdown text, and pictures ``(name, path or PNG bytes)``."""

    name: str
    text: str
    pictures: list[tuple[str, Picture]] = field(default_factory=list)


def turn_steps(reply: Reply, state: dict[str, Any]) -> list[StepView]:
    """The steps of the turn that produced ``reply`` (``state``: the thread's graph state after it)."""
    steps = [_caption_step(state), _plan_step(reply, state), _detections_step(state),
             _mask_step(reply), *_edit_steps(reply, state)]
    return [s for s in steps if s is not None]


def _caption_step(state: dict[str, Any]) -> Optional[StepView]:
    caption = (state.get("caption") or {}).get("text")
    kind = ((state.get("understood") or {}).get("result") or {}).get("kind")
    if not caption or kind not in ("edit", "clarify"):  # commands do not need the picture described
        return None
    return StepView("Caption", f"BLIP-2 sees: *{_md(caption)}*")


def _plan_step(reply: Reply, state: dict[str, Any]) -> Optional[StepView]:
    understood = reply.understood or state.get("understood")
    if not understood:
        return None
    result = understood.get("result") or {}
    kind = result.get("kind", "?")
    lines = [f"Read by **{PATHS.get(understood.get('path'), understood.get('path'))}** as "
             f"{'an' if kind == 'edit' else 'a'} **{kind}**."]
    if kind == "edit":
        lines += [f"- {name}: `{_code(result[name])}`" for name in PLAN_FIELDS
                  if result.get(name) not in (None, "", False)]
        route = "a global edit of the whole image" if result.get("action") == "global" else \
            "ground the target, pick the object(s), segment, then edit only that region"
        lines.append(f"\nPath: {route}.")
    elif kind == "command":
        lines.append(f"- command: `{result.get('name')}`" + (f" x{result['steps']}" if result.get("steps", 1) > 1 else ""))
    elif kind == "clarify":
        lines.append(f"- question: {_md(result.get('question', ''))}")
    if understood.get("note"):
        lines.append(f"\nNote: {_md(understood['note'])}")
    return StepView("Plan", "\n".join(lines))


def _detections_step(state: dict[str, Any]) -> Optional[StepView]:
    """The boxes grounding found, drawn on the image that was edited (chosen ones highlighted)."""
    detections = state.get("detections") or []
    base = state.get("base")
    plan = state.get("plan") or {}
    if not plan or plan.get("action") == "global":
        return None
    phrase = " ".join(w for w in (plan.get("attribute"), plan.get("target")) if w) or plan.get("region_hint") or "?"
    if not detections:
        return StepView("Detections", f"GroundingDINO found nothing for *{_md(phrase)}*.")
    chosen = (state.get("choice") or {}).get("indices") or []
    reason = (state.get("choice") or {}).get("reason")
    lines = [f"GroundingDINO found {len(detections)} for *{_md(phrase)}*:"]
    lines += [f"{i + 1}. {d['label']} {d['score']:.2f} at ({', '.join(f'{v:.0f}' for v in d['box'])})"
              + (" **chosen**" if i in chosen else "") for i, d in enumerate(detections)]
    if reason and chosen:
        lines.append(f"\nChosen: {reason}.")
    elif not chosen and state.get("question"):
        lines.append("\nNot sure which one you mean: I asked.")
    pictures: list[tuple[str, Picture]] = []
    if base:
        picture = overlay(ImageStore.open(base), boxes=[tuple(d["box"]) for d in detections],
                          labels=[f"{i + 1}: {d['label']} {d['score']:.2f}" for i, d in enumerate(detections)],
                          chosen=chosen)
        pictures.append(("detections.png", to_png_bytes(picture)))
    return StepView("Detections", "\n".join(lines), pictures)


def _mask_step(reply: Reply) -> Optional[StepView]:
    mask = reply.images.get("mask")
    if not mask or reply.question:
        return None
    return StepView("Mask", "The region I was allowed to change (SAM mask, dilated), tinted over the photo.",
                    [("mask.png", mask)])


def _edit_steps(reply: Reply, state: dict[str, Any]) -> list[Optional[StepView]]:
    """Editor, scores and retries of an edit turn (nothing for other turns)."""
    attempts = state.get("attempts") or []
    edited = reply.images.get("edited")
    if not attempts or not edited or reply.question or reply.error:
        return []
    kept = next((a for a in attempts if a.get("path") == edited), attempts[-1])
    editor = StepView("Editor", f"**{kept['editor']}**, strength {kept.get('strength', 0):.2f}, seed {kept.get('seed')}"
                      + (" (masked: pixels outside the region are the original's)." if kept.get("masked")
                         else " (whole image)."))
    scores = reply.scores or kept.get("scores") or {}
    shown = [(SCORE_NAMES.get(k, k), v) for k, v in scores.items() if isinstance(v, (int, float)) and k in SCORE_NAMES]
    score = StepView("Scores", "| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {v:.3f} |" for k, v in shown)
                     if shown else "No scores (the scorer was not available).")
    retries = None
    if len(attempts) > 1:
        rows = [f"{i + 1}. {a['editor']} ({a.get('why', '')}), strength {a.get('strength', 0):.2f}: "
                + (", ".join(a.get("problems") or []) or "good")
                + (f" - score {a['combined']:.3f}" if isinstance(a.get("combined"), (int, float)) else "")
                + (" **kept**" if a is kept else "") for i, a in enumerate(attempts)]
        retries = StepView("Retries", f"{len(attempts)} attempts; I kept the best:\n" + "\n".join(rows))
    return [editor, score, retries]


def _code(value: Any) -> str:
    """A value safe to put inside a markdown code span."""
    return str(value).replace("`", "'")


def _md(text: str) -> str:
    """Text safe to put inside markdown emphasis or code."""
    return text.replace("*", "\\*").replace("`", "'").replace("_", "\\_")
