"""The localedit chat, a Chainlit app. Start it with ``localedit chat`` (``chat_ui.launch``).

A turn: the user's text (and photo, dropped in or attached with the clip button) goes to the
agent's ``Session.send`` in a worker thread. It is shown as **one parent step** ("Edited the cat in
12 s", "Asked which cat") with the stages that ran nested inside it, live while they run (the graph
announces each node; diffusion reports each step and which attempt of how many) and with their
details when done (``chat_ui.render``). The reply carries the photo as a ``PhotoPicker`` custom
element (``public/elements/PhotoPicker.jsx``): a click selects the object under it (SAM point
prompt, ``agent.pointing``), Shift- / Alt-clicks refine the selection, the next instruction edits
it, and its Download button saves the image in one click. Typed equivalents ("select the cat on
the left", "include the tail") work too. Questions come with the numbered picture, one button per
candidate, and a click on a candidate answers as well.

Under the photo is the version strip (``render.version_cards``): a thumbnail of each version with
its instruction and scores, the one shown marked; a click runs ``Session.select_version`` as a
turn of its own. Stop (``on_stop``) calls ``Session.cancel()``: the edit ends at its next
diffusion step and its "Stopped" reply is shown (``through_stop`` keeps the message's task alive
for it), and the next message starts at once.

Past conversations: Chainlit's data layer (``chat_ui.history``, SQLite in the data folder) keeps
every thread, its steps and its pictures; the sidebar lists them and a reopened chat is drawn as it
was, and carries on (a Chainlit thread id is the agent's thread id). On loopback the browser is
signed in as the local user without a login; elsewhere a password is asked (``chat_ui.access``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import weakref
from pathlib import Path
from typing import Any, Optional, Sequence

import chainlit as cl
from chainlit.auth import get_current_user
from chainlit.chat_context import chat_context
from chainlit.input_widget import NumberInput, Select, Slider, Switch
from chainlit.server import app as _server
from chainlit.utils import utc_now
from fastapi import Depends, HTTPException
from fastapi.responses import FileResponse
from fastapi.routing import APIRoute
from PIL import Image as PILImage

from agent import replies
from agent.pointing import Pointed, Pointer
from agent.session import Reply, Session
from agent.state import current_record
from chat_ui import render
from chat_ui.access import LOCAL_USER, Guard, LoginThrottle, check_password, password_mode
from chat_ui.backend import EDITORS, Backend, PanelSettings, get_backend
from chat_ui.history import FILES_ROUTE, FileStore, SQLiteDataLayer
from chat_ui.page import LocalPage
from tools.files import private_dir
from tools.images import to_png_bytes

log = logging.getLogger("localedit.chat")

STARTERS = (("Turn the cat into a fox", "turn the cat into a fox"), ("Make the car red", "make the car red"),
            ("Remove the lamp", "remove the lamp"), ("Make it look like winter", "make it look like winter"))
TOOLBAR = (("undo", "Undo", "undo-2", "Go back to the previous version"),
           ("redo", "Redo", "redo-2", "Go forward again"),
           ("show_mask", "Show mask", "eye", "Show the region the last edit changed"))
CHAINLIT_STOPPED = "Task manually stopped."  # what Chainlit itself posts on Stop (chainlit.socket.stop)
NEW_PHOTO = "New photo"  # a thread's name until its first instruction
UPLOAD_FIRST = "Please upload a photo first"  # what the agent says to an instruction without a photo
RESUME_DELAY = 0.3  # seconds: the "welcome back" note follows Chainlit's redraw of a reopened thread
DOWNLOAD_NAME = re.compile(r"^[\w.-]{1,80}\.png$")
MAX_STEPS = 200  # the steps slider's end (PanelSettings.steps allows up to 200)
THUMB_SIDE = 96  # px: the long side of a version strip's thumbnail
_thumbs: dict[str, str] = {}  # image path (content-addressed, never rewritten) -> its thumbnail's URL
_thread_locks: "weakref.WeakValueDictionary[str, asyncio.Lock]" = weakref.WeakValueDictionary()

backend: Backend = get_backend()
_data = private_dir(backend.settings.data_dir)
files = FileStore(_data / "chat_files")
history = SQLiteDataLayer(_data / "chat_threads.sqlite", files)


# --- who may use it, what the page loads, where pictures are served --------------------------------

@cl.data_layer
def _data_layer() -> SQLiteDataLayer:
    return history


if password_mode(backend.settings):
    @cl.password_auth_callback
    def _login(username: str, password: str) -> Optional[cl.User]:
        if check_password(backend.settings, username, password):
            return cl.User(identifier=backend.settings.chat_user, metadata={"provider": "password"})
        return None
else:
    @cl.header_auth_callback
    def _local(headers) -> cl.User:
        """Loopback: every browser on this machine is the local user (``Guard`` keeps others out)."""
        return cl.User(identifier=LOCAL_USER, metadata={"provider": "loopback"})

_server.add_middleware(LocalPage)
_server.add_middleware(Guard, loopback_only=not password_mode(backend.settings),
                       origins=tuple(backend.settings.chat_origins),
                       throttle=LoginThrottle(backend.settings.chat_login_failures, backend.settings.chat_login_window))


async def _serve_file(name: str, download: Optional[str] = None, user=Depends(get_current_user)):
    """A picture of a conversation (signed-in users only); ``?download=NAME`` saves it as NAME."""
    if user is None:
        raise HTTPException(status_code=401, detail="Sign in to see this picture.")
    path = files.path(name)
    if path is None:
        raise HTTPException(status_code=404, detail="No such picture.")
    if download is not None and not DOWNLOAD_NAME.match(download):
        raise HTTPException(status_code=400, detail="Not a file name for a download.")
    headers = {"Cache-Control": "private, max-age=31536000, immutable"}
    return FileResponse(path, headers=headers, filename=download,
                        content_disposition_type="attachment" if download else "inline")


# before Chainlit's catch-all page route, which would answer first
_server.router.routes.insert(0, APIRoute(f"{FILES_ROUTE}/{{name}}", _serve_file, methods=["GET"]))


def publish(picture: Any) -> str:
    """A picture (a path, PNG bytes or a PIL image) in the chat's file store; returns its URL."""
    if isinstance(picture, PILImage.Image):
        picture = to_png_bytes(picture)
    if isinstance(picture, (bytes, bytearray)):
        return FileStore.url(files.put(bytes(picture), "image/png"))
    return FileStore.url(files.put_file(Path(picture)))


