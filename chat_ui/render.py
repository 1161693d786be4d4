"""A turn's reply, graph state and stage events -> what the chat shows. Pure functions, no Chainlit.

A turn is shown as **one parent step** named for what happened (:func:`turn_title`: "Edited the
cat in 12 s", "Asked which cat", "Undid 1 step") with the stages that ran nested inside it, each
with its own progress while it runs (:func:`stage_title`, :func:`progress_text`) and its details
when done (:func:`turn_steps`: the caption and plan, the detections drawn as boxes, the mask, each
attempt with its editor and scores). Only stages that ran in *this* turn are shown: ``ran`` is the
set of graph nodes the turn's stage events named (``agent.conversation.node_runtime.safe``), so nothing from an
earlier turn can appear. Pictures get alt texts that say what they show (:func:`alt`). The
version strip under each photo shows :func:`version_cards` (instruction, branch, scores).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Union

from agent.conversation.judge import knob_summary
from agent.conversation.state import child_of, current_record, parent_of
from agent.runtime.session import Reply
from agent.runtime.store import ImageStore
from tools.images import to_png_bytes
from tools.pictures import overlay

PATHS = {"offline": "the built-in offline parser", "offline-fallback": "the offline parser (the LLM failed)",
         "llm-tool": "the LLM (tool call)", "llm-json": "the LLM (JSON answer)",
         "llm-repair": "the LLM (after a repair round)",
         "parser-check": "the offline parser (it overruled the LLM's answer)",
         "parser-fast": "the offline parser (a command: the LLM was not asked)"}
SCORE_NAMES = {"clip_i": "CLIP-I (image similarity)", "clip_t": "CLIP-T (edited image vs target text)",
               "clip_dir": "CLIP direction", "clip_rc": "CLIP-RC (target box is the target, 0-100)",
               "clip_gc": "CLIP-GC (background vs original, 0-100)", "l1_outside": "L1 outside the region",
               "l2_outside": "L2 outside the region"}
PLAN_FIELDS = ("action", "target", "qualifier", "attribute", "plural", "count", "new_value", "region_hint",
               "instruction", "source_caption", "target_caption", "revise_last")
STAGES = ("understand", "ground", "clarify", "segment", "edit", "command", "point")
"""The graph nodes shown as stages of a turn (``select`` belongs to ``ground``, ``score`` and
``judge`` to the attempt they measure)."""

Picture = Union[str, bytes]  # a file path, or PNG bytes


@dataclass
class StepView:
    """One nested step: the ``stage`` it belongs to, a name, markdown text, and pictures ``(alt, picture)``."""

    name: str
    text: str
    pictures: list[tuple[str, Picture]] = field(default_factory=list)
    stage: str = ""


# --- names --------------------------------------------------------------------------------------

def target_of(state: dict[str, Any]) -> str:
    """What the turn was about: "cat", "2 cats", "selected region", or "photo"."""
    plan = state.get("plan") or {}
    if (state.get("choice") or {}).get("selected"):
        return "selected region"
    target = plan.get("target") or ""
    if not target or plan.get("action") == "global":
        return "photo"
    chosen = (state.get("choice") or {}).get("indices") or []
    return f"{len(chosen)} {target}s" if len(chosen) > 1 else target


def seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"


def turn_title(reply: Reply, state: dict[str, Any], ran: Iterable[str], elapsed: float) -> str:
    """The parent step's name once the turn is over."""
    ran = set(ran)
    result = ((state.get("understood") or {}).get("result") or {}) if ran & {"understand", "command", "point"} else {}
    took = seconds(elapsed)
    if reply.cancelled:
        return f"Stopped after {took}"
    if reply.question:
        plan = state.get("plan") or {}
        return f"Asked which {plan['target']}" if plan.get("target") and ran & {"ground", "select", "clarify"} \
            else "Asked what to change"
    if reply.error:
        target = target_of(state) if "edit" in ran or "segment" in ran or "ground" in ran else ""
        return f"Could not edit the {target}" if target and target != "photo" else "Could not do that"
    if reply.images.get("edited"):
        what = target_of(state)
        what = "the whole photo" if what == "photo" else what if what[0].isdigit() else f"the {what}"
        return f"Edited {what} in {took}"
    if result.get("kind") == "point":  # "select the cat on the left" (agent.conversation.pointing)
        return "Selected the object"
    if result.get("kind") == "command" or "command" in ran:
        m = re.match(r"^(Undid|Redid) (\d+ steps?)", reply.text)
        if m:
            return f"{m.group(1)} {m.group(2)}"
        name = result.get("name")
        if name == "goto" and not reply.error and reply.images.get("current"):
            return f"Went to version {result.get('version')}"
        return {"show_mask": "Showed the mask", "cancel": "Cancelled"}.get(name, "Nothing to change")
    if reply.text.startswith("Got your photo"):
        return "Received your photo"
    return "Answered"


