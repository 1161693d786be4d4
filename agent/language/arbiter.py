"""The built-in parser as a check of the LLM's answer: which of the two readings a turn acts on.

The LLM can add what the rule-based parser lacks (a referent resolved from the caption, a better
caption pair, an instruction in another language) but a small model also answers a plain "remove
the horse" with the chat reply "Remove the horse from the photo.", or edits an object the user
never named. ``arbitrate`` decides, given the LLM's (already validated) answer and the parser's
``Reading`` of the same message:

* a ``reply`` (``Chat``) or ``ask_user`` (``Clarify``) answer, or a command, to a message the parser
  reads as an edit is replaced by the parser's plan (a question only when the parser's target is
  grounded in the conversation);
* two edit plans that agree (action, target, qualifier, plural, new value) keep the LLM's plan,
  with the fields it left empty, and any instruction or caption that says what nobody said (a
  small model's copy of its prompt's example: "turn the horse into a zebra" for "remove the
  horse"), taken from the parser's;
* two plans that disagree: the one whose target is better grounded (``target_grounding``: named in
  the message > named in the caption or the last edit > other words > function words or a scene
  word such as "day"), then whose new value the user said; a tie goes to the parser, whose reading
  comes straight from the user's words;
* anything the parser cannot read (another language, a phrasing it has no rule for) keeps the
  LLM's answer.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Literal, Optional

from agent.language.llm_client import REDACT
from agent.language.parser import WHOLE_IMAGE, Reading, singularize
from agent.language.plan import Chat, Clarify, Command, EditPlan, Understanding

log = logging.getLogger(__name__)
log.addFilter(REDACT)

STOPWORDS = {"the", "a", "an", "of", "one", "ones", "object", "objects", "thing", "things", "this", "that",
             "these", "those", "and", "on", "in", "with", "to", "my", "its", "all", "both", "some"}
"""Words that do not identify an object or a value."""
FUNCTION_WORDS = {"so", "it", "is", "are", "be", "been", "was", "were", "there", "that", "which", "who", "they",
                  "them", "it's", "let", "have", "has", "had", "get", "gets", "look", "looks", "say", "says",
                  "said", "read", "reads", "should", "would", "could", "can", "will", "not", "no", "do", "does",
                  "make", "turn", "change", "please", "i", "you", "we", "me", "he", "she", "him", "her", "if",
                  "then", "than", "into", "as"}
"""Words no grounding phrase should contain ("sign so it is" is a misread, not an object)."""
SCENE_HEADS = WHOLE_IMAGE | {"day", "daytime", "night", "nighttime", "morning", "evening", "afternoon", "dawn",
                             "dusk", "sunset", "sunrise", "summer", "winter", "autumn", "fall", "spring",
                             "springtime", "weather", "season", "landscape", "view", "scenery"}
"""Words that name the whole scene: a target made of them cannot be grounded to a region."""
STYLE_HEADS = {"painting", "drawing", "sketch", "watercolor", "watercolour", "cartoon", "illustration", "render",
               "style", "filter", "look", "effect", "snow", "rain", "fog", "mist", "storm", "sunset", "sunrise",
               "sunlight", "sunshine", "darkness", "brightness", "contrast", "lighting"}
"""What a style or weather change brings (a painting, snow): no region to recolour or replace, though
"remove the snow" has one."""

Winner = Literal["llm", "parser"]


def words(text: Any) -> set[str]:
    """The lower-case words of a text: ``"The cat's hat" -> {"the", "cat's", "hat"}``."""
    return set(re.findall(r"[a-z]+(?:'[a-z]+)?", str(text or "").lower()))


def same_word(a: str, b: str) -> bool:
    """``cat`` ~ ``cats``, ``box`` ~ ``boxes``, ``berry`` ~ ``berries``, ``person`` ~ ``people``: the same
    lemma (``agent.language.parser.singularize``: -ies, -es, irregular plurals), or one a prefix of the other within
    2 letters."""
    if a == b or singularize(a) == singularize(b):
        return True
    short, long_ = sorted((a, b), key=len)
    return len(short) >= 3 and long_.startswith(short) and len(long_) - len(short) <= 2


def said_in(phrase: Optional[str], text: str) -> bool:
    """Whether every identifying word of ``phrase`` occurs in ``text`` (plural or singular)."""
    wanted = words(phrase) - STOPWORDS
    known = words(text)
    return bool(wanted) and all(any(same_word(w, k) for k in known) for w in wanted)


def _head(phrase: Optional[str]) -> str:
    found = re.findall(r"[a-z]+", str(phrase or "").lower())
    return found[-1] if found else ""


def _context_text(context: Any) -> str:
    """What the conversation knows besides the message: the caption, the referent, the last plan."""
    last = getattr(context, "last_plan", None)
    parts = [getattr(context, "caption", None), getattr(context, "referent", None)]
    if isinstance(last, EditPlan):
        parts += [last.target, last.new_value, last.attribute]
    return " ".join(str(p) for p in parts if p)


def target_grounding(plan: EditPlan, text: str, context: Any = None) -> int:
    """How well a plan's target is grounded: 3 named in the message, 2 named in the caption, the
    referent or the last edit, 1 other words (or no target: a global edit), 0 a misread (function
    words such as "so it is", a scene word such as "day" that no detector can box, or the very
    thing an add or replace brings in)."""
    if not plan.target:
        return 1
    found = words(plan.target)
    if not found or found & FUNCTION_WORDS or _head(plan.target) in SCENE_HEADS:
        return 0
    if plan.action in ("add", "replace") and plan.new_value and same_word(_head(plan.target), _head(plan.new_value)):
        return 0  # "add a rainbow" read as adding a rainbow onto a rainbow: the new thing is not there yet
    if plan.action in ("replace", "attribute") and _head(plan.target) in STYLE_HEADS:
        return 0  # "make it look like a Van Gogh painting" is no edit of a painting in the photo
    if said_in(plan.target, text):
        return 3
    if said_in(plan.target, _context_text(context)):
        return 2
    return 1


def value_grounding(plan: EditPlan, text: str) -> int:
    """1 when the plan's new value is what the user said (or the action needs none), else 0."""
    if plan.action in ("remove", "global"):
        return 1
    return int(said_in(plan.new_value, text))