def thumbnail(path: str) -> str:
    """The URL of a small copy of the image at ``path`` (long side ``THUMB_SIDE``), made once per image."""
    url = _thumbs.get(path)
    if url is None:
        with PILImage.open(path) as im:
            small = im.convert("RGB")
            small.thumbnail((THUMB_SIDE, THUMB_SIDE))
        url = _thumbs[path] = publish(small)
    return url


def strip(versions: list[dict], shown: int) -> list[dict]:
    """The version strip's cards (``render.version_cards``) with thumbnails; ``shown``: the number of
    the version this photo is (marked), which is the one on screen when the photo was sent."""
    if len(versions) < 2:
        return []
    cards = render.version_cards(versions, shown)
    for card in cards:
        card["thumb"] = thumbnail(card.pop("path"))
    return cards


def image_element(picture: Any, alt: str, size: str = "medium") -> cl.Image:
    """An inline picture whose URL outlives the session (alt text = ``alt``)."""
    return cl.Image(name=alt, url=publish(picture), display="inline", size=size, mime="image/png")


# --- one browser tab's chat ------------------------------------------------------------------------

class Chat:
    """One tab's chat: its thread and panel, and the messages that carry buttons."""

    def __init__(self, thread: str, user: str, panel: Optional[dict] = None):
        self.thread, self.user = thread, user
        saved = panel or history.panel_for(user) or {}
        self.panel = PanelSettings.from_panel(saved, backend.defaults)
        self.session: Session = backend.session(self.thread, self.panel)
        self.lock = _thread_locks.setdefault(self.thread, asyncio.Lock())
        self.toolbar: Optional[cl.Message] = None
        self.question: Optional[cl.Message] = None
        self.question_picture: Optional[cl.CustomElement] = None  # its numbered picture, clickable while open
        self.noticed = False  # the offline-parser notice is said once per chat
        self.waiting: Optional[str] = None  # an instruction sent before any photo: run it on the first one
        self.announced = False  # see _announce

    # --- a turn -----------------------------------------------------------------------------

    async def turn(self, text: str, image: Optional[str] = None, *, image_name: Optional[str] = None,
                   echo: Optional[str] = None, note: Optional[str] = None, upload: Any = None,
                   goto: Optional[int] = None) -> None:
        """Send one message to the agent and show what came back; never raises.

        ``image``: a photo attached to the message (a file Chainlit stored); ``image_name`` is what
        the user called it; ``upload``: its element in the user's message (removed when it is not a
        picture); ``echo`` shows a button click as the user's message; ``goto``: a click on the
        version strip (``Session.select_version``) instead of a message.
        """
        try:
            await self.lock.acquire()
        except asyncio.CancelledError:  # Stop while this message waited for the turn before it
            await cl.Message(content=replies.stopped("this message was not started")).send()
            return
        try:  # Stop stops the agent's turn (Chat.stop); the reply that says so is still shown
            await through_stop(self._turn(text, image, image_name=image_name, echo=echo, note=note,
                                          upload=upload, goto=goto), self.stop)
        finally:
            self.lock.release()

    async def _turn(self, text: str, image: Optional[str], *, image_name: Optional[str], echo: Optional[str],
                    note: Optional[str], upload: Any, goto: Optional[int]) -> None:
        """One turn under the chat's lock (see ``turn``)."""
        await cl.context.emitter.task_start()
        try:
            if echo:
                await cl.Message(content=echo, type="user_message").send()
            if image and not text.strip() and self.waiting:  # "make it winter", then the photo
                text, note = self.waiting, f"Running what you asked before the photo came: *{self.waiting}*"
                self.waiting = None
            pointed = await asyncio.to_thread(Pointer(self.session).typed, text) if not image and goto is None \
                else None
            if pointed is not None:
                await self._pointed(pointed)
                return
            had_photo = bool(await asyncio.to_thread(self.session.versions))
            reply, state, ran = await self._run(text, image, goto)
            if reply.error and image and image_name:  # name the file as the user knows it
                reply.text = reply.text.replace(image, image_name)
            if upload is not None:
                await self._label_upload(upload, image_name or "", broken=reply.error)
            if not had_photo and not image and reply.text.startswith(UPLOAD_FIRST) and text.strip():
                self.waiting = text.strip()
                reply.text = (f"Drop a photo here (or use the clip button) and I will do that on it: "
                              f"*{_md(self.waiting)}*.")
            await self._show(reply, state, ran, note, uploaded=image is not None)
            await self._name_thread(text, reply)
            await self._announce()
        except Exception as err:  # noqa: BLE001 - the chat must keep going
            await _sorry(err)
        finally:
            await cl.context.emitter.task_end()

    def stop(self) -> bool:
        """The Stop button: the running turn stops at its next diffusion step (or at once while it
        waits for the LLM or a vision call); it makes no version and its reply says it was stopped.
        Whether a turn was running."""
        return self.session.cancel()

    async def _run(self, text: str, image: Optional[str],
                   goto: Optional[int] = None) -> tuple[Reply, dict[str, Any], set[str]]:
        """``Session.send`` (or ``select_version``) in a worker thread, shown as one parent step with a
        nested step per stage."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def progress(event: dict) -> None:
            loop.call_soon_threadsafe(events.put_nowait, dict(event))

        def work() -> tuple[Reply, dict[str, Any]]:
            reply = self.session.select_version(goto, progress=progress) if goto is not None else \
                self.session.send(text, image=image, progress=progress)
            return reply, self.session.state()

        view = TurnView()
        await view.open()
        pumping = asyncio.create_task(view.pump(events))
        started = time.perf_counter()
        job = asyncio.ensure_future(asyncio.to_thread(work))
        try:
            reply, state = await job
        finally:
            await asyncio.sleep(0)  # let the last events in
            pumping.cancel()
        while not events.empty():
            await view.event(events.get_nowait())
        await view.close(reply, state, time.perf_counter() - started)
        return reply, state, view.ran

    async def _show(self, reply: Reply, state: dict[str, Any], ran: set[str], note: Optional[str] = None,
                    uploaded: bool = False) -> None:
        await self._retire_question()
        text = f"**Sorry:** {reply.text}" if reply.error else reply.text
        knobs = render.settings_line(self.panel, reply, state)
        if knobs:
            text += f"\n\n*{knobs}*"
        if note:
            text += f"\n\n*{note}*"
        if reply.notice and not self.noticed:
            text, self.noticed = f"*{reply.notice}*\n\n{text}", True
        if reply.question:
            await self._ask(text, reply.images.get("candidates"), reply.options, render.target_of(state))
        else:
            await self._answer(text, reply, state, uploaded and not reply.error)

    async def _answer(self, text: str, reply: Reply, state: dict[str, Any], uploaded: bool = False) -> None:
        """The reply: the edited (or current) photo as a PhotoPicker, and a before/after pair."""
        message = cl.Message(content=text)
        elements: list = []
        current = await asyncio.to_thread(self.session.current_image_path)
        shown = reply.images.get("edited") or reply.images.get("current") or (current if not reply.error else None)
        if reply.images.get("mask") and not reply.images.get("edited"):  # "show me the mask"
            elements.append(image_element(reply.images["mask"], render.alt("mask", target_of_last(state)), "large"))
        elif shown:
            kind = "edited" if reply.images.get("edited") else "uploaded" if uploaded else "current"
            elements.append(await self.picker(shown, message, kind))
        if reply.images.get("before_after"):
            elements.append(image_element(reply.images["before_after"], render.alt("before_after"), "large"))
        await self._with_toolbar(message, elements)

    async def picker(self, path: str, message: cl.Message, kind: str, status: str = "",
                     selection: Optional[dict] = None, shown: Optional[str] = None) -> cl.CustomElement:
        """The clickable photo for the image at ``path`` (``shown``: the picture drawn instead, e.g. with
        the selection tinted), its Download button naming the version."""
        versions = await asyncio.to_thread(self.session.versions)
        with PILImage.open(path) as im:
            width, height = im.size
        index = _index_of(versions, path)
        name = f"localedit-{self.thread[:8]}-v{index + 1}.png"
        url = publish(path)
        props = {"src": publish(shown) if shown else url, "alt": render.alt(kind), "width": width, "height": height,
                 "image": Path(path).name, "clickable": True, "points": (selection or {}).get("points") or [],
                 "status": status, "download": {"href": f"{url}?download={name}", "name": name},
                 "version": f"version {index + 1} of {len(versions)}" if versions else "", "message": message.id,
                 "versions": await asyncio.to_thread(strip, versions, index + 1)}
        element = cl.CustomElement(name="PhotoPicker", props=props, display="inline")
        element.props["element"] = element.id
        element.content = json.dumps(element.props)
        return element

    async def _ask(self, text: str, picture: Optional[str], options: list[str], target: str) -> None:
        """A clarifying question: the numbered picture, a button per candidate, "all" and "cancel"."""
        actions = [cl.Action(name="choose", payload={"answer": n}, label=n, tooltip=f"Edit candidate {n}")
                   for n in options]
        if len(options) > 1:
            actions.append(cl.Action(name="choose", payload={"answer": "all"}, label="All of them",
                                     tooltip="Edit every candidate"))
        actions.append(cl.Action(name="choose", payload={"answer": "cancel"}, label="Cancel",
                                 tooltip="Leave the photo as it is"))
        self.question = cl.Message(content=text + "\n\n*Click a number, or click the object in the picture.*",
                                   actions=actions)
        elements = []
        if picture:
            element = await self.picker(picture, self.question, "uploaded")
            element.props.update(alt=render.alt("candidates", target), download=None, version="", versions=[])
            element.content = json.dumps(element.props)
            elements.append(element)
            self.question_picture = element
        await _send(self.question, elements)

    async def _retire_question(self) -> None:
        """The question is answered: its buttons go, and its picture is no longer clickable (no tools)."""
        if self.question is not None:
            await self.question.remove_actions()
            self.question = None
        if self.question_picture is not None:
            picture, self.question_picture = self.question_picture, None
            picture.props.update(clickable=False, points=[], status="")
            picture.content = json.dumps(picture.props)
            await picture.update()

    async def _with_toolbar(self, message: cl.Message, elements: Sequence = ()) -> None:
        """Send ``message``; when there is an image, the toolbar buttons move onto it."""
        has_image = bool(await asyncio.to_thread(self.session.versions))
        if has_image:
            message.actions = [cl.Action(name=name, payload={}, label=label, icon=icon, tooltip=tip)
                               for name, label, icon, tip in TOOLBAR]
            if self.toolbar is not None:
                await self.toolbar.remove_actions()
        await _send(message, elements)
        if has_image:
            self.toolbar = message

    async def _announce(self) -> None:
        """Once per tab: tell the page this chat is a thread (it then lists it and moves to its
        /thread/ address, so a reload reopens it). Chainlit does that itself only when the first
        message had text; a photo-only first message would leave the chat at "/"."""
        if not self.announced:
            self.announced = True
            name = await history.thread_name(self.thread)
            await cl.context.emitter.emit("first_interaction", {"interaction": name or "message", "thread_id": self.thread})

    @staticmethod
    async def _label_upload(upload: Any, name: str, broken: bool) -> None:
        """The photo in the user's message: removed when it is not a picture (no broken-image
        bubble), else given an alt text that says what it is."""
        if broken:
            await upload.remove()
            return
        upload.name = render.alt("uploaded") + (f" ({name})" if name else "")
        await upload.send(for_id=upload.for_id)  # the page shows the new name
        await history.create_element(upload)  # and so does the chat when it is reopened

    async def _name_thread(self, text: str, reply: Reply) -> None:
        """A thread the sidebar can tell apart: named after its first instruction ("New photo" until then)."""
        name = await history.thread_name(self.thread)
        new = text.strip()[:60] if (not name or name == NEW_PHOTO) and text.strip() and not reply.error else \
            NEW_PHOTO if not name and reply.images else None
        if new:
            await history.update_thread(self.thread, name=new)
            self.announced = False  # the sidebar shows the new name

    # --- pointing -----------------------------------------------------------------------------

    async def point(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A click on a PhotoPicker: select / refine, or answer the open question."""
        async with self.lock:
            current = await asyncio.to_thread(self.session.current_image_path)
            if payload.get("image") and (not current or Path(current).name != payload["image"]) \
                    and self.question is None:
                return await self._update_picker(payload, Pointed(
                    "This is an earlier picture: click the newest one (Undo / Redo change which one that is).",
                    error=True))
            pointer = Pointer(self.session)
            if payload.get("clear"):
                pointed = await asyncio.to_thread(pointer.clear)
            else:
                mode = payload.get("mode") if payload.get("mode") in ("select", "add", "remove") else "select"
                pointed = await asyncio.to_thread(pointer.click, float(payload["x"]), float(payload["y"]), mode)
        if pointed.answer is not None:
            await self.turn(pointed.answer, echo=f"Clicked candidate {pointed.answer}")
            return {"text": pointed.text}
        return await self._update_picker(payload, pointed)

    async def _update_picker(self, payload: dict[str, Any], pointed: Pointed) -> dict[str, Any]:
        """Show what the click did on the picture that was clicked (tinted selection, points, a sentence)."""
        current = await asyncio.to_thread(self.session.current_image_path)
        if not current or not payload.get("element") or not payload.get("message"):
            return {"text": pointed.text}
        message = cl.Message(content="", id=payload["message"])
        element = await self.picker(current, message, "selection" if pointed.selection else "current",
                                    status=pointed.text, selection=pointed.selection, shown=pointed.picture)
        if pointed.error:  # keep what was there: only the sentence changes
            selection = await asyncio.to_thread(self.session.selection)
            if selection and selection.get("base") == current:
                element = await self.picker(current, message, "selection", status=pointed.text, selection=selection)
        if pointed.selection:
            element.props["alt"] = render.alt("selection", pointed.selection.get("label") or "")
        element.id = payload["element"]
        element.props["element"] = element.id
        element.content = json.dumps(element.props)
        element.for_id = payload["message"]
        await element.update()
        return {"text": pointed.text, "error": pointed.error}

    async def _pointed(self, pointed: Pointed) -> None:
        """A typed selection ("select the cat on the left"): a reply with the selection on the photo."""
        message = cl.Message(content=("**Sorry:** " if pointed.error else "") + pointed.text)
        current = await asyncio.to_thread(self.session.current_image_path)
        elements = []
        if current and pointed.selection:
            element = await self.picker(current, message, "selection", selection=pointed.selection,
                                        shown=pointed.picture)
            element.props["alt"] = render.alt("selection", pointed.selection.get("label") or "")
            element.content = json.dumps(element.props)
            elements.append(element)
        await self._with_toolbar(message, elements)

    # --- other things a user does -----------------------------------------------------------

    async def greet_again(self) -> None:
        """A reopened chat: its history is on screen already; say where we are, with the live photo.

        This note is transient (not kept), so reopening a chat often adds nothing to it.
        """
        pending = await asyncio.to_thread(self.session.pending)
        if pending:
            await self._ask(f"(Still open) {pending['question']}", pending.get("image"),
                            pending.get("options") or [], "")
            return
        current = await asyncio.to_thread(self.session.current_image_path)
        if not current:
            return
        versions = await asyncio.to_thread(self.session.versions)
        message = cl.Message(content=f"Welcome back: we carry on where we left off, on "
                                     f"{_version_of(versions, current)}.", metadata={"transient": True})
        await self._with_toolbar(message, [await self.picker(current, message, "current")])

    async def change_settings(self, values: dict[str, Any]) -> None:
        panel = backend.defaults if values.get("reset") else PanelSettings.from_panel(values, self.panel)
        if panel != self.panel:
            self.panel = panel
            self.session = await asyncio.to_thread(backend.session, self.thread, panel)
            await asyncio.to_thread(history.save_panel, self.user, panel.model_dump())
        await cl.ChatSettings(_settings_widgets(panel)).send()
        await cl.Message(content=f"Settings for the next edits: {panel.describe()}.").send()


