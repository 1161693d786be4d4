"""The chat UI: its pieces without a browser, then the real app end to end in headless Chromium.

The browser tests start Chainlit once for the module (``tests/helpers/ui_helpers.py``: the real app, grounding
fixed to the test scene) with the tiny models on a free loopback port, and drive it with Playwright and
Debian's Chromium. Screenshots of every stage go to ``artifacts/ui/`` in the repository root. The tiny
models' pixels are noise: the tests check where the edit happened and what the page says and does.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import stat
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from PIL import Image

from agent.language.llm import Understander
from agent.runtime.session import Reply
from chat_ui import render
from chat_ui.access import Guard, check_listen, check_password, origin_allowed
from chat_ui.backend import Backend, PanelSettings
from chat_ui.page import LocalPage, strip_external_links
from tests.conftest import free_port, scene
from tests.helpers.chat_server import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, Server, needs_chainlit
from tests.helpers.scenes import CATS, SIZE, SceneWorker, agent_settings, inside

TURN_TIMEOUT_MS = 120_000  # the first turn loads every tiny model
HEADER = "button[id^='step-'], p[id^='step-']"  # a step's header (its name)


# --- the pieces, without a browser -------------------------------------------------------------

def test_panel_settings_validate_coerce_and_apply(settings):
    base = PanelSettings.from_settings(settings)
    assert (base.steps, base.max_side, base.editor) == (2, 64, "auto")
    panel = PanelSettings.from_panel({"editor": "diffedit", "strength": 0.55, "steps": "12.0", "seed": 7.0,
                                      "auto_retry": False, "max_side": 517}, base)
    assert panel == PanelSettings(editor="diffedit", strength=0.55, steps=12, seed=7, auto_retry=False, max_side=512)
    bad = PanelSettings.from_panel({"editor": "magic", "steps": 0, "strength": 2, "seed": "x", "unknown": 1}, panel)
    assert bad == panel  # every bad value keeps the previous one
    applied = panel.apply(settings)
    assert (applied.editor, applied.encoding_ratio, applied.steps, applied.seed, applied.auto_retry,
            applied.max_side) == ("diffedit", 0.55, 12, 7, False, 512)
    assert applied.models_dir == settings.models_dir and "diffedit" in panel.describe()


def test_turn_details_only_for_the_stages_that_ran(settings, registry, tmp_path):
    """From real agent turns: the details a turn shows, and that nothing of an earlier turn leaks in."""
    s = agent_settings(settings, tmp_path)
    backend = Backend(s, worker_factory=lambda st, base: SceneWorker(st, registry=registry),
                      understander=Understander(None))
    chat = backend.session("t1", backend.defaults)
    photo = tmp_path / "cats.png"
    scene(SIZE, boxes=CATS).save(photo)
    chat.send("", image=photo)
    events = []
    reply = chat.send("turn the leftmost cat into a fox", progress=events.append)
    ran = {e["node"] for e in events if "node" in e}
    assert {"understand", "ground", "select", "segment", "edit", "score", "judge", "respond"} <= ran
    steps = render.turn_steps(reply, chat.state(), ran)
    assert [v.name for v in steps] == ["Caption", "Plan", "Detections", "Mask", "Attempt 1 of 1"]
    assert [v.stage for v in steps] == ["understand", "understand", "ground", "segment", "edit:1"]
    by = {v.name: v for v in steps}
    assert "offline parser" in by["Plan"].text and "`leftmost`" in by["Plan"].text
    assert "found 3" in by["Detections"].text and by["Detections"].text.count("**chosen**") == 1
    alt, picture = by["Detections"].pictures[0]
    assert alt == "detections of the cat, drawn as boxes on the photo" and Image.open(io.BytesIO(picture)).size == SIZE
    assert by["Mask"].pictures == [("mask of the cat over the photo", reply.images["mask"])]
    assert "ip2p-composite" in by["Attempt 1 of 1"].text and "CLIP-GC" in by["Attempt 1 of 1"].text
    assert render.turn_title(reply, chat.state(), ran, 12.3) == "Edited the cat in 12 s"
    assert "2 diffusion steps" in render.settings_line(backend.defaults, reply, chat.state())

    # an undo: the state still holds the edit's detections, but only the command ran
    events.clear()
    undone = chat.send("undo", progress=events.append)
    ran = {e["node"] for e in events if "node" in e}
    (plan,) = render.turn_steps(undone, chat.state(), ran)  # this turn's reading only: no boxes, mask or attempts
    assert plan.name == "Plan" and "`undo`" in plan.text and "ground" not in ran
    assert render.turn_title(undone, chat.state(), ran, 0.2) == "Undid 1 step"
    # a bad file never reaches the graph: no stage ran, so nothing of the edit above is shown
    bad = tmp_path / "bad.png"
    bad.write_text("not a picture")
    failed = chat.send("make it red", image=bad)
    assert failed.error and render.turn_steps(failed, chat.state(), set()) == []
    assert render.turn_title(failed, chat.state(), set(), 0.1) == "Could not do that"
    asked = chat.send("make the cat blue", progress=events.append)
    assert asked.question and render.turn_title(asked, chat.state(), {"understand", "ground", "select", "clarify"},
                                                1.0) == "Asked which cat"
    backend.close()


def test_turn_titles_and_alt_texts():
    state = {"plan": {"action": "global", "target": None}, "choice": None}
    edited = Reply(text="Done", images={"edited": "x.png"})
    assert render.turn_title(edited, state, {"edit"}, 3.21) == "Edited the whole photo in 3.2 s"
    picked = {"plan": {"action": "attribute", "target": "region"}, "choice": {"selected": True, "indices": [0]}}
    assert render.turn_title(edited, picked, {"segment", "edit"}, 40) == "Edited the selected region in 40 s"
    two = {"plan": {"action": "attribute", "target": "cat"}, "choice": {"indices": [0, 2]}}
    assert render.turn_title(edited, two, {"edit"}, 5) == "Edited 2 cats in 5.0 s"
    assert render.turn_title(Reply(text="Got your photo. What should I change?"), {}, {"receive"}, 0) == \
        "Received your photo"
    stopped = Reply(text="Stopped: I left the image as it was.", cancelled=True)
    assert render.turn_title(stopped, two, {"understand", "edit"}, 2.5) == "Stopped after 2.5 s"
    goto = {"understood": {"result": {"kind": "command", "name": "goto", "version": 2}}}
    assert render.turn_title(Reply(text="Now showing version 2 of 3", images={"current": "x.png"}), goto,
                             {"receive", "command"}, 0.1) == "Went to version 2"
    assert render.command_title(goto) == "Go to version 2"
    assert render.command_title({"understood": {"result": {"kind": "command", "name": "undo"}}}) == "Undo"
    assert render.stage_title("edit", attempt=1, attempts=3, editor="ip2p-composite") == \
        "Attempt 1 of 3: ip2p-composite"
    assert render.stage_title("edit", attempt=1, attempts=3, editor="ip2p-composite", batch=2) == \
        "Attempt 1 of 3: ip2p-composite (and 1 queued attempt in the same batch)"
    assert render.batched(3) == " (and 2 queued attempts in the same batch)"
    assert render.alt("mask", "ball") == "mask of the ball over the photo"
    assert render.alt("edited") == "the edited photo" and ".png" not in render.alt("before_after")


def test_version_cards_carry_instruction_scores_branch_and_the_one_shown():
    versions = [
        {"number": 1, "path": "a.png", "note": "the photo you uploaded", "parent": None, "current": False, "record": None},
        {"number": 2, "path": "b.png", "note": 'the result of "make the cat red"', "parent": 1, "current": False,
         "record": {"instruction": "make the cat red", "scores": {"clip_rc": 12.3, "clip_gc": 99.94, "clip_dir": 0.051,
                                                                  "clip_i": 0.9, "clip_t": None}}},
        {"number": 3, "path": "c.png", "note": 'the result of "make the cat blue"', "parent": 1, "current": True,
         "record": {"instruction": "make the cat blue", "scores": None}},
    ]
    cards = render.version_cards(versions)
    assert [c["instruction"] for c in cards] == ["the photo you uploaded", "make the cat red", "make the cat blue"]
    assert cards[1]["scores"] == "CLIP-RC 12 · CLIP-GC 99.9 · dir 0.05" and cards[2]["scores"] == ""
    assert [c["branch"] for c in cards] == ["", "", "from v1"]  # 3 was made from 1, not from 2: a branch
    assert [c["current"] for c in cards] == [False, False, True]
    assert cards[2]["label"] == "Version 3: make the cat blue, from v1, on screen"
    assert [c["current"] for c in render.version_cards(versions, shown=2)] == [False, True, False]
    assert "CLIP-GC 99.9" in render.version_cards(versions, shown=2)[1]["label"]


def test_panel_tools_only_where_they_can_act():
    """Undo needs a parent, redo a child undo left, show mask an edit that changed a region."""
    up = {"path": "a.png", "note": "the photo you uploaded", "record": None}
    red = {"path": "b.png", "note": "red", "parent": 0, "record": {"mask": "m.png", "region": "r.png"}}
    winter = {"path": "c.png", "note": "winter", "parent": 1, "record": {"mask": None, "region": None}}
    assert render.tools_available({}) == {"undo": False, "redo": False, "show_mask": False}
    assert render.tools_available({"versions": [up], "cursor": 0}) == {"undo": False, "redo": False, "show_mask": False}
    assert render.tools_available({"versions": [up, red], "cursor": 1}) == {"undo": True, "redo": False,
                                                                             "show_mask": True}
    undone = [{**up, "child": 1}, red]  # after undo: redo leads back to version 2
    assert render.tools_available({"versions": undone, "cursor": 0}) == {"undo": False, "redo": True,
                                                                          "show_mask": False}
    assert render.tools_available({"versions": [up, red, winter], "cursor": 2})["show_mask"] is False
    assert render.index_of([{**up, "current": False}, {**red, "current": True}], "b.png") == 1


def test_turn_details_carry_the_knobs_and_the_agents_details():
    """The knobs leave the reply for the turn's step; the agent's own details join them there."""
    panel = PanelSettings(steps=2, max_side=64)
    attempt = {"editor": "ip2p-composite", "guidance_scale": 7.5, "image_guidance_scale": 1.5, "seed": 0,
               "path": "e.png"}
    edited = Reply(text="Done: the leftmost cat is red now.", images={"edited": "e.png"})
    details = render.turn_details(panel, edited, {"attempts": [attempt]})
    assert details == ("Settings: ip2p-composite · 2 diffusion steps · text guidance 7.5, image guidance 1.5 · "
                       "seed 0 · long side 64 px.")
    edited.details = "Edited the leftmost of 3 cats; 1 attempt."  # Reply.details, where the agent gives them
    assert render.turn_details(panel, edited, {"attempts": [attempt]}).endswith("\n\nEdited the leftmost of 3 cats; 1 attempt.")
    assert render.turn_details(panel, Reply(text="Undid 1 step."), {"attempts": [attempt]}) == ""  # no edit kept
    ahead = {**attempt, "why": "stronger edit", "guidance_scale": 10.0, "path": "f.png",
             "reused": "run in one batched call with attempt 1"}
    first, second = render.turn_steps(Reply(text="Done", images={"edited": "f.png"}),
                                      {"attempts": [attempt, ahead]}, ran={"edit"})
    assert "Already there: run in one batched call with attempt 1." in second.text and "**Kept.**" in second.text
    assert "Already there" not in first.text


def test_cold_start_lines_say_what_loads():
    start = {"event": "start", "role": "caption", "title": "BLIP-2 captioner", "loaded": []}
    done = {**start, "event": "done", "seconds": 3.25}
    ground = {"event": "start", "role": "detector", "title": "GroundingDINO detector", "loaded": ["caption"]}
    assert render.loading_busy([start]) and render.loading_title([start]) == "Loading the BLIP-2 captioner"
    assert render.loading_title([start, done, ground]) == "Loading the GroundingDINO detector (1 loaded so far)"
    text = render.loading_text([start, done, ground])
    assert "- BLIP-2 captioner: loaded in 3.2 s" in text and "- GroundingDINO detector: loading now" in text
    finished = [start, done, ground, {**ground, "event": "done", "seconds": 1.0}]
    assert not render.loading_busy(finished)
    assert render.loading_title(finished) == "Loaded 2 models in 4.2 s (once per server run)"
    failed = [start, {**start, "event": "failed", "seconds": 0.5}]
    assert not render.loading_busy(failed) and "could not be loaded" in render.loading_text(failed)


def test_model_registry_tells_listeners_each_load(settings):
    from tools.models import ModelRegistry

    registry = ModelRegistry(settings)
    heard: list[dict] = []
    stop = registry.listen(heard.append)
    registry.get("clip")
    registry.get("clip")  # loaded once: told once
    assert [(e["event"], e["role"]) for e in heard] == [("start", "clip"), ("done", "clip")]
    assert heard[1]["title"] == "CLIP ViT-L/14 scorer" and heard[1]["seconds"] >= 0
    stop()
    registry.get("taesd")
    assert len(heard) == 2, "a listener that stopped hears nothing"


def test_a_bad_upload_is_named_in_one_sentence(tmp_path):
    from chat_ui.uploads import problem, trace

    fake = tmp_path / "x.png"
    fake.write_text("not a picture\n")
    why = problem(str(fake), "holiday.png")
    assert why.startswith("'holiday.png' is not an image") and why.count(". ") == 0
    assert trace("holiday.png", why) == "*(attached holiday.png: not used, not an image localedit can read)*"
    real = tmp_path / "cats.png"
    scene(SIZE, boxes=CATS).save(real)
    assert problem(str(real), "cats.png") is None
    assert "could not read" in problem(str(tmp_path / "gone.png"), "gone.png")


def test_history_keeps_threads_steps_and_pictures(tmp_path, monkeypatch):
    """The data layer on its own: what Chainlit hands it comes back as it was, after a restart too."""
    (tmp_path / "app").mkdir()
    monkeypatch.setenv("CHAINLIT_APP_ROOT", str(tmp_path / "app"))  # importing Chainlit writes its config there
    from chainlit.element import Image as ClImage
    from chainlit.types import Pagination, ThreadFilter
    from chainlit.user import User

    from chat_ui.history import FileStore, SQLiteDataLayer

    photo = tmp_path / "upload.png"
    scene(SIZE, boxes=CATS).save(photo)
    path = tmp_path / "threads.sqlite"

    async def story():
        layer = SQLiteDataLayer(path, FileStore(tmp_path / "files"))
        user = await layer.create_user(User(identifier="local"))
        assert (await layer.get_user("local")).id == user.id
        await layer.update_thread("t1", name="make the cat red", user_id=user.id, metadata={"a": 1})
        await layer.update_thread("t2", name="winter", user_id=user.id)
        await layer.update_thread("t1", metadata={"b": 2, "a": None})  # a partial update keeps the rest
        for twin in ("t3", "t4"):  # the same first words: names the sidebar can tell apart
            await layer.update_thread(twin, name="make the cat red", user_id=user.id)
        assert [await layer.thread_name(t) for t in ("t1", "t3", "t4")] == \
            ["make the cat red", "(2) make the cat red", "(3) make the cat red"]
        await layer.update_thread("t3", name="(2) make the cat red")  # its own name again: unchanged
        assert await layer.thread_name("t3") == "(2) make the cat red"
        await layer.delete_thread("t3")
        await layer.delete_thread("t4")
        # undecorated calls: the queue-until-first-message wrapper needs a live session
        step = {"id": "s1", "threadId": "t1", "type": "assistant_message", "name": "localedit", "output": "Done",
                "createdAt": "2026-12-01T10:00:00.000000Z", "metadata": {}}
        await SQLiteDataLayer.create_step.__wrapped__(layer, step)
        await SQLiteDataLayer.create_step.__wrapped__(layer, {"id": "s1", "threadId": "t1", "type": "run",
                                                             "output": "", "name": "localedit"})
        await SQLiteDataLayer.create_step.__wrapped__(layer, {"id": "s2", "threadId": "t1", "type": "run",
                                                             "metadata": {"transient": True}})
        element = ClImage(name="the photo you uploaded", path=str(photo), for_id="s1", thread_id="t1",
                          display="inline", mime="image/png")
        await SQLiteDataLayer.create_element.__wrapped__(layer, element)
        await SQLiteDataLayer.create_element.__wrapped__(layer, ClImage(
            name="x", path=str(photo), for_id="s2", thread_id="t1"))  # belongs to a transient step
        await layer.close()

        again = SQLiteDataLayer(path, FileStore(tmp_path / "files"))  # a restarted server
        thread = await again.get_thread("t1")
        assert thread["name"] == "make the cat red" and thread["metadata"] == {"b": 2}
        assert [s["id"] for s in thread["steps"]] == ["s1"], "a transient step is not kept"
        assert thread["steps"][0]["output"] == "Done" and thread["steps"][0]["type"] == "assistant_message"
        (kept,) = thread["elements"]
        assert kept["name"] == "the photo you uploaded" and "path" not in kept
        name = kept["url"].rsplit("/", 1)[1]
        assert again.files.path(name).read_bytes() == photo.read_bytes()
        assert again.files.path("../threads.sqlite") is None and again.files.path("0" * 64 + ".png") is None
        page = await again.list_threads(Pagination(first=1), ThreadFilter(userId=user.id))
        assert [t["id"] for t in page.data] == ["t1"] and page.pageInfo.hasNextPage
        rest = await again.list_threads(Pagination(first=5, cursor="t1"), ThreadFilter(userId=user.id))
        assert [t["id"] for t in rest.data] == ["t2"] and not rest.pageInfo.hasNextPage
        found = await again.list_threads(Pagination(first=5), ThreadFilter(userId=user.id, search="wint"))
        assert [t["id"] for t in found.data] == ["t2"]
        assert await again.get_thread_author("t1") == "local"
        await again.delete_thread("t1")
        assert await again.get_thread("t1") is None
        again.save_panel("local", {"steps": 9})
        assert again.panel_for("local") == {"steps": 9} and again.panel_for("other") is None
        # Chainlit persists each step in a task of its own: a parent whose write is slower must still come first
        real_q = again._q

        async def slow_for_parent(sql, params=()):
            if params and params[0] == "run1":
                await asyncio.sleep(0.2)
            return await real_q(sql, params)

        again._q = slow_for_parent
        await again.update_thread("t3", name="two windows", user_id=user.id)
        create = SQLiteDataLayer.create_step.__wrapped__
        await asyncio.gather(create(again, {"id": "run1", "threadId": "t3", "type": "run", "name": "on_message"}),
                             create(again, {"id": "turn1", "threadId": "t3", "type": "run", "parentId": "run1",
                                            "name": "Edited the cat in 1 s"}))
        again._q = real_q
        assert [s["id"] for s in (await again.get_thread("t3"))["steps"]] == ["run1", "turn1"]
        # two writes of one step (its live title, then its final one): the older may not land last
        async def slow_for_live_title(sql, params=()):
            if sql.startswith("INSERT INTO steps") and '"Attempt 2 of 2"' in str(params):
                await asyncio.sleep(0.2)
            return await real_q(sql, params)

        again._q = slow_for_live_title
        await asyncio.gather(create(again, {"id": "edit2", "threadId": "t3", "type": "tool", "name": "Attempt 2 of 2"}),
                             create(again, {"id": "edit2", "threadId": "t3", "type": "tool",
                                            "name": "Attempt 2 of 2: ip2p"}))
        again._q = real_q
        steps = {s["id"]: s for s in (await again.get_thread("t3"))["steps"]}
        assert steps["edit2"]["name"] == "Attempt 2 of 2: ip2p"
        await again.close()

    asyncio.run(story())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "files").stat().st_mode) == 0o700


def test_guard_keeps_other_machines_and_other_pages_out():
    async def ok(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def status(guard, client="127.0.0.1", host="127.0.0.1:8000", origin=None, kind="http"):
        headers = [(b"host", host.encode())] + ([(b"origin", origin.encode())] if origin else [])
        sent = []

        async def send(message):
            sent.append(message)

        asyncio.run(guard({"type": kind, "client": (client, 5555), "headers": headers, "method": "GET"}, None, send))
        return sent[0].get("status") or sent[0]["type"]

    local = Guard(ok, loopback_only=True)
    assert status(local) == 200 and status(local, origin="http://127.0.0.1:8000") == 200
    assert status(local, client="10.1.2.3") == 403  # another machine
    assert status(local, host="evil.example:8000") == 403  # DNS rebinding: a loopback peer, a foreign name
    assert status(local, origin="http://evil.example") == 403
    assert status(local, origin="http://evil.example", kind="websocket") == "websocket.close"
    assert status(local, origin="null") == 403
    shared = Guard(ok, loopback_only=False, origins=("https://edit.example.org",))
    assert status(shared, client="10.1.2.3", host="gpu-box:8000", origin="http://gpu-box:8000") == 200
    assert status(shared, client="10.1.2.3", host="gpu-box:8000", origin="https://edit.example.org") == 200
    assert status(shared, client="10.1.2.3", host="gpu-box:8000", origin="http://other:8000") == 403
    assert origin_allowed("HTTP://127.0.0.1:8000/", "127.0.0.1:8000")


def test_listening_beyond_loopback_needs_a_password(settings, monkeypatch, tmp_path, capsys):
    from chat_ui.launch import main

    assert check_listen("127.0.0.1", settings) is None and check_listen("::1", settings) is None
    assert "LOCALEDIT_CHAT_PASSWORD" in check_listen("0.0.0.0", settings)
    from pydantic import SecretStr

    protected = settings.model_copy(update={"chat_password": SecretStr("s3cret")})
    assert check_listen("0.0.0.0", protected) is None
    assert check_password(protected, "localedit", "s3cret") and not check_password(protected, "localedit", "s3cre")
    assert not check_password(protected, "someone", "s3cret") and not check_password(settings, "localedit", "")
    monkeypatch.delenv("LOCALEDIT_CHAT_PASSWORD", raising=False)
    code = main(["--host", "0.0.0.0", "--port", str(free_port()), "--data-dir", str(tmp_path / "d")])
    assert code == 2 and "without a password" in capsys.readouterr().err


def test_the_page_loses_its_links_to_other_hosts():
    html = (b'<head><link rel="preconnect" href="https://fonts.googleapis.com" />\n'
            b'<link href="https://fonts.googleapis.com/css2?family=Inter" rel="stylesheet"/>'
            b'<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/katex@0.16.22/dist/katex.min.css" />'
            b'<link rel="stylesheet" href="/public/fonts/inter.css"><link rel="icon" href="/favicon" /></head>')
    assert strip_external_links(html) == b'<head><link rel="stylesheet" href="/public/fonts/inter.css">' \
                                         b'<link rel="icon" href="/favicon" /></head>'

    async def page(scope, receive, send):
        import gzip

        body = gzip.compress(html)
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/html; charset=utf-8"), (b"content-encoding", b"gzip"),
            (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    sent = []

    async def send(message):
        sent.append(message)

    asyncio.run(LocalPage(page)({"type": "http", "method": "GET", "headers": []}, None, send))
    headers = dict(sent[0]["headers"])
    assert b"content-encoding" not in headers and b"googleapis" not in sent[1]["body"]
    assert int(headers[b"content-length"]) == len(sent[1]["body"])


def test_app_root_has_local_assets_origins_texts_and_a_private_secret(settings, tmp_path):
    from chat_ui.launch import FOOTER_LLM, FOOTER_OFFLINE, auth_secret, chainlit_command, prepare_app_root
    from chat_ui.launch import texts as launch_texts

    s = settings.model_copy(update={"chat_origins": ["https://edit.example.org"]})
    root = prepare_app_root(tmp_path, s)
    config = (root / ".chainlit" / "config.toml").read_text()
    assert 'allow_origins = ["https://edit.example.org"]' in config and '"*"' not in config
    assert 'custom_css = "/public/localedit.css"' in config and 'custom_js = "/public/localedit.js"' in config
    texts = json.loads((root / ".chainlit" / "translations" / "en-US.json").read_text())
    assert texts["chat"]["watermark"] == FOOTER_OFFLINE and "LLMs" not in json.dumps(texts["chat"]["watermark"])
    assert texts["chat"]["messages"]["status"]["used"] == ""
    # an LLM named by LOCALEDIT_LLM_* (no OpenAI variable) gets the LLM footer
    with_llm = settings.model_copy(update={"llm_model": "llama3.2", "llm_base_url": "http://127.0.0.1:11434/v1"})
    assert launch_texts(with_llm)["chat"]["watermark"] == FOOTER_LLM
    new_chat = texts["navigation"]["newChat"]["dialog"]["description"]
    assert "stays in the sidebar" in new_chat and "clear" not in new_chat
    assert launch_texts(settings.model_copy(update={"llm_model": "llama3.2"}))["chat"]["watermark"] == FOOTER_OFFLINE
    for asset in ("elements/PhotoPicker.jsx", "fonts/inter.css", "fonts/inter-latin-400-normal.woff2", "theme.json",
                  "localedit.css", "localedit.js", "logo_light.svg", "logo_dark.svg", "favicon.svg"):
        assert (root / "public" / asset).is_file(), asset
    assert json.loads((root / "public" / "theme.json").read_text())["custom_fonts"] == ["/public/fonts/inter.css"]
    secret = auth_secret(root)
    assert len(secret) >= 32 and auth_secret(root) == secret  # made once, kept
    assert stat.S_IMODE((root / "auth_secret").stat().st_mode) == 0o600
    command = chainlit_command("127.0.0.1", 8123)
    assert command[1:4] == ["-m", "chainlit", "run"] and "--headless" in command and command[-1] == "8123"


# --- end to end in a browser -------------------------------------------------------------------

@pytest.fixture(scope="module")
def chat_server(tiny_models_dir, tmp_path_factory):
    """The chat app (no password, loopback) with the tiny models, for the module's browser tests."""
    needs_chainlit()
    root = tmp_path_factory.mktemp("chat-ui")
    srv = Server(tiny_models_dir, root / "data", root / "server.log")
    srv.start()
    print(f"\nchat app at {srv.url}; log {srv.log}")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots in {ARTIFACTS}")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def open_page(browser, chat_server, photo: Path, viewport=(1100, 1400), path: str = "/", **context):
    ctx = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, accept_downloads=True,
                              **context)
    ctx.set_default_timeout(60_000)  # generous: a busy 2-core machine renders slowly
    page = ctx.new_page()
    ui = UI(page, chat_server, photo)
    page.on("request", lambda r: ui.requests.append(r.url))
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: ui.frames.append(f if isinstance(f, str) else "")))
    page.on("response", lambda r: ui.failed.append(r.url) if r.status >= 400 else None)
    ui.open(path)
    return ctx, ui


