"""The LLM path of the agent's "understand" step: one user message -> an ``Understood``.

``make_llm`` (``agent.language.llm_client``) builds the chat model from the settings, or None when no LLM is
configured. The ``Understander`` asks it to call one of ``TOOLS``; each call maps onto the types of
``agent.language.plan``:

=================  ===================================================
tool               result
=================  ===================================================
``edit_region``    ``EditPlan`` (replace / attribute / add / remove)
``edit_global``    ``EditPlan(action="global", target=None)``
``ask_user``       ``Clarify``
``undo``/``redo``  ``Command(name="undo" | "redo", steps)``
``show_mask``      ``Command(name="show_mask")``
``reply``          ``Chat``
=================  ===================================================

A turn (``Understander.understand``, which never raises):

1. the built-in parser reads the message first (``agent.language.parser.read``); a command (undo, show mask,
   try again, ...), a greeting or a refusal is answered at once: it never waits for the LLM;
2. the LLM is asked with the tools (``agent.language.llm_client.ModelCaller``: JSON-in-text for servers that
   reject tools, retries, all within ``LOCALEDIT_LLM_TURN_BUDGET``). Small local models rarely call
   tools properly, so a JSON answer in the text is accepted too (bare, fenced, wrapped in prose,
   ``{"name": ..., "arguments": ...}``, ``{"tool": ..., "args": ...}`` or a bare plan). Small models
   also copy the prompt's examples, so a plan's target and new value must be words the conversation
   used (any words for a message in another language), and its qualifier must be in the vocabulary;
3. an invalid answer gets one repair round (the error is sent back), unless the parser already
   has a clear reading or the budget is nearly spent;
4. the parser checks the answer (``agent.language.arbiter``): a chat reply to a clear edit, or a plan that
   disagrees with the parser's and is no better grounded, gives way to the parser's reading;
5. several tool calls in one answer: the first is carried out, the rest are reported in the note
   (and kept in ``Understood.rest``).

Every text from the model is stripped of control and escape characters and capped in length
(``agent.language.plan.clean_text``) before it enters the conversation; the note too.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional, Sequence, Union

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from agent.language import vision
from agent.language.arbiter import STOPWORDS, arbitrate, same_word, well_grounded, words
from agent.language.llm_client import (
    PLACEHOLDER_KEY, REDACT, BudgetSpent, ModelCaller, describe_error, make_llm, redact,
)
from agent.language.llm_tools import (
    MAX_CALLS, TOOLS, InvalidAnswer, json_candidates, payload_to_understanding,
    payload_to_understandings, tool_to_understanding,
)
from agent.language.parser import EXAMPLES, Reading, asks_removal, complete_plan, foreign_share, named_objects
from agent.language.plan import (
    ORDINAL_RE, QUALIFIERS, Chat, Clarify, Command, EditPlan, Understanding, clean_text,
    strip_controls,
)
from agent.language.prompts import load_prompt, render_prompt
from tools.types import MAX_TEXT

log = logging.getLogger(__name__)
log.addFilter(REDACT)

__all__ = ["TOOLS", "Understander", "Understood", "make_llm", "PLACEHOLDER_KEY", "describe_error", "redact",
           "json_candidates", "payload_to_understanding", "tool_to_understanding"]

MAX_HISTORY = 8
"""Earlier messages (user and assistant) sent with each request."""
MAX_HISTORY_TEXT = 500
"""Characters kept of each earlier message."""
MAX_NOTE = 400
"""Characters of the note that says how a message was understood."""
MIN_REPAIR_SECONDS = 2.0
"""A repair round is asked only with at least this much of the turn's budget left."""

UnderstandPath = Literal["llm-tool", "llm-json", "llm-repair", "parser-check", "parser-fast", "offline",
                         "offline-fallback"]
"""How a message was understood: the LLM's tool call / JSON answer / repaired answer; the parser's
reading instead of the LLM's (``parser-check``); a command or greeting the parser answered without
the LLM (``parser-fast``); no LLM configured (``offline``); the LLM failed (``offline-fallback``)."""