class TurnView:
    """The parent step of one turn and the stage steps nested in it (live, then with details)."""

    def __init__(self):
        caller = cl.context.current_step  # the message's run step: the turn's step sits before the reply
        self.parent = cl.Step(name="Working on it…", type="run", show_input=False, default_open=True,
                              auto_collapse=True, parent_id=caller.id if caller else None)
        self.stages: dict[str, cl.Step] = {}  # "understand", "ground", "segment", "edit:2", ...
        self.ran: set[str] = set()
        self.attempt = 0

    async def open(self) -> None:
        self.parent.start = utc_now()  # running: Chainlit keeps it open (auto_collapse closes it at its end)
        await self.parent.send()

    async def _end_stages(self) -> None:
        """Mark the stages still running as ended (they collapse; the next one is open)."""
        for step in self.stages.values():
            if step.end is None:
                step.end = utc_now()
                await step.update()

    async def pump(self, events: asyncio.Queue) -> None:
        while True:
            event = await events.get()
            while not events.empty() and "step" in event:  # only the newest progress when they come fast
                nxt = events.get_nowait()
                if "step" not in nxt:
                    await self.event(event)
                event = nxt
            await self.event(event)

    async def event(self, event: dict[str, Any]) -> None:
        node = event.get("node")
        if node is not None:
            self.ran.add(node)
        if node in render.STAGES and event.get("event") == "start":
            key = node
            if node == "edit":
                self.attempt += 1
                key = f"edit:{self.attempt}"
            if key not in self.stages:
                await self._end_stages()
                hint = {"plan": {"target": event["target"]}} if event.get("target") else None
                step = cl.Step(name=render.stage_title(node, hint, attempt=self.attempt, attempts=self.attempt),
                               type="tool", parent_id=self.parent.id, show_input=False, default_open=True,
                               auto_collapse=True)
                step.output, step.start = "…", utc_now()  # open while it runs: its progress shows
                self.stages[key] = step
                await step.send()
        elif "step" in event and "total" in event:
            step = self.stages.get(f"edit:{self.attempt}")
            if step is not None:
                step.name = render.stage_title("edit", attempt=event.get("attempt", self.attempt),
                                               attempts=event.get("attempts", self.attempt),
                                               editor=event.get("editor", ""))
                step.output = render.progress_text(event)
                await step.update()
        elif node in ("score", "judge") and event.get("event") == "start":
            step = self.stages.get(f"edit:{self.attempt}")
            if step is not None:
                step.output = "Scoring the result with CLIP…" if node == "score" else "Judging the result…"
                await step.update()

    async def close(self, reply: Reply, state: dict[str, Any], elapsed: float) -> None:
        """Details into each stage, the parent renamed for what happened."""
        for step in (*self.stages.values(), self.parent):
            step.end = step.end or utc_now()
        views = render.turn_steps(reply, state, self.ran)
        by_stage: dict[str, list[render.StepView]] = {}
        for view in views:
            by_stage.setdefault(view.stage, []).append(view)
        target = render.target_of(state)
        for key, step in self.stages.items():
            node = key.split(":")[0]
            parts = by_stage.pop(key, []) + (by_stage.pop(node, []) if node != "edit" else [])
            if node in ("ground", "segment") and target not in ("photo", "selected region"):
                step.name = render.stage_title(node, {"plan": {"target": target}})
            if node == "command":
                step.name = render.command_title(state)
            attempts = state.get("attempts") or []
            if node == "edit" and int(key.split(":")[1]) <= len(attempts):
                number = int(key.split(":")[1])
                step.name = render.stage_title("edit", attempt=number, attempts=len(attempts),
                                               editor=attempts[number - 1].get("editor", ""))
            await self._fill(step, parts, "Stopped here." if reply.error or reply.cancelled else "Done.")
        for stage, parts in by_stage.items():  # details of a stage that did not run here (an answer's boxes)
            step = cl.Step(name=parts[0].name, type="tool", parent_id=self.parent.id, show_input=False)
            await step.send()
            await self._fill(step, parts, "")
        self.parent.name = render.turn_title(reply, state, self.ran, elapsed)
        self.parent.output = ""
        await self.parent.update()


    @staticmethod
    async def _fill(step: cl.Step, parts: list[render.StepView], empty: str) -> None:
        """A stage's details: the views' text and pictures."""
        step.output = "\n\n".join(f"**{v.name}**\n\n{v.text}" if len(parts) > 1 else v.text for v in parts) or empty
        await step.update()
        for view in parts:
            for alt, picture in view.pictures:
                await image_element(picture, alt).send(for_id=step.id)


