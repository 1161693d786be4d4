"""One browser tab's chat: a turn (``Chat.turn``), the reply, questions, pointing, settings.

A turn: the user's text (and photo) goes to the agent's ``Session.send`` in a worker thread, shown
as one parent step with its stages (``chat_ui.turnview``). The reply is short: its sentence and a
small picture (``panel.thumb``); the photo being edited, with its tools and the version strip, is
in the side panel (``chat_ui.panel``), the one live photo of the chat. Details (knobs, scores,
attempts, before/after) are in the turn's steps. An attachment is checked before it is used
(``chat_ui.uploads``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from typing import Any, Optional, Sequence

import chainlit as cl

from agent.conversation import replies
from agent.conversation.pointing import Pointed, Pointer
from agent.conversation.state import current_record
from agent.runtime.session import Reply, Session
from chat_ui import render, uploads
from chat_ui.backend import PanelSettings
from chat_ui.panel import Panel, thumb
from chat_ui.render import index_of
from chat_ui.services import backend, history
from chat_ui.turnview import TurnView, listen_for_loading

log = logging.getLogger("localedit.chat")

NEW_PHOTO = "New photo"  # a thread's name until its first instruction
UPLOAD_FIRST = "Please upload a photo first"  # what the agent says to an instruction without a photo
_thread_locks: "weakref.WeakValueDictionary[str, asyncio.Lock]" = weakref.WeakValueDictionary()


class Chat:
    """One tab's chat: its thread, settings panel values, side panel, and an open question."""

    def __init__(self, thread: str, user: str, panel: Optional[dict] = None):
        self.thread, self.user = thread, user
        saved = panel or history.panel_for(user) or {}
        self.panel = PanelSettings.from_panel(saved, backend.defaults)
        self.session: Session = backend.session(self.thread, self.panel)
        self.side = Panel(self)
        self.lock = _thread_locks.setdefault(self.thread, asyncio.Lock())
        self.question: Optional[cl.Message] = None
        self.noticed = False  # the offline-parser notice is said once per chat
        self.waiting: Optional[str] = None  # an instruction sent before any photo: run it on the first one
        self.announced = False  # see _announce

    # --- a turn -----------------------------------------------------------------------------

    async def turn(self, text: str, image: Optional[str] = None, *, image_name: Optional[str] = None,
                   echo: Optional[str] = None, note: Optional[str] = None, upload: Any = None,
                   message: Optional[cl.Message] = None, goto: Optional[int] = None) -> None:
        """Send one message to the agent and show what came back; never raises.

        ``image``: a photo attached to the message (a file Chainlit stored); ``image_name`` is what
        the user called it; ``upload``: its element in the user's ``message``; ``echo`` shows a
        button click as the user's message; ``goto``: a click on the version strip
        (``Session.select_version``) instead of a message.
        """
        try:
            await self.lock.acquire()
        except asyncio.CancelledError:  # Stop while this message waited for the turn before it
            await cl.Message(content=replies.stopped("this message was not started")).send()
            return
        try:  # Stop stops the agent's turn (Chat.stop); the reply that says so is still shown
            await through_stop(self._turn(text, image, image_name=image_name, echo=echo, note=note,
                                          upload=upload, message=message, goto=goto), self.stop)
        finally:
            self.lock.release()

    async def _turn(self, text: str, image: Optional[str], *, image_name: Optional[str], echo: Optional[str],
                    note: Optional[str], upload: Any, message: Optional[cl.Message], goto: Optional[int]) -> None:
        """One turn under the chat's lock (see ``turn``)."""
        await cl.context.emitter.task_start()
        try:
            if echo:
                await cl.Message(content=echo, type="user_message").send()
            if image:
                why = await asyncio.to_thread(uploads.problem, image, image_name or "")
                if why:
                    await self._refused(why, text, upload, message, image_name or "")
                    return
            if text.strip() and not image:
                self.waiting = None  # a new instruction: what waited for a photo is superseded
            if image and not text.strip() and self.waiting:  # "make it winter", then the photo
                text, note = self.waiting, f"Running what you asked before the photo came: *{_md(self.waiting)}*"
                self.waiting = None
            had_photo = bool(await asyncio.to_thread(self.session.versions))
            reply, state, ran = await self._run(text, image, goto)
            if _result_kind(state) == "point":  # "select the cat on the left": the graph's point node ran
                await self._pointed(Pointed(reply.text, selection=None if reply.error else state.get("selection"),
                                            picture=reply.images.get("selection"), error=reply.error))
                return
            if reply.error and image and image_name:  # name the file as the user knows it
                reply.text = reply.text.replace(image, image_name)
            if upload is not None:
                if reply.error:
                    await uploads.refuse(upload, message, image_name or "", reply.text)
                else:
                    await uploads.label(upload, image_name or "")
            if not had_photo and not image and reply.text.startswith(UPLOAD_FIRST) and text.strip():
                self.waiting = text.strip()
                reply.text = (f"Drop a photo here (or use the clip button) and I will do that on it: "
                              f"*{_md(self.waiting)}*.")
            await self._show(reply, state, note, uploaded=image is not None)
            await self._name_thread(text, reply)
            await self._announce()
        except Exception as err:  # noqa: BLE001 - the chat must keep going
            await sorry(err)
        finally:
            await cl.context.emitter.task_end()

    async def _refused(self, why: str, text: str, upload: Any, message: Optional[cl.Message], name: str) -> None:
        """An attachment that is not a picture: one sentence; nothing runs; an instruction (this
        message's, or one that waited for a photo) keeps waiting for the next photo."""
        await uploads.refuse(upload, message, name, why)
        if text.strip():
            self.waiting = text.strip()
        content = f"**Sorry:** {why}"
        if self.waiting:
            content += f"\n\n*Send a photo and I will do what you asked: {_md(self.waiting)}*"
        await cl.Message(content=content).send()
        await self._announce()

    def stop(self) -> bool:
        """The Stop button: the running turn stops at its next diffusion step (or at once while it
        waits for the LLM or a vision call); it makes no version and its reply says it was stopped.
        Whether a turn was running."""
        return self.session.cancel()

    async def _run(self, text: str, image: Optional[str],
                   goto: Optional[int] = None) -> tuple[Reply, dict[str, Any], set[str]]:
        """``Session.send`` (or ``select_version``) in a worker thread, shown as one parent step with a
        nested step per stage (and the models loading, on a cold start)."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def progress(event: dict) -> None:
            loop.call_soon_threadsafe(events.put_nowait, dict(event))

        def work() -> tuple[Reply, dict[str, Any]]:
            reply = self.session.select_version(goto, progress=progress) if goto is not None else \
                self.session.send(text, image=image, progress=progress)
            return reply, reply.state or self.session.state()  # the reply carries the state it was read with

        view = TurnView()
        await view.open()
        pumping = asyncio.create_task(view.pump(events))
        started = time.perf_counter()
        unlisten = listen_for_loading(progress)
        try:
            reply, state = await asyncio.ensure_future(asyncio.to_thread(work))
        finally:
            unlisten()
            await asyncio.sleep(0)  # let the last events in
            pumping.cancel()
        while not events.empty():
            await view.event(events.get_nowait())
        await view.close(reply, state, time.perf_counter() - started, render.turn_details(self.panel, reply, state))
        return reply, state, view.ran

    # --- what the user sees of it ------------------------------------------------------------

    async def _show(self, reply: Reply, state: dict[str, Any], note: Optional[str] = None,
                    uploaded: bool = False) -> None:
        await self._retire_question()
        text = f"**Sorry:** {reply.text}" if reply.error else reply.text
        if note:
            text += f"\n\n*{note}*"
        if reply.notice and not self.noticed:
            text, self.noticed = f"*{reply.notice}*\n\n{text}", True
        if reply.question:
            await self._ask(text, reply.images.get("candidates"), reply.options, render.target_of(state))
        else:
            await self._answer(text, reply, state, uploaded and not reply.error)

    async def _answer(self, text: str, reply: Reply, state: dict[str, Any], uploaded: bool = False) -> None:
        """The reply: its text and a small picture of what it made; the photo goes to the panel."""
        message = cl.Message(content=text)
        elements: list = []
        current = await asyncio.to_thread(self.session.current_image_path)
        shown = reply.images.get("edited") or reply.images.get("current") or (current if not reply.error else None)
        if reply.images.get("mask") and not reply.images.get("edited"):  # "show me the mask"
            mask_alt = render.alt("mask", target_of_last(state))
            elements.append(thumb(reply.images["mask"], mask_alt))
            if current:
                await self.side.show(current, "current", shown=reply.images["mask"], alt=mask_alt)
        elif shown:
            kind = "edited" if reply.images.get("edited") else "uploaded" if uploaded else "current"
            before = self.side.last or {}
            if kind != "current" or before.get("path") != shown or before.get("shown") or before.get("question"):
                elements.append(await self._thumb(shown, kind))  # a new picture on screen: its record here
            await self.side.show(shown, kind)
        elif current and self.side.question:  # the question went (cancelled): the photo comes back
            await self.side.show(current, "current")
        await _send(message, elements)

    async def _thumb(self, path: str, kind: str) -> cl.CustomElement:
        """The small picture of the version at ``path`` for the conversation, labelled "v3"."""
        versions = await asyncio.to_thread(self.session.versions)
        return thumb(path, render.alt(kind), f"v{index_of(versions, path) + 1}" if versions else "")

    async def _ask(self, text: str, picture: Optional[str], options: list[str], target: str) -> None:
        """A clarifying question: a button per candidate, "all" and "cancel"; the numbered picture in
        the panel, where a click on a candidate answers too."""
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
            numbered = render.alt("candidates", target)
            elements.append(thumb(picture, numbered))
            await self.side.show(picture, "current", alt=numbered, question=True)
        await _send(self.question, elements)

    async def _retire_question(self) -> None:
        """The question is answered: its buttons go (its picture leaves the panel with the reply)."""
        if self.question is not None:
            await self.question.remove_actions()
            self.question = None

    async def _announce(self) -> None:
        """Once per tab: tell the page this chat is a thread (it then lists it and moves to its
        /thread/ address, so a reload reopens it). Chainlit does that itself only when the first
        message had text; a photo-only first message would leave the chat at "/"."""
        if not self.announced:
            self.announced = True
            name = await history.thread_name(self.thread)
            await cl.context.emitter.emit("first_interaction", {"interaction": name or "message", "thread_id": self.thread})

    async def _name_thread(self, text: str, reply: Reply) -> None:
        """A thread the sidebar can tell apart: named after its first instruction ("New photo" until
        then; ``history`` numbers a name another chat of the user has)."""
        name = await history.thread_name(self.thread)
        placeholder = not name or name.endswith(NEW_PHOTO)  # "New photo", or "(2) New photo" beside another
        new = text.strip()[:60] if placeholder and text.strip() and not reply.error \
            else NEW_PHOTO if not name and reply.images else None
        if new:
            await history.update_thread(self.thread, name=new)
            self.announced = False  # the sidebar shows the new name

    # --- pointing -----------------------------------------------------------------------------

    async def point(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A click on the panel's photo: select / refine, or answer the open question."""
        async with self.lock:
            current = await asyncio.to_thread(self.session.current_image_path)
            if payload.get("image") and (not current or current.rsplit("/", 1)[-1] != payload["image"]) \
                    and self.question is None:
                return {"text": "This picture is not the one on screen any more.", "error": True}
            pointer = Pointer(self.session)
            if payload.get("clear"):
                pointed = await asyncio.to_thread(pointer.clear)
            else:
                mode = payload.get("mode") if payload.get("mode") in ("select", "add", "remove") else "select"
                pointed = await asyncio.to_thread(pointer.click, float(payload["x"]), float(payload["y"]), mode)
        if pointed.answer is not None:
            await self.turn(pointed.answer, echo=f"Clicked candidate {pointed.answer}")
            return {"text": pointed.text}
        await self._show_pointed(pointed)
        return {"text": pointed.text, "error": pointed.error}

    async def _show_pointed(self, pointed: Pointed) -> None:
        """What a click or a typed selection did, on the panel's photo (tinted selection, points, a sentence)."""
        current = await asyncio.to_thread(self.session.current_image_path)
        if not current:
            return
        selection, shown = pointed.selection, pointed.picture
        if pointed.error:  # keep what was there: only the sentence changes
            kept = await asyncio.to_thread(self.session.selection)
            selection, shown = (kept, None) if kept and kept.get("base") == current else (None, None)
        alt = render.alt("selection", selection.get("label") or "") if selection else None
        await self.side.show(current, "selection" if selection else "current", status=pointed.text,
                             selection=selection, shown=shown, alt=alt)

    async def _pointed(self, pointed: Pointed) -> None:
        """A typed selection ("select the cat on the left"): a short reply; the selection in the panel."""
        await cl.Message(content=("**Sorry:** " if pointed.error else "") + pointed.text).send()
        if pointed.selection or not pointed.error:
            await self._show_pointed(pointed)

    # --- other things a user does -----------------------------------------------------------

    async def greet_again(self) -> None:
        """A reopened chat: its history is on screen already; say where we are, the photo in the panel.

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
        i = index_of(versions, current)
        where = f"version {i + 1} ({versions[i]['note']})" if versions else "the original"
        await _send(cl.Message(content=f"Welcome back: we carry on where we left off, on {where}.",
                               metadata={"transient": True}), [await self._thumb(current, "current")])
        await self.side.show(current, "current")

    async def change_settings(self, values: dict[str, Any], widgets: Any) -> None:
        """The settings panel's Confirm: new values for the next edits (``widgets(panel)``: its inputs)."""
        panel = backend.defaults if values.get("reset") else PanelSettings.from_panel(values, self.panel)
        if panel != self.panel:
            self.panel = panel
            self.session = await asyncio.to_thread(backend.session, self.thread, panel)
            await asyncio.to_thread(history.save_panel, self.user, panel.model_dump())
        await cl.ChatSettings(widgets(panel)).send()
        await cl.Message(content=f"Settings for the next edits: {panel.describe()}.").send()


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


async def sorry(err: BaseException) -> None:
    """Tell the user something failed on our side (the details go to the log); the chat goes on."""
    log.error("chat: %s", err, exc_info=err)
    await cl.Message(content=f"**Sorry**, something went wrong on my side ({type(err).__name__}). "
                             f"Your images and our conversation are unchanged; please try again.").send()


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


def _result_kind(state: dict[str, Any]) -> Optional[str]:
    """What the turn's message was read as ("edit", "command", "point", ...), from the graph's state."""
    return ((state.get("understood") or {}).get("result") or {}).get("kind")
