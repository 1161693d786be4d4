"""The graph state's types (``agent.conversation.state``): what the nodes really write matches the
TypedDicts (types and keys, through a real conversation on the three-cats scene), and a thread saved
in the shape older versions wrote (no version tree, records without names, where or alternatives)
still reads, follows up and undoes."""

from __future__ import annotations

from typing import Any, Union, get_args, get_origin, get_type_hints

import pytest
from pydantic import TypeAdapter, ValidationError
from typing_extensions import is_typeddict

from agent.conversation.state import ChoiceData, State
from tests.conftest import scene
from tests.helpers.scenes import CATS, SIZE, edited_region, inside

STATE = TypeAdapter(State)


def unknown_keys(value: Any, kind: Any, at: str = "state") -> list[str]:
    """Every key of ``value`` that its TypedDict ``kind`` (at any depth: lists, Optional, nested
    TypedDicts) does not declare, as dotted paths."""
    origin = get_origin(kind)
    if origin is Union:
        return [k for arg in get_args(kind) if arg is not type(None) for k in unknown_keys(value, arg, at)]
    if origin is list and isinstance(value, list):
        return [k for i, item in enumerate(value) for k in unknown_keys(item, get_args(kind)[0], f"{at}[{i}]")]
    if not (is_typeddict(kind) and isinstance(value, dict)):
        return []
    hints = get_type_hints(kind, include_extras=False)
    out = [f"{at}.{k}" for k in value if k not in hints]
    return out + [k for key, item in value.items() if key in hints for k in unknown_keys(item, hints[key], f"{at}.{key}")]


def check(state: dict[str, Any]) -> None:
    """``state`` has the declared types (pydantic, strict) and no undeclared key."""
    STATE.validate_python(state, strict=True)
    assert unknown_keys(state, State) == []


def test_the_checks_fire_on_a_wrong_type_and_an_undeclared_key():
    good: State = {"choice": {"indices": [1], "how": "user", "certain": True}, "cursor": 0,
                   "detections": [{"label": "cat", "score": 0.5, "box": [1.0, 2, 3, 4]}]}
    check(good)
    with pytest.raises(ValidationError):
        check({**good, "choice": {"indices": "the left one"}})
    with pytest.raises(ValidationError):
        check({**good, "detections": [{"label": "cat", "box": [1, 2, 3, 4]}]})  # no score
    assert unknown_keys({**good, "choice": {"indices": [1], "why": "?"}}, State) == ["state.choice.why"]
    assert unknown_keys({"versions": [{"path": "a", "record": {"chosen": [0], "tilt": 1}}]}, State) == \
        ["state.versions[0].record.tilt"]


def test_what_the_nodes_write_matches_the_types(chat):
    asked = chat.send("make the cat blue")
    assert asked.question
    check(chat.state())  # a question pending: the detections, the numbering, the question
    done = chat.send("2")
    assert not done.question and not done.error, done.text
    state = chat.state()
    check(state)
    assert state["choice"]["indices"] == [1] and state["choice"]["how"] == "user"
    assert set(ChoiceData.__annotations__) >= set(state["choice"])
    assert state["attempts"] and state["reply"]["attempts"] and state["versions"][-1]["record"]["chosen"] == [1]
    follow = chat.send("now make it red")  # the record reused: referent.reuse's choice
    assert not follow.question and not follow.error, follow.text
    check(chat.state())
    chat.send("undo")
    check(chat.state())


def old_thread(conversations, photo_path) -> tuple[Any, dict[str, Any]]:
    """A session whose state is one photo and one edit as a thread saved before the version tree, the
    record's names, where and alternatives (and before this module's types) has them."""
    store = conversations.store
    photo = store.put(scene(SIZE, boxes=CATS))
    blue = scene(SIZE, boxes=CATS)
    blue.paste((0, 0, 255), (CATS[0][0] + 8, CATS[0][1] + 12, CATS[0][2] - 8, CATS[0][3] - 12))
    edited = store.put(blue)
    from tools.images import box_to_mask

    mask = store.put_mask(box_to_mask(CATS[0], SIZE))
    plan = {"action": "attribute", "target": "cat", "qualifier": "left", "new_value": "blue",  # before box, undo_first
            "instruction": "make the cat on the left blue", "source_caption": "a cat", "target_caption": "a blue cat"}
    detections = [{"label": "cat", "score": 0.9, "box": list(map(float, b))} for b in CATS]
    old = {"messages": [{"role": "user", "text": "make the cat on the left blue", "image": None},
                        {"role": "assistant", "text": "Done.", "image": edited}],
           "versions": [{"path": photo, "note": "the photo you uploaded", "record": None},
                        {"path": edited, "note": "the result", "record": {
                            "instruction": plan["instruction"], "plan": plan, "base": photo, "base_index": 0,
                            "detections": detections, "numbering": [0, 1, 2], "chosen": [0],
                            "boxes": [list(map(float, CATS[0]))], "mask": mask, "region": mask,
                            "editor": "ip2p-composite", "seed": 0, "strength": 0.8, "scores": None,
                            "certain": True}}],
           "cursor": 1}
    session = conversations.session()
    conversations.graph.update_state(session._config, old, as_node="respond")
    return session, old


def test_a_thread_saved_before_still_reads_follows_up_and_undoes(conversations, photo_path):
    session, old = old_thread(conversations, photo_path)
    check(session.state())
    versions = session.versions()
    assert [v["parent"] for v in versions] == [None, 1] and versions[1]["current"]
    assert session.record()["chosen"] == [0]
    before = conversations.worker.calls()
    follow = session.send("now make it red")  # the old record's region: no grounding, no SAM, no question
    assert not follow.question and not follow.error, follow.text
    assert conversations.worker.calls()[1:] == before[1:]  # grounding and SAM calls unchanged
    assert session.record()["chosen"] == [0] and inside(edited_region(session), CATS[0])
    check(session.state())
    assert session.send("undo").text and session.current_image_path() == old["versions"][1]["path"]
    assert session.send("undo").text and session.current_image_path() == old["versions"][0]["path"]


def test_optional_is_what_a_missing_field_reads_as():
    """Every field is optional (``total=False``): a state of an older version without a field reads."""
    assert STATE.validate_python({}) == {}
    assert ChoiceData.__total__ is False and State.__total__ is False
    assert type(None) in get_args(get_type_hints(ChoiceData)["mask_note"])  # None: no note
