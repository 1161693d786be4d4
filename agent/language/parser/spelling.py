"""Typos: a spelling corrector over the parser's own vocabulary and the photo's caption.

"chnage the backgorund to bleu" -> "change the background to blue". A word is corrected only when
it is unknown (not in the vocabulary below, not in the caption) and exactly one known word of at
least four letters lies within one edit of it (Damerau-Levenshtein: a letter dropped, added,
changed, or two neighbours swapped; two edits for words of eight letters or more). So an unknown
real word keeps its spelling unless it is one slip away from a single word the parser knows:
"zebra", "gazebo" or "tiramisu" stay as typed.

The vocabulary is what the parser itself reads (the lexicons, the edit verbs, every word of its
command, chat, filler and rewrite patterns), the words of the caption, and ``COMMON_NOUNS`` (things
people edit in photos), so those nouns are neither corrected nor corrected *into* by mistake.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable, Optional

from agent.language.parser import conversation, lexicon, patterns, rules
from agent.language.parser.words import ADJECTIVES

COMMON_NOUNS = set("""
apple arm baby background bag ball balloon banana basket bear bed bench bicycle bike bird boat book bottle bowl
box boy branch bread bridge brush building bus butterfly cake camera candle cap car carpet castle cat chair cheese
child church city clock cloud coat computer cookie couch cow crown cup curtain deer desk dish dog doll door dragon
dress duck eagle elephant eye face fence field fish flag floor flower fork fox frog fruit garden giraffe girl glass
glove goat grape guitar hair hand hat head helmet hill horse house island jacket jar key kite knife ladder lake lamp
laptop leaf lemon lion lizard man mask mirror monkey moon motorcycle mountain mouse mug nose orange owl painting
pan panda paper parrot path pear pen pencil penguin person phone piano picture pig pillow pine pizza plane plant
plate pond pot rabbit river road rock roof rose rug sand scarf sea sheep shelf shirt shoe sign sink sky snake
sofa spoon squirrel star statue stool street sun sunflower sweater table teddy tent tie tiger tire tomato tower
towel toy train tree truck tulip turtle umbrella vase wall watch water wave whale wheel window wine wolf woman
zebra bunny kitten puppy cub calf lamb pony donkey camel cheetah leopard hippo rhino kangaroo koala sloth otter
seal dolphin shark octopus crab lobster snail bee ant spider bat swan goose hen rooster chicken pigeon crow
raven hawk falcon flamingo peacock ostrich beard glasses sunglasses necklace earring ring bracelet boot sock
skirt jeans hoodie uniform suit vest gown tiara scarf mustache smile tattoo crowd team family couple friend
baker farmer pilot nurse king queen prince princess wizard witch robot alien ghost zombie pirate ninja knight
disc disk circle square triangle ball cube sphere block cone pyramid stripe dot spot shape logo text word
letter number banner poster frame wallpaper wood lawn bush hedge flowerbed meadow beach desert jungle forest
snowman fireplace stairs staircase balcony porch garage gate chimney fountain bridge tunnel highway sidewalk
cupcake donut doughnut sandwich burger salad soup pasta steak egg carrot potato onion pepper cucumber berry
strawberry cherry peach plum melon watermelon pineapple coconut mango kiwi avocado broccoli corn mushroom
teapot kettle fridge oven stove microwave television tv screen keyboard monitor speaker headphone lantern
""".split())
"""Nouns of things in photos: known words, never "corrected" (a typo is corrected to a noun of the caption)."""

BASIC_WORDS = set("""
about above across after again against along also always am among an and another any anything are around as at
away back be because been before behind being below beneath beside between both but by can could did do does doing
done down during each either else even ever every few for from further get gets getting go goes going gone got had
has have having he her here hers him his how if in into is it its itself just keep kept least less let like made
make makes making many may me might mine more most much must my near neither never next no nor not nothing now of
off on once one only onto or other our out over own per put quite rather same see seen she should since so some
something still such than that the their them then there these they thing things this those though through to too
toward towards under until up upon us use used very was we well were what when where which while who whom whose why
will with within without would yet you your yours line lines ground power round wire wires pole poles light lights
look looks looked looking give gave given take took taken come came become became turned changed added removed
""".split())
"""Common English words the parser's own vocabulary may lack ("made", "around", "ground"): never corrected."""

_WORD_RE = re.compile(r"[a-z]+")


@lru_cache(maxsize=1)
def targets() -> frozenset[str]:
    """The words a typo may be corrected *to*: edit and command verbs, looks (colours, materials, states),
    scene words and a few words people slip on ("that", "with", "right", "background"). Object nouns
    come from the caption only (``correct``): a new object ("into a tram") is not the photo's, and
    correcting it to a known noun ("team") would change what the person asked for."""
    words = set(ADJECTIVES) | lexicon.SCENE_ADJECTIVES | lexicon.SCENE_NOUNS | lexicon.WHOLE_IMAGE
    words |= rules.PLACE_NOUNS | set(_WORD_RE.findall(patterns.EDIT_VERBS)) | lexicon.PERSON_WORDS
    words |= {w for p in lexicon.SCENE_RE.pattern.split("|") for w in _WORD_RE.findall(p)}
    words |= {"undo", "redo", "again", "instead", "please", "that", "this", "with", "into", "them", "there", "right",
              "left", "middle", "other", "background", "foreground", "stronger", "weaker", "softer", "less", "more",
              "mask", "show", "cancel", "version", "bigger", "smaller", "whole", "image", "photo", "picture"}
    return frozenset(w for w in words if len(w) >= 3)


