"""The built-in offline parser: one user message -> ``EditPlan`` | ``Command`` | ``Clarify`` | ``Chat``.

Used when no LLM is configured (and as the LLM's fallback). It is rule based and reads real
phrasing; the steps of ``parse`` are:

1. clean: unicode-normalise, lower-case, drop emoji and markup, cut very long input;
2. split into sentences and clauses; parse the first clause that is an edit or a command
   (``split_instructions`` exposes the clauses, so a caller can queue the rest);
3. refuse prompt-injection text, answer greetings / help / thanks (``Chat``);
4. conversation commands, matched as whole utterances (``COMMAND_PATTERNS``): undo / redo /
   show_mask / retry / stronger / weaker / other_candidate / cancel;
5. rewrite questions and wishes into imperatives (``REWRITES``): "what if the cake were made of
   strawberry" -> "make the cake made of strawberry", "the car should be red" -> "make the car red";
6. match an edit verb (``EDIT_PATTERNS``) and build the plan from the noun phrase and the value:
   remove / add / replace / attribute (colour, material, texture, size, state) / global (scene
   words: season, weather, time of day, light, photo style, art style);
7. follow-ups: a pronoun ("it", "them", "the left one") refers to the last plan's object; with no
   last plan an object-level pronoun gets a ``Clarify``, a scene-level one ("make it winter") a
   global edit (the CMU "no subject -> InstructPix2Pix" rule).

Qualifiers inside noun phrases are normalised by ``agent.plan.extract_qualifier``; see the
vocabulary in ``agent.plan``. ``parse`` never raises.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Callable, Optional

from agent.plan import (
    ORIGINAL_STEPS, Chat, Clarify, Command, EditPlan, Understanding, extract_qualifier, normalize_qualifier,
)

log = logging.getLogger(__name__)

MAX_CHARS = 500
"""Characters of a message the parser reads; longer messages are cut at a word boundary."""
TOO_LONG = 2000
"""Beyond this, a message that does not start with an instruction gets a "too long" reply."""

EXAMPLES = "'turn the cat into a fox', 'make the car red', 'remove the lamp', 'make it winter'"

# ------------------------------------------------------------------------------------------
# lexicons
# ------------------------------------------------------------------------------------------

COLOURS = set("""
red orange yellow green blue purple violet pink brown black white gray grey golden gold silver beige
tan turquoise teal cyan magenta maroon navy crimson scarlet lime olive indigo lavender lilac mint peach
coral cream ivory bronze copper khaki burgundy rainbow multicolored multicoloured colorful colourful
blond blonde ginger auburn brunette aqua amber emerald ruby sapphire charcoal fuchsia mauve rust
""".split())
MATERIALS = set("""
wooden wood metal metallic steel iron glass stone marble granite plastic leather wool woollen woolen
knitted brick concrete paper cardboard ice icy crystal diamond fur velvet denim cotton silk rubber clay
ceramic porcelain chocolate candy bamboo wicker straw chrome jade lego golden silver bronze copper
""".split())
TEXTURES = set("""
striped stripy spotted spotty dotted polka-dot polka checkered chequered plaid tartan floral camouflage
camo shiny matte glossy rusty fluffy furry hairy smooth rough wet dry dirty muddy clean dusty new broken
cracked frozen burnt burned transparent sparkly glittery glowing pixelated wrinkled torn melting melted
patterned textured sparkling bald curly straight wavy long short shaved bearded moldy mouldy rotten ripe
unripe fresh cooked raw neon metallic fuzzy spiky scaly feathered feathery leafy bare blooming flowering
""".split())
SIZE_WORDS = set("""
big bigger biggest large larger small smaller tiny huge enormous giant gigantic little tall taller short
shorter long longer wide wider thin thinner fat fatter slim slimmer skinny narrow thick thicker
""".split())
STATES = set("""
clear sharp pretty beautiful ugly colorful shiny elegant cozy messy tidy wild tame
burning flying swimming singing yawning shining dancing jumping running sitting standing frowning winking
happy sad smiling angry surprised asleep sleeping awake old older young younger elderly scary cute open
closed lit empty full fancy modern futuristic ancient antique evil robotic mechanical ghostly muscular
fit hungry tired laughing crying shocked scared calm serious sick healthy wounded injured dead alive
""".split())
VALUE_MODIFIERS = set("""
more less very really much slightly bit little extra super even too darker lighter brighter deeper
paler light dark bright pale deep pastel vivid dull hot baby sky royal forest blood jet pitch off
navy shade shades of a and or color colour colored coloured toned tinted somewhat quite
""".split())
VALUE_PREFIX_RE = re.compile(r"^(?:made (?:out )?of|covered (?:in|with)|full of|filled with|wrapped in|"
                             r"dressed in|painted|coated (?:in|with)|decorated with|dusted with)\b")
ADJ_SUFFIX_RE = re.compile(r"^[a-z-]+(?:ish|-colou?red|-toned|-looking|-haired|-eyed)$")

SCENE_RE = re.compile(r"\b(?:" + "|".join(sorted("""
winter wintry wintery summer summery autumn autumnal fall spring springtime snow snowy snowing rain rainy
raining fog foggy misty mist stormy storm thunderstorm cloudy overcast sunny sunshine night nighttime
night-time midnight day daytime daylight sunset sunrise dawn dusk evening morning twilight
bright brighter brightness dark darker darkness dim dimmer warm warmer cool cooler cold colder hot
vintage retro old older aged sepia grayscale greyscale monochrome saturated desaturated saturation
vibrant contrast sharper hdr cinematic dramatic moody gloomy cheerful spooky eerie apocalyptic
post-apocalyptic underwater flooded painting painted watercolor watercolour oil acrylic sketch sketched
drawing drawn pencil charcoal cartoon cartoonish anime manga pixel comic illustration illustrated
impressionist impressionism cubist cubism surreal surrealist abstract gogh monet picasso rembrandt dali
warhol hokusai ukiyo-e ghibli pixar disney cyberpunk steampunk fantasy sci-fi render rendering
claymation mosaic style styled photorealistic noir polaroid vaporwave synthwave halloween christmas
lighting exposure lomo film filmic grainy sunlit moonlit candlelit golden-hour season weather
""".split(), key=len, reverse=True)) + r"|black and white|black-and-white|golden hour|van gogh|pop art|"
                      r"stained glass|night time|3d|lens flare|bokeh)\b")
"""Words that describe the whole scene (season, weather, time, light, photo or art style)."""

STRONG_SCENE_RE = re.compile(r"\b(?:black and white|black-and-white|grayscale|greyscale|monochrome|sepia|vintage|"
                             r"retro|winter|summer|autumn|night|sunset|sunrise|painting|sketch|cartoon|style)\b")
"""Scene words that win over an attribute reading: "make it black and white" is a photo style."""

NOT_COMPARATIVES = {"water", "paper", "silver", "copper", "leather", "tiger", "flower", "monster", "spider",
                    "computer", "tower", "river", "soldier", "teacher", "dancer", "singer", "ladder", "burger"}
"""Words ending in -er that are nouns, not comparatives."""

VERB_STATES = {"smile": "smiling", "laugh": "laughing", "cry": "crying", "sleep": "sleeping", "frown": "frowning",
               "wink": "winking", "run": "running", "jump": "jumping", "dance": "dancing", "sit": "sitting",
               "stand": "standing", "fly": "flying", "swim": "swimming", "sing": "singing", "yawn": "yawning",
               "shine": "shining", "glow": "glowing", "sparkle": "sparkling", "melt": "melting", "burn": "burning"}
"""Verbs after "make X ..." read as states: "make the woman smile" -> attribute "smiling"."""

STYLE_NOUN_RE = re.compile(r"\b(?:painting|watercolou?r|sketch|drawing|cartoon|illustration|render|"
                           r"rendering|mosaic|comic|anime|manga|photograph|photo|picture|poster|artwork)s?$")

WHOLE_IMAGE = set("""
image photo photograph picture pic scene shot whole entire everything world season weather time
lighting light mood atmosphere style colors colours overall setting environment tone vibe it all
""".split())
WHOLE_IMAGE_RE = re.compile(
    r"^(?:the\s+|this\s+|that\s+|my\s+|your\s+)?(?:whole\s+|entire\s+|overall\s+)?(?:image|photo|photograph|"
    r"picture|pic|scene|shot|thing|world|season|weather|time of (?:the )?day|time|lighting|light|mood|"
    r"atmosphere|style|colors|colours|color|colour|setting|environment|tone|vibe)$|^(?:everything|"
    r"all of it|the whole thing|it all|the whole|all)$")

PRONOUNS_SINGULAR = {"it", "this", "that", "this one", "that one", "the same one", "the one", "one",
                     "him", "her", "he", "she", "the thing", "the object", "the same", "itself",
                     "the same thing", "the same object", "same one"}
PRONOUNS_PLURAL = {"them", "they", "those", "these", "all of them", "both of them", "them all",
                   "both", "these ones", "those ones", "each of them", "the ones", "ones", "them both",
                   "all three", "all three of them", "all four of them", "the two", "the three"}
PERSON_WORDS = set("""
man woman person people girl boy lady guy child kid baby men women girls boys ladies guys children kids
player man's woman's gentleman boyfriend girlfriend husband wife mother father mom dad grandma grandpa
bride groom soldier doctor chef worker student teacher
""".split())
GENDERED = {"him": "man", "he": "man", "her": "woman", "she": "woman"}

NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                "nine": 9, "ten": 10, "a couple of": 2, "couple of": 2, "a pair of": 2, "twice": 2,
                "thrice": 3, "once": 1, "a few": 3, "few": 3, "several": 3}
_NUM = r"(?:\d{1,3}|one|two|three|four|five|six|seven|eight|nine|ten|a couple of|a few|several)"

IRREGULAR_PLURALS = {
    "people": "person", "persons": "person", "men": "man", "women": "woman", "children": "child",
    "mice": "mouse", "geese": "goose", "feet": "foot", "teeth": "tooth", "leaves": "leaf",
    "knives": "knife", "wives": "wife", "lives": "life", "wolves": "wolf", "shelves": "shelf",
    "loaves": "loaf", "halves": "half", "calves": "calf", "elves": "elf", "scarves": "scarf",
    "thieves": "thief", "hooves": "hoof", "oxen": "ox", "cacti": "cactus", "fungi": "fungus",
    "buses": "bus", "gases": "gas", "lenses": "lens", "dice": "die", "sheep": "sheep", "fish": "fish",
    "deer": "deer", "moose": "moose", "series": "series", "species": "species", "aircraft": "aircraft",
    "potatoes": "potato", "tomatoes": "tomato", "heroes": "hero", "mangoes": "mango",
    "volcanoes": "volcano", "mosquitoes": "mosquito", "buffaloes": "buffalo", "dominoes": "domino",
    "cookies": "cookie", "movies": "movie", "pies": "pie", "ties": "tie", "zombies": "zombie",
    "brownies": "brownie", "hoodies": "hoodie", "selfies": "selfie", "goalies": "goalie",
    "mustaches": "mustache", "moustaches": "moustache", "headaches": "headache", "niches": "niche",
    "avalanches": "avalanche", "caches": "cache", "octopi": "octopus", "octopuses": "octopus",
    "cactuses": "cactus", "bonuses": "bonus", "viruses": "virus", "walruses": "walrus",
    "horses": "horse", "houses": "house", "vases": "vase", "roses": "rose", "noses": "nose",
    "cheeses": "cheese", "blouses": "blouse", "purses": "purse", "nurses": "nurse", "vegetables": "vegetable",
}
SINGULAR_TO_PLURAL = {v: k for k, v in IRREGULAR_PLURALS.items() if k not in (
    "persons", "buses", "cactuses", "octopuses")}
SINGULAR_TO_PLURAL.update({"person": "people", "bus": "buses", "cactus": "cacti", "octopus": "octopuses"})
PLURAL_ONLY = set("""
sunglasses glasses eyeglasses spectacles goggles jeans pants trousers shorts scissors pliers headphones
earphones earbuds binoculars pajamas pyjamas clothes leggings tights overalls news stairs
""".split())
MASS_NOUNS = set("""
hair water grass snow rain fog smoke fire sand furniture makeup lipstick jewelry jewellery clothing luggage food
bread rice milk coffee tea wine beer juice ice gold silver wood metal paper stone steam lightning money graffiti
text writing foliage hay lava mud dirt dust paint blood fur confetti glitter smoke mist ivy moss grass sunlight
""".split())
NOT_PLURAL_RE = re.compile(r"(?:ss|us|is|ous|ics|[^s]'s)$|^(?:gas|lens|canvas|atlas|christmas|this|yes|bias|"
                           r"chaos|texas|hummus|tennis|iris|always|perhaps|plus|glass|grass|dress|its|has|was)$")

_DETERMINERS = {"the", "a", "an", "this", "that", "these", "those", "my", "your", "his", "her", "its",
                "their", "our", "some", "any", "every", "each", "all", "both", "of", "single", "other"}
_PLURAL_DETS = {"these", "those", "all", "both", "every", "each", "some"}

# ------------------------------------------------------------------------------------------
# regex tables: refusals, chat, commands, rewrites
# ------------------------------------------------------------------------------------------

INJECTION_RE = re.compile(
    r"ignore (?:all |any |the |your |my )*(?:previous |prior |above |earlier |former |preceding )?"
    r"(?:instructions|prompts?|rules|directions|messages)|disregard (?:all |any |the |your )*(?:previous|prior|"
    r"above|instructions|rules)|system prompt|developer mode|jailbreak|\byou are now\b|pretend (?:to be|you are)|"
    r"\bact as (?:a|an|if)\b|reveal (?:your|the) (?:prompt|instructions|system|rules)|(?:print|show|repeat|tell me)"
    r" (?:me )?(?:your|the) (?:system |initial |hidden )?(?:prompt|instructions)|\bapi[_ -]?keys?\b|"
    r"\bpasswords?\b|rm -rf|drop table|<script|\beval\(|\bexec\(|\bos\.system|\bsudo\b|/etc/passwd|"
    r"\bdo anything now\b|override (?:your|the) (?:rules|instructions|safety)")

CHAT_PATTERNS: list[tuple[re.Pattern, Callable[["_State"], str]]] = [
    (re.compile(r"(?:hi|hello|hey|hiya|howdy|yo|greetings|good (?:morning|afternoon|evening|day)|sup|"
                r"what'?s up|hey there|hi there|hello there)(?: (?:there|friend|bot|localedit|everyone))?"),
     lambda st: ("Hello! " + ("Tell me what to change in the picture, e.g. " if st.ctx.has_image
                              else "Upload a picture and tell me what to change, e.g. ") + EXAMPLES + ".")),
    (re.compile(r"(?:thanks|thank you|thx|ty|cheers|great|perfect|awesome|nice|cool|good job|well done|"
                r"(?:that |it )?looks? (?:good|great|nice|perfect|amazing)|love it|ok|okay|fine|good|wow|lol|"
                r"yes|yeah|yep|sure|excellent|amazing|brilliant|beautiful)(?: (?:so much|a lot|very much|"
                r"thanks|thank you|again|it|that))*"),
     lambda st: "Glad you like it! Tell me the next change, or say 'undo' to go back."),
    (re.compile(r"(?:no|nope|nah|not really|not quite|hmm+|um+|uh+)"),
     lambda st: "Okay. Tell me what to change instead, say 'try again', or 'undo' to go back."),
    (re.compile(r"(?:help|what can you do|how does (?:this|it) work|how do i use (?:this|you|it)|what (?:do|can|should) i"
                r" (?:say|ask|type|do)|commands|instructions|usage|examples?|\?+)"),
     lambda st: ("I edit one part of your picture at a time. Try " + EXAMPLES + ", 'add a hat to the dog', "
                 "or 'turn the leftmost cat into a fox'. You can also say 'undo', 'redo', 'try again', "
                 "'stronger', 'weaker', 'show me the mask' or 'the other one'.")),
    (re.compile(r"(?:who|what) are you|what(?:'s| is) your name|are you (?:a bot|human|an ai|real)"),
     lambda st: "I'm localedit, an image editor: tell me what to change in the picture, e.g. " + EXAMPLES + "."),
    (re.compile(r"what(?:'s| is| do you see)(?: in)? (?:the |this )?(?:image|photo|picture|pic)|what do you see|"
                r"describe (?:the |this )?(?:image|photo|picture|it)|caption(?: it)?|what is this"),
     lambda st: (f"I see {st.ctx.caption.rstrip('.')}." if st.ctx.caption else
                 "I can't describe it yet. ") + " What should I change?"),
    (re.compile(r"(?:bye|goodbye|see you|see ya|cya|good night)(?: \w+)?"),
     lambda st: "Bye! Your edits are kept in this conversation."),
    (re.compile(r"(?:you(?: are|'re| r) (?:stupid|dumb|useless|an idiot|bad|terrible|awful|the worst)|"
                r"(?:fuck|shit|damn) (?:you|this|off|it)|this (?:sucks|is useless)|i hate (?:you|this))"),
     lambda st: "Sorry it's not working well. Tell me what to change, or say 'undo' or 'try again'."),
]
"""Whole-utterance chat: greetings, thanks, help, description, goodbyes, frustration."""

_STEPS = rf"(?P<n>{_NUM}|twice|thrice)"
COMMAND_PATTERNS: list[tuple[re.Pattern, str]] = [
    (re.compile(r"(?:undo|revert|reverse|roll ?back|go back|step back|take (?:it|that) back|back)"
                r"(?: (?:that|this|it|everything|last|previous))?(?: (?:the )?(?:last|previous|latest))?"
                r"(?: (?:one|edit|change|step|thing|action))?(?: (?:please|again))?"), "undo"),
    (re.compile(rf"(?:undo|revert|go back|step back|roll ?back|back)(?: the)?(?: last)? {_STEPS}"
                r"(?: (?:steps?|times?|edits?|changes?|versions?|images?))?(?: back)?"), "undo"),
    (re.compile(r"(?:undo|revert|go back|roll ?back)(?: (?:everything|all(?: (?:the )?(?:edits|changes))?))|"
                r"(?:go back|revert|return|reset|restore|take me back|back)(?: it| everything)?(?: back)? to (?:the )?"
                r"(?:original|start|beginning|first (?:one|image|version|picture)|unedited (?:one|image|version)|"
                r"initial (?:one|image|version))|start (?:over|again from scratch)|reset(?: (?:it|everything|the image))?|"
                r"restore the original(?: image)?"), "undo_all"),
    (re.compile(rf"(?:redo|re-do|go forward|step forward|undo the undo)(?: (?:that|it|the last (?:one|edit|change)))?"
                rf"(?: {_STEPS}(?: (?:steps?|times?|edits?|changes?))?)?"), "redo"),
    (re.compile(r"(?:show|display|see|view|let me see|can i see|give me)(?: me)?(?: the| your| that)? masks?"
                r"(?: (?:please|again|overlay|you used))?|masks?|(?:where|which (?:part|area|region|pixels?))"
                r" (?:did|do) you (?:edit|change|modify|touch|paint)(?: exactly)?|what (?:part|area|region|pixels?) "
                r"did you (?:edit|change|modify)|show (?:me )?(?:where|what) you (?:edited|changed|modified)|"
                r"show (?:me )?the (?:selection|selected (?:area|region)|edited (?:area|region))|highlight the "
                r"(?:edit|change|mask|area)"), "show_mask"),
    (re.compile(r"(?:(?:no|nope),? )?(?:(?:i meant|i mean|i wanted|choose|pick|use|select|try|edit|do|take) )?"
                r"(?:the )?other (?:one|candidate|object|\w+)|not (?:that|this) one|(?:that'?s )?(?:the )?"
                r"wrong (?:one|\w+)|wrong (?:one|object|candidate)|you (?:picked|chose|got|edited|changed)"
                r" the wrong (?:one|\w+)|(?:try|pick|choose|use|select) (?:the )?(?:next|a different)"
                r" (?:one|candidate|object)|(?:the )?next (?:one|candidate)|(?:a )?different one"), "other_candidate"),
    (re.compile(r"(?:try|do it|do that|give it a go|give it another go|give it another try|try it|one more time"
                r"|retry|again|do it over|once more|try once more|have another go)(?: again)?(?: please)?|"
                r"another (?:try|attempt|version|variation|one|go|result)|try (?:another|a different|a new)"
                r" (?:seed|version|one|result|attempt)|re-?roll|regenerate|re-?generate(?: it)?|new (?:seed|version|"
                r"variation|result)|(?:that|it|this) (?:looks|is|was) (?:bad|wrong|terrible|awful|off|weird|ugly|"
                r"not (?:good|right))(?:,? try again)?"), "retry"),
    (re.compile(r"(?:even |much |a bit |a little |way |a lot |bit )?(?:more|stronger)(?: please)?(?: !)?|more intense|"
                r"intensify(?: it)?|increase (?:the )?(?:strength|intensity|effect)|(?:make|do) (?:it|that|the"
                r" (?:effect|edit|change)) (?:stronger|more intense|more|more extreme|more pronounced|more obvious|"
                r"more noticeable|more visible|bolder)|(?:make )?the (?:effect|edit|change) (?:stronger|more intense|more"
                r" visible|more obvious|bigger)|not enough|too (?:subtle|weak|faint|little)|(?:push|crank) it"
                r"(?: up| further)?|exaggerate(?: it)?|go further|stronger effect|more (?:strongly|obvious|noticeable|"
                r"pronounced|extreme|effect|of (?:that|it|the same))|(?:i )?(?:can't|cannot|can not) see (?:a |the )?"
                r"(?:difference|change)|nothing (?:changed|happened)"), "stronger"),
    (re.compile(r"(?:a bit |a little |much |bit )?(?:less|weaker|subtler|more subtle)(?: please)?|tone it down|"
                r"dial it (?:down|back)|too (?:much|strong|intense|extreme|obvious|heavy)|(?:make|do) (?:it|that|the"
                r" (?:effect|edit|change)) (?:weaker|less intense|subtler|more subtle|less extreme|less|gentler|"
                r"less obvious)|(?:make )?the (?:effect|edit|change) (?:weaker|subtler|more subtle|less (?:intense|"
                r"obvious|visible|strong)|smaller)|reduce (?:the )?(?:strength|intensity|effect)|gentler|softer|"
                r"not so (?:much|strong)|less (?:intense|strong|extreme|obvious|effect|of (?:that|it))|"
                r"(?:that'?s |it'?s )?(?:too much|overdone|overkill)"), "weaker"),
    (re.compile(r"(?:cancel|never ?mind|nvm|forget (?:it|that|about it)|stop|abort|nothing|no thanks|none|leave it"
                r"(?: as it is)?|do nothing|don'?t|skip(?: it)?|quit|exit|no edit|keep it)(?: (?:it|that|please|then))?"),
     "cancel"),
]
"""Whole-utterance commands; ``undo_all`` is undo with ``ORIGINAL_STEPS``."""

FILLER_RE = re.compile(
    r"^(?:(?:please|pls|plz|kindly|hey|hi|hello|ok|okay|alright|all right|right|so|now|then|and|also|next|"
    r"great|thanks|thank you|cool|nice|good|perfect|awesome|yes|yeah|well|um|uh|hmm|oh|actually|just|"
    r"can you|could you|would you|will you|can u|could u|would you mind|would you please|i want you to|"
    r"i'd like you to|i would like you to|i need you to|go ahead and|i said|i meant|i mean|lastly|finally|first|"
    r"after that|afterwards|instead)\b,?\s*|(?:no|nope|hmm|wait|oops|sorry)\s*,\s*)+")
TRAILING_RE = re.compile(r"(?:,?\s*\b(?:please|pls|thanks|thank you|for me|if you can|if possible|now|for me please|"
                         r"thx|ok|okay|right now|too|as well|instead))+$")

_GERUNDS = {"making": "make", "turning": "turn", "changing": "change", "removing": "remove", "adding": "add",
            "putting": "put", "replacing": "replace", "swapping": "swap", "painting": "paint",
            "coloring": "color", "colouring": "colour", "giving": "give", "deleting": "delete", "erasing": "erase",
            "placing": "place", "inserting": "insert", "converting": "convert", "transforming": "transform",
            "dyeing": "dye", "getting": "get", "taking": "take", "switching": "switch", "drawing": "draw"}

REWRITES: list[tuple[re.Pattern, Callable[[re.Match], str]]] = [
    (re.compile(r"^(?:let's|lets|let us|we should|you should|i'?d like to|i would like to|i want to|i wanna|i need to|"
                r"try to|try and|we need to|you need to|you could|you can|i'?d love to|could we|can we|maybe|perhaps)"
                r"\s+(?P<rest>.+)$"), lambda m: m.group("rest")),
    (re.compile(r"^(?:how about|what about|try|maybe try|why not try|why not|consider)\s+(?P<g>" + "|".join(_GERUNDS)
                + r")\b(?P<rest>.*)$"), lambda m: _GERUNDS[m.group("g")] + m.group("rest")),
    (re.compile(r"^what if (?:it|the (?:image|photo|picture|scene)) (?:was |were |is )?(?P<w>snow|rain)(?:ed|ing|s)?$"),
     lambda m: f"make it {m.group('w')}ing"),
    (re.compile(r"^what if there (?:was|were|is|are|had been) (?P<x>.+)$"), lambda m: f"add {m.group('x')}"),
    (re.compile(r"^what if (?P<np>.+?) (?:was|were|is|are|became|become|turned|got) into (?P<v>.+)$"),
     lambda m: f"turn {m.group('np')} into {m.group('v')}"),
    (re.compile(r"^what if (?P<np>.+?) (?:looked|look|looks) like (?P<v>.+)$"),
     lambda m: f"make {m.group('np')} look like {m.group('v')}"),
    (re.compile(r"^what if (?P<np>.+?) (?:had|has|wore|wears|was wearing|were wearing) (?P<v>.+)$"),
     lambda m: f"add {m.group('v')} to {m.group('np')}"),
    (re.compile(r"^what if (?P<np>.+?) (?:were|was|is|are|became|become|turned|got|looked) (?P<v>.+)$"),
     lambda m: f"make {m.group('np')} {m.group('v')}"),
    (re.compile(r"^(?:what|how) (?:would|will|does|did|might|could|do) (?P<np>.+?) look(?: like)?"
                r"(?: (?:if (?:it|they|he|she|the \w+) (?:were|was|is|are|had) |(?P<prep>with|in|as|at|during|under|on) ))"
                r"(?P<v>.+)$"),
     lambda m: _look(m)),
    (re.compile(r"^(?:show(?: me)?|imagine|picture|visuali[sz]e|render|let me see|can i see|i want to see|"
                r"i'?d like to see|i wanna see|draw|reimagine|re-imagine|depict) (?P<np>.+?) (?P<prep>as|in|at|during|with)"
                r" (?P<v>.+)$"),
     lambda m: _look(m)),
    (re.compile(r"^let it (?P<w>snow|rain)$"), lambda m: f"make it {m.group('w')}ing"),
    (re.compile(r"^(?:i(?: want| would like|'?d like| wish| need)|i'?d love|let|have|get) (?P<np>.+?) (?:to )?"
                r"(?P<verb>be|look|become|turn|appear|seem) (?P<v>.+)$"),
     lambda m: f"make {m.group('np')} {'' if m.group('verb') in ('be', 'become', 'turn') else m.group('verb') + ' '}"
               f"{m.group('v')}"),
    (re.compile(r"^there (?:should|must|could|needs to|has to|ought to) be (?P<x>.+)$"), lambda m: f"add {m.group('x')}"),
    (re.compile(r"^(?P<np>.+?) (?:should|must|needs to|has to|ought to|could|can) (?:disappear|go away|vanish|go|be gone"
                r"|be removed|be deleted|be erased|not be there)$"), lambda m: f"remove {m.group('np')}"),
    (re.compile(r"^(?P<np>.+?) (?:should|must|needs to|has to|ought to|could|would|will) (?P<verb>be|look|become|turn"
                r"|appear) (?P<v>.+)$"),
     lambda m: f"make {m.group('np')} {'look ' if m.group('verb') in ('look', 'appear') else ''}{m.group('v')}"),
    (re.compile(r"^(?P<np>.+?) (?:should|must|could|needs to|has to) (?:wear|hold|have|get) (?P<x>.+)$"),
     lambda m: f"add {m.group('x')} to {m.group('np')}"),
    (re.compile(r"^(?:make|let|have|get) (?P<np>.+?) (?:wear|hold|carry|have|put on) (?P<x>.+)$"),
     lambda m: f"add {m.group('x')} to {m.group('np')}"),
    (re.compile(r"^dress (?P<np>.+?) (?:in|with) (?P<x>.+)$"), lambda m: f"add {m.group('x')} to {m.group('np')}"),
    (re.compile(r"^(?:i (?:don'?t|do not) want(?: to see)?|i (?:don'?t|do not) like|no more|get away|lose|ditch|"
                r"without|minus|i hate) (?P<x>.+?)(?: (?:there|here|in (?:the|this) (?:image|picture|photo)|anymore|"
                r"any more))?$"), lambda m: f"remove {m.group('x')}"),
    (re.compile(r"^(?:i(?: want| would like|'?d like| need)|i'?d love|give me|can i (?:have|get)|could i (?:have|get)) "
                r"(?P<x>(?:a|an|some|\d+|two|three|four|five) .+)$"), lambda m: f"add {m.group('x')}"),
    (re.compile(r"^(?:(?:put|use|show|have|place|i want|give me|add)\s+)?(?P<new>.+?) instead of (?P<old>.+)$"),
     lambda m: f"replace {m.group('old')} with {m.group('new')}"),
    (re.compile(r"^(?P<old>[^>]+?)\s*->\s*(?P<new>.+)$"), lambda m: f"replace {m.group('old')} with {m.group('new')}"),
    (re.compile(r"^(?:change|make|turn|set|switch|alter|modify) (?:the )?(?:colou?r|material|texture|pattern|shade|hue|"
                r"fabric|finish|paint(?:work)?) of (?P<np>.+?) (?:to|into|in|as|be) (?P<v>.+)$"),
     lambda m: f"make {m.group('np')} {m.group('v')}"),
    (re.compile(r"^(?:change|make|turn|set|switch|alter|modify) (?P<np>.+?) ?'s (?:colou?r|material|texture|pattern|"
                r"hue|fabric) (?:to|into|in|as) (?P<v>.+)$"), lambda m: f"make {m.group('np')} {m.group('v')}"),
    (re.compile(r"^(?:change|make|turn|set|switch) (?P<np>.+?) (?:colou?r|colored|coloured) (?:to |into |in )?(?P<v>.+)$"),
     lambda m: f"make {m.group('np')} {m.group('v')}"),
]
"""Questions and wishes -> imperatives; each applies at most once, in order."""


def _look(m: re.Match) -> str:
    """'what would NP look like PREP V' / 'imagine NP PREP V' -> an imperative; scene values apply to it all."""
    np, prep, v = m.group("np"), m.group("prep"), m.group("v")
    if prep == "with":
        return f"add {v} to {np}"
    if prep in ("at", "in", "during") and is_scene_value(v) and not is_attribute_value(v):
        np = "it"
    return f"make {np} {_pp(prep)}{v}"


def _pp(prep: Optional[str]) -> str:
    """Keep a preposition that matters to a scene value ('at night', 'in winter'); drop 'as'."""
    return "" if prep in (None, "as", "in") else f"{prep} "


EDIT_VERBS = ("turn|change|transform|convert|morph|switch|alter|modify|make|replace|swap|substitute|exchange|"
              "trade|remove|delete|erase|eliminate|get rid of|take|get|add|put|place|insert|attach|give|stick|"
              "draw|paint|sketch|colou?r|recolou?r|dye|tint|plant|hang|include|cut|crop|edit|wipe|rub|hide|lose|"
              "ditch|erase|render|show|let|apply|restyle|stylize|stylise")
CLAUSE_SPLIT_RE = re.compile(rf"\s*(?:,\s*)?(?:\band then\b|\bthen\b|\band also\b|\band\b|\balso\b|;|,)\s+(?=(?:{EDIT_VERBS})\b)")

# ------------------------------------------------------------------------------------------
# context and small word helpers
# ------------------------------------------------------------------------------------------


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
    """Whether a value is a colour / material / texture / size / state ("red", "made of gold", "much bigger")."""
    v = value.strip().lower()
    v = re.sub(r"^(?:in|into|to|a shade of|the colou?r|colou?red)\s+", "", v)
    if not v:
        return False
    if VALUE_PREFIX_RE.match(v):
        return True
    words = [w for w in re.split(r"[\s,]+", v) if w]
    if len(words) == 1 and ADJ_SUFFIX_RE.match(words[0]):
        return True
    if any(w in ADJECTIVES or ADJ_SUFFIX_RE.match(w) for w in words):
        return all(w in ADJECTIVES or w in VALUE_MODIFIERS or ADJ_SUFFIX_RE.match(w) for w in words)
    return False


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
    rest = _PP_CUT_RE.sub("", rest)
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
    np.attribute = " ".join(attrs) or None
    np.target = " ".join(compound + [single])
    np.surface = " ".join(attrs + compound + [head if np.plural and single != head else
                                              (pluralize(single) if np.plural and head == single
                                               and head not in ("sheep", "fish", "deer") and head not in PLURAL_ONLY
                                               else head)])
    return np


# ------------------------------------------------------------------------------------------
# building plans
# ------------------------------------------------------------------------------------------


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
    if gendered and (ref is None or not (set((ref.target or "").split()) & PERSON_WORDS)):
        ref = NounPhrase(target=gendered, surface=gendered, text=np.text)
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
    np = parse_np(np_text)
    # a bare comparative after "make X" ("make the water clearer") is an attribute even if unknown to us
    attribute = is_attribute_value(value) or (how == "make" and bool(re.fullmatch(r"[a-z]{3,}i?er", value))
                                              and value not in NOT_COMPARATIVES and not is_scene_value(value))
    if np.whole or (np.pronoun and is_scene_value(value) and (not attribute or STRONG_SCENE_RE.search(value))):
        return _global(value, st)
    obj = _object(np_text, st, value, "attribute" if attribute else "replace")
    if isinstance(obj, Clarify):
        return obj
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
    if not loc:
        if is_scene_value(new) and not re.match(r"^(?:a|an)\s", new):
            return _global(new, st, instruction=f"add {new}")
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
    if np.whole or re.fullmatch(r"(?:the )?(?:image|photo|picture|scene|frame)", np.text):
        if is_scene_value(new) and not re.match(r"^(?:a|an)\s", new):
            return _global(new, st, instruction=f"add {new}")
        return EditPlan(action="add", new_value=new, source_caption=st.ctx.caption or st.kind,
                        target_caption=f"{st.ctx.caption or st.kind}, with {with_article(new, new_np.plural)}",
                        instruction=f"add {new}")
    if not np.target and np.qualifier and not np.pronoun:
        hint = f"{prep} {np.text}" if np.text.startswith("the ") else f"{prep} the {np.text}"
        return EditPlan(action="add", new_value=new, qualifier=np.qualifier, region_hint=hint,
                        source_caption=st.ctx.caption or st.kind,
                        target_caption=f"{st.ctx.caption or st.kind}, with {with_article(new, new_np.plural)} {hint}",
                        instruction=instruction)
    obj = _object(loc, st, new, "add")
    if isinstance(obj, Clarify):
        return obj
    if np.pronoun:
        instruction = f"add {new} {prep} {obj.the}"
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
        if is_attribute_value(tail) or is_removal_value(tail):
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
    (re.compile(r"^(?:turn|switch) (?P<w>on|off) (?P<x>.+)$"),
     lambda m, st: _global(f"with {m.group('x')} {m.group('w')}", st, instruction=st.clause)),
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


# ------------------------------------------------------------------------------------------
# the parse
# ------------------------------------------------------------------------------------------


def _clean(text: str) -> str:
    """Normalise unicode, lower-case, keep words and a little punctuation, collapse spaces."""
    t = unicodedata.normalize("NFKC", text)
    t = t.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    t = re.sub(r"\s*(?:→|⇒|=>|->|-+>)\s*", " -> ", t)
    t = re.sub(r"<[^>]{0,200}>", " ", t) if "<script" not in t.lower() else t
    t = t.lower()
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
                out.append(clause)
    return out


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


def canonical_instruction(plan: EditPlan) -> str:
    """An InstructPix2Pix instruction written from the plan's fields ("turn the cat into a fox")."""
    obj = f"the {pluralize(plan.grounding_phrase) if plan.plural else plan.grounding_phrase}"
    if plan.action == "replace":
        return f"turn {obj} into {with_article(plan.new_value or 'something else', plan.plural)}"
    if plan.action == "attribute":
        return f"make {obj} {plan.new_value or ''}".strip()
    if plan.action == "remove":
        return f"remove {obj}"
    if plan.action == "add":
        return f"add {plan.new_value} {plan.region_hint or ''}".strip()
    return plan.instruction


