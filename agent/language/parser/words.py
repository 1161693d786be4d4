"""Morphology and context: ``ParseContext`` (what the conversation knows), singular / plural,
articles, value classes (attribute, scene, removal) and the noun-phrase reader ``parse_np``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from agent.language.parser.lexicon import (
    ADJ_SUFFIX_RE, COLOURS, IRREGULAR_PLURALS, MASS_NOUNS, MATERIALS, MULTIWORD_STATES, NOT_PLURAL_RE,
    NUMBER_WORDS, PART_WORDS, PLURAL_ONLY, PRONOUNS_PLURAL, PRONOUNS_SINGULAR, SCENE_ADJECTIVES, SCENE_NOUNS,
    SCENE_RE, SINGULAR_TO_PLURAL, SIZE_WORDS, STATES, TEXTURES, VALUE_MODIFIERS, VALUE_PREFIX_RE,
    WHOLE_IMAGE_RE, _DETERMINERS, _NUM, _PLURAL_DETS,
)
from agent.language.plan import EditPlan, extract_qualifier


@dataclass
class ParseContext:
    """What the conversation knows: the last plan (for "it"), whether an image is loaded, its caption.

    ``referent``: what "it" is, in words, when the version on screen was made by a region edit
    ("the fox you just made (the region the last edit changed)"); the graph fills it in.
    """

    last_plan: Optional[EditPlan] = None
    has_image: bool = True
    caption: Optional[str] = None
    referent: Optional[str] = None
    photo: Optional[str] = None  # the image on screen (a path in the image store), for a vision LLM


def singularize(word: str) -> str:
    """``cats -> cat``, ``people -> person``, ``leaves -> leaf``, ``boxes -> box``; leaves singulars alone."""
    w = word.lower()
    if w in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[w]
    if w in PLURAL_ONLY or len(w) <= 3 or NOT_PLURAL_RE.search(w) or not w.endswith("s"):
        return w
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if re.search(r"(?:sses|xes|ches|shes|zzes)$", w):
        return w[:-2]
    if w.endswith("oes"):
        return w[:-1]
    return w[:-1]


def pluralize(phrase: str) -> str:
    """``cat -> cats``, ``person -> people``, ``box -> boxes``; pluralises the last word of a phrase."""
    words = phrase.split()
    if not words:
        return phrase
    w = words[-1]
    if w in SINGULAR_TO_PLURAL:
        p = SINGULAR_TO_PLURAL[w]
    elif w in PLURAL_ONLY or w in ("sheep", "fish", "deer") or (w.endswith("s") and singularize(w) != w):
        p = w
    elif re.search(r"[^aeiou]y$", w):
        p = w[:-1] + "ies"
    elif re.search(r"(?:s|x|z|ch|sh)$", w):
        p = w + "es"
    else:
        p = w + "s"
    return " ".join(words[:-1] + [p])


def with_article(phrase: str, plural: bool = False) -> str:
    """``'cat' -> 'a cat'``, ``'apple' -> 'an apple'``; plurals and determined phrases unchanged."""
    phrase = phrase.strip()
    last = phrase.split()[-1] if phrase else ""
    if last in PLURAL_ONLY or last in MASS_NOUNS:
        return phrase
    if not phrase or plural or re.match(rf"^(?:a|an|the|some|any|my|his|her|their|its|our|your|this|that|these|"
                                        rf"those|{_NUM}|\d+)\b", phrase):
        return phrase
    return ("an " if re.match(r"^[aeiou]", phrase) and not re.match(r"^(?:uni|use|eu|one)", phrase)
            else "a ") + phrase


def strip_article(phrase: str) -> str:
    """``'a fox' -> 'fox'``, ``'the red one' -> 'red one'``."""
    return re.sub(r"^(?:a|an|the|some)\s+", "", phrase.strip())


def _comparatives(words: set[str]) -> set[str]:
    """Add comparative/superlative forms: red -> redder, reddest; shiny -> shinier; wide -> wider."""
    out = set(words)
    for w in words:
        if "-" in w or len(w) < 3:
            continue
        if w.endswith("e"):
            out |= {w + "r", w + "st"}
        elif w.endswith("y"):
            out |= {w[:-1] + "ier", w[:-1] + "iest"}
        elif re.search(r"[^aeiou][aeiou][bdgmnpt]$", w):
            out |= {w + w[-1] + "er", w + w[-1] + "est"}
        out |= {w + "er", w + "est"}
    return out


ADJECTIVES = _comparatives(COLOURS | MATERIALS | TEXTURES | SIZE_WORDS | STATES)
"""Words that make a value an attribute change (and a modifier an identifying attribute)."""


def is_attribute_value(value: str) -> bool:
    """Whether a value is a colour / material / texture / size / state ("red", "made of gold", "much bigger",
    "upside down")."""
    v = value.strip().lower()
    v = re.sub(r"^(?:in|into|to|a shade of|the colou?r|colou?red)\s+", "", v)
    if not v:
        return False
    if VALUE_PREFIX_RE.match(v) or v in MULTIWORD_STATES or re.match(r"^(?:saying|reading|facing|showing)\s", v):
        return True
    if re.fullmatch(r"(?:all |in )?(?:different|various|random|many|multiple|lots of) colou?rs", v):
        return True
    words = [w for w in re.split(r"[\s,]+", v) if w]
    if len(words) == 1 and ADJ_SUFFIX_RE.match(words[0]):
        return True
    if any(w in ADJECTIVES or ADJ_SUFFIX_RE.match(w) for w in words):
        return all(w in ADJECTIVES or w in VALUE_MODIFIERS or ADJ_SUFFIX_RE.match(w) for w in words)
    return False


def is_scene_adjective(value: str) -> bool:
    """Whether a value is a weather / light adjective ("cloudy", "much darker"), an attribute of an object."""
    found = [w for w in re.split(r"[\s,]+", value.strip().lower()) if w]
    return any(w in SCENE_ADJECTIVES for w in found) and all(w in SCENE_ADJECTIVES or w in VALUE_MODIFIERS
                                                             for w in found)


def is_scene_np(np: "NounPhrase") -> bool:
    """Whether a noun phrase names the whole scene rather than an object ("the day", "the summer landscape")."""
    if np.whole:
        return True
    if not np.target:
        return False
    found = np.target.split()
    return found[-1] in SCENE_NOUNS and all(w in SCENE_NOUNS or w in SCENE_ADJECTIVES or is_scene_value(w)
                                            for w in found + (np.attribute or "").split())


def is_scene_value(value: str) -> bool:
    """Whether a value names a whole-scene change (season, weather, time, light, style)."""
    return bool(SCENE_RE.search(value.lower()))


def is_removal_value(value: str) -> bool:
    """Values that mean the object should go ("invisible", "disappear", "gone")."""
    return bool(re.fullmatch(r"(?:(?:be |look )?(?:invisible|gone|removed|deleted|erased|vanish|disappear|go away|"
                             r"vanished|disappeared|not there|nonexistent))", value.strip()))


def caption_kind(caption: Optional[str]) -> str:
    """The kind of picture a caption describes: "a painting of a cat" -> "a painting"; default "a photo"."""
    if caption:
        m = re.match(r"^\s*((?:an?|the)\s+(?:[\w-]+\s+){0,3}?(?:photo|photograph|painting|drawing|sketch|illustration|"
                     r"picture|image|cartoon|render|rendering|watercolou?r|poster|screenshot|close[ -]?up|"
                     r"snapshot|selfie|portrait))\s+of\b", caption.lower())
        if m:
            return re.sub(r"\s+", " ", m.group(1)).replace("the ", "a ", 1) if m.group(1).startswith("the ") \
                else re.sub(r"\s+", " ", m.group(1))
    return "a photo"


# ------------------------------------------------------------------------------------------
# noun phrases
# ------------------------------------------------------------------------------------------


@dataclass
class NounPhrase:
    """What a noun phrase names: the grounding target and how to pick it among several."""

    target: Optional[str] = None  # singular grounding phrase: "cat", "coffee table"
    surface: str = ""  # for captions: "white cats"
    attribute: Optional[str] = None  # identifying adjective(s): "white"
    qualifier: Optional[str] = None
    plural: bool = False
    count: Optional[int] = None
    pronoun: bool = False  # "it", "them", "the left one": refers to the last plan's object
    whole: bool = False  # "the image", "everything": the whole picture
    text: str = ""  # the phrase as written

    @property
    def the(self) -> str:
        """``'the white cat'`` / ``'the cats'``: the phrase to use in an instruction."""
        return f"the {self.surface}" if self.surface else "it"


_PP_CUT_RE = re.compile(r"\s+(?:in front of|next to|on top of|close to|to the (?:left|right) of|on the (?:left|right) of|"
                        r"near|beside|behind|under|underneath|below|beneath|above|over|on|in|at|with|wearing|holding|"
                        r"carrying|that|which|who|from|by|inside|outside|against|along|around|between|among|sitting|"
                        r"standing|lying|looking)\s+.*$")
_POSSESSOR_RE = re.compile(r"^(?:(?:the|a|an|my|his|her|their|this|that)\s+)?(?:[\w-]+\s+)?[\w-]+(?:'s|s')\s+")


def parse_np(text: str) -> NounPhrase:
    """Read a noun phrase: "the second white cat from the left" -> target cat, attribute white, 2nd from left."""
    raw = re.sub(r"[^\w\s'-]", " ", text.lower())
    raw = re.sub(r"\s+", " ", raw).strip(" '-")
    np = NounPhrase(text=raw)
    if not raw:
        return np
    if raw in PRONOUNS_SINGULAR or raw in PRONOUNS_PLURAL:
        np.pronoun, np.plural = True, raw in PRONOUNS_PLURAL
        np.count = {"both": 2, "both of them": 2, "them both": 2, "the two": 2, "the three": 3,
                    "all three": 3, "all three of them": 3, "all four of them": 4}.get(raw)
        return np
    if WHOLE_IMAGE_RE.match(raw):
        np.whole = True
        return np
    qualifier, rest = extract_qualifier(raw)
    np.qualifier = qualifier
    # "the biggest of the two dogs", "the second of the three cats": one of a set the count describes
    one_of = bool(qualifier) and bool(re.match(r"^(?:the\s+)?(?:one\s+)?(?:of|among)\s+", rest))
    if one_of:
        rest = re.sub(r"^(?:the\s+)?(?:one\s+)?(?:of|among)\s+", "", rest)
    rest = _PP_CUT_RE.sub("", rest)
    of = re.match(r"^(?P<head>.+?)\s+of\s+(?:the|a|an|his|her|their|its|my|this|that|these|those)\s+\S.*$", rest)
    last = of.group("head").split()[-1] if of else ""
    if of and not (last in PART_WORDS or last in NUMBER_WORDS or last in _DETERMINERS or last.isdigit()
                   or last in ("most", "many", "none", "each", "either", "neither")):  # "the shirt of the man"
        rest = of.group("head")
    rest = _POSSESSOR_RE.sub("", rest)
    words = rest.split()
    plural_det = False
    while words:
        w = words[0]
        two = " ".join(words[:2]) if len(words) > 2 else ""
        three = " ".join(words[:3]) if len(words) > 3 else ""
        if three in NUMBER_WORDS:
            np.count, words = NUMBER_WORDS[three], words[3:]
        elif two in NUMBER_WORDS and two != "one of":
            np.count, words = NUMBER_WORDS[two], words[2:]
        elif w in ("one", "1") and len(words) > 1 and words[1] == "of":
            words = words[2:]
        elif (w in NUMBER_WORDS or w.isdigit()) and len(words) > 1 and w not in ("once", "twice", "thrice"):
            np.count, words = (NUMBER_WORDS.get(w) or int(w)), words[1:]
        elif w in _DETERMINERS:
            plural_det |= w in _PLURAL_DETS
            if w == "both":
                np.count = 2
            words = words[1:]
        else:
            break
    if not words and np.qualifier:
        return np  # a pure location: "the top left corner", "the left"
    if not words or words in (["one"], ["ones"]):
        np.pronoun = True
        np.plural = plural_det or words == ["ones"] or bool(np.count and np.count > 1)
        return np
    if " ".join(words) in PRONOUNS_SINGULAR | PRONOUNS_PLURAL:
        np.pronoun, np.plural = True, " ".join(words) in PRONOUNS_PLURAL
        return np
    head, mods = words[-1], words[:-1]
    attrs = [m for m in mods if m in ADJECTIVES or ADJ_SUFFIX_RE.match(m)]
    compound = [m for m in mods if m not in attrs]
    single = singularize(head)
    np.plural = plural_det or (single != head and head not in PLURAL_ONLY) or bool(np.count and np.count > 1)
    if np.count == 1:
        np.count = None
    if one_of:
        np.plural, np.count = False, None
    np.attribute = " ".join(attrs) or None
    np.target = " ".join(compound + [single])
    np.surface = " ".join(attrs + compound + [head if np.plural and single != head else
                                              (pluralize(single) if np.plural and head == single
                                               and head not in ("sheep", "fish", "deer") and head not in PLURAL_ONLY
                                               else head)])
    return np
