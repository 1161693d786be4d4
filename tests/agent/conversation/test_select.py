"""agent.conversation.select: which box a plan means, and reading the user's answer to "which one?"."""

from __future__ import annotations

import pytest

from agent.conversation.select import Choice, candidate_order, candidates, choose, resolve_answer
from agent.language.plan import Clarify, EditPlan
from tools.types import Detection

W, H = 1000, 600
SIZE = (W, H)


def det(x0: float, y0: float, x1: float, y1: float, score: float = 0.9, label: str = "cat") -> Detection:
    return Detection(label=label, score=score, box=(x0, y0, x1, y1))


def plan(qualifier: str | None = None, plural: bool = False, count: int | None = None,
         target: str = "cat") -> EditPlan:
    return EditPlan(action="replace", target=target, qualifier=qualifier, plural=plural, count=count,
                    new_value="fox", instruction="turn the cat into a fox")


# three cats in a row, listed out of order: index 0 is the middle one, 1 the right one, 2 the left one
ROW = [det(400, 200, 560, 400, 0.80), det(750, 220, 900, 380, 0.85), det(50, 210, 200, 390, 0.90)]


def one(result: Choice | Clarify) -> int:
    assert isinstance(result, Choice), result
    assert len(result.indices) == 1, result
    return result.indices[0]


# ---------------------------------------------------------------------------------------------
# candidates and numbering
# ---------------------------------------------------------------------------------------------


def test_candidate_order_is_left_to_right():
    assert candidate_order(ROW) == [2, 0, 1]


def test_candidates_drop_duplicates_and_weak_boxes():
    dets = [det(100, 100, 200, 200, 0.9), det(102, 101, 201, 199, 0.8),  # duplicate of 0
            det(500, 100, 600, 200, 0.7), det(800, 100, 900, 200, 0.2)]  # 3 is weak (< 0.5 * 0.9)
    assert candidates(dets) == [0, 2]
    assert candidate_order(dets) == [0, 2]


def test_invalid_boxes_are_ignored():
    dets = [det(10, 10, 10, 50), det(float("nan"), 0, 5, 5), det(300, 100, 400, 200)]
    assert candidate_order(dets) == [2]
    assert one(choose(plan(), dets, SIZE)) == 2


# ---------------------------------------------------------------------------------------------
# choose: singular
# ---------------------------------------------------------------------------------------------


def test_no_detection_asks():
    result = choose(plan(target="giraffe"), [], SIZE)
    assert isinstance(result, Clarify)
    assert "couldn't find a giraffe" in result.question


def test_single_detection_is_chosen_whatever_the_qualifier():
    result = choose(plan("rightmost"), [det(10, 10, 100, 100)], SIZE)
    assert one(result) == 0 and result.certain


@pytest.mark.parametrize("qualifier,expected", [
    ("leftmost", 2), ("left", 2), ("rightmost", 1), ("right", 1), ("middle", 0),
    ("2nd from left", 0), ("2nd from right", 0), ("3rd from left", 1), ("3rd from right", 2),
    ("the one on the far left", 2), ("second from the right", 0), ("last", 1),
])
def test_row_of_three_positions(qualifier, expected):
    result = choose(plan(qualifier), ROW, SIZE)
    assert one(result) == expected
    assert result.certain
    assert expected not in result.alternatives and len(result.alternatives) == 2


def test_alternatives_are_ordered_by_how_well_they_fit():
    result = choose(plan("leftmost"), ROW, SIZE)
    assert result.alternatives == [0, 1]  # middle next, then the right one


def test_top_bottom_and_corners():
    dets = [det(50, 20, 150, 120), det(800, 40, 900, 140), det(60, 430, 160, 540), det(820, 470, 950, 590)]
    assert one(choose(plan("top left"), dets, SIZE)) == 0
    assert one(choose(plan("top right"), dets, SIZE)) == 1
    assert one(choose(plan("bottom left"), dets, SIZE)) == 2
    assert one(choose(plan("bottom right"), dets, SIZE)) == 3
    assert one(choose(plan("topmost"), dets, SIZE)) == 0
    assert one(choose(plan("bottom"), dets, SIZE)) == 3


def test_corner_means_any_corner():
    dets = [det(400, 200, 600, 400), det(880, 500, 990, 590)]
    assert one(choose(plan("corner"), dets, SIZE)) == 1


