"""Pointing at the object: a click, or its typed equivalent, becomes the region the next edit changes.

    pointer = Pointer(session)
    pointer.click(85, 60)                      # select the object under the click
    pointer.click(70, 92, mode="add")          # shift-click: this belongs to it too
    pointer.click(80, 40, mode="remove")       # alt-click / refine mode: this does not
    session.send("select the cat on the left") # typed: a turn of the graph (its "point" node)
    session.send("include the tail")
    session.send("make it red")                # edits the selected region, no grounding

A click *selects*: the detections known for the image on screen (the last grounding on it, or a
fresh GroundingDINO call for the last target and "object") give the context, and the smallest box
containing the click joins SAM's point prompt and names the object (the CMU study's "user-guided
segmentation to correct or refine automatic segmentations"; SAM's interactive prompts: points
with labels plus a box). Clicks in ``add`` / ``remove`` mode put positive / negative points on the
pending selection (or on the region of the last edit) and SAM runs again with all of them.

The result is kept in the conversation state as ``selection`` (``Session.set_selection``): the
next localized edit uses its mask instead of grounding, then it is used up. While a question
about candidates is open, a click answers it instead (the candidate whose box holds the click).
Typed equivalents: "select the cat on the left", "pick the biggest one", "the one at the top
left" (a detection chosen by position, as an answer to "which one?" would be), "include the tail"
/ "exclude the collar" (the part is grounded; its box centre becomes a point). They are messages
like any other: the graph's ``understand`` node reads them (:func:`read_typed`) and its ``point``
node runs :meth:`Pointing.typed` under Stop and the per-call time limits (its ``runner``), in
chat-cli, ``Session`` and the UI alike.

:class:`Pointing` is the work on a conversation state (no session: the graph uses it); :class:`Pointer`
puts a ``Session`` around it for clicks, which the UI sends outside a turn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, Optional

from agent.conversation import referent
from agent.conversation.pipeline import Runner, direct
from agent.conversation.select import candidate_order, resolve_answer
from agent.conversation.state import current_path, current_record
from tools.images import box_containing, mask_bbox, union_box
from tools.pictures import overlay
from tools.types import Box, Cancelled, Detection, LocaleditError

Mode = Literal["select", "add", "remove"]

CONTEXT_PHRASE = "object"
"""What is grounded for context when nothing is known about the image on screen."""

_SELECT_RE = re.compile(
    r"^\s*(?:please\s+)?(?:select|pick|choose|click(?:\s+on)?|point\s+at|mark)\s+(?P<np>.+?)\s*[.!]?\s*$", re.I)
_ONE_RE = re.compile(r"^\s*(?P<np>(?:the|that|this)\s+one\b.*?)\s*[.!]?\s*$", re.I)
_REFINE_RE = re.compile(
    r"^\s*(?:please\s+)?(?:and\s+|also\s+)?(?P<verb>include|also\s+select|add\s+back|exclude|leave\s+out|deselect)"
    r"\s+(?:the\s+|its\s+|his\s+|her\s+|their\s+)?(?P<part>[\w' -]+?)"
    r"(?:\s+too|\s+as\s+well)?\s*[.!]?\s*$", re.I)
_NEGATIVE = ("exclude", "leave out", "deselect")
_ANY_ONE = {"", "one", "it", "that", "this", "that one", "this one", "the one", "object", "thing"}


def place(point: tuple[float, float], size: tuple[int, int]) -> str:
    """Where a click is on the photo, in words ("in the middle", "at the top left"), never pixel coordinates."""
    x, y = point[0] / max(1, size[0]), point[1] / max(1, size[1])
    col = "left" if x < 1 / 3 else "right" if x > 2 / 3 else ""
    row = "top" if y < 1 / 3 else "bottom" if y > 2 / 3 else ""
    if not (col or row):
        return "in the middle"
    return f"at the {' '.join(w for w in (row, col) if w)}"


@dataclass
class Pointed:
    """What pointing did: a sentence for the user and the selection now pending.

    ``picture``: the selection drawn over the photo (a path in the image store); ``answer``: the
    candidate number a click on a question's picture means (send it as the answer); ``error``:
    nothing changed and ``text`` says why.
    """

    text: str
    selection: Optional[dict] = None
    picture: Optional[str] = None
    answer: Optional[str] = None
    error: bool = False


def read_typed(text: str, state: dict) -> Optional[dict[str, Any]]:
    """What a message that only points asks, or None when ``text`` is something else (an
    instruction, an answer, a command, or no photo yet).

    ``{"kind": "point", "how": "refine", "part": "tail", "positive": bool}`` ("include the tail",
    "exclude the collar": only with a selection or an edited region to refine) or
    ``{"kind": "point", "how": "pick", "phrase": "the cat on the left"}`` ("select the cat on the
    left"; "the one at the top left" only before any edit, after one it corrects the edit).
    """
    current = current_path(state)
    if current is None:
        return None
    refine = _REFINE_RE.match(text or "")
    if refine and refinable(state, current) is not None:
        verb = re.sub(r"\s+", " ", refine.group("verb").lower())
        return {"kind": "point", "how": "refine", "part": refine.group("part").strip(),
                "positive": verb not in _NEGATIVE}
    select = _SELECT_RE.match(text or "")
    bare = _ONE_RE.match(text or "") if not current_record(state) else None  # else "the left one" corrects
    if select or bare:
        return {"kind": "point", "how": "pick", "phrase": (select or bare).group("np")}
    return None


def refinable(state: dict, current: str) -> Optional[dict]:
    """The selection to refine: the pending one on this image, else the region the edit on screen changed."""
    selected = state.get("selection")
    if selected and selected.get("base") == current:
        return selected
    record = current_record(state)
    if referent.region_of(record) and record.get("boxes"):
        label = referent.names(record)[0]
        return {"points": [], "box": list(union_box([tuple(b) for b in record["boxes"]])),
                "label": None if label == referent.UNNAMED else label}
    return None


class Pointing:
    """Selections on the image on screen of a conversation ``state``: clicks and their typed equivalents.

    Nothing here writes the state: each call returns a :class:`Pointed` whose ``selection`` the
    caller keeps (the graph's ``point`` node, or :class:`Pointer` through ``Session.set_selection``).
    ``runner`` runs the worker calls (:data:`agent.conversation.pipeline.Runner`; the graph's gives up on Stop
    and after the tool's time limit).
    """

    def __init__(self, worker: Any, store: Any, runner: Runner = direct):
        self.worker, self.store, self.runner = worker, store, runner

    def _ground(self, image: Any, phrase: str) -> list[Detection]:
        return list(self.runner("ground", self.worker.ground, image, phrase))

    # --- clicks --------------------------------------------------------------------------------

    def click(self, state: dict, x: float, y: float, mode: Mode = "select", asked: bool = False) -> Pointed:
        """A click at ``(x, y)`` (pixels of the image on screen): select, refine the selection, or
        (``asked``: a question is open) answer it."""
        current = current_path(state)
        if current is None:
            return Pointed("There is no photo yet: drop one in first.", error=True)
        image = self.store.open(current)
        if not (0 <= x < image.width and 0 <= y < image.height):
            return Pointed(f"That click ({x:.0f}, {y:.0f}) is outside the {image.width}x{image.height} photo.",
                           error=True)
        if asked:
            return self._answer(state, (x, y))
        if mode == "select":
            return self._select(state, current, (x, y))
        base = refinable(state, current)
        if base is None:
            if mode == "remove":
                return Pointed("Nothing is selected to take that out of: click the object first.", error=True)
            return self._select(state, current, (x, y))
        points = [*base["points"], [float(x), float(y), 1 if mode == "add" else 0]]
        return self._segment(current, points, base.get("box"), base.get("label"),
                             f"{'Added' if mode == 'add' else 'Took out'} the part you clicked "
                             f"{place((x, y), image.size)}")

    @staticmethod
    def _answer(state: dict, point: tuple[float, float]) -> Pointed:
        """A click on the numbered candidates: the one whose box holds it."""
        detections = [tuple(d["box"]) for d in state.get("detections") or []]
        order = (state.get("question") or {}).get("order") or candidate_order(
            [Detection(d["label"], d["score"], tuple(d["box"])) for d in state.get("detections") or []])
        hit = box_containing(point, [detections[i] for i in order]) if detections else None
        if hit is None:
            return Pointed("Click inside one of the numbered boxes (or type its number).", error=True)
        return Pointed(f"You clicked candidate {hit + 1}.", answer=str(hit + 1))

    def _select(self, state: dict, current: str, point: tuple[float, float]) -> Pointed:
        detections = self._context(state, current)
        hit = box_containing(point, [d.box for d in detections])
        box, label = (detections[hit].box, detections[hit].label) if hit is not None else (None, None)
        label = None if label in (None, CONTEXT_PHRASE) else label
        size = self.store.open(current).size
        return self._segment(current, [[float(point[0]), float(point[1]), 1]], box, label,
                             f"Selected {'the ' + label if label else 'the region'} {place(point, size)}")

    def _context(self, state: dict, current: str) -> list[Detection]:
        """Detections on the image on screen: the last grounding on it, those of the edit that made
        it (an edit keeps the geometry), else a fresh one for the object the edit made and "object"."""
        record = current_record(state) or {}
        if state.get("base") == current and state.get("detections"):
            known = state["detections"]
        elif record.get("detections"):
            known = record["detections"]
        else:
            target = referent.names(record)[0] if record.get("plan") else None
            phrase = f"{target} . {CONTEXT_PHRASE}" if target else CONTEXT_PHRASE
            return self._ground(self.store.open(current), phrase)
        return [Detection(d["label"], d["score"], tuple(d["box"])) for d in known]

    def _segment(self, current: str, points: list[list[float]], box: Optional[Box], label: Optional[str],
                 done: str) -> Pointed:
        """SAM on the points (and box): the selection it makes (not kept yet), drawn over the photo."""
        image = self.store.open(current)
        try:
            seg = self.runner("segment", self.worker.segment, image, [tuple(box)] if box is not None else [],
                              points=[(p[0], p[1]) for p in points], point_labels=[int(p[2]) for p in points])
        except Cancelled:  # Stop: the turn ends as stopped, not as a failed selection
            raise
        except ValueError as err:
            return Pointed(f"I could not select that: {err}", error=True)
        except LocaleditError as err:  # the worker is down or hung: one sentence, nothing changed
            return Pointed(str(err), error=True)
        bbox = mask_bbox(seg.mask)
        if bbox is None:
            return Pointed("SAM found nothing there; click closer to the middle of the object.", error=True)
        selection = {"base": current, "points": points, "box": list(box) if box is not None else list(bbox),
                     "label": label, "mask": self.store.put_mask(seg.mask), "note": seg.note}
        picture = self.store.put(overlay(image, mask=seg.mask, boxes=[tuple(selection["box"])]))
        area = seg.mask.mean()
        what = f"the {label}" if label else "this region"
        return Pointed(f"{done} ({area:.0%} of the photo). Now say what to do with {what}, e.g. \"make it red\"; "
                       f"Shift-click adds a part, Alt-click takes one out.", selection=selection, picture=picture)

    # --- typed equivalents --------------------------------------------------------------------

    def typed(self, state: dict, intent: dict[str, Any]) -> Pointed:
        """Carry out what :func:`read_typed` read from a message, on the image on screen."""
        current = current_path(state)
        if current is None:
            return Pointed("There is no photo yet: drop one in first.", error=True)
        if intent["how"] == "refine":
            return self._part(state, current, intent["part"], positive=bool(intent["positive"]))
        return self._pick(state, current, intent["phrase"])

    def _pick(self, state: dict, current: str, phrase: str) -> Pointed:
        """"the cat on the left", "the biggest one": a detection by name and position."""
        from agent.language.plan import extract_qualifier

        _, noun = extract_qualifier(phrase.lower())
        noun = re.sub(r"^(?:the|that|this|a|an)\s+", "", noun.strip()).strip()
        image = self.store.open(current)
        detections = self._context(state, current) if noun in _ANY_ONE else self._ground(image, noun)
        if not detections:
            return Pointed(f"I could not find {'it' if noun in _ANY_ONE else 'the ' + noun} in the photo; "
                           f"click on it instead.", error=True)
        picked = resolve_answer(phrase, detections, image.size)
        if picked is None and len(detections) == 1:
            picked = [0]
        if not picked or len(picked) != 1:
            return Pointed(f"I found {len(detections)} and could not tell which you mean; click on it.", error=True)
        d = detections[picked[0]]
        label = None if noun in _ANY_ONE and d.label == CONTEXT_PHRASE else (d.label if noun in _ANY_ONE else noun)
        cx, cy = (d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2
        return self._segment(current, [[cx, cy, 1]], d.box, label, f"Selected {'the ' + label if label else 'it'}")

    def _part(self, state: dict, current: str, part: str, positive: bool) -> Pointed:
        """"include the tail": the part's detection nearest the selection gives a point."""
        base = refinable(state, current)
        if base is None:
            return Pointed(f"Nothing is selected to {'add the ' + part + ' to' if positive else 'take it out of'}: "
                           f"select the object first.", error=True)
        image = self.store.open(current)
        found = self._ground(image, part)
        if not found:
            return Pointed(f"I could not find the {part} in the photo; "
                           f"{'Shift' if positive else 'Alt'}-click on it instead.", error=True)
        x0, y0, x1, y1 = base["box"]
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        nearest = min(found, key=lambda d: ((d.box[0] + d.box[2]) / 2 - cx) ** 2 + ((d.box[1] + d.box[3]) / 2 - cy) ** 2)
        px, py = (nearest.box[0] + nearest.box[2]) / 2, (nearest.box[1] + nearest.box[3]) / 2
        box = base.get("box") if not positive else list(union_box([tuple(base["box"]), nearest.box]))
        points = [*base["points"], [px, py, 1 if positive else 0]]
        return self._segment(current, points, box, base.get("label"),
                             f"{'Added' if positive else 'Took out'} the {part}")


class Pointer:
    """Pointing for one ``agent.runtime.session.Session``: clicks (kept with ``Session.set_selection``, outside a
    turn, as the UI sends them) and typed selections (sent as a message: a turn of the graph)."""

    def __init__(self, session: Any):
        self.session = session
        self.core = Pointing(session.conversations.worker, session.conversations.store)

    def click(self, x: float, y: float, mode: Mode = "select") -> Pointed:
        """A click at ``(x, y)`` (pixels of the image on screen): select, or refine the selection."""
        state = self.session.state()
        pointed = self.core.click(state, x, y, mode, asked=self.session.pending() is not None)
        return self._keep(pointed)

    def clear(self) -> Pointed:
        """Forget the pending selection: the next edit grounds its target again."""
        try:
            self.session.set_selection(None)
        except LocaleditError as err:
            return Pointed(str(err), error=True)
        return Pointed("Selection cleared: I will find the object from your words again.")

    def _keep(self, pointed: Pointed) -> Pointed:
        """Make ``pointed``'s selection the pending one; refused (a turn running, a question open): nothing changed."""
        if pointed.error or pointed.selection is None:
            return pointed
        try:
            self.session.set_selection(pointed.selection)
        except LocaleditError as err:
            return Pointed(str(err), error=True)
        return pointed

    def typed(self, text: str) -> Optional[Pointed]:
        """A message that only points ("select the cat on the left", "include the tail"), sent as a
        turn (the graph's ``point`` node); None when ``text`` is something else or a question is open
        (then it is a message like any other: send it)."""
        if self.session.pending() is not None or read_typed(text, self.session.state()) is None:
            return None
        reply = self.session.send(text)
        return Pointed(reply.text, selection=None if reply.error else self.session.selection(),
                       picture=reply.images.get("selection"), error=reply.error)


__all__ = ["Pointer", "Pointing", "Pointed", "Mode", "read_typed", "refinable"]