@lru_cache(maxsize=1)
def vocabulary() -> frozenset[str]:
    """Every word the parser reads: lexicons, edit verbs, the words of its patterns, common nouns."""
    words: set[str] = set(COMMON_NOUNS) | ADJECTIVES | rules.PLACE_NOUNS | rules.LIGHT_COMPOUNDS
    words |= set(_WORD_RE.findall(conversation.HEDGE_RE.pattern))
    for name in dir(lexicon):
        value = getattr(lexicon, name)
        if isinstance(value, (set, frozenset)):
            words |= {w for item in value for w in _WORD_RE.findall(str(item))}
        elif isinstance(value, dict):
            words |= {w for k, v in value.items() for w in _WORD_RE.findall(f"{k} {v}")}
    sources = [p.pattern for p, _ in patterns.COMMAND_PATTERNS + patterns.CHAT_PATTERNS + patterns.REWRITES]
    sources += [patterns.FILLER_RE.pattern, patterns.TRAILING_RE.pattern, patterns.EDIT_VERBS, lexicon.SCENE_RE.pattern]
    sources += [p.pattern for p, _ in rules.EDIT_PATTERNS]
    for source in sources:  # the literal words of a regex: runs of letters outside escapes and classes
        bare = re.sub(r"\\[a-zA-Z]|\[[^\]]*\]|\(\?P<\w+>", " ", source)
        for variant in (re.sub(r"([a-z])\?", r"\1", bare), re.sub(r"[a-z]\?", "", bare)):  # colou?r: both
            words |= {w for w in _WORD_RE.findall(variant) if len(w) > 1}
    return frozenset(words)


def _within_one(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` differ by one edit (Damerau-Levenshtein 1: drop, add, change, swap)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1:]


def _distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance (edits with neighbour swaps), for the longer words."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def suggest(word: str, known: Iterable[str]) -> Optional[str]:
    """The one known word ``word`` is a slip of, or None (known, too short, none or several near)."""
    if len(word) < 3 or not word.isalpha():
        return None
    if len(word) == 3:  # three letters: only two neighbours swapped ("dgo", "teh")
        near = {k for k in known if len(k) == 3 and sorted(k) == sorted(word) and _within_one(word, k)}
        return near.pop() if len(near) == 1 else None
    near = {k for k in known if len(k) >= 4 and _within_one(word, k)}
    if not near and len(word) >= 8:
        near = {k for k in known if len(k) >= 6 and abs(len(k) - len(word)) <= 2 and _distance(word, k) <= 2}
    if len(near) <= 1:
        return near.pop() if near else None

    def likeness(k: str) -> tuple[bool, bool, bool]:  # a swap, then the same ends, then a letter left out
        return sorted(k) == sorted(word), k[0] == word[0] and k[-1] == word[-1], len(k) > len(word)

    ranked = sorted(near, key=likeness, reverse=True)
    return ranked[0] if likeness(ranked[0]) > likeness(ranked[1]) else None


def correct(text: str, caption: Optional[str] = None) -> tuple[str, list[tuple[str, str]]]:
    """``(text with its typos corrected, [(typo, correction)])``; text without typos comes back as it was.

    ``text`` is the cleaned, lower-case message; ``caption`` adds the photo's own words to the vocabulary.
    """
    said = set(_WORD_RE.findall((caption or "").lower()))
    known = vocabulary() | BASIC_WORDS | said
    aims = targets() | {w for w in said if len(w) >= 3}
    fixed: list[tuple[str, str]] = []

    def fix(m: re.Match) -> str:
        word = m.group(0)
        if word in known or _plural_known(word, known):
            return word
        better = suggest(word, aims)
        if better is None:
            return word
        fixed.append((word, better))
        return better

    out = re.sub(r"(?<!['\w])[a-z]+(?![\w'])", fix, text)
    for typo, word in list(fixed):  # "the mane": after a determiner a noun is meant, never a verb
        if word in _verbs() and re.search(rf"\b(?:{_DETERMINERS})\s+{typo}\b", text):
            out = _restore(out, text, typo, word)
            fixed.remove((typo, word))
    return out, fixed


_DETERMINERS = "the|a|an|this|that|these|those|his|her|its|their|my|your|our"


@lru_cache(maxsize=1)
def _verbs() -> frozenset[str]:
    """The edit and command verbs ("make", "remove", "undo"): never what a word after "the" was meant to be."""
    return frozenset(_WORD_RE.findall(patterns.EDIT_VERBS)) | {"undo", "redo", "retry", "show", "cancel"}


def _restore(out: str, text: str, typo: str, word: str) -> str:
    """Put ``typo`` back where it followed a determiner (the corrected text has ``word`` there)."""
    said, fixed_words = text.split(), out.split()
    for i, w in enumerate(said):
        if w == typo and i and re.fullmatch(_DETERMINERS, said[i - 1]) and i < len(fixed_words):
            fixed_words[i] = typo
    return " ".join(fixed_words)


def _plural_known(word: str, known: frozenset[str] | set[str]) -> bool:
    """Whether ``word`` is a plural or verb form of a known word ("discs", "changes", "berries", "painted")."""
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e"),
                         ("er", ""), ("est", ""), ("ly", ""), ("ish", ""), ("ish", "e"), ("d", "")):
        if word.endswith(suffix) and word[: -len(suffix)] + repl in known:
            return True
    return False
