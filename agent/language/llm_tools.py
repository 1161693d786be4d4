"""The LLM's tools and how its answers are read: the tool schemas (pydantic models, one per tool) and
the parsing of a model's answer (a native tool call, or JSON in the text: bare, fenced, wrapped in
prose, ``{"name": ..., "arguments": ...}``, ``{"tool": ..., "args": ...}`` or a bare plan) into the
types of ``agent.language.plan``. Used by ``agent.language.llm.Understander``; see its module docstring for the turn.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.language.llm_client import REDACT
from agent.language.plan import Chat, Clarify, Command, EditPlan, Understanding, UnderstandingAdapter, clean_text

log = logging.getLogger("agent.language.llm")
log.addFilter(REDACT)

MAX_ANSWER_TEXT = 20_000
"""Characters of a model's answer searched for JSON."""
MAX_CALLS = 4
"""Tool calls read from one answer (the first is carried out, the rest reported)."""


# ------------------------------------------------------------------------------------------
# the tools (their pydantic models are the tool schemas)
# ------------------------------------------------------------------------------------------

_ACTION_SYNONYMS = {
    "change": "replace", "turn": "replace", "transform": "replace", "swap": "replace", "convert": "replace",
    "recolor": "attribute", "recolour": "attribute", "color": "attribute", "colour": "attribute",
    "modify": "attribute", "make": "attribute", "insert": "add", "put": "add",
    "delete": "remove", "erase": "remove", "remove_object": "remove",
}


class _Tool(BaseModel):
    model_config = ConfigDict(extra="ignore")

    @field_validator("plural", "revise_last", mode="before", check_fields=False)
    @classmethod
    def _null_false(cls, v: Any) -> Any:
        """Small models send null for 'no'; the flags are plain booleans."""
        return False if v is None else v


class EditRegion(_Tool):
    """Change, recolour, add to or remove one object (or a group of objects) in the photo."""

    model_config = ConfigDict(title="edit_region", extra="ignore")

    action: Literal["replace", "attribute", "add", "remove"] = Field(
        description="replace: turn the object into something else; attribute: change its colour, material, "
                    "texture, size or state; add: put something new in; remove: take the object out.")
    target: Optional[str] = Field(None, description="The object to change, a short noun phrase without "
                                                    "position words: 'cat'. For add: what it goes on, or null.")
    qualifier: Optional[str] = Field(None, description="Which one: left, right, top, bottom, middle, leftmost, "
                                     "rightmost, topmost, bottommost, top left, top right, bottom left, bottom "
                                     "right, corner, '2nd from left', largest, smallest, front, back; or null.")
    attribute: Optional[str] = Field(None, description="Identifying adjective: 'white' in 'the white cat'.")
    plural: Optional[bool] = Field(False, description="True for 'all the cats', 'the dogs', 'both cars'.")
    count: Optional[int] = Field(None, description="How many, when said: 'both' -> 2.")
    new_value: Optional[str] = Field(None, description="What the target becomes or gets: 'fox', 'red', 'a hat'.")
    source_caption: Optional[str] = Field(None, description="Short caption of the photo before the edit.")
    target_caption: Optional[str] = Field(None, description="The same caption after the edit.")
    instruction: Optional[str] = Field(None, description="The edit as a short command: 'turn the cat into a fox'.")
    region_hint: Optional[str] = Field(None, description="For add: where it goes, 'on the table'.")
    revise_last: Optional[bool] = Field(False, description="True when the message corrects the previous edit "
                                        "('no, the left one', 'no, I wanted a wolf'): this replaces the last "
                                        "edit, made again from the image before it.")
    undo_first: Optional[int] = Field(0, description="Undo this many edits first, then make this edit: 1 for "
                                      "'undo that and make the bus green instead'; else 0.")
    bbox_2d: Optional[list[float]] = Field(None, description="Only when you can see the photo: the box of the "
                                           "one object to change, [x1, y1, x2, y2]; else null.")

    @field_validator("bbox_2d", mode="before")
    @classmethod
    def _box(cls, v: Any) -> Any:
        """A box that is not four numbers is dropped, not an error (the plan stands without it)."""
        ok = isinstance(v, (list, tuple)) and len(v) == 4 and all(isinstance(x, (int, float)) for x in v)
        return list(v) if ok else None

    @field_validator("action", mode="before")
    @classmethod
    def _synonym(cls, v: Any) -> Any:
        if isinstance(v, str):
            word = v.strip().lower()
            return _ACTION_SYNONYMS.get(word, word)
        return v


