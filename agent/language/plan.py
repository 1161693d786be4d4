"""What the agent understood from one user message: an edit plan, a command, a question back, or chat.

These models are the contract between the language side (the LLM or the offline parser in
``agent.language.parser``) and the vision side (grounding, selection, editing). They validate and
normalise whatever they are given, so an LLM's tool call can be loaded with
``EditPlan.model_validate(args)`` and be as clean as the offline parser's output.

Qualifier vocabulary
--------------------
``EditPlan.qualifier`` says which of several grounded objects is meant. It is one of:

=========================  =====================================================================
``left`` ``right``         on that side (singular: the extreme one; plural: those in that half)
``top`` ``bottom``         likewise, vertically
``middle``                 the central one
``leftmost`` ...           ``leftmost``, ``rightmost``, ``topmost``, ``bottommost``
``top left`` ...           corners: ``top left``, ``top right``, ``bottom left``, ``bottom right``
``corner``                 the one nearest any corner ("the cat in the corner")
``Nth from SIDE``          ordinal, N >= 2, SIDE in left/right/top/bottom: ``2nd from left``,
                           ``3rd from right``. The 1st from a side is that side's extreme
                           (``1st from left`` is written ``leftmost``); "last" is ``rightmost``.
``largest`` ``smallest``   by box area (bigger/biggest/big/tallest -> ``largest``)
``front`` ``back``         nearest / farthest from the camera (closest, foreground / background)
=========================  =====================================================================

``normalize_qualifier`` maps free phrasing ("the one on the far left", "second from the right",
"biggest") onto this vocabulary; ``extract_qualifier`` finds and removes such a phrase inside a
noun phrase ("the second cat from the left" -> ``("2nd from left", "cat")``). ``agent.conversation.select``
consumes the vocabulary.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Callable, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

MAX_TEXT = 300
"""Longest string kept in any field; longer values are cut at a word boundary."""

# ------------------------------------------------------------------------------------------
# qualifier vocabulary
# ------------------------------------------------------------------------------------------

SIDES = ("left", "right", "top", "bottom")
POSITIONS = ("left", "right", "top", "bottom", "middle")
EXTREMES = ("leftmost", "rightmost", "topmost", "bottommost")
CORNERS = ("top left", "top right", "bottom left", "bottom right", "corner")
SIZES = ("largest", "smallest")
DEPTHS = ("front", "back")
QUALIFIERS: tuple[str, ...] = POSITIONS + EXTREMES + CORNERS + SIZES + DEPTHS
"""Every fixed qualifier; ordinals (``"2nd from left"``) come on top of these."""

ORDINAL_RE = re.compile(r"^(\d+)(?:st|nd|rd|th) from (left|right|top|bottom)$")
"""A canonical ordinal qualifier, e.g. ``2nd from right``."""

ORDINAL_WORDS: dict[str, int] = {
    "first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4,
    "fifth": 5, "5th": 5, "sixth": 6, "6th": 6, "seventh": 7, "7th": 7, "eighth": 8, "8th": 8,
    "ninth": 9, "9th": 9, "tenth": 10, "10th": 10,
}
_ORD = "|".join(sorted(ORDINAL_WORDS, key=len, reverse=True))
_SIDE_WORD = {"upper": "top", "lower": "bottom", "centre": "middle", "center": "middle",
              "central": "middle", "rear": "back", "background": "back", "foreground": "front"}


def ordinal(n: int) -> str:
    """``1 -> '1st'``, ``2 -> '2nd'``, ``11 -> '11th'``."""
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return str(n) + {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def ordinal_qualifier(n: int, side: str) -> str:
    """Canonical ordinal qualifier; the first from a side is that side's extreme."""
    side = _SIDE_WORD.get(side, side)
    return f"{side}most" if n <= 1 else f"{ordinal(n)} from {side}"


def parse_ordinal_qualifier(q: str) -> Optional[tuple[int, str]]:
    """``'2nd from right' -> (2, 'right')``; extremes count as the 1st from their side."""
    m = ORDINAL_RE.match(q)
    if m:
        return int(m.group(1)), m.group(2)
    if q in EXTREMES:
        return 1, q[: -len("most")]
    return None