@pytest.fixture
def ui(browser, chat_server, tmp_path):
    """A fresh browser profile on the app (a new chat), and a photo to upload."""
    photo = tmp_path / "cats.png"
    scene(SIZE, boxes=CATS).save(photo)
    ctx, page = open_page(browser, chat_server, photo)
    yield page
    ctx.close()


class UI:
    """What a user does in the chat page, and what the tests look at."""

    def __init__(self, page, server: Server, photo: Path):
        self.page, self.server, self.photo = page, server, photo
        self.frames: list[str] = []
        self.requests: list[str] = []
        self.failed: list[str] = []  # the URLs that answered 4xx / 5xx

    def open(self, path: str = "/") -> None:
        self.page.goto(self.server.url + path)
        self.page.locator("#chat-input").wait_for()
        self.page.locator("#chat-settings-open-modal").wait_for()  # the chat's session is up

    def attach(self, path: Path) -> None:
        self.page.locator("#upload-button-input").set_input_files(str(path))

    def send(self, text: str, image: Path | None = None, expect: str = "") -> str:
        """Type ``text`` (attaching ``image``) and wait for a new assistant reply; returns its text."""
        before = self.replies.count()
        if image is not None:
            self.attach(image)
            self.page.locator("#attachments img").first.wait_for()
        self.page.locator("#chat-input").fill(text)
        self.page.wait_for_function("() => !document.querySelector('#chat-submit').disabled")
        self.page.locator("#chat-submit").click()
        return self.wait_reply(before, expect)

    def click(self, label: str, expect: str = "") -> str:
        before = self.replies.count()
        self.page.get_by_role("button", name=label, exact=True).last.click()
        return self.wait_reply(before, expect)

    @property
    def replies(self):
        return self.page.locator('.step[data-step-type="assistant_message"]')

    @property
    def turns(self):
        """The parent step of each turn."""
        return self.page.locator('.step[data-step-type="run"]')

    def wait_reply(self, before: int, expect: str = "") -> str:
        """Wait until a reply after the ``before`` first ones has ``expect`` in it (and the task ended)."""
        self.page.wait_for_function(
            "([n, text]) => { const r = document.querySelectorAll('.step[data-step-type=\"assistant_message\"]');"
            " return r.length > n && r[r.length - 1].innerText.includes(text); }",
            arg=[before, expect], timeout=TURN_TIMEOUT_MS)
        self.page.wait_for_timeout(400)  # the reply's images and buttons arrive just after its text
        return self.replies.last.inner_text()

    def fetch(self, src: str) -> bytes:
        return self.page.request.get(src if src.startswith("http") else self.server.url + src).body()

    def image(self, alt: str, where=None) -> np.ndarray:
        """The picture with alt text ``alt`` in the newest reply (or in ``where``)."""
        img = (where or self.replies.last).locator(f'img[alt="{alt}"]').last
        img.wait_for()
        return np.asarray(Image.open(io.BytesIO(self.fetch(img.get_attribute("src")))).convert("RGB"))

    def picker(self):
        """The live photo (in the side panel)."""
        return self.page.get_by_test_id("photo-picker").last

    def panel(self):
        """The side panel: the photo being edited, its tools and the version strip."""
        return self.page.locator("#side-view-content")

    def details(self, turn) -> str:
        """What a turn's parent step says when opened (the knobs, scores, attempts)."""
        header = turn.locator(HEADER).first
        if header.get_attribute("aria-expanded") != "true":
            header.click()
        return turn.inner_text()

    def click_photo(self, x: float, y: float, modifiers=None, expect: str = "") -> str:
        """Click at image pixel ``(x, y)`` of the newest photo; returns what its status line says."""
        picture = self.picker().locator("img").first
        box = picture.bounding_box()
        status = self.page.get_by_test_id("picker-status")
        before = status.last.inner_text() if status.count() else ""
        picture.click(position={"x": x * box["width"] / SIZE[0], "y": y * box["height"] / SIZE[1]},
                      modifiers=modifiers or [])
        self.page.wait_for_function(
            "([before, text]) => { const s = document.querySelectorAll('[data-testid=picker-status]');"
            " const t = s.length ? s[s.length - 1].innerText : ''; return t !== before && t.includes(text); }",
            arg=[before, expect], timeout=TURN_TIMEOUT_MS)
        return status.last.inner_text()

    def stages(self, turn) -> list[str]:
        """The names of the stage steps nested in a turn's parent step (opening it)."""
        header = turn.locator(HEADER).first
        if header.get_attribute("aria-expanded") != "true":
            header.click()
        names = turn.locator(f'.step[data-step-type="tool"] :is({HEADER})')
        names.first.wait_for()
        return [n.inner_text().strip() for n in names.all()]

    def work_stages(self, turn) -> list[str]:
        """:meth:`stages` without the models loading (a cold start: the first edit of a server run)."""
        return [s for s in self.stages(turn) if not s.startswith(("Loaded ", "Loading "))]

    def set_steps(self, steps: Optional[int] = None) -> None:
        """Settings: the diffusion steps slider to its end (``steps`` None: "Restore the defaults"), Confirm."""
        self.page.locator("#chat-settings-open-modal").click()
        dialog = self.page.get_by_role("dialog")
        if steps is None:
            dialog.get_by_role("switch").nth(1).click()
        else:
            slider = dialog.get_by_role("slider").nth(1)
            slider.press("End")
            assert slider.get_attribute("aria-valuenow") == str(steps)
        before = self.replies.count()
        dialog.get_by_role("button", name="Confirm").click()
        self.wait_reply(before, "Settings for the next edits")

    def strip(self):
        """The version strip of the newest photo."""
        return self.picker().get_by_test_id("version-strip")

    def shot(self, name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(int) - b.astype(int)).sum(axis=-1) > 0


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.server
def test_page_load_makes_no_request_off_the_machine(ui):
    ui.page.wait_for_load_state("networkidle")
    ui.page.wait_for_timeout(500)
    local = (ui.server.url, "data:", "blob:")
    assert ui.requests and all(u.startswith(local) for u in ui.requests), \
        [u for u in ui.requests if not u.startswith(local)]
    html = ui.fetch("/")
    assert b"googleapis" not in html and b"katex" not in html and b"/public/fonts/inter.css" in html
    fonts = ui.page.evaluate("() => [...document.fonts].filter(f => f.status === 'loaded').map(f => f.family)")
    assert any("Inter" in f for f in fonts), fonts  # the local font is used
    assert [ui.page.locator(f"#starter-{s}").count() for s in ("turn-the-cat-into-a-fox", "make-it-look-like-winter")] \
        == [1, 1]
    ui.shot("00-start")


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.server
def test_click_select_refine_then_make_it_red_edits_the_clicked_object(ui):
    original = np.asarray(Image.open(ui.photo).convert("RGB"))
    got = ui.send("", image=ui.photo, expect="What should I change")
    assert "Got your photo" in got and ui.picker().locator("img").first.get_attribute("alt") == "the photo you uploaded"
    ui.shot("01-uploaded")

    status = ui.click_photo(85, 60, expect="Selected")  # on the middle cat
    assert "Selected the region in the middle" in status, status  # words, not pixel coordinates (issue 19)
    selected = ui.image("the region you selected, over the photo", where=ui.panel())
    assert not np.array_equal(selected, original)  # the selection is drawn on the photo
    assert ui.picker().locator("span.rounded-full").count() == 1  # the click's marker
    ui.shot("02-click-selected")
    status = ui.click_photo(70, 88, modifiers=["Shift"], expect="Added")  # refine: this part too
    assert ui.picker().locator("span.rounded-full").count() == 2
    ui.shot("03-refined")

    ui.send("make it red", expect="Done")
    assert "2 diffusion steps" in ui.details(ui.turns.last)  # the knobs are in the details, not in the reply
    edited = ui.image("the edited photo")
    changed = _changed(edited, original)
    assert changed.any(), "nothing was edited"
    assert inside(changed, CATS[1], work=(64, 48)), "the edit reached outside the clicked cat"
    turn = ui.turns.last
    assert turn.locator(HEADER).first.inner_text().startswith("Edited the selected region in")
    stages = ui.work_stages(turn)
    assert stages[0] == "Reading your message" and not any(s.startswith("Finding") for s in stages), stages
    assert any(s.startswith("Attempt 1 of") for s in stages)
    ui.shot("04-edited-the-selection")

    # typed equivalents on the new image
    picked = ui.send("select the cat on the right", expect="Selected")
    assert "Selected the cat" in picked
    assert "tail" in ui.send("include the tail", expect="tail")
    ui.shot("05-typed-selection")


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.server
def test_one_parent_step_per_turn_with_its_own_stages(ui, tmp_path):
    ui.send("", image=ui.photo, expect="What should I change")
    ui.send("turn the leftmost cat into a fox", expect="Done")
    assert ui.turns.count() == 2 and ui.turns.last.inner_text().startswith("Edited the cat in")
    stages = ui.work_stages(ui.turns.last)
    assert stages[:3] == ["Reading your message", "Finding the cat", "Segmenting the cat"], stages
    assert re.fullmatch(r"Attempt 1 of [12]: ip2p-composite", stages[3]), stages
    assert "Diffusion step 2 of 2" in "".join(ui.frames)  # live progress of the attempt
    finding = ui.turns.last.locator('.step[data-step-type="tool"]').filter(has_text="Finding the cat").first
    finding.locator(HEADER).first.click()
    finding.locator('img[alt="detections of the cat, drawn as boxes on the photo"]').wait_for()
    assert "found 3" in finding.inner_text() and "(10, 40, 50, 90) chosen" in finding.inner_text()
    ui.shot("06-one-step-per-turn")

    assert "Undid 1 step" in ui.click("Undo", expect="Undid")
    undo = ui.turns.last
    assert undo.inner_text().startswith("Undid 1 step") and ui.stages(undo) == ["Reading your message", "Undo"]
    fake = tmp_path / "holiday.png"  # an image by name, not by content
    fake.write_text("this is not really a picture\n")
    error = ui.send("make it brighter", image=fake, expect="Sorry")
    assert "'holiday.png' is not an image" in error and "Running" not in error
    assert ui.turns.count() == 3, "checked before anything ran: no turn"
    user = ui.page.locator('.step[data-step-type="user_message"]').last
    user.get_by_text("attached holiday.png").wait_for()  # its trace in the transcript
    assert user.locator("img").count() == 0, "no broken-image bubble for a bad file"
    ui.shot("07-error-turn")

    asked = ui.send("make the cat blue", expect="Which one")
    assert ui.turns.last.inner_text().startswith("Asked which cat")
    for label in ("1", "2", "3", "All of them", "Cancel"):
        assert ui.page.get_by_role("button", name=label, exact=True).count() == 1, label
    ui.shot("08-question")
    numbered = ui.page.get_by_test_id("photo-picker").filter(
        has=ui.page.locator('img[alt="the cat candidates, numbered"]'))
    assert "Click a candidate" in numbered.get_by_test_id("picker-status").inner_text()  # open: a click answers it
    assert numbered.get_by_role("button", name="Add a part").count() == 0  # no selection modes while it asks
    before = ui.replies.count()
    box = ui.picker().locator("img").first.bounding_box()  # a click on the right cat answers "3"
    ui.picker().locator("img").first.click(position={"x": 135 * box["width"] / SIZE[0],
                                                     "y": 65 * box["height"] / SIZE[1]})
    ui.wait_reply(before, "Done")
    assert ui.page.get_by_role("button", name="All of them").count() == 0  # the question is closed
    numbered.wait_for(state="detached")  # the answered question's picture leaves the panel (no more clicks)
    assert ui.page.get_by_test_id("photo-picker").count() == 1
    assert ui.page.get_by_text("Clicked candidate 3").count() == 1
    assert ui.turns.count() == 5, "upload, edit, undo, question, answer: one parent step each"
    ui.shot("09-answered-by-click")


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.server
def test_the_version_strip_switches_versions_and_the_next_edit_branches(ui):
    ui.send("", image=ui.photo, expect="What should I change")
    assert ui.strip().count() == 0, "one version: no strip"
    ui.send("make the leftmost cat red", expect="Done")
    red = ui.image("the edited photo")
    ui.send("make the rightmost cat blue", expect="Done")
    ui.strip().get_by_test_id("version-3").wait_for()  # the reply's photo can land after its text
    strip = ui.strip()
    cards = strip.get_by_role("button")
    assert cards.count() == 3 and strip.locator('img[alt="version 2"]').count() == 1
    assert strip.get_by_test_id("version-3").get_attribute("aria-current") == "true"
    label = strip.get_by_test_id("version-2").get_attribute("aria-label")
    assert label.startswith("Version 2: make the leftmost cat red (CLIP-RC") and "CLIP-GC" in label, label
    ui.shot("15-version-strip")

    before = ui.replies.count()
    strip.get_by_test_id("version-2").click()  # back to the red cat in one click
    said = ui.wait_reply(before, "Now showing version 2 of 3")
    assert np.array_equal(ui.image("the current photo"), red), said
    assert ui.turns.last.locator(HEADER).first.inner_text() == "Went to version 2"
    assert ui.stages(ui.turns.last) == ["Go to version 2"]  # no message to read: no understanding step
    assert ui.page.locator('.step[data-step-type="user_message"]').last.inner_text().strip() == "Version 2"
    assert ui.strip().get_by_test_id("version-2").get_attribute("aria-current") == "true"
    assert ui.strip().get_by_test_id("version-3").get_attribute("aria-current") is None  # kept, not shown
    ui.shot("16-version-chosen")

    ui.send("make the middle cat green", expect="Done")  # edits version 2: a new branch, version 3 kept
    ui.strip().get_by_test_id("version-4").wait_for()
    strip = ui.strip()
    assert strip.get_by_role("button").count() == 4
    newest = strip.get_by_test_id("version-4")
    assert newest.get_attribute("aria-current") == "true" and "from v2" in newest.inner_text()
    assert "make the rightmost cat blue" in strip.get_by_test_id("version-3").get_attribute("aria-label")
    ui.shot("17-version-branch")


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.server
def test_stop_stops_the_edit_and_the_next_message_is_answered_at_once(ui):
    ui.send("", image=ui.photo, expect="What should I change")
    ui.set_steps(200)  # long enough to press Stop in the middle (tiny models: ~30 ms a step here)
    try:
        before = ui.replies.count()
        ui.page.locator("#chat-input").fill("make the leftmost cat red")
        ui.page.locator("#chat-submit").click()
        deadline = time.monotonic() + TURN_TIMEOUT_MS / 1000
        while not re.search(r"Diffusion step \d+ of 200", "".join(ui.frames[-20:])):  # the edit is running
            assert time.monotonic() < deadline, "the edit never started"
            ui.page.wait_for_timeout(20)
        running = ui.turns.last  # its progress shows without a click: the turn and its running stage are open
        running.get_by_text(re.compile(r"Diffusion step \d+ of 200")).wait_for(state="visible", timeout=10_000)
        assert running.locator(HEADER).first.get_attribute("aria-expanded") == "true"
        assert "Finding the cat" in "".join(ui.frames) and "Finding the object" not in "".join(ui.frames)
        clicked = len(ui.frames)
        ui.page.locator("#stop-button").click()
        stopped = ui.wait_reply(before, "Stopped")
        step = re.search(r"Stopped: I left the image as it was \(the edit was stopped at step (\d+) of 200\)", stopped)
        assert step and int(step.group(1)) < 200 and "Done" not in stopped, stopped
        # Stop reached the diffusion loop: no step beyond the one it stopped at, and none after the reply. (On
        # a loaded machine the first attempt can end before the click; then it is the retry that stops.)
        later = [int(n) for n in re.findall(r"Diffusion step (\d+) of 200", "".join(ui.frames[clicked:]))]
        assert all(n <= int(step.group(1)) for n in later), (later, stopped)
        settled = len(ui.frames)
        ui.page.wait_for_timeout(1000)
        assert "Diffusion step" not in "".join(ui.frames[settled:]), "the edit went on after Stop"
        assert ui.turns.last.locator(HEADER).first.inner_text().startswith("Stopped after")
        assert ui.page.get_by_text("Task manually stopped.").count() == 0, "one message says it, not two"
        assert ui.page.get_by_text("cannot interrupt").count() == 0
        assert ui.strip().count() == 0, "no version was made"
        assert not [u for u in ui.failed if "/avatars/" in u], "every step has its avatar, running ones too"
        ui.shot("18-stopped")
        started = time.monotonic()
        nothing = ui.send("undo", expect="Nothing to undo")  # answered at once, and still on the photo
        assert time.monotonic() - started < 15 and "the original photo" in nothing
    finally:
        ui.set_steps(None)  # "Restore the defaults": the panel is kept per user, the other tests want 2 steps


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.server
def test_a_past_chat_reopens_with_its_images_also_after_a_restart(ui, browser):
    ui.send("", image=ui.photo, expect="What should I change")
    ui.send("turn the leftmost cat into a fox", expect="Done")
    edited = ui.image("the edited photo")
    thread_url = ui.page.url
    assert "/thread/" in thread_url

    ui.page.locator("#new-chat-button").click()  # a new chat; the old one is in the sidebar
    ui.page.get_by_role("button", name="Confirm").click()
    ui.page.locator("#starter-make-the-car-red").wait_for()
    past = ui.page.get_by_text("turn the leftmost cat into a fox").first
    past.wait_for()
    ui.shot("10-sidebar")
    past.click()
    ui.page.get_by_text("Welcome back").wait_for(timeout=60_000)
    assert ui.page.url == thread_url
    assert ui.page.get_by_text("Got your photo").count() == 1  # the whole history, not the last 40 items
    assert ui.turns.count() >= 2 and ui.page.get_by_text("Edited the cat in").count() == 1
    reopened = ui.image("the edited photo", where=ui.replies.nth(-2))
    assert np.array_equal(reopened, edited)
    ui.shot("11-reopened")

    other, there = open_page(browser, ui.server, ui.photo, path=thread_url[len(ui.server.url):])
    there.page.get_by_text("Welcome back").wait_for()  # another browser, not signed in yet: still this chat
    assert there.page.url == thread_url and there.page.get_by_text("Got your photo").count() == 1
    other.close()

    ui.server.restart()
    ui.page.goto(thread_url)  # a reload after a restart: the same chat, pictures and all
    ui.page.get_by_text("Welcome back").wait_for(timeout=60_000)
    assert np.array_equal(ui.image("the current photo"), edited)
    assert "Done" in ui.send("now make it red", expect="Done")  # and it carries on
    ui.shot("12-after-restart")


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.server
def test_download_settings_starters_names_and_phone(ui, browser, tmp_path):
    # a starter before any photo waits for the photo
    before = ui.replies.count()
    ui.page.locator("#starter-make-it-look-like-winter").click()
    assert "I will do that on it" in ui.wait_reply(before, "Drop a photo")
    ran = ui.send("", image=ui.photo, expect="Done")
    assert "make it look like winter" in ran and "2 diffusion steps" in ui.details(ui.turns.last)
    footer = ui.page.get_by_text("Edits run on this machine")
    assert footer.count() == 1 and ui.page.get_by_text("LLMs can make mistakes").count() == 0
    user = ui.page.locator('.step[data-step-type="user_message"]').last
    bubble = user.locator(".message-content").first
    assert not bubble.is_visible(), "a photo-only message shows no empty text bubble"
    assert user.locator("img").first.get_attribute("alt").startswith("the photo you uploaded")

    with ui.page.expect_download() as download:  # one click, a real download
        ui.picker().get_by_role("link", name="Download").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert re.fullmatch(r"localedit-\w{8}-v2\.png", saved.name)
    assert np.array_equal(np.asarray(Image.open(saved).convert("RGB")), ui.image("the edited photo"))

    ui.page.locator("#chat-settings-open-modal").click()  # settings: change, then restore the defaults
    dialog = ui.page.get_by_role("dialog")
    dialog.get_by_role("slider").nth(1).press("End")
    dialog.get_by_role("switch").nth(1).click()  # "Restore the defaults"
    ui.page.wait_for_timeout(800)
    assert dialog.get_by_role("slider").nth(1).get_attribute("aria-valuenow") == "2"
    ui.shot("13-settings")
    before = ui.replies.count()
    dialog.get_by_role("button", name="Confirm").click()
    assert "2 steps" in ui.wait_reply(before, "Settings for the next edits")

    names = ui.page.evaluate("""() => [...document.querySelectorAll('button, a[href]')]
        .filter(b => b.offsetParent !== null)
        .map(b => [b.id, (b.getAttribute('aria-label') || b.innerText || b.title || '').trim()])""")
    assert all(label for _, label in names), [i for i, label in names if not label]
    alts = ui.page.evaluate("() => [...document.querySelectorAll('img')].map(i => i.alt)")
    assert all(alts) and not any(re.search(r"\.(png|jpg)$", a) for a in alts if not a.startswith("Avatar")), alts

    phone, small = open_page(browser, ui.server, ui.photo, viewport=(390, 844), is_mobile=True, has_touch=True)
    small.send("", image=ui.photo, expect="What should I change")
    sheet = small.page.get_by_role("dialog")  # a phone: the photo panel is a sheet over the chat
    sheet.get_by_test_id("photo-picker").wait_for()
    small.page.keyboard.press("Escape")  # closed, to type the next message
    sheet.wait_for(state="detached")
    small.page.get_by_test_id("thumb").last.click()  # a small picture in the chat opens it again
    sheet.get_by_test_id("photo-picker").wait_for()
    small.page.keyboard.press("Escape")
    sheet.wait_for(state="detached")
    small.send("make the leftmost cat red", expect="Done")
    strip = small.strip()  # the new version opened the panel
    assert strip.get_by_role("button").count() == 2
    assert strip.evaluate("s => s.scrollWidth <= s.clientWidth + 1 || getComputedStyle(s).overflowX === 'auto'")
    strip.scroll_into_view_if_needed()
    small.shot("14-phone")
    phone.close()


