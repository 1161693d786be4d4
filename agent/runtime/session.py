"""A conversation with localedit, from Python: send messages (and images), get replies.

    from agent.runtime.session import Session
    chat = Session()                                  # a new thread; Session(thread_id) resumes one
    reply = chat.send("turn the cat into a fox", image="photo.jpg")
    reply.text, reply.images["edited"], chat.current_image()
    if reply.question: chat.send("2")                 # answer a clarifying question (or "cancel")
    chat.cancel()                                     # from another thread: stop the running turn
    chat.versions(), chat.select_version(1)           # every version with its edit record; go to one

Threads persist in ``$LOCALEDIT_DATA_DIR/conversations.sqlite`` (LangGraph's SQLite
checkpointer, the newest ``LOCALEDIT_KEEP_CHECKPOINTS`` per thread) and images in
``$LOCALEDIT_DATA_DIR/images``: a restarted program resumes them. One turn at a time per thread,
across processes (``agent.runtime.locks``): a message for a busy thread waits ``LOCALEDIT_TURN_WAIT``
seconds, then is answered "still working on your last message".
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from PIL import Image

from agent.runtime import history

from agent.conversation import replies
from agent.conversation.state import current_path, current_record, parent_of
from agent.language.commands import goto
from agent.runtime.assembly import assemble
from agent.runtime.locks import CancelToken, ThreadLock
from agent.runtime.store import ImageStore
from tools import failures
from tools.config import Settings, get_settings
from tools.images import check_dimensions, image_from_array, load_image
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
    cancelled: bool = False  # the turn was stopped (Stop, Ctrl-C): nothing changed
    busy: bool = False  # another turn of this thread was running: this message was not taken
    report: dict[str, Any] = field(default_factory=dict)  # {"ran", "skipped", "caches", "stages"}: see ``summarize``
    details: str = ""  # how an edit was made: objects, editor, knobs, attempts (the step details; chat-cli /details)
    # the thread after the turn, read from the same checkpoint as the reply (no second read needed):
    versions: list[dict[str, Any]] = field(default_factory=list)  # as ``Session.versions()``
    state: dict[str, Any] = field(default_factory=dict, repr=False)  # the graph's state values (``Session.state()``)

    @property
    def current(self) -> Optional[dict[str, Any]]:
        """The version on screen after the turn (an entry of ``versions``), or None before any photo."""
        return next((v for v in self.versions if v["current"]), None)


def summarize(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """A turn's stage entries -> ``{"ran": [stage], "skipped": {stage: why}, "caches": {stage: hit/miss}, "stages"}``."""
    ran = [e["stage"] for e in entries if e.get("ran")]
    skipped = {e["stage"]: e.get("why", "") for e in entries if not e.get("ran")}
    caches = {e["stage"]: e["cache"] for e in entries if e.get("cache")}
    return {"ran": list(dict.fromkeys(ran)), "skipped": skipped, "caches": caches, "stages": entries}


class Conversations:
    """The shared parts of every thread: worker, understander, image store, checkpointer, graph.

    Made by :func:`agent.runtime.assembly.assemble` from ``settings`` (default: the process's); a given
    ``worker`` / ``understander`` is used as it is.
    """

    def __init__(self, settings: Optional[Settings] = None, worker=None, understander=None):
        parts = assemble(settings or get_settings(), worker=worker, understander=understander)
        self.parts, self.settings, self.store = parts, parts.settings, parts.store
        self.worker, self.understander = parts.worker, parts.understander
        self.locks = parts.data / "locks"
        self.db_path, self._db, self.checkpointer = parts.db_path, parts.db, parts.checkpointer
        self.read_only = parts.read_only  # history readable; every turn says nothing can be saved
        self.graph = parts.graph()

    @property
    def offline(self) -> bool:
        return getattr(self.understander, "llm", None) is None

    def session(self, thread_id: Optional[str] = None) -> "Session":
        return Session(thread_id, conversations=self)

    def close(self) -> None:
        self._db.close()


