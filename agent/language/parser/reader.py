"""The parse: clean a message, split it into clauses, and read each (chat, command, rewrite, edit verb,
fallback) into a ``Reading``; ``read`` and ``parse`` never raise.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal, Optional

from agent.language.parser import conversation, spelling
from agent.language.parser.completion import canonical_instruction
from agent.language.parser.language import foreign_language, foreign_share, not_english_reply
from agent.language.parser.lexicon import COLOURS, EXAMPLES, MATERIALS, MAX_CHARS, NUMBER_WORDS, TEXTURES, _DETERMINERS
from agent.language.parser.patterns import (
    CHAT_PATTERNS, CLAUSE_SPLIT_RE, COMMAND_PATTERNS, EDIT_VERBS, FILLER_RE, INJECTION_RE, REWRITES, TRAILING_RE,
)
from agent.language.parser.rules import (
    EDIT_PATTERNS, _Group, _State, _change, _clarify_referent, _global, _h_same, _is_value, split_object_value,
)
from agent.language.parser.words import ParseContext, caption_kind, is_attribute_value, is_scene_value, parse_np, strip_article
from agent.language.plan import Chat, Clarify, Command, EditPlan, ORIGINAL_STEPS, Understanding
from tools.types import MAX_TEXT

log = logging.getLogger(__name__)


def _clean(text: str) -> str:
    """Normalise unicode, lower-case, keep words and a little punctuation, collapse spaces."""
    t = unicodedata.normalize("NFKC", text)
    t = t.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    t = re.sub(r"\s*(?:→|⇒|=>|->|-+>)\s*", " -> ", t)
    t = re.sub(r"<[^>]{0,200}>", " ", t) if "<script" not in t.lower() else t
    t = t.lower()
    t = re.sub(r"\bw/o\b", " without ", t)
    t = re.sub(r"\bw/", " with ", t)
    t = re.sub(r"\b(?:teh|hte|th)\b", "the", t)
    t = re.sub(r"#\s*(\d)", r"\1", t)
    t = re.sub(r"[^\w\s'.,!?;:>-]", " ", t)
    t = re.sub(r"(?<![\w-])-(?!>)|(?<!-)>", " ", t)
    t = re.sub(r"\s+", " ", t)
    return t.strip(" .,!?;:'-")


def split_instructions(text: str) -> list[str]:
    """A message split into sentences and clauses that each start with an edit verb.

    ``"Remove the lamp and make the sofa red."`` -> ``["remove the lamp", "make the sofa red"]``.
    ``parse`` answers the first clause that is an edit or a command; a caller may queue the rest.
    """
    cleaned = _clean(text if isinstance(text, str) else "")
    out: list[str] = []
    for sentence in re.split(r"(?<=[.!?;\n])\s+|[.!?;]\s*$", cleaned):
        sentence = sentence.strip(" .,!?;:'-")
        if not sentence:
            continue
        for clause in CLAUSE_SPLIT_RE.split(sentence):
            clause = clause.strip(" .,!?;:'-")
            if clause:
                out.extend(_parallel(clause))
    return out


_PARALLEL_RE = re.compile(r"^(?P<verb>make|paint|colou?r|turn|dye)\s+(?P<a>.+?)\s+and\s+"
                          r"(?P<b>(?:the|his|her|its|their|my|all the)\s+.+)$")


def _parallel(clause: str) -> list[str]:
    """"make the sky purple and the grass blue" -> ["make the sky purple", "make the grass blue"]."""
    m = _PARALLEL_RE.match(clause)
    if not m:
        return [clause]
    a, b = split_object_value(m.group("a")), split_object_value(m.group("b"))
    if a and b and _is_value(a[1]) and _is_value(b[1]) and parse_np(a[0]).target and parse_np(b[0]).target:
        return [f"{m.group('verb')} {m.group('a')}", f"{m.group('verb')} {m.group('b')}"]
    return [clause]


def _strip_fillers(text: str) -> str:
    """Drop politeness and discourse fillers: "ok now please make it red, thanks" -> "make it red"."""
    previous = None
    while previous != text:
        previous = text
        text = FILLER_RE.sub("", text).strip(" ,.!?")
        text = TRAILING_RE.sub("", text).strip(" ,.!?")
    return text


def _command(text: str) -> Optional[Command]:
    """A whole-utterance conversation command, or ``None``."""
    for pattern, name in COMMAND_PATTERNS:
        m = pattern.fullmatch(text)
        if not m:
            continue
        steps = 1
        n = m.groupdict().get("n")
        if n:
            steps = NUMBER_WORDS.get(n) or (int(n) if n.isdigit() else 1)
        if name == "undo_all":
            return Command(name="undo", steps=ORIGINAL_STEPS)
        return Command(name=name, steps=max(1, min(steps, ORIGINAL_STEPS)))  # type: ignore[arg-type]
    return None


def _chat(text: str, st: _State) -> Optional[Chat]:
    for pattern, reply in CHAT_PATTERNS:
        if pattern.fullmatch(text):
            return Chat(text=reply(st))
    return None


def _rewrite(text: str) -> str:
    """Questions and wishes -> imperative (each rewrite at most once, in table order)."""
    for pattern, fn in REWRITES:
        m = pattern.match(text)
        if m:
            text = re.sub(r"\s+", " ", fn(m)).strip()
    return text


def _fallback(text: str, st: _State) -> Understanding:
    """No edit verb matched: a bare qualifier, value or scene phrase, else a polite Chat."""
    lp = st.ctx.last_plan
    np = parse_np(text)
    if lp is not None and lp.action != "global" and np.pronoun and np.qualifier:
        revised = lp.model_copy(update={"qualifier": np.qualifier, "revise_last": True})
        return revised.model_copy(update={"instruction": canonical_instruction(revised)})
    split = split_object_value(text)
    if split and parse_np(split[0]).pronoun and is_attribute_value(split[1]) and lp is not None:
        return _change(split[0], split[1], st)  # "that one striped", "them red"
    tm = re.match(r"^(?:what about |how about )?(?P<np>.+)$", text)
    if tm and (st.also or text.startswith(("what about ", "how about "))) and parse_np(tm.group("np")).target:
        return _h_same(_Group(np=tm.group("np")), st)
    if is_attribute_value(text):
        if lp is not None and lp.action != "global":
            return _change("it", text, st)
        if is_scene_value(text):
            return _global(text, st, instruction=f"make it {text}")
        return _clarify_referent(text, "attribute")
    if is_scene_value(text) and len(text.split()) <= 6 and not re.search(
            r"\b(?:is|are|was|were|be|i|you|we|it's|looks|seems|do|does|did|have|has|not|today|yesterday)\b", text):
        return _global(text, st, instruction=f"make it {text}")
    if np.pronoun and np.qualifier:
        return Clarify(question="Which edit should I apply to that one? For example: 'turn the left cat into a fox'.")
    if re.match(rf"^(?:{EDIT_VERBS})\b", text) and len(text.split()) >= 2:
        return _global(re.sub(rf"^(?:{EDIT_VERBS})\s+", "", text), st, instruction=text)
    bare = _bare_edit(text, st)
    if bare is not None:
        return bare
    return Chat(text=f"I'm not sure what to change. Try an instruction like {EXAMPLES}.")


_LOOKS = COLOURS | MATERIALS | TEXTURES


def _bare_edit(text: str, st: _State) -> Optional[Understanding]:
    """An edit with no verb: "the car in blue", "car red", "blue car" (a colour, material or texture and an object)."""
    m = re.match(r"^(?P<np>[\w' -]+?)\s+(?:in|to|into)\s+(?P<v>[\w -]+)$", text)
    if m and is_attribute_value(m.group("v")) and parse_np(m.group("np")).target:
        return _change(m.group("np"), m.group("v"), st, "make")
    found = text.split()
    if not 2 <= len(found) <= 4 or set(found) & (_DETERMINERS - {"the", "a", "an", "my"}) - {"all", "both"}:
        return None
    if found[0] in _LOOKS and parse_np(" ".join(found[1:])).target:
        return _change(" ".join(found[1:]), found[0], st, "make")
    if found[-1] in _LOOKS and parse_np(" ".join(found[:-1])).target:
        return _change(" ".join(found[:-1]), found[-1], st, "make")
    return None


def _parse_clause(clause: str, st: _State) -> tuple[Understanding, str]:
    """One clause (already cleaned) -> ``(understanding, source)``; the source is ``Reading.source``."""
    chat = _chat(clause, st)
    if chat is not None:
        return chat, "chat"
    st.also = bool(re.search(r"\b(?:too|as well|also)$", clause)
                   or re.match(r"^(?:and|also|now|and now|what about|how about|same for|same with)\s", clause))
    text = _strip_fillers(conversation.drop_hedges(_strip_fillers(clause)))
    if not text:
        return Chat(text="Tell me what to change in the picture, e.g. " + EXAMPLES + "."), "chat"
    command = _command(text) or conversation.tone(text, st.ctx.last_plan)
    if command is not None:
        return command, "command"
    chat = _chat(text, st)
    if chat is not None:
        return chat, "chat"
    text = _rewrite(text)
    st.clause = text
    for pattern, handler in EDIT_PATTERNS:
        m = pattern.match(text)
        if m:
            result = handler(m, st)
            return result, "chat" if isinstance(result, Chat) else "edit"
    result = _fallback(text, st)
    return result, "fallback" if isinstance(result, Chat) else "edit"


_INTRO_RE = re.compile(
    r"^(?:there(?:'s| is| are)|i see|you see|see|look at|notice)\s+(?P<np>(?:an?|the|some|this|that|two|three|\d+)\s+"
    r".+?)(?:\s+(?:on|in|at|near|next to|by|under|behind|over|beside|above|below)\s+.+)?$|"
    r"^(?P<np2>(?:the|that|this|those|these|my|his|her|their)\s+[\w' -]+?)\s+(?:is|are|looks?|seems?|was|were)\s+.+$")
"""A clause that only introduces an object ("there's a bottle on the table", "the cat looks sad")."""
_PRONOUN_RE = re.compile(r"\b(?:it|them|this one|that one)\b")

ReadingSource = Literal["edit", "command", "chat", "refusal", "empty", "fallback", "foreign", "too-long"]


@dataclass(frozen=True)
class Reading:
    """What the parser made of a message and how sure that is.

    ``source``: ``edit`` (an edit verb or value phrase: a plan, or a question about it), ``command``
    (undo, show mask, ...), ``chat`` (a greeting, thanks, help: a whole-utterance pattern),
    ``refusal`` (prompt-injection text), ``empty``, ``fallback`` (nothing recognised: a polite
    reply), ``foreign`` (not English: a reply saying so), ``too-long``. ``rest``: the clauses after
    the one that was read ("remove the lamp and make the sofa red" -> ``("make the sofa red",)``).
    ``typos``: ``(typo, correction)`` pairs the spelling corrector changed (``agent.language.parser.spelling``).
    """

    result: Understanding
    source: ReadingSource
    rest: tuple[str, ...] = ()
    typos: tuple[tuple[str, str], ...] = ()

    @property
    def settled(self) -> bool:
        """Whether the reading needs no LLM: a command, a greeting / thanks / help, a refusal, nothing typed."""
        return self.source in ("command", "chat", "refusal", "empty")


def _read(text: str, ctx: ParseContext) -> Reading:
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    if not text.strip():
        return Reading(Chat(text="Please type an instruction, e.g. " + EXAMPLES + "."), "empty")
    if INJECTION_RE.search(text[:MAX_TEXT * 5].lower()):
        return Reading(Chat(text="I can only edit the picture. Tell me what to change, e.g. " + EXAMPLES + "."),
                       "refusal")
    too_long = len(text) > MAX_TEXT
    if len(text) > MAX_CHARS:
        cut = text[:MAX_CHARS]
        text = cut.rsplit(" ", 1)[0] if " " in cut[MAX_CHARS // 2:] else cut
    language = foreign_language(text)
    if language and foreign_share(text) >= 0.5:
        return Reading(Chat(text=not_english_reply(language)), "foreign")
    st = _State(ctx=ctx, kind=caption_kind(ctx.caption))
    text, typos = spelling.correct(_clean(text), ctx.caption)
    clauses = split_instructions(text)
    special = _conversation(clauses, ctx, st.kind)
    if special is not None:
        return Reading(special[0], "edit", tuple(clauses[special[1]:6]), tuple(typos))
    if not clauses:
        if language:
            return Reading(Chat(text=not_english_reply(language)), "foreign")
        return Reading(Chat(text="I couldn't read that. Please type an instruction, e.g. " + EXAMPLES + "."),
                       "fallback")
    first_chat: Optional[Reading] = None
    introduced: Optional[str] = None  # "there's a bottle on the table, remove it": "it" is the bottle
    for i, clause in enumerate(clauses[:6]):
        result, source = _parse_clause(clause, st)
        if isinstance(result, Clarify) and introduced and _PRONOUN_RE.search(clause):
            st = _State(ctx=ctx, kind=st.kind)
            result, source = _parse_clause(_PRONOUN_RE.sub(introduced, clause, count=1), st)
        if not isinstance(result, Chat):
            return Reading(result, source, tuple(clauses[i + 1:6]), tuple(typos))
        first_chat = first_chat or Reading(result, source)
        intro = _INTRO_RE.match(clause)
        if intro:
            introduced = "the " + strip_article(intro.group("np") or intro.group("np2"))
        st = _State(ctx=ctx, kind=st.kind)
    if too_long:
        return Reading(Chat(text="That message is too long for me. Please send one short instruction, e.g. "
                                 + EXAMPLES + "."), "too-long")
    if language and (first_chat is None or first_chat.source == "fallback"):
        return Reading(Chat(text=not_english_reply(language)), "foreign")
    return first_chat or Reading(Chat(text=f"I'm not sure what to change. Try {EXAMPLES}."), "fallback")


def _conversation(clauses: list[str], ctx: ParseContext, kind: str) -> Optional[tuple[EditPlan, int]]:
    """A correction of the last edit or an "undo ... and ..." request, with how many clauses it used."""
    if not clauses:
        return None
    merged = len(clauses) > 1 and conversation.only_mark(clauses[0])
    if merged:  # "no, make the bus green": one correction
        clauses = [f"{clauses[0]}, {clauses[1]}", *clauses[2:]]

    def one(clause: str, context: ParseContext) -> tuple[Understanding, str]:
        return _parse_clause(clause, _State(ctx=context, kind=kind))

    fixed = conversation.correction(clauses[0], ctx, one)
    found = (fixed, 1) if fixed is not None else conversation.compound(clauses, ctx, one)
    return (found[0], found[1] + merged) if found is not None else None


def read(text: str, context: Optional[ParseContext] = None) -> Reading:
    """Read one user message: the understanding and where it came from. Never raises."""
    try:
        return _read(text, context or ParseContext())
    except Exception:  # noqa: BLE001 - the parser must never take the conversation down
        log.exception("offline parser failed on %r", str(text)[:200])
        return Reading(Chat(text=f"Sorry, I couldn't understand that. Try an instruction like {EXAMPLES}."),
                       "fallback")


def parse(text: str, context: Optional[ParseContext] = None) -> Understanding:
    """Understand one user message. Never raises: anything unexpected becomes a polite ``Chat``."""
    return read(text, context).result
