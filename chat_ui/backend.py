"""What the chat UI needs from localedit, without Chainlit.

* ``PanelSettings``: the settings panel's values (editor, strength, steps, seed, auto-retry,
  max long side), validated, and applied on top of the environment's ``Settings``.
* ``Backend``: one ``Conversations`` per panel combination, all sharing the loaded models and the
  SQLite checkpointer file, so changing a setting keeps the thread and reloads nothing.
* ``ThreadMap``: which conversation thread a browser is in (and its panel values), kept in
  ``$LOCALEDIT_DATA_DIR/chat_ui.sqlite``; with the agent's own checkpointer this is what makes a
  reload of the page or a restart of the server resume the conversation.
* ``BrowserCookie``: ASGI middleware giving each browser a long-lived random id cookie.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, Callable, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.session import Conversations, Session
from tools.config import Settings
from tools.files import private_dir, private_file

EDITORS = ("auto", "ip2p", "ip2p-composite", "diffedit", "regionwise", "inpaint")
COOKIE = "localedit_browser"
COOKIE_MAX_AGE = 400 * 24 * 3600  # browsers cap cookie lifetimes at 400 days

WorkerFactory = Callable[[Settings, Optional[Any]], Any]
"""``factory(settings, base_worker)``: the worker for one panel combination. ``base_worker`` is the
first worker made (None when making it): share its loaded models where the kind allows."""


class PanelSettings(BaseModel):
    """The values of the chat's settings panel."""

    model_config = ConfigDict(frozen=True)

    editor: Literal["auto", "ip2p", "ip2p-composite", "diffedit", "regionwise", "inpaint"] = "auto"
    strength: float = Field(0.7, gt=0, le=1, description="DiffEdit encoding ratio / region-wise strength")
    steps: int = Field(20, ge=1, le=200)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    auto_retry: bool = True
    max_side: int = Field(512, ge=64, le=2048)

    @classmethod
    def from_settings(cls, settings: Settings) -> "PanelSettings":
        """The panel showing ``settings`` (the environment's defaults)."""
        return cls(editor=settings.editor if settings.editor in EDITORS else "auto",
                   strength=settings.encoding_ratio, steps=settings.steps, seed=settings.seed,
                   auto_retry=settings.auto_retry, max_side=settings.max_side)

    @classmethod
    def from_panel(cls, values: dict[str, Any], fallback: "PanelSettings") -> "PanelSettings":
        """Validate what the panel sent; a value that does not fit keeps ``fallback``'s.

        Sliders send floats ("20.0"); whole-number fields are rounded, ``max_side`` to a multiple of 8.
        """
        merged = fallback.model_dump()
        for name, value in values.items():
            if name not in merged or value is None or value == "":
                continue
            try:
                if name in ("steps", "seed", "max_side"):
                    value = int(round(float(value)))
                    if name == "max_side":
                        value -= value % 8
                candidate = {**merged, name: value}
                cls.model_validate(candidate)
                merged = candidate
            except (TypeError, ValueError, ValidationError):
                continue
        return cls.model_validate(merged)

    def apply(self, settings: Settings) -> Settings:
        """``settings`` with this panel's values on top."""
        return settings.model_copy(update={
            "editor": self.editor, "encoding_ratio": float(self.strength), "steps": self.steps,
            "seed": self.seed, "auto_retry": self.auto_retry, "max_side": self.max_side})

    def describe(self) -> str:
        return (f"editor {self.editor}, strength {self.strength:g}, {self.steps} steps, seed {self.seed}, "
                f"auto-retry {'on' if self.auto_retry else 'off'}, max long side {self.max_side}px")


def default_worker(settings: Settings, base: Optional[Any]):
    """The environment's worker; further in-process workers share the first one's loaded models."""
    from tools.worker import LocalWorker, make_worker

    if base is None:
        return make_worker(settings)
    if isinstance(base, LocalWorker):
        return LocalWorker(settings, registry=base.registry)
    return base  # a remote worker: one connection serves every combination


