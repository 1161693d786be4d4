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

A region the user pointed at (``State.selection``, made by ``agent.conversation.pointing`` from a click or
"select the cat on the left") is the referent instead, while it is on the image on screen and
until an edit uses it: :func:`of_selection` makes it a record of the same shape, so the same
``describe`` / ``follows_up`` / ``reuse`` apply. Any localized plan is about the selection unless
it names another object than the selection's (a selection without a name takes any name: the
user pointed at the thing they mean).
"""

from __future__ import annotations

import re
from typing import Any, Optional

from agent.conversation.state import EditRecord
from agent.language.parser import pluralize, singularize
from agent.language.plan import EditPlan

_ALL_RE = re.compile(r"\b(?:all|every|each|both|everything|everyone)\b", re.I)


def _norm(name: Optional[str]) -> str:
    words = re.sub(r"^(?:a|an|the|some)\s+", "", (name or "").strip().lower()).split()
    return " ".join(words[:-1] + [singularize(words[-1])]) if words else ""


def _said(name: str, text: str) -> bool:
    """Whether ``text`` names ``name`` (its last word, singular or plural)."""
    head = _norm(name).split()[-1:] or [""]
    words = {singularize(w) for w in re.findall(r"[a-z]+", text.lower())}
    return bool(head[0]) and head[0] in words


UNNAMED = "region"
"""The name of a selection whose object has no name (nothing grounded under the click)."""


def of_selection(selection: Optional[dict[str, Any]], current: Optional[str]) -> Optional[EditRecord]:
    """The pending selection as the record of a region (None: none, or made on another image than ``current``).

    ``selection`` is ``State.selection``: ``{"base", "points", "box", "label", "mask", "note"}``.
    """
    if not selection or not current or selection.get("base") != current or not selection.get("mask"):
        return None
    label = selection.get("label") or UNNAMED
    box = [float(v) for v in selection["box"]]
    return {"plan": {"action": "attribute", "target": label}, "base": current,
            "detections": [{"label": label, "score": 1.0, "box": box}], "numbering": [0], "chosen": [0],
            "alternatives": [], "boxes": [box], "mask": selection["mask"], "where": {"how": "selected", "total": 1},
            "selected": True}


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


def chain(prior: Optional[EditRecord], plan: EditPlan) -> list[str]:
    """Every name the region of a new version has had, oldest first: the names of ``prior`` (the record
    of the edit it followed up, or None for a fresh grounding) and then the plan's own.

    "turn the cat into a fox" -> ["cat", "fox"]; then "make the fox blue" -> ["cat", "fox"]; then
    "turn it into a wolf" -> ["cat", "fox", "wolf"]. "it" and every one of them but the first (the
    name the photo's objects had: other cats may be there) mean this region until another is named.
    """
    found: list[str] = list((prior or {}).get("names") or []) if prior else []
    if prior and not found:
        now, old = names(prior)
        found = [n for n in (old, now) if n]
    now, old = names({"plan": plan.model_dump()})
    for name in (old, now):
        if name and name not in found:
            found.append(name)
    return found


def same_objects(plan: EditPlan, record: Optional[EditRecord]) -> bool:
    """Whether a correction (``revise_last``) keeps the objects of the edit it corrects: the same target,
    qualifier, attribute and count ("no, I wanted a wolf", "nope, orange"), so its region is reused."""
    if not record or not record.get("mask") or not record.get("chosen") or record.get("selected"):
        return False
    last = EditPlan.model_validate(record["plan"])
    return (_norm(plan.target) == _norm(last.target) and plan.qualifier == last.qualifier
            and plan.count == last.count and plan.plural == last.plural and plan.action != "global"
            and (plan.attribute or None) == (last.attribute or None))


def follows_up(plan: EditPlan, record: Optional[EditRecord], text: str) -> bool:
    """Whether ``plan`` (made from the message ``text``) is about the region ``record`` edited."""
    if not region_of(record) or plan.action == "global" or plan.revise_last or not plan.target:
        return False
    if record.get("selected"):  # pointed at: "it", its name, or any name when it has none
        now = names(record)[0]
        return now == UNNAMED or _norm(plan.target) in {now, UNNAMED} or not _said(plan.target, text)
    last = EditPlan.model_validate(record["plan"])
    now, old = names(record)
    known = list(record.get("names") or [n for n in (old, now) if n])
    coined = set(known[1:]) | ({now} if old else set())  # names an edit gave the region ("fox"), not the photo's
    target = _norm(plan.target)
    chosen, total = len(record.get("chosen") or []), len(record.get("numbering") or [])
    if target not in {now, old, *known}:
        return False
    if _said(target, text) and target not in coined and chosen < total:
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
    if record.get("selected"):
        return "the region the user selected on the photo" if now == UNNAMED else \
            f"the {now} the user selected on the photo"
    n = len(record.get("chosen") or [])
    plan = record.get("plan") or {}
    thing = now if n == 1 else f"{n} {pluralize(now)}"
    made = "made" if plan.get("action") == "replace" else "edited"
    return f"the {thing} you just {made} (the region the last edit changed)"


def reuse(record: EditRecord) -> dict[str, Any]:
    """The state update that edits ``record``'s region again: its detections, boxes and mask."""
    where = dict(record.get("where") or {})
    chosen = list(record.get("chosen") or [])
    if record.get("selected"):
        return {"detections": list(record["detections"]), "numbering": [0], "mask": record["mask"], "mask_for": [0],
                "choice": {"indices": [0], "certain": True, "alternatives": [], "how": "selected", "total": 1,
                           "numbers": [], "reason": "the region you selected", "selected": True}}
    return {"detections": list(record.get("detections") or []), "numbering": list(record.get("numbering") or []),
            "mask": record.get("mask"), "mask_for": chosen,
            "choice": {"indices": chosen, "certain": True, "alternatives": list(record.get("alternatives") or []),
                       "how": "referent", "desc": where.get("desc", ""), "total": where.get("total", len(chosen)),
                       "numbers": where.get("numbers", []), "reason": "the region of the last edit"}}
