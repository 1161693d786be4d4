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
from functools import lru_cache
from typing import Callable, Literal, Optional

from agent.plan import (
    ORIGINAL_STEPS, Chat, Clarify, Command, EditPlan, Understanding, extract_qualifier, normalize_qualifier,
)
from tools.types import MAX_TEXT

log = logging.getLogger(__name__)

MAX_CHARS = 500
"""Characters of a message the parser reads; longer messages are cut at a word boundary."""

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
blank plain spotless pristine haunted abandoned ruined overgrown deserted decorated festive off unlit lit
blurry blurred faded worn weathered damaged dented scratched polished painted faceless bloody shaved tanned
fixed repaired restored mended cleaned
""".split())
MULTIWORD_STATES = {"upside down", "inside out", "on fire", "in flames", "brand new", "brand-new", "switched off",
                    "turned off", "switched on", "turned on", "clean shaven", "clean-shaven", "out of focus",
                    "in focus", "falling apart", "half eaten", "half-eaten"}
"""States of more than one word: "turn the car upside down"."""
SCENE_ADJECTIVES = set("""
cloudy stormy snowy foggy misty rainy sunny overcast hazy gloomy moody wintry wintery summery autumnal
dark darker darkest bright brighter brightest dim dimmer dusky sunlit moonlit starry starlit smoky
dramatic vibrant saturated desaturated cheerful spooky eerie cinematic hdr
""".split())
"""Weather and light adjectives: an attribute of the object they are said of ("make the sky cloudy"),
the whole scene's change when said of "it"."""
SCENE_NOUNS = set("""
day daytime night nighttime morning evening afternoon dawn dusk summer winter autumn fall spring springtime
season weather scene scenery landscape view time atmosphere mood setting ambience ambiance
""".split())
"""Nouns that name the whole scene: "turn the day into night" is a global edit, not a region's."""
VERB_VALUES = {
    "blur": "blurred", "brighten": "brighter", "darken": "darker", "whiten": "whiter", "lighten": "lighter",
    "redden": "redder", "blacken": "black", "clean": "clean", "fix": "fixed", "repair": "repaired",
    "mend": "repaired", "restore": "restored", "open": "open", "close": "closed", "shut": "closed",
    "sharpen": "sharper", "soften": "softer", "enlarge": "bigger", "shrink": "smaller", "widen": "wider",
    "lengthen": "longer", "shorten": "shorter", "thicken": "thicker", "freeze": "frozen", "melt": "melted",
    "burn": "burnt", "crack": "cracked", "break": "broken", "rust": "rusty", "wet": "wet", "dry": "dry",
    "tidy": "tidy", "age": "older", "illuminate": "lit", "light up": "lit", "polish": "polished", "dent": "dented",
    "scratch": "scratched", "wrinkle": "wrinkled", "flood": "flooded", "frost": "frosted", "tan": "tanned",
    "dim": "dimmer", "warm up": "warmer", "cool down": "cooler",
}
"""Verbs that name a state ("blur the background" -> attribute "blurred")."""
HAIR_WORDS = {"beard", "mustache", "moustache", "hair", "stubble", "goatee", "sideburns", "eyebrows", "head"}
PART_WORDS = {"top", "bottom", "side", "edge", "front", "back", "middle", "center", "centre", "corner", "rest",
              "part", "piece", "half", "slice", "colour", "color", "surface", "inside", "outside", "end", "rim",
              "roof", "pair", "bunch", "group", "stack", "pile", "row", "kind", "type", "lot", "couple"}
