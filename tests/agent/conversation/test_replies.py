"""Replies read well in every shape (issue 14, failure 7), and candidates are numbered one way everywhere."""

from __future__ import annotations

import re

import pytest

from agent.conversation.replies import Where, edit_done, reason, which_one
from agent.conversation.select import Choice, candidate_order, choose
from agent.language.plan import EditPlan
from tools.types import Detection

SIZE = (300, 100)


def balls(n: int, y=(40, 60), spacing=None) -> list[Detection]:
    """``n`` balls in a row; listed by score, which is NOT left to right (the numbering must not follow it)."""
    spacing = spacing or SIZE[0] // (n + 1)
    boxes = [(spacing * (k + 1) - 8, y[0], spacing * (k + 1) + 8, y[1]) for k in range(n)]
    order = list(range(n))[::-1][n // 3:] + list(range(n))[::-1][: n // 3]  # a scrambled score order
    return [Detection("ball", 0.9 - 0.01 * rank, boxes[k]) for rank, k in enumerate(order)]


def nested(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth > 1 or depth < 0:
            return True
    return depth != 0


def assert_reads_well(text: str) -> None:
    assert not nested(text), f"brackets in brackets: {text}"
    for bad in (r"\bthe the\b", r"\bthe in\b", r"\bthe on\b", r"\ba a\b", r"\(you chose\)", r"\s[,.]", r"\.\.",
                r"\bof 1 \w+s\b", r"\ball 1\b", r"\b1 \w+s\b", r"\bbest-scoring best\b"):
        assert not re.search(bad, text), f"{bad!r} in: {text}"
    assert text[0].isupper() and text.endswith((".", "?"))


def plan(**fields) -> EditPlan:
    return EditPlan(**{"action": "attribute", "target": "ball", "new_value": "red", "instruction": "make the ball red",
                       **fields})


SHAPES = [  # (plan fields, detections, what the reply must say)
    ({}, balls(1), "on the only ball I found"),
    ({"qualifier": "leftmost"}, balls(3), "on the leftmost of the 3 balls"),
    ({"qualifier": "middle"}, balls(13), "on the one in the middle of the 13 balls"),
    ({"qualifier": "2nd from right"}, balls(4), "on the 2nd from the right of the 4 balls"),
    ({"qualifier": "largest"}, [Detection("ball", 0.9, (10, 10, 40, 40)), Detection("ball", 0.8, (100, 10, 200, 90))],
     "on the largest of the 2 balls"),
    ({"qualifier": "front"}, [Detection("ball", 0.9, (10, 10, 40, 40)), Detection("ball", 0.8, (100, 30, 160, 99))],
     "on the one closest to the camera of the 2 balls"),
    ({"plural": True}, balls(3), "on all 3 balls"),
    ({"plural": True}, balls(2), "on both balls"),
    ({"plural": True}, balls(1), "on the only ball I found"),
    ({"plural": True, "qualifier": "left"}, balls(4), "on the 2 of the 4 balls on the left"),
    ({"plural": True, "count": 2, "qualifier": "leftmost"}, balls(4), "on the 2 leftmost of the 4 balls"),
    ({"plural": True, "count": 5}, balls(3), "on all 3 balls, though you asked for 5"),
]


@pytest.mark.parametrize("fields,detections,expected", SHAPES)
def test_the_reply_names_the_objects_the_way_they_were_picked(fields, detections, expected):
    p = plan(**fields)
    choice = choose(p, detections, SIZE)
    assert isinstance(choice, Choice), choice
    text = edit_done(p.instruction, choice.where(p.grounding_phrase), "ip2p-composite")
    assert expected in text, text
    assert_reads_well(text)
    assert_reads_well(reason(choice.where(p.grounding_phrase)).capitalize() + ".")


def test_a_near_tie_says_so_once_and_offers_the_other_one():
    p = plan(qualifier="leftmost")
    dets = [Detection("ball", 0.9, (100, 40, 120, 60)), Detection("ball", 0.8, (102, 10, 122, 30)),
            Detection("ball", 0.7, (250, 40, 270, 60))]
    choice = choose(p, dets, SIZE)
    assert not choice.certain
    text = edit_done(p.instruction, choice.where("ball"), "ip2p-composite")
    assert text.count("near tie") == 1 and "say 'the other one'" in text
    assert_reads_well(text)
    assert reason(choice.where("ball")) == "the leftmost of the 3 balls, a near tie"


@pytest.mark.parametrize("w,expected", [
    (Where("user", name="ball", numbers=[2], total=13), "on ball 2 of 13, as you chose"),
    (Where("user", name="ball", chosen=2, numbers=[1, 3], total=3), "on balls 1 and 3 of 3, as you chose"),
    (Where("user", name="ball", chosen=3, numbers=[1, 2, 3], total=3), "on all 3 balls, as you chose"),
    (Where("other", name="cat", numbers=[3], total=3), "on cat 3 of 3, the other candidate"),
    (Where("referent", name="fox"), "on the same fox as the last edit"),
    (Where("referent", name="cat", chosen=2), "on the same 2 cats as the last edit"),
    (Where("global"), "on the whole image"),
    (Where("fallback", name="cat"), "on the whole image: the edits of the cat alone scored worse"),
    (Where("one_clear", name="white cat"), "on the one clear white cat I found"),
    (Where("guess", name="cat", desc="leftmost", total=2), "on the leftmost of the 2 cats, since none is on the left"),
    (Where("group", name="cat", chosen=2, total=5, desc="farthest from the camera"),
     "on the 2 of the 5 cats farthest from the camera"),
])
def test_every_shape_reads_well(w, expected):
    text = edit_done("make the cat red", w, "ip2p", attempts=3, kept_why="stronger edit",
                     problems=["the background moved (CLIP-GC 0.80)"], note="the model's first answer was invalid")
    assert expected in text, text
    assert "I tried 3 edits and kept the best: stronger edit." in text and "It may still be off" in text
    assert_reads_well(text)


def test_unknown_shape_is_refused():
    with pytest.raises(ValueError):
        Where("by magic")


def test_the_question_and_the_reply_number_candidates_the_same_way():
    dets = balls(5)
    order = candidate_order(dets)
    lefts = [dets[i].box[0] for i in order]
    assert lefts == sorted(lefts) and order != list(range(5))  # left to right, not by score
    question = which_one("ball", len(order))
    assert "numbered 1 to 5 from left to right" in question and "'cancel'" in question
    from agent.conversation.select import resolve_answer, make_choice

    picked = resolve_answer("4", dets, SIZE)
    choice = make_choice(picked, "user", "ball", order)
    assert picked == [order[3]] and choice.numbers == [4]
    assert "ball 4 of 5" in edit_done("make the ball red", choice.where("ball"), "ip2p-composite")
