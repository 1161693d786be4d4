"""Pointing at the object (``agent.conversation.pointing``) in a real conversation: a click selects the object it falls
in, shift- / alt-clicks refine it, typed equivalents do the same, and the next edit changes that region
without grounding. Grounding is the test scene's (``tests.helpers.scenes``); SAM, the editors and CLIP are the tiny
real models, so masks are checked against the clicked object's box, not its outline.
"""

from __future__ import annotations

import numpy as np
import pytest

from agent.conversation.pointing import Pointer
from agent.runtime.store import ImageStore
from tests.helpers.scenes import CATS, edited_region, inside, pixels

TAIL = (108, 70, 124, 84)  # a "tail" between the middle and the right cat


@pytest.fixture
def scene_objects():
    """The cats, a "tail" between the middle and the right one, and "object" (what a click grounds)."""
    return {"cat": CATS, "tail": [TAIL], "object": CATS}


def mask_of(selection) -> np.ndarray:
    return ImageStore.open_mask(selection["mask"])


def test_a_click_selects_the_object_it_falls_in_and_the_next_edit_changes_only_that(chat, conversations):
    worker = conversations.worker
    pointed = Pointer(chat).click(85, 60)  # inside the middle cat
    assert not pointed.error and pointed.selection["box"] == list(CATS[1]) and pointed.selection["label"] is None
    assert pointed.selection["points"] == [[85.0, 60.0, 1]] and pointed.picture
    assert inside(mask_of(pointed.selection), CATS[1], dilate=0)
    assert chat.selection() == pointed.selection
    original = pixels(chat.current_image_path())
    calls = len(worker.ground_calls)

    reply = chat.send("make it red")  # "it" is what was pointed at
    assert not reply.error and not reply.question, reply.text
    assert len(worker.ground_calls) == calls, "the selection replaces grounding"
    region = edited_region(chat)
    assert region.any() and inside(region, CATS[1], work=(64, 48))
    after = pixels(chat.current_image_path())
    assert np.array_equal(after[~region], original[~region])
    assert chat.selection() is None, "a selection is used up by the edit"
    record = chat.record()  # the new version's record holds the selected region
    assert record["boxes"] == [list(CATS[1])] and record["where"]["how"] == "selected"
    assert reply.text == "Done: the region you selected is red now." and "ground" in reply.report["skipped"]
    assert "segment" in reply.report["skipped"], "the selection's mask replaces SAM in the turn"


def test_a_named_object_after_a_click_still_edits_the_click(chat):
    Pointer(chat).click(135, 65)  # the right cat
    reply = chat.send("make the cat blue")  # three cats, but the user pointed: no question
    assert not reply.question and not reply.error, reply.text
    assert inside(edited_region(chat), CATS[2], work=(64, 48))


def test_shift_and_alt_clicks_refine_the_selection(chat):
    pointer = Pointer(chat)
    first = pointer.click(85, 60)
    added = pointer.click(70, 80, mode="add")
    assert added.selection["points"] == [[85.0, 60.0, 1], [70.0, 80.0, 1]] and added.selection["box"] == list(CATS[1])
    removed = pointer.click(100, 40, mode="remove")
    assert removed.selection["points"][-1] == [100.0, 40.0, 0] and "Took out" in removed.text
    assert chat.selection()["points"] == removed.selection["points"]
    assert first.selection["mask"] != removed.selection["mask"] or first.selection["points"] != removed.selection["points"]


def test_refining_with_nothing_selected(chat):
    pointer = Pointer(chat)
    refused = pointer.click(85, 60, mode="remove")
    assert refused.error and "click the object first" in refused.text and chat.selection() is None
    assert not pointer.click(85, 60, mode="add").error  # "add" with nothing selected selects
    off = pointer.click(500, 10)
    assert off.error and "outside" in off.text


def test_a_click_answers_an_open_question(chat):
    asked = chat.send("make the cat green")
    assert asked.question
    pointer = Pointer(chat)
    assert pointer.click(140, 60).answer == "3"  # candidates are numbered left to right
    miss = pointer.click(5, 5)
    assert miss.error and miss.answer is None and "numbered boxes" in miss.text
    with pytest.raises(Exception, match="open question"):
        chat.set_selection({"base": chat.current_image_path()})
    reply = chat.send(pointer.click(30, 60).answer)
    assert not reply.question and inside(edited_region(chat), CATS[0], work=(64, 48))


def test_typed_selection_and_refinement(chat, conversations):
    pointer = Pointer(chat)
    assert pointer.typed("make the cat red") is None and pointer.typed("undo") is None
    picked = pointer.typed("select the cat on the right")
    assert not picked.error and picked.selection["box"] == list(CATS[2]) and picked.selection["label"] == "cat"
    tail = pointer.typed("include the tail")
    assert not tail.error and tail.selection["points"][-1][2] == 1 and "tail" in tail.text
    x0, y0, x1, y1 = tail.selection["box"]
    assert x0 <= TAIL[0] and x1 >= TAIL[2], "the part joins the selection's box"
    out = pointer.typed("exclude the tail")
    assert out.selection["points"][-1][2] == 0
    assert pointer.typed("include the moon").error  # nothing to ground: one sentence, nothing changed
    assert chat.selection()["points"] == out.selection["points"]
    assert not pointer.typed("the one at the top left").error  # no edit yet, so this selects
    assert chat.selection()["box"] == list(CATS[0])
    assert "Selection cleared" in pointer.clear().text and chat.selection() is None


def test_after_an_edit_the_one_on_the_left_still_corrects_it(chat):
    chat.send("make the leftmost cat red")
    assert Pointer(chat).typed("the one on the right") is None  # the parser's "no, the other one"
    # a shift-click right after an edit refines the region that edit changed
    refined = Pointer(chat).click(20, 60, mode="add")
    assert not refined.error and refined.selection["box"] == list(CATS[0]) and refined.selection["label"] == "cat"


def test_a_new_photo_an_edit_or_undo_ends_the_selection(chat, photo_path):
    Pointer(chat).click(85, 60)
    chat.send("", image=photo_path)
    assert chat.selection() is None
    Pointer(chat).click(85, 60)
    assert not chat.send("make it look like winter").error  # any edit that lands uses it up
    assert chat.selection() is None
    Pointer(chat).click(85, 60)  # on the winter picture
    chat.send("undo")  # back to the photo: the selection was made on another image and does not apply
    assert chat.send("make the cat red").question


def test_a_selection_is_the_referent_until_another_object_is_named(chat, conversations):
    """agent.conversation.referent: the pending selection is what "it" is; a follow-up then reuses the region the
    selection's edit changed; a labelled selection gives way when the message names another object."""
    worker = conversations.worker
    Pointer(chat).typed("select the cat on the right")  # a labelled selection ("cat")
    assert chat.send("make it red").report["skipped"].get("ground") == "the region you selected"
    calls = worker.calls()
    again = chat.send("now make it blue")  # the region the selection's edit changed: still no grounding, no SAM
    assert "the same cat as the last edit" in again.details and worker.calls()[1:] == calls[1:], again.details
    assert inside(edited_region(chat), CATS[2], work=(64, 48))

    conversations.worker.objects["dog"] = [CATS[0]]
    Pointer(chat).typed("select the cat on the right")
    grounded = len(worker.ground_calls)
    other = chat.send("make the dog green")  # names another object than the selected cat: ground afresh
    assert worker.ground_calls[grounded:] == ["dog"] and inside(edited_region(chat), CATS[0], work=(64, 48)), other.text
    assert chat.selection() is None  # the edit landed: the selection is used up