def target_of_last(state: dict[str, Any]) -> str:
    """What the edit of the version on screen changed ("cat"; "" for an uploaded photo)."""
    plan = (current_record(state) or {}).get("plan") or {}
    return plan.get("target") or ""


async def through_stop(work: Any, on_stop: Any) -> Any:
    """Await ``work`` to its end even when Stop cancels this task meanwhile (Chainlit cancels the
    message's task): each cancellation calls ``on_stop()`` instead, which tells the agent's turn to
    stop; that turn then ends within a diffusion step with a "Stopped" reply, which is shown."""
    job = asyncio.ensure_future(work)
    while True:
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            if job.cancelled():
                raise
            on_stop()
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()


async def _sorry(err: BaseException) -> None:
    """Tell the user something failed on our side (the details go to the log); the chat goes on."""
    log.error("chat: %s", err, exc_info=err)
    await cl.Message(content=f"**Sorry**, something went wrong on my side ({type(err).__name__}). "
                             f"Your images and our conversation are unchanged; please try again.").send()


def _index_of(versions: list[dict], path: str) -> int:
    """The place of the version showing ``path``: the one on screen if it does, else the newest that does."""
    if any(v["current"] and v["path"] == path for v in versions):
        return next(i for i, v in enumerate(versions) if v["current"])
    return next((i for i in range(len(versions) - 1, -1, -1) if versions[i]["path"] == path), 0)


