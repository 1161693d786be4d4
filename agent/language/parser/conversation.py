"""What a message means in the conversation, beyond one instruction (issue 19).

- **Corrections** of the last edit ("no, I wanted a wolf", "nope, orange", "no the left one",
  "not the fox, a wolf", "actually make it a wolf instead"): the last plan with the corrected part
  and ``revise_last``, so the graph makes the new version from the version the corrected edit was
  made from (DESIGN.md: "A correction ... replaces the last edit").
- **Compound requests** ("undo that and make the bus green instead", "go back and make it red"):
  the edit with ``undo_first`` = the undo's steps, so both parts run, in order, in one turn.
- **Tone** ("that's too strong", "dial it back a bit", "a bit less", "less orange" after "make it
  orange" -> ``weaker``; "more", "push it", "even more orange" -> ``stronger``): a change of the
  last edit's strength, never a removal or a new object.
- **Hedges** ("kinda", "sort of", "maybe", "just", "please", "really"): dropped inside a clause,
  so they never become the target or the value.
"""

from __future__ import annotations

import re
from typing import Callable, Optional

from agent.language.parser.completion import canonical_instruction, plan_captions
from agent.language.parser.words import ParseContext, is_attribute_value, is_scene_value, parse_np, strip_article
from agent.language.plan import Command, EditPlan, Understanding

HEDGE_RE = re.compile(r"\b(?:kinda|kind of|sorta|sort of|maybe|perhaps|possibly|basically|literally|just|please|pls|"
                      r"plz|actually|honestly|really|somehow|simply|like,|ok so|okay so|so yeah|you know|i guess|"
                      r"i think)\b\s*|^(?:u+m+|h+m+|e+r+m+|u+h+)\b[,.]?\s*|"
                      r"\blike\s+(?=(?:remove|make|turn|change|add|put|"
                      r"give|paint|colou?r|replace|swap|get rid)\b)")
"""Hedges and fillers inside a clause: they never name an object or a value."""

_MARK_RE = re.compile(r"^(?P<mark>(?:(?:no+|nope|nah|not quite|wrong|oops|sorry|wait|hmm+|ugh|argh|actually|oh|"
                      r"err?|uh|um)\b[,!.]*\s*)+)(?P<rest>.*)$")
_STRONG_MARK_RE = re.compile(r"\b(?:no+|nope|nah|not quite|wrong|oops|sorry)\b")
"""A correction's first words; only the strong ones ("no", "nope", "oops") make one on their own:
"actually make the dog red" is a new edit, "actually make it a wolf instead" a correction."""
_MEANT_RE = re.compile(r"^(?:i (?:meant|mean|wanted|want|said|asked for)|what i (?:meant|wanted) (?:was|is)|"
                       r"i was going for|it should (?:be|have been)|should (?:be|have been)|make (?:it|that|them) "
                       r"(?:into )?|turn (?:it|that|them) into|rather)\s+(?P<x>.+)$")
_NOT_RE = re.compile(r"^not (?:the |a |an )?(?P<old>[\w' -]+?)\s*[,;]\s*(?:but\s+)?(?:the |a |an )?(?P<new>.+)$|"
                     r"^not (?:the |a |an )?(?P<old2>[\w' -]+?) but (?:the |a |an )?(?P<new2>.+)$")
_INSTEAD_RE = re.compile(r"\s*,?\s*\b(?:instead(?: of that)?|rather)$")

_WEAKER_RE = re.compile(
    r"^(?:(?:that'?s|that is|it'?s|it is|this is|thats|its|way|much|a bit|a little|kinda|slightly|bit|far|"
    r"still|now)\s+)*(?:too (?:strong|much|intense|extreme|obvious|heavy|bright|saturated|loud|dark|vivid|harsh|"
    r"bold|heavy-handed|over the top)|overdone|overkill|over the top|a bit much|a lot)$|"
    r"^(?:tone|dial|turn|bring|calm|scale|take) (?:it|that|this|the (?:effect|edit|change)) (?:down|back)"
    r"(?: a (?:bit|little|notch|touch))?(?: more)?$|"
    r"^(?:(?:a (?:bit|little|touch|tad)|slightly|much|way|even|bit) )?(?:less|softer|weaker|subtler|gentler|"
    r"lighter|more subtle)(?: (?:intense|strong|strongly|obvious|extreme|of (?:it|that|the effect)|please|"
    r"effect))?$|^(?:make|do) (?:it|that|this) (?:a (?:bit|little) )?(?:less|softer|weaker|subtler|gentler|"
    r"more subtle)(?: (?:intense|strong|obvious|extreme))?$|^(?:go )?easy on (?:it|that|the (?:effect|edit))$|"
    r"^not so (?:much|strong|intense)$|^(?:undo|reduce) (?:it )?(?:a (?:bit|little))$")