class Session:
    """One chat thread. Args: ``thread_id`` to resume (None: a new one); shared ``conversations``.

    ``send`` and ``select_version`` run one turn each (one at a time per thread, across processes);
    ``cancel`` may be called from any thread or a signal handler while one runs.
    """

    def __init__(self, thread_id: Optional[str] = None, *, conversations: Optional[Conversations] = None,
                 settings: Optional[Settings] = None):
        self.conversations = conversations or Conversations(settings)
        self.thread_id = thread_id or uuid.uuid4().hex[:12]
        self._noticed = False
        self._tokens: tuple[CancelToken, ...] = ()  # the cancel flags of this session's turns (running or waiting)
        self._tokens_lock = threading.Lock()  # guards adding / removing; cancel() only reads the tuple

    @property
    def _config(self) -> dict:
        return {"configurable": {"thread_id": self.thread_id}, "recursion_limit": 80}

    def send(self, text: str = "", image: str | Path | bytes | Image.Image | np.ndarray | None = None,
             progress: Optional[Callable[[dict], None]] = None) -> Reply:
        """Send a message (optionally with an image); returns the reply or a clarifying question.

        Args:
            text: what the user typed (an instruction, an answer to a question, "undo", "cancel", ...).
            image: a photo to edit from now on: a path, bytes, a PIL image or a uint8 array
                ``(H, W[, 3 | 4])``.
            progress: called with ``{"stage", "step", "total", ...}`` during long work.
        """
        conv = self.conversations
        limits = conv.settings
        upload = None
        if image is not None:
            try:
                if isinstance(image, np.ndarray):
                    image = image_from_array(image)
                elif not isinstance(image, (str, Path, bytes, Image.Image)):
                    raise LocaleditError(f"An image must be a path, bytes, a PIL image or a uint8 array, "
                                         f"not {type(image).__name__}.")
                if isinstance(image, Image.Image):  # the limits a file's header is checked against
                    check_dimensions(image.size, "The image", limits.max_image_pixels, limits.max_image_side,
                                     limits.max_aspect_ratio)
                    pil = image
                else:
                    pil = load_image(image, max_bytes=limits.max_upload_bytes, max_pixels=limits.max_image_pixels,
                                     max_side=limits.max_image_side, max_aspect=limits.max_aspect_ratio)
            except LocaleditError as err:
                return Reply(text=str(err), error=True, images=self._current_images())
            try:
                upload = conv.store.put(pil.convert("RGB"))
            except OSError as err:
                return self._failed(err)
        return self._turn({"text": text, "upload": upload}, progress)

    def select_version(self, number: int, progress: Optional[Callable[[dict], None]] = None) -> Reply:
        """Make version ``number`` (1-based, as ``versions()`` numbers them) the one on screen.

        Like undo / redo: nothing is deleted, and an edit made from there starts a new branch while
        the others stay in ``versions()``. An open question is dropped. ``progress`` gets the turn's
        stage events, as in ``send``.
        """
        asked = goto(int(number))
        if asked["kind"] == "chat":  # past any conversation's versions: answered without a turn
            return Reply(text=asked["text"], images=self._current_images())
        return self._turn({"text": "", "goto": asked["version"]}, progress)

    def cancel(self) -> bool:
        """Stop this session's running turn (the edit stops at its next diffusion step); whether one was running.

        Safe from another thread and from a signal handler: it only sets a flag. The stopped turn
        makes no version and answers "Stopped: ..."; the next message starts at once.
        """
        tokens = self._tokens  # one read of an immutable tuple: no lock, so a signal handler may call this
        for token in tokens:
            token.set()
        return bool(tokens)

    def _turn(self, message: dict[str, Any], progress: Optional[Callable[[dict], None]]) -> Reply:
        """One turn under the thread's lock: resume an open question or start afresh, then prune."""
        from langgraph.types import Command as Resume

        conv = self.conversations
        if conv.read_only:
            return Reply(text=failures.read_only(conv.settings.data_dir), error=True, images=self._current_images())
        token = CancelToken()
        with self._tokens_lock:
            self._tokens = (*self._tokens, token)
        lock = ThreadLock(conv.locks, self.thread_id)
        try:
            if not lock.acquire(conv.settings.turn_wait, cancel=token):
                if token.is_set():
                    return Reply(text=replies.stopped(), cancelled=True, images=self._current_images())
                return Reply(text=replies.busy(conv.settings.turn_wait), busy=True,
                             images=self._current_images())
            try:
                inputs: Any = Resume(resume=message) if self.pending() is not None else message
                self._stream(inputs, progress, token)
                history.prune(conv.checkpointer, self.thread_id, conv.settings.keep_checkpoints)
                return self._reply()  # read while no other turn can change the thread
            finally:
                lock.release()
        except LocaleditError as err:
            return Reply(text=str(err), error=True, images=self._current_images())
        except Exception as err:  # noqa: BLE001 - never a traceback to the user
            return self._failed(err)
        finally:
            with self._tokens_lock:
                self._tokens = tuple(t for t in self._tokens if t is not token)

    def _failed(self, err: Exception) -> Reply:
        """The reply to a turn that raised: the machine's failure in one sentence (a full disk, a
        read-only folder, a damaged database: ``tools.failures``, logged without a traceback), else
        "Something went wrong" with the traceback in the log."""
        sentence = failures.describe(err, self.conversations.settings.data_dir)
        if sentence is None:
            log.exception("turn failed")
            sentence = f"Something went wrong ({type(err).__name__}); your images and our conversation are unchanged."
        else:
            log.info("turn failed: %s (%s: %s)", sentence, type(err).__name__, err)
        try:
            images = self._current_images()
        except Exception:  # noqa: BLE001 - a damaged database may not even say which image is on screen
            log.info("the current image could not be read after the failure", exc_info=True)
            images = {}
        return Reply(text=sentence, error=True, images=images)

    def _stream(self, inputs: Any, progress: Optional[Callable[[dict], None]], token: CancelToken) -> None:
        config = {**self._config, "configurable": {**self._config["configurable"], "cancel": token}}
        # checkpoints only when the turn ends (or asks a question): a handful per turn, not one per node
        for mode, chunk in self.conversations.graph.stream(inputs, config, stream_mode=["custom", "updates"],
                                                           durability="exit"):
            if mode == "custom" and progress is not None:
                progress(chunk)

    def _reply(self) -> Reply:
        """The turn's reply, with the thread's versions and state, from one read of the checkpoint."""
        snapshot = self.conversations.graph.get_state(self._config)
        state = dict(snapshot.values or {})
        notice = None
        if not self._noticed and self.conversations.offline:
            notice, self._noticed = OFFLINE_NOTICE, True
        thread = {"understood": state.get("understood"), "report": summarize(state.get("report") or []),
                  "versions": versions_of(state), "state": state, "notice": notice}
        asked = _interrupt(snapshot)
        if asked is not None:
            images = {"candidates": asked["image"]} if asked.get("image") else {}
            return Reply(text=asked["question"], images=images, question=True,
                         options=asked.get("options") or [], **thread)
        reply = state.get("reply") or {"text": ""}
        images = dict(reply.get("images") or {})
        return Reply(text=reply["text"], images=images, scores=reply.get("scores"),
                     attempts=reply.get("attempts") or [], error=bool(reply.get("error")),
                     cancelled=bool(reply.get("cancelled")), details=reply.get("details") or "", **thread)

    def _current_images(self) -> dict[str, str]:
        current = self.current_image_path()
        return {"current": current} if current else {}

    # --- what the UI asks -------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return dict(self.conversations.graph.get_state(self._config).values or {})

    def pending(self) -> Optional[dict[str, Any]]:
        """The open clarifying question (``{"question", "image", "options"}``), if any."""
        return _interrupt(self.conversations.graph.get_state(self._config))

    def current_image_path(self) -> Optional[str]:
        return current_path(self.state())

    def current_image(self) -> Optional[Image.Image]:
        path = self.current_image_path()
        return ImageStore.open(path) if path else None

    def history(self) -> list[dict[str, Any]]:
        """The messages so far: ``{"role", "text", "image"}``."""
        return list(self.state().get("messages") or [])

    def versions(self) -> list[dict[str, Any]]:
        """Every image version, oldest first: ``{"number", "path", "note", "parent", "current", "record"}``.

        ``number`` is 1-based (what ``select_version`` takes), ``parent`` the number of the version it
        was made from (None for the first photo), ``record`` how an edit made it (None for an upload):
        ``instruction``, ``plan``, ``boxes``, ``mask`` (object mask path), ``region`` (the pixels the edit
        could change, path; None: whole image), ``scores``, ``editor``, ``seed``, ``strength``, ``base``.
        """
        return versions_of(self.state())

    def record(self) -> Optional[dict[str, Any]]:
        """The edit record of the version on screen (None for an uploaded photo)."""
        record = current_record(self.state())
        return dict(record) if record else None

    def selection(self) -> Optional[dict[str, Any]]:
        """The region pointed at for the next edit (``agent.conversation.state.State.selection``), if any."""
        return self.state().get("selection")

    def set_selection(self, selection: Optional[dict[str, Any]]) -> None:
        """Point at a region of the current image for the next localized edit (None: forget it).

        ``agent.conversation.pointing`` makes the value (from a click or "select the cat on the left"); the next
        localized edit takes it as the referent (``agent.conversation.referent.of_selection``). Refused
        (LocaleditError, one sentence) while a question is open (the click answers it instead) or
        while a turn of this thread is running (under the thread's lock, so no turn overwrites it).
        """
        conv = self.conversations
        lock = ThreadLock(conv.locks, self.thread_id)
        if not lock.acquire(conv.settings.turn_wait):
            raise LocaleditError(replies.busy(conv.settings.turn_wait))
        try:
            if self.pending() is not None:
                raise LocaleditError("Answer the open question first (or say \"cancel\").")
            conv.graph.update_state(self._config, {"selection": selection})
        finally:
            lock.release()


def versions_of(state: dict[str, Any]) -> list[dict[str, Any]]:
    """``Session.versions()`` of a state: ``{"number", "path", "note", "parent", "current", "record"}`` each."""
    versions = state.get("versions") or []
    cursor = state.get("cursor", len(versions) - 1)
    out = []
    for i, v in enumerate(versions):
        parent = parent_of(versions, i)
        out.append({"number": i + 1, "path": v["path"], "note": v["note"],
                    "parent": None if parent is None else parent + 1, "current": i == cursor,
                    "record": dict(v["record"]) if v.get("record") else None})
    return out


def _interrupt(snapshot: Any) -> Optional[dict[str, Any]]:
    """The open question of a state snapshot (its first interrupt's value), if any."""
    for task in snapshot.tasks:
        for intr in task.interrupts:
            return dict(intr.value)
    return None