@dataclass(frozen=True)
class Understood:
    """What ``Understander.understand`` made of a message, and how.

    ``rest``: further tool calls of the same answer, not carried out (the note names them).
    ``proposed``: the LLM's own answer when the parser's reading replaced it (``path == "parser-check"``).
    """

    result: Understanding
    path: UnderstandPath
    note: str = ""
    rest: tuple[Understanding, ...] = ()
    proposed: Optional[Understanding] = None


_PRONOUNS = {"it", "this", "that", "them", "they", "those", "these", "one", "this one", "that one",
             "the same one", "the one", "same", "him", "her"}
_REFUSAL = "I can only edit the picture. Tell me what to change, e.g. 'make the car red'."
_ROLES = {"user": "user", "human": "user", "assistant": "ai", "ai": "ai", "bot": "ai"}


def few_shot_examples() -> list[tuple[str, str]]:
    """``(user message, JSON answer)`` pairs from ``agent/language/prompts/examples.txt`` (blocks of ``User: ...`` + JSON).

    Sent before the conversation: small local models copy the answer form from earlier turns far
    more reliably than from the system prompt.
    """
    pairs = []
    for block in re.split(r"\n\s*\n", load_prompt("examples").strip()):
        first, _, answer = block.strip().partition("\n")
        if first.startswith("User:") and answer.strip():
            pairs.append((first[len("User:"):].strip(), answer.strip()))
    return pairs


def _clean_input(text: Any, limit: int) -> str:
    """Strip control and escape characters and cut to ``limit`` characters."""
    return strip_controls(str(text or ""))[:limit].strip()


def _answer_text(message: Any) -> str:
    """The text of an AI message (``content`` may be a string or a list of content blocks)."""
    content = getattr(message, "content", message)
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b if isinstance(b, str) else str(b.get("text", "")) for b in content
                         if isinstance(b, (str, dict)))
    return str(content or "")


def _tool_calls(answer: Any) -> list[dict]:
    """The tool calls of an answer, valid and invalid (arguments that are not JSON) alike."""
    return list(getattr(answer, "tool_calls", None) or []) + list(getattr(answer, "invalid_tool_calls", None) or [])


def _say(result: Understanding) -> str:
    """A few words for a tool call the turn did not carry out: ``undo``, ``"make the sofa red"``."""
    if isinstance(result, Command):
        return result.name.replace("_", " ") + (f" {result.steps} steps" if result.steps > 1 else "")
    if isinstance(result, EditPlan):
        return json.dumps(result.instruction or result.action)
    if isinstance(result, Clarify):
        return f"the question {json.dumps(result.question[:80])}"
    return "a reply"


def _as_reading(value: Union[Reading, Understanding]) -> Reading:
    """A custom parser's answer as a ``Reading`` (a command settles the turn; anything else is checked)."""
    if isinstance(value, Reading):
        return value
    if isinstance(value, Command):
        return Reading(value, "command")
    return Reading(value, "fallback" if isinstance(value, Chat) else "edit")


