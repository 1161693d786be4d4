"""Which grounded box(es) an ``EditPlan`` means: relative position, ordinal, size, depth, plural.

``choose(plan, detections, image_size)`` returns a ``Choice`` (detection indices, a reason, whether
the choice is certain, and alternatives to try next) or a ``Clarify`` question when it cannot tell.
``resolve_answer`` reads the user's reply to that question ("2", "the left one", "all").

Candidates
----------
Before choosing, near-duplicate boxes (IoU > ``DUPLICATE_IOU``, the lower score dropped) and weak
boxes (score < ``WEAK_RATIO`` x the best score) are set aside; they are only offered last, as
alternatives. ``candidate_order(detections)`` is the numbering shown to users: the remaining
candidates sorted left to right by box centre (then top to bottom), numbered from 1. The overlay
picture and ``resolve_answer`` use the same function, so "2" always means the same box.

Geometry (image of width W and height H, box centre (cx, cy), area A)
--------------------------------------------------------------------
* left/right/top/bottom and the ``...most`` forms: the extreme centre; plural ``left`` etc.: every
  candidate whose centre lies in that half of the image.
* ``middle``: the median candidate along the axis they spread along (odd count); with an even count
  there is none, and the user is asked (``_rank`` ranks them by distance to the image centre).
* corners: nearest centre to that corner (``corner``: to any corner).
* ``Nth from SIDE``: sort by centre from that side, take the Nth.
* ``largest``/``smallest``: box area.
* ``front``/``back``: closeness = (bottom edge / H + sqrt(A / (W*H))) / 2, larger is closer; plural
  front/back splits the candidates at the biggest gap in closeness.

A choice is ``certain=False`` when the best and the runner-up differ by less than ``TIE`` of the
image side (``SIZE_TIE`` relative area for sizes), so the judge may try ``alternatives`` next.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Optional, Sequence

from pydantic import BaseModel, Field

from agent.language.plan import (
    EXTREMES, ORDINAL_WORDS, Clarify, EditPlan, normalize_qualifier, parse_ordinal_qualifier,
)
from agent.conversation.replies import Where, reason as reason_of, which_one
from agent.language.parser import pluralize
from tools.types import Detection, LocaleditError

DUPLICATE_IOU = 0.8
"""Boxes overlapping more than this are one object; the lower-scored one is set aside."""
WEAK_RATIO = 0.5
"""Boxes scoring below this fraction of the best score are set aside."""
TIE = 0.03
"""Positions closer than this fraction of the image side are a near tie."""
SIZE_TIE = 0.10
"""Areas within this relative difference are a near tie."""


class Choice(BaseModel):
    """The chosen detection indices, why, whether it is a confident choice, and what to try next.

    ``how`` / ``desc`` / ``total`` / ``numbers`` are the ``agent.conversation.replies.Where`` fields the reply is
    written from; ``reason`` is that phrase ("the leftmost of the 3 cats").
    """

    indices: list[int]
    reason: str
    certain: bool = True
    alternatives: list[int] = Field(default_factory=list)
    how: str = "only"
    desc: str = ""
    total: int = 1
    numbers: list[int] = Field(default_factory=list)
    asked: Optional[int] = None

    def where(self, name: str) -> Where:
        return Where(how=self.how, name=name, chosen=len(self.indices), total=self.total, desc=self.desc,
                     numbers=self.numbers, tie=not self.certain, asked=self.asked)


def make_choice(indices: Sequence[int], how: str, name: str, order: Sequence[int], *, desc: str = "",
                certain: bool = True, alternatives: Sequence[int] = (), asked: Optional[int] = None) -> Choice:
    """A ``Choice`` with its numbers (positions in ``order``, 1-based) and its reason filled in."""
    numbers = [list(order).index(i) + 1 for i in indices if i in order]
    choice = Choice(indices=list(indices), reason="", certain=certain, alternatives=list(alternatives), how=how,
                    desc=desc, total=max(1, len(order)), numbers=numbers, asked=asked)
    choice.reason = reason_of(choice.where(name))
    return choice


# ------------------------------------------------------------------------------------------
# geometry
# ------------------------------------------------------------------------------------------


def _box(d: Detection) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in d.box)
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def _centre(d: Detection) -> tuple[float, float]:
    x0, y0, x1, y1 = _box(d)
    return (x0 + x1) / 2, (y0 + y1) / 2


def _area(d: Detection) -> float:
    x0, y0, x1, y1 = _box(d)
    return max(0.0, x1 - x0) * max(0.0, y1 - y0)


def _score(d: Detection) -> float:
    s = float(d.score)
    return s if math.isfinite(s) else 0.0


def iou(a: Detection, b: Detection) -> float:
    """Intersection over union of two detections' boxes."""
    ax0, ay0, ax1, ay1 = _box(a)
    bx0, by0, bx1, by1 = _box(b)
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def _valid(d: Detection) -> bool:
    return all(math.isfinite(float(v)) for v in d.box) and _area(d) > 0


