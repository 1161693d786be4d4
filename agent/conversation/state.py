"""The conversation state LangGraph keeps per chat thread (persisted by the SQLite checkpointer).

Everything here is plain JSON-able data: images are paths into the ``ImageStore``, plans are
``EditPlan.model_dump()`` dicts. Fields are overwritten by each node's update except
``messages``, which accumulates.

Image versions form a tree kept in one append-only list: each version names the version it was
made from (``parent``) and the one redo goes to (``child``, the branch last shown). Undo walks to
the parent, redo to the child, "go to version k" to any of them; an edit made after an undo starts
a new branch and keeps the old one. Each version made by an edit carries its ``EditRecord``, so
undo / redo / show mask / "try again" / "stronger" / "the other one" act on the version on screen.

What crosses node boundaries is typed here (``DetectionData``, ``ChoiceData``, ``Question``,
``Attempt``, ``EditRecord``, ``ReplyData``): TypedDicts, so the checkpointed JSON is the same plain
dicts as before, and a thread saved by an older version still reads (every field is optional).
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Optional

from typing_extensions import TypedDict  # pydantic reads it on Python 3.11 (the tests check the state with it)


class DetectionData(TypedDict):
    """One box grounding found, as the state keeps it (``tools.types.Detection.to_dict()``)."""

    label: str
    score: float
    box: list[float]  # x0 y0 x1 y1 in pixels of the image grounded


class ChoiceData(TypedDict, total=False):
    """Which detections the turn edits and how they were picked (``agent.conversation.select.Choice``'s
    ``model_dump()``; ``how`` / ``desc`` / ``total`` / ``numbers`` / ``asked`` are the fields of
    ``agent.conversation.replies.Where``), as the state keeps it."""

    indices: list[int]  # detection indices edited
    reason: str  # "the leftmost of the 3 cats"
    certain: bool  # False: a near tie, the judge may try ``alternatives``
    alternatives: list[int]  # detection indices to try next, in order
    how: str  # "only", "position", "user", "referent", "selected", "other", ...
    desc: str
    total: int  # how many candidates there were
    numbers: list[int]  # the chosen candidates' numbers as users see them (1-based)
    asked: Optional[int]
    mask_note: Optional[str]  # what the segment node said about the mask ("add: the area around the cat")
    selected: bool  # the region the user selected (agent.conversation.referent.reuse)


class EditRecord(TypedDict, total=False):
    """How one version was made (stored with the version it made)."""

    instruction: str
    plan: dict[str, Any]  # EditPlan.model_dump()
    base: str  # path of the image it was made from
    base_index: int  # that image's place in ``versions`` (the new version's parent)
    detections: list[DetectionData]  # every box grounding found
    numbering: list[int]  # candidate numbers as users see them: detection index of candidate 1, 2, ...
    chosen: list[int]  # detection indices edited
    alternatives: list[int]  # detection indices "the other one" tries, in order
    boxes: list[list[float]]  # the chosen boxes, x0 y0 x1 y1 in pixels
    mask: Optional[str]  # the object mask the editor was given (SAM, or the grown box for "add")
    region: Optional[str]  # the pixels the edit could change (mask dilated); None: the whole image
    where: dict[str, Any]  # agent.conversation.replies.Where fields: how the objects were picked
    editor: str
    seed: int
    strength: Optional[float]  # None: an InstructPix2Pix editor (it reads no strength)
    guidance_scale: Optional[float]
    image_guidance_scale: Optional[float]
    scores: Optional[dict[str, Any]]
    certain: bool
    selected: bool  # True only in a pending selection seen as a record (agent.conversation.referent.of_selection)
    names: list[str]  # every name the region has had, oldest first ("cat", "fox"): agent.conversation.referent.chain


class Version(TypedDict, total=False):
    """One image in the history."""

    path: str
    note: str  # "the photo you uploaded" or what the edit was
    parent: Optional[int]  # the version it was made from (None: the first photo)
    child: Optional[int]  # where redo goes from here
    caption: Optional[dict[str, Any]]  # {"text": str | None, "source": "blip2" | "plan" | "failed", "error"?}
    record: Optional[EditRecord]  # None for an uploaded photo


def current_path(state: "State") -> Optional[str]:
    """Path of the image the conversation is on now (``versions[cursor]``), or None before an upload."""
    versions = state.get("versions") or []
    return versions[state.get("cursor", len(versions) - 1)]["path"] if versions else None


def current_record(state: "State") -> Optional[EditRecord]:
    """The edit record of the version on screen (None for an uploaded photo or before any)."""
    versions = state.get("versions") or []
    if not versions:
        return None
    return versions[state.get("cursor", len(versions) - 1)].get("record")


def parent_of(versions: list[Version], i: int) -> Optional[int]:
    """The version ``i`` was made from (a thread saved before versions had parents: the previous one)."""
    return versions[i]["parent"] if "parent" in versions[i] else (i - 1 if i > 0 else None)


def child_of(versions: list[Version], i: int) -> Optional[int]:
    """Where redo goes from version ``i`` (None: nowhere)."""
    if "child" in versions[i]:
        return versions[i]["child"]
    return i + 1 if i + 1 < len(versions) and "parent" not in versions[i + 1] else None


def walk(versions: list[Version], start: int, steps: int, forward: bool) -> int:
    """The version ``steps`` undos (or redos) away from ``start``, stopping at the ends."""
    at = start
    for _ in range(steps):
        nxt = child_of(versions, at) if forward else parent_of(versions, at)
        if nxt is None:
            break
        at = nxt
    return at


def show(versions: list[Version], index: int) -> list[Version]:
    """A copy of ``versions`` where redo from each ancestor of ``index`` leads back to ``index``."""
    out = [dict(v) for v in versions]
    at = index
    while True:
        parent = parent_of(out, at)
        if parent is None:
            return out  # type: ignore[return-value]
        out[parent]["child"] = at
        at = parent


class Attempt(TypedDict, total=False):
    """One try of the edit: what the judge queued, then what it got.

    Queued (``agent.conversation.judge.attempt_queue``): ``editor``, ``seed``, ``guidance_scale``,
    ``image_guidance_scale``, ``strength``, ``candidate`` (a detection index to edit instead, or
    None), ``why`` ("first try", "stronger edit", ...), ``knob`` (what moved, in words). After the
    edit: ``masked`` (the editor had a region), ``indices`` (the detections edited), ``seconds``;
    after scoring: ``scores`` (``Scores.to_dict()``); after the verdict: ``problems`` (sentences),
    ``failed`` (their kinds), ``combined`` (the number the best attempt is kept by). The graph
    adds store paths (``path``, ``mask``, ``region``).
    """

    editor: str
    seed: int
    guidance_scale: Optional[float]
    image_guidance_scale: Optional[float]
    strength: Optional[float]
    candidate: Optional[int]
    why: str
    knob: Optional[str]
    masked: bool
    indices: Optional[list[int]]
    seconds: float
    scores: Optional[dict[str, Any]]
    problems: list[str]
    failed: list[str]
    combined: float
    error: str  # the edit failed (an out-of-memory error, say): recorded, never kept
    baseline: bool  # plain InstructPix2Pix on the whole image (the judge's fallback)
    path: str  # the edited image (a staged store path until it is kept)
    mask: Optional[str]  # the object mask it was given
    region: Optional[str]  # the pixels it could change (None: the whole image)
    reused: str  # it ran already this turn (the baseline, or in a batched call): how (its image is reused)


class Question(TypedDict, total=False):
    """A clarifying question the turn waits on (the ``clarify`` node's interrupt)."""

    text: str  # what is asked now (a repeat after a non-answer says so)
    asked: str  # what was asked first
    kind: str  # "candidates" (which one?) or "referent" (which object is "it"?)
    order: list[int]  # candidates: detection indices in the order their numbers show
    image: Optional[str]  # candidates: the numbered overlay (a store path)
    original: str  # referent: the message the question is about


class ReplyData(TypedDict, total=False):
    """What a turn answers, as the state keeps it (``agent.runtime.session.Reply`` is made from it)."""

    text: str
    details: str  # how the edit went, in words (which editor, how many attempts, why this one)
    images: dict[str, str]  # "edited", "before_after", "mask", "selection", "current", ...: store paths
    scores: Optional[dict[str, Any]]  # the kept attempt's
    attempts: list[dict[str, Any]]  # every attempt's editor, knobs, why, problems, combined
    baseline: Optional[dict[str, Any]]  # agent.conversation.judge.baseline_report
    error: bool
    cancelled: bool


class State(TypedDict, total=False):
    """A chat thread's state; what a node returns is a partial ``State`` (its update)."""

    # --- the conversation (kept across turns) -----------------------------------------------
    messages: Annotated[list[dict[str, Any]], operator.add]  # {"role", "text", "image"}
    versions: list[Version]  # the image history (a tree, see above); versions[cursor] is on screen
    cursor: int
    caption: Optional[dict[str, Any]]  # {"path", "text", "source"}: how the current image was described this turn
    # a region the user pointed at (a click, or "select the cat on the left"; agent.conversation.pointing), the
    # referent of the next localized edit instead of grounding while ``base`` is the image on screen:
    # {"base", "points": [[x, y, label]], "box", "label", "mask", "note"}
    selection: Optional[dict[str, Any]]

    # --- this turn -----------------------------------------------------------------------
    text: str  # the user's message
    upload: Optional[str]  # path of an image uploaded with it
    goto: Optional[int]  # "go to version k" from the UI's version strip (1-based)
    understood: Optional[dict[str, Any]]  # {"result": {...}, "path": "fast" | "offline" | "llm-tool" ..., "note"}
    plan: Optional[dict[str, Any]]  # the EditPlan being carried out
    base: Optional[str]  # path of the image being edited
    base_index: Optional[int]  # its place in ``versions``: the new version's parent
    overrides: dict[str, Any]  # {"first": the first attempt (editor, seed, knobs, why, knob), "indices"?}: from "try again" / "stronger" / "the other one"
    detections: list[DetectionData]
    numbering: list[int]  # candidate k (1-based) is detections[numbering[k - 1]]
    choice: Optional[ChoiceData]
    question: Optional[Question]  # a pending clarifying question
    rerun: bool  # the answer to a question was a new message: start the turn again with it
    dropped: Optional[str]  # the question a command ("undo") answered instead of an answer: said in the reply
    mask: Optional[str]  # path of the object mask being used
    mask_for: Optional[list[int]]  # the detection indices ``mask`` covers
    attempts: list[Attempt]  # every edit tried this turn, with its scores and verdict
    queue: list[Attempt]  # the attempts still to try (the judge's queue)
    turn_region: Optional[dict[str, Any]]  # {"boxes", "mask"}: the one region every attempt is scored on
    baseline: Optional[dict[str, Any]]  # plain InstructPix2Pix this turn, once run: {"path", "scores", "how"}
    # attempts run on speculation in an earlier attempt's batched call: {"key", "mask", "path", "region", "how"}
    ahead: list[dict[str, Any]]
    report: list[dict[str, Any]]  # the stages of this turn: {"stage", "ran", "why"?, "cache"?, "seconds"?}
    reply: Optional[ReplyData]