def stage_title(node: str, state_hint: Optional[dict] = None, attempt: int = 1, attempts: int = 1,
                editor: str = "", batch: int = 1) -> str:
    """A running stage's name (``state_hint``: what is known of the plan so far; ``batch``: edits in the
    attempt's call, the queued ones run ahead included)."""
    target = ((state_hint or {}).get("plan") or {}).get("target") or "object"
    return {"understand": "Reading your message", "ground": f"Finding the {target}",
            "clarify": "Asking which one", "segment": f"Segmenting the {target}",
            "command": "Undo, redo, version or mask", "point": "Selecting what you named"}.get(
        node, f"Attempt {attempt} of {attempts}" + (f": {editor}" if editor else "") + batched(batch))


def batched(batch: int) -> str:
    """" (and 1 queued attempt in the same batch)": what else the edit's call runs, ahead (or nothing)."""
    if batch <= 1:
        return ""
    return f" (and {batch - 1} queued attempt{'s' if batch > 2 else ''} in the same batch)"


COMMAND_TITLES = {"undo": "Undo", "redo": "Redo", "show_mask": "Showing the mask", "cancel": "Cancel",
                  "retry": "Setting up another try", "stronger": "Setting up a stronger edit",
                  "weaker": "Setting up a weaker edit", "other_candidate": "Setting up the other candidate"}


def command_title(state: dict[str, Any]) -> str:
    """The finished command stage's name: "Undo", "Go to version 2", ..."""
    result = (state.get("understood") or {}).get("result") or {}
    if result.get("name") == "goto":
        return f"Go to version {result.get('version')}"
    return COMMAND_TITLES.get(result.get("name"), stage_title("command"))


def progress_text(event: dict[str, Any]) -> str:
    """A diffusion progress event as one line: "step 7 of 20"."""
    return f"Diffusion step {event['step']} of {event['total']}"


def alt(kind: str, target: str = "") -> str:
    """The alt text of a picture the chat shows (what it shows, not a file name)."""
    thing = target if target and target != "photo" else "region"
    return {"edited": "the edited photo", "current": "the current photo", "uploaded": "the photo you uploaded",
            "before_after": "before and after: the photo and the edited photo side by side",
            "mask": f"mask of the {thing} over the photo", "selection": f"the {thing} you selected, over the photo",
            "candidates": f"the {target or 'object'} candidates, numbered", "earlier": "an earlier version of the photo",
            "detections": f"detections of the {target or 'object'}, drawn as boxes on the photo"}[kind]


# --- the version strip ---------------------------------------------------------------------------

STRIP_SCORES = (("clip_rc", "CLIP-RC", "{:.0f}"), ("clip_gc", "CLIP-GC", "{:.1f}"), ("clip_dir", "dir", "{:.2f}"),
                ("clip_t", "CLIP-T", "{:.2f}"))
"""The scores a version's card shows, in this order (R-SIE's RC and GC first, on their 0-100 scales)."""


def score_brief(scores: Optional[dict[str, Any]]) -> str:
    """A version's scores in one short line: "CLIP-RC 12 · CLIP-GC 99.9 · dir 0.05" ("" without scores)."""
    scores = scores or {}
    return " · ".join(f"{name} {fmt.format(scores[key])}" for key, name, fmt in STRIP_SCORES
                      if isinstance(scores.get(key), (int, float)))