"""Words that keep their "of ..." ("the top of the table", "a bunch of flowers"): a part or a group."""
VALUE_MODIFIERS = set("""
more less very really much slightly bit little extra super even too darker lighter brighter deeper
paler light dark bright pale deep pastel vivid dull hot baby sky royal forest blood jet pitch off
navy shade shades of a and or color colour colored coloured toned tinted somewhat quite colors colours
different various random all
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
# other languages: the parser reads English; it says so instead of guessing
# ------------------------------------------------------------------------------------------

FOREIGN_WORDS: dict[str, set[str]] = {
    "French": set("""
le la les un une des du au aux et est avec pour dans sur sous mets mettre ajoute ajouter enlève enlever enleve
retire retirer supprime supprimer efface effacer transforme transformer rends rendre fais faire peins peindre
colore voiture voitures chien chiens oiseau arbre maison ciel rouge bleu bleue vert verte jaune noir noire blanc
blanche gauche droite en de lampe s'il vous plaît plait moi ce cette ces mon ma mes ton ta qui que pas très
renard chapeau neige nuit hiver été fleur fleurs homme femme tête gâteau chaise fenêtre porte mur herbe
soleil lune nuage nuages change-le rends-le mets-lui ajoute-lui enlève-le
""".split()),
    "Spanish": set("""
el los las un una unos unas del al y con para por que quita quitar elimina eliminar borra borrar convierte
convertir cambia cambiar pon poner añade añadir agrega agregar haz hacer pinta pintar coche carro gato gatos
perro perros pájaro árbol casa cielo rojo roja azul verde amarillo negro negra blanco blanca izquierda derecha
zorro sombrero nieve noche invierno verano lámpara flor flores hombre mujer cabeza pastel silla ventana puerta
pared suelo hierba sol luna nube nubes favor este esta estos estas mi tu su muy en de lo hazlo ponle quítale
""".split()),
    "German": set("""
der die das den dem des ein eine einen und ist mit auf im zu von mach mache entferne entfernen lösche füge
hinzu färbe ändere verwandle bitte nicht katze hund vogel baum haus himmel rot rote roten blau blaue grün
grüne gelb schwarz weiß links rechts fuchs hut schnee nacht lampe blume mann frau kopf kuchen stuhl fenster
tür wand boden sonne mond wolke wolken
""".split()),
    "Italian": set("""
il lo gli una del della dei e con per che rimuovi togli elimina cancella trasforma cambia aggiungi metti fai
rendi colora gatto cane macchina uccello albero casa cielo rosso rossa blu verde giallo nero nera bianco bianca
sinistra destra volpe cappello neve notte inverno estate lampada fiore uomo donna testa torta sedia finestra
porta muro pavimento erba sole luna nuvola favore
""".split()),
    "Portuguese": set("""
o os um uma do da dos das e com para que remova remover tire tirar apague apagar transforme transformar mude
mudar adicione adicionar coloque colocar faça fazer pinte pintar gato cachorro cão carro pássaro árvore casa
céu vermelho vermelha azul verde amarelo preto preta branco branca esquerda direita raposa chapéu neve noite
inverno verão lâmpada flor homem mulher cabeça bolo cadeira janela porta parede chão grama sol lua nuvem
favor
""".split()),
}
"""Common words of the languages people most often type instead of English (verbs, objects, colours)."""

FOREIGN_OBJECTS: dict[str, str] = {
    # French
    "chat": "cat", "chats": "cat", "chien": "dog", "chiens": "dog", "voiture": "car", "voitures": "car",
    "cheval": "horse", "oiseau": "bird", "arbre": "tree", "maison": "house", "ciel": "sky", "lampe": "lamp",
    "chapeau": "hat", "fleur": "flower", "fleurs": "flower", "homme": "man", "femme": "woman", "chaise": "chair",
    "fenêtre": "window", "porte": "door", "mur": "wall", "renard": "fox", "table": "table", "canapé": "sofa",
    # Spanish
    "gato": "cat", "gatos": "cat", "perro": "dog", "perros": "dog", "coche": "car", "carro": "car",
    "caballo": "horse", "pájaro": "bird", "árbol": "tree", "casa": "house", "cielo": "sky", "lámpara": "lamp",
    "sombrero": "hat", "flor": "flower", "flores": "flower", "hombre": "man", "mujer": "woman", "silla": "chair",
    "ventana": "window", "puerta": "door", "pared": "wall", "zorro": "fox", "mesa": "table", "sofá": "sofa",
    # German
    "katze": "cat", "hund": "dog", "hunde": "dog", "auto": "car", "pferd": "horse", "vogel": "bird", "baum": "tree",
    "haus": "house", "himmel": "sky", "hut": "hat", "blume": "flower", "mann": "man", "frau": "woman",
    "stuhl": "chair", "fenster": "window", "tür": "door", "wand": "wall", "fuchs": "fox", "tisch": "table",
    # Italian
    "gatto": "cat", "cane": "dog", "macchina": "car", "cavallo": "horse", "uccello": "bird", "albero": "tree",
    "lampada": "lamp", "cappello": "hat", "fiore": "flower", "uomo": "man", "donna": "woman", "sedia": "chair",
    "finestra": "window", "volpe": "fox", "tavolo": "table", "divano": "sofa",
    # Portuguese
    "cachorro": "dog", "cão": "dog", "cavalo": "horse", "pássaro": "bird", "árvore": "tree", "céu": "sky",
    "chapéu": "hat", "homem": "man", "mulher": "woman", "cadeira": "chair", "janela": "window", "raposa": "fox",
}
"""Object words of those languages and their English: what an LLM's plan for such a message may name."""
FOREIGN_REMOVE = set("""
enlève enlever enleve enlevez retire retirer retirez supprime supprimer supprimez efface effacer effacez sans
quita quitar quítale quite elimina eliminar borra borrar saca sacar sin entferne entfernen lösche löschen ohne weg
rimuovi rimuovere togli togliere cancella cancellare elimina senza remova remover tire tirar apague apagar sem
""".split())
"""Words of those languages that ask for a removal."""


def named_objects(text: str) -> set[str]:
    """The English names of the objects a message in another language names ("quita el caballo" -> {"horse"})."""
    return {FOREIGN_OBJECTS[w] for w in _WORD_RE.findall(str(text).lower()) if w in FOREIGN_OBJECTS}


def asks_removal(text: str) -> bool:
    """Whether a message (in any of those languages or English) asks for something to be removed."""
    found = set(_WORD_RE.findall(str(text).lower()))
    return bool(found & FOREIGN_REMOVE) or bool(re.search(rf"\b(?:{_REMOVE_VERBS_EN})\b", str(text).lower()))


_REMOVE_VERBS_EN = r"remove|delete|erase|eliminate|get rid|without|take (?:out|away|off)|disappear|vanish|lose|ditch"

ENGLISH_WORDS = set("""
a i an the to of in on at it is be do no me so we he she my by or as up us am go if and are can for not
make turn change put add remove give paint color colour get take let have more less very please thanks one
two all both some any this that these those there here with from into onto over under near next left right
top bottom front back middle side corner come con pour son pan sale fin main pain lit plus place table rose
orange art mist chat coin sol mall bus car cat dog hat sun moon man tree house sky flower lamp chair
window door wall floor grass snow night winter summer spring autumn fall day pastel favor
""".split())
"""English words that some of ``FOREIGN_WORDS`` spell the same (never counted as foreign)."""

_WORD_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def _latin(ch: str) -> bool:
    return ch < "\u0250" or "\u1e00" <= ch <= "\u1eff"


def _non_latin_share(text: str) -> float:
    letters = [c for c in str(text) if c.isalpha()]
    return sum(not _latin(c) for c in letters) / len(letters) if letters else 0.0


@lru_cache(maxsize=1)
def _english() -> frozenset[str]:
    """Every word the parser knows as English (``ENGLISH_WORDS`` and its lexicons)."""
    return frozenset(ENGLISH_WORDS | ADJECTIVES | WHOLE_IMAGE | PERSON_WORDS)


def _foreign_words(text: str) -> tuple[list[str], list[str]]:
    """The message's words, and those of them that ``FOREIGN_WORDS`` has and English has not."""
    found = _WORD_RE.findall(str(text).lower())
    return found, [w for w in found if w not in _english() and any(w in ws for ws in FOREIGN_WORDS.values())]


def foreign_share(text: str) -> float:
    """The share of a message that is not English: letters outside the Latin script, or else the
    words found only in ``FOREIGN_WORDS``. 0 for plain English."""
    non_latin = _non_latin_share(text)
    if non_latin >= 0.3:
        return non_latin
    found, foreign = _foreign_words(text)
    return len(foreign) / max(1, len(found))


def foreign_language(text: str) -> Optional[str]:
    """The language a message seems to be in when it is not English ("French", "Spanish", ...,
    "this language" for another script), or None."""
    if _non_latin_share(text) >= 0.3:
        return "this language"
    found, foreign = _foreign_words(text)
    lang, best = max(((lang, sum(w in ws for w in foreign)) for lang, ws in FOREIGN_WORDS.items()),
                     key=lambda kv: kv[1])
    if best >= 2 or (best >= 1 and len(found) <= 2):
        return lang
    return None


def not_english_reply(language: str) -> str:
    """What the built-in parser answers to a message in another language."""
    return (f"I can't read {language}: the built-in parser understands English only. Please write the "
            f"instruction in English (e.g. {EXAMPLES}), or configure an LLM to write in any language: set "
            "LOCALEDIT_LLM_MODEL plus LOCALEDIT_LLM_BASE_URL (a local server such as Ollama) or LOCALEDIT_LLM_API_KEY.")


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
    (re.compile(r"^(?:let's|lets|let us|we should|you should|u should|u can|u could|i'?d rather|i would rather|"
                r"i'?d prefer to|i'?d prefer|i would prefer|i'?d like to|i would like to|i want to|i wanna|i need to|"
                r"try to|try and|we need to|you need to|you could|you can|i'?d love to|could we|can we|maybe|perhaps)"
                r"\s+(?P<rest>.+)$"), lambda m: m.group("rest")),
    (re.compile(r"^(?:how about|what about|try|maybe try|why not try|why not|consider)\s+(?P<g>" + "|".join(_GERUNDS)
                + r")\b(?P<rest>.*)$"), lambda m: _GERUNDS[m.group("g")] + m.group("rest")),
    (re.compile(r"^(?:let|make|have|i want|i'?d like|i would like|can|could|may) there (?:to )?be (?P<x>.+)$"),
     lambda m: f"add {m.group('x')}"),
    (re.compile(r"^(?:increase|enlarge|grow|boost|double) (?:the )?size of (?P<np>.+)$"),
     lambda m: f"make {m.group('np')} bigger"),
    (re.compile(r"^(?:decrease|reduce|shrink|halve) (?:the )?size of (?P<np>.+)$"),
     lambda m: f"make {m.group('np')} smaller"),
    (re.compile(r"^(?:can|could|would|will|should|shall|might) (?P<np>(?!you\b|i\b|we\b).+?) (?P<verb>be|become|look|"
                r"turn|appear) (?P<v>.+)$"),
     lambda m: f"make {m.group('np')} {'look ' if m.group('verb') in ('look', 'appear') else ''}{m.group('v')}"),
    (re.compile(r"^(?:i (?:want|would like|need)|i'?d like|i'?d love) (?P<np>.+?) to (?:wear|hold|have|carry|get|"
                r"put on|be wearing|be holding) (?P<x>.+)$"), lambda m: f"add {m.group('x')} to {m.group('np')}"),
    (re.compile(r"^(?P<np>(?:the|this|that|my|his|her|their|our|both|all the) .+?) (?:needs|need|wants|want|deserves|"
                r"could use|would look good with|would look better with) (?P<x>(?:a|an|some|\d+|two|three|new|more|"
                r"his|her|their) .+)$"), lambda m: f"add {m.group('x')} to {m.group('np')}"),
    (re.compile(r"^(?:have|let|get|make) (?P<np>.+?) (?P<v>" + "|".join(sorted(VERB_STATES, key=len, reverse=True))
                + r")$"), lambda m: f"make {m.group('np')} {VERB_STATES[m.group('v')]}"),
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
    (re.compile(r"^(?:show(?: me)?|see|imagine|picture|visuali[sz]e|render|let me see|can i see|i want to see|"
                r"i'?d like to see|i'?d love to see|i would love to see|i wanna see|draw|reimagine|re-imagine|depict) (?P<np>.+?) (?P<prep>as|in|at|during|with)"
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
    (re.compile(r"^(?:i (?:want|would like|need|prefer)|i'?d (?:like|love|prefer)) (?P<rest>(?:the|this|that|my|his|"
                r"her|their|all the|both|these|those) .+)$"), lambda m: f"make {m.group('rest')}"),
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


def plan_captions(plan: EditPlan, context: Optional[ParseContext] = None) -> tuple[str, str]:
    """``(source_caption, target_caption)`` for a plan, as the parser writes them ("a photo of a cat",
    "a photo of a fox"); the picture's kind and a global edit's scene come from the caption."""
    ctx = context or ParseContext()
    kind = caption_kind(ctx.caption)
    scene = ctx.caption.strip().rstrip(".") if ctx.caption else kind
    if plan.action == "global" or not plan.target:
        change = plan.new_value or plan.instruction or "edited"
        if plan.action == "add" and plan.new_value:
            return scene, f"{scene}, with {with_article(plan.new_value)}"
        return scene, f"{scene}, {change}"
    surface = pluralize(plan.grounding_phrase or plan.target) if plan.plural else plan.grounding_phrase or plan.target
    source = f"{kind} of {with_article(surface, plan.plural)}"
    new = strip_article(plan.new_value or "")
    if plan.action == "replace":
        return source, f"{kind} of {with_article(new or 'something else', plan.plural)}"
    if plan.action == "attribute":
        plain = pluralize(plan.target) if plan.plural else plan.target
        return source, f"{kind} of {with_article(f'{new} {plain}'.strip(), plan.plural)}"
    if plan.action == "remove":
        return source, f"{kind} of the background"
    return source, f"{source} with {with_article(new or 'something new')}"


def complete_plan(plan: EditPlan, context: Optional[ParseContext] = None, english_instruction: bool = False
                  ) -> EditPlan:
    """Fill in what a plan from elsewhere (an LLM) left out, the way the parser writes it: the
    caption pair (DiffEdit and CLIP direction need both) and a missing instruction. With
    ``english_instruction`` (the message was in another language) the instruction is rewritten from
    the plan's fields so InstructPix2Pix gets English."""
    update: dict[str, str] = {}
    if not plan.source_caption or not plan.target_caption:
        source, target = plan_captions(plan, context)
        update["source_caption"] = plan.source_caption or source
        update["target_caption"] = plan.target_caption or target
    if (english_instruction or not plan.instruction) and plan.action != "global":
        update["instruction"] = canonical_instruction(plan)
    return plan.model_copy(update=update) if update else plan


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
    text = _strip_fillers(clause)
    if not text:
        return Chat(text="Tell me what to change in the picture, e.g. " + EXAMPLES + "."), "chat"
    command = _command(text)
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
    """

    result: Understanding
    source: ReadingSource
    rest: tuple[str, ...] = ()

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
    clauses = split_instructions(text)
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
            return Reading(result, source, tuple(clauses[i + 1:6]))
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
