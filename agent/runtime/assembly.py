"""One assembly of the conversation's parts from a ``Settings``; every entry point asks it.

The worker (in-process, or ``LOCALEDIT_WORKER_URL``), the understander (the LLM with its timeout,
retries and turn budget, or the built-in parser), the image store and the SQLite checkpointer are
made here, from the one ``Settings`` the caller hands in, for ``agent.runtime.session.Conversations`` (the
chat-cli, ``Session``, the API and MCP servers), the chat UI (``chat_ui.backend``) and LangGraph
Studio (``agent.runtime.studio``). A caller may hand in its own worker or understander (the UI shares one
understander and the loaded models across its setting combinations; tests pass scene workers).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from agent.conversation.graph import build_graph
from agent.runtime.store import ImageStore
from tools import failures
from tools.config import Settings, get_settings
from tools.files import FileError, private_dir, private_file

DATABASE = "conversations.sqlite"
"""The checkpointer's file in ``LOCALEDIT_DATA_DIR``."""


def make_understander(settings: Settings) -> Any:
    """The understander ``settings`` ask for: the LLM (``llm_model`` with a server or key; its
    ``llm_timeout``, ``llm_retries``, ``llm_turn_budget``, vision options) or the built-in parser."""
    from agent.language.llm import Understander, make_llm

    return Understander(make_llm(settings, timeout=settings.llm_timeout), settings=settings)


def make_worker(settings: Settings) -> Any:
    """The vision worker ``settings`` ask for (:func:`tools.worker.make_worker`)."""
    from tools.worker import make_worker as make

    return make(settings)


def read_only(path: Path) -> bool:
    """Whether the database at ``path`` exists but it or its folder cannot be written (a read-only
    mount, another user's folder): then its history is opened read-only."""
    return path.is_file() and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))


def open_database(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """The conversations' SQLite file, owner-only, checked readable; a file that is not a database
    (or a damaged one, or one on a full disk) is a :class:`~tools.files.FileError` in one sentence,
    not a failure in the middle of a turn. ``readonly``: opened immutable, without the lock and
    write-ahead-log files a read-only folder cannot take."""
    if readonly:
        db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False, timeout=30)
    else:
        db = sqlite3.connect(str(private_file(path)), check_same_thread=False, timeout=30)
    try:
        db.execute("SELECT count(*) FROM sqlite_master")
        # a small write-ahead log: checkpointed into the database every ~1 MB and cut back to 1 MB after
        db.execute("PRAGMA wal_autocheckpoint = 256")
        db.execute("PRAGMA journal_size_limit = 1048576")
        failures.check_database(db, path)
    except sqlite3.DatabaseError as err:
        db.close()
        raise FileError(failures.open_failed(err, path)) from None
    return db


@dataclass
class Parts:
    """What a conversation runs on; ``graph`` compiles them (with the checkpointer when there is one)."""

    settings: Settings
    worker: Any  # tools.worker.Worker
    understander: Any  # agent.language.llm.Understander
    store: ImageStore
    data: Path  # the private data folder (images/, locks/, the database)
    db: Optional[sqlite3.Connection] = None
    checkpointer: Any = None  # langgraph SqliteSaver on ``db``; None: the caller keeps the threads
    read_only: bool = False  # the data folder cannot be written: history readable, turns refused

    @property
    def db_path(self) -> Path:
        return self.data / DATABASE

    def graph(self) -> Any:
        """The compiled conversation graph on these parts."""
        return build_graph(self.worker, self.understander, self.store, self.settings, self.checkpointer)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()


def assemble(settings: Optional[Settings] = None, *, worker: Any = None, understander: Any = None,
             checkpoints: bool = True) -> Parts:
    """The parts for ``settings`` (default: the process's): a given ``worker`` / ``understander`` is
    used as it is, the others are made from ``settings``. ``checkpoints``: open the SQLite
    checkpointer (False: LangGraph's server keeps the threads, as for Studio)."""
    settings = settings or get_settings()
    data = private_dir(settings.data_dir)  # owner-only: conversations and photos are private
    store = ImageStore(private_dir(data / "images"))
    worker = worker if worker is not None else make_worker(settings)
    understander = understander if understander is not None else make_understander(settings)
    parts = Parts(settings, worker, understander, store, data)
    if checkpoints:
        from langgraph.checkpoint.sqlite import SqliteSaver

        parts.read_only = read_only(data / DATABASE)
        parts.db = open_database(data / DATABASE, parts.read_only)
        parts.checkpointer = SqliteSaver(parts.db)
        parts.checkpointer.is_setup = parts.read_only  # its setup writes (journal mode, tables): they are there
    return parts