def version_cards(versions: list[dict[str, Any]], shown: Optional[int] = None) -> list[dict[str, Any]]:
    """``Session.versions()`` -> what the strip shows of each version (no pictures: the app adds them).

    Each card: ``number``, ``path``, ``current`` (the version ``shown``, by number; default the one
    on screen), ``parent`` (number or None),
    ``branch`` (made from another version than the one before it: "from v2"), ``instruction``
    (the edit's, or "the photo you uploaded"), ``scores`` (:func:`score_brief`) and ``label`` (the
    button's accessible name).
    """
    cards = []
    for v in versions:
        record = v.get("record") or {}
        instruction = record.get("instruction") or (v.get("note") or "").replace("the result of ", "").strip('"')
        parent = v.get("parent")
        branch = f"from v{parent}" if parent is not None and parent != v["number"] - 1 else ""
        scores = score_brief(record.get("scores"))
        current = v["number"] == shown if shown is not None else bool(v.get("current"))
        label = f"Version {v['number']}: {instruction}" + (f", {branch}" if branch else "") + \
            (f" ({scores})" if scores else "") + (", on screen" if current else "")
        cards.append({"number": v["number"], "path": v["path"], "current": current, "parent": parent,
                      "branch": branch, "instruction": instruction, "scores": scores, "label": label})
    return cards


# --- the panel's tools ----------------------------------------------------------------------------

TOOLS = ("undo", "redo", "show_mask")
"""The version tools the panel offers (PhotoPicker labels them Undo, Redo, Show mask)."""


def tools_available(state: dict[str, Any]) -> dict[str, bool]:
    """Which of :data:`TOOLS` can do something on the version on screen (``state``: the thread's graph
    state): undo needs a version it was made from, redo one made from it that undo left, show mask an
    edit that changed a region (not the whole photo)."""
    versions = state.get("versions") or []
    if not versions:
        return {name: False for name in TOOLS}
    cursor = state.get("cursor", len(versions) - 1)
    record = current_record(state) or {}
    return {"undo": parent_of(versions, cursor) is not None, "redo": child_of(versions, cursor) is not None,
            "show_mask": bool(record.get("region") or record.get("mask"))}


def index_of(versions: list[dict], path: str) -> int:
    """The place of the version showing ``path``: the one on screen if it does, else the newest that does."""
    if any(v["current"] and v["path"] == path for v in versions):
        return next(i for i, v in enumerate(versions) if v["current"])
    return next((i for i in range(len(versions) - 1, -1, -1) if versions[i]["path"] == path), 0)


# --- the details of each stage --------------------------------------------------------------------

def turn_steps(reply: Reply, state: dict[str, Any], ran: Optional[Iterable[str]] = None) -> list[StepView]:
    """The details of the turn that produced ``reply`` (``state``: the thread's graph state after it),
    for the stages in ``ran`` (default: all)."""
    ran = set(STAGES) | {"select"} if ran is None else set(ran)
    steps: list[Optional[StepView]] = []
    if "understand" in ran:
        steps += [_caption_step(state), _plan_step(reply, state)]
    if ran & {"ground", "select", "clarify"}:
        steps.append(_detections_step(state))
    if "segment" in ran:
        steps.append(_mask_step(reply, state))
    if "edit" in ran:
        steps += _attempt_steps(reply, state)
    return [s for s in steps if s is not None]


def _caption_step(state: dict[str, Any]) -> Optional[StepView]:
    caption = (state.get("caption") or {}).get("text")
    source = (state.get("caption") or {}).get("source")
    kind = ((state.get("understood") or {}).get("result") or {}).get("kind")
    if not caption or kind not in ("edit", "clarify"):  # commands do not need the picture described
        return None
    if source == "plan":  # an edited version: described by the plan that made it, BLIP-2 not run
        return StepView("Caption", f"This version is described by the edit that made it: *{_md(caption)}*",
                        stage="understand")
    return StepView("Caption", f"BLIP-2 sees: *{_md(caption)}*", stage="understand")


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
        if (state.get("choice") or {}).get("selected"):
            route = "edit the region you selected (no grounding)"
        elif result.get("action") == "global":
            route = "a global edit of the whole image"
        else:
            route = "ground the target, pick the object(s), segment, then edit only that region"
        lines.append(f"\nPath: {route}.")
    elif kind == "command":
        lines.append(f"- command: `{result.get('name')}`" + (f" x{result['steps']}" if result.get("steps", 1) > 1 else ""))
    elif kind == "clarify":
        lines.append(f"- question: {_md(result.get('question', ''))}")
    if understood.get("note"):
        lines.append(f"\nNote: {_md(understood['note'])}")
    return StepView("Plan", "\n".join(lines), stage="understand")


