"""The libraries' own progress bars and warnings, off by default in the command line (issue 23).

transformers draws a "Loading weights" bar for every model it loads, diffusers one per pipeline
("Loading pipeline components"), the Hub client logs its retries, and each warns on stderr: dozens
of lines in a scripted chat. ``localedit`` and ``chat-cli`` call :func:`quiet_libraries` unless
``--verbose`` (or ``--debug``) is given; each model load still shows one line of ours instead
(:func:`announce_loads`: "loading the detector (GroundingDINO) ...").

    quiet_libraries(verbose=False)       # bars and library warnings off
    announce_loads()                     # one line per model load on stderr
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Optional, TextIO

LIBRARIES = ("transformers", "diffusers", "huggingface_hub", "accelerate", "segment_anything", "timm", "torch")
"""Loggers set to errors only when quiet."""


def quiet_libraries(verbose: bool = False) -> None:
    """Turn the libraries' progress bars and warnings off (``verbose``: leave them as they are).

    Set through each library's own switches (environment variables read when it is imported, and
    its logging API when it already is), so a later import stays quiet too.
    """
    if verbose:
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    _library_switches()


def _library_switches() -> None:
    """The progress-bar switches of the libraries that have one (each imported only if installed)."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError as err:
        logging.getLogger(__name__).debug("transformers not there: %s", err)
    try:
        from diffusers.utils import logging as df_logging

        df_logging.disable_progress_bar()
        df_logging.set_verbosity_error()
    except ImportError as err:
        logging.getLogger(__name__).debug("diffusers not there: %s", err)
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()


class _LoadLine(logging.Handler):
    """Prints ``  loading <role> from <where> on <device> (<dtype>) ...`` for each model load, on
    ``stream`` (None: whatever ``sys.stderr`` is when the load starts)."""

    def __init__(self, stream: Optional[TextIO] = None):
        super().__init__(logging.INFO)
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if message.startswith("loading "):
                stream = self.stream or sys.stderr
                stream.write(f"  {message} ...\n")
                stream.flush()
        except Exception:  # noqa: BLE001 - a progress line must never fail a load (logging's own rule)
            self.handleError(record)


def announce_loads(stream: Optional[TextIO] = None) -> None:
    """One line of ours on ``stream`` (default: the current stderr) for each model the registry
    loads (a load takes seconds to a minute: the user sees what it waits for without the bars)."""
    logger = logging.getLogger("tools.models")
    if not any(isinstance(h, _LoadLine) for h in logger.handlers):
        logger.addHandler(_LoadLine(stream))
        logger.setLevel(min(logger.getEffectiveLevel(), logging.INFO))


__all__ = ["quiet_libraries", "announce_loads"]
