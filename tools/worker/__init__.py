"""The worker service: the vision tools behind one interface, in-process or over the network.

========================  ===================================================================
module                    what it holds
========================  ===================================================================
``interface``             :class:`Worker`, the protocol the agent talks to (no torch here)
``local``                 :class:`LocalWorker`: the tools in this process (the default)
``wire``                  the JSON wire format: images, masks and results as JSON values
``server``                ``localedit worker``: a ``LocalWorker`` behind FastAPI (``tools.http_guard``, limits)
``batch``                 batched InstructPix2Pix calls of several requests (``BatchedPipe``)
``client``                :class:`RemoteWorker`: the ``Worker`` interface over HTTP
``serve``                 the same HTTP app as a Ray Serve deployment (one replica per GPU)
``cli``                   the ``localedit worker`` sub-command (``python -m tools.worker``)
========================  ===================================================================
"""

from __future__ import annotations

from typing import Optional

from tools.worker.interface import ProgressFn, Worker
from tools.worker.local import LocalWorker


def configured_token(settings) -> Optional[str]:
    """The worker token the settings name: ``worker_token``, else the first line of ``worker_token_file``
    (``LOCALEDIT_WORKER_TOKEN`` / ``LOCALEDIT_WORKER_TOKEN_FILE``, from the environment or ``.env``)."""
    if settings.worker_token:
        return settings.worker_token
    if settings.worker_token_file:
        from tools.files import read_secret

        return read_secret(settings.worker_token_file)
    return None


def make_worker(settings=None) -> Worker:
    """The worker the settings ask for: in-process by default, remote when ``worker_url`` is set."""
    from tools.config import get_settings

    settings = settings or get_settings()
    if settings.worker_url:
        from tools.worker.client import RemoteWorker

        return RemoteWorker(settings.worker_url, token=configured_token(settings), timeout=settings.worker_timeout,
                            timeouts={"caption": settings.caption_timeout, "ground": settings.ground_timeout,
                                      "segment": settings.segment_timeout, "score": settings.score_timeout})
    return LocalWorker(settings)


__all__ = ["Worker", "ProgressFn", "LocalWorker", "make_worker", "configured_token"]