def _side(m: re.Match, group: str = "s") -> str:
    word = m.group(group)
    return _SIDE_WORD.get(word, word)


_QualFn = Callable[[re.Match], str]

QUALIFIER_PATTERNS: list[tuple[re.Pattern, _QualFn, str]] = [
    # (pattern, canonical qualifier from the match, text that replaces the match)
    (re.compile(rf"\b(?:the\s+)?(?P<o>{_ORD})(?:\s+one)?\b(?P<mid>(?:\s+[\w'-]+){{0,3}}?)\s+from\s+"
                r"(?:the\s+)?(?P<s>left|right|top|bottom)(?:\s+(?:side|end|edge))?\b"),
     lambda m: ordinal_qualifier(ORDINAL_WORDS[m.group("o")], m.group("s")), r"\g<mid>"),
    (re.compile(rf"\b(?:the\s+)?(?P<o>{_ORD})[\s-]+(?:to|from)[\s-]+(?:the[\s-]+)?last\b"),
     lambda m: ordinal_qualifier(ORDINAL_WORDS[m.group("o")], "right"), ""),
    (re.compile(r"\bpenultimate\b"), lambda m: "2nd from right", ""),
    (re.compile(r"\b(?:(?:in|at|on)\s+the\s+)?(?:very\s+|far\s+)?(?P<v>top|upper|bottom|lower)[\s-]*"
                r"(?P<h>left|right)(?:[\s-]*hand)?(?:[\s-]*most)?(?:\s+corner)?\b"),
     lambda m: f"{_side(m, 'v')} {m.group('h')}", ""),
    (re.compile(r"\b(?:(?:in|at|on)\s+(?:the|a)\s+)corner\b"), lambda m: "corner", ""),
    (re.compile(r"\b(?:(?:on|at|to|in)\s+)?(?:the\s+)?(?:very|far|extreme)[\s-]+(?P<s>left|right|top|bottom)"
                r"\b(?:[\s-]*hand)?(?:\s+(?:side|end|edge))?(?!\s+of)"),
     lambda m: f"{_side(m)}most", ""),
    (re.compile(r"\b(?P<s>left|right|top|bottom|upper|lower)[\s-]?most\b"), lambda m: f"{_side(m)}most", ""),
    (re.compile(r"\b(?:(?:the\s+)?(?:one\s+)?(?:furthest|farthest|most)\s+(?:to\s+the\s+)?)(?P<s>left|right)\b"),
     lambda m: f"{_side(m)}most", ""),
    (re.compile(r"\b(?:on|at|to|in)\s+(?:the\s+)?(?P<s>left|right)(?:[\s-]*hand)?(?:\s+(?:side|half|part|edge))?"
                r"\b(?!\s+of)"), _side, ""),
    (re.compile(r"\b(?:on|at|in)\s+the\s+(?P<s>top|bottom)(?:\s+(?:side|half|part|edge))?\b(?!\s+of)"), _side, ""),
    (re.compile(r"\bin\s+(?:the\s+)?(?:middle|center|centre)\b(?!\s+of)|\bin\s+between\b"),
     lambda m: "middle", ""),
    (re.compile(r"\bin\s+(?:the\s+)?(?:front|foreground)\b(?!\s+of)|\b(?:closest|nearest|closer|nearer)\b"
                r"(?:\s+(?:to|from)\s+(?:the\s+)?(?:camera|viewer|us|me|you))?"),
     lambda m: "front", ""),
    (re.compile(r"\b(?:in|at)\s+the\s+(?:back|background|rear|distance)\b(?!\s+of)|\b(?:further|farther)\s+"
                r"(?:away|back)\b|\bfar\s+away\b|\b(?:farthest|furthest|farther|further|distant)\b"),
     lambda m: "back", ""),
    (re.compile(r"\b(?:biggest|largest|bigger|larger|big|large|huge|giant|tallest|taller)\b"),
     lambda m: "largest", ""),
    (re.compile(r"\b(?:smallest|smaller|small|little|tiny|tinier|tiniest|shortest)\b"), lambda m: "smallest", ""),
    # a position word used as a modifier ("the left cat", "the front wheel"), never as the head
    (re.compile(r"\b(?P<s>left|right|middle|center|centre|central|top|upper|bottom|lower|front|back|rear)"
                r"\b(?=\s+(?!of\b)[\w'-])"), _side, ""),
    (re.compile(r"\blast\b"), lambda m: "rightmost", ""),
    (re.compile(rf"\b(?P<o>{_ORD})\b"), lambda m: ordinal_qualifier(ORDINAL_WORDS[m.group("o")], "left"), ""),
]
"""Qualifier phrases, most specific first. Applied to a noun phrase, never to a whole sentence."""


