"""What one worker request may cost, checked before the work starts.

* :func:`parse_json`: the request body as strict JSON: ``NaN`` / ``Infinity`` (which Python's
  ``json`` accepts and JSON does not) and nesting deeper than :data:`MAX_DEPTH` are refused (400),
  never a 500.
* :func:`estimate_bytes`: the memory a request will need, from the image sizes in the PNG headers
  (nothing decoded yet), with the per-pixel costs in :data:`BYTES_PER_PIXEL`; above
  ``max_request_memory`` the request is refused with 413 and the figure.
* :class:`MemoryBudget`: the estimates of the requests running at once stay within
  ``max_request_memory`` together; a request waits for room until its deadline (then 503).

:class:`Refusal` is the exception every check raises: an HTTP status and one sentence.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Iterable, Optional

from tools.files import human_bytes

MAX_DEPTH = 16
"""Deepest JSON nesting a request may have (the worker's own bodies are at most 3 deep)."""

BYTES_PER_PIXEL = {"caption": 12, "ground": 12, "segment": 20, "edit": 24, "score": 48}
"""Peak memory per input pixel of each route, set from ``python -m bench.soak --memory`` (tiny
models on the CPU, noise photos of 0.75-6.75 MP, 2026-12-01; the models' own memory is resident
and not counted) with the estimate 1.2-2.5x the measured peak: decoding (PIL keeps RGB as
4 B/px), content hashes, masks, the full-size composite (a mask of the whole photo) and the PNG +
base64 answer for ``/edit``; ``/score`` holds both decoded images and reads them in bands of
rows for the pixel metrics (tools.score), so its peak is about 24 B/px (remeasured 2026-12-01)."""

BASE_BYTES = 16 << 20
"""Fixed cost of any request (model inputs at the work size, Python objects)."""

ENCODED_FACTOR = 4
"""Bytes held per byte of encoded image while a request runs: the body (base64, 4/3), its parsed
JSON text (4/3 again) and the decoded PNG bytes (1)."""


class Refusal(Exception):
    """A request refused with an HTTP status and a one-sentence reason."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


class _NotJSON(ValueError):
    pass


def _no_constants(name: str) -> Any:
    raise _NotJSON(name)


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON (iterative: no recursion limit of its own)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_json(data: bytes) -> dict:
    """The body as a JSON object, or a :class:`Refusal` (400) saying what is wrong with it."""
    try:
        value = json.loads(data, parse_constant=_no_constants)
    except _NotJSON as err:
        raise Refusal(400, f"The request body contains {err}, which is not a number JSON allows.") from None
    except RecursionError:
        raise Refusal(400, f"The request body is nested too deeply (more than {MAX_DEPTH} levels).") from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        raise Refusal(400, "The request body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise Refusal(400, "The request body must be a JSON object.")
    if _depth(value) > MAX_DEPTH:
        raise Refusal(400, f"The request body is nested too deeply (more than {MAX_DEPTH} levels).")
    return value


def estimate_bytes(route: str, sizes: Iterable[tuple[int, int]], encoded: int = 0) -> int:
    """Estimated peak memory of ``route`` on images of ``sizes`` (width, height); ``encoded``: the
    bytes of the request's encoded images, held (as body, text and bytes) while it runs."""
    pixels = max((w * h for w, h in sizes), default=0)
    return BASE_BYTES + ENCODED_FACTOR * encoded + BYTES_PER_PIXEL[route] * pixels


def check_estimate(route: str, need: int, limit: int, size: Optional[tuple[int, int]] = None) -> None:
    """Refuse (413) a request whose estimate ``need`` is above ``limit``."""
    if need > limit:
        what = f" for a {size[0]}x{size[1]} image" if size else ""
        raise Refusal(413, f"This {route} request would need about {human_bytes(need)} of memory{what}, more "
                           f"than the worker's {human_bytes(limit)} limit (LOCALEDIT_MAX_REQUEST_MEMORY); "
                           f"send a smaller image.")


class Ticket:
    """Room reserved in a :class:`MemoryBudget`; :meth:`release` (idempotent) gives it back."""

    def __init__(self, budget: Optional["MemoryBudget"], nbytes: int):
        self._budget, self.nbytes = budget, nbytes

    def release(self) -> None:
        budget, self._budget = self._budget, None
        if budget is not None:
            budget._give_back(self.nbytes)

    def __enter__(self) -> "Ticket":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class MemoryBudget:
    """Estimated bytes of the requests running at once, kept within ``capacity`` (thread-safe).

    A request that does not fit waits until others finish, until its ``deadline`` passes or its
    ``cancel`` flag is set (then :class:`Refusal` 503). One request never exceeds the capacity
    (:func:`check_estimate` refused it before).
    """

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self.used = 0
        self.peak = 0
        self._cond = threading.Condition()

    def reserve(self, nbytes: int, deadline: float, cancel: Optional[threading.Event] = None) -> Ticket:
        nbytes = min(int(nbytes), self.capacity)
        with self._cond:
            while self.used + nbytes > self.capacity:
                left = deadline - time.monotonic()
                if left <= 0 or (cancel is not None and cancel.is_set()):
                    raise Refusal(503, "The worker is busy with other large requests; try again in a moment.")
                self._cond.wait(min(left, 0.25))
            self.used += nbytes
            self.peak = max(self.peak, self.used)
        return Ticket(self, nbytes)

    def _give_back(self, nbytes: int) -> None:
        with self._cond:
            self.used -= nbytes
            self._cond.notify_all()

    def stats(self) -> dict[str, int]:
        return {"capacity": self.capacity, "used": self.used, "peak": self.peak}


__all__ = ["MAX_DEPTH", "BYTES_PER_PIXEL", "BASE_BYTES", "ENCODED_FACTOR", "Refusal", "parse_json", "estimate_bytes",
           "check_estimate", "Ticket", "MemoryBudget"]