def well_grounded(result: Understanding, text: str, context: Any = None) -> bool:
    """Whether a reading is a clear edit: a plan with its target in the user's words or the
    conversation's (the last edit, the referent) and its value in the user's words (or a global
    edit / an add with no target)."""
    if not isinstance(result, EditPlan):
        return False
    if not result.target:
        return True
    return target_grounding(result, text, context) >= 2 and value_grounding(result, text) == 1


PLAN_WORDS = {"turn", "make", "change", "replace", "remove", "add", "put", "into", "with", "photo", "picture",
              "image", "background", "without", "s", "look", "like", "style", "more", "less", "very", "at", "in",
              "on", "of", "for", "from", "by", "new", "edit", "edited", "other", "same", "colour", "color"}
"""Words any plan's instruction or caption may use, whatever the user said."""


def unsaid_words(phrase: Optional[str], plan: EditPlan, text: str, context: Any = None) -> set[str]:
    """The words of a free-text field (instruction, caption) that neither the user, the conversation
    nor the plan's own fields said: "turn the horse into a zebra" for "remove the horse" -> {"zebra"}
    (a small model copying its prompt's example)."""
    known = words(" ".join(filter(None, (text, _context_text(context), plan.target, plan.new_value,
                                         plan.attribute, plan.region_hint, plan.qualifier))))
    return {w for w in words(phrase) - STOPWORDS - FUNCTION_WORDS - PLAN_WORDS
            if len(w) > 2 and not any(same_word(w, k) for k in known)}


def vetted(plan: EditPlan, text: str, context: Any = None, fallback: Optional[EditPlan] = None) -> EditPlan:
    """``plan`` with each free-text field that says something unsaid (``unsaid_words``) replaced by
    ``fallback``'s (or emptied, for ``agent.language.parser.complete_plan`` to write)."""
    update = {k: (getattr(fallback, k) if fallback is not None else "") for k in
              ("instruction", "source_caption", "target_caption")
              if getattr(plan, k) and unsaid_words(getattr(plan, k), plan, text, context)}
    return plan.model_copy(update=update) if update else plan


