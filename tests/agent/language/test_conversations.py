"""Conversations as people type them (issue 19): corrections, "undo ... and ... instead", hedges, typos,
tone, chained "it", short answers to questions. The parser's readings one by one, then whole
conversations through ``Session`` (``bench.conversations``: scripted grounding, real tiny models)."""

from __future__ import annotations

import pytest

from agent.language.arbiter import same_word
from agent.language.parser import ParseContext, parse, read
from agent.language.parser.spelling import correct
from bench.conversations import CONVERSATIONS, run

FOX = parse("turn the cat into a fox")
BLUE = parse("make the sofa blue")


def plan_of(text, last=FOX, caption="a photo of a cat on a sofa"):
    return parse(text, ParseContext(last_plan=last, caption=caption))


@pytest.mark.parametrize("text, last, fields", [
    ("no, I wanted a wolf", FOX, dict(action="replace", target="cat", new_value="wolf", revise_last=True)),
    ("i meant a wolf", FOX, dict(target="cat", new_value="wolf", revise_last=True)),
    ("not the fox, a wolf", FOX, dict(target="cat", new_value="wolf", revise_last=True)),
    ("actually make it a wolf instead", FOX, dict(target="cat", new_value="wolf", revise_last=True)),
    ("nope, orange", BLUE, dict(action="attribute", target="sofa", new_value="orange", revise_last=True)),
    ("no the left one", FOX, dict(target="cat", qualifier="left", new_value="fox", revise_last=True)),
    ("no, make the bus green", BLUE, dict(target="bus", new_value="green", revise_last=True)),
])
def test_a_correction_replaces_the_last_edit(text, last, fields):
    got = plan_of(text, last)
    assert {k: getattr(got, k) for k in fields} == fields, got


@pytest.mark.parametrize("text", ["actually make the dog red", "now make it green", "make the fox blue"])
def test_a_new_edit_is_no_correction(text):
    assert plan_of(text).revise_last is False


def test_undo_and_an_edit_run_both_in_order():
    got = read("undo that and make the bus green instead", ParseContext(last_plan=BLUE))
    assert (got.result.target, got.result.new_value, got.result.undo_first) == ("bus", "green", 1)
    it = plan_of("go back and make it red")  # "it" after undoing "turn the cat into a fox" is the cat again
    assert (it.target, it.undo_first) == ("cat", 1)
    assert plan_of("make it red").undo_first == 0


@pytest.mark.parametrize("text", ["please make it kinda blue", "ok so could you maybe make it blue",
                                  "just make it sort of blue", "umm can u like make it blue pls"])
def test_hedges_never_become_the_target_or_the_value(text):
    got = plan_of(text, BLUE)
    assert (got.target, got.new_value) == ("sofa", "blue"), got


@pytest.mark.parametrize("text, name", [
    ("that's too strong", "weaker"), ("dial it back a bit", "weaker"), ("softer", "weaker"), ("a bit less", "weaker"),
    ("that's way too much", "weaker"), ("tone it down a bit", "weaker"), ("less blue", "weaker"),
    ("more", "stronger"), ("push it", "stronger"), ("even more blue", "stronger"), ("stronger please", "stronger"),
])
def test_tone_is_the_strength_of_the_last_edit_never_a_removal(text, name):
    got = plan_of(text, BLUE)
    assert got.kind == "command" and got.name == name, got


def test_less_of_another_value_is_an_edit_of_its_own():
    assert plan_of("make it less orange", BLUE).kind == "edit"


@pytest.mark.parametrize("typed, meant", [
    ("chnage the car to bleu", "change the car to blue"), ("make the backgorund blue", "make the background blue"),
    ("remvoe the lamp", "remove the lamp"), ("add a hat to the dgo", "add a hat to the dog"),
])
def test_typos_are_corrected_to_known_words(typed, meant):
    assert correct(typed, "a photo of a dog")[0] == meant


@pytest.mark.parametrize("text", ["make the zebra red", "make the mane red", "cover the ground with snow",
                                  "turn it into a tram",
                                  "turn the tiramisu into a cake", "make the bananas greenish"])
def test_real_words_keep_their_spelling(text):
    assert correct(text, "a photo")[1] == []


