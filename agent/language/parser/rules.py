"""The rule parser's plan builders: an object phrase and a value -> ``EditPlan`` (replace / attribute /
remove / add / global) or ``Clarify``, and the edit-verb table ``EDIT_PATTERNS`` that calls them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional

from agent.language.parser.lexicon import (
    ANIMAL_WORDS, EXAMPLES, GENDERED, HAIR_WORDS, NOT_COMPARATIVES, PERSON_WORDS, SCENE_NOUNS, STRONG_SCENE_RE,
    STYLE_NOUN_RE, VALUE_PREFIX_RE, VERB_STATES, VERB_VALUES, _DETERMINERS,
)
from agent.language.parser.words import (
    NounPhrase, ParseContext, is_attribute_value, is_removal_value, is_scene_adjective, is_scene_np,
    is_scene_value, parse_np, pluralize, singularize, strip_article, with_article,
)
from agent.language.plan import Chat, Clarify, EditPlan, Understanding, extract_qualifier, normalize_qualifier


@dataclass
class _State:
    """One parse: the context, the caption kind and the (rewritten) clause."""

    ctx: ParseContext
    clause: str = ""
    kind: str = "a photo"
    also: bool = False  # "the dog too", "now the dog": repeat the last edit on another object


def _referent(np: NounPhrase, st: _State) -> Optional[NounPhrase]:
    """The object a pronoun refers to, from the last plan; ``None`` when there is none."""
    lp = st.ctx.last_plan
    ref: Optional[NounPhrase] = None
    if lp is not None and lp.action not in ("global", "remove"):
        if lp.action in ("replace", "add") and lp.new_value:
            ref = parse_np(lp.new_value)
            if ref.target is None:
                ref = None
            elif lp.action == "replace":
                ref.qualifier, ref.plural, ref.count = lp.qualifier, lp.plural or ref.plural, lp.count
        if ref is None and lp.target:
            ref = parse_np(lp.target)
            if ref.target is None:
                ref = None
            else:
                ref.target, ref.qualifier, ref.plural, ref.count = lp.target, lp.qualifier, lp.plural, lp.count
                ref.attribute = lp.attribute if lp.action != "attribute" else None
                ref.surface = pluralize(lp.target) if lp.plural else lp.target
                if ref.attribute:
                    ref.surface = f"{ref.attribute} {ref.surface}"
    gendered = GENDERED.get(np.text)
    if gendered and (ref is None or not (set((ref.target or "").split()) & (PERSON_WORDS | ANIMAL_WORDS))):
        who = _subject_of(st.ctx.caption) or gendered
        ref = NounPhrase(target=who, surface=who, text=np.text)
    if ref is None:
        return None
    if np.qualifier:
        ref.qualifier = np.qualifier
    if np.plural and not ref.plural:
        ref.plural = True
        ref.surface = pluralize(ref.surface)
    if np.count:
        ref.count = np.count
    return ref


def _subject_of(caption: Optional[str]) -> Optional[str]:
    """Who "her" / "him" can be in a photo, from its caption: its first animal when it names no person
    ("a photo of a dog on a sofa" -> "dog"), else None (a person: the gendered word)."""
    words = [singularize(w) for w in re.findall(r"[a-z]+", (caption or "").lower())]
    if any(w in PERSON_WORDS for w in words):
        return None
    return next((w for w in words if w in ANIMAL_WORDS), None)


def _which(np: NounPhrase) -> str:
    """How to say the object in a question: "the left cat", "it"."""
    return np.text if np.text and not np.pronoun else "which object"


def _clarify_referent(value: str, action: str) -> Clarify:
    """Ask which object a pronoun means when the conversation has none."""
    if action == "remove":
        q = "What should I remove? For example: 'remove the lamp'."
    elif action == "add":
        q = f"Where should I add {value}? For example: 'add {value} to the table'."
    elif action == "replace":
        q = f"Which object should become {with_article(value)}? For example: 'turn the cat into {with_article(value)}'."
    else:
        q = f"Which part of the image should be {value}? For example: 'make the car {value}'."
    return Clarify(question=q)


def _object(np_text: str, st: _State, value: str, action: str) -> NounPhrase | Clarify:
    """Parse and, for pronouns, resolve the object of an edit."""
    np = parse_np(np_text)
    if np.pronoun:
        ref = _referent(np, st)
        return ref if ref is not None else _clarify_referent(value, action)
    if not np.target:
        return _clarify_referent(value, action)
    return np


def _global(value: str, st: _State, instruction: Optional[str] = None) -> EditPlan:
    """A whole-image edit (season, weather, light, style)."""
    value = re.sub(r"^(?:look\s+)?(?:like\s+)?", "", value.strip()) or value
    if STYLE_NOUN_RE.search(value):
        value = re.sub(r"^(?:as|into)\s+", "", value)
    source = st.ctx.caption.strip().rstrip(".") if st.ctx.caption else st.kind
    subject = re.sub(r"^.*?\bof\s+", "", source, count=1) if " of " in source else ""
    if STYLE_NOUN_RE.search(value) and re.match(r"^(?:a|an)\s", value):
        target = f"{value} of {subject}" if subject else value
    elif STYLE_NOUN_RE.search(value) and not re.match(r"^(?:in|at|as|with|during)\b", value):
        target = f"{with_article(value)} of {subject}" if subject else with_article(value)
    else:
        if re.fullmatch(r"winter|summer|autumn|fall|spring|springtime", value):
            value = f"in {value}"
        elif re.fullmatch(r"night|nighttime|night time|sunset|sunrise|dawn|dusk|midnight|twilight|golden hour", value):
            value = f"at {value}"
        target = f"{source}, {value}"
    return EditPlan(action="global", source_caption=source, target_caption=target,
                    instruction=instruction or st.clause, new_value=value)


def _change(np_text: str, value: str, st: _State, how: str = "make") -> Understanding:
    """Replace / attribute / global, from an object phrase and what it should become."""
    value = re.sub(r"^(?:to\s+)?(?:look|looks|appear|seem|become|be)\s+", "", value.strip())
    like = bool(re.match(r"^(?:like|similar to|as if)\s", value))
    value = re.sub(r"^(?:like|similar to)\s+", "", value).strip(" ,")
    if how == "colour":
        value = re.sub(r"^(?:in|with)\s+", "", value)
    if not value:
        return Clarify(question=f"What should {np_text} become? For example: 'turn the cat into a fox'.")
    if is_removal_value(value):
        return _remove(np_text, st)
    value = VERB_STATES.get(value, value)
    value = re.sub(r"^(?:it'?s|it is|it was|they'?re|they are)\s+", "", value)
    value = re.sub(r"^(?:painted|colou?red|dyed)\s+(?=\S)", "", value) if how != "like" else value
    np = parse_np(np_text)
    # a bare comparative after "make X" ("make the water clearer") is an attribute even if unknown to us
    attribute = is_attribute_value(value) or (how == "make" and bool(re.fullmatch(r"[a-z]{3,}i?er", value))
                                              and value not in NOT_COMPARATIVES and not is_scene_value(value))
    if np.whole or (np.pronoun and is_scene_value(value) and (not attribute or STRONG_SCENE_RE.search(value))):
        return _global(value, st)
    # a scene named as an object ("turn the day into night", "change the summer to winter")
    scene_value = re.sub(r"^(?:an?\s+)?(.+?)(?:\s+(?:one|version|scene))?$", r"\1", value)
    if not np.pronoun and is_scene_np(np) and (is_scene_value(scene_value) or scene_value in SCENE_NOUNS):
        return _global(scene_value, st)
    attribute = attribute or is_scene_adjective(value)  # "make the sky cloudy": the sky's look, not a new object
    obj = _object(np_text, st, value, "attribute" if attribute else "replace")
    if isinstance(obj, Clarify):  # nothing for "it" to be: a scene value is the whole picture's ("make it look old")
        return _global(value, st) if np.pronoun and is_scene_value(value) else obj
    if attribute and not like:
        return _attribute(obj, value, st, np.pronoun)
    return _replace(obj, value, st, np.pronoun)


def _replace(obj: NounPhrase, value: str, st: _State, resolved: bool) -> EditPlan:
    new = strip_article(value)
    new_plural = singularize(new.split()[-1]) != new.split()[-1] if new else False
    instruction = f"turn {obj.the} into {with_article(new, new_plural)}" if resolved else st.clause
    return EditPlan(action="replace", target=obj.target, qualifier=obj.qualifier, attribute=obj.attribute,
                    plural=obj.plural, count=obj.count, new_value=new,
                    source_caption=f"{st.kind} of {with_article(obj.surface, obj.plural)}",
                    target_caption=f"{st.kind} of {with_article(new, obj.plural or new_plural)}",
                    instruction=instruction)


def _attribute(obj: NounPhrase, value: str, st: _State, resolved: bool) -> EditPlan:
    value = re.sub(r"^(?:in|into|to)\s+", "", value)
    plain = " ".join(w for w in obj.surface.split() if w not in (obj.attribute or "").split()) or obj.surface
    if VALUE_PREFIX_RE.match(value) or len(value.split()) > 3:
        described = f"{with_article(plain, obj.plural)} {value}"
    else:
        described = with_article(f"{value} {plain}", obj.plural)
    instruction = f"make {obj.the} {value}" if resolved else st.clause
    return EditPlan(action="attribute", target=obj.target, qualifier=obj.qualifier, attribute=obj.attribute,
                    plural=obj.plural, count=obj.count, new_value=value,
                    source_caption=f"{st.kind} of {with_article(obj.surface, obj.plural)}",
                    target_caption=f"{st.kind} of {described}", instruction=instruction)


def _remove(np_text: str, st: _State, loc: Optional[str] = None) -> Understanding:
    """Remove an object; "from the background" style locations become its qualifier."""
    if not np_text.strip():
        return Clarify(question="What should I remove? For example: 'remove the lamp'.")
    np = parse_np(np_text)
    if np.whole:
        return Clarify(question="I can't remove the whole picture. Which object should I remove?")
    obj = _object(np_text, st, "", "remove")
    if isinstance(obj, Clarify):
        return obj
    if loc and not obj.qualifier:
        q, _ = extract_qualifier("in " + re.sub(r"^(?:from|out of|off|in|on|at)\s+", "", loc.strip()))
        obj.qualifier = q or normalize_qualifier(loc)
    instruction = f"remove {obj.the}" if np.pronoun else st.clause
    return EditPlan(action="remove", target=obj.target, qualifier=obj.qualifier, attribute=obj.attribute,
                    plural=obj.plural, count=obj.count,
                    source_caption=f"{st.kind} of {with_article(obj.surface, obj.plural)}",
                    target_caption=f"{st.kind} of the background", instruction=instruction)


_ADD_PREP_RE = re.compile(r"^(?P<new>.+?)\s+(?P<prep>on top of|in front of|next to|close to|to the (?:left|right) of|"
                          r"on|onto|to|in|into|inside|at|beside|near|behind|under|underneath|below|beneath|above|over|"
                          r"around|by|between|along|across|against|among|for)\s+(?P<loc>.+)$")
_PREP_NORMAL = {"to": "on", "onto": "on", "into": "in", "for": "on", "inside": "in", "underneath": "under",
                "beneath": "under"}
PLACE_NOUNS = {"sky", "background", "water", "sea", "ocean", "lake", "river", "room", "field", "garden", "forest",
               "grass", "air", "street", "park", "road", "corner", "distance", "foreground", "picture", "scene",
               "window", "pond", "pool", "vase", "box", "basket", "bowl", "cup", "glass", "hand", "mouth"}
"""Places things go *in* rather than *on*: "add fireworks to the sky" -> "in the sky"."""
_NO_WITH_PREPS = {"in front of", "next to", "close to", "beside", "near", "behind", "under", "below", "above",
                  "around", "by", "between", "along", "across", "against", "among", "to the left of",
                  "to the right of"}


_FILTER_RE = re.compile(r"\b(?:filter|effect|colou?r grading|grading|aesthetic|vignette|grain|lens flare|bokeh|"
                        r"look|feel|vibe|tone|glow|atmosphere|mood|contrast|saturation|exposure)s?$")
_SCENE_ADDS = {"sunset", "sunrise", "fog", "mist", "haze", "snow", "rain", "storm", "thunderstorm", "snowstorm",
               "night", "dusk", "dawn", "golden hour", "blizzard", "drizzle", "sunshine", "sunlight"}
"""What "add ..." means for the whole scene, with or without an article ("add a sunset")."""
_BODY_PART_RE = re.compile(r"^(?P<owner>his|her|its|their|(?:the |a |an |my |that |this )?[\w -]+?'s?)\s+"
                           r"(?P<part>head|neck|face|nose|ears?|eyes?|mouth|hands?|arms?|legs?|feet|foot|back|"
                           r"shoulders?|tail|paws?|wrists?|fingers?|lap|chest|hair|horns?|collar)$")


def _add(new: str, st: _State, prep: Optional[str] = None, loc: Optional[str] = None) -> Understanding:
    """Add an object, on/next to a grounded one, at a position, or anywhere."""
    new = new.strip(" ,")
    if not new:
        return Clarify(question="What should I add? For example: 'add a hat to the dog'.")
    if prep is None:
        m = _ADD_PREP_RE.match(new)
        if m:
            new, prep, loc = m.group("new"), m.group("prep"), m.group("loc")
    new_np = parse_np(new)
    instruction = st.clause
    scene_like = (is_scene_value(new) and not re.match(r"^(?:a|an)\s", new)) or bool(_FILTER_RE.search(new)) \
        or strip_article(new) in _SCENE_ADDS
    if not loc:
        if scene_like:
            return _global(strip_article(new), st, instruction=f"add {new}")
        return EditPlan(action="add", new_value=new, plural=False, source_caption=st.ctx.caption or st.kind,
                        target_caption=f"{st.ctx.caption or st.kind}, with {with_article(new, new_np.plural)}",
                        instruction=instruction)
    prep = _PREP_NORMAL.get(prep or "on", prep or "on")
    q, remainder = extract_qualifier(f"{prep} {loc}")
    if q and not set(remainder.split()) - {prep, "the", "side", "corner", "part", "half", "of", "image", "picture",
                                           "photo", "scene", "frame", "edge", "area"}:
        hint = f"{prep} {loc}" if prep in loc.split()[:1] else f"{prep} {loc}"
        return EditPlan(action="add", new_value=new, qualifier=q, region_hint=hint,
                        source_caption=st.ctx.caption or st.kind,
                        target_caption=f"{st.ctx.caption or st.kind}, with {with_article(new, new_np.plural)} {hint}",
                        instruction=instruction)
    np = parse_np(loc)
    if prep == "on" and np.target in PLACE_NOUNS:
        prep = "in"
    if np.whole or re.fullmatch(r"(?:the )?(?:image|photo|picture|scene|frame)", np.text) or (
            np.pronoun and scene_like and _referent(np, st) is None):
        if scene_like:
            return _global(strip_article(new), st, instruction=f"add {new}")
        return EditPlan(action="add", new_value=new, source_caption=st.ctx.caption or st.kind,
                        target_caption=f"{st.ctx.caption or st.kind}, with {with_article(new, new_np.plural)}",
                        instruction=f"add {new}")
    if not np.target and np.qualifier and not np.pronoun:
        hint = f"{prep} {np.text}" if np.text.startswith("the ") else f"{prep} the {np.text}"
        return EditPlan(action="add", new_value=new, qualifier=np.qualifier, region_hint=hint,
                        source_caption=st.ctx.caption or st.kind,
                        target_caption=f"{st.ctx.caption or st.kind}, with {with_article(new, new_np.plural)} {hint}",
                        instruction=instruction)
    part = _BODY_PART_RE.match(loc)
    obj = _object(re.sub(r"'s?$", "", part.group("owner")) if part else loc, st, new, "add")
    if isinstance(obj, Clarify):
        return obj
    if np.pronoun:
        instruction = f"add {new} {prep} {obj.the}"
    if part:  # "a scarf around the dog's neck": ground the dog, say where on it
        region = f"{prep} {obj.the}'s {part.group('part')}" if not parse_np(part.group("owner")).pronoun else \
            f"{prep} {loc}"
        return EditPlan(action="add", target=obj.target, qualifier=obj.qualifier, attribute=obj.attribute,
                        plural=obj.plural, count=obj.count, new_value=new, region_hint=region,
                        source_caption=f"{st.kind} of {with_article(obj.surface, obj.plural)}",
                        target_caption=f"{st.kind} of {with_article(obj.surface, obj.plural)} with "
                                       f"{with_article(new, new_np.plural)}", instruction=instruction)
    region = f"{prep} {obj.the}"
    if prep in _NO_WITH_PREPS:
        target_caption = f"{st.kind} of {with_article(new, new_np.plural)} {prep} {with_article(obj.surface, obj.plural)}"
    else:
        target_caption = f"{st.kind} of {with_article(obj.surface, obj.plural)} with {with_article(new, new_np.plural)}"
    return EditPlan(action="add", target=obj.target, qualifier=obj.qualifier, attribute=obj.attribute,
                    plural=obj.plural, count=obj.count, new_value=new, region_hint=region,
                    source_caption=f"{st.kind} of {with_article(obj.surface, obj.plural)}",
                    target_caption=target_caption, instruction=instruction)


# --- verb handlers ------------------------------------------------------------------------

_PRONOUN_PREFIX_RE = re.compile(r"^(?P<np>all of them|both of them|them all|them both|this one|that one|the whole "
                                r"(?:image|photo|picture|scene|thing)|the entire (?:image|photo|picture|scene)|the "
                                r"(?:image|photo|picture|scene|background colou?r|season|weather|time of day|lighting|"
                                r"colors|colours|sky colou?r)|everything|it|this|that|them|these|those|him|her|both|all)"
                                r"\s+(?P<v>.+)$")
LIGHT_COMPOUNDS = {"traffic", "street", "ceiling", "desk", "head", "tail", "brake", "flash", "night", "fairy",
                   "string", "spot", "moon", "sun", "candle", "lamp", "stop", "porch", "ring", "neon", "sky"}
"""Words that make "light" a noun ("the traffic light green" is not "light green")."""
_INDEFINITE_RE = re.compile(r"\s(?:a|an|some)\s")


def _is_value(v: str) -> bool:
    """Whether text reads as what something becomes (not the rest of a noun phrase)."""
    return (is_attribute_value(v) or is_scene_value(v) or is_removal_value(v)
            or bool(re.match(r"^(?:a|an|some|look|looks|like|into)\s", v)))


def split_object_value(rest: str) -> Optional[tuple[str, str]]:
    """Split "the white car bright red" into ("the white car", "bright red"), "it winter" into ("it", "winter")."""
    rest = rest.strip()
    m = re.match(r"^(?P<np>.+?)\s+(?:to\s+)?(?P<v>(?:look|looks|appear|seem|become|be|like)\s+.+)$", rest)
    if m and not m.group("np").endswith(" not"):
        return m.group("np"), m.group("v")
    m = _PRONOUN_PREFIX_RE.match(rest)
    if m and _is_value(m.group("v")):
        return m.group("np"), m.group("v")
    words = rest.split()
    for i in range(1, len(words)):
        tail = " ".join(words[i:])
        if words[i - 1] in _DETERMINERS or (words[i] in ("light", "dark") and words[i - 1] in LIGHT_COMPOUNDS):
            continue
        if is_attribute_value(tail) or is_removal_value(tail) or is_scene_adjective(tail):
            return " ".join(words[:i]), tail
    m = _INDEFINITE_RE.search(f" {rest} ", 2)
    if m and m.start() > 1:
        return rest[: m.start() - 1].strip(), rest[m.start():].strip()
    if len(words) >= 2:
        for i in range(1, len(words)):
            if is_scene_value(" ".join(words[i:])) and parse_np(" ".join(words[:i])).whole:
                return " ".join(words[:i]), " ".join(words[i:])
        return " ".join(words[:-1]), words[-1]
    return None


_SO_RE = re.compile(r"^(?P<np>.+?)\s+so(?:\s+(?P<adj>(?!that\b|it\b|they\b)[a-z-]+))?(?:\s+that)?\s+"
                    r"(?:it|they|he|she)(?P<link>'s|'re|\s+(?:is|are|looks?|becomes?|appears?|seems?|gets?|"
                    r"will be|would be|turns?)\b)?(?:\s+(?P<after>.+))?$")


def _so_clause(rest: str) -> Optional[tuple[str, str]]:
    """``"the sign so it is blank" -> ("the sign", "blank")``, ``"the car so shiny it glows" -> ("the car",
    "shiny")``, ``"the cat so it faces left" -> ("the cat", "facing left")``, ``"the sign so it reads closed"
    -> ("the sign", "saying closed")``; None when ``rest`` has no such clause."""
    m = _SO_RE.match(rest)
    if not m:
        return None
    if m.group("adj"):
        return m.group("np"), m.group("adj")
    after = (m.group("after") or "").strip()
    if not after:
        return None
    if m.group("link"):
        return m.group("np"), after
    verb, _, x = after.partition(" ")
    if verb in ("says", "reads", "say", "read", "shows", "show"):
        return m.group("np"), f"saying {x}".strip()
    return m.group("np"), _gerund(verb, x)


def _gerund(verb: Optional[str], rest: Optional[str]) -> str:
    """``("faces", "left") -> "facing left"``, ``("glows", "") -> "glowing"``."""
    base = (verb or "").removesuffix("es") if (verb or "").endswith(("shes", "ches", "xes", "sses")) else \
        (verb or "").removesuffix("s")
    word = VERB_STATES.get(base) or (base[:-1] + "ing" if base.endswith("e") and not base.endswith("ee")
                                     else base + "ing")
    return f"{word} {rest}".strip() if rest else word


def _says(np_text: str, value: str, st: _State) -> Understanding:
    """Text on an object ("make the sign say open"): an attribute edit, ``new_value`` "saying open"."""
    value = re.sub(r"^(?:says|reads|read|say)\s+", "saying ", value)
    obj = _object(np_text, st, value, "attribute")
    return obj if isinstance(obj, Clarify) else _attribute(obj, value, st, parse_np(np_text).pronoun)


def _h_change(m: re.Match, st: _State) -> Understanding:
    """turn/change/convert/transform X into/to Y; make X Y; paint/dye X Y."""
    verb, rest = m.group("verb"), m.group("rest").strip()
    colour_verb = bool(re.match(r"(?:paint|colou?r|recolou?r|dye|tint|shade|spray)", verb))
    if re.match(r"^(?:to|into|in to)\s", rest):
        return _change("the image", rest.split(None, 1)[1], st, "into")
    if re.search(r"(?:^|\s)(?:into|in to|to|with|as)$", rest):
        obj = re.sub(r"\s*\b(?:into|in to|to|with|as)$", "", rest) or "it"
        return Clarify(question=f"What should {obj} become? For example: 'turn the cat into a fox'.")
    for sep in (" into ", " in to "):
        if sep in rest:
            np_text, value = rest.split(sep, 1)
            return _change(np_text, value, st, "into")
    so = _so_clause(rest)
    if so:  # "change the sign so it is blank", "make the car so shiny it glows", "turn the cat so it faces left"
        return _says(*so, st) if so[1].startswith("saying ") else _change(so[0], so[1], st, "make")
    sm = re.match(r"^(?P<np>.+?)\s+(?:to\s+)?(?:say|says|read|reads|saying|reading)\s+(?P<x>.+)$", rest)
    if sm and not parse_np(sm.group("np")).whole:  # "make the sign say open", "change the sign to read closed"
        return _says(sm.group("np"), "saying " + sm.group("x"), st)
    lm = re.match(r"^(?P<np>.+?)\s+(?:to\s+|so (?:that )?it (?:looks?|is)\s+|so (?:that )?they (?:look|are)\s+)?"
                  r"(?:look|looks|appear|resemble|seem)\s+(?P<v>.+)$", rest)
    if lm:
        return _change(lm.group("np"), lm.group("v"), st, "like")
    if verb != "make" and " to " in f" {rest} ":
        np_text, value = rest.rsplit(" to ", 1) if " to " in rest else ("", rest[3:])
        if np_text and not re.search(r"\b(?:next|close|left|right)$", np_text):
            return _change(np_text, value, st, "into")
    if colour_verb:
        cm = re.match(r"^(?P<np>.+?)\s+(?:in|with)\s+(?P<v>.+)$", rest)
        if cm and is_attribute_value(cm.group("v")):
            return _change(cm.group("np"), cm.group("v"), st, "colour")
    if re.match(r"^(?:a|an|some|\d+|two|three)\s", rest) and verb in ("paint", "draw", "sketch"):
        return _add(rest, st)
    split = split_object_value(rest)
    if split is None:
        if parse_np(rest).whole or parse_np(rest).pronoun:
            return Clarify(question=f"How should I {verb} it? For example: 'make it winter' or 'make the car red'.")
        if is_scene_value(rest):
            return _global(rest, st)
        return Clarify(question=f"What should {rest} become? For example: '{verb} the {rest} red' or "
                                f"'turn the {rest} into a fox'.")
    return _change(split[0], split[1], st, "colour" if colour_verb else "make")


def _h_replace(m: re.Match, st: _State) -> Understanding:
    """replace X with Y; swap X for Y; substitute Y for X."""
    verb, rest = m.group("verb"), m.group("rest").strip()
    sm = re.match(r"^(?P<a>.+?)\s+(?P<sep>with|for|by|to|into)\s+(?P<b>.+)$", rest)
    if not sm:
        return Clarify(question=f"What should replace {rest}? For example: 'replace {rest} with a lion'.")
    old, new = sm.group("a"), sm.group("b")
    if verb.startswith("substitute") and sm.group("sep") == "for":
        old, new = new, old
    return _change(old, new, st, "into")


def _h_remove(m: re.Match, st: _State) -> Understanding:
    """remove/delete/erase/get rid of X (from Y)."""
    rest = m.group("rest").strip()
    fm = re.match(r"^(?P<np>.+?)\s+(?:from|out of|off(?: of)?)\s+(?P<loc>.+)$", rest)
    if fm and not re.match(r"(?:the\s+)?(?:left|right|top|bottom)\b", fm.group("loc")):
        return _remove(fm.group("np"), st, fm.group("loc"))
    return _remove(rest, st)


def _h_take_off(m: re.Match, st: _State) -> Understanding:
    """take X off (Y); take off X; get X out of Y."""
    np_text = m.group("np") or m.group("np2") or ""
    return _remove(np_text, st, m.group("loc"))


def _h_add(m: re.Match, st: _State) -> Understanding:
    """add/put/place/insert/attach X (on|to|next to ... Y)."""
    return _add(m.group("rest"), st)


def _h_give(m: re.Match, st: _State) -> Understanding:
    """give Y X; give X to Y."""
    rest = m.group("rest").strip()
    tm = re.match(r"^(?P<new>.+?)\s+to\s+(?P<loc>.+)$", rest)
    if tm:
        return _add(tm.group("new"), st, "on", tm.group("loc"))
    pm = re.match(r"^(?P<loc>him|her|it|them|this one|that one|the \w+ one)\s+(?P<new>.+)$", rest)
    if not pm:
        pm = re.match(r"^(?P<loc>.+?)\s+(?P<new>(?:a|an|some|\d+|two|three|a pair of|new|his|her|their)\s.+)$", rest)
    if not pm:
        pm = re.match(r"^(?P<loc>(?:the|this|that|these|those|my|his|her|their|both|all the)\s+(?:[\w-]+s|"
                      + "|".join(sorted(PERSON_WORDS)) + r"))\s+(?P<new>.+)$", rest)
        if pm and singularize(pm.group("loc").split()[-1]) == pm.group("loc").split()[-1] \
                and pm.group("loc").split()[-1] not in PERSON_WORDS:
            pm = None
    if pm:
        return _add(pm.group("new"), st, "on", pm.group("loc"))
    words = rest.split()
    if len(words) >= 2:
        return _add(words[-1], st, "on", " ".join(words[:-1]))
    return Clarify(question=f"Who or what should get {rest}? For example: 'give the man sunglasses'.")


def _h_same(m: re.Match, st: _State) -> Understanding:
    """do the same to X / X too: repeat the last plan on another object."""
    lp = st.ctx.last_plan
    np_text = m.group("np")
    if lp is None or lp.action == "global":
        return Clarify(question=f"What should I do with {np_text}?")
    if lp.action == "remove":
        return _remove(np_text, st)
    if lp.action == "add":
        return _add(lp.new_value or "", st, (lp.region_hint or "on").split()[0], np_text)
    if lp.action == "attribute":
        obj = _object(np_text, st, lp.new_value or "", "attribute")
        return obj if isinstance(obj, Clarify) else _attribute(obj, lp.new_value or "", st, True)
    obj = _object(np_text, st, lp.new_value or "", "replace")
    return obj if isinstance(obj, Clarify) else _replace(obj, lp.new_value or "", st, True)


def _h_state(verb: str, np_text: str, st: _State) -> Understanding:
    """blur / brighten / fix / open X: a state of X ("blur the background" -> attribute "blurred"); of the
    whole picture a global edit ("brighten the photo")."""
    value = VERB_VALUES[verb]
    np = parse_np(np_text)
    if np.whole or (np.pronoun and is_scene_value(value)):
        return _global(value, st, instruction=st.clause)
    return _change(np_text, value, st, "make")


def _h_shave(np_text: str, st: _State) -> Understanding:
    """shave (off) the beard -> remove it; shave the man -> the man clean-shaven."""
    np = parse_np(np_text)
    if (np.target or "").split()[-1:] and np.target.split()[-1] in HAIR_WORDS:
        return _remove(np_text, st)
    return _change(np_text, "clean-shaven", st, "make")


def _h_style(m: re.Match, st: _State) -> Understanding:
    """as a watercolor painting / in the style of Van Gogh / cartoon style."""
    value = re.sub(r"^(?:as|like|into)\s+", "", st.clause)
    verb = "turn it into" if re.match(r"^(?:a|an)\s", value) else "make it"
    return _global(value, st, instruction=f"{verb} {value}")


_REMOVE_VERBS = (r"remove|delete|erase|eliminate|get rid of|rid (?:the (?:image|photo|picture) |it )?of|cut out|"
                 r"crop out|edit out|photoshop out|paint out|wipe out|wipe away|wipe off|wipe|rub out|hide|lose|ditch|"
                 r"take away|take out|strip away|scrub out|clear away|cut|omit|exclude|eradicate|banish|kill")
EDIT_PATTERNS: list[tuple[re.Pattern, Callable[[re.Match, _State], Understanding]]] = [
    (re.compile(r"^(?:crop|rotate|flip|resize|zoom|scale|mirror|upscale|downscale|straighten)(?!\s+(?:out|away))\b.*$"),
     lambda m, st: Chat(text="I can't crop, rotate, flip or resize; I change what is in the picture, e.g. "
                             + EXAMPLES + ".")),
    (re.compile(r"^(?:turn|switch) (?P<w>on|off) (?P<x>.+)$|^(?:turn|switch) (?P<x2>.+?) (?P<w2>on|off)$"),
     lambda m, st: _global(f"with {m.group('x') or m.group('x2')} {m.group('w') or m.group('w2')}", st,
                           instruction=st.clause)),
    (re.compile(r"^fill (?P<loc>.+?) (?:up )?with (?P<x>.+)$"), lambda m, st: _add(m.group("x"), st, "in", m.group("loc"))),
    (re.compile(r"^(?:cover|coat) (?P<np>.+?) (?:with|in) (?P<x>.+)$"),
     lambda m, st: _change(m.group("np"), f"covered with {m.group('x')}", st)),
    (re.compile(r"^(?:apply|use|give it|put on|add) (?P<x>(?:an? |some )?[\w\s-]*?(?:filter|effect|look|style|tone|"
                r"tint|grading|vibe|aesthetic))$"), lambda m, st: _global(strip_article(m.group("x")), st,
                                                                          instruction=st.clause)),
    (re.compile(r"^shave(?: off)? (?P<np>.+)$"), lambda m, st: _h_shave(m.group("np"), st)),
    (re.compile(r"^(?P<verb>" + "|".join(sorted(VERB_VALUES, key=len, reverse=True)) + r")(?: up| out)? (?P<np>.+)$"),
     lambda m, st: _h_state(m.group("verb"), m.group("np"), st)),
    (re.compile(r"^(?:take|get|pull|knock|move) (?P<np>.+?) (?:off|out|away)(?: (?:of|from) (?P<loc>.+))?$|"
                r"^(?:take|get|pull|knock) (?:off|out|away) (?P<np2>.+?)(?: from (?P<loc2>.+))?$"),
     lambda m, st: _remove(m.group("np") or m.group("np2") or "", st, m.group("loc") or m.group("loc2"))),
    (re.compile(r"^(?:take|get|pull|knock) (?P<np>.+?) off (?P<loc>.+)$"), _h_take_off),
    (re.compile(rf"^(?:{_REMOVE_VERBS})\s+(?P<rest>.+)$"), _h_remove),
    (re.compile(r"^make (?P<np>.+?) (?:disappear|vanish|go away|invisible|gone)$"),
     lambda m, st: _remove(m.group("np"), st)),
    (re.compile(r"^(?P<verb>replace|substitute|exchange|swap(?: out)?|switch out|trade)\s+(?P<rest>.+)$"), _h_replace),
    (re.compile(r"^give\s+(?P<rest>.+)$"), _h_give),
    (re.compile(r"^(?:add|put|place|insert|attach|stick|plant|hang|include|drop in|throw in|pop|position|lay|mount|"
                r"install|build|create|generate|spawn|bring in|introduce|draw in|paint in)\s+(?P<rest>.+)$"), _h_add),
    (re.compile(r"^(?:do|apply) (?:the )?same(?: thing| edit| change)? (?:to|for|with|on) (?P<np>.+)$|"
                r"^same (?:for|with|to) (?P<np2>.+)$"),
     lambda m, st: _h_same(_Group(np=m.group("np") or m.group("np2")), st)),
    (re.compile(r"^(?P<verb>turn|change|transform|convert|morph|switch|alter|modify|make|paint|colou?r|recolou?r|dye|"
                r"tint|shade|spray|edit|render|restyle|redo|draw|sketch)\s+(?P<rest>.+)$"), _h_change),
    (re.compile(r"^(?:as|like|into|in the style of|in (?:a|an)\s+[\w\s-]*style|(?:in\s+)?[\w\s-]+ style|style of)\b.*$"),
     _h_style),
]
"""Edit verbs, tried in order; the first that matches builds the answer."""


class _Group:
    """A tiny stand-in for ``re.Match`` so a handler can be reused with other text."""

    def __init__(self, **groups: Optional[str]) -> None:
        self._groups = groups

    def group(self, name: str) -> Optional[str]:
        return self._groups.get(name)