def candidates(detections: Sequence[Detection]) -> list[int]:
    """Indices of the real candidates, best score first: valid boxes, no near-duplicates, no weak ones."""
    valid = [i for i, d in enumerate(detections) if _valid(d)]
    valid.sort(key=lambda i: -_score(detections[i]))
    if not valid:
        return []
    best = _score(detections[valid[0]])
    kept: list[int] = []
    for i in valid:
        if best > 0 and _score(detections[i]) < WEAK_RATIO * best:
            continue
        if any(iou(detections[i], detections[k]) > DUPLICATE_IOU for k in kept):
            continue
        kept.append(i)
    return kept


def candidate_order(detections: Sequence[Detection]) -> list[int]:
    """The numbering shown to users: ``candidates`` sorted left to right by box centre, then top to bottom.

    Candidate number k (1-based) is detection index ``candidate_order(detections)[k - 1]``.
    """
    return sorted(candidates(detections), key=lambda i: (_centre(detections[i])[0], _centre(detections[i])[1], i))


def _set_aside(detections: Sequence[Detection], cands: Sequence[int]) -> list[int]:
    """Valid detections that are not candidates, best score first (tried last)."""
    rest = [i for i, d in enumerate(detections) if i not in cands and _valid(d)]
    return sorted(rest, key=lambda i: -_score(detections[i]))


# ------------------------------------------------------------------------------------------
# ranking by qualifier
# ------------------------------------------------------------------------------------------

_Key = Callable[[Detection], float]


def _keys(w: float, h: float) -> dict[str, tuple[_Key, float, str]]:
    """qualifier -> (key, lower is better; tie threshold on that key; description)."""
    def cx(d: Detection) -> float:
        return _centre(d)[0] / w

    def cy(d: Detection) -> float:
        return _centre(d)[1] / h

    def closeness(d: Detection) -> float:
        return (_box(d)[3] / h + math.sqrt(_area(d) / (w * h))) / 2

    def corner(px: float, py: float) -> _Key:
        return lambda d: math.hypot(cx(d) - px, cy(d) - py)

    keys: dict[str, tuple[_Key, float, str]] = {
        "left": (cx, TIE, "leftmost"), "right": (lambda d: -cx(d), TIE, "rightmost"),
        "top": (cy, TIE, "topmost"), "bottom": (lambda d: -cy(d), TIE, "bottommost"),
        "top left": (corner(0, 0), TIE, "nearest the top left corner"),
        "top right": (corner(1, 0), TIE, "nearest the top right corner"),
        "bottom left": (corner(0, 1), TIE, "nearest the bottom left corner"),
        "bottom right": (corner(1, 1), TIE, "nearest the bottom right corner"),
        "corner": (lambda d: min(corner(px, py)(d) for px in (0, 1) for py in (0, 1)), TIE, "nearest a corner"),
        "largest": (lambda d: -_area(d) / (w * h), SIZE_TIE, "largest"),
        "smallest": (lambda d: _area(d) / (w * h), SIZE_TIE, "smallest"),
        "front": (lambda d: -closeness(d), TIE, "closest to the camera"),
        "back": (closeness, TIE, "farthest from the camera"),
    }
    for side in ("left", "right", "top", "bottom"):
        keys[f"{side}most"] = keys[side]
    return keys


def _is_tie(q: str, a: float, b: float) -> bool:
    """Whether two key values are too close to call."""
    if q in ("largest", "smallest"):
        a, b = abs(a), abs(b)
        return abs(a - b) < SIZE_TIE * max(a, b, 1e-12)
    return abs(a - b) < TIE