class Backend:
    """The conversations behind the UI, one ``Conversations`` per panel combination.

    Args:
        settings: the environment's settings (default: read now).
        worker_factory: makes each combination's worker (default ``default_worker``).
        understander: the LLM / offline parser shared by all (default: from the settings).
    """

    def __init__(self, settings: Optional[Settings] = None, worker_factory: Optional[WorkerFactory] = None,
                 understander=None):
        self.settings = settings or Settings()
        self.worker_factory = worker_factory or default_worker
        self._understander = understander
        self._base_worker = None
        self._conversations: dict[PanelSettings, Conversations] = {}
        self._lock = threading.Lock()
        data = private_dir(self.settings.data_dir)  # owner-only, as the conversations make it
        self.threads = ThreadMap(private_file(data / "chat_ui.sqlite"))

    @property
    def defaults(self) -> PanelSettings:
        return PanelSettings.from_settings(self.settings)

    def conversations(self, panel: PanelSettings) -> Conversations:
        """The (cached) conversations object for one panel combination."""
        with self._lock:
            if panel not in self._conversations:
                settings = panel.apply(self.settings)
                worker = self.worker_factory(settings, self._base_worker)
                if self._base_worker is None:
                    self._base_worker = worker
                if self._understander is None:
                    from agent.llm import Understander, make_llm

                    self._understander = Understander(make_llm(self.settings))
                self._conversations[panel] = Conversations(settings, worker=worker,
                                                           understander=self._understander)
            return self._conversations[panel]

    def session(self, thread_id: str, panel: PanelSettings) -> Session:
        return self.conversations(panel).session(thread_id)

    def close(self) -> None:
        with self._lock:
            for conv in self._conversations.values():
                conv.close()
            self._conversations.clear()


class ThreadMap:
    """Browser id -> its current conversation thread and panel values (a small SQLite table)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS browsers (browser TEXT PRIMARY KEY, thread TEXT NOT NULL, "
                       "panel TEXT, updated REAL NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(str(self.path), timeout=10)

    def thread_for(self, browser: str) -> str:
        """The browser's thread; a new one the first time."""
        with self._connect() as db:
            row = db.execute("SELECT thread FROM browsers WHERE browser = ?", (browser,)).fetchone()
        return row[0] if row else self.new_thread(browser)

    def new_thread(self, browser: str) -> str:
        """Start the browser on a fresh thread (the old one stays in the checkpointer)."""
        thread = new_id(12)
        with self._connect() as db:
            db.execute("INSERT INTO browsers (browser, thread, updated) VALUES (?, ?, ?) "
                       "ON CONFLICT(browser) DO UPDATE SET thread = excluded.thread, updated = excluded.updated",
                       (browser, thread, time.time()))
        return thread

    def panel_for(self, browser: str) -> Optional[dict[str, Any]]:
        with self._connect() as db:
            row = db.execute("SELECT panel FROM browsers WHERE browser = ?", (browser,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def save_panel(self, browser: str, panel: PanelSettings) -> None:
        self.thread_for(browser)  # make sure the row exists
        with self._connect() as db:
            db.execute("UPDATE browsers SET panel = ?, updated = ? WHERE browser = ?",
                       (panel.model_dump_json(), time.time(), browser))


def new_id(length: int = 32) -> str:
    """A random hex id of ``length`` characters."""
    return secrets.token_hex(length // 2)


def browser_from_cookie_header(header: Optional[str]) -> Optional[str]:
    """The browser id in a ``Cookie:`` header, if it has a well-formed one."""
    if not header:
        return None
    jar = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # noqa: BLE001 - a malformed header is just "no cookie"
        return None
    morsel = jar.get(COOKIE)
    value = morsel.value if morsel else ""
    return value if 8 <= len(value) <= 64 and value.isalnum() else None


class BrowserCookie:
    """ASGI middleware: a page load without the browser-id cookie gets one (``Set-Cookie``)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not _wants_page(scope) or browser_from_cookie_header(_header(scope, b"cookie")):
            await self.app(scope, receive, send)
            return
        cookie = (f"{COOKIE}={new_id(32)}; Path=/; Max-Age={COOKIE_MAX_AGE}; SameSite=Lax; HttpOnly").encode()

        async def send_with_cookie(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _header(scope, name: bytes) -> Optional[str]:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _wants_page(scope) -> bool:
    """A browser navigating to a page (not an asset, API or socket request)."""
    return scope.get("method") == "GET" and "text/html" in (_header(scope, b"accept") or "")


_backend: Optional[Backend] = None
_backend_options: dict[str, Any] = {}
_backend_lock = threading.Lock()


def configure(**options: Any) -> None:
    """Set ``Backend`` arguments (e.g. ``worker_factory``) before the app makes its backend."""
    with _backend_lock:
        if _backend is not None:
            raise RuntimeError("the chat backend is already running; configure it before the first chat")
        _backend_options.update(options)


def get_backend() -> Backend:
    """The process's backend, made on first use from the environment (and ``configure``)."""
    global _backend
    with _backend_lock:
        if _backend is None:
            _backend = Backend(**_backend_options)
        return _backend
