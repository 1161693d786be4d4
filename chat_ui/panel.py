"""The photo being edited, in one place: Chainlit's side panel (``cl.ElementSidebar``).

The conversation only shows small pictures (:func:`thumb`: a ``Thumb`` custom element, no tools;
a click opens the panel again); the photo on screen, with its tools and the version strip, lives
in the panel, which each turn replaces (:meth:`Panel.show`). So there is one live photo: older
pictures keep no Select / Add a part buttons and no "version 1 of 1" labels, and Undo / Redo /
Show mask are offered only when they can do something (``render.tools_available``). On a phone the
panel is Chainlit's sheet over the chat (closed with its X; a thumbnail opens it again).

The panel's photo is a ``PhotoPicker`` (``public/elements/PhotoPicker.jsx``): a click selects the
object under it, Shift- / Alt-clicks refine, Download saves the version; while a question is open
it shows the numbered candidates and a click on one answers.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Optional

import chainlit as cl
from PIL import Image as PILImage

from chat_ui import render
from chat_ui.render import index_of, tools_available
from chat_ui.services import publish, thumbnail

def strip(versions: list[dict], shown: int) -> list[dict]:
    """The version strip's cards (``render.version_cards``) with thumbnails; ``shown``: the number of
    the version the panel shows (marked). No strip for a single version."""
    if len(versions) < 2:
        return []
    cards = render.version_cards(versions, shown)
    for card in cards:
        card["thumb"] = thumbnail(card.pop("path"))
    return cards


def thumb(picture: Any, alt: str, label: str = "") -> cl.CustomElement:
    """A small picture for the conversation (``Thumb.jsx``): no tools; a click opens the panel.
    ``label``: a fact that stays true ("v3"), never a count that grows."""
    props = {"src": publish(picture), "alt": alt, "label": label}
    return cl.CustomElement(name="Thumb", props=props, display="inline")


class Panel:
    """The side panel of one chat (``chat``: its ``session`` and ``thread``)."""

    def __init__(self, chat: Any):
        self.chat = chat
        self.question = False  # the panel shows an open question's numbered candidates
        self.last: Optional[dict[str, Any]] = None  # what :meth:`show` was last asked (to show it again)
        self.props: Optional[dict[str, Any]] = None  # what the panel shows now (PhotoPicker's props)
        self.element_id: Optional[str] = None  # the element in the panel now

    async def show(self, path: str, kind: str, *, status: str = "", selection: Optional[dict] = None,
                   shown: Optional[str] = None, alt: Optional[str] = None, question: bool = False) -> None:
        """Put the image at ``path`` in the panel (``shown``: the picture drawn instead, e.g. with the
        selection tinted; ``kind``: what it is, for its alt text, see ``render.alt``), with the tools
        that can act on it, its Download button and the version strip; or, with ``question``, an open
        question's numbered picture, whose click answers it (no other tools)."""
        self.last = dict(path=path, kind=kind, status=status, selection=selection, shown=shown, alt=alt,
                         question=question)
        self.question = question
        session = self.chat.session
        versions, state = await asyncio.to_thread(lambda: (session.versions(), session.state()))
        with PILImage.open(path) as im:
            width, height = im.size
        index = index_of(versions, path)
        name = f"localedit-{self.chat.thread[:8]}-v{index + 1}.png"
        url = publish(path)
        props = {"src": publish(shown) if shown else url, "alt": alt or render.alt(kind), "width": width,
                 "height": height, "image": Path(path).name, "clickable": True,
                 "points": (selection or {}).get("points") or [], "answering": question,
                 "status": status or ("Click a candidate to choose it." if question else ""),
                 "download": None if question else {"href": f"{url}?download={name}", "name": name},
                 "tools": {} if question else tools_available(state),
                 "versions": [] if question else await asyncio.to_thread(strip, versions, index + 1)}
        if props == self.props and not question:
            return  # the panel shows this already (and a phone's closed panel stays closed)
        self.props = props
        element = cl.CustomElement(name="PhotoPicker", props=dict(props), display="side")
        element.props["element"] = element.id
        element.content = json.dumps(element.props)
        title = "Which one? Click it" if question else \
            f"Version {index + 1} of {len(versions)}" if len(versions) > 1 else "Your photo"
        # Chainlit 2.12's page shows every element with display "side" in the panel, named after the
        # last one (and closes the panel when there is none): so the one before goes first, and the
        # title is set after the element (its name is its JSX file's).
        if self.element_id is not None:
            await cl.context.emitter.emit("remove_element", {"id": self.element_id})
        self.element_id = element.id
        await cl.ElementSidebar.set_elements([element], key=element.id)  # a new key: replace what is there
        await cl.ElementSidebar.set_title(title)

    async def again(self) -> bool:
        """Open the panel again with what it showed last (a click on a thumbnail); whether there was any."""
        if self.last is None:
            current = await asyncio.to_thread(self.chat.session.current_image_path)
            if not current:
                return False
            self.last = dict(path=current, kind="current")
        self.props = None  # show it even if it is what was there (the user closed the panel)
        await self.show(**self.last)
        return True
