"""Bounded checkpoint history: keep the newest N checkpoints of a thread, drop the rest.

LangGraph's ``SqliteSaver`` writes a whole copy of the thread's state at every checkpoint and
never deletes one, so a long conversation grows without bound (200 undo / redo turns made 1,204
checkpoints and 22.9 MB). Every checkpoint holds the *whole* state (image versions with their edit
records, the messages, an open question's interrupt in the newest one's pending writes), so the
newest checkpoint alone restores the conversation: pruning older ones loses no version, image or
message, only LangGraph's time travel to steps older than the kept ones. Images live in the
``ImageStore`` and are never deleted.
"""

from __future__ import annotations

from pathlib import Path

from langgraph.checkpoint.sqlite import SqliteSaver


def prune(saver: SqliteSaver, thread_id: str, keep: int) -> int:
    """Delete all but the newest ``keep`` (>= 1) checkpoints of ``thread_id`` and their writes.

    Returns how many checkpoints were deleted. Checkpoint ids sort by time (LangGraph's uuid6), so
    "newest" is the largest id, the same order ``SqliteSaver.get_tuple`` reads the latest by.
    """
    keep = max(1, int(keep))
    with saver.cursor() as cur:  # the saver's own lock and connection: never interleaved with its writes
        cur.execute("SELECT checkpoint_id FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = '' "
                    "ORDER BY checkpoint_id DESC LIMIT -1 OFFSET ?", (str(thread_id), keep))
        old = [row[0] for row in cur.fetchall()]
        if not old:
            return 0
        oldest_kept = cur.execute("SELECT checkpoint_id FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = '' "
                                  "ORDER BY checkpoint_id DESC LIMIT 1 OFFSET ?", (str(thread_id), keep - 1)
                                  ).fetchone()[0]
        cur.execute("DELETE FROM checkpoints WHERE thread_id = ? AND checkpoint_id < ?", (str(thread_id), oldest_kept))
        cur.execute("DELETE FROM writes WHERE thread_id = ? AND checkpoint_id < ?", (str(thread_id), oldest_kept))
    return len(old)


def count(saver: SqliteSaver, thread_id: str) -> int:
    """How many checkpoints ``thread_id`` has."""
    with saver.cursor(transaction=False) as cur:
        return cur.execute("SELECT COUNT(*) FROM checkpoints WHERE thread_id = ?", (str(thread_id),)).fetchone()[0]


def database_bytes(path: str | Path) -> int:
    """Size on disk of a SQLite database with its write-ahead log and shared-memory file."""
    path = Path(path)
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())