# --- a long conversation on a fresh server (issue 19) -------------------------------------------

SCREEN = (1280, 800)  # a laptop screen: the page may grow < 4 of its heights per 10 turns

SCROLLED_HEIGHT = """() => {
  let e = document.querySelector('[data-step-type="user_message"]');
  while (e && !(e.scrollHeight > e.clientHeight + 1 && /(auto|scroll)/.test(getComputedStyle(e).overflowY)))
    e = e.parentElement;
  return e ? e.scrollHeight : document.documentElement.scrollHeight;
}"""
"""The height of the chat's scrolled content (px)."""
SCROLLED_TOP = SCROLLED_HEIGHT.replace("return e ? e.scrollHeight : document.documentElement.scrollHeight;",
                                       "if (e) e.scrollTop = 0;")
"""Scroll the chat to its top."""
SCROLLED_BACK = SCROLLED_TOP.replace("e.scrollTop = 0", "e.scrollBy(0, -420)")
"""Scroll the chat back by about two turns (Chainlit puts the newest message at the top)."""


@pytest.fixture(scope="module")
def fresh_server(tiny_models_dir, tmp_path_factory):
    """The app on its own server: nothing loaded yet, so the first edit is a cold start."""
    needs_chainlit()
    root = tmp_path_factory.mktemp("chat-page")
    srv = Server(tiny_models_dir, root / "data", root / "server.log", LOCALEDIT_MAX_ATTEMPTS="1")  # 25 turns: one try each
    srv.start()
    yield srv
    srv.stop()