def test_largest_and_smallest():
    dets = [det(0, 0, 100, 100), det(300, 0, 600, 300), det(700, 0, 750, 50)]
    assert one(choose(plan("largest"), dets, SIZE)) == 1
    assert one(choose(plan("biggest"), dets, SIZE)) == 1
    assert one(choose(plan("smallest"), dets, SIZE)) == 2


def test_size_near_tie_is_uncertain():
    dets = [det(0, 0, 100, 100), det(300, 0, 402, 102)]
    result = choose(plan("largest"), dets, SIZE)
    assert one(result) == 1
    assert not result.certain and result.alternatives[0] == 0


def test_front_and_back():
    near = det(300, 250, 700, 590)  # big, bottom edge low in the frame
    far = det(100, 100, 180, 170)  # small, high
    dets = [far, near]
    assert one(choose(plan("front"), dets, SIZE)) == 1
    assert one(choose(plan("closest"), dets, SIZE)) == 1
    assert one(choose(plan("back"), dets, SIZE)) == 0
    assert one(choose(plan("in the background"), dets, SIZE)) == 0


def test_near_tie_in_position_is_uncertain():
    # centres at x=500 and x=515: 1.5% of the width apart
    dets = [det(450, 100, 550, 200), det(465, 300, 565, 400)]
    result = choose(plan("left"), dets, SIZE)
    assert one(result) == 0
    assert result.certain is False
    assert result.alternatives == [1]


def test_clear_position_is_certain():
    dets = [det(100, 100, 200, 200), det(600, 100, 700, 200)]
    result = choose(plan("left"), dets, SIZE)
    assert one(result) == 0 and result.certain is True


def test_ordinal_beyond_count_asks():
    result = choose(plan("3rd from left"), ROW[:2], SIZE)
    assert isinstance(result, Clarify)
    assert result.candidates == [0, 1]


def test_middle_of_even_count_asks():
    """Four in a row have no middle one (issue 19): ask, never guess one of the two inner ones."""
    dets = [det(0, 0, 100, 100), det(380, 0, 480, 100), det(600, 0, 700, 100), det(900, 0, 990, 100)]
    result = choose(plan("middle"), dets, SIZE)
    assert isinstance(result, Clarify) and "none is in the middle" in result.question
    assert isinstance(choose(plan("middle"), dets[:3], SIZE), Choice)  # three: the middle one


def test_ambiguous_without_qualifier_asks_with_numbered_candidates():
    result = choose(plan(), ROW, SIZE)
    assert isinstance(result, Clarify)
    assert "I found 3 cats" in result.question and "number" in result.question
    assert result.candidates == [2, 0, 1]  # same as candidate_order


def test_unknown_qualifier_asks_and_says_so():
    result = choose(plan("near the window"), ROW, SIZE)
    assert isinstance(result, Clarify)
    assert "near the window" in result.question


def test_weak_extra_box_does_not_cause_a_question():
    dets = [det(100, 100, 300, 300, 0.9), det(600, 100, 800, 300, 0.3)]
    result = choose(plan(), dets, SIZE)
    assert one(result) == 0
    assert result.alternatives == [1]


def test_duplicate_boxes_do_not_cause_a_question():
    dets = [det(100, 100, 300, 300, 0.9), det(105, 98, 302, 305, 0.88)]
    assert one(choose(plan(), dets, SIZE)) == 0


def test_plural_person_question_uses_plural_noun():
    dets = [det(0, 0, 100, 100, label="person"), det(500, 0, 600, 100, label="person")]
    result = choose(plan(target="person"), dets, SIZE)
    assert isinstance(result, Clarify) and "2 people" in result.question


# ---------------------------------------------------------------------------------------------
# choose: plural and count
# ---------------------------------------------------------------------------------------------


def test_plural_takes_all_after_dropping_duplicates_and_weak():
    dets = ROW + [det(52, 212, 201, 392, 0.6),  # duplicate of the left cat
                  det(600, 500, 640, 540, 0.1)]  # weak
    result = choose(plan(plural=True), dets, SIZE)
    assert isinstance(result, Choice)
    assert result.indices == [2, 0, 1]
    assert set(result.alternatives) == {3, 4}


