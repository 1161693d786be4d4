"""Conversation database size: N undo / redo turns on one thread, with and without pruning.

    python -m bench.history                 # 200 turns; keep 20 checkpoints (the default) vs keep all
    python -m bench.history --turns 1000 --keep 20 50

Each turn goes through the real graph, checkpointer and thread lock (undo and redo are read before
any model is needed, so this runs no model). Prints one table: checkpoints kept, the database size
on disk (with its write-ahead log), the time per turn, and whether every version and message
survived (the newest checkpoint holds them all).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from PIL import Image


def run(turns: int, keep: int, folder: Path) -> dict:
    """``turns`` undo / redo turns on a fresh thread; returns the figures of one table row."""
    from agent.runtime import history
    from agent.language.llm import Understander
    from agent.runtime.session import Conversations
    from tools.config import Settings
    from tools.worker import LocalWorker

    settings = Settings(data_dir=folder, keep_checkpoints=keep, _env_file=None)
    conv = Conversations(settings, worker=LocalWorker(settings), understander=Understander(None))
    chat = conv.session("bench")
    for shade in (90, 160):  # two versions to move between
        chat.send("", image=Image.new("RGB", (96, 64), (shade, 120, 140)))
    started = time.perf_counter()
    for i in range(turns):
        chat.send("undo" if i % 2 == 0 else "redo")
    seconds = (time.perf_counter() - started) / max(1, turns)
    row = {"keep": keep, "turns": turns, "checkpoints": history.count(conv.checkpointer, "bench"),
           "bytes": history.database_bytes(conv.db_path), "ms_per_turn": 1000 * seconds,
           "versions": len(chat.versions()), "messages": len(chat.history())}
    conv.close()
    return row


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--turns", type=int, default=200)
    p.add_argument("--keep", type=int, nargs="+", default=[20, 10**9], help="checkpoints kept per thread")
    args = p.parse_args(argv)
    print(f"| keep | turns | checkpoints | database | ms / turn | versions | messages |")
    print("|---|---|---|---|---|---|---|")
    for keep in args.keep:
        with tempfile.TemporaryDirectory() as tmp:
            r = run(args.turns, keep, Path(tmp))
        label = "all" if keep >= 10**9 else str(keep)
        print(f"| {label} | {r['turns']} | {r['checkpoints']} | {r['bytes'] / 1e6:.2f} MB | {r['ms_per_turn']:.1f} | "
              f"{r['versions']} | {r['messages']} |")


if __name__ == "__main__":
    main()
