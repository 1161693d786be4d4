"""``localedit mcp``: localedit as an MCP server (the official ``mcp`` SDK's FastMCP), over stdio or
streamable HTTP.

    localedit mcp                         # stdio: an MCP client starts it (see docs/apis.md)
    localedit mcp --http --port 8901      # streamable HTTP at http://127.0.0.1:8901/mcp

Tools (each MCP session has a conversation of its own, an :class:`agent.runtime.session.Session`; so
"now make it blue" after an edit means the region just edited):

==================  ==========================================================================
``edit_image``      an instruction, with a new photo (``image_base64``, or ``image_path`` over stdio)
                    or on the image the conversation is on; answers the edited image
``answer``          a message to the conversation: the answer to its question ("2", "the left one"),
                    "try again", "stronger", or a question about the edit
``undo`` / ``redo`` step through the versions (``steps``)
``list_versions``   every version: number, note, parent, which is on screen, the instruction
``show_mask``       the region the edit on screen changed, drawn over the photo
``select_version``  put version N on screen
==================  ==========================================================================

Images come back as MCP ``ImageContent`` (PNG, base64), the reply as ``TextContent``. Over HTTP
the app sits behind :class:`tools.http_guard.ServiceGuard` (loopback ``Host`` and ``Origin``,
``application/json`` POSTs, the worker's token rules) and the SDK's own DNS-rebinding check; a
path argument is refused there (it would read the server's files).
"""

from __future__ import annotations

import base64
import io
import json
import weakref
from pathlib import Path
from typing import Any, Optional, Union

import anyio
from mcp.server.fastmcp import Context, FastMCP
from mcp.types import ImageContent, TextContent
from PIL import Image

from agent.runtime.session import Conversations, Reply, Session
from agent.runtime.store import ImageStore
from tools.http_guard import ServiceGuard, is_loopback
from tools.types import LocaleditError

DEFAULT_PORT = 8901
MCP_PATH = "/mcp"
Content = list[Union[TextContent, ImageContent]]

INSTRUCTIONS = ("localedit edits photos by instruction, locally: it finds the object you name, masks it and "
                "changes only that region. Call edit_image with the photo (base64 PNG/JPEG) and an instruction "
                "such as 'make the cat red'; follow-ups ('now make it blue', 'undo') act on the same "
                "conversation. When it asks which object you mean, reply with the answer tool.")


def image_content(path_or_image: Union[str, Image.Image]) -> ImageContent:
    """An image as MCP image content (PNG, base64)."""
    image = ImageStore.open(path_or_image) if isinstance(path_or_image, str) else path_or_image
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return ImageContent(type="image", data=base64.b64encode(buf.getvalue()).decode(), mimeType="image/png")


def reply_content(reply: Reply, *keys: str) -> Content:
    """The reply's text and the first of its images named by ``keys``."""
    text = reply.text + (f"\n(asked: choose one of {', '.join(reply.options)})" if reply.options else "")
    out: Content = [TextContent(type="text", text=text or "(no answer)")]
    for key in keys:
        if reply.images.get(key):
            out.append(image_content(reply.images[key]))
            break
    return out


class Conversationist:
    """One :class:`Session` per MCP session (kept while the MCP session lives)."""

    def __init__(self, conversations: Conversations, allow_paths: bool):
        self.conversations = conversations
        self.allow_paths = allow_paths
        self._sessions: "weakref.WeakKeyDictionary[Any, Session]" = weakref.WeakKeyDictionary()

    def of(self, ctx: Optional[Context]) -> Session:
        key = ctx.session if ctx is not None else self
        if key not in self._sessions:
            self._sessions[key] = self.conversations.session()
        return self._sessions[key]

    def photo(self, image_base64: Optional[str], image_path: Optional[str]) -> Optional[Any]:
        """The photo argument as bytes or a path (None: keep the conversation's)."""
        if image_base64:
            data = image_base64.split(",", 1)[1] if image_base64.startswith("data:") else image_base64
            try:
                return base64.b64decode(data, validate=True)
            except ValueError:
                raise LocaleditError("image_base64 is not valid base64.") from None
        if image_path:
            if not self.allow_paths:
                raise LocaleditError("image_path works over stdio only; over HTTP send the photo as image_base64.")
            return Path(image_path).expanduser()
        return None