def _detections_step(state: dict[str, Any]) -> Optional[StepView]:
    """The boxes grounding found, drawn on the image that was edited (chosen ones highlighted)."""
    detections = state.get("detections") or []
    base = state.get("base")
    plan = state.get("plan") or {}
    if not plan or plan.get("action") == "global" or (state.get("choice") or {}).get("selected"):
        return None
    phrase = " ".join(w for w in (plan.get("attribute"), plan.get("target")) if w) or plan.get("region_hint") or "?"
    if not detections:
        return StepView("Detections", f"GroundingDINO found nothing for *{_md(phrase)}*.", stage="ground")
    chosen = (state.get("choice") or {}).get("indices") or []
    reason = (state.get("choice") or {}).get("reason")
    # numbered as the question numbers them (left to right); weak or duplicate boxes listed after, unnumbered
    numbering = [i for i in state.get("numbering") or [] if i < len(detections)] or list(range(len(detections)))
    aside = [i for i in range(len(detections)) if i not in numbering]
    grounded = not any(e.get("stage") == "ground" and not e.get("ran") for e in state.get("report") or [])
    lines = [f"GroundingDINO found {len(numbering)} for *{_md(phrase)}*:" if grounded else
             f"No grounding this turn: the same boxes as the edit this one follows ({len(numbering)} candidates):"]
    lines += [f"{n}. {_box_line(detections[i])}" + (" **chosen**" if i in chosen else "")
              for n, i in enumerate(numbering, 1)]
    if aside:
        lines.append("\nSet aside (weak or duplicate boxes): " + "; ".join(_box_line(detections[i]) for i in aside))
    if reason and chosen:
        lines.append(f"\nChosen: {reason}.")
    elif not chosen and state.get("question"):
        lines.append("\nNot sure which one you mean: I asked.")
    pictures: list[tuple[str, Picture]] = []
    if base:
        shown = numbering + aside
        picture = overlay(ImageStore.open(base), boxes=[tuple(detections[i]["box"]) for i in shown],
                          labels=[f"{n}: {detections[i]['label']} {detections[i]['score']:.2f}" if n <= len(numbering)
                                  else f"{detections[i]['label']} {detections[i]['score']:.2f}"
                                  for n, i in enumerate(shown, 1)],
                          chosen=[k for k, i in enumerate(shown) if i in chosen])
        pictures.append((alt("detections", plan.get("target") or ""), to_png_bytes(picture)))
    return StepView("Detections", "\n".join(lines), pictures, stage="ground")


def _box_line(d: dict[str, Any]) -> str:
    return f"{d['label']} {d['score']:.2f} at ({', '.join(f'{v:.0f}' for v in d['box'])})"


def _mask_step(reply: Reply, state: dict[str, Any]) -> Optional[StepView]:
    mask = reply.images.get("mask")
    if not mask or reply.question:
        return None
    note = (state.get("choice") or {}).get("mask_note")
    text = "The region I was allowed to change (SAM mask, dilated), tinted over the photo." + \
        (f"\n\nNote: {_md(note)}." if note else "")
    return StepView("Mask", text, [(alt("mask", target_of(state)), mask)], stage="segment")