_STRONGER_RE = re.compile(
    r"^(?:(?:a (?:bit|little|touch|tad)|even|much|way|bit|slightly|still) )*(?:more|stronger|bolder|harder|"
    r"more intense)(?: (?:please|of (?:it|that|the same)|effect|intense|obvious))?$|"
    r"^(?:push|crank|turn|bump|dial|ramp) (?:it|that|this|the (?:effect|edit|change)) (?:up|further|more|harder)?"
    r"(?: a (?:bit|little|notch))?(?: more)?$|^(?:push it|go (?:further|harder|bigger)|not enough|"
    r"(?:it'?s |that'?s |still )?(?:too (?:subtle|weak|faint|little)|barely (?:visible|there|noticeable))|"
    r"i (?:can ?not|can'?t) (?:really )?see (?:it|the (?:change|difference|edit)))$")


def only_mark(clause: str) -> bool:
    """Whether a clause is only a correction's first words ("no", "no wait", "oops")."""
    mark = _MARK_RE.match(clause.strip(" .!,"))
    return bool(mark) and not mark.group("rest")


ReadClause = Callable[[str, ParseContext], tuple[Understanding, str]]
"""Reads one clause in a context: ``(understanding, Reading.source)`` (the reader's ``_parse_clause``)."""


def drop_hedges(text: str) -> str:
    """"make it kinda blue" -> "make it blue"; a clause that is only hedges stays as it was."""
    out = re.sub(r"\s+", " ", HEDGE_RE.sub("", text)).strip(" ,")
    return out or text


def tone(text: str, last: Optional[EditPlan]) -> Optional[Command]:
    """``weaker`` / ``stronger`` for a tone phrase about the last edit, else None.

    "less orange" / "more orange" count when orange is the last edit's value ("make it less orange"
    after "make it orange"); "less" of something else is an edit of its own.
    """
    t = re.sub(r"\s+", " ", text.strip(" .!,")).lower()
    if _WEAKER_RE.fullmatch(t):
        return Command(name="weaker")
    if _STRONGER_RE.fullmatch(t):
        return Command(name="stronger")
    if last is not None and last.new_value:
        value = strip_article(last.new_value.lower())
        m = re.fullmatch(r"(?:make (?:it|them|that) )?(?:a (?:bit|little|touch|tad) |slightly |much |even |way )*"
                         r"(?P<dir>less|more) (?P<v>.+)", t)
        if m and strip_article(m.group("v")) in (value, value.split()[-1]):
            return Command(name="weaker" if m.group("dir") == "less" else "stronger")
    return None


def _reset(last: EditPlan) -> EditPlan:
    """The last plan as the object it was made on: after "turn the cat into a fox" (or "give the cat a hat")
    is undone, "it" is the cat."""
    if last.action == "replace" or (last.action == "add" and last.target):
        return last.model_copy(update={"action": "attribute", "new_value": None})
    return last


def compound(clauses: list[str], ctx: ParseContext, read_clause: ReadClause,
             ) -> Optional[tuple[EditPlan, int]]:
    """``(the edit, how many clauses it used)`` for "undo that and make the bus green instead" (an undo or
    "go back" followed by an edit: the edit with ``undo_first``), else None."""
    if len(clauses) < 2:
        return None
    first, _ = read_clause(clauses[0], ctx)
    if not (isinstance(first, Command) and first.name == "undo"):
        return None
    after = ParseContext(last_plan=_reset(ctx.last_plan) if ctx.last_plan is not None else None,
                         has_image=ctx.has_image, caption=ctx.caption, referent=None)
    second, _ = read_clause(_INSTEAD_RE.sub("", clauses[1]), after)
    if not isinstance(second, EditPlan):
        return None
    return second.model_copy(update={"undo_first": first.steps, "revise_last": False}), 2


