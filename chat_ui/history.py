"""Past conversations: Chainlit's data layer on SQLite, and the files its pictures point at.

Chainlit asks a data layer to keep users, threads, steps (messages and the work steps nested in
them) and elements (pictures, custom elements); its sidebar lists a user's threads and a
reopened thread is drawn again from them, exactly as it was. :class:`SQLiteDataLayer` keeps them
in ``$LOCALEDIT_DATA_DIR/chat_threads.sqlite`` (owner-only). Each step and element is stored as
the JSON dict Chainlit hands over (a few columns indexed), merged on update the way Chainlit's
own Postgres layer merges.

The bytes of every picture go into :class:`FileStore` (``$LOCALEDIT_DATA_DIR/chat_files``, one file
per content hash) and the element is stored with its URL there, ``/localedit/files/<hash>.<ext>``,
which the app serves to signed-in users only (``chat_ui.app``): a reopened chat shows its images
after a server restart, when Chainlit's own per-session files are long gone.

Steps whose metadata says ``{"transient": true}`` (the "carrying on" note a reopened chat gets)
and their elements are shown but not kept, so reopening a chat many times adds nothing to it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import mimetypes
import os
import re
import sqlite3
import tempfile
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from chainlit.data.base import BaseDataLayer
from chainlit.data.utils import queue_until_user_message
from chainlit.types import Feedback, PageInfo, PaginatedResponse, Pagination, ThreadDict, ThreadFilter
from chainlit.user import PersistedUser, User

from tools.files import private_dir, private_file

if TYPE_CHECKING:
    from chainlit.element import Element, ElementDict
    from chainlit.step import StepDict

FILES_ROUTE = "/localedit/files"
"""Where :class:`FileStore`'s files are served (``chat_ui.app`` adds the route)."""

FILE_NAME = re.compile(r"^[0-9a-f]{64}\.(png|jpg|jpeg|gif|webp|bmp|tiff|bin)$")
"""What a stored file is called: the sha256 of its bytes and an extension."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, identifier TEXT UNIQUE NOT NULL, metadata TEXT,
                                  created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS threads (id TEXT PRIMARY KEY, name TEXT, user_id TEXT, user_identifier TEXT,
                                    tags TEXT, metadata TEXT, created TEXT NOT NULL, updated TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS threads_by_user ON threads (user_id, updated);
CREATE TABLE IF NOT EXISTS steps (id TEXT PRIMARY KEY, thread_id TEXT, created TEXT, seq INTEGER, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS steps_by_thread ON steps (thread_id, seq);
CREATE TABLE IF NOT EXISTS elements (id TEXT PRIMARY KEY, thread_id TEXT, for_id TEXT, seq INTEGER,
                                     data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS elements_by_thread ON elements (thread_id, seq);
CREATE TABLE IF NOT EXISTS feedbacks (id TEXT PRIMARY KEY, for_id TEXT, value INTEGER, comment TEXT);
CREATE TABLE IF NOT EXISTS panels (user_identifier TEXT PRIMARY KEY, panel TEXT NOT NULL);
"""


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def picture_mime(picture: Any) -> str:
    """The MIME type of a picture as :func:`chat_ui.services.publish` stores it: PNG for pixels and bytes
    (it encodes them as PNG), else the file's own type by its name (the store's previews are JPEG)."""
    if isinstance(picture, (str, Path)):
        return mimetypes.guess_type(str(picture))[0] or "application/octet-stream"
    return "image/png"


class FileStore:
    """Picture bytes by content hash, in one folder; :meth:`url` is where the app serves them."""

    def __init__(self, root: Path):
        self.root = private_dir(root)

    def put(self, data: bytes, mime: Optional[str] = None, name: str = "") -> str:
        """Keep ``data``; returns its file name (``<sha256>.<ext>``)."""
        ext = (mimetypes.guess_extension(mime or "") or Path(name).suffix or ".bin").lstrip(".").lower()
        ext = {"jpe": "jpg"}.get(ext, ext)
        if not FILE_NAME.match(f"{'0' * 64}.{ext}"):
            ext = "bin"
        file_name = f"{hashlib.sha256(data).hexdigest()}.{ext}"
        path = self.root / file_name
        if not path.exists():
            fd, part = tempfile.mkstemp(dir=self.root, suffix=".part")  # created owner-only (0600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(part, path)  # all or nothing
        return file_name

    def put_file(self, source: Path, mime: Optional[str] = None) -> str:
        return self.put(Path(source).read_bytes(), mime, Path(source).name)

    def path(self, file_name: str) -> Optional[Path]:
        """The stored file called ``file_name``, or None (unknown or not a valid name)."""
        if not FILE_NAME.match(file_name or ""):
            return None
        path = self.root / file_name
        return path if path.is_file() else None

    @staticmethod
    def url(file_name: str) -> str:
        return f"{FILES_ROUTE}/{file_name}"


