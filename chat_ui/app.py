"""The localedit chat, a Chainlit app. Start it with ``localedit chat`` (``chat_ui.launch``).

This module wires the app: who may use it, where pictures are served, and Chainlit's callbacks,
each handing over to the tab's ``chat_ui.chat.Chat``. The parts, by job:

* ``chat_ui.chat``: a turn (the user's text and photo to the agent's ``Session.send``), the short
  reply, questions, pointing, settings;
* ``chat_ui.turnview``: the turn as one parent step with its stages nested inside, live while they
  run (and the models loading, on a cold start), with the details when done (``chat_ui.render``);
* ``chat_ui.panel``: the photo being edited, in Chainlit's side panel: the one live photo (a click
  selects the object under it, ``PhotoPicker.jsx``), Undo / Redo / Show mask where they can act,
  Download, and the version strip; the conversation keeps small thumbnails (``Thumb.jsx``);
* ``chat_ui.uploads``: an attachment checked before it is used;
* ``chat_ui.services``: the backend, the chat history (SQLite, ``chat_ui.history``) and its files.

Stop (``on_stop``) calls ``Session.cancel()``: the edit ends at its next diffusion step and its
"Stopped" reply is shown. Past conversations are listed in the sidebar and a reopened chat is drawn
as it was, and carries on (a Chainlit thread id is the agent's thread id). On loopback the browser
is signed in as the local user without a login; elsewhere a password is asked (``chat_ui.access``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any, Optional

import chainlit as cl
from chainlit.auth import get_current_user
from chainlit.chat_context import chat_context
from chainlit.input_widget import NumberInput, Select, Slider, Switch
from chainlit.server import app as _server
from fastapi import Depends, HTTPException
from fastapi.responses import FileResponse
from fastapi.routing import APIRoute

from chat_ui.access import LOCAL_USER, Guard, LoginThrottle, check_password, password_mode
from chat_ui.backend import EDITORS, PanelSettings
from chat_ui.chat import Chat, sorry
from chat_ui.history import FILES_ROUTE, SQLiteDataLayer
from chat_ui.page import LocalPage
from chat_ui.services import backend, files, history

log = logging.getLogger("localedit.chat")

STARTERS = (("Turn the cat into a fox", "turn the cat into a fox"), ("Make the car red", "make the car red"),
            ("Remove the lamp", "remove the lamp"), ("Make it look like winter", "make it look like winter"))
CHAINLIT_STOPPED = "Task manually stopped."  # what Chainlit itself posts on Stop (chainlit.socket.stop)
RESUME_DELAY = 0.3  # seconds: the "welcome back" note follows Chainlit's redraw of a reopened thread
DOWNLOAD_NAME = re.compile(r"^[\w.-]{1,80}\.png$")
MAX_STEPS = 200  # the steps slider's end (PanelSettings.steps allows up to 200)


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


# --- the tab's chat --------------------------------------------------------------------------

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


# --- Chainlit callbacks ----------------------------------------------------------------------

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
                       image_name=first.name if first else None, note=note, upload=first, message=message)


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
        await _chat().change_settings(values, _settings_widgets)
    except Exception as err:  # noqa: BLE001
        await sorry(err)


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
        await sorry(err)
        return {"error": True}


@cl.action_callback("point_clear")
async def on_point_clear(action: cl.Action) -> dict:
    try:
        return await _chat().point({**action.payload, "clear": True})
    except Exception as err:  # noqa: BLE001
        await sorry(err)
        return {"error": True}


@cl.action_callback("open_panel")
async def on_open_panel(action: cl.Action) -> dict:
    """A click on a thumbnail in the conversation: the photo panel opens again (after the user closed it)."""
    return {"shown": await _chat().side.again()}


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
async def on_undo(action: cl.Action) -> dict:
    await _chat().turn("undo", echo="Undo")
    return {}


@cl.action_callback("redo")
async def on_redo(action: cl.Action) -> dict:
    await _chat().turn("redo", echo="Redo")
    return {}


@cl.action_callback("show_mask")
async def on_show_mask(action: cl.Action) -> dict:
    await _chat().turn("show me the mask", echo="Show the mask")
    return {}
