"""The localedit chat, a Chainlit app. Start it with ``localedit chat`` (``chat_ui.launch``).

A turn: the user's text (and photo, dropped in or attached with the clip button) goes to the
agent's ``Session.send`` in a worker thread; diffusion progress comes back through an asyncio
queue into a live "Working" step; then the turn's work is shown as collapsible steps (caption,
plan, detections, mask, editor, scores, retries) and the reply with the edited photo and a
before/after pair. Questions come with the numbered-candidates picture and one button per
candidate; the newest reply carries undo / redo / download / show-mask buttons.

Persistence: each browser gets a random id cookie (``chat_ui.backend.BrowserCookie``); the id
maps to a conversation thread in ``$LOCALEDIT_DATA_DIR/chat_ui.sqlite`` and the thread's state
lives in the agent's SQLite checkpointer, so a reload or a server restart replays the
conversation. Chainlit's "New chat" button starts a new thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Any, Optional, Sequence

import chainlit as cl
from chainlit.input_widget import NumberInput, Select, Slider, Switch
from chainlit.server import app as _server

from agent.session import Reply, Session
from chat_ui import render
from chat_ui.backend import (EDITORS, Backend, BrowserCookie, PanelSettings, browser_from_cookie_header,
                             get_backend, new_id)

log = logging.getLogger("localedit.chat")
_server.add_middleware(BrowserCookie)

WELCOME = ("Hi! I edit photos locally. **Drop a photo here** (or use the clip button), then tell me what to change, "
           "for example *\"turn the leftmost cat into a fox\"*, *\"make the car red\"*, *\"remove the lamp\"* or "
           "*\"make it look like winter\"*. Follow-ups like *\"now make it red\"* edit the last result; "
           "the buttons under my replies undo, redo, download the image or show the edited region. "
           "The settings panel (next to the message box) picks the editor, strength, steps and seed.")
REPLAY_LIMIT = 40  # messages shown again when a conversation is resumed
TOOLBAR = (("undo", "Undo", "undo-2"), ("redo", "Redo", "redo-2"),
           ("download", "Download", "download"), ("show_mask", "Show mask", "eye"))
_thread_locks: "weakref.WeakValueDictionary[str, asyncio.Lock]" = weakref.WeakValueDictionary()


class Chat:
    """One browser tab's chat: its thread and panel, and the messages that carry buttons."""

    def __init__(self, backend: Backend, browser: str):
        self.backend, self.browser = backend, browser
        self.thread = backend.threads.thread_for(browser)
        self.panel = PanelSettings.from_panel(backend.threads.panel_for(browser) or {}, backend.defaults)
        self.session: Session = backend.session(self.thread, self.panel)
        self.lock = _thread_locks.setdefault(self.thread, asyncio.Lock())
        self.toolbar: Optional[cl.Message] = None
        self.question: Optional[cl.Message] = None
        self.noticed = False  # the offline-parser notice is said once per chat

    # --- a turn -----------------------------------------------------------------------------

    async def turn(self, text: str, image: Optional[str] = None, *, image_name: Optional[str] = None,
                   echo: Optional[str] = None, note: Optional[str] = None) -> None:
        """Send one message to the agent and show what came back; never raises.

        ``image``: a photo attached to the message (a file Chainlit stored); ``image_name`` is what
        the user called it; ``echo`` shows a button click as the user's message.
        """
        async with self.lock:
            await cl.context.emitter.task_start()
            try:
                if echo:
                    await cl.Message(content=echo, type="user_message").send()
                reply, state = await self._run(text, image)
                if reply.error and image and image_name:  # name the file as the user knows it
                    reply.text = reply.text.replace(image, image_name)
                await self._show(reply, state, note, uploaded=image is not None)
            except Exception as err:  # noqa: BLE001 - the chat must keep going
                await _sorry(err)
            finally:
                await cl.context.emitter.task_end()

    async def _run(self, text: str, image: Optional[str]) -> tuple[Reply, dict[str, Any]]:
        """``Session.send`` in a worker thread, its progress events shown live in a step."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def work() -> tuple[Reply, dict[str, Any]]:
            reply = self.session.send(text, image=image,
                                      progress=lambda e: loop.call_soon_threadsafe(events.put_nowait, dict(e)))
            return reply, self.session.state()

        # open while it runs (the progress shows), folded when done
        async with cl.Step(name="Agent", type="run", show_input=False, default_open=True, auto_collapse=True) as step:
            step.output = "Reading your message..."
            await step.update()

            async def pump() -> None:
                while True:
                    event = await events.get()
                    while not events.empty():  # show only the newest when they come fast
                        event = events.get_nowait()
                    if "step" in event and "total" in event:
                        step.output = (f"Editing with {event.get('editor', 'the editor')}: "
                                       f"step {event['step']}/{event['total']}")
                        await step.update()

            started = time.perf_counter()
            pumping = asyncio.create_task(pump())
            try:
                reply, state = await asyncio.to_thread(work)
            finally:
                pumping.cancel()
            step.output = f"Done in {time.perf_counter() - started:.1f} s."
        return reply, state

    async def _show(self, reply: Reply, state: dict[str, Any], note: Optional[str] = None,
                    uploaded: bool = False) -> None:
        await self._retire_question()
        for view in render.turn_steps(reply, state):
            await _send_step(view)
        text = f"**Sorry:** {reply.text}" if reply.error else reply.text
        if note:
            text += f"\n\n*{note}*"
        if reply.notice and not self.noticed:
            text, self.noticed = f"*{reply.notice}*\n\n{text}", True
        if reply.question:
            await self._ask(text, reply.images.get("candidates"), reply.options)
        else:
            await self._answer(text, reply, uploaded and not reply.error)

    async def _answer(self, text: str, reply: Reply, uploaded: bool = False) -> None:
        """The reply: edited photo and before/after; else the current image (not right after its upload)."""
        if reply.images.get("edited"):
            shown = [("edited", "large"), ("before_after", "large")]
        else:
            shown = [("mask", "large")] + ([] if uploaded else [("current", "medium")])
        elements = [cl.Image(name=name.replace("_", " / "), path=reply.images[name], display="inline", size=size)
                    for name, size in shown if reply.images.get(name)]
        await self._with_toolbar(cl.Message(content=text), elements)

    async def _ask(self, text: str, picture: Optional[str], options: list[str]) -> None:
        """A clarifying question: the numbered picture, a button per candidate, "all" and "cancel"."""
        actions = [cl.Action(name="choose", payload={"answer": n}, label=n, tooltip=f"Edit candidate {n}")
                   for n in options]
        if len(options) > 1:
            actions.append(cl.Action(name="choose", payload={"answer": "all"}, label="All of them"))
        actions.append(cl.Action(name="choose", payload={"answer": "cancel"}, label="Cancel"))
        elements = [cl.Image(name="candidates", path=picture, display="inline", size="large")] if picture else []
        self.question = cl.Message(content=text, actions=actions)
        await _send(self.question, elements)

    async def _retire_question(self) -> None:
        if self.question is not None:
            await self.question.remove_actions()
            self.question = None

    async def _with_toolbar(self, message: cl.Message, elements: Sequence[cl.Image] = ()) -> None:
        """Send ``message``; when there is an image, the toolbar buttons move onto it."""
        has_image = bool(await asyncio.to_thread(self.session.versions))
        if has_image:
            message.actions = [cl.Action(name=name, payload={}, label=label, icon=icon) for name, label, icon in TOOLBAR]
            if self.toolbar is not None:
                await self.toolbar.remove_actions()
        await _send(message, elements)
        if has_image:
            self.toolbar = message

    # --- other things a user does -----------------------------------------------------------

    async def greet(self) -> None:
        """A new chat gets the welcome; a known browser gets its conversation back."""
        history = await asyncio.to_thread(self.session.history)
        if not history:
            await cl.Message(content=WELCOME).send()
            return
        self.noticed = True  # said when the conversation began
        for item in history[-REPLAY_LIMIT:]:
            user = item.get("role") == "user"
            image = item.get("image")
            elements = [cl.Image(name="photo" if user else "image", path=image, display="inline",
                                 size="small" if user else "medium")] if image else []
            await _send(cl.Message(content=item.get("text") or "",
                                   type="user_message" if user else "assistant_message"), elements)
        pending = await asyncio.to_thread(self.session.pending)
        if pending:
            await self._ask(f"(Still open) {pending['question']}", pending.get("image"), pending.get("options") or [])
            return
        versions = await asyncio.to_thread(self.session.versions)
        current = await asyncio.to_thread(self.session.current_image_path)
        text = ("Welcome back: we carry on where we left off." +
                (f" This is the current image ({_version_of(versions, current)})." if current else ""))
        elements = [cl.Image(name="current", path=current, display="inline", size="medium")] if current else []
        await self._with_toolbar(cl.Message(content=text), elements)

    async def download(self) -> None:
        versions = await asyncio.to_thread(self.session.versions)
        current = await asyncio.to_thread(self.session.current_image_path)
        if not current:
            await cl.Message(content="There is nothing to download yet: drop a photo in first.").send()
            return
        name = f"localedit-{self.thread}-v{_index_of(versions, current) + 1}.png"
        await cl.Message(content=f"Here is the current image ({_version_of(versions, current)}).",
                         elements=[cl.File(name=name, path=current, mime="image/png", display="inline")]).send()

    async def change_settings(self, values: dict[str, Any]) -> None:
        panel = PanelSettings.from_panel(values, self.panel)
        if panel != self.panel:
            self.panel = panel
            self.session = await asyncio.to_thread(self.backend.session, self.thread, panel)
            await asyncio.to_thread(self.backend.threads.save_panel, self.browser, panel)
        await cl.Message(content=f"Settings for the next edits: {panel.describe()}.").send()


async def _sorry(err: BaseException) -> None:
    """Tell the user something failed on our side (the details go to the log); the chat goes on."""
    log.error("chat: %s", err, exc_info=err)
    await cl.Message(content=f"**Sorry**, something went wrong on my side ({type(err).__name__}). "
                             f"Your images and our conversation are unchanged; please try again.").send()


def _index_of(versions: list[dict], path: str) -> int:
    return next((i for i in range(len(versions) - 1, -1, -1) if versions[i]["path"] == path), 0)


def _version_of(versions: list[dict], path: str) -> str:
    i = _index_of(versions, path)
    return f"version {i + 1} of {len(versions)}, {versions[i]['note']}" if versions else "the original"


async def _send(message: cl.Message, elements: Sequence[cl.Image] = ()) -> None:
    """Send ``message``, then its pictures one by one (so they show in this order)."""
    await message.send()
    for element in elements:
        await element.send(for_id=message.id)


async def _send_step(view: render.StepView) -> None:
    elements = [cl.Image(name=name, display="inline", size="medium",
                         **({"content": pic, "mime": "image/png"} if isinstance(pic, bytes) else {"path": pic}))
                for name, pic in view.pictures]
    parent = cl.context.current_step  # the running callback: keeps the steps before the reply
    step = cl.Step(name=view.name, type="tool", show_input=False, elements=elements,
                   parent_id=parent.id if parent else None)
    step.output = view.text
    await step.send()


def _settings_widgets(panel: PanelSettings) -> list:
    return [
        Select(id="editor", label="Editor", values=list(EDITORS), initial_value=panel.editor,
               description="auto: the editor that suits the action (ip2p-composite, inpaint, ...)"),
        Slider(id="strength", label="Strength (encoding ratio)", initial=panel.strength, min=0.05, max=1.0, step=0.05),
        Slider(id="steps", label="Diffusion steps", initial=panel.steps, min=1, max=max(100, panel.steps), step=1),
        NumberInput(id="seed", label="Seed", initial=panel.seed),
        Switch(id="auto_retry", label="Retry poor results automatically", initial=panel.auto_retry),
        Slider(id="max_side", label="Max long side (px)", initial=panel.max_side, min=64, max=2048, step=64),
    ]


def _chat() -> Chat:
    chat = cl.user_session.get("chat")
    if chat is None:
        raise RuntimeError("no chat in this session")
    return chat


def _browser() -> str:
    """The browser's id from its cookie (a throwaway id when it sends none: nothing persists then)."""
    environ = getattr(cl.context.session, "environ", None) or {}
    return browser_from_cookie_header(environ.get("HTTP_COOKIE")) or new_id()


