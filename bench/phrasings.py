"""Everyday instructions and what they mean: the table ``bench.llm`` scores the LLM path and the parser on.

Each ``Phrasing`` is a message, the context it is said in (a BLIP-2-like caption of the photo,
and for follow-ups the last edit) and what a correct reading is: the kinds or edit actions that are
right (several when a phrasing honestly allows both, "make the sky cloudy" is the sky's attribute
or a global edit) and the target's head word (None: no region, a global edit). Commands and chat
are in the table too: they must never wait for the LLM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from agent.language.arbiter import same_word
from agent.language.plan import EditPlan

SCENES = {
    "street": "a red car parked on a street next to a horse, a lamp post and two people",
    "room": "a living room with a cat sleeping on a sofa, a dog, a lamp and a table with a vase",
    "portrait": "a man with a beard and a woman in a blue dress smiling",
    "landscape": "a lake with mountains and trees on a sunny summer day",
    "shop": "a shop front with a wooden sign above the door and a bicycle",
}
"""Captions the cases are said against (what BLIP-2 would say of the photo)."""

LAST = {
    "car-red": EditPlan(action="attribute", target="car", new_value="red", instruction="make the car red"),
    "cat-fox": EditPlan(action="replace", target="cat", new_value="fox", qualifier="leftmost",
                        instruction="turn the leftmost cat into a fox"),
}
"""Last edits a follow-up refers to."""


@dataclass(frozen=True)
class Phrasing:
    """One message and its correct readings.

    ``accept``: the right kinds, each an edit action (``replace``, ``attribute``, ``add``, ``remove``,
    ``global``) or ``command`` / ``chat`` / ``clarify``. ``target``: the grounding phrase's head word
    (None: the plan has no target; ``"*"``: any object the caption names). ``scene``: a key of
    ``SCENES``; ``last``: a key of ``LAST``.
    """

    text: str
    accept: tuple[str, ...]
    target: Optional[str] = None
    scene: str = "street"
    last: Optional[str] = None
    group: str = field(default="", compare=False)

    @property
    def is_edit(self) -> bool:
        return any(a in ("replace", "attribute", "add", "remove", "global") for a in self.accept)


def P(text: str, accept: str, target: Optional[str] = None, scene: str = "street", last: Optional[str] = None,
      group: str = "") -> Phrasing:
    """A case; ``accept`` is ``|``-separated (``"attribute|global"``)."""
    return Phrasing(text, tuple(accept.split("|")), target, scene, last, group)


PHRASINGS: list[Phrasing] = [
    # --- what the issue measured: chat answers to clear edits, scene words as objects -------------
    P("Remove the horse", "remove", "horse", group="remove"),
    P("remove the horse from the photo", "remove", "horse", group="remove"),
    P("turn the day into night", "global", group="scene"),
    P("change the summer to winter", "global", scene="landscape", group="scene"),
    P("make the sky cloudy", "attribute|global", "sky", scene="landscape", group="scene"),
    P("let there be a rainbow over the lake", "add", "lake", scene="landscape", group="add"),
    P("change the sign so it is blank", "attribute", "sign", scene="shop", group="attribute"),
    # --- replace ----------------------------------------------------------------------------------
    P("turn the cat into a fox", "replace", "cat", scene="room", group="replace"),
    P("replace the dog with a lion", "replace", "dog", scene="room", group="replace"),
    P("swap the car for a truck", "replace", "car", group="replace"),
    P("change the horse into a zebra", "replace", "horse", group="replace"),
    P("could you make the dog look like a wolf", "replace", "dog", scene="room", group="replace"),
    P("I'd rather have a dog instead of the cat", "replace", "cat", scene="room", group="replace"),
    P("what if the cat was a tiger", "replace", "cat", scene="room", group="replace"),
    P("the lamp should be a candle", "replace", "lamp", scene="room", group="replace"),
    P("replace the background with a beach", "replace", "background", group="replace"),
    P("cat -> fox", "replace", "cat", scene="room", group="replace"),
    P("turn the bicycle into a motorbike", "replace", "bicycle", scene="shop", group="replace"),
    # --- attribute --------------------------------------------------------------------------------
    P("make the car blue", "attribute", "car", group="attribute"),
    P("paint the door green", "attribute", "door", scene="shop", group="attribute"),
    P("the sofa should be leather", "attribute", "sofa", scene="room", group="attribute"),
    P("can the cat be orange", "attribute", "cat", scene="room", group="attribute"),
    P("I want the car to be red", "attribute", "car", group="attribute"),
    P("i want the car blue", "attribute", "car", group="attribute"),
    P("change the colour of her dress to red", "attribute", "dress", scene="portrait", group="attribute"),
    P("make the man older", "attribute", "man", scene="portrait", group="attribute"),
    P("make the woman smile", "attribute", "woman", scene="portrait", group="attribute"),
    P("have the man smile", "attribute", "man", scene="portrait", group="attribute"),
    P("make the table wooden", "attribute", "table", scene="room", group="attribute"),
    P("turn the car upside down", "attribute", "car", group="attribute"),
    P("make the sign say open", "attribute", "sign", scene="shop", group="attribute"),
    P("change the sign so that it reads closed", "attribute", "sign", scene="shop", group="attribute"),
    P("paint the house so it looks old", "attribute", "house", group="attribute"),
    P("make the background blurry", "attribute", "background", group="attribute"),
    P("blur the background", "attribute", "background", group="attribute"),
    P("brighten the face", "attribute", "face", scene="portrait", group="attribute"),
    P("close the door", "attribute", "door", scene="shop", group="attribute"),
    P("make the sky more dramatic", "attribute|global", "sky", scene="landscape", group="attribute"),
    P("make the sky purple and the grass blue", "attribute", "sky", scene="landscape", group="attribute"),
    P("the car in blue please", "attribute", "car", group="attribute"),
    P("make the dog bigger", "attribute", "dog", scene="room", group="attribute"),
    P("make the balloons all different colours", "attribute", "balloon", group="attribute"),
    P("cover the ground with snow", "attribute|global", "ground", scene="landscape", group="attribute"),
    # --- qualifiers -------------------------------------------------------------------------------
    P("turn the leftmost cat into a fox", "replace", "cat", scene="room", group="qualifier"),
    P("remove the person on the right", "remove", "person", group="qualifier"),
    P("make the second car from the left red", "attribute", "car", group="qualifier"),
    P("remove the biggest tree", "remove", "tree", scene="landscape", group="qualifier"),
    P("make the cat in the middle black", "attribute", "cat", scene="room", group="qualifier"),
    P("remove the people in the background", "remove", "person", group="qualifier"),
    # --- add ----------------------------------------------------------------------------------------
    P("add a hat to the dog", "add", "dog", scene="room", group="add"),
    P("put sunglasses on the cat", "add", "cat", scene="room", group="add"),
    P("give the man a red scarf", "add", "man", scene="portrait", group="add"),
    P("I want the dog to wear sunglasses", "add", "dog", scene="room", group="add"),
    P("the dog needs a hat", "add", "dog", scene="room", group="add"),
    P("let there be a cat on the sofa", "add", "sofa", scene="room", group="add"),
    P("there should be a vase on the table", "add", "table", scene="room", group="add"),
    P("fill the sky with stars", "add|global", "sky", scene="landscape", group="add"),
    P("add a scarf around the dog's neck", "add", "dog", scene="room", group="add"),
    P("add a boat on the lake", "add", "lake", scene="landscape", group="add"),
    P("add a rainbow", "add|global", None, scene="landscape", group="add"),
    # --- remove -------------------------------------------------------------------------------------
    P("remove the lamp", "remove", "lamp", scene="room", group="remove"),
    P("get rid of the car", "remove", "car", group="remove"),
    P("erase the people", "remove", "person", group="remove"),
    P("take the hat off the man", "remove", "hat", scene="portrait", group="remove"),
    P("make the lamp disappear", "remove", "lamp", scene="room", group="remove"),
    P("I don't want the dog in the picture", "remove", "dog", scene="room", group="remove"),
    P("the lamp has to go", "remove", "lamp", scene="room", group="remove"),
    P("there's a bottle on the table, remove it", "remove", "bottle", scene="room", group="remove"),
    P("the lamp is ugly, remove it", "remove", "lamp", scene="room", group="remove"),
    P("shave the man's beard", "remove", "beard", scene="portrait", group="remove"),
    P("pls remove teh lamp", "remove", "lamp", scene="room", group="remove"),
    # --- global -------------------------------------------------------------------------------------
    P("make it winter", "global", scene="landscape", group="global"),
    P("make it look like night", "global", group="global"),
    P("turn the morning into evening", "global", scene="landscape", group="global"),
    P("transform the summer landscape into a winter one", "global", scene="landscape", group="global"),
    P("make it look like a Van Gogh painting", "global", group="global"),
    P("make the photo black and white", "global", group="global"),
    P("give the photo a vintage look", "global", group="global"),
    P("add a sepia filter", "global", group="global"),
    P("let it snow", "global", scene="landscape", group="global"),
    P("what would it look like at sunset", "global", scene="landscape", group="global"),
    P("make it foggy", "global", scene="landscape", group="global"),
    P("change the weather to rainy", "global", scene="landscape", group="global"),
    P("make it look old", "global", group="global"),
    P("turn the lights off", "global|attribute", "light", scene="room", group="global"),
    # --- follow-ups ---------------------------------------------------------------------------------
    P("now make it blue", "attribute", "car", last="car-red", group="follow-up"),
    P("make it a truck", "replace", "car", last="car-red", group="follow-up"),
    P("remove it", "remove", "fox", scene="room", last="cat-fox", group="follow-up"),
    P("give it a hat", "add", "fox", scene="room", last="cat-fox", group="follow-up"),
    P("do the same to the dog", "replace", "dog", scene="room", last="cat-fox", group="follow-up"),
    P("the cat looks sad, make it happy", "attribute", "cat", scene="room", group="follow-up"),
    P("make it blue", "clarify|attribute", "*", scene="room", group="follow-up"),
    # --- commands and chat: answered without the LLM --------------------------------------------------
    P("undo", "command", group="command"),
    P("go back two steps", "command", group="command"),
    P("show me the mask", "command", group="command"),
    P("try again", "command", group="command"),
    P("make it stronger", "command", group="command"),
    P("the other one", "command", group="command"),
    P("never mind", "command", group="command"),
    P("hello", "chat", group="chat"),
    P("thanks, looks great", "chat", group="chat"),
    P("what can you do?", "chat", group="chat"),
    # --- other languages: the parser cannot read them; an LLM can -------------------------------------
    P("transforme le chat en renard", "replace", "cat", scene="room", group="language"),
    P("enlève la voiture", "remove", "car", group="language"),
    P("pon el coche rojo", "attribute", "car", group="language"),
    P("quita el caballo", "remove", "horse", group="language"),
    P("mach den Hund größer", "attribute", "dog", scene="room", group="language"),
]
"""The table (107 cases)."""


def kind_of(result: object) -> str:
    """The kind a reading is scored as: an ``EditPlan``'s action, else its ``kind``."""
    if isinstance(result, EditPlan):
        return result.action
    return str(getattr(result, "kind", type(result).__name__.lower()))


def action_right(case: Phrasing, result: object) -> bool:
    """Whether a reading's kind (or action) is one the case accepts."""
    return kind_of(result) in case.accept


def target_right(case: Phrasing, result: object) -> bool:
    """Whether an edit's target has the case's head word (or both have none; a global edit, where the
    case accepts one, has none). Non-edits: right when the case is not an edit."""
    if case.target == "*":  # a question, or an edit of any object of the photo
        return not isinstance(result, EditPlan) or any(
            same_word(w, (result.target or "?").split()[-1]) for w in SCENES[case.scene].replace(",", " ").split())
    if not case.is_edit:
        return not isinstance(result, EditPlan)
    if not isinstance(result, EditPlan):
        return case.target is None and kind_of(result) in case.accept
    if case.target is None or (result.action == "global" and "global" in case.accept):
        return result.target is None
    words = (result.target or "").lower().split()
    return bool(words) and same_word(words[-1], case.target)