def _fallback(text: str, st: _State) -> Understanding:
    """No edit verb matched: a bare qualifier, value or scene phrase, else a polite Chat."""
    lp = st.ctx.last_plan
    np = parse_np(text)
    if lp is not None and lp.action != "global" and np.pronoun and np.qualifier:
        revised = lp.model_copy(update={"qualifier": np.qualifier, "revise_last": True})
        return revised.model_copy(update={"instruction": canonical_instruction(revised)})
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
    return Chat(text=f"I'm not sure what to change. Try an instruction like {EXAMPLES}.")


def _parse_clause(clause: str, st: _State) -> Understanding:
    """One clause (already cleaned) -> an understanding."""
    chat = _chat(clause, st)
    if chat is not None:
        return chat
    st.also = bool(re.search(r"\b(?:too|as well|also)$", clause)
                   or re.match(r"^(?:and|also|now|and now|what about|how about|same for|same with)\s", clause))
    text = _strip_fillers(clause)
    if not text:
        return Chat(text="Tell me what to change in the picture, e.g. " + EXAMPLES + ".")
    command = _command(text)
    if command is not None:
        return command
    chat = _chat(text, st)
    if chat is not None:
        return chat
    text = _rewrite(text)
    st.clause = text
    for pattern, handler in EDIT_PATTERNS:
        m = pattern.match(text)
        if m:
            return handler(m, st)
    return _fallback(text, st)


