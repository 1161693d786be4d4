"""``localedit mcp`` with the official ``mcp`` client: over stdio (``localedit mcp`` as a subprocess on the
tiny models) and over streamable HTTP (in this process, grounding knowing the scene, behind the guard)."""

from __future__ import annotations

import base64
import io
import os
import sys

import anyio
import httpx
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from PIL import Image

from agent.api.mcp_server import MCP_PATH, build_server, http_app
from agent.language.llm import Understander
from agent.runtime.session import Conversations
from tests.conftest import scene
from tests.helpers import REPO
from tests.helpers.scenes import CATS, SIZE, SceneWorker, agent_settings
from tests.helpers.served import served

pytestmark = pytest.mark.server
TOKEN = "mcp-token-0123456789"
TOOLS = {"edit_image", "answer", "undo", "redo", "list_versions", "show_mask", "select_version"}
LENIENT = {"LOCALEDIT_MIN_CLIP_DIR": "-1", "LOCALEDIT_MIN_CLIP_RC": "-1", "LOCALEDIT_MIN_CLIP_GC": "-1",
           "LOCALEDIT_MAX_L1_OUTSIDE": "1", "LOCALEDIT_MIN_L1_GLOBAL": "0"}


def images(result) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(c.data))) for c in result.content if c.type == "image"]


def text(result) -> str:
    return " ".join(c.text for c in result.content if c.type == "text")


@pytest.mark.slow
def test_stdio_lists_the_tools_and_edits_a_photo(tiny_models_dir, tmp_path):
    photo = tmp_path / "cats.png"
    scene(SIZE, boxes=CATS).save(photo)
    env = {**os.environ, "PYTHONPATH": str(REPO), "LOCALEDIT_DEVICE": "cpu", "LOCALEDIT_MAX_SIDE": "64",
           "LOCALEDIT_STEPS": "2", "LOCALEDIT_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1", **LENIENT}
    for name in ("LOCALEDIT_LLM_MODEL", "LOCALEDIT_WORKER_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        env.pop(name, None)
    server = StdioServerParameters(command=sys.executable, cwd=str(REPO), env=env,
                                   args=["-m", "agent.cli", "mcp", "--models", str(tiny_models_dir)])

    async def talk():
        async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            assert TOOLS <= {t.name for t in (await session.list_tools()).tools}
            edited = await session.call_tool("edit_image", {"instruction": "make it look like winter",
                                                            "image_path": str(photo)})
            versions = await session.call_tool("list_versions", {})
            undone = await session.call_tool("undo", {})
            return edited, versions, undone

    edited, versions, undone = anyio.run(talk)
    assert not edited.isError and [im.size for im in images(edited)] == [SIZE], text(edited)
    assert text(versions).count('"number"') == 2 and '"current": true' in text(versions)
    assert images(undone) and "nothing" not in text(undone).lower()


def test_streamable_http_edits_the_cat_one_conversation_per_session(settings, tmp_path):
    s = agent_settings(settings, tmp_path)
    conv = Conversations(s, worker=SceneWorker(s, objects={"cat": list(CATS)}), understander=Understander(None))
    buf = io.BytesIO()
    scene(SIZE, boxes=CATS).save(buf, "PNG")
    photo = base64.b64encode(buf.getvalue()).decode()
    auth = {"authorization": f"Bearer {TOKEN}"}

    with served(http_app(build_server(conv, allow_paths=False), s, TOKEN, "127.0.0.1")) as url:
        async def talk():
            async with httpx.AsyncClient(headers=auth, timeout=120) as client, \
                    streamable_http_client(url + MCP_PATH, http_client=client) as (read, write, _), \
                    ClientSession(read, write) as session:
                await session.initialize()
                assert TOOLS <= {t.name for t in (await session.list_tools()).tools}
                asked = await session.call_tool("edit_image", {"instruction": "make the cat red",
                                                               "image_base64": photo})
                edited = await session.call_tool("answer", {"message": "2"})
                mask = await session.call_tool("show_mask", {})
                undone = await session.call_tool("undo", {})
                redone = await session.call_tool("redo", {})
                versions = await session.call_tool("list_versions", {})
                path = await session.call_tool("edit_image", {"instruction": "make it blue", "image_path": "/etc/hosts"})
            async with httpx.AsyncClient(headers=auth, timeout=120) as client, \
                    streamable_http_client(url + MCP_PATH, http_client=client) as (read, write, _), \
                    ClientSession(read, write) as other:
                await other.initialize()
                fresh = await other.call_tool("list_versions", {})
            return asked, edited, mask, undone, redone, versions, path, fresh

        asked, edited, mask, undone, redone, versions, path, fresh = anyio.run(talk)
        refused = httpx.post(url + MCP_PATH, json={}, timeout=30)
        plain = httpx.post(url + MCP_PATH, content=b"{}", headers={**auth, "content-type": "text/plain"}, timeout=30)
    conv.close()
    assert "which" in text(asked).lower() and images(asked)  # three cats: the numbered candidates
    assert [im.size for im in images(edited)] == [SIZE], text(edited)
    assert images(mask) and images(undone) and images(redone), text(mask)
    assert text(versions).count('"number"') == 2 and text(versions).splitlines()[1].endswith('"current": true, '
                                                                                         '"instruction": "make the cat red"}')
    assert "stdio only" in text(path) and not images(path)
    assert text(fresh) == "No photo yet."  # the second MCP session has a conversation of its own
    assert refused.status_code == 401 and plain.status_code == 415
