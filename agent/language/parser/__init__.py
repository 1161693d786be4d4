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

Qualifiers inside noun phrases are normalised by ``agent.language.plan.extract_qualifier``; see the
vocabulary in ``agent.language.plan``. ``parse`` never raises.
"""

from __future__ import annotations

from agent.language.parser.lexicon import (  # noqa: F401
    ADJ_SUFFIX_RE,
    COLOURS,
    EXAMPLES,
    GENDERED,
    HAIR_WORDS,
    IRREGULAR_PLURALS,
    MASS_NOUNS,
    MATERIALS,
    MAX_CHARS,
    MULTIWORD_STATES,
    NOT_COMPARATIVES,
    NOT_PLURAL_RE,
    NUMBER_WORDS,
    PART_WORDS,
    PERSON_WORDS,
    PLURAL_ONLY,
    PRONOUNS_PLURAL,
    PRONOUNS_SINGULAR,
    SCENE_ADJECTIVES,
    SCENE_NOUNS,
    SCENE_RE,
    SINGULAR_TO_PLURAL,
    SIZE_WORDS,
    STATES,
    STRONG_SCENE_RE,
    STYLE_NOUN_RE,
    TEXTURES,
    VALUE_MODIFIERS,
    VALUE_PREFIX_RE,
    VERB_STATES,
    VERB_VALUES,
    WHOLE_IMAGE,
    WHOLE_IMAGE_RE,
)
from agent.language.parser.language import (  # noqa: F401
    ENGLISH_WORDS,
    FOREIGN_OBJECTS,
    FOREIGN_REMOVE,
    FOREIGN_WORDS,
    asks_removal,
    foreign_language,
    foreign_share,
    named_objects,
    not_english_reply,
)
from agent.language.parser.words import (  # noqa: F401
    ADJECTIVES,
    NounPhrase,
    ParseContext,
    caption_kind,
    is_attribute_value,
    is_removal_value,
    is_scene_adjective,
    is_scene_np,
    is_scene_value,
    parse_np,
    pluralize,
    singularize,
    strip_article,
    with_article,
)
from agent.language.parser.patterns import (  # noqa: F401
    CHAT_PATTERNS,
    CLAUSE_SPLIT_RE,
    COMMAND_PATTERNS,
    EDIT_VERBS,
    FILLER_RE,
    INJECTION_RE,
    REWRITES,
    TRAILING_RE,
)
from agent.language.parser.rules import (  # noqa: F401
    EDIT_PATTERNS,
    LIGHT_COMPOUNDS,
    PLACE_NOUNS,
    split_object_value,
)
from agent.language.parser.completion import (  # noqa: F401
    canonical_instruction,
    complete_plan,
    plan_captions,
)
from agent.language.parser.reader import (  # noqa: F401
    Reading,
    ReadingSource,
    parse,
    read,
    split_instructions,
)
