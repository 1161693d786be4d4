"""The conversation state LangGraph keeps per chat thread (persisted by the SQLite checkpointer).

Everything here is plain JSON-able data: images are paths into the ``ImageStore``, plans are
``EditPlan.model_dump()`` dicts. Fields are overwritten by each node's update except
``messages``, which accumulates.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Optional, TypedDict


def current_path(state: "State") -> Optional[str]:
    """Path of the image the conversation is on now (``versions[cursor]``), or None before an upload."""
    versions = state.get("versions") or []
    return versions[state.get("cursor", len(versions) - 1)]["path"] if versions else None


class Version(TypedDict):
    """One image in the undo/redo history."""

    path: str
    note: str  # "uploaded" or what the edit was


class State(TypedDict, total=False):
    # --- the conversation (kept across turns) -----------------------------------------------
    messages: Annotated[list[dict[str, Any]], operator.add]  # {"role", "text", "image"}
    versions: list[Version]  # the image history; versions[cursor] is the current image
    cursor: int
    caption: Optional[dict[str, Any]]  # {"path", "text"}: BLIP-2 caption of the current image
    last_plan: Optional[dict[str, Any]]  # the last edit's plan: "now make it red" resolves to it
    last_edit: Optional[dict[str, Any]]  # {"base", "detections", "chosen", "alternatives", "mask", "seed", "strength"}
    # a region the user pointed at (a click, or "select the cat on the left"; agent.pointing), used by the
    # next localized edit instead of grounding while ``base`` is the current image:
    # {"base", "points": [[x, y, label]], "box", "label", "mask", "note"}
    selection: Optional[dict[str, Any]]

    # --- this turn -----------------------------------------------------------------------
    text: str  # the user's message
    upload: Optional[str]  # path of an image uploaded with it
    understood: Optional[dict[str, Any]]  # {"result": {...}, "path": "offline" | "llm-tool" ..., "note"}
    plan: Optional[dict[str, Any]]  # the EditPlan being carried out
    base: Optional[str]  # path of the image being edited
    base_index: Optional[int]  # its place in ``versions``: the new version goes right after it
    overrides: dict[str, Any]  # from "try again" / "stronger" / "the other one"
    detections: list[dict[str, Any]]  # {"label", "score", "box"}
    choice: Optional[dict[str, Any]]  # {"indices", "reason", "certain", "alternatives"}
    question: Optional[dict[str, Any]]  # a pending clarifying question
    mask: Optional[str]  # path of the mask being used
    attempts: list[dict[str, Any]]  # every edit tried this turn, with its scores
    queue: list[dict[str, Any]]  # the attempts still to try
    reply: Optional[dict[str, Any]]  # {"text", "images": {name: path}, "scores", "error"}