def test_the_fast_path_leaves_an_undo_with_an_edit_to_the_reader():
    """"go back and make the leftmost one white instead" is two requests: not the fast path's plain undo."""
    from agent.language.commands import recognise

    assert recognise("undo")["name"] == "undo" and recognise("go back two steps")["steps"] == 2
    assert recognise("go back and make the leftmost one white instead") is None
    last = parse("give the cat a tiny hat")  # after undoing an "add", "the leftmost one" is a cat, not a hat
    got = plan_of("go back and make the leftmost one white instead", last)
    assert (got.target, got.qualifier, got.undo_first) == ("cat", "leftmost", 1)


def test_her_follows_the_caption():
    assert plan_of("put a hat on her", None, "a photo of a dog on the grass").target == "dog"
    assert plan_of("put a hat on her", None, "a photo of a woman and a dog").target == "woman"


def test_one_of_a_counted_set_is_one():
    got = plan_of("make the biggest of the two dogs red", None)
    assert (got.target, got.qualifier, got.plural, got.count) == ("dog", "largest", False, None)


def test_same_word_compares_lemmas():
    assert same_word("berry", "berries") and same_word("person", "people") and not same_word("cat", "dog")


# --- whole conversations through Session ----------------------------------------------------------

def _missed(rows):
    return [f"{r.conversation} #{r.turn} {r.text!r}: {r.why}" for r in rows if not r.ok]


def test_conversations_through_the_session(settings, registry):
    """Four of the suite's conversations, every turn as meant: a correction made from the right version
    and on the same region, "undo ... instead", "it" through three names, a question and "undo"."""
    chosen = [c for c in CONVERSATIONS if c.name in ("correct the new object", "undo and instead", "chained it",
                                                     "counts and the middle")]
    rows = run(chosen, settings, registry=registry)
    assert len(rows) >= 20 and not _missed(rows), _missed(rows)


@pytest.mark.slow
def test_the_whole_suite_understands_nine_turns_in_ten(settings, registry):
    rows = run(CONVERSATIONS, settings, registry=registry)
    assert len(rows) >= 60
    assert sum(r.ok for r in rows) >= 0.9 * len(rows), _missed(rows)


def test_a_scripted_chat_cli_conversation_with_a_correction_and_an_undo_first(tmp_path, tiny_models_dir,
                                                                               monkeypatch, capsys):
    """``localedit chat-cli`` reading a conversation typed as people type (the tiny models ground noise,
    so every box is a "cat"): one sentence per reply, the details behind /details, a correction made
    from the photo before the edit it corrects, and "undo that and ... instead" running both parts."""
    from agent.runtime.session import Conversations
    from tests.helpers.chat_cli import chat_cli_in_process
    from tools.config import Settings

    out = chat_cli_in_process(monkeypatch, capsys, tmp_path, tiny_models_dir,
                              "/image cats.png\nok so make the leftmost cat kinda red pls\n/details\nnope, blue\n"
                              "undo that and make the rightmost cat green instead\n/quit\n", "--thread", "T",
                              MIN_CLIP_DIR="-1", MIN_CLIP_RC="-1", MIN_CLIP_GC="-1", MAX_L1_OUTSIDE="1",
                              MIN_L1_GLOBAL="0")  # a lenient judge: random models
    said = [line for line in out.splitlines() if line.startswith("localedit: ")]
    first = [line.split(". ")[0].rstrip(".") for line in said[2:]]  # a hint may follow ("the other one")
    assert first == ["localedit: Done: the leftmost cat is red now",
                     "localedit: Done: make the leftmost cat red, on the leftmost of the "
                     + first[1].split("of the ")[-1],
                     "localedit: Done: the cat is blue now",  # the same cat, on the photo before the red
                     "localedit: Done: the rightmost cat is green now"], said
    conv = Conversations(Settings())
    try:
        versions = conv.session("T").versions()
        assert [v["parent"] for v in versions] == [None, 1, 1, 1]  # the correction and the undo-first: from the photo
        assert [v["record"]["plan"]["new_value"] for v in versions[1:]] == ["red", "blue", "green"]
    finally:
        conv.close()