def _rank(q: str, cands: Sequence[int], dets: Sequence[Detection], w: float, h: float
          ) -> Optional[tuple[list[int], bool, str]]:
    """Candidates ranked best-first for qualifier ``q``, whether the top is certain, and how it was picked.

    ``None`` when the qualifier is unknown or cannot apply (an ordinal beyond the count).
    """
    keys = _keys(w, h)
    if q in keys:
        key, _, desc = keys[q]
        ranked = sorted(cands, key=lambda i: (key(dets[i]), -_score(dets[i])))
        certain = len(ranked) < 2 or not _is_tie(q, key(dets[ranked[0]]), key(dets[ranked[1]]))
        return ranked, certain, desc
    if q == "middle":
        xs = [_centre(dets[i])[0] / w for i in cands]
        ys = [_centre(dets[i])[1] / h for i in cands]
        axis = 0 if (max(xs) - min(xs)) >= (max(ys) - min(ys)) else 1
        size = w if axis == 0 else h
        along = sorted(cands, key=lambda i: _centre(dets[i])[axis])
        if len(along) % 2 == 1:
            mid = len(along) // 2
            pick = along[mid]
            gaps = [abs(_centre(dets[pick])[axis] - _centre(dets[j])[axis]) / size
                    for j in along[max(0, mid - 1): mid + 2] if j != pick]
            certain = all(g >= TIE for g in gaps)
        else:
            certain = False
        ranked = sorted(cands, key=lambda i: abs(_centre(dets[i])[axis] / size - 0.5))
        if len(along) % 2 == 1:
            ranked.remove(pick)
            ranked.insert(0, pick)
        return ranked, certain, "in the middle"
    parsed = parse_ordinal_qualifier(q)
    if parsed:
        n, side = parsed
        key = keys[side][0]
        along = sorted(cands, key=lambda i: key(dets[i]))
        if n > len(along):
            return None
        pick = along[n - 1]
        neighbours = [along[j] for j in (n - 2, n) if 0 <= j < len(along)]
        certain = all(abs(key(dets[pick]) - key(dets[j])) >= TIE for j in neighbours)
        ranked = sorted(cands, key=lambda i: abs(along.index(i) - (n - 1)))
        return ranked, certain, f"{q}".replace("from", "from the")
    return None


def _split_at_gap(q: str, cands: Sequence[int], dets: Sequence[Detection], w: float, h: float
                  ) -> tuple[list[int], bool]:
    """Plural front/back/largest/smallest: the group on the wanted side of the biggest gap in the key."""
    key = _keys(w, h)[q][0]
    ranked = sorted(cands, key=lambda i: key(dets[i]))
    if len(ranked) < 2:
        return list(ranked), True
    values = [key(dets[i]) for i in ranked]
    gaps = [values[k + 1] - values[k] for k in range(len(values) - 1)]
    cut = max(range(len(gaps)), key=lambda k: gaps[k])
    big = gaps[cut] / max(abs(values[0]), 1e-9) if q in ("largest", "smallest") else gaps[cut]
    threshold = SIZE_TIE if q in ("largest", "smallest") else TIE
    if big < threshold:
        return list(ranked), False
    return ranked[: cut + 1], True


def _half(q: str, cands: Sequence[int], dets: Sequence[Detection], w: float, h: float) -> list[int]:
    """Plural left/right/top/bottom: the candidates whose centre is in that half of the image."""
    side = q[: -len("most")] if q in EXTREMES else q
    test = {"left": lambda d: _centre(d)[0] < w / 2, "right": lambda d: _centre(d)[0] > w / 2,
            "top": lambda d: _centre(d)[1] < h / 2, "bottom": lambda d: _centre(d)[1] > h / 2}[side]
    return [i for i in cands if test(dets[i])]


# ------------------------------------------------------------------------------------------
# choose
# ------------------------------------------------------------------------------------------


def _name(plan: EditPlan) -> str:
    return plan.grounding_phrase or plan.target or "object"


def _ask(plan: EditPlan, order: list[int], note: str = "") -> Clarify:
    """The numbered question when several candidates fit."""
    return Clarify(question=which_one(_name(plan), len(order), note), candidates=order)


