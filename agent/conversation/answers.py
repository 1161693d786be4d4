"""Reading the message that comes while a question is open: an answer, a cancel, or something new.

DESIGN.md: while a question is open, commands, a new photo and a new instruction are recognised as
such; only an answer answers it; "cancel" cancels it. ``read(message, question, ...)`` returns one of

* ``Answer("cancel")``: "cancel", "never mind", "no", "none", "stop", "/cancel", ...
* ``Answer("picked", indices=...)``: the candidates meant ("2", "the left one", "all", "1 and 3").
* ``Answer("resolved", text=...)``: a referent question's answer put in place of "it"
  ("Which part should be red?" - "the car" gives "make the car red").
* ``Answer("new")``: a command (undo, redo, show mask, try again, a slash command) or a new instruction;
  the question is dropped and the message is handled as if no question had been asked.
* ``Answer("unclear")``: none of these; the question is asked again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from agent.conversation.select import resolve_answer
from agent.language.commands import recognise
from agent.language.parser import CHAT_PATTERNS, ParseContext, parse
from agent.language.plan import EditPlan
from tools.types import Detection

CANCEL_RE = re.compile(r"^(?:cancel|never ?mind|nvm|none(?: of (?:them|these|those))?|neither(?: of (?:them|these))?|"
                       r"no|nope|nah|stop|forget (?:it|that|about it)|nothing|abort|skip(?: it)?|leave it(?: as it is)?|"
                       r"no thanks|no thank you|don'?t|do nothing|quit|exit)"
                       r"(?:[\s,]+(?:thanks|thank you|please|then|it|that))*$")

_PRONOUN_RE = re.compile(r"\b(?:it|itself|this|that|them|they|those|these|him|her)\b", re.I)


@dataclass
class Answer:
    kind: str  # cancel | picked | resolved | new | unclear
    indices: list[int] = field(default_factory=list)
    text: str = ""


def _clean(message: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s'/#-]", " ", message.lower())).strip()


def is_cancel(message: str) -> bool:
    """Whether ``message`` drops the open question."""
    text = _clean(message)
    if text in ("/cancel", "/quit"):
        return True
    return bool(CANCEL_RE.match(text))


def substitute(original: str, answer: str) -> str:
    """The instruction with the answer in place of its pronoun: ("make it red", "the car") -> "make the car red"."""
    answer = answer.strip().rstrip(".!?")
    text, n = _PRONOUN_RE.subn(answer, original, count=1)
    return text if n else f"{original} {answer}"


def read(message: str, question: dict, detections: list[Detection], image_size: tuple[int, int],
         context: Optional[ParseContext] = None) -> Answer:
    """What ``message`` is, given the open ``question`` (``{"kind": "candidates" | "referent", "original"}``)."""
    text = (message or "").strip()
    if not text:
        return Answer("unclear")
    if is_cancel(text):
        return Answer("cancel")
    context = context or ParseContext()
    if recognise(text) is not None or isinstance(parse(text, context), EditPlan):
        return Answer("new")  # "undo", "/mask", "make the rightmost cat red": not an answer
    if question.get("kind") == "candidates":
        picked = resolve_answer(text, detections, image_size)
        if picked:
            return Answer("picked", indices=picked)
    if any(pattern.fullmatch(_clean(text).strip(" '")) for pattern, _ in CHAT_PATTERNS):
        return Answer("unclear")  # "hmm", "thanks", "hello": talk, not the object asked for
    if question.get("kind") == "referent" and question.get("original"):
        filled = substitute(question["original"], text)
        plan = parse(filled, context)
        if isinstance(plan, EditPlan) and plan.target and not _PRONOUN_RE.fullmatch(plan.target):
            return Answer("resolved", text=filled)
    return Answer("unclear")