def _finish(plan: EditPlan, ctx: ParseContext) -> EditPlan:
    """A corrected plan with its instruction and captions rewritten from its fields."""
    plan = plan.model_copy(update={"revise_last": True, "undo_first": 0})
    source, target = plan_captions(plan, ctx)
    plan = plan.model_copy(update={"source_caption": source, "target_caption": target})
    return plan.model_copy(update={"instruction": canonical_instruction(plan)})


def correction(clause: str, ctx: ParseContext, read_clause: ReadClause,
               ) -> Optional[EditPlan]:
    """The corrected last edit for "no, I wanted a wolf" / "nope, orange" / "not the fox, a wolf" /
    "actually make it a wolf instead"; None when ``clause`` is no correction (or there is no last edit)."""
    last = ctx.last_plan
    if last is None:
        return None
    text = clause.strip(" .!,")
    mark = _MARK_RE.match(text)
    marked = bool(mark and mark.group("rest") and _STRONG_MARK_RE.search(mark.group("mark")))
    body = mark.group("rest") if mark and mark.group("rest") else text
    body = drop_hedges(body).strip(" .!,")
    instead = bool(_INSTEAD_RE.search(body))
    body = _INSTEAD_RE.sub("", body).strip(" ,")
    meant = _MEANT_RE.match(body)
    explicit = instead or bool(meant) or body.startswith("not ")
    if not (marked or explicit) or not body:
        return None
    if tone(body, last) is not None or re.match(r"^(?:undo|redo|go back|revert|cancel|never ?mind)\b", body):
        return None
    nm = _NOT_RE.match(body)
    if nm:
        body = nm.group("new") or nm.group("new2")
    elif meant and not re.match(r"^(?:make|turn)\b", body):
        body = meant.group("x")
    plan = _corrected(body, last, ctx, read_clause, explicit)
    return _finish(plan, ctx) if plan is not None else None


def _corrected(body: str, last: EditPlan, ctx: ParseContext,
               read_clause: ReadClause, explicit: bool) -> Optional[EditPlan]:
    """The last plan with what ``body`` corrects in it: the value, the object, or which one."""
    said, source = read_clause(body, ctx)
    if source in ("chat", "command"):  # "no thanks", "no, undo it": not a correction
        return None
    np = parse_np(body)
    if np.pronoun and np.qualifier:  # "the right one"
        return last.model_copy(update={"qualifier": np.qualifier})
    if last.action == "global":
        value = re.sub(r"^(?:make (?:it|the image|the photo) )", "", body)
        if is_scene_value(value):
            return last.model_copy(update={"new_value": value})
        return None
    value_like = is_attribute_value(body) or (len(body.split()) <= 3 and np.target is not None)
    reading = said if not value_like or re.match(r"^(?:make|turn|change)\b", body) else None
    if isinstance(reading, EditPlan) and reading.action != "global":
        return _from_reading(reading, last, ctx, explicit)
    if is_attribute_value(body):  # "nope, orange"
        if last.action == "attribute" or explicit:
            return last.model_copy(update={"action": "attribute", "new_value": body}) if last.action != "add" \
                else None
        return None
    if np.target and not np.pronoun:  # "no, a wolf" / "no, the bus"
        if last.action in ("replace", "add") and (np.text.split()[0] in ("a", "an", "some") or last.action == "add"
                                                  or explicit):
            return last.model_copy(update={"new_value": strip_article(np.text) if last.action == "replace"
                                           else np.text})
        return last.model_copy(update={"target": np.target, "qualifier": np.qualifier, "attribute": np.attribute,
                                       "plural": np.plural, "count": np.count})
    return None


def _from_reading(reading: EditPlan, last: EditPlan, ctx: ParseContext, explicit: bool) -> Optional[EditPlan]:
    """A full edit said as a correction ("no, make it orange", "no, make the bus green")."""
    said_object = reading.target not in (last.target, last.new_value and strip_article(last.new_value), None)
    if said_object:  # another object: the same kind of edit on it, from the same photo
        return reading
    if reading.action == last.action or explicit:
        return last.model_copy(update={"action": reading.action, "new_value": reading.new_value,
                                       "region_hint": reading.region_hint or last.region_hint,
                                       "qualifier": reading.qualifier or last.qualifier})
    return None


