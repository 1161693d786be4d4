"""The conversation at its seams (issue 14): each numbered failure, replayed through the Python ``Session``.

1. "it" after a choice and after an edit is the region last edited;  2. questions can be cancelled and
are part of the conversation;  3. Stop stops, down to the diffusion step;  4. one turn at a time per
thread;  5. show mask / try again act on the version on screen;  6. fast paths and per-tool timeouts;
8. bounded checkpoint history. (7, the replies, is ``tests/agent/conversation/test_replies.py``; the chat-cli scripts
are ``tests/agent/test_chat_cli.py``.)
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from agent.language.llm import Understander, make_llm
from agent.runtime import history
from agent.runtime.session import Conversations
from tests.conftest import scene
from tests.helpers.hung import HungServer
from tests.helpers.scenes import CATS, SIZE, SceneWorker, agent_settings, edited_region, inside, open_conversations
from tools.types import Caption, WorkerUnavailableError


@pytest.fixture
def hung():
    server = HungServer()
    yield server
    server.close()


# --- 1. "it" is the region last edited --------------------------------------------------------

def test_after_choosing_a_candidate_it_is_that_candidate(chat, conversations):
    assert chat.send("make the cat blue").question
    done = chat.send("2")
    assert not done.question and done.text == "Done: cat 2 is blue now.", done.text  # one sentence (issue 19)
    assert "cat 2 of 3, as you chose" in done.details, done.details  # the details: how it was picked
    before = conversations.worker.calls()
    follow = chat.send("now make it red")  # was: "which cat?" again
    assert not follow.question and not follow.error, follow.text
    assert conversations.worker.calls() == before  # no caption, no grounding, no SAM
    assert chat.record()["chosen"] == [1] and inside(edited_region(chat), CATS[1])
    assert chat.versions()[-1]["parent"] == 2  # made from the blue-cat version, the one on screen
    again = chat.send("try again")
    assert not again.question and not again.error and chat.record()["chosen"] == [1], again.text
    assert conversations.worker.calls() == before


def test_after_a_replace_it_is_the_new_object_and_the_old_name_grounds_afresh(chat, conversations):
    chat.send("turn the leftmost cat into a fox")
    fox = chat.current_image_path()
    before = conversations.worker.calls()
    follow = chat.send("now make it red")  # was: grounds "cat" on the edited photo and finds the other cats
    assert not follow.question and not follow.error, follow.text
    assert conversations.worker.calls() == before and chat.record()["base"] == fox
    assert chat.record()["plan"]["target"] == "fox" and inside(edited_region(chat), CATS[0])
    assert set(follow.report["skipped"]) >= {"caption", "ground", "segment"} and "edit" in follow.report["ran"]
    assert follow.text == "Done: the fox is red now." and "the same fox as the last edit" in follow.details
    named = chat.send("now make the cat blue")  # the cats that are still cats: which one is a new question
    assert named.question and conversations.worker.ground_calls[-1] == "cat"


def test_the_llm_path_resolves_it_the_same_way(settings, registry, tmp_path, photo_path):
    """A scripted chat model (the real ``BaseChatModel`` interface) that answers "it" with the old name."""
    from langchain_core.messages import AIMessage
    from tests.helpers.llm import ScriptedChat, call

    contexts = []

    class Recording(Understander):
        def understand(self, text, context=None, history=()):
            contexts.append(context)
            return super().understand(text, context, history)

    llm = ScriptedChat(script=[
        call("edit_region", action="replace", target="cat", qualifier="leftmost", new_value="fox",
             instruction="turn the leftmost cat into a fox"),
        call("edit_region", action="attribute", target="it", new_value="red", instruction="make it red"),
        AIMessage(content="unused")])
    conv = open_conversations(settings, registry, tmp_path, understander=Recording(llm))
    chat = conv.session()
    chat.send("", image=photo_path)
    assert not chat.send("turn the leftmost cat into a fox").question
    before = conv.worker.calls()
    follow = chat.send("now make it red")
    assert follow.understood["path"] == "llm-tool" and follow.understood["result"]["target"] == "cat"
    assert not follow.question and conv.worker.calls() == before, follow.text  # "cat" here means "it"
    assert inside(edited_region(chat), CATS[0])
    assert contexts[-1].referent == "the fox you just made (the region the last edit changed)"
    assert contexts[-1].last_plan.new_value == "fox"
    conv.close()


# --- 2. questions are part of the conversation --------------------------------------------------

@pytest.mark.parametrize("answer,expected", [
    ("cancel", "left the image"), ("never mind", "left the image"), ("no", "left the image"),
    ("/cancel", "left the image"), ("undo", "Nothing to undo"), ("/undo", "Nothing to undo"),
    ("show me the mask", "no mask to show"), ("make the leftmost cat red", "Done: the leftmost cat is red now"),
])
def test_a_referent_question_takes_commands_cancel_and_new_instructions(chat, answer, expected):
    asked = chat.send("make it red")  # nothing to refer to yet
    assert asked.question and "'cancel'" in asked.text  # the question says how to cancel
    reply = chat.send(answer)
    assert expected in reply.text and "undos" not in reply.text and "found" not in reply.text, reply.text
    assert chat.pending() is None


def test_a_referent_question_is_answered_by_an_object_and_an_unclear_reply_asks_again(chat):
    chat.send("make it red")
    again = chat.send("hmm")
    assert again.question and again.text.startswith("Sorry, I didn't get that") and chat.pending()
    done = chat.send("the leftmost cat")  # "make it red" with the answer in place of "it"
    assert not done.question and "Done: the leftmost cat is red now" in done.text, done.text
    assert chat.record()["chosen"] == [0]


def test_a_candidates_question_gives_way_to_a_new_instruction_or_photo(chat, photo_path):
    chat.send("make the cat blue")
    done = chat.send("make the rightmost cat red")  # a new instruction, not "the rightmost" as an answer
    assert "Done: the rightmost cat is red now" in done.text and chat.record()["plan"]["new_value"] == "red"
    chat.send("make the cat blue")
    photo = chat.send("", image=photo_path)  # a new photo while the question is open
    assert "Got your photo" in photo.text and chat.pending() is None
    said = [m["text"] for m in chat.history()]
    assert said[-3:] == [said[-3], "", "Got your photo. What should I change?"]  # the question, then the photo


# --- 3. Stop stops ------------------------------------------------------------------------------

def test_cancel_from_another_thread_stops_the_edit_and_the_next_turn_starts_at_once(
        settings, registry, tmp_path, photo_path):
    conv = open_conversations(settings, registry, tmp_path, steps=4, max_attempts=1)
    chat = conv.session()
    chat.send("", image=photo_path)
    steps, stopped = [], []

    def progress(event: dict) -> None:  # runs in the turn; Stop comes from another thread (the UI's)
        if "step" not in event:  # a stage event (node start / end), not a diffusion step
            return
        steps.append(event["step"])
        if event["step"] == 1:
            t = threading.Thread(target=lambda: stopped.append(chat.cancel()))
            t.start()
            t.join()

    result = {}
    worker = threading.Thread(target=lambda: result.update(reply=chat.send("make the leftmost cat red",
                                                                           progress=progress)))
    worker.start()
    worker.join(timeout=120)
    reply = result["reply"]
    assert stopped == [True] and reply.cancelled and reply.text.startswith("Stopped"), reply.text
    assert max(steps) == 1  # the diffusion loop stopped at its next step, not at the end
    assert len(chat.versions()) == 1 and chat.history()[-1]["text"] == reply.text  # no version
    assert chat.cancel() is False  # nothing is running now
    done = chat.send("make the leftmost cat red")
    assert not done.cancelled and "Done" in done.text and len(chat.versions()) == 2
    conv.close()


def test_cancel_while_a_hung_llm_is_asked_returns_at_once(settings, registry, tmp_path, photo_path, hung,
                                                           monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", hung.url)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    s = agent_settings(settings, tmp_path, llm_model="hung-model", llm_timeout=120)
    conv = Conversations(s, worker=SceneWorker(s, registry=registry),
                         understander=Understander(make_llm(s, timeout=s.llm_timeout)))
    chat = conv.session()
    chat.send("", image=photo_path)
    started = time.monotonic()
    assert "Nothing to undo" in chat.send("undo").text  # a command never waits for the LLM
    assert not hung.accepted.is_set() and time.monotonic() - started < 10

    result = {}
    worker = threading.Thread(target=lambda: result.update(reply=chat.send("make the leftmost cat red")))
    worker.start()
    assert hung.accepted.wait(30)  # the LLM has the request and will not answer
    stop = time.monotonic()
    assert chat.cancel()
    worker.join(timeout=30)
    assert not worker.is_alive() and time.monotonic() - stop < 10
    assert result["reply"].cancelled and "language model" in result["reply"].text
    assert len(chat.versions()) == 1
    conv.close()


# --- 4. one turn at a time per thread -------------------------------------------------------------

def test_a_second_session_on_a_busy_thread_waits_then_both_edits_stay(settings, registry, tmp_path, photo_path,
                                                                     monkeypatch):
    """Two ``Conversations`` on one data folder are two processes as far as the lock and SQLite go.

    a's turn holds its first diffusion step until b has found the thread busy (b's turn asks its
    cancel flag between tries for the lock): an event, not a sleep, so it holds on a loaded machine."""
    from agent.runtime import session as session_module

    b_waits = threading.Event()

    class Watched(session_module.CancelToken):
        """The turn's real cancel flag; b's (on this thread) says when b polls the busy lock."""

        def is_set(self) -> bool:
            if threading.current_thread() is threading.main_thread() and editing.is_set():
                b_waits.set()
            return super().is_set()

    monkeypatch.setattr(session_module, "CancelToken", Watched)
    first = open_conversations(settings, registry, tmp_path, steps=6, max_attempts=1)
    second = open_conversations(settings, registry, tmp_path, turn_wait=120, max_attempts=1)
    a = first.session("shared")
    a.send("", image=photo_path)
    b = second.session("shared")
    editing = threading.Event()
    replies = {}

    def held(event: dict) -> None:
        editing.set()
        b_waits.wait(120)  # a's turn (and its lock) lasts until b is waiting for it

    worker = threading.Thread(target=lambda: replies.update(a=a.send("make the leftmost cat red", progress=held)))
    worker.start()
    assert editing.wait(60)
    replies["b"] = b.send("make the rightmost cat blue")  # waits for a's turn, then builds on its result
    worker.join(timeout=120)
    assert b_waits.is_set()  # b found the thread busy
    assert "Done" in replies["a"].text and "Done" in replies["b"].text, (replies["a"].text, replies["b"].text)
    versions = b.versions()
    assert len(versions) == 3 and versions[2]["parent"] == 2  # both edits kept, b's made from a's
    assert len(a.versions()) == 3
    first.close()
    second.close()


def test_a_message_for_a_busy_thread_is_told_so(settings, registry, tmp_path, photo_path):
    conv = open_conversations(settings, registry, tmp_path, turn_wait=0, steps=4, max_attempts=1)
    a, b = conv.session("t"), conv.session("t")
    a.send("", image=photo_path)
    told = {}

    def meanwhile(event: dict) -> None:
        if "b" not in told:
            told["b"] = b.send("make the rightmost cat blue")

    reply = a.send("make the leftmost cat red", progress=meanwhile)
    assert "Done" in reply.text
    assert told["b"].busy and "still working on your last message" in told["b"].text
    assert len(a.versions()) == 2  # the busy message changed nothing and lost nothing
    conv.close()


# --- 5. every version carries its record ----------------------------------------------------------

def _tinted(reply, chat, box) -> bool:
    """Whether the show-mask picture differs from the current image at the centre of ``box``."""
    shown = np.asarray(chat.conversations.store.open(reply.images["mask"])).astype(int)
    current = np.asarray(chat.current_image()).astype(int)
    x0, y0, x1, y1 = box
    return bool(np.abs(shown[(y0 + y1) // 2, (x0 + x1) // 2] - current[(y0 + y1) // 2, (x0 + x1) // 2]).sum() > 30)


def test_show_mask_and_try_again_act_on_the_version_on_screen(chat):
    chat.send("make the leftmost cat red")
    chat.send("make the rightmost cat blue")
    chat.send("undo")
    mask = chat.send("show me the mask")  # was: the undone edit's mask over the current image
    assert "mask" in mask.images and _tinted(mask, chat, CATS[0]) and not _tinted(mask, chat, CATS[2])
    chat.send("redo")
    mask = chat.send("/mask")
    assert _tinted(mask, chat, CATS[2]) and not _tinted(mask, chat, CATS[0])
    chat.send("undo")
    chat.send("undo")
    assert "no mask to show" in chat.send("show me the mask").text  # the uploaded photo
    chat.send("redo")
    again = chat.send("try again")  # re-runs version 2's edit (the leftmost cat), not the newest one
    assert chat.record()["chosen"] == [0] and chat.versions()[-1]["parent"] == 1, again.text
    # "stronger" moves the knob ip2p-composite reads (text guidance), on the version on screen
    assert chat.send("stronger").attempts[0]["guidance_scale"] > again.attempts[0]["guidance_scale"]


def test_versions_carry_records_and_select_version_branches(chat):
    chat.send("make the leftmost cat red")
    chat.send("now make it green")
    versions = chat.versions()
    assert [v["number"] for v in versions] == [1, 2, 3] and versions[2]["current"]
    record = versions[2]["record"]
    assert versions[0]["record"] is None and record["instruction"] == "make the cat green"
    assert record["boxes"] == [list(map(float, CATS[0]))] and record["scores"]["clip_i"] is not None
    assert chat.conversations.store.open_mask(record["mask"]).any() and record["plan"]["new_value"] == "green"
    shown = chat.select_version(2)
    assert "version 2 of 3" in shown.text and chat.versions()[1]["current"]
    chat.send("make it blue")  # a branch from version 2: version 3 stays
    versions = chat.versions()
    assert len(versions) == 4 and versions[3]["parent"] == 2 and versions[2]["parent"] == 2
    assert "version 2 of 4" in chat.send("undo").text
    assert "version 4 of 4" in chat.send("redo").text  # redo follows the branch last shown
    assert "version 3 of 4" in chat.send("go to version 3").text
    assert "no version 9" in chat.select_version(9).text
    assert chat.send("make the cat blue").question
    assert "version 1 of 4" in chat.select_version(1).text and chat.pending() is None  # the question is dropped


def test_version_numbers_no_conversation_has_are_one_sentence(chat):
    """Typed or from the API, a version number past 64 bits failed the turn ("Something went wrong
    (TypeError)": the checkpoint could not hold it); "/undo ²" and "/version ²" too (ValueError)."""
    huge = "9" * 25
    for text in (f"/version {huge}", "/version ²", "/undo ²", "/version -1", "/version"):
        reply = chat.send(text)
        assert not reply.error and "went wrong" not in reply.text, (text, reply.text)
    assert f"There is no version {huge}." == chat.send(f"/version {huge}").text
    assert "Give the version's number, e.g. /version 2." == chat.send("/version -1").text
    assert f"no version {huge}" in chat.select_version(int(huge)).text
    assert "no version" in chat.select_version(-int(huge)).text
    assert [v["current"] for v in chat.versions()] == [True] and "Nothing to undo" in chat.send("undo").text


def test_a_message_too_long_to_read_whole_is_not_acted_on(chat, photo_path):
    """A 100 kB message was cut to its first 2000 characters and read as an edit of "cat very very
    ..." (its end, "red", lost); now it is one sentence, and the photo and the next turn are untouched."""
    reply = chat.send("make the cat very " + "very " * 20_000 + "red")
    assert reply.text == "That message is 100,021 characters long; I read instructions of up to 2,000. " \
                         "Please say what to change in one short sentence."
    assert not reply.error and len(chat.versions()) == 1
    long_upload = chat.send("x" * 2001, image=photo_path)  # a photo sent with it is still received
    assert "2,001 characters" in long_upload.text and len(chat.versions()) == 2
    assert "Done" in chat.send("make the leftmost cat red").text


def test_undo_and_redo_walk_the_version_tree_and_old_linear_threads():
    from agent.conversation.state import child_of, parent_of, show, walk

    old = [{"path": "a", "note": "photo"}, {"path": "b", "note": "edit"}, {"path": "c", "note": "edit"}]  # saved before
    assert [parent_of(old, i) for i in range(3)] == [None, 0, 1] and walk(old, 0, 5, forward=True) == 2
    tree = [{"path": "a", "parent": None, "child": 1}, {"path": "b", "parent": 0, "child": None},
            {"path": "c", "parent": 0, "child": None}]  # c: a retry of b, made from a
    assert walk(tree, 2, 1, forward=False) == 0 and walk(tree, 0, 1, forward=True) == 1
    shown = show(tree, 2)
    assert child_of(shown, 0) == 2 and child_of(tree, 0) == 1  # redo follows the branch last shown; no mutation


# --- 6. fast paths ---------------------------------------------------------------------------------

def test_a_failing_caption_is_asked_once_per_photo(chat, conversations):
    conversations.worker.caption_down = True
    start = conversations.worker.caption_calls
    assert chat.send("make the cat blue").question
    chat.send("cancel")
    assert chat.send("make the cat green").question
    assert conversations.worker.caption_calls - start == 1  # remembered as failed, not retried each turn


def test_a_hung_captioner_is_given_up_on_after_its_timeout(settings, registry, tmp_path, photo_path):
    release = threading.Event()

    class HungCaptioner:
        """A worker elsewhere (not in-process) whose captioner hangs; the rest is the scene's."""

        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def caption(self, image):
            release.wait(60)  # hung; let go when the test ends
            return Caption("a late caption")

    s = agent_settings(settings, tmp_path, caption_timeout=0.3)
    conv = Conversations(s, worker=HungCaptioner(SceneWorker(s, registry=registry)), understander=Understander(None))
    chat = conv.session()
    chat.send("", image=photo_path)
    started = time.monotonic()
    reply = chat.send("make the leftmost cat red")
    assert "Done" in reply.text and time.monotonic() - started < 30  # did not wait the 60 s (a loaded machine: slack)
    assert "did not answer within 0.3 s" in reply.report["stages"][0]["why"]
    release.set()
    conv.close()


def test_the_remote_worker_waits_per_tool(hung):
    from tools.worker.client import RemoteWorker

    remote = RemoteWorker(hung.url, timeout=60, timeouts={"caption": 0.5})
    started = time.monotonic()
    with pytest.raises(WorkerUnavailableError, match="did not answer in time"):
        remote.caption(scene(SIZE, boxes=CATS))
    assert time.monotonic() - started < 10  # the caption's 0.5 s, not the edit's 60 s
    remote.close()


# --- 8. bounded history ---------------------------------------------------------------------------

def test_200_undo_redo_turns_keep_the_database_small_and_lose_nothing(conversations, photo_path):
    chat = conversations.session()
    chat.send("", image=photo_path)
    chat.send("make the leftmost cat red")
    for i in range(200):
        chat.send("undo" if i % 2 == 0 else "redo")
    keep = conversations.settings.keep_checkpoints
    assert history.count(conversations.checkpointer, chat.thread_id) == keep == 20
    assert history.database_bytes(conversations.db_path) < 2_500_000  # was 22.9 MB (1,204 checkpoints)
    assert len(chat.versions()) == 2 and chat.record()["chosen"] == [0]
    assert len(chat.history()) == 2 * 202 and chat.history()[-1]["text"].startswith("Redid 1 step")
    assert "mask" in chat.send("show me the mask").images  # the newest checkpoint still has it all


# --- 7. one numbering everywhere ------------------------------------------------------------------

def test_candidates_are_numbered_left_to_right_in_the_question_the_reply_and_the_ui(
        settings, registry, tmp_path, photo_path):
    from chat_ui import render

    s = agent_settings(settings, tmp_path)
    scrambled = [CATS[2], CATS[0], CATS[1]]  # grounding's best score is the rightmost cat
    conv = Conversations(s, worker=SceneWorker(s, registry=registry, objects={"cat": scrambled}),
                         understander=Understander(None))
    chat = conv.session()
    chat.send("", image=photo_path)
    asked = chat.send("make the cat blue")
    assert "numbered 1 to 3 from left to right" in asked.text
    steps = {v.name: v for v in render.turn_steps(asked, chat.state())}
    assert "1. cat 0.89 at (10, 40, 50, 90)" in steps["Detections"].text  # as the question numbers them
    done = chat.send("1")
    assert "cat 1 of 3, as you chose" in done.details and chat.record()["chosen"] == [1]
    assert inside(edited_region(chat), CATS[0])
    steps = {v.name: v for v in render.turn_steps(done, chat.state())}
    assert "1. cat 0.89 at (10, 40, 50, 90) **chosen**" in steps["Detections"].text
    follow = chat.send("now make it red")
    steps = {v.name: v for v in render.turn_steps(follow, chat.state())}
    assert steps["Detections"].text.startswith("No grounding this turn")
    assert steps["Caption"].text.startswith("This version is described by the edit that made it")
    conv.close()