class EditGlobal(_Tool):
    """Change the whole photo: style, weather, season, time of day, lighting."""

    model_config = ConfigDict(title="edit_global", extra="ignore")

    instruction: str = Field(min_length=1, description="The edit as a short command: 'make it winter'.")
    source_caption: Optional[str] = Field(None, description="Short caption of the photo before the edit.")
    target_caption: Optional[str] = Field(None, description="The same caption after the edit.")
    revise_last: Optional[bool] = Field(False, description="True when the message corrects the previous edit "
                                        "('no, make it autumn instead'): this replaces the last edit.")
    undo_first: Optional[int] = Field(0, description="Undo this many edits first ('go back and make it winter': 1).")


class AskUser(_Tool):
    """Ask the user one short question when the request is unclear."""

    model_config = ConfigDict(title="ask_user", extra="ignore")

    question: str = Field(min_length=1, description="The question.")


class Undo(_Tool):
    """Go back to an earlier version of the photo."""

    model_config = ConfigDict(title="undo", extra="ignore")

    steps: Optional[int] = Field(1, ge=1, le=1000, description="How many edits to undo.")


class Redo(_Tool):
    """Go forward again after an undo."""

    model_config = ConfigDict(title="redo", extra="ignore")

    steps: Optional[int] = Field(1, ge=1, le=1000, description="How many edits to redo.")


class ShowMask(_Tool):
    """Show which region the last edit changed."""

    model_config = ConfigDict(title="show_mask", extra="ignore")


class Reply(_Tool):
    """Answer in words when the message is not an edit (greetings, help, refusals)."""

    model_config = ConfigDict(title="reply", extra="ignore")

    text: str = Field(min_length=1, description="The answer, one or two sentences.")


TOOLS: list[type[BaseModel]] = [EditRegion, EditGlobal, AskUser, Undo, Redo, ShowMask, Reply]
"""What ``llm.bind_tools`` gets; each tool's name is its model's title."""

TOOL_BY_NAME: dict[str, type[BaseModel]] = {t.model_config["title"]: t for t in TOOLS}


class InvalidAnswer(ValueError):
    """The model's answer is not a usable tool call; the message is sent back in the repair round."""


def _validation_summary(err: ValidationError) -> str:
    """A one-line summary of a pydantic error: ``target: Field required; ...``."""
    parts = []
    for e in err.errors()[:3]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "__root__")
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def tool_to_understanding(name: str, args: Any, user_text: str = "") -> Understanding:
    """Validate one tool call's arguments and map it onto an ``Understanding``.

    Raises ``InvalidAnswer`` for an unknown tool or bad arguments. An edit with no instruction
    gets the user's message as its instruction.
    """
    key = re.sub(r"[\s-]+", "_", str(name or "").strip().lower()).rsplit(".", 1)[-1]
    tool = TOOL_BY_NAME.get(key)
    if tool is None:
        raise InvalidAnswer(f"unknown tool {str(name)[:40]!r}; use one of: {', '.join(TOOL_BY_NAME)}")
    if args is None:
        args = {}
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as e:
            raise InvalidAnswer(f"the arguments of {key} are not valid JSON ({e.msg})") from None
    if not isinstance(args, dict):
        raise InvalidAnswer(f"the arguments of {key} must be a JSON object")
    try:
        call = tool.model_validate(args)
        instruction = clean_text(user_text) or ""
        if isinstance(call, EditRegion):
            fields = call.model_dump()
            fields["box"] = fields.pop("bbox_2d")  # as the model wrote it; ``agent.language.vision.seen`` maps it to pixels
            fields["instruction"] = fields["instruction"] or instruction
            fields["undo_first"] = max(0, fields.get("undo_first") or 0)
            return EditPlan.model_validate(fields)
        if isinstance(call, EditGlobal):
            return EditPlan(action="global", target=None, instruction=call.instruction,
                            source_caption=call.source_caption, target_caption=call.target_caption,
                            revise_last=bool(call.revise_last), undo_first=max(0, call.undo_first or 0))
        if isinstance(call, AskUser):
            return Clarify(question=call.question)
        if isinstance(call, (Undo, Redo)):
            return Command(name=key, steps=call.steps or 1)
        if isinstance(call, ShowMask):
            return Command(name="show_mask")
        return Chat(text=call.text)
    except ValidationError as e:
        raise InvalidAnswer(f"bad arguments for {key}: {_validation_summary(e)}") from None


# ------------------------------------------------------------------------------------------
# reading JSON out of a text answer
# ------------------------------------------------------------------------------------------

