"""The parser's vocabulary: colours, materials, textures, sizes, states, scene words, pronouns,
numbers, irregular plurals; the words and patterns every other part of ``agent.language.parser`` reads.
"""

from __future__ import annotations

import re


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
ANIMAL_WORDS = set("""
dog cat puppy kitten horse pony cow bull sheep lamb goat pig bird parrot owl duck chicken hen rooster bear fox wolf
lion tiger leopard cheetah elephant giraffe zebra monkey rabbit bunny hamster mouse rat squirrel deer camel llama
alpaca penguin dolphin whale seal otter turtle tortoise frog snake lizard fish shark panda koala kangaroo donkey
swan goose eagle hawk butterfly bee
""".split())
"""Animals: "put a hat on her" means the dog when the photo shows a dog."""

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
