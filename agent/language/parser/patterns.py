"""The parser's regex tables: prompt-injection refusals, whole-utterance chat and commands, fillers,
question / wish -> imperative rewrites, and the clause splitter.
"""

from __future__ import annotations

import re
from typing import Callable, Optional, TYPE_CHECKING

from agent.language.parser.lexicon import EXAMPLES, VERB_STATES, _NUM
from agent.language.parser.words import is_attribute_value, is_scene_value

if TYPE_CHECKING:
    from agent.language.parser.rules import _State


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

_STEPS = rf"(?P<n>\d+|{_NUM}|twice|thrice)"  # any count: "undo 1000" goes back as far as there is
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
                r" (?:effect|edit|change)) (?:a (?:bit|little|lot) |even |much )?(?:stronger|more intense|more|more extreme|more pronounced|more obvious|"
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