_FENCE_RE = re.compile(r"```[ \t]*(?:json|javascript|js|tool_call)?[ \t]*\n?(.*?)```", re.S | re.I)
_THINK_RE = re.compile(r"<think>.*?</think>", re.S | re.I)
_TOOL_TAG_RE = re.compile(r"</?tool_call>|<\|python_tag\|>", re.I)
_NAME_KEYS = ("name", "tool", "tool_name", "function", "function_name", "action_name")
_ARGS_KEYS = ("arguments", "args", "parameters", "params", "input", "tool_input")


def json_candidates(text: str) -> list[Any]:
    """Every JSON value found in a text answer, in order: fenced blocks, the whole text, then each
    ``{...}`` / ``[...]`` that parses."""
    text = _TOOL_TAG_RE.sub(" ", _THINK_RE.sub(" ", text[:MAX_ANSWER_TEXT]))
    found: list[Any] = []
    chunks = [m.group(1) for m in _FENCE_RE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for chunk in chunks:
        chunk = chunk.strip()
        try:
            found.append(json.loads(chunk))
            continue
        except ValueError:
            pass
        i = 0
        while True:
            starts = [p for p in (chunk.find("{", i), chunk.find("[", i)) if p >= 0]
            if not starts:
                break
            start = min(starts)
            try:
                value, end = decoder.raw_decode(chunk, start)
            except ValueError:
                i = start + 1
                continue
            if isinstance(value, (dict, list)):
                found.append(value)
            i = end
    return found


def payload_to_understandings(payload: Any, user_text: str = "") -> list[Understanding]:
    """Every tool call of a JSON answer, in order (a list of calls, ``{"tool_calls": [...]}``, or one
    call / plan as in ``payload_to_understanding``). The first must be valid (``InvalidAnswer``);
    invalid later ones are dropped."""
    if isinstance(payload, dict) and isinstance(payload.get("tool_calls"), list) and payload["tool_calls"]:
        payload = payload["tool_calls"]
    if not isinstance(payload, list):
        return [payload_to_understanding(payload, user_text)]
    if not payload:
        raise InvalidAnswer("the JSON answer is an empty list")
    found = [payload_to_understanding(payload[0], user_text)]
    for item in payload[1:MAX_CALLS]:
        try:
            found.append(payload_to_understanding(item, user_text))
        except InvalidAnswer as e:
            log.info("dropped a further tool call of the answer: %s", e)
    return found


def payload_to_understanding(payload: Any, user_text: str = "") -> Understanding:
    """Map a JSON answer onto an ``Understanding``: a tool-call wrapper or a bare plan.

    Accepted: ``{"name": T, "arguments": {...}}`` (also ``tool``/``args``, ``function``/``parameters``,
    OpenAI's ``{"type": "function", "function": {...}}``, ``{"tool_calls": [...]}``, a list of
    those, ``{"name": T, <the fields>}``), a bare ``edit_region`` plan (``{"action": ...}``), or an
    ``Understanding`` dumped with its ``kind``.
    """
    if isinstance(payload, list):
        if not payload:
            raise InvalidAnswer("the JSON answer is an empty list")
        return payload_to_understanding(payload[0], user_text)
    if not isinstance(payload, dict):
        raise InvalidAnswer("the JSON answer is not an object")
    if isinstance(payload.get("tool_calls"), list) and payload["tool_calls"]:
        return payload_to_understanding(payload["tool_calls"][0], user_text)
    if isinstance(payload.get("function"), dict):  # OpenAI's wire format
        fn = payload["function"]
        return tool_to_understanding(fn.get("name"), fn.get("arguments"), user_text)
    if payload.get("kind") in ("edit", "command", "clarify", "chat"):
        try:
            return UnderstandingAdapter.validate_python(payload)
        except ValidationError as e:
            raise InvalidAnswer(f"bad {payload['kind']}: {_validation_summary(e)}") from None
    name = next((payload[k] for k in _NAME_KEYS if isinstance(payload.get(k), str)), None)
    if name is not None:
        args_key = next((k for k in _ARGS_KEYS if k in payload), None)
        if args_key is not None:
            args = payload[args_key]
        else:  # the fields next to the name
            args = {k: v for k, v in payload.items() if k not in _NAME_KEYS and k != "type"}
        return tool_to_understanding(name, args, user_text)
    if "action" in payload:
        if str(payload.get("action")).strip().lower() == "global":
            return tool_to_understanding("edit_global", payload, user_text)
        return tool_to_understanding("edit_region", payload, user_text)
    if "question" in payload:
        return tool_to_understanding("ask_user", payload, user_text)
    raise InvalidAnswer("the JSON answer names no tool; expected {\"name\": ..., \"arguments\": {...}}")


# ------------------------------------------------------------------------------------------
# the understander
# ------------------------------------------------------------------------------------------