def _parse(text: str, ctx: ParseContext) -> Understanding:
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    if not text.strip():
        return Chat(text="Please type an instruction, e.g. " + EXAMPLES + ".")
    if INJECTION_RE.search(text[:TOO_LONG * 5].lower()):
        return Chat(text="I can only edit the picture. Tell me what to change, e.g. " + EXAMPLES + ".")
    too_long = len(text) > TOO_LONG
    if len(text) > MAX_CHARS:
        cut = text[:MAX_CHARS]
        text = cut.rsplit(" ", 1)[0] if " " in cut[MAX_CHARS // 2:] else cut
    st = _State(ctx=ctx, kind=caption_kind(ctx.caption))
    clauses = split_instructions(text)
    if not clauses:
        return Chat(text="I couldn't read that. Please type an instruction, e.g. " + EXAMPLES + ".")
    first_chat: Optional[Understanding] = None
    for clause in clauses[:6]:
        result = _parse_clause(clause, st)
        if not isinstance(result, Chat):
            return result
        first_chat = first_chat or result
        st = _State(ctx=ctx, kind=st.kind)
    if too_long:
        return Chat(text="That message is too long for me. Please send one short instruction, e.g. " + EXAMPLES + ".")
    return first_chat or Chat(text=f"I'm not sure what to change. Try {EXAMPLES}.")


def parse(text: str, context: Optional[ParseContext] = None) -> Understanding:
    """Understand one user message. Never raises: anything unexpected becomes a polite ``Chat``."""
    try:
        return _parse(text, context or ParseContext())
    except Exception:  # noqa: BLE001 - the parser must never take the conversation down
        log.exception("offline parser failed on %r", str(text)[:200])
        return Chat(text=f"Sorry, I couldn't understand that. Try an instruction like {EXAMPLES}.")