def extract_qualifier(phrase: str) -> tuple[Optional[str], str]:
    """Find the qualifier in a lower-case noun phrase and remove every qualifier phrase from it.

    The first pattern of ``QUALIFIER_PATTERNS`` that matches wins; later matches are removed too,
    so "the biggest cat on the left" gives ``("left", "the cat")``.
    """
    found: Optional[str] = None
    text = phrase
    for pattern, canon, repl in QUALIFIER_PATTERNS:
        m = pattern.search(text)
        if not m:
            continue
        if found is None:
            found = canon(m)
        text = pattern.sub(repl, text)
    return found, re.sub(r"\s+", " ", text).strip()


def normalize_qualifier(value: Optional[str]) -> Optional[str]:
    """Map a free qualifier phrase onto the vocabulary; ``None`` when it names no position/size."""
    if value is None:
        return None
    text = re.sub(r"[^\w\s-]", " ", str(value).lower())
    text = re.sub(r"[\s_]+", " ", text).strip()
    if not text or text in {"none", "null", "n/a", "no"}:
        return None
    if text in QUALIFIERS or ORDINAL_RE.match(text):
        m = ORDINAL_RE.match(text)
        return ordinal_qualifier(int(m.group(1)), m.group(2)) if m else text
    found, _ = extract_qualifier(text)
    if found is None:
        bare = _SIDE_WORD.get(text, text)
        if bare in QUALIFIERS:
            return bare
    return found


# ------------------------------------------------------------------------------------------
# the models
# ------------------------------------------------------------------------------------------


_ESCAPE_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]")
"""Terminal escape sequences: CSI (colours, cursor moves), OSC (titles, hyperlinks), two-byte escapes."""
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
"""Control characters (C0 but tab and newlines, DEL, C1), zero-width and bidirectional overrides."""


def strip_controls(text: str) -> str:
    """``text`` without terminal escape sequences and control characters (each becomes a space), so
    what a model or a user wrote can be printed to a terminal and stored as it reads."""
    return _CONTROL_RE.sub(" ", _ESCAPE_RE.sub(" ", text))