def _version_of(versions: list[dict], path: str) -> str:
    i = _index_of(versions, path)
    return f"version {i + 1} of {len(versions)} ({versions[i]['note']})" if versions else "the original"


def _md(text: str) -> str:
    return text.replace("*", "\\*").replace("_", "\\_").replace("`", "'")


async def _send(message: cl.Message, elements: Sequence = ()) -> None:
    """Send ``message``, then its pictures one by one (so they show in this order)."""
    await message.send()
    for element in elements:
        if isinstance(element, cl.CustomElement):
            element.props["message"] = message.id
            element.content = json.dumps(element.props)
        await element.send(for_id=message.id)


def _settings_widgets(panel: PanelSettings) -> list:
    return [
        Select(id="editor", label="Editor", values=list(EDITORS), initial_value=panel.editor,
               description="auto: the editor that suits the action (ip2p-composite, inpaint, ...)"),
        Slider(id="strength", label="Strength (encoding ratio)", initial=panel.strength, min=0.05, max=1.0, step=0.05),
        Slider(id="steps", label="Diffusion steps", initial=panel.steps, min=1, max=MAX_STEPS, step=1),
        NumberInput(id="seed", label="Seed", initial=panel.seed),
        Switch(id="auto_retry", label="Retry poor results automatically", initial=panel.auto_retry),
        Slider(id="max_side", label="Max long side (px)", initial=panel.max_side, min=64, max=2048, step=64),
        Switch(id="reset", label="Restore the defaults", initial=False,
               description="Puts every setting above back to its default; then Confirm."),
    ]