def test_count_takes_best_scores_in_position_order():
    dets = [det(0, 0, 100, 100, 0.95), det(300, 0, 400, 100, 0.6), det(600, 0, 700, 100, 0.9)]
    result = choose(plan(plural=True, count=2), dets, SIZE)
    assert isinstance(result, Choice)
    assert result.indices == [0, 2]
    assert result.alternatives[0] == 1


def test_count_with_qualifier_ranks_by_it():
    result = choose(plan("leftmost", plural=True, count=2), ROW, SIZE)
    assert isinstance(result, Choice) and result.indices == [2, 0]


def test_count_more_than_found_is_uncertain():
    result = choose(plan(plural=True, count=3), ROW[:2], SIZE)
    assert isinstance(result, Choice) and sorted(result.indices) == [0, 1] and not result.certain


def test_plural_left_half():
    dets = [det(50, 0, 150, 100), det(300, 0, 400, 100), det(700, 0, 800, 100)]
    result = choose(plan("left", plural=True), dets, SIZE)
    assert isinstance(result, Choice) and result.indices == [0, 1]


def test_plural_background_splits_at_the_depth_gap():
    dets = [det(100, 350, 300, 590), det(500, 330, 720, 595),  # two near people
            det(800, 120, 840, 190), det(880, 130, 910, 185)]  # two far people
    result = choose(plan("back", plural=True, target="person"), dets, SIZE)
    assert isinstance(result, Choice) and sorted(result.indices) == [2, 3]
    front = choose(plan("front", plural=True, target="person"), dets, SIZE)
    assert sorted(front.indices) == [0, 1]


# ---------------------------------------------------------------------------------------------
# resolve_answer
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer,expected", [
    ("1", [2]), ("2", [0]), ("#2", [0]), ("number 2", [0]), ("no. 3", [1]), ("3", [1]), ("two", [0]),
    ("the second one", [0]), ("first", [2]), ("the third", [1]),
    ("1 and 3", [2, 1]), ("2, 3", [0, 1]),
    ("the left one", [2]), ("leftmost", [2]), ("the one on the right", [1]), ("the middle one", [0]),
    ("second from the right", [0]), ("the last one", [1]),
    ("all", [2, 0, 1]), ("all of them", [2, 0, 1]), ("all three", [2, 0, 1]),
    ("cancel", None), ("none", None), ("never mind", None), ("4", None), ("0", None), ("", None),
    ("both", None),  # three candidates: "both" is ambiguous
    ("banana", None),
])
def test_resolve_answer(answer, expected):
    assert resolve_answer(answer, ROW, SIZE) == expected


def test_resolve_answer_both_with_two():
    assert resolve_answer("both", ROW[:2], SIZE) == [0, 1]
    assert resolve_answer("both of them", ROW[:2], SIZE) == [0, 1]


def test_resolve_answer_size_words():
    dets = [det(0, 0, 100, 100), det(300, 0, 600, 300)]
    assert resolve_answer("the big one", dets, SIZE) == [1]
    assert resolve_answer("the smaller one", dets, SIZE) == [0]


def test_numbers_follow_candidate_order_not_detection_order():
    order = candidate_order(ROW)
    for k, idx in enumerate(order, start=1):
        assert resolve_answer(str(k), ROW, SIZE) == [idx]


def test_the_chooser_picks_as_the_chat_and_says_where_it_would_ask():
    """``chooser``: what ``localedit edit`` and ``localedit eval`` pick with (``pipeline.run``'s choose)."""
    from agent.conversation.select import WouldAsk, chooser

    cats = [det(120, 40, 160, 90), det(10, 40, 50, 90)]  # detection 0 is the right one
    assert chooser(plan("left"))(cats, SIZE).indices == [1]
    with pytest.raises(WouldAsk) as asked:
        chooser(plan())(cats, SIZE)
    assert "Which one" in asked.value.question and asked.value.order == [1, 0]  # numbered left to right
    answered = chooser(plan(), answer=lambda question, dets: [question.order[1]])(cats, SIZE)
    assert answered.indices == [0] and answered.how == "user" and answered.numbers == [2]
    with pytest.raises(WouldAsk):  # an answer of nothing is no answer
        chooser(plan(), answer=lambda question, dets: None)(cats, SIZE)
