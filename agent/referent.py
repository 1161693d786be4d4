"""What "it" is: the region the edit of the version on screen changed (DESIGN.md, conversation rules).

A follow-up plan refers back ("now make it red", "make them bigger", "make the fox blue", "add a
hat to it") when its target is what that edit left in the region and the message either does not
name it (a pronoun, or nothing: both the offline parser and the LLM resolve "it" to a name, the
new one or the old one) or names it by its new name ("the fox" after "turn the cat into a fox"),
or names an object of which every candidate was edited. "make the cat green" after "make the
cat blue" with three cats on the photo names the cats again: which one is a new question. A
different object, another qualifier or attribute, a count that does not match, or "all" /
"every" when only some were edited means the user named something else: ground afresh.

A follow-up reuses the region as it is: the same detections, chosen boxes and object mask, on the
image the edit produced, so it runs no GroundingDINO and no SAM; the new version's caption is the
plan's target caption, so it runs no BLIP-2 either.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from agent.parser import pluralize, singularize
from agent.plan import EditPlan
from agent.state import EditRecord

_ALL_RE = re.compile(r"\b(?:all|every|each|both|everything|everyone)\b", re.I)


def _norm(name: Optional[str]) -> str:
    words = re.sub(r"^(?:a|an|the|some)\s+", "", (name or "").strip().lower()).split()
    return " ".join(words[:-1] + [singularize(words[-1])]) if words else ""


def _said(name: str, text: str) -> bool:
    """Whether ``text`` names ``name`` (its last word, singular or plural)."""
    head = _norm(name).split()[-1:] or [""]
    words = {singularize(w) for w in re.findall(r"[a-z]+", text.lower())}
    return bool(head[0]) and head[0] in words


def region_of(record: Optional[EditRecord]) -> bool:
    """Whether ``record`` edited a region that a follow-up can refer to (not a global edit or a removal)."""
    if not record or not record.get("chosen") or not record.get("mask"):
        return False
    return (record.get("plan") or {}).get("action") not in ("global", "remove")


def names(record: EditRecord) -> tuple[str, Optional[str]]:
    """``(what the region is now, its old name if the edit replaced it)``, singular."""
    plan = record.get("plan") or {}
    if plan.get("action") == "replace" and plan.get("new_value"):
        return _norm(plan["new_value"]), _norm(plan.get("target"))
    if plan.get("action") == "add" and plan.get("target"):
        return _norm(plan["target"]), None
    return _norm(plan.get("target") or plan.get("new_value")), None


def follows_up(plan: EditPlan, record: Optional[EditRecord], text: str) -> bool:
    """Whether ``plan`` (made from the message ``text``) is about the region ``record`` edited."""
    if not region_of(record) or plan.action == "global" or plan.revise_last or not plan.target:
        return False
    last = EditPlan.model_validate(record["plan"])
    now, old = names(record)
    target = _norm(plan.target)
    chosen, total = len(record.get("chosen") or []), len(record.get("numbering") or [])
    if target not in {now, old}:
        return False
    if _said(target, text) and not (target == now and old) and chosen < total:
        return False  # "make the cat green" while other cats are there: which cat is a new question
    if plan.qualifier and plan.qualifier != last.qualifier:
        return False
    if plan.attribute and _norm(plan.attribute) not in {_norm(last.attribute), _norm(last.new_value)}:
        return False
    if plan.count and plan.count != chosen:
        return False
    return not (_ALL_RE.search(text) and chosen < total)


def describe(record: Optional[EditRecord]) -> Optional[str]:
    """What "it" is, for the LLM's prompt: "the fox you just made (the region the last edit changed)"."""
    if not region_of(record):
        return None
    now, _ = names(record)
    n = len(record.get("chosen") or [])
    plan = record.get("plan") or {}
    thing = now if n == 1 else f"{n} {pluralize(now)}"
    made = "made" if plan.get("action") == "replace" else "edited"
    return f"the {thing} you just {made} (the region the last edit changed)"


def reuse(record: EditRecord) -> dict[str, Any]:
    """The state update that edits ``record``'s region again: its detections, boxes and mask."""
    where = dict(record.get("where") or {})
    chosen = list(record.get("chosen") or [])
    return {"detections": list(record.get("detections") or []), "numbering": list(record.get("numbering") or []),
            "mask": record.get("mask"), "mask_for": chosen,
            "choice": {"indices": chosen, "certain": True, "alternatives": list(record.get("alternatives") or []),
                       "how": "referent", "desc": where.get("desc", ""), "total": where.get("total", len(chosen)),
                       "numbers": where.get("numbers", []), "reason": "the region of the last edit"}}