def shot(ui, name: str) -> None:
    """A screenshot in artifacts/ui/chat-<name>.png (the ones in docs/ are copies of these, made by hand)."""
    ui.shot(f"chat-{name}")


def tools_shown(ui) -> set[str]:
    """The version tools the panel offers now (after its photo has been drawn)."""
    ui.panel().get_by_test_id("photo-picker").locator("img").first.wait_for()
    toolbar = ui.panel().get_by_role("toolbar", name="Version tools")
    return {b.inner_text().strip() for b in toolbar.get_by_role("button").all()} if toolbar.count() else set()


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.server
def test_a_25_turn_chat_stays_readable(fresh_server, browser, tmp_path):
    """One 25-turn chat, typed as people type, on a fresh server (its first edit is a cold start): the
    page stays readable (one live photo and its tools in the side panel, small thumbnails, tools only
    where they act, the strip scrolled to the version shown, short replies with the knobs in the
    details), a bad upload after an instruction keeps the instruction and leaves a trace, the first
    edit says which models load, New chat tells the truth and two chats never share a sidebar name;
    the page grows by under 4 screen heights per 10 turns. Screenshots: artifacts/ui/chat-*.png
    (``docs/chat-*.png`` are copies, described in ``docs/chat-ui.md``)."""
    photo = tmp_path / "cats.png"
    scene(SIZE, boxes=CATS).save(photo)
    ctx, ui = open_page(browser, fresh_server, photo, viewport=SCREEN)
    try:
        _converse(ui, tmp_path)
    finally:
        ctx.close()