def _chat() -> Chat:
    chat = cl.user_session.get("chat")
    if chat is None:
        raise RuntimeError("no chat in this session")
    return chat


def _user() -> str:
    user = cl.context.session.user
    return user.identifier if user is not None else LOCAL_USER


# --- Chainlit callbacks ----------------------------------------------------------------------

async def _open(thread: str, panel: Optional[dict] = None) -> Optional[Chat]:
    try:
        chat = await asyncio.to_thread(Chat, thread, _user(), panel)
    except Exception as err:  # noqa: BLE001
        log.exception("could not open the conversation")
        await cl.Message(content=f"**Sorry**, I could not open our conversation ({type(err).__name__}: {err}). "
                                 f"Check the data folder and reload the page.").send()
        return None
    cl.user_session.set("chat", chat)
    await cl.ChatSettings(_settings_widgets(chat.panel)).send()
    return chat


@cl.set_starters
async def starters(user=None, language=None) -> list[cl.Starter]:
    """Examples on an empty chat; one clicked before a photo runs on the photo that follows."""
    return [cl.Starter(label=label, message=message) for label, message in STARTERS]


@cl.on_chat_start
async def on_chat_start() -> None:
    await _open(cl.context.session.thread_id)


@cl.on_chat_resume
async def on_chat_resume(thread: dict) -> None:
    """A past chat reopened from the sidebar: Chainlit draws its history; the agent's thread carries on."""
    metadata = thread.get("metadata") or {}
    if isinstance(metadata, str):
        metadata = json.loads(metadata)
    chat = await _open(thread["id"], metadata.get("chat_settings"))
    if chat is not None:
        chat.announced = chat.noticed = True  # a thread already, and the notice was said when it began

        async def after_redraw() -> None:  # Chainlit redraws the thread right after this callback returns
            await asyncio.sleep(RESUME_DELAY)
            await chat.greet_again()

        asyncio.create_task(after_redraw())


