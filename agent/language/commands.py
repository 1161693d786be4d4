"""Commands recognised before the LLM, the captioner or the worker is asked anything (the fast path).

``recognise(text)`` returns the understood command as a dict (``Command.model_dump()`` form, plus
``{"kind": "command", "name": "goto", "version": k}`` for "go to version k"), a ``chat`` dict for an
unknown slash command, or None when the message needs understanding. It knows the slash commands
(``/undo [n]``, ``/redo [n]``, ``/mask``, ``/cancel``, ``/retry``, ``/stronger``, ``/weaker``,
``/other``, ``/version N``) and every whole-message command of the offline parser ("undo", "go back
two steps", "show me the mask", "try again", "the other one", "never mind", ...): regular
expressions, microseconds, so "undo" never waits for a slow or hung LLM.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from agent.language.parser import ParseContext, read
from agent.language.plan import Command

SLASH = {"undo": "undo", "redo": "redo", "mask": "show_mask", "cancel": "cancel", "retry": "retry",
         "again": "retry", "stronger": "stronger", "weaker": "weaker", "other": "other_candidate"}
SLASH_HELP = "/undo [n], /redo [n], /mask, /retry, /stronger, /weaker, /other, /version N, /cancel"

MAX_VERSION = 9999
"""The highest version number taken as one ("go to version" reads four digits; a checkpoint holds
64-bit integers): a number past it is answered at once."""

_SLASH_RE = re.compile(r"^/(?P<word>[a-z]+)(?:\s+(?P<arg>\S+))?\s*$", re.I)
_GOTO_RE = re.compile(r"^(?:please\s+)?(?:(?:go|jump|switch|get|take me)\s+(?:back\s+)?to|back\s+to|show(?:\s+me)?|"
                      r"open|use)?\s*(?:the\s+)?version\s+(?:number\s+|no\.?\s*|#)?(?P<n>\d{1,4})\W*$", re.I)


def recognise(text: str) -> Optional[dict[str, Any]]:
    """The command ``text`` is, as the graph's ``understood["result"]``; None: not a command."""
    text = (text or "").strip()
    if not text or len(text) > 200:
        return None
    m = _SLASH_RE.match(text)
    if m:
        word, arg = m.group("word").lower(), m.group("arg")
        if word in ("version", "goto", "v"):
            return goto(int(arg)) if arg and arg.isdecimal() else {
                "kind": "chat", "text": f"Give the version's number, e.g. {text.split()[0]} 2."}
        if word in SLASH and (arg is None or (arg.isdecimal() and word in ("undo", "redo"))):
            steps = max(1, min(int(arg), 1000)) if arg else 1
            return Command(name=SLASH[word], steps=steps).model_dump()  # type: ignore[arg-type]
        return {"kind": "chat", "text": f"I don't know the command {text.split()[0]}. Commands: {SLASH_HELP}."}
    if text.startswith("/"):
        return {"kind": "chat", "text": f"I don't know that command. Commands: {SLASH_HELP}."}
    m = _GOTO_RE.match(text)
    if m:
        return goto(int(m.group("n")))
    reading = read(text, ParseContext())  # "go back and make it white": a command and an edit, not the fast path
    return reading.result.model_dump() if isinstance(reading.result, Command) and not reading.rest else None


def goto(number: int) -> dict[str, Any]:
    """"Go to version ``number``" as understood: the command, or the answer for a number past
    ``MAX_VERSION`` (no conversation has that many versions)."""
    if abs(number) > MAX_VERSION:
        return {"kind": "chat", "text": f"There is no version {number}."}
    return {"kind": "command", "name": "goto", "version": number}
