"""The graph's node runtime: every node wrapped so a failure is one sentence, Stop checked before it,
its start and end announced on the stream; and ``call``, which runs a slow call (the LLM, a vision
call) in a helper thread the turn stops waiting for on Stop or after the call's time limit.

Cancellation: the turn's cancel flag (``configurable["cancel"]``, any ``is_set()``) is checked
before every node, after every diffusion step (the worker's ``cancel``), and every :data:`POLL`
seconds while the LLM or a vision call runs. A call the turn gives up (Stop, or its time limit) is
told so through its own flag (:func:`tools.stopping.abandon_flag`): the in-process worker's models
stop at their next block and the diffusion editors at their next step, so abandoned work does not
compete with the next turn for the CPU or GPU.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Any, Callable, Optional

from langgraph.config import get_config, get_stream_writer
from langgraph.errors import GraphBubbleUp

from agent.conversation import replies
from agent.conversation.state import State
from tools import failures
from tools.stopping import abandon_flag
from tools.types import Cancelled, LocaleditError, WorkerUnavailableError

log = logging.getLogger("agent.conversation.graph")  # the node failures are the graph's
POLL = 0.05  # seconds between looks at the cancel flag while a call runs


def cancel_flag():
    """This turn's cancel flag (``configurable["cancel"]``), or None outside a run or when none was given."""
    try:
        return (get_config().get("configurable") or {}).get("cancel")
    except RuntimeError:
        return None


def safe(name: str, fn: Callable[[State], dict]) -> Callable[[State], dict]:
    """Turn a failure inside a node into a one-sentence reply; the state is left as it was.

    A set cancel flag stops the turn before any node but ``receive`` and ``respond`` runs.
    Each run of the node is announced on the custom stream (what ``Session.send(progress=)``
    receives): ``{"node": name, "event": "start", "target": str}`` (``target``: the plan's object,
    once there is a plan), then ``{"node": name, "event": "end",
    "outcome": "done" | "failed" | "asked" | "stopped", "seconds": s}`` ("asked": an interrupt, the
    question is open; "stopped": Stop / Ctrl-C).
    """
    @functools.wraps(fn)
    def node(state: State) -> dict:
        writer = get_stream_writer()
        started, outcome = time.perf_counter(), "done"
        target = (state.get("plan") or {}).get("target")
        writer({"node": name, "event": "start", **({"target": target} if target else {})})
        try:
            flag = cancel_flag()
            if name not in ("receive", "respond") and flag is not None and flag.is_set():
                raise Cancelled(f"It was stopped before the {name} step.")
            update = fn(state)
            if ((update or {}).get("reply") or {}).get("error"):
                outcome = "failed"
            return update
        except GraphBubbleUp:  # interrupts and other control flow belong to LangGraph
            outcome = "asked"
            raise
        except Cancelled as err:
            outcome = "stopped"
            return {"reply": {"text": replies.stopped(str(err)), "error": False, "cancelled": True}}
        except LocaleditError as err:
            outcome = "failed"
            return {"reply": {"text": str(err), "error": True}}
        except Exception as err:  # noqa: BLE001 - the last net: log it, tell the user one line
            outcome = "failed"
            if failures.describe(err, ".") is not None:  # a full disk, a read-only folder: the turn says which
                raise
            log.exception("node %s failed", name)
            return {"reply": {"text": replies.failed(name, type(err).__name__), "error": True}}
        finally:
            writer({"node": name, "event": "end", "outcome": outcome,
                    "seconds": round(time.perf_counter() - started, 3)})
    return node


def call(what: str, fn: Callable[..., Any], *args: Any, timeout: Optional[float] = None, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in a helper thread, given up on once the turn is cancelled or ``timeout`` passes.

    Raises ``Cancelled`` (Stop / Ctrl-C) or ``WorkerUnavailableError`` (no answer in ``timeout``
    seconds). A call given up is told so (its flag, :func:`tools.stopping.abandon_flag`, is set): the
    in-process models stop at their next block, other work finishes in the background; its result is
    dropped either way. ``what`` names it for the user ("the captioner").
    """
    flag = cancel_flag()
    box: dict[str, Any] = {}
    done, abandoned = threading.Event(), threading.Event()

    def run() -> None:
        try:
            with abandon_flag(abandoned):
                box["value"] = fn(*args, **kwargs)
        except BaseException as err:  # noqa: BLE001 - handed to the waiting turn below
            box["error"] = err
        finally:
            done.set()

    threading.Thread(target=run, name=f"localedit-{what}", daemon=True).start()
    deadline = None if timeout is None else time.monotonic() + timeout
    while not done.wait(POLL):
        if flag is not None and flag.is_set():
            abandoned.set()
            raise Cancelled(f"It was stopped while waiting for {what}.")
        if deadline is not None and time.monotonic() > deadline:
            abandoned.set()
            raise WorkerUnavailableError(f"{what[0].upper() + what[1:]} did not answer within {timeout:g} s; "
                                         f"try again in a moment.")
    if "error" in box:
        raise box["error"]
    return box["value"]