def build_server(conversations: Conversations, allow_paths: bool = True, host: str = "127.0.0.1",
                 port: int = DEFAULT_PORT) -> FastMCP:
    """The FastMCP server with localedit's tools on ``conversations`` (``allow_paths``: stdio)."""
    mcp = FastMCP("localedit", instructions=INSTRUCTIONS, host=host, port=port, streamable_http_path=MCP_PATH)
    talk = Conversationist(conversations, allow_paths)

    async def run(fn, *args) -> Any:
        return await anyio.to_thread.run_sync(fn, *args)

    async def say(ctx: Optional[Context], text: str, *keys: str) -> Content:
        session = talk.of(ctx)
        return reply_content(await run(session.send, text), *keys)

    @mcp.tool()
    async def edit_image(instruction: str, image_base64: Optional[str] = None, image_path: Optional[str] = None,
                         ctx: Context = None) -> Content:
        """Edit the photo by instruction ('make the cat red', 'remove the lamp', 'turn the left dog into a fox').

        Give a new photo as image_base64 (PNG/JPEG, optionally a data: URL) or, over stdio, image_path;
        without one the edit applies to the image the conversation is on. Returns the edited image,
        or a question (answer it with the answer tool)."""
        session = talk.of(ctx)
        try:
            photo = talk.photo(image_base64, image_path)
        except LocaleditError as err:
            return [TextContent(type="text", text=str(err))]
        if photo is not None:
            got = await run(session.send, "", photo)
            if got.error:
                return reply_content(got)
        return reply_content(await run(session.send, instruction), "edited", "candidates")

    @mcp.tool()
    async def answer(message: str, ctx: Context = None) -> Content:
        """Send a message to the conversation: the answer to its question ('2', 'the left one'), 'try again',
        'stronger', 'cancel', or another instruction. Returns the reply and any new image."""
        return await say(ctx, message, "edited", "candidates", "mask", "current")

    @mcp.tool()
    async def undo(steps: int = 1, ctx: Context = None) -> Content:
        """Go back ``steps`` versions (nothing is deleted; redo goes forward again)."""
        return await say(ctx, f"undo {max(1, int(steps))}" if steps > 1 else "undo", "current")

    @mcp.tool()
    async def redo(steps: int = 1, ctx: Context = None) -> Content:
        """Go forward ``steps`` versions after an undo."""
        return await say(ctx, f"redo {max(1, int(steps))}" if steps > 1 else "redo", "current")

    @mcp.tool()
    async def show_mask(ctx: Context = None) -> Content:
        """The region the edit on screen changed, drawn over the photo."""
        return await say(ctx, "show mask", "mask", "current")

    @mcp.tool()
    async def select_version(number: int, ctx: Context = None) -> Content:
        """Put version ``number`` (as list_versions numbers them) on screen."""
        session = talk.of(ctx)
        return reply_content(await run(session.select_version, int(number)), "current")

    @mcp.tool()
    async def list_versions(ctx: Context = None) -> Content:
        """Every image version of this conversation, oldest first, as JSON lines."""
        versions = await run(talk.of(ctx).versions)
        rows = [{"number": v["number"], "note": v["note"], "parent": v["parent"], "current": v["current"],
                 "instruction": (v["record"] or {}).get("instruction")} for v in versions]
        return [TextContent(type="text", text="\n".join(json.dumps(r) for r in rows) or "No photo yet.")]

    return mcp


def http_app(server: FastMCP, settings, token: Optional[str] = None, host: Optional[str] = None):
    """The streamable HTTP app of ``server`` behind the guard (POSTs to ``/mcp`` must be JSON)."""
    return ServiceGuard(server.streamable_http_app(), loopback_only=host is not None and is_loopback(host),
                        token=token, origins=settings.api_origins, prefixes={MCP_PATH: "application/json"},
                        what="this MCP server")