def _image_size(image_size: tuple[int, int], detections: Sequence[Detection]) -> tuple[float, float]:
    """``(W, H)``, falling back to the boxes' extent when the size is missing or nonsense."""
    try:
        w, h = float(image_size[0]), float(image_size[1])
    except (TypeError, ValueError, IndexError):
        w = h = 0.0
    if not (math.isfinite(w) and w > 0):
        w = max([_box(d)[2] for d in detections if _valid(d)] + [1.0])
    if not (math.isfinite(h) and h > 0):
        h = max([_box(d)[3] for d in detections if _valid(d)] + [1.0])
    return w, h


def _choose_plural(plan: EditPlan, q: Optional[str], order: list[int], dets: Sequence[Detection],
                   w: float, h: float, aside: list[int]) -> Choice:
    name = _name(plan)
    if plan.count:
        ranked = _rank(q, order, dets, w, h) if q else None
        pool = ranked[0] if ranked else sorted(order, key=lambda i: -_score(dets[i]))
        picked = pool[: plan.count]
        chosen = [i for i in order if i in picked]
        rest = [i for i in pool if i not in picked]
        enough = len(order) >= plan.count
        return make_choice(chosen, "count", name, order, desc=ranked[2] if ranked else "",
                           certain=enough and (ranked[1] if ranked else True), alternatives=rest + aside,
                           asked=plan.count)
    if q in ("left", "right", "top", "bottom") or q in EXTREMES:
        chosen = _half(q, order, dets, w, h)
        if chosen:
            return make_choice(chosen, "half", name, order, desc=q,
                               alternatives=[i for i in order if i not in chosen] + aside)
        ranked = _rank(q, order, dets, w, h)
        assert ranked is not None
        return make_choice([ranked[0][0]], "guess", name, order, desc=ranked[2], certain=False,
                           alternatives=ranked[0][1:] + aside)
    if q in ("front", "back", "largest", "smallest"):
        group, certain = _split_at_gap(q, order, dets, w, h)
        chosen = [i for i in order if i in group]
        return make_choice(chosen, "group", name, order, desc=_keys(w, h)[q][2], certain=certain,
                           alternatives=[i for i in order if i not in group] + aside)
    return make_choice(list(order), "all", name, order, alternatives=aside)


def choose(plan: EditPlan, detections: list[Detection], image_size: tuple[int, int]) -> Choice | Clarify:
    """Pick the detection(s) ``plan`` refers to, or ask the user which one."""
    dets = list(detections or [])
    order = candidate_order(dets)
    name = _name(plan)
    if not order:
        return Clarify(question=f"I couldn't find {_a(name)} in the image. Could you describe it differently, "
                                f"e.g. another word for it or where it is?")
    aside = _set_aside(dets, order)
    w, h = _image_size(image_size, dets)
    q = normalize_qualifier(plan.qualifier) if plan.qualifier else None
    if plan.plural:
        return _choose_plural(plan, q, order, dets, w, h, aside)
    if len(order) == 1:
        return make_choice(order, "only" if not aside else "one_clear", name, order, alternatives=aside)
    if q is None:
        note = f"I'm not sure which one is '{plan.qualifier}'. " if plan.qualifier else ""
        return _ask(plan, order, note)
    ranked = _rank(q, order, dets, w, h)
    if ranked is None:
        return _ask(plan, order, f"There is no '{q}' here. ")
    best, certain, desc = ranked
    if q == "middle" and len(order) % 2 == 0:  # four discs have no middle one: which of the two inner ones?
        return _ask(plan, order, f"There are {len(order)} {pluralize(name)}, so none is in the middle. ")
    return make_choice([best[0]], "position", name, order, desc=desc, certain=certain,
                       alternatives=best[1:] + aside)


class WouldAsk(LocaleditError):
    """Where the chat would ask which one: its ``question`` and the candidates in their numbered
    ``order`` (detection indices; candidate k is ``order[k - 1]``)."""

    def __init__(self, question: str, order: Sequence[int]):
        super().__init__(question)
        self.question, self.order = question, list(order)


Answer = Callable[[WouldAsk, Sequence[Detection]], Optional[list[int]]]
"""``answer(asked, detections)``: the detection indices a user would answer the question with (None: no answer)."""