class Understander:
    """Turns one user message into an ``Understood``, with the LLM when there is one.

    Args:
        llm: a chat model (``make_llm``) or None (the offline parser answers everything).
        parser: ``(text, context) -> Reading | Understanding``; default ``agent.language.parser.read``.
        settings: where ``llm_turn_budget`` and ``llm_retries`` come from (default: the process's settings).
    """

    def __init__(self, llm: Optional[BaseChatModel], parser: Optional[Callable[..., Any]] = None,
                 settings: Any = None):
        if parser is None:
            from agent.language.parser import read as parser
        self.llm = llm
        self.parser = parser
        if llm is not None and settings is None:
            from tools.config import get_settings

            settings = get_settings()
        self.budget = float(getattr(settings, "llm_turn_budget", 60.0))
        self.caller = None if llm is None else ModelCaller(llm, TOOLS, getattr(settings, "llm_retries", 1))
        self.vision = (getattr(settings, "llm_vision", "auto"), int(getattr(settings, "llm_image_side", 768)),
                       getattr(settings, "llm_box_format", "auto"))

    # --- the prompt -----------------------------------------------------------------------

    def system_prompt(self, context: Any) -> str:
        """The system prompt for this turn: the tools, the fields, the caption, the last plan and
        what "it" refers to (``context.referent`` when the conversation knows it)."""
        caption = clean_text(getattr(context, "caption", None))
        if not getattr(context, "has_image", True):
            photo = "no photo has been uploaded yet."
        else:
            photo = json.dumps(caption) if caption else "(no caption available)"
        last = getattr(context, "last_plan", None)
        if isinstance(last, EditPlan):
            fields = {k: v for k, v in last.model_dump(exclude={"kind"}).items() if v not in (None, "", False)}
            last_text = json.dumps(fields)
        else:
            last_text = "none yet."
        referent = clean_text(getattr(context, "referent", None), 200)
        if referent:
            it = referent
        elif isinstance(last, EditPlan) and last.target and last.action != "remove":
            it = f"the target of the last edit ({last.new_value if last.action == 'replace' else last.target})"
        else:
            it = "nothing yet: ask which object is meant"
        return render_prompt("system", caption=photo, last_plan=last_text, referent=it)

    def messages(self, text: str, context: Any, history: Sequence[tuple[str, str]] = ()) -> list[BaseMessage]:
        """System prompt, the few-shot examples, the last ``MAX_HISTORY`` messages (roles merged so
        they alternate), then the message."""
        turns: list[list[str]] = []  # [role, text]
        for item in list(history)[-MAX_HISTORY:]:
            try:
                role, said = item
            except (TypeError, ValueError):
                continue
            role = _ROLES.get(str(role).lower())
            said = _clean_input(said, MAX_HISTORY_TEXT)
            if role is None or not said or (not turns and role == "ai"):
                continue
            if turns and turns[-1][0] == role:
                turns[-1][1] += "\n" + said
            else:
                turns.append([role, said])
        if turns and turns[-1][0] == "user":
            turns[-1][1] += "\n" + text
        else:
            turns.append(["user", text])
        out: list[BaseMessage] = [SystemMessage(self.system_prompt(context))]
        for example, answer in few_shot_examples():
            out += [HumanMessage(example), AIMessage(answer)]
        out += [HumanMessage(t) if role == "user" else AIMessage(t) for role, t in turns]
        return out

    # --- reading an answer ------------------------------------------------------------------

    def read_answer(self, answer: Any, text: str, context: Any, history: Sequence[tuple[str, str]] = (),
                    reading: Optional[Reading] = None) -> tuple[list[Understanding], str]:
        """``([first, *rest], "tool" | "json")`` from one model answer, or ``InvalidAnswer``.

        The first tool call must be valid; invalid later ones are dropped.
        """
        log.debug("model answer: %s", self._render_answer(answer)[:500])
        reading = reading or self._read(text, context)
        calls = _tool_calls(answer)
        if calls:
            found = [self._check(tool_to_understanding(calls[0].get("name"), calls[0].get("args"), text),
                                 text, context, history, reading)]
            for call in calls[1:MAX_CALLS]:
                try:
                    found.append(self._check(tool_to_understanding(call.get("name"), call.get("args"), text),
                                             text, context, history, reading))
                except InvalidAnswer as e:
                    log.info("dropped a further tool call of the answer: %s", e)
            return found, "tool"
        reply = _answer_text(answer)
        candidates = json_candidates(reply)
        if not candidates:
            if "{" in reply:
                raise InvalidAnswer("the answer has no complete, valid JSON object (cut off or malformed?)")
            if reply.strip():
                raise InvalidAnswer("the answer was prose, not a tool call or a JSON object")
            raise InvalidAnswer("the answer was empty")
        first_error: Optional[InvalidAnswer] = None
        for payload in candidates:
            try:
                found = payload_to_understandings(payload, text)
                checked = [self._check(found[0], text, context, history, reading)]
                for more in found[1:]:
                    try:
                        checked.append(self._check(more, text, context, history, reading))
                    except InvalidAnswer as e:
                        log.info("dropped a further tool call of the answer: %s", e)
                return checked, "json"
            except InvalidAnswer as e:
                first_error = first_error or e
        raise first_error  # type: ignore[misc]

    def _check(self, result: Understanding, text: str, context: Any, history: Sequence[tuple[str, str]],
               reading: Reading) -> Understanding:
        """Check a plan against the conversation (``InvalidAnswer`` when it does not fit):

        a pronoun target becomes the last plan's target; the target and the new value must be
        words the conversation used (so a small model copying an example edits nothing; not
        checked for a message in another language, whose plan is in English); a removal must not
        contradict the parser's reading of the message; the qualifier must be in the vocabulary.
        A reply quoting the system prompt becomes a refusal.
        """
        if isinstance(result, Chat) and self._leaks_prompt(result.text):
            return Chat(text=_REFUSAL)
        if not isinstance(result, EditPlan) or result.action == "global":
            return result
        last = getattr(context, "last_plan", None)
        said = " ".join([text] + [str(t) for _, t in list(history)[-MAX_HISTORY:]])
        if isinstance(last, EditPlan):
            said += " " + " ".join(filter(None, (last.target, last.attribute, last.new_value)))
        said += " " + str(getattr(context, "referent", None) or "")
        if result.target and result.target.lower() in _PRONOUNS:
            if not (isinstance(last, EditPlan) and last.target) or last.action == "remove":
                raise InvalidAnswer(f"target {result.target!r} is a pronoun; name the object")
            # the last edit's object, by the name it had (the graph knows it is now the fox, in the same region)
            result = result.model_copy(update={"target": last.target,
                                               "qualifier": result.qualifier or last.qualifier,
                                               "plural": result.plural or last.plural})
        caption = str(getattr(context, "caption", None) or "")
        if reading.source != "foreign":
            for name, value, known in (("target", result.target, words(said + " " + caption)),
                                       ("new_value", result.new_value if result.action != "remove" else None,
                                        words(said))):
                wanted = words(value or "") - STOPWORDS
                if wanted and not any(same_word(w, k) for w in wanted for k in known):
                    raise InvalidAnswer(f"{name} {value!r} is not in the user's message; use the user's words")
        else:  # another language: the target must be an object the message names, a removal asked for
            named = named_objects(text)
            head = (words(result.target) - STOPWORDS) if result.target else set()
            if named and head and not any(same_word(w, n) for w in head for n in named):
                raise InvalidAnswer(f"target {result.target!r} is not what the user named; the message names "
                                    f"{', '.join(sorted(named))} (write the target in English)")
            if result.action == "remove" and not asks_removal(text):
                raise InvalidAnswer("the user did not ask to remove anything; read the verb of the message")
        if result.action == "remove" and result.new_value and (words(result.new_value) - STOPWORDS) & words(text):
            raise InvalidAnswer(f"remove takes the object out; to turn it into {result.new_value!r} "
                                "use action replace (or attribute for a colour or material)")
        if result.action == "remove" and result.new_value:  # nothing replaces a removed object
            result = result.model_copy(update={"new_value": None})
        offline = reading.result
        if result.action == "remove" and isinstance(offline, EditPlan) and offline.action != "remove":
            raise InvalidAnswer(f"the user did not ask to remove anything; use action {offline.action!r}")
        if result.qualifier and not (result.qualifier in QUALIFIERS or ORDINAL_RE.match(result.qualifier)):
            raise InvalidAnswer(f"qualifier {result.qualifier!r} is not in the vocabulary; use one of "
                                f"{', '.join(QUALIFIERS)}, '2nd from left', ... or null")
        return result

    @staticmethod
    def _leaks_prompt(reply: str) -> bool:
        """Whether a reply quotes the system prompt (a long line of it, verbatim)."""
        low = reply.lower()
        lines = [ln.strip().lower() for ln in load_prompt("system").splitlines()]
        return any(len(ln) >= 40 and "{{" not in ln and ln[:60] in low for ln in lines)

    # --- the turn ---------------------------------------------------------------------------

    def read(self, text: str, context: Any = None) -> Any:
        """The built-in parser's reading of ``text`` alone (no language model asked): a plan, command,
        question or chat. Never raises."""
        return self._read(_clean_input(text, MAX_TEXT), context).result

    def _read(self, text: str, context: Any) -> Reading:
        try:
            return _as_reading(self.parser(text, context))
        except Exception:  # noqa: BLE001 - never take the conversation down
            log.exception("offline parser failed")
            return Reading(Chat(text="Sorry, I couldn't understand that. Try e.g. 'make the car red'."), "fallback")

    def _failure(self, exc: BaseException) -> str:
        if isinstance(exc, BudgetSpent):
            return f"the language model did not answer within the turn's {self.budget:g} s"
        log.warning("LLM request failed: %s", describe_error(exc))
        return describe_error(exc)

    def understand(self, text: str, context: Any = None,
                   history: Sequence[tuple[str, str]] = ()) -> Understood:
        """Understand one message (module docstring). Never raises; ``path`` says how."""
        text = _clean_input(text, MAX_TEXT)
        history = history or ()
        reading = self._read(text, context)
        if self.caller is None:
            return _finish(Understood(reading.result, "offline",
                                      "no language model is configured; used the built-in parser"))
        if reading.settled:
            return _finish(Understood(reading.result, "parser-fast"))
        deadline = time.monotonic() + self.budget
        notes: list[str] = []

        def fallback(why: str) -> Understood:
            result = reading.result
            if reading.source == "foreign":  # an LLM is configured: telling the user to configure one would not help
                result = Chat(text=f"I couldn't read that: the built-in parser reads English only, and the language "
                                   f"model's answer was not usable. Please write it in English, e.g. {EXAMPLES}.")
            return _finish(Understood(result, "offline-fallback", "; ".join(
                [n for n in notes if n] + [why + "; used the built-in parser"])))

        messages, photo = vision.with_photo(self.messages(text, context, history), context, self.caller.server,
                                            getattr(self.llm, "model_name", None), *self.vision)
        try:
            asked = self.caller.ask(messages, deadline)
        except Exception as e:  # noqa: BLE001 - connection refused, timeout, HTTP error, garbage, ...
            return fallback(self._failure(e))
        notes.append(asked.note)
        try:
            found, how = self.read_answer(asked.answer, text, context, history, reading)
            path: UnderstandPath = "llm-tool" if how == "tool" else "llm-json"
        except InvalidAnswer as e:
            first_error = str(e)
            if well_grounded(reading.result, text, context):
                return fallback(f"the model's answer was not a valid plan ({first_error})")
            if deadline - time.monotonic() < MIN_REPAIR_SECONDS:
                return fallback(f"the model's answer was not a valid plan ({first_error}) and no time was "
                                "left to ask again")
            log.info("LLM answer invalid (%s); asking once more", first_error)
            repair = messages + [
                AIMessage(self._render_answer(asked.answer)),
                HumanMessage(render_prompt("repair", error=first_error, message=json.dumps(text))),
            ]
            try:
                asked = self.caller.ask(repair, deadline)
            except Exception as e:  # noqa: BLE001
                return fallback(self._failure(e))
            notes.append(asked.note)
            try:
                found, _ = self.read_answer(asked.answer, text, context, history, reading)
            except InvalidAnswer as e:
                return fallback(f"the model's answer was not a valid plan ({e})")
            path = "llm-repair"
            notes.append(f"the model's first answer was invalid ({first_error})")
        first, rest = found[0], [r for r in found[1:] if not isinstance(r, Chat)]
        verdict = arbitrate(first, reading, text, context)
        result = verdict.result
        if verdict.winner == "parser":
            path = "parser-check"
        elif isinstance(result, EditPlan):  # a message in another language: an instruction ip2p can read
            result = complete_plan(result, context, english_instruction=reading.source == "foreign" and (
                result.instruction == clean_text(text) or foreign_share(result.instruction) > 0.2))
        notes.append(verdict.reason)
        if rest:
            notes.append("the model also asked for " + ", ".join(_say(r) for r in rest)
                         + "; I did only the first: send the rest as its own message")
        result = vision.seen(result, photo, self.caller.server)  # the box in pixels, or none if it did not see
        return _finish(Understood(result, path, "; ".join(n for n in notes if n), tuple(rest),
                                  first if verdict.winner == "parser" else None))

    @staticmethod
    def _render_answer(answer: Any) -> str:
        """The model's invalid answer as plain text for the repair round (tool calls as JSON)."""
        calls = _tool_calls(answer)
        if calls:
            return json.dumps({"name": calls[0].get("name"), "arguments": calls[0].get("args")}, default=str)[:1500]
        return _clean_input(_answer_text(answer), 1500) or "(empty answer)"


def _finish(understood: Understood) -> Understood:
    """The note redacted, stripped of control characters and capped (the results are clean already)."""
    note = clean_text(redact(understood.note), MAX_NOTE) or ""
    if note == understood.note:
        return understood
    return Understood(understood.result, understood.path, note, understood.rest, understood.proposed)