@cl.on_message
async def on_message(message: cl.Message) -> None:
    files_in = [e for e in (message.elements or []) if getattr(e, "path", None)]
    note = f"I used the first of the {len(files_in)} files you attached." if len(files_in) > 1 else None
    first = files_in[0] if files_in else None
    await _chat().turn(message.content or "", image=first.path if first else None,
                       image_name=first.name if first else None, note=note, upload=first)


@cl.on_stop
async def on_stop() -> None:
    """The Stop button: the running turn stops (``Chat.stop``) and says so in its own reply, so
    Chainlit's generic "Task manually stopped." note is taken away again."""
    chat = cl.user_session.get("chat")
    if chat is not None:
        chat.stop()
    for message in reversed(chat_context.get()):
        if message.content == CHAINLIT_STOPPED and message.type == "assistant_message":
            await message.remove()
            break


@cl.on_settings_update
async def on_settings_update(values: dict[str, Any]) -> None:
    try:
        await _chat().change_settings(values)
    except Exception as err:  # noqa: BLE001
        await _sorry(err)


@cl.on_settings_edit
async def on_settings_edit(values: dict[str, Any]) -> None:
    """"Restore the defaults" switched on: the open panel shows the defaults at once."""
    if values.get("reset"):
        await cl.ChatSettings(_settings_widgets(backend.defaults)).send()