def chooser(plan: EditPlan, answer: Optional[Answer] = None) -> Callable[[Sequence[Detection], tuple[int, int]], Choice]:
    """``agent.conversation.pipeline.run``'s ``choose`` for ``plan``, the chat's choice (:func:`choose`) on
    every surface: ``localedit edit`` and ``localedit eval`` pick the object the chat picks.

    Where the chat would ask which one, ``answer`` answers as a user would (the eval: the candidate
    the ground truth overlaps most), recorded as the user's choice (``how="user"``); without an
    answer, :class:`WouldAsk` is raised with the chat's question.
    """
    def pick(detections: Sequence[Detection], size: tuple[int, int]) -> Choice:
        dets = list(detections)
        choice = choose(plan, dets, size)
        if isinstance(choice, Choice):
            return choice
        asked = WouldAsk(choice.question, candidate_order(dets))
        picked = answer(asked, dets) if answer is not None and dets else None
        if not picked:
            raise asked
        return make_choice(picked, "user", _name(plan), asked.order)
    return pick


def _a(name: str) -> str:
    return ("an " if re.match(r"[aeiou]", name) else "a ") + name


# ------------------------------------------------------------------------------------------
# the user's answer to a "which one?" question
# ------------------------------------------------------------------------------------------

_CANCEL_RE = re.compile(r"^(?:cancel|never ?mind|nvm|none(?: of them)?|neither(?: of them)?|no(?:ne)?|stop|forget it|"
                        r"nothing|abort|skip)\b")
_ALL_RE = re.compile(r"^(?:all|all of them|every(?: one|one)|each(?: of them| one)?|them all|all \w+|all the \w+)$")
_BOTH_RE = re.compile(r"^(?:both|both of them|both \w+|both the \w+)$")
_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                 "nine": 9, "ten": 10}
_NUMBER_PHRASE_RE = re.compile(r"^(?:(?:the )?(?:number|no|candidate|option|box|#)\s*)?(?P<n>" +
                               "|".join(_NUMBER_WORDS) + r")$")
_ORDINAL_RE = re.compile(r"^(?:the\s+)?(?P<o>" + "|".join(sorted(ORDINAL_WORDS, key=len, reverse=True)) +
                         r")(?:\s+(?:one|\w+))?$")


def resolve_answer(answer: str, detections: list[Detection], image_size: tuple[int, int]) -> list[int] | None:
    """Detection indices meant by the user's reply to a "which one?" question, or ``None``.

    Understands numbers in ``candidate_order`` ("2", "#2", "number 2", "1 and 3", "the second one"),
    "all" / "both", and positions ("the left one", "leftmost", "the biggest", "second from the right").
    ``None`` for "cancel" / "none" and for anything it cannot map to a candidate.
    """
    if not isinstance(answer, str):
        return None
    text = re.sub(r"[^\w\s#-]", " ", answer.lower())
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"^(?:i meant|i mean|i want|i'd like|let's do|do|use|pick|choose|select|take|the answer is|ok|okay|"
                  r"please|just)\s+", "", text)
    text = re.sub(r"\s+(?:please|thanks|thank you|one please)$", "", text).strip()
    order = candidate_order(detections or [])
    if not text or not order or (_CANCEL_RE.match(text) and not re.search(r"\d", text)):
        return None
    if _ALL_RE.match(text):
        return list(order)
    if _BOTH_RE.match(text):
        return list(order) if len(order) == 2 else None
    positional = re.search(r"\bfrom (?:the )?(?:left|right|top|bottom)\b|\blast\b|\bpenultimate\b", text)
    if not positional:
        numbers = [int(n) for n in re.findall(r"\d+", text)]
        if not numbers:
            m = _NUMBER_PHRASE_RE.match(text)
            if m:
                numbers = [_NUMBER_WORDS[m.group("n")]]
        if not numbers:
            m = _ORDINAL_RE.match(text)
            if m:
                numbers = [ORDINAL_WORDS[m.group("o")]]
        if numbers:
            if all(1 <= n <= len(order) for n in numbers):
                return list(dict.fromkeys(order[n - 1] for n in numbers))
            return None
    q = normalize_qualifier(text)
    if q is None:
        return None
    w, h = _image_size(image_size, detections)
    ranked = _rank(q, order, detections, w, h)
    return [ranked[0][0]] if ranked else None
