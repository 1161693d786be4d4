"""The failures of the machine rather than the input: a full disk, a read-only folder, a damaged database.

Each becomes one sentence that says what happened and what to do (``describe``); callers show it in
place of "Something went wrong (OperationalError)" and log no traceback, since nothing is wrong
with the program. The cases and their sentences are listed in ``docs/errors.md``.

    describe(err, data_dir)   # -> "The disk holding ... is full ..." or None (not one of these)
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from pathlib import Path
from typing import Optional

from tools.files import human_bytes

FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
"""No space left, quota exceeded, file too large (``RLIMIT_FSIZE``): the disk cannot take more."""

READ_ONLY_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}
"""A read-only file system, or a folder the user may not write to."""


LOW_SPACE = 256 * 1024
"""Below this many free bytes a database that will not open is put down to the full disk: SQLite
says only "disk I/O error" when it cannot create its write-ahead log."""


def _sqlite_text(err: BaseException) -> str:
    return str(err).lower() if isinstance(err, sqlite3.Error) else ""


def _chain(err: BaseException):
    """``err`` and the errors it was raised from (a library may wrap the OSError)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` (or what it was raised from) says the disk is full."""
    return any((isinstance(e, OSError) and e.errno in FULL_ERRNOS) or "disk is full" in _sqlite_text(e)
               for e in _chain(err))


def is_read_only(err: BaseException) -> bool:
    """Whether ``err`` says a file or folder could not be written because it is read-only."""
    return any((isinstance(e, OSError) and e.errno in READ_ONLY_ERRNOS) or "readonly database" in _sqlite_text(e)
               or "read-only" in _sqlite_text(e) for e in _chain(err))


def is_damaged(err: BaseException) -> bool:
    """Whether ``err`` is SQLite finding the database file damaged (or not a database)."""
    return any(isinstance(e, sqlite3.DatabaseError) and ("malformed" in _sqlite_text(e)
                                                          or "not a database" in _sqlite_text(e))
               for e in _chain(err))


def free_space(folder: str | Path) -> Optional[int]:
    """Bytes free on the disk holding ``folder`` (None if it cannot be asked)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def disk_full(data_dir: str | Path) -> str:
    """The sentence for a full disk under localedit's data folder."""
    data = Path(data_dir).expanduser()
    free = free_space(data)
    left = f"{human_bytes(free)} free" if free is not None else "no space left"
    return (f"The disk holding localedit's data folder {str(data)!r} is full ({left}): free some space on it "
            f"(files you no longer need, or the images of old conversations in {str(data / 'images')!r}) "
            f"and try again; your images and our conversation are unchanged.")


def read_only(data_dir: str | Path) -> str:
    """The sentence for a data folder that cannot be written."""
    data = Path(data_dir).expanduser()
    return (f"localedit's data folder {str(data)!r} is read-only, so nothing can be saved: the history can "
            f"still be viewed; make the folder writable, or set LOCALEDIT_DATA_DIR to a writable folder, to edit.")


def damaged(db_path: str | Path, err: BaseException, readable: Optional[int] = None) -> str:
    """The sentence for a damaged conversation database: what still reads, where the images are."""
    db = Path(db_path)
    images = db.parent / "images"
    count = sum(1 for _ in images.glob("*.png")) if images.is_dir() else 0
    what = "no conversation in it can be read" if not readable else \
        f"{readable} conversation{'s' if readable != 1 else ''} in it can still be listed"
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    return (f"The conversation database {str(db)!r} is damaged ({reason}): {what}, and all {count} images are "
            f"safe in {str(images)!r}; move the database away (or recover it with `sqlite3 {db.name} .recover`) "
            f"to start afresh.")


def check_database(db: sqlite3.Connection, db_path: str | Path) -> None:
    """Raise ``sqlite3.DatabaseError`` if SQLite's ``quick_check`` finds the open database damaged.

    A damaged page in the middle of the file is otherwise found only by the query that reads it, in
    the middle of a turn. ``quick_check`` reads every page once (milliseconds for a database of a
    few MB: the checkpoints are pruned).
    """
    problems = [row[0] for row in db.execute("PRAGMA quick_check(1)")]
    if problems != ["ok"]:
        raise sqlite3.DatabaseError("database disk image is malformed")


def readable_threads(db_path: str | Path) -> Optional[int]:
    """How many conversations a damaged database still lists (None: not even that), read-only."""
    try:
        db = sqlite3.connect(f"file:{Path(db_path)}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        return int(db.execute("SELECT count(DISTINCT thread_id) FROM checkpoints").fetchone()[0])
    except sqlite3.Error:
        return None
    finally:
        db.close()


def open_failed(err: sqlite3.DatabaseError, db_path: str | Path) -> str:
    """The sentence for a conversation database that cannot be opened: full disk, damaged, read-only."""
    db = Path(db_path)
    free = free_space(db.parent)
    if is_disk_full(err) or (free is not None and free < LOW_SPACE):  # "disk I/O error" creating the log
        return disk_full(db.parent)
    if is_damaged(err):
        return damaged(db, err, readable_threads(db))
    if is_read_only(err):
        return read_only(db.parent)
    return f"The conversation database {str(db)!r} cannot be read ({err}); move it away to start afresh."


def describe(err: BaseException, data_dir: str | Path) -> Optional[str]:
    """One sentence for a machine failure under ``data_dir`` (full, read-only, damaged), or None."""
    if is_disk_full(err):
        return disk_full(data_dir)
    if is_damaged(err):
        db = Path(data_dir).expanduser() / "conversations.sqlite"
        return damaged(db, err, readable_threads(db))
    if is_read_only(err):
        return read_only(data_dir)
    return None


__all__ = ["describe", "check_database", "open_failed", "readable_threads", "disk_full", "read_only", "damaged", "is_disk_full", "is_read_only", "is_damaged", "free_space"]
