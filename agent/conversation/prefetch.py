"""Grounding started while BLIP-2 captions a new photo, so the two overlap (issue 22).

The understander reads a message *with* the photo's caption (the parser takes the picture's kind,
spelling and "her" / "him" from it; an LLM sees it in its prompt), so the caption comes first. On the
first turn on a photo that caption is a BLIP-2 call, and grounding (GroundingDINO) and SAM's image
encoder waited for it. They need only the photo and the phrase to ground, and the parser can predict
that phrase without the caption. So ``understand`` reads the message once more without the caption
(the parser alone, microseconds) and, when that reading is a localized edit with a phrase to ground,
:meth:`Prefetch.start` grounds it in a background thread while the caption runs, then computes SAM's
embedding of the photo for the first box found (the segmenter caches it per image content, so the
segment stage's call only decodes its mask).

The speculative result is used only when the plan read with the caption grounds exactly the same
phrase on the same photo (:meth:`Prefetch.take`): every turn ends with the plan, detections and mask
it would have had without the overlap; a mismatch just grounds again (the prefetch is then given up:
its abandonment flag stops an in-process model at its next block). What it costs: on a GPU the two
models run at once (BLIP-2's and GroundingDINO's activations together), and a wrong guess is one
wasted grounding. ``LOCALEDIT_OVERLAP_CAPTION=false`` turns it off.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from concurrent.futures import Future
from typing import Optional

from PIL import Image

from agent.conversation import pipeline
from tools.stopping import abandon_flag
from tools.worker import Worker

log = logging.getLogger(__name__)

HELD = 4
"""Prefetches kept waiting for their ground node; an older one is given up."""

Key = tuple[str, Optional[str], Optional[str]]


class Prefetch:
    """Background groundings keyed by (photo path, phrase, bare target), each taken at most once."""

    def __init__(self, worker: Worker):
        self.worker = worker
        self._lock = threading.Lock()
        self._pending: "OrderedDict[Key, tuple[Future, threading.Event]]" = OrderedDict()

    @staticmethod
    def key(path: str, job: pipeline.Job) -> Key:
        return (str(path), job.phrase, job.bare)

    def start(self, path: str, image: Image.Image, job: pipeline.Job) -> bool:
        """Ground ``job``'s phrase on ``image`` (the version at ``path``) in the background, then warm SAM's
        embedding with the first box; False when there is nothing to ground or it already runs."""
        if not job.phrase or job.action == "global":
            return False
        key = self.key(path, job)
        future: Future = Future()
        given_up = threading.Event()
        with self._lock:
            if key in self._pending:
                return False
            self._pending[key] = (future, given_up)
            while len(self._pending) > HELD:
                _, (_, old) = self._pending.popitem(last=False)
                old.set()

        def run() -> None:
            with abandon_flag(given_up):
                try:
                    found = pipeline.ground(self.worker, image, job)
                except BaseException as err:  # noqa: BLE001 - handed to the ground node, which grounds again
                    future.set_exception(err)
                    return
                future.set_result(found)
                if found and job.action != "add" and not given_up.is_set():
                    try:  # SAM's embedding, cached per image content: the segment stage only decodes
                        self.worker.segment(image, [found[0].box])
                    except Exception as err:  # noqa: BLE001 - a warm-up only: the segment stage runs it again
                        log.info("prefetching SAM's embedding failed: %s", err)

        threading.Thread(target=run, name="localedit-prefetch-ground", daemon=True).start()
        return True

    def take(self, path: str, job: pipeline.Job) -> Optional[Future]:
        """The background grounding of exactly this photo and phrase (removed: taken once), or None.
        Prefetches of the same photo for other phrases are given up."""
        key = self.key(path, job)
        with self._lock:
            taken = self._pending.pop(key, None)
            for other in [k for k in self._pending if k[0] == key[0]]:
                self._pending.pop(other)[1].set()
        return taken[0] if taken else None

    def pending(self) -> list[Key]:
        """The keys waiting to be taken (oldest first)."""
        with self._lock:
            return list(self._pending)