def _attempt_steps(reply: Reply, state: dict[str, Any]) -> list[StepView]:
    """One view per attempt of an edit turn: editor, knobs, the judge's verdict; the kept one's scores."""
    attempts = state.get("attempts") or []
    edited = reply.images.get("edited")
    if not attempts or not edited or reply.question or reply.error:
        return []
    kept = next((a for a in attempts if a.get("path") == edited), attempts[-1])
    views = []
    for number, a in enumerate(attempts, start=1):
        lines = [f"**{a['editor']}**" + (f" ({a['why']})" if a.get("why") else "")
                 + f", {knob_summary(a)}, seed {a.get('seed')}"
                 + (" (masked: pixels outside the region are the original's)." if a.get("masked") else " (whole image).")
                 + (f" Already there: {a['reused']}." if a.get("reused") else ""),
                 "Judge: " + (", ".join(a.get("problems") or []) or "good")
                 + (f"; combined score {a['combined']:.3f}" if isinstance(a.get("combined"), (int, float)) else "")
                 + (". **Kept.**" if a is kept else ".")]
        if a is kept:
            scores = reply.scores or a.get("scores") or {}
            shown = [(SCORE_NAMES[k], v) for k, v in scores.items() if isinstance(v, (int, float)) and k in SCORE_NAMES]
            lines.append("\n| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {v:.3f} |" for k, v in shown)
                         if shown else "\nNo scores (the scorer was not available).")
        views.append(StepView(f"Attempt {number} of {len(attempts)}", "\n".join(lines), stage=f"edit:{number}"))
    return views


def settings_line(panel: Any, reply: Reply, state: dict[str, Any]) -> str:
    """The knobs the reply's edit ran with, for the reply text: editor, steps, its knobs, seed, size."""
    attempts = state.get("attempts") or []
    kept = next((a for a in attempts if a.get("path") == reply.images.get("edited")), None)
    if kept is None:
        return ""
    return (f"{kept['editor']} · {panel.steps} diffusion steps · {knob_summary(kept)} · "
            f"seed {kept.get('seed')} · long side {panel.max_side} px")


def turn_details(panel: Any, reply: Reply, state: dict[str, Any]) -> str:
    """What the parent step of a turn says when opened: the knobs the kept edit ran with
    (:func:`settings_line`) and the reply's own details (``reply.details``, when the agent gives
    them: editor, scores, attempts in words). Markdown; "" when there is nothing to add."""
    parts = []
    knobs = settings_line(panel, reply, state)
    if knobs:
        parts.append(f"Settings: {knobs}.")
    extra = getattr(reply, "details", None)
    if isinstance(extra, str) and extra.strip():
        parts.append(extra.strip())
    elif isinstance(extra, (list, tuple)):
        parts += [str(line) for line in extra if str(line).strip()]
    return "\n\n".join(parts)


# --- a cold start: the models loading -------------------------------------------------------------

def _loads(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Model load events (``ModelRegistry.listen``) -> each role's newest event, in the order they began."""
    roles: dict[str, dict[str, Any]] = {}
    for event in events:
        roles[event["role"]] = event
    return roles


def loading_busy(events: list[dict[str, Any]]) -> bool:
    """Whether a model is loading now."""
    return any(e.get("event") == "start" for e in _loads(events).values())


def loading_title(events: list[dict[str, Any]]) -> str:
    """The cold start step's name: "Loading the GroundingDINO detector (2 loaded so far)", then
    "Loaded 5 models in 41 s (once per server run)"."""
    roles = _loads(events)
    done = [e for e in roles.values() if e.get("event") == "done"]
    busy = [e for e in roles.values() if e.get("event") == "start"]
    if busy:
        return f"Loading the {busy[-1]['title']}" + (f" ({len(done)} loaded so far)" if done else "")
    took = sum(float(e.get("seconds") or 0) for e in roles.values())
    return f"Loaded {len(done)} model{'s' * (len(done) != 1)} in {seconds(took)} (once per server run)"


def loading_text(events: list[dict[str, Any]]) -> str:
    """One line per model: loaded (with its time), loading now, or failed."""
    lines = ["The first edit since the server started loads each model it needs once; later edits start at once."]
    for e in _loads(events).values():
        state = {"start": "loading now…", "done": f"loaded in {seconds(float(e.get('seconds') or 0))}",
                 "failed": "could not be loaded"}.get(e.get("event"), "")
        lines.append(f"- {e['title']}: {state}")
    return "\n".join(lines)


def _code(value: Any) -> str:
    """A value safe to put inside a markdown code span."""
    return str(value).replace("`", "'")


def _md(text: str) -> str:
    """Text safe to put inside markdown emphasis or code."""
    return text.replace("*", "\\*").replace("`", "'").replace("_", "\\_")