class SQLiteDataLayer(BaseDataLayer):
    """Chainlit's ``BaseDataLayer`` on one SQLite file (see the module docstring).

    Args:
        path: the database file (created owner-only).
        files: where element bytes go.
    """

    def __init__(self, path: Path, files: FileStore):
        self.path, self.files = private_file(path), files  # created owner-only before SQLite opens it
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        self._db.row_factory = sqlite3.Row
        with self._lock, self._db:
            self._db.executescript(_SCHEMA)
        self._transient: set[str] = set()  # steps shown but not kept
        # Chainlit persists each step write in a task of its own: one at a time, in the order they were
        # made, so a step's read-merge-write never lands on top of a newer one (a stale stage title)
        self._step_writes = asyncio.Lock()
        self._order: dict[str, int] = {}  # step id -> its place, taken when Chainlit first hands it over
        self._last = 0  # the last place given

    # --- plumbing --------------------------------------------------------------------------------

    def _run(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._lock, self._db:
            return self._db.execute(sql, params).fetchall()

    async def _q(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        return await asyncio.to_thread(self._run, sql, params)

    def _seq(self) -> int:
        return int(datetime.now(timezone.utc).timestamp() * 1e6)

    def _place(self, step_id: str) -> int:
        """The place of a step in its thread, taken before any await: Chainlit writes each step in a task of
        its own, and a slower write must not put a parent after its child (a reopened chat would drop it)."""
        if step_id not in self._order:
            self._last = self._order[step_id] = max(self._seq(), self._last + 1)
        return self._order[step_id]

    # --- users -------------------------------------------------------------------------------------

    async def get_user(self, identifier: str) -> Optional[PersistedUser]:
        rows = await self._q("SELECT * FROM users WHERE identifier = ?", (identifier,))
        if not rows:
            return None
        r = rows[0]
        return PersistedUser(id=r["id"], identifier=r["identifier"], createdAt=r["created"],
                             metadata=json.loads(r["metadata"] or "{}"))

    async def create_user(self, user: User) -> Optional[PersistedUser]:
        await self._q("INSERT INTO users (id, identifier, metadata, created) VALUES (?, ?, ?, ?) "
                      "ON CONFLICT(identifier) DO UPDATE SET metadata = excluded.metadata",
                      (str(uuid.uuid4()), user.identifier, json.dumps(user.metadata or {}), _now()))
        return await self.get_user(user.identifier)

    # --- feedback (not offered in the UI; kept so the interface is whole) ------------------------

    async def upsert_feedback(self, feedback: Feedback) -> str:
        feedback_id = feedback.id or str(uuid.uuid4())
        await self._q("INSERT INTO feedbacks (id, for_id, value, comment) VALUES (?, ?, ?, ?) ON CONFLICT(id) "
                      "DO UPDATE SET value = excluded.value, comment = excluded.comment",
                      (feedback_id, feedback.forId, int(feedback.value), feedback.comment))
        return feedback_id

    async def delete_feedback(self, feedback_id: str) -> bool:
        await self._q("DELETE FROM feedbacks WHERE id = ?", (feedback_id,))
        return True

    # --- elements ------------------------------------------------------------------------------

    @queue_until_user_message()
    async def create_element(self, element: "Element"):
        if not element.for_id or element.for_id in self._transient:
            return
        url = element.url
        if not url:  # keep the bytes where the app serves them: Chainlit's session files do not last
            if element.path:
                name = await asyncio.to_thread(self.files.put_file, Path(element.path), element.mime)
            elif element.content is not None and element.type != "custom":
                data = element.content if isinstance(element.content, bytes) else str(element.content).encode()
                name = await asyncio.to_thread(self.files.put, data, element.mime, element.name)
            else:
                name = None
            url = FileStore.url(name) if name else None
        data = {**element.to_dict(), "url": url}
        data.pop("path", None)
        await self._q("INSERT INTO elements (id, thread_id, for_id, seq, data) VALUES (?, ?, ?, ?, ?) "
                      "ON CONFLICT(id) DO UPDATE SET data = excluded.data, for_id = excluded.for_id",
                      (element.id, element.thread_id, element.for_id, self._seq(), json.dumps(data)))

    async def get_element(self, thread_id: str, element_id: str) -> Optional["ElementDict"]:
        rows = await self._q("SELECT data FROM elements WHERE id = ? AND thread_id = ?", (element_id, thread_id))
        return json.loads(rows[0]["data"]) if rows else None

    @queue_until_user_message()
    async def delete_element(self, element_id: str, thread_id: Optional[str] = None):
        if thread_id:
            await self._q("DELETE FROM elements WHERE id = ? AND thread_id = ?", (element_id, thread_id))
        else:
            await self._q("DELETE FROM elements WHERE id = ?", (element_id,))

    # --- steps -----------------------------------------------------------------------------------

    @queue_until_user_message()
    async def create_step(self, step_dict: "StepDict"):
        if (step_dict.get("metadata") or {}).get("transient"):
            self._transient.add(step_dict["id"])
            return
        if step_dict["id"] in self._transient:
            return
        place = self._place(step_dict["id"])
        async with self._step_writes:
            await self._write_step(step_dict, place)

    async def _write_step(self, step_dict: "StepDict", place: int) -> None:
        """Merge ``step_dict`` (a partial update) into the stored step, or store it at ``place``."""
        rows = await self._q("SELECT data, seq FROM steps WHERE id = ?", (step_dict["id"],))
        old = json.loads(rows[0]["data"]) if rows else {}
        merged = dict(old)
        for key, value in step_dict.items():
            if value is None or (key in ("input", "output") and value == "" and old.get(key)):
                continue  # Chainlit sends partial updates: keep what an update leaves out
            merged[key] = value
        if old.get("type") and merged.get("type") == "run" and old["type"] != "run":
            merged["type"] = old["type"]
        merged.pop("streaming", None)
        created = merged.get("createdAt") or merged.get("start") or _now()
        merged["createdAt"] = created
        seq = rows[0]["seq"] if rows else place
        await self._q("INSERT INTO steps (id, thread_id, created, seq, data) VALUES (?, ?, ?, ?, ?) "
                      "ON CONFLICT(id) DO UPDATE SET data = excluded.data, thread_id = excluded.thread_id",
                      (step_dict["id"], merged.get("threadId"), created, seq, json.dumps(merged, default=str)))
        if merged.get("threadId"):
            await self._q("UPDATE threads SET updated = ? WHERE id = ?", (_now(), merged["threadId"]))

    @queue_until_user_message()
    async def update_step(self, step_dict: "StepDict"):
        await self.create_step(step_dict)

    @queue_until_user_message()
    async def delete_step(self, step_id: str):
        await self._q("DELETE FROM elements WHERE for_id = ?", (step_id,))
        await self._q("DELETE FROM steps WHERE id = ?", (step_id,))

    async def get_favorite_steps(self, user_id: str) -> List["StepDict"]:
        return []  # favourites are switched off in chainlit.toml

    # --- threads -------------------------------------------------------------------------------

    async def get_thread_author(self, thread_id: str) -> str:
        rows = await self._q("SELECT user_identifier FROM threads WHERE id = ?", (thread_id,))
        if not rows or not rows[0]["user_identifier"]:
            raise ValueError(f"Thread {thread_id} not found")
        return rows[0]["user_identifier"]

    async def delete_thread(self, thread_id: str):
        await self._q("DELETE FROM elements WHERE thread_id = ?", (thread_id,))
        await self._q("DELETE FROM steps WHERE thread_id = ?", (thread_id,))
        await self._q("DELETE FROM threads WHERE id = ?", (thread_id,))

    async def update_thread(self, thread_id: str, name: Optional[str] = None, user_id: Optional[str] = None,
                            metadata: Optional[Dict] = None, tags: Optional[List[str]] = None):
        rows = await self._q("SELECT * FROM threads WHERE id = ?", (thread_id,))
        old = rows[0] if rows else None
        meta = json.loads(old["metadata"] or "{}") if old else {}
        for key, value in (metadata or {}).items():
            if value is None:
                meta.pop(key, None)
            else:
                meta[key] = value
        identifier = old["user_identifier"] if old else None
        if user_id:
            users = await self._q("SELECT identifier FROM users WHERE id = ?", (user_id,))
            identifier = users[0]["identifier"] if users else identifier
        if name is not None:
            name = await self._distinct(name[:240], identifier, thread_id)
        values = (name if name is not None else (old["name"] if old else None),
                  user_id or (old["user_id"] if old else None), identifier,
                  json.dumps(tags) if tags is not None else (old["tags"] if old else None), json.dumps(meta))
        if old:
            await self._q("UPDATE threads SET name = ?, user_id = ?, user_identifier = ?, tags = ?, metadata = ?, "
                          "updated = ? WHERE id = ?", (*values, _now(), thread_id))
        else:
            await self._q("INSERT INTO threads (name, user_id, user_identifier, tags, metadata, created, updated, id) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (*values, _now(), _now(), thread_id))

    async def _distinct(self, name: str, user: Optional[str], thread_id: str) -> str:
        """``name``, or ``(2) name``, ``(3) name``, ... when another thread of ``user`` has it (the
        sidebar must tell two chats apart; it cuts long names at their end, so the number goes first)."""
        rows = await self._q("SELECT name FROM threads WHERE id != ? AND user_identifier IS ? AND name IS NOT NULL",
                             (thread_id, user))
        taken = {r["name"] for r in rows}
        number = 2
        candidate = name
        while candidate in taken:
            candidate, number = f"({number}) {name}", number + 1
        return candidate

    async def list_threads(self, pagination: Pagination, filters: ThreadFilter) -> PaginatedResponse[ThreadDict]:
        sql, params = "SELECT * FROM threads WHERE user_id IS NOT NULL", []
        if filters.userId:
            sql += " AND user_id = ?"
            params.append(filters.userId)
        if filters.search:
            sql += " AND name LIKE ? ESCAPE '\\'"
            params.append("%" + re.sub(r"([%_\\])", r"\\\1", filters.search) + "%")
        if pagination.cursor:
            sql += " AND updated < (SELECT updated FROM threads WHERE id = ?)"
            params.append(pagination.cursor)
        sql += " ORDER BY updated DESC LIMIT ?"
        params.append(pagination.first + 1)
        rows = await self._q(sql, tuple(params))
        more = len(rows) > pagination.first
        threads = [self._thread(r) for r in rows[:pagination.first]]
        return PaginatedResponse(pageInfo=PageInfo(hasNextPage=more, startCursor=threads[0]["id"] if threads else None,
                                                   endCursor=threads[-1]["id"] if threads else None), data=threads)

    async def get_thread(self, thread_id: str) -> Optional[ThreadDict]:
        rows = await self._q("SELECT * FROM threads WHERE id = ?", (thread_id,))
        if not rows:
            return None
        thread = self._thread(rows[0])
        steps = await self._q("SELECT data FROM steps WHERE thread_id = ? ORDER BY seq", (thread_id,))
        elements = await self._q("SELECT data FROM elements WHERE thread_id = ? ORDER BY seq", (thread_id,))
        thread["steps"] = [json.loads(r["data"]) for r in steps]
        thread["elements"] = [json.loads(r["data"]) for r in elements]
        return thread

    @staticmethod
    def _thread(row: sqlite3.Row) -> ThreadDict:
        return ThreadDict(id=row["id"], createdAt=row["updated"], name=row["name"], userId=row["user_id"],
                          userIdentifier=row["user_identifier"], tags=json.loads(row["tags"] or "[]"),
                          metadata=json.loads(row["metadata"] or "{}"), steps=[], elements=[])

    async def thread_name(self, thread_id: str) -> Optional[str]:
        rows = await self._q("SELECT name FROM threads WHERE id = ?", (thread_id,))
        return rows[0]["name"] if rows else None

    # --- the settings panel a user last chose ---------------------------------------------------

    def panel_for(self, user: str) -> Optional[dict[str, Any]]:
        rows = self._run("SELECT panel FROM panels WHERE user_identifier = ?", (user,))
        return json.loads(rows[0]["panel"]) if rows else None

    def save_panel(self, user: str, panel: dict[str, Any]) -> None:
        self._run("INSERT INTO panels (user_identifier, panel) VALUES (?, ?) ON CONFLICT(user_identifier) "
                  "DO UPDATE SET panel = excluded.panel", (user, json.dumps(panel)))

    # --- the rest of the interface -------------------------------------------------------------

    async def build_debug_url(self) -> str:
        return ""

    async def close(self) -> None:
        with self._lock:
            self._db.close()