@cl.action_callback("point")
async def on_point(action: cl.Action) -> dict:
    try:
        return await _chat().point(action.payload)
    except Exception as err:  # noqa: BLE001
        await _sorry(err)
        return {"error": True}


@cl.action_callback("point_clear")
async def on_point_clear(action: cl.Action) -> dict:
    try:
        return await _chat().point({**action.payload, "clear": True})
    except Exception as err:  # noqa: BLE001
        await _sorry(err)
        return {"error": True}


@cl.action_callback("version")
async def on_version(action: cl.Action) -> dict:
    """A click on the version strip: that version goes on screen (like undo / redo; the next edit
    branches from it)."""
    try:
        number = int(action.payload.get("number"))
    except (TypeError, ValueError):
        return {"error": True}
    await _chat().turn("", goto=number, echo=f"Version {number}")
    return {}


@cl.action_callback("choose")
async def on_choose(action: cl.Action) -> None:
    await _chat().turn(str(action.payload.get("answer", "")), echo=action.label)


@cl.action_callback("undo")
async def on_undo(action: cl.Action) -> None:
    await _chat().turn("undo", echo="Undo")


@cl.action_callback("redo")
async def on_redo(action: cl.Action) -> None:
    await _chat().turn("redo", echo="Redo")


@cl.action_callback("show_mask")
async def on_show_mask(action: cl.Action) -> None:
    await _chat().turn("show me the mask", echo="Show the mask")
