"""The chat UI: its pieces without a browser, then the real app end to end in headless Chromium.

The browser tests start Chainlit (``tests/ui_helpers.py``: the real app, grounding fixed to the test
scene) with the tiny models on a free loopback port, and drive it with Playwright and Debian's
Chromium. Screenshots of every stage go to ``artifacts/ui/`` in the repository root.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.llm import Understander
from chat_ui import render
from chat_ui.backend import (COOKIE, Backend, BrowserCookie, PanelSettings, ThreadMap,
                             browser_from_cookie_header)
from tests.conftest import free_port, scene
from tests.scenes import CATS, SIZE, SceneWorker, agent_settings

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "artifacts" / "ui"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TURN_TIMEOUT_MS = 120_000  # the first turn loads every tiny model


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


def test_thread_map_keeps_a_browser_on_its_thread(tmp_path):
    threads = ThreadMap(tmp_path / "chat_ui.sqlite")
    first = threads.thread_for("browser1")
    assert threads.thread_for("browser1") == first != threads.thread_for("browser2")
    threads.save_panel("browser1", PanelSettings(seed=5))
    again = ThreadMap(tmp_path / "chat_ui.sqlite")  # a restarted server
    assert again.thread_for("browser1") == first and again.panel_for("browser1")["seed"] == 5
    fresh = again.new_thread("browser1")  # "New chat"
    assert fresh != first and threads.thread_for("browser1") == fresh


def test_browser_cookie_is_set_once_and_read_back():
    assert browser_from_cookie_header(f"a=1; {COOKIE}=abcdef0123456789; b=2") == "abcdef0123456789"
    assert browser_from_cookie_header(f"{COOKIE}=x") is None and browser_from_cookie_header("junk;;=") is None

    async def page(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def headers_of(request_headers):
        sent = []

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/", "headers": request_headers}
        asyncio.run(BrowserCookie(page)(scope, None, send))
        return dict(sent[0]["headers"])

    set_cookie = headers_of([(b"accept", b"text/html")]).get(b"set-cookie", b"").decode()
    assert set_cookie.startswith(f"{COOKIE}=") and "HttpOnly" in set_cookie
    value = set_cookie.split(";")[0]
    assert b"set-cookie" not in headers_of([(b"accept", b"text/html"), (b"cookie", value.encode())])
    assert b"set-cookie" not in headers_of([(b"accept", b"application/json")])  # not a page load


def test_turn_steps_show_the_work(settings, registry, tmp_path):
    """The steps of an edit turn and of a question, from a real agent turn."""
    s = agent_settings(settings, tmp_path)
    backend = Backend(s, worker_factory=lambda st, base: SceneWorker(st, registry=registry),
                      understander=Understander(None))
    chat = backend.session("t1", backend.defaults)
    photo = tmp_path / "cats.png"
    scene(SIZE, boxes=CATS).save(photo)
    chat.send("", image=photo)
    reply = chat.send("turn the leftmost cat into a fox")
    steps = {v.name: v for v in render.turn_steps(reply, chat.state())}
    assert list(steps) == ["Caption", "Plan", "Detections", "Mask", "Editor", "Scores"], list(steps)
    assert "offline parser" in steps["Plan"].text and "`leftmost`" in steps["Plan"].text
    assert "found 3" in steps["Detections"].text and steps["Detections"].text.count("**chosen**") == 1
    picture = Image.open(io.BytesIO(steps["Detections"].pictures[0][1]))
    assert picture.size == SIZE
    assert steps["Mask"].pictures == [("mask.png", reply.images["mask"])]
    assert "ip2p-composite" in steps["Editor"].text and "CLIP-GC" in steps["Scores"].text

    asked = chat.send("make the cat blue")
    names = [v.name for v in render.turn_steps(asked, chat.state())]
    assert asked.question and names == ["Caption", "Plan", "Detections"]
    # another panel combination: same thread, same loaded models, new settings
    other = backend.session("t1", PanelSettings.from_panel({"editor": "diffedit"}, backend.defaults))
    assert other.pending() is not None and other.conversations.settings.editor == "diffedit"
    assert other.conversations.worker.registry is backend.conversations(backend.defaults).worker.registry
    backend.close()


def test_chat_subcommand_arguments():
    import argparse

    from chat_ui.launch import add_cli, chainlit_command

    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["chat", "--port", "8123", "--models", "m", "--data-dir", "d", "--host", "0.0.0.0"])
    assert (args.port, args.models, args.data_dir, args.host) == (8123, "m", "d", "0.0.0.0") and callable(args.func)
    command = chainlit_command("127.0.0.1", 8123)
    assert command[1:4] == ["-m", "chainlit", "run"] and "--headless" in command and command[-1] == "8123"


# --- end to end in a browser -------------------------------------------------------------------

class Server:
    """The chat app under test, as a child process on a loopback port (restartable)."""

    def __init__(self, models: Path, data: Path, log: Path):
        self.port, self.data, self.log = free_port(), data, log
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {"LOCALEDIT_MODELS_DIR": str(models), "LOCALEDIT_DATA_DIR": str(data),
                    "LOCALEDIT_MAX_SIDE": "64", "LOCALEDIT_STEPS": "2", "LOCALEDIT_DEVICE": "cpu",
                    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OPENAI_API_KEY": None,
                    "OPENAI_BASE_URL": None, "LOCALEDIT_LLM_MODEL": None}
        self.proc = None

    def start(self) -> None:
        from chat_ui.launch import start, wait_until_up

        out = open(self.log, "ab")
        self.proc = start("127.0.0.1", self.port, self.data, app_file=REPO / "tests" / "ui_helpers.py",
                          env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=str(self.data))
        out.close()
        if not wait_until_up("127.0.0.1", self.port, self.proc, 120):
            self.stop()
            pytest.fail(f"the chat app did not start; its log:\n{self.tail()}")

    def stop(self) -> None:
        from chat_ui.launch import stop

        if self.proc is not None:
            stop(self.proc)  # by this child's PID only
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]) if self.log.exists() else ""


@pytest.fixture(scope="module")
def server(tiny_models_dir, tmp_path_factory):
    if importlib.util.find_spec("chainlit") is None:  # not imported here: it writes files where it is imported
        pytest.skip("chainlit is not installed (pip install chainlit)")
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


@pytest.fixture
def ui(browser, server, tmp_path):
    """A fresh browser profile (so a new conversation) on the app, and a photo to upload."""
    context = browser.new_context(viewport={"width": 1100, "height": 1400})
    context.set_default_timeout(30_000)
    page = context.new_page()
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(f if isinstance(f, str) else "")))
    photo = tmp_path / "cats.png"
    scene(SIZE, boxes=CATS).save(photo)
    chat = Chat(page, server, photo, frames)
    chat.open()
    yield chat
    context.close()


class Chat:
    """What a user does in the chat page, and what the tests look at."""

    def __init__(self, page, server: Server, photo: Path, frames: list[str]):
        self.page, self.server, self.photo, self.frames = page, server, photo, frames

    def open(self) -> None:
        self.page.goto(self.server.url)
        self.page.locator("#chat-input").wait_for()
        self.page.locator(".step").first.wait_for()

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

    def wait_reply(self, before: int, expect: str = "") -> str:
        """Wait until a reply after the ``before`` first ones has ``expect`` in it (and the task ended)."""
        self.page.wait_for_function(
            "([n, text]) => { const r = document.querySelectorAll('.step[data-step-type=\"assistant_message\"]');"
            " return r.length > n && r[r.length - 1].innerText.includes(text); }",
            arg=[before, expect], timeout=TURN_TIMEOUT_MS)
        self.page.wait_for_timeout(300)  # the reply's images and buttons arrive just after its text
        return self.replies.last.inner_text()

    def image(self, name: str) -> np.ndarray:
        """The picture called ``name`` ("edited", "before / after", "current", ...) in the newest reply."""
        img = self.replies.last.locator(f'img[alt="{name}"]')
        img.wait_for()
        src = img.get_attribute("src")
        body = self.page.request.get(src if src.startswith("http") else self.server.url + src).body()
        return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))

    def step(self, name: str):
        """The newest step called ``name`` (its header button)."""
        return self.page.locator(f'[id="step-{name}"]').last

    def unfold(self, name: str):
        """Open the newest step called ``name``; returns its content."""
        header = self.step(name)
        header.click()
        return self.page.locator(f'[id="{header.get_attribute("aria-controls")}"]')

    def shot(self, name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path


def _chosen(box) -> str:
    """How the Detections step lists a chosen box."""
    return f"({', '.join(str(v) for v in box)}) chosen"


def test_upload_edit_steps_buttons_and_undo(ui):
    original = np.asarray(Image.open(ui.photo).convert("RGB"))
    got = ui.send("", image=ui.photo, expect="What should I change")
    ui.shot("01-uploaded")
    assert "Got your photo" in got

    ui.send("turn the leftmost cat into a fox", expect="Done")
    edited, before_after = ui.image("edited"), ui.image("before / after")
    assert edited.shape == original.shape and before_after.shape[1] > 2 * original.shape[1] - 1
    for name in ("Agent", "Caption", "Plan", "Detections", "Mask", "Editor", "Scores", "Retries"):
        assert ui.step(name).count() == 1, f"no {name} step"
    ui.shot("02-edited")
    detections = ui.unfold("Detections")  # the boxes picture
    detections.locator("img").first.wait_for()
    assert "found 3" in detections.inner_text() and _chosen(CATS[0]) in detections.inner_text()
    ui.unfold("Mask").locator("img").first.wait_for()
    assert "step 2/2" in "".join(ui.frames) and "Done in" in ui.unfold("Agent").inner_text()
    ui.shot("03-steps-open")

    assert "region I edited" in ui.click("Show mask", expect="region")
    ui.page.get_by_role("button", name="Download").last.click()
    ui.page.get_by_text(re.compile(r"localedit-\w+-v2\.png")).first.wait_for()
    ui.shot("04-mask-and-download")

    captions = ui.page.locator('[id="step-Caption"]').count()
    assert "Undid 1 step" in ui.click("Undo", expect="Undid")
    assert ui.page.locator('[id="step-Caption"]').count() == captions  # a command needs no caption
    assert np.array_equal(ui.image("current"), original), "undo did not bring back the uploaded photo"
    ui.shot("05-undone")
    assert "Redid" in ui.click("Redo", expect="Redid")
    assert np.array_equal(ui.image("current"), edited)
    assert ui.page.get_by_role("button", name="Undo").count() == 1  # the buttons moved to the newest reply


def test_ambiguous_instruction_asks_with_buttons_and_a_click_resumes(ui):
    ui.send("", image=ui.photo, expect="What should I change")
    asked = ui.send("make the cat blue", expect="Which one")
    assert "3 cats" in asked
    candidates = ui.image("candidates")
    assert candidates.shape[:2] == (SIZE[1], SIZE[0])
    for label in ("1", "2", "3", "All of them", "Cancel"):
        assert ui.page.get_by_role("button", name=label, exact=True).count() == 1, label
    ui.shot("06-question")

    ui.click("3", expect="Done")
    assert ui.page.get_by_role("button", name="All of them").count() == 0  # the question is closed
    assert _chosen(CATS[2]) in ui.unfold("Detections").inner_text()  # candidates are numbered left to right
    ui.shot("07-answered-by-click")

    ui.send("make the cat green", expect="Which one")
    ui.send("the left one", expect="Done")  # typing the answer works too
    assert _chosen(CATS[0]) in ui.unfold("Detections").inner_text()
    ui.send("make the cat red", expect="Which one")
    assert "left the image" in ui.click("Cancel", expect="left the image")
    ui.shot("08-answered-by-typing-and-cancel")


def test_non_image_uploads_get_a_friendly_error_and_the_chat_goes_on(ui, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("just some notes\n")
    ui.attach(text)  # refused by the upload box itself (photos only)
    ui.page.get_by_text("File type must be image").first.wait_for()
    ui.shot("09-text-file-refused")

    fake = tmp_path / "holiday.png"  # an image by name, not by content
    fake.write_text("this is not really a picture\n")
    error = ui.send("make it brighter", image=fake, expect="Sorry")
    assert "'holiday.png' is not an image" in error and ".files" not in error  # named as the user knows it
    ui.shot("10-not-an-image")

    assert "Please upload a photo first" in ui.send("make the cat blue", expect="upload a photo")
    assert "What should I change" in ui.send("", image=ui.photo, expect="What should I change")


def test_settings_panel_changes_the_next_edit_and_progress_shows(ui):
    ui.send("", image=ui.photo, expect="What should I change")
    ui.page.locator("#chat-settings-open-modal").click()
    dialog = ui.page.get_by_role("dialog")
    dialog.get_by_role("combobox").click()
    ui.page.get_by_role("option", name="diffedit", exact=True).click()
    dialog.get_by_role("slider").nth(1).press("End")  # diffusion steps: the most (100)
    dialog.locator("input[type=number]").fill("7")
    dialog.get_by_role("switch").click()  # auto-retry off
    ui.shot("11-settings")
    before = ui.replies.count()
    dialog.get_by_role("button", name="Confirm").click()
    saved = ui.wait_reply(before, "Settings for the next edits")
    assert all(s in saved for s in ("editor diffedit", "100 steps", "seed 7", "auto-retry off")), saved

    before = ui.replies.count()
    ui.page.locator("#chat-input").fill("turn the leftmost cat into a fox")
    ui.page.locator("#chat-submit").click()
    ui.page.get_by_text(re.compile(r"Editing with diffedit: step \d+/\d+")).wait_for(timeout=TURN_TIMEOUT_MS)
    ui.shot("12-progress")
    done = ui.wait_reply(before, "Done")
    assert "with diffedit" in done and "tried" not in done  # auto-retry off: one attempt
    assert ui.page.locator('[id="step-Retries"]').count() == 0
    assert "seed 7" in ui.unfold("Editor").inner_text()


def test_reload_and_restart_resume_the_conversation(ui):
    ui.send("", image=ui.photo, expect="What should I change")
    ui.send("turn the leftmost cat into a fox", expect="Done")
    edited = ui.image("edited")

    ui.page.reload()
    ui.page.get_by_text("Welcome back").wait_for(timeout=60_000)
    assert ui.page.get_by_text("turn the leftmost cat into a fox").count() >= 1
    assert np.array_equal(ui.image("current"), edited)
    ui.shot("13-reloaded")

    ui.server.restart()
    ui.page.reload()
    ui.page.get_by_text("Welcome back").wait_for(timeout=60_000)
    assert ui.page.get_by_text("turn the leftmost cat into a fox").count() >= 1
    ui.shot("14-restarted")
    assert "Done" in ui.send("now make it red", expect="Done")  # a follow-up without re-uploading
    assert ui.page.get_by_text("What should I change").count() >= 1  # the history is still above
    ui.shot("15-follow-up-after-restart")

    ui.page.locator("#new-chat-button").click()  # "New chat" starts a new conversation...
    ui.page.get_by_role("button", name="Confirm").click()
    ui.page.get_by_text("Drop a photo here").wait_for()
    user_messages = ui.page.locator('.step[data-step-type="user_message"]')
    assert user_messages.count() == 0
    ui.page.reload()  # ...which is the one a reload shows from then on
    ui.page.get_by_text("Drop a photo here").wait_for()
    assert user_messages.count() == 0 and ui.page.get_by_text("Welcome back").count() == 0
    ui.shot("16-new-chat")