def _converse(ui, tmp_path: Path) -> None:
    page = ui.page
    # 1-3: an instruction before any photo, a text file named .png, then the photo
    assert "I will do that on it" in ui.send("make the leftmost cat red", expect="Drop a photo")
    fake = tmp_path / "disc.png"
    fake.write_text("not a picture at all\n")
    refused = ui.send("", image=fake, expect="Sorry")
    assert "'disc.png' is not an image" in refused and "Running what you asked" not in refused
    assert "make the leftmost cat red" in refused  # the instruction still waits
    user = page.locator('.step[data-step-type="user_message"]').last
    user.get_by_text("attached disc.png").wait_for()  # the upload's trace in the transcript
    assert user.locator("img").count() == 0
    page.evaluate(SCROLLED_TOP)  # the screenshot shows the instruction the upload came after
    shot(ui, "bad-upload")
    frames_before = len(ui.frames)
    ran = ui.send("", image=ui.photo, expect="Done")
    assert "Running what you asked before the photo came" in ran and "make the leftmost cat red" in ran
    cold = "".join(ui.frames[frames_before:])
    assert "Loading the models (once per server run)" in cold and re.search(r"Loaded \d+ models? in", cold), \
        "the first edit of a server run says which models load"
    assert "diffusion steps" not in ran, "the knobs are in the details"
    assert "diffusion steps" in ui.details(ui.turns.last)
    stages = ui.stages(ui.turns.last)
    assert any(s.startswith("Loaded ") for s in stages), stages
    loading = ui.turns.last.locator('.step[data-step-type="tool"]').filter(has_text="Loaded ").first
    loading.locator(HEADER).first.click()
    loading.get_by_text(re.compile(r": loaded in")).first.wait_for()
    loading.scroll_into_view_if_needed()
    shot(ui, "cold-start")
    assert tools_shown(ui) == {"Undo", "Show mask"}, "an edit on screen: undo and its mask, nothing to redo"

    start = page.evaluate(SCROLLED_HEIGHT)
    turns = [  # 4-25, as people type them
        ("now make it blue", "Done"), ("undo", "Undid"), ("redo", "Redid"),
        ("make the rightmost cat green", "Done"), ("show me the mask", ""), ("make the middle cat yellow", "Done"),
        ("undo", "Undid"), ("make the cat on the left purple", "Done"), ("make it look like winter", "Done"),
        ("undo", "Undid"), ("turn the rightmost cat into a fox", "Done"), ("make the leftmost cat orange", "Done"),
        ("make the middle cat pink", "Done"), ("undo", "Undid"), ("make the rightmost cat black", "Done"),
        ("make the middle cat brown", "Done"), ("make the leftmost cat gray", "Done"),
        ("make the rightmost cat white", "Done"), ("make the middle cat gold", "Done"), ("undo", "Undid"),
        ("make the leftmost cat silver", "Done"), ("make it look like autumn", "Done")]
    heights = {3: start}
    for number, (text, expect) in enumerate(turns, start=4):
        ui.send(text, expect=expect)
        tools = tools_shown(ui)
        if text == "undo":
            assert "Redo" in tools, (number, tools)
        if text == "make it look like winter":
            assert "Show mask" not in tools, "a whole-photo edit has no mask to show"
            shot(ui, "panel")
        if text == "redo":
            assert "Redo" not in tools and "Undo" in tools
        if number in (13, 23):
            heights[number] = page.evaluate(SCROLLED_HEIGHT)
    # one live photo, with its tools, in the panel; the conversation has small pictures without tools
    assert page.get_by_test_id("photo-picker").count() == 1
    for label in ("Select", "Add a part", "Download"):
        assert page.get_by_role("button" if label != "Download" else "link", name=label, exact=True).count() == 1
    thumbs = page.get_by_test_id("thumb")
    assert thumbs.count() >= 20
    labels = [t.inner_text().strip() for t in thumbs.all()]
    assert all(re.fullmatch(r"(v\d+)?", label) for label in labels), labels  # no "version 1 of 1"
    assert max(t.bounding_box()["height"] for t in thumbs.all()) <= 80
    # the strip shows the version on screen, however many there are
    strip = ui.strip()
    cards = strip.get_by_role("button")
    assert cards.count() > 7
    current = strip.locator("[aria-current=true]")
    box, frame = current.bounding_box(), strip.bounding_box()
    assert frame["x"] - 1 <= box["x"] and box["x"] + box["width"] <= frame["x"] + frame["width"] + 1, (box, frame)
    # under 4 screen heights of new content per 10 turns
    per_ten = [(heights[b] - heights[a]) / SCREEN[1] for a, b in ((3, 13), (13, 23))]
    assert all(h < 4 for h in per_ten), per_ten
    print(f"\nnew content per 10 turns: {', '.join(f'{h:.2f}' for h in per_ten)} screen heights of {SCREEN[1]} px")
    page.evaluate(SCROLLED_BACK)
    shot(ui, "25-turns")

    # New chat: the confirmation tells the truth; the same first words give a name the sidebar tells apart
    page.locator("#new-chat-button").click()
    dialog = page.get_by_role("dialog")
    assert "stays in the sidebar" in dialog.inner_text() and "clear" not in dialog.inner_text().lower()
    shot(ui, "new-chat")
    dialog.get_by_role("button", name="Confirm").click()
    page.locator("#starter-make-the-car-red").wait_for()
    ui.send("make the leftmost cat red", expect="Drop a photo")
    page.get_by_text("(2) make the leftmost cat red").wait_for()
    shot(ui, "two-names")
    names = page.locator("#thread-history a, [id^='thread-'] a, a[href*='/thread/']").all_inner_texts()
    assert sum(1 for n in names if n.strip() == "make the leftmost cat red") <= 1, names