def clean_text(value: Any, limit: int = MAX_TEXT) -> Optional[str]:
    """Strip escape and control characters, collapse whitespace and cut at ``limit`` characters (at a
    word boundary); '' -> None."""
    if value is None:
        return None
    text = re.sub(r"\s+", " ", strip_controls(str(value)[: limit * 4 + 64])).strip()
    if not text:
        return None
    if len(text) > limit:
        cut = text[:limit]
        text = (cut.rsplit(" ", 1)[0] if " " in cut[limit // 2:] else cut).rstrip()
    return text


class _Base(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_assignment=True)


class EditPlan(_Base):
    """One edit: what to change (``action``), where (``target`` + ``qualifier``) and into what."""

    kind: Literal["edit"] = "edit"
    action: Literal["replace", "attribute", "add", "remove", "global"]
    target: Optional[str] = Field(None, description="Grounding phrase, e.g. 'cat'; None for global edits.")
    qualifier: Optional[str] = Field(None, description="Which one: see the qualifier vocabulary.")
    attribute: Optional[str] = Field(None, description="Identifying adjective: 'white' in 'the white cat'.")
    plural: bool = False
    count: Optional[int] = Field(None, ge=1, le=100, description="'both' -> 2, 'the two dogs' -> 2.")
    source_caption: str = ""
    target_caption: str = ""
    instruction: str = ""
    region_hint: Optional[str] = Field(None, description="Where to add: 'on the table'.")
    new_value: Optional[str] = Field(None, description="What the target becomes or gets: 'fox', 'red', 'a hat'.")
    revise_last: bool = Field(False, description="A correction of the previous edit ('no, the left one'): apply "
                              "it to the image the previous edit started from.")
    undo_first: int = Field(0, ge=0, le=1000, description="Undo this many edits first, then make this edit on the "
                            "version that leaves on screen ('undo that and make the bus green instead': 1).")
    box: Optional[tuple[float, float, float, float]] = Field(
        None, description="Where a vision LLM saw the target, [x0, y0, x1, y1] in pixels of the photo: a "
        "grounding hint that SAM refines (agent.language.vision); None without one.")

    @field_validator("target", "attribute", "region_hint", "new_value", mode="before")
    @classmethod
    def _clean_optional(cls, v: Any) -> Optional[str]:
        text = clean_text(v)
        if text is not None and text.lower() in {"none", "null", "n/a"}:
            return None
        return text

    @field_validator("source_caption", "target_caption", "instruction", mode="before")
    @classmethod
    def _clean_required(cls, v: Any) -> str:
        return clean_text(v) or ""

    @field_validator("qualifier", mode="before")
    @classmethod
    def _clean_qualifier(cls, v: Any) -> Optional[str]:
        text = clean_text(v, 80)
        if text is None:
            return None
        return normalize_qualifier(text) or (None if text.lower() in {"none", "null"} else text.lower())

    @field_validator("count", mode="before")
    @classmethod
    def _clean_count(cls, v: Any) -> Optional[int]:
        if v in (None, "", 0, "0"):
            return None
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "EditPlan":
        if self.action == "global":
            for name in ("target", "qualifier", "attribute", "count", "region_hint", "box"):
                object.__setattr__(self, name, None)
            object.__setattr__(self, "plural", False)
        elif self.action in ("replace", "attribute", "remove") and not self.target:
            raise ValueError(f"a {self.action} edit needs a target (the object to change)")
        elif self.action == "add" and not (self.new_value or self.instruction):
            raise ValueError("an add edit needs new_value (what to add)")
        if self.count is not None and self.count >= 2:
            object.__setattr__(self, "plural", True)
        return self

    @property
    def grounding_phrase(self) -> Optional[str]:
        """The phrase to ground: ``"white cat"`` when an identifying attribute is set, else the target."""
        if not self.target:
            return None
        return f"{self.attribute} {self.target}" if self.attribute else self.target

    @property
    def is_global(self) -> bool:
        """Whether the edit has no region (runs InstructPix2Pix on the whole image)."""
        return self.action == "global" or (self.action == "add" and not self.target and not self.qualifier)


class Command(_Base):
    """A conversation command rather than an edit ("undo", "show me the mask", ...)."""

    kind: Literal["command"] = "command"
    name: Literal["undo", "redo", "show_mask", "retry", "stronger", "weaker", "other_candidate", "cancel"]
    steps: int = Field(1, ge=1, le=1000, description="Undo/redo steps; ORIGINAL_STEPS = back to the start.")


ORIGINAL_STEPS = 1000
"""``Command(name="undo", steps=ORIGINAL_STEPS)``: go back to the original image."""


class Clarify(_Base):
    """A question back to the user; ``candidates`` are detection indices numbered 1.. in the overlay."""

    kind: Literal["clarify"] = "clarify"
    question: str
    candidates: list[int] = Field(default_factory=list)

    @field_validator("question", mode="before")
    @classmethod
    def _clean(cls, v: Any) -> str:
        return clean_text(v, 1000) or "Could you say that differently?"


class Chat(_Base):
    """A plain reply with no edit (greetings, help, refusals, empty input)."""

    kind: Literal["chat"] = "chat"
    text: str

    @field_validator("text", mode="before")
    @classmethod
    def _clean(cls, v: Any) -> str:
        return clean_text(v, 2000) or "How should I edit the image?"


Understanding = Union[EditPlan, Command, Clarify, Chat]
"""Everything ``parse`` (or the LLM) can produce for one message."""

UnderstandingAdapter: TypeAdapter = TypeAdapter(Annotated[Understanding, Field(discriminator="kind")])
"""Load/dump an ``Understanding`` from/to JSON by its ``kind`` field (edit/command/clarify/chat)."""