# --- Chainlit callbacks ----------------------------------------------------------------------

@cl.on_chat_start
async def on_chat_start() -> None:
    try:
        chat = await asyncio.to_thread(Chat, get_backend(), _browser())
    except Exception as err:  # noqa: BLE001
        log.exception("could not open the conversation")
        await cl.Message(content=f"**Sorry**, I could not open our conversation ({type(err).__name__}: {err}). "
                                 f"Check the data folder and reload the page.").send()
        return
    cl.user_session.set("chat", chat)
    await cl.ChatSettings(_settings_widgets(chat.panel)).send()
    await chat.greet()


@cl.on_chat_end
async def on_chat_end() -> None:
    chat = cl.user_session.get("chat")
    if chat is not None and getattr(cl.context.session, "to_clear", False):  # the "New chat" button
        await asyncio.to_thread(chat.backend.threads.new_thread, chat.browser)


@cl.on_message
async def on_message(message: cl.Message) -> None:
    files = [e for e in (message.elements or []) if getattr(e, "path", None)]
    note = f"I used the first of the {len(files)} files you attached." if len(files) > 1 else None
    await _chat().turn(message.content or "", image=files[0].path if files else None,
                       image_name=files[0].name if files else None, note=note)


@cl.on_settings_update
async def on_settings_update(values: dict[str, Any]) -> None:
    try:
        await _chat().change_settings(values)
    except Exception as err:  # noqa: BLE001
        await _sorry(err)


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


@cl.action_callback("download")
async def on_download(action: cl.Action) -> None:
    try:
        await _chat().download()
    except Exception as err:  # noqa: BLE001
        await _sorry(err)
