"""A conversation with localedit, from Python: send messages (and images), get replies.

    from agent.session import Session
    chat = Session()                                  # a new thread; Session(thread_id) resumes one
    reply = chat.send("turn the cat into a fox", image="photo.jpg")
    reply.text, reply.images["edited"], chat.current_image()
    if reply.question: chat.send("2")                 # answer a clarifying question

Threads persist in ``$LOCALEDIT_DATA_DIR/conversations.sqlite`` (LangGraph's SQLite
checkpointer) and images in ``$LOCALEDIT_DATA_DIR/images``: a restarted program resumes them.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from PIL import Image

from agent.graph import build_graph
from agent.state import current_path
from agent.store import ImageStore
from tools.config import Settings, get_settings
from tools.images import load_image
from tools.types import LocaleditError

log = logging.getLogger(__name__)

OFFLINE_NOTICE = ("No LLM is configured (set LOCALEDIT_LLM_MODEL plus LOCALEDIT_LLM_BASE_URL or LOCALEDIT_LLM_API_KEY), "
                  "so I read instructions with the built-in parser.")


@dataclass
class Reply:
    """What the agent answered to one message."""

    text: str
    images: dict[str, str] = field(default_factory=dict)  # "edited", "before_after", "mask", "candidates", "current"
    question: bool = False  # a clarifying question is pending: the next message answers it
    options: list[str] = field(default_factory=list)  # candidate numbers for a question
    scores: Optional[dict[str, Any]] = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    error: bool = False
    notice: Optional[str] = None  # said once per session (e.g. the offline-parser notice)
    understood: Optional[dict[str, Any]] = None  # the plan / command and which path produced it


class Conversations:
    """The shared parts of every thread: worker, understander, image store, checkpointer, graph."""

    def __init__(self, settings: Optional[Settings] = None, worker=None, understander=None):
        self.settings = settings or get_settings()
        data = Path(self.settings.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        self.store = ImageStore(data / "images")
        if worker is None:
            from tools.worker import make_worker

            worker = make_worker(self.settings)
        if understander is None:
            from agent.llm import Understander, make_llm

            understander = Understander(make_llm(self.settings))
        self.worker, self.understander = worker, understander
        self._db = sqlite3.connect(str(data / "conversations.sqlite"), check_same_thread=False)
        from langgraph.checkpoint.sqlite import SqliteSaver

        self.checkpointer = SqliteSaver(self._db)
        self.graph = build_graph(worker, understander, self.store, self.settings, self.checkpointer)

    @property
    def offline(self) -> bool:
        return getattr(self.understander, "llm", None) is None

    def session(self, thread_id: Optional[str] = None) -> "Session":
        return Session(thread_id, conversations=self)

    def close(self) -> None:
        self._db.close()


class Session:
    """One chat thread. Args: ``thread_id`` to resume (None: a new one); shared ``conversations``."""

    def __init__(self, thread_id: Optional[str] = None, *, conversations: Optional[Conversations] = None,
                 settings: Optional[Settings] = None):
        self.conversations = conversations or Conversations(settings)
        self.thread_id = thread_id or uuid.uuid4().hex[:12]
        self._noticed = False

    @property
    def _config(self) -> dict:
        return {"configurable": {"thread_id": self.thread_id}, "recursion_limit": 60}

    def send(self, text: str = "", image: str | Path | bytes | Image.Image | None = None,
             progress: Optional[Callable[[dict], None]] = None) -> Reply:
        """Send a message (optionally with an image); returns the reply or a clarifying question.

        Args:
            text: what the user typed (an instruction, an answer to a question, "undo", ...).
            image: a photo to edit from now on: a path, bytes or a PIL image.
            progress: called with ``{"stage", "step", "total", ...}`` during long work.
        """
        from langgraph.types import Command as Resume

        conv = self.conversations
        upload = None
        if image is not None:
            try:
                pil = image if isinstance(image, Image.Image) else load_image(
                    image, max_bytes=conv.settings.max_upload_bytes, max_pixels=conv.settings.max_image_pixels)
            except LocaleditError as err:
                return Reply(text=str(err), error=True, images=self._current_images())
            upload = conv.store.put(pil.convert("RGB"))
        if self.pending() is not None:
            if upload is not None:  # a new photo while a question is open: drop the question
                self._stream(Resume(resume="cancel"), None)
                inputs: Any = {"text": text, "upload": upload}
            else:
                inputs = Resume(resume=text)
        else:
            inputs = {"text": text, "upload": upload}
        try:
            self._stream(inputs, progress)
        except LocaleditError as err:
            return Reply(text=str(err), error=True, images=self._current_images())
        except Exception as err:  # noqa: BLE001 - never a traceback to the user
            log.exception("turn failed")
            return Reply(text=f"Something went wrong ({type(err).__name__}); your images and our "
                              f"conversation are unchanged.", error=True, images=self._current_images())
        return self._reply()

    def _stream(self, inputs: Any, progress: Optional[Callable[[dict], None]]) -> None:
        for mode, chunk in self.conversations.graph.stream(inputs, self._config, stream_mode=["custom", "updates"]):
            if mode == "custom" and progress is not None:
                progress(chunk)

    def _reply(self) -> Reply:
        state = self.state()
        notice = None
        if not self._noticed and self.conversations.offline:
            notice, self._noticed = OFFLINE_NOTICE, True
        asked = self.pending()
        if asked is not None:
            images = {"candidates": asked["image"]} if asked.get("image") else {}
            return Reply(text=asked["question"], images=images, question=True,
                         options=asked.get("options") or [], notice=notice,
                         understood=state.get("understood"))
        reply = state.get("reply") or {"text": ""}
        images = dict(reply.get("images") or {})
        return Reply(text=reply["text"], images=images, scores=reply.get("scores"),
                     attempts=reply.get("attempts") or [], error=bool(reply.get("error")), notice=notice,
                     understood=state.get("understood"))

    def _current_images(self) -> dict[str, str]:
        current = self.current_image_path()
        return {"current": current} if current else {}

    # --- what the UI asks -------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return dict(self.conversations.graph.get_state(self._config).values or {})

    def pending(self) -> Optional[dict[str, Any]]:
        """The open clarifying question (``{"question", "image", "options"}``), if any."""
        snapshot = self.conversations.graph.get_state(self._config)
        for task in snapshot.tasks:
            for intr in task.interrupts:
                return dict(intr.value)
        return None

    def current_image_path(self) -> Optional[str]:
        return current_path(self.state())

    def current_image(self) -> Optional[Image.Image]:
        path = self.current_image_path()
        return ImageStore.open(path) if path else None

    def history(self) -> list[dict[str, Any]]:
        """The messages so far: ``{"role", "text", "image"}``."""
        return list(self.state().get("messages") or [])

    def versions(self) -> list[dict[str, Any]]:
        return list(self.state().get("versions") or [])