def _same_object(a: str, b: str, context: Any = None) -> bool:
    """Whether two targets name the same object: the same head word, or both names of the last edit's
    object ("cat" and "fox" after "turn the cat into a fox": the region that edit changed)."""
    if same_word(_head(a), _head(b)):
        return True
    last = getattr(context, "last_plan", None)
    if not isinstance(last, EditPlan) or last.action == "remove":
        return False
    names = [n for n in (last.target, last.new_value) if n]
    return all(any(same_word(_head(t), _head(n)) for n in names) for t in (a, b))


def agree(a: EditPlan, b: EditPlan, context: Any = None) -> bool:
    """Whether two plans are the same edit: action, target (its head word, or the last edit's object
    by either name), qualifier, plural and the new value (its head word) agree."""
    if a.action != b.action or bool(a.target) != bool(b.target) or a.plural != b.plural:
        return False
    if a.target and not _same_object(a.target, b.target, context):
        return False
    if (a.qualifier or None) != (b.qualifier or None):
        return False
    if a.action in ("replace", "attribute", "add"):
        return bool(a.new_value and b.new_value) and same_word(_head(a.new_value), _head(b.new_value))
    return True


def _kind(result: Understanding) -> str:
    if isinstance(result, Chat):
        return "a chat reply"
    if isinstance(result, Clarify):
        return "a question"
    if isinstance(result, Command):
        return f"the command {result.name}"
    return "another edit"


def _describe(plan: EditPlan) -> str:
    bits = [plan.action, repr(plan.target) if plan.target else "", f"-> {plan.new_value!r}" if plan.new_value else ""]
    return " ".join(b for b in bits if b)


@dataclass(frozen=True)
class Verdict:
    """The reading a turn acts on, whose it is, and why (empty when nothing was overruled)."""

    result: Understanding
    winner: Winner
    reason: str = ""


def arbitrate(proposed: Understanding, reading: Reading, text: str, context: Any = None) -> Verdict:
    """Decide between the LLM's answer ``proposed`` and the parser's ``reading`` (module docstring)."""
    parsed = reading.result
    if reading.source == "foreign" or reading.source not in ("edit", "fallback"):
        return Verdict(proposed, "llm")  # the user's words are not English: nothing to vet them against
    if isinstance(parsed, EditPlan) and not isinstance(proposed, EditPlan):
        grounded = target_grounding(parsed, text, context) >= 2
        if isinstance(proposed, (Chat, Command)) or grounded:
            return Verdict(parsed, "parser", f"the model answered {_kind(proposed)} to a clear edit; "
                                             "used the built-in parser's reading")
        return Verdict(proposed, "llm")
    if isinstance(parsed, Clarify) and isinstance(proposed, Chat) and reading.source == "edit":
        return Verdict(parsed, "parser", "the model answered with chat; the built-in parser asks which object")
    if not (isinstance(parsed, EditPlan) and isinstance(proposed, EditPlan)):
        return Verdict(vetted(proposed, text, context) if isinstance(proposed, EditPlan) else proposed, "llm")
    if (parsed.revise_last or parsed.undo_first) and (parsed.revise_last, parsed.undo_first) != (
            proposed.revise_last, proposed.undo_first):  # a correction / "undo ... and" the model did not mark
        return Verdict(parsed, "parser", "the built-in parser read a correction or an undo first "
                                         f"({_describe(parsed)}); the model's plan did not say so")
    if agree(proposed, parsed, context):
        proposed = vetted(proposed, text, context, parsed)
        filled = {k: getattr(parsed, k) for k in ("attribute", "count", "region_hint", "source_caption",
                                                  "target_caption", "instruction")
                  if getattr(proposed, k) in (None, "") and getattr(parsed, k) not in (None, "")}
        return Verdict(proposed.model_copy(update=filled) if filled else proposed, "llm")
    mine = (target_grounding(proposed, text, context), value_grounding(proposed, text))
    theirs = (target_grounding(parsed, text, context), value_grounding(parsed, text))
    if mine > theirs:
        return Verdict(vetted(proposed, text, context), "llm", f"the model's plan ({_describe(proposed)}) is better grounded than the "
                                        f"built-in parser's ({_describe(parsed)})")
    return Verdict(parsed, "parser", f"the model's plan ({_describe(proposed)}) disagrees with the built-in "
                                     f"parser's ({_describe(parsed)}) and is not better grounded")
