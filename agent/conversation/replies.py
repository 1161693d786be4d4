"""Every sentence the agent says, written from templates in one place.

The central one is ``edit_done``: what was done, to which object(s) and how they were picked
(``Where``), with which editor, what was retried, what may still be off. ``where`` names the
objects the same way everywhere: candidates are numbered 1..n left to right
(``agent.conversation.select.candidate_order``), in the question, its picture, the reply and the chat UI's
detections step. No template nests brackets, repeats an article or says "the the".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

from agent.language.parser import pluralize

HOW = ("only", "one_clear", "position", "all", "half", "guess", "group", "count", "user", "other", "referent",
       "selected", "global", "fallback")
"""How the edited objects were picked (``Where.how``)."""

PREFIX_DESCS = ("leftmost", "rightmost", "topmost", "bottommost", "largest", "smallest")
"""Position words that go before "of the N cats"; the others ("in the middle", "closest to the camera",
"nearest the top left corner") follow "the one"."""

CANCEL_HINT = "Say 'cancel' to leave the image as it is."


@dataclass
class Where:
    """Which objects an edit changed and how they were picked.

    ``name``: the target phrase, singular ("cat", "white cat"); ``chosen``: how many were edited;
    ``total``: how many candidates grounding found (after duplicates and weak boxes were set aside);
    ``desc``: the position/size word of the pick ("leftmost", "in the middle", "2nd from the left",
    "left" for a half); ``numbers``: the chosen candidates' numbers (1-based, left to right);
    ``tie``: the pick was a near tie; ``asked``: the count the user asked for ("the two cats").
    """

    how: str
    name: str = "object"
    chosen: int = 1
    total: int = 1
    desc: str = ""
    numbers: list[int] = field(default_factory=list)
    tie: bool = False
    asked: Optional[int] = None

    def __post_init__(self) -> None:
        if self.how not in HOW:
            raise ValueError(f"unknown way of picking {self.how!r}")


def _and(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _numbers(w: Where) -> str:
    nums = [str(n) for n in w.numbers] or ["?"]
    noun = w.name if len(nums) == 1 else pluralize(w.name)
    return f"{noun} {_and(nums)} of {w.total}"


def _of_the(w: Where) -> str:
    """"the 3 cats" (or "both cats")."""
    return f"the {w.total} {pluralize(w.name)}"


def _the_one(desc: str, of: str) -> str:
    """"the leftmost of the 3 cats" / "the one in the middle of the 3 cats"."""
    return f"the {desc} of {of}" if desc in PREFIX_DESCS or re.match(r"\d+(?:st|nd|rd|th) from", desc) \
        else f"the one {desc} of {of}"


def where(w: Where) -> str:
    """The object(s) an edit changed, as a noun phrase: "the leftmost of the 3 cats"."""
    names = pluralize(w.name)
    if w.how == "global":
        return "the whole image"
    if w.how == "fallback":
        return (f"the whole image: the edits of the {w.name if w.chosen == 1 else names} alone scored worse, "
                f"so I kept plain InstructPix2Pix")
    if w.how == "selected":  # pointed at (agent.conversation.pointing): a click or "select the cat on the left"
        return "the region you selected" if w.name in ("region", "object") else f"the {w.name} you selected"
    if w.how == "referent":
        return f"the same {w.name if w.chosen == 1 else f'{w.chosen} {names}'} as the last edit"
    if w.how == "only" or (w.total == 1 and w.how in ("all", "half", "group", "position")):
        return f"the only {w.name} I found"
    if w.how == "one_clear":
        return f"the one clear {w.name} I found"
    if w.how == "user":
        if w.chosen == w.total and w.total > 1:
            return f"{'both' if w.total == 2 else f'all {w.total}'} {names}, as you chose"
        return f"{_numbers(w)}, as you chose"
    if w.how == "other":
        return f"{_numbers(w)}, the other candidate"
    if w.how == "all":
        return f"both {names}" if w.total == 2 else f"all {w.total} {names}"
    if w.how == "position":
        return _the_one(w.desc, _of_the(w))
    if w.how == "guess":
        return f"{_the_one(w.desc, _of_the(w))}, since none is on the {w.desc.replace('most', '')}"
    if w.how == "half":
        side = w.desc.replace("most", "")
        return (f"the one of {_of_the(w)} on the {side}" if w.chosen == 1
                else f"the {w.chosen} of {_of_the(w)} on the {side}")
    if w.how == "group":
        if w.desc in PREFIX_DESCS:
            return f"the {w.desc} of {_of_the(w)}" if w.chosen == 1 else f"the {w.chosen} {w.desc} of {_of_the(w)}"
        return f"the one of {_of_the(w)} {w.desc}" if w.chosen == 1 else f"the {w.chosen} of {_of_the(w)} {w.desc}"
    # count: "the two cats"
    if w.asked and w.total < w.asked:
        return f"all {w.total} {names}, though you asked for {w.asked}"
    desc = w.desc or "best-scoring"
    return f"the {w.chosen} {desc} of {_of_the(w)}"


def reason(w: Where) -> str:
    """Why these objects, for the detections step: "the leftmost of the 3 cats, a near tie"."""
    return where(w) + (", a near tie" if w.tie else "")


def the_objects(w: Where) -> str:
    """The edited object(s) in a few words, for the one-sentence reply: "the leftmost disc", "cat 2",
    "both cats", "the cat in the middle"; never coordinates."""
    names = pluralize(w.name)
    if w.how in ("global", "selected"):
        return where(w)  # "the whole image", "the region you selected", "the cat you selected"
    if w.how in ("user", "other"):
        if w.chosen == w.total and w.total > 1:
            return f"both {names}" if w.total == 2 else f"all {w.total} {names}"
        nums = [str(n) for n in w.numbers]
        return f"{w.name if len(nums) <= 1 else names} {_and(nums)}" if nums else f"the {w.name}"
    if w.how == "all" or (w.how == "count" and w.chosen >= w.total > 1):
        return f"both {names}" if w.chosen == 2 else f"all {w.chosen} {names}"
    if w.how in ("position", "guess", "half", "group", "count") and w.total > 1:
        desc = w.desc.replace("most", "") if w.how == "half" else w.desc
        noun = w.name if w.chosen == 1 else f"{w.chosen} {names}"
        if not desc:
            return f"the {noun}"
        if w.how == "half":
            return f"the {noun} on the {desc}"
        return f"the {desc} {noun}" if desc in PREFIX_DESCS else f"the {noun} {desc}"
    return f"the {w.name}" if w.chosen == 1 else f"the {w.chosen} {names}"


def done(action: str, new_value: Optional[str], instruction: str, w: Where, *, problems: Sequence[str] = (),
         region_hint: Optional[str] = None, rerun: str = "") -> str:
    """The one-sentence reply to an edit ("Done: the leftmost disc is blue now."; after "stronger":
    "Done, stronger: ..."), plus what to say next when it helps (a near tie, a result that may still be
    off). The editor, knobs, scores and attempts are in ``edit_done`` (the step details)."""
    value = (new_value or "").strip().rstrip(".")
    if w.how in ("global",) or action == "global" or not value and action != "remove":
        text = f"Done: {(instruction or 'the edit').strip().rstrip('.')}."
    else:
        obj = the_objects(w)
        many = w.chosen > 1
        if action == "remove":
            text = f"Done: {obj} {'are' if many else 'is'} gone."
        elif action == "add":
            where_ = (region_hint or "").strip() or f"on {obj}"
            text = f"Done: I added {value} {where_}."
        elif action == "replace":
            new = value if many or re.match(r"^(?:a|an|the|some)\s", value) else \
                ("an " if re.match(r"[aeiou]", value) else "a ") + value
            text = f"Done: {obj} {'are' if many else 'is'} {pluralize(value) if many else new} now."
        else:
            text = f"Done: {obj} {'are' if many else 'is'} {value} now."
    if rerun:  # "stronger", "try again", "the other candidate": what this version changed
        text = f"Done, {rerun}:" + text[len("Done:"):]
    if w.how == "fallback":
        text += " The edit of the object alone looked worse, so I edited the whole picture."
    if problems:
        text += " It may still be off: say 'try again', 'stronger' or 'undo'."
    elif w.tie and w.how in ("position", "group", "half", "guess"):
        text += f" If you meant another {w.name}, say 'the other one'."
    return text


def edit_done(instruction: str, w: Where, editor: str, *, attempts: int = 1, kept_why: str = "",
              problems: Sequence[str] = (), note: str = "", knob: str = "") -> str:
    """The details of an edit that made a new version (``Reply.details``, chat-cli's ``/details``, the
    UI's step details); the reply itself is ``done``.

    Args:
        instruction: the edit as a command ("make the cat red").
        w: the object(s) edited and how they were picked.
        editor: the editor of the kept attempt.
        attempts: how many edits were tried this turn; ``kept_why`` says why the kept one was tried.
        problems: what the judge still finds wrong with the kept result.
        note: how the message was understood, when worth saying (an LLM failure, a repair).
        knob: which knob the kept attempt moved, e.g. "stronger: text guidance 7.5 -> 10".
    """
    what = (instruction or "the edit").strip().rstrip(".")
    text = f"Done: {what}, on {where(w)}, with {editor}" + (f" ({knob})." if knob else ".")
    if attempts > 1:
        text += f" I tried {attempts} edits and kept the best: {kept_why or 'the first try'}."
    if problems:
        text += " It may still be off: " + "; ".join(problems) + "."
    if w.tie and w.how in ("position", "group", "half", "guess"):
        text += f" It was a near tie: say 'the other one' if you meant another {w.name}."
    if note:
        text += f" Note: {note.strip().rstrip('.')}."
    return text


# --- questions ----------------------------------------------------------------------------------

def which_one(name: str, total: int, note: str = "") -> str:
    """The question when several candidates fit (numbered left to right in the picture)."""
    return (f"{note}I found {total} {pluralize(name)}, numbered 1 to {total} from left to right. Which one? "
            f"Reply with a number, 'all', or e.g. 'the left one'. {CANCEL_HINT}")


def with_cancel_hint(question: str) -> str:
    """A question that says how to drop it (added once)."""
    question = question.strip()
    return question if "'cancel'" in question else f"{question} {CANCEL_HINT}"


def not_an_answer(question: str) -> str:
    return f"Sorry, I didn't get that as an answer. {question}"


QUESTION_DROPPED = "OK, I left the image as it is."


# --- commands and the turn ------------------------------------------------------------------------

def moved(verb: str, steps: int, number: int, total: int, note: str, asked: int = 0) -> str:
    """After undo / redo / go to version: "Undid 1 step: now showing the result of ... (version 2 of 3)".

    ``asked`` more steps than there were ("undo 1000", "go back to the original"): it went as far as
    there is, and says so.
    """
    edge = ""
    if asked > steps:
        edge = f", as far {'back' if verb == 'Undid' else 'forward'} as there is"
    return f"{verb} {steps} step{'s' * (steps != 1)}{edge}: now showing {note}, version {number} of {total}."


def nothing_to(command: str) -> str:
    edge = "the original photo" if command == "undo" else "the newest edit on this line"
    return f"Nothing to {command}: this is {edge}."


def showing_version(number: int, total: int, note: str) -> str:
    return f"Now showing version {number} of {total}: {note}."


def too_long(chars: int, limit: int) -> str:
    return (f"That message is {chars:,} characters long; I read instructions of up to {limit:,}. "
            "Please say what to change in one short sentence.")


def no_such_version(number: int, total: int) -> str:
    return f"There is no version {number}; this conversation has {total} (1 is the first photo)."


MASK_SHOWN = "Here is the region I edited to make this version, over the image."
NO_EDIT_YET = "This is the photo as uploaded: no edit made it, so there is no mask to show or edit to redo."
WHOLE_IMAGE = "This version came from an edit of the whole image, so there is no mask to show."
ONLY_CANDIDATE = "There was only one candidate, so there is no other one to edit."
def dropped(question: str, reply: str) -> str:
    """A command said while a question was open ("undo" instead of "2"): the reply, and that the question is gone."""
    asked = re.sub(r"\s*Say 'cancel'.*$", "", question.strip()).rstrip()
    asked = asked if len(asked) <= 90 else asked[:87].rsplit(" ", 1)[0] + "..."
    return f"{reply} (I dropped my question \"{asked}\"; say the instruction again to pick one.)"


def all_edited(count: int, name: str) -> str:
    """"the other one" after an edit of every candidate: there is no other."""
    return (f"I edited all {count} {pluralize(name)}, so there is no other one. Say which one you meant "
            f"(e.g. 'the left one') or 'undo'.")


NOTHING_CHANGED = "OK, nothing changed."
GOT_PHOTO = "Got your photo. What should I change?"
SAY_SOMETHING = "Tell me what to change, e.g. \"turn the cat into a fox\"."
UPLOAD_FIRST = "Please upload a photo first, then tell me what to change."
NOTHING_TO_EDIT = "I had nothing to edit."


def stopped(detail: str = "") -> str:
    """A turn cancelled by Stop / Ctrl-C: no version was made."""
    detail = detail.strip().rstrip(".")
    return "Stopped: I left the image as it was" + (f" ({detail[0].lower() + detail[1:]})" if detail else "") + "."


def busy(waited: float) -> str:
    """A message that arrived while another turn of the same thread was running."""
    waited_text = f" (I waited {waited:g} s)" if waited > 0 else ""
    return ("I'm still working on your last message in this conversation" + waited_text +
            "; I did not take this one. Send it again when that finishes, or stop it first.")


def failed(stage: str, error_name: str) -> str:
    return (f"Something went wrong while I was at the {stage} step ({error_name}); your images and our "
            f"conversation are unchanged.")
