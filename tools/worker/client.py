"""The remote worker: the :class:`~tools.worker.interface.Worker` interface over HTTP.

``RemoteWorker(url, token)`` talks to ``localedit worker`` (:mod:`tools.worker.server`) or to the same
service on Ray Serve (:mod:`tools.worker.serve`); the agent cannot tell it from the in-process worker.

Routes (JSON in, JSON out, UTF-8; values as :mod:`tools.worker.wire` encodes them):

* ``POST /caption`` ``{image}`` -> ``{text, kind, cache_hit}``
* ``POST /ground`` ``{image, phrase, box_threshold?, text_threshold?}`` -> ``{detections: [{label, score, box}]}``
* ``POST /segment`` ``{image, boxes, points?, point_labels?}`` -> ``{mask, score, source, note, cache_hit}``
  (boxes alone: a mask per box, united; points: one prompt with at most one box)
* ``POST /edit`` ``{image, mask?, request: {EditRequest fields}, stream?}`` -> ``{image, editor, seconds,
  info, region?}``; with ``"stream": true`` the answer is NDJSON, one object a line:
  ``{"progress": [step, total]}`` ... then ``{"result": {...}}`` or ``{"error": {"status", "detail"}}``
* ``POST /score`` ``{original, edited, mask?, box?, boxes?, source_caption, target_caption, target_text,
  source_text}`` ->
  the :class:`~tools.types.Scores` fields (``cache_hits`` included)
* ``GET /health`` (process up), ``GET /ready`` (models loaded and warmed; 503 until then),
  ``GET /status`` (the worker's status: device, loaded models, cache sizes and hits)

Errors are ``{"detail": "one sentence"}`` with 400/422 (bad request), 401 (token), 413 (too large),
503 (not ready / model missing), 504 (timeout) or 500. Every answer names the replica that served it
in the ``X-Localedit-Replica`` header. Requests about one photo (caption, segment, score) carry its content
hash in the ``serve_multiplexed_model_id`` header: Ray Serve routes them to the replica holding its caches. The client maps a refused connection, a timeout and any 5xx to
:class:`WorkerUnavailableError`, and a 4xx to :class:`LocaleditError` carrying the server's reason.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Iterator, Optional, Sequence

import httpx
import numpy as np
from PIL import Image

from tools.stopping import current_flag, either
from tools.types import Box, CancelFlag, Cancelled, Caption, Detection, EditRequest, EditResult, LocaleditError, \
    Point, Scores, Segmentation, WorkerUnavailableError
from tools.worker.interface import ProgressFn
from tools.worker.wire import (AFFINITY_HEADER, REPLICA_HEADER, caption_from_wire, detections_from_wire, edit_result_from_wire,
                               encode_image, encode_mask, request_to_wire, scores_from_wire,
                               segment_request_to_wire, segmentation_from_wire)



class RemoteWorker:
    """A :class:`~tools.worker.Worker` whose models run in a ``localedit worker`` service.

    Args:
        url: the service's base URL, e.g. ``http://127.0.0.1:8800``.
        token: the bearer token the service was started with (None: send none).
        timeout: seconds to wait for one answer (connecting waits at most 10 s); an edit's limit.
        timeouts: shorter limits per route, e.g. ``{"caption": 30, "ground": 30, "segment": 30,
            "score": 60}`` (seconds); a route not named waits ``timeout``.
        affinity: send the photo's content hash (:data:`~tools.worker.wire.AFFINITY_HEADER`) with the
            requests that use the per-image caches (caption, segment, score), so Ray Serve routes a
            follow-up to the replica that cached the photo; False sends none (the benchmark's baseline).

    The client is thread-safe (one pooled ``httpx.Client``); ``replicas`` counts which replica
    (``X-Localedit-Replica``) served each answer.
    """

    def __init__(self, url: str, token: Optional[str] = None, timeout: float = 300.0,
                 timeouts: Optional[dict[str, float]] = None, affinity: bool = True):
        self.url = url.rstrip("/")
        self.timeouts = {route: httpx.Timeout(t, connect=min(10.0, t)) for route, t in (timeouts or {}).items()}
        self.affinity = affinity
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=self.url, headers=headers,
                                    timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)))
        self.replicas: Counter[str] = Counter()

    # --- transport ---------------------------------------------------------------------------

    def _unavailable(self, why: str = "") -> WorkerUnavailableError:
        return WorkerUnavailableError(f"The vision worker at {self.url} is not reachable right now{why}; "
                                      f"check that `localedit worker` is running there and try again.")

    def _raise_for(self, status: int, detail: str) -> None:
        if status < 400:
            return
        if status >= 500:
            if status == 504:
                raise WorkerUnavailableError(f"The vision worker at {self.url} did not finish in time: {detail}")
            raise WorkerUnavailableError(f"The vision worker at {self.url} cannot serve this right now: {detail}")
        raise LocaleditError(detail)

    @staticmethod
    def _detail(response: httpx.Response) -> str:
        try:
            detail = response.json().get("detail")
        except (ValueError, AttributeError):
            detail = None
        if isinstance(detail, list):  # FastAPI's own validation format
            detail = "; ".join(str(d.get("msg", d)) for d in detail)
        return str(detail or f"HTTP {response.status_code} {response.reason_phrase}.")

    def _about(self, image: Image.Image) -> Optional[dict]:
        """The affinity header for a request about ``image`` (None when affinity is off)."""
        if not self.affinity:
            return None
        from tools.images import content_hash

        return {AFFINITY_HEADER: content_hash(image)}

    def _request(self, method: str, route: str, payload: Optional[dict] = None,
                 headers: Optional[dict] = None) -> dict:
        limit = self.timeouts.get(route.strip("/"))
        try:
            response = self._client.request(method, route, json=payload, headers=headers,
                                            **({"timeout": limit} if limit is not None else {}))
        except httpx.TimeoutException as err:
            raise self._unavailable(" (it did not answer in time)") from err
        except httpx.TransportError as err:  # refused, reset, closed mid-answer
            raise self._unavailable() from err
        self.replicas[response.headers.get(REPLICA_HEADER, "?")] += 1
        self._raise_for(response.status_code, self._detail(response))
        return response.json()

    def _stream_edit(self, payload: dict, progress: Optional[ProgressFn], cancel: Optional[CancelFlag]) -> dict:
        """POST /edit with ``stream``: progress lines, then the result. Once ``cancel`` is set the
        connection is closed at the next line, and the server stops the edit at its next step."""
        try:
            with self._client.stream("POST", "/edit", json={**payload, "stream": True}) as response:
                self.replicas[response.headers.get(REPLICA_HEADER, "?")] += 1
                if response.status_code >= 400:
                    response.read()
                    self._raise_for(response.status_code, self._detail(response))
                for line in self._lines(response.iter_lines()):
                    if cancel is not None and cancel.is_set():
                        raise Cancelled("The edit was stopped.")
                    if "progress" in line and progress is not None:
                        progress(*line["progress"])
                    elif "error" in line:
                        self._raise_for(int(line["error"]["status"]), line["error"]["detail"])
                    elif "result" in line:
                        return line["result"]
        except httpx.TimeoutException as err:
            raise self._unavailable(" (it did not answer in time)") from err
        except httpx.TransportError as err:
            raise self._unavailable(" (the connection broke during the edit)") from err
        raise self._unavailable(" (the edit stream ended without a result)")

    @staticmethod
    def _lines(lines: Iterator[str]) -> Iterator[dict]:
        for line in lines:
            if line.strip():
                yield json.loads(line)

    # --- the Worker interface ---------------------------------------------------------------

    def caption(self, image: Image.Image) -> Caption:
        return caption_from_wire(self._request("POST", "/caption", {"image": encode_image(image)},
                                               headers=self._about(image)))

    def ground(self, image: Image.Image, phrase: str, *, box_threshold: Optional[float] = None,
               text_threshold: Optional[float] = None) -> list[Detection]:
        return detections_from_wire(self._request("POST", "/ground", {
            "image": encode_image(image), "phrase": phrase, "box_threshold": box_threshold,
            "text_threshold": text_threshold}))

    def segment(self, image: Image.Image, boxes: Sequence[Box] = (), points: Sequence[Point] = (),
                point_labels: Optional[Sequence[int]] = None) -> Segmentation:
        return segmentation_from_wire(self._request("POST", "/segment", segment_request_to_wire(
            image, boxes, points, point_labels), headers=self._about(image)))

    def edit(self, image: Image.Image, mask: Optional[np.ndarray], request: EditRequest,
             progress: Optional[ProgressFn] = None, cancel: Optional[CancelFlag] = None) -> EditResult:
        cancel = either(cancel, current_flag())  # a call the turn gives up (Stop, its limit) stops here too
        if cancel is not None and cancel.is_set():
            raise Cancelled("The edit was stopped before it started.")
        payload = {"image": encode_image(image), "mask": None if mask is None else encode_mask(mask),
                   "request": request_to_wire(request)}
        if progress is None and cancel is None:
            return edit_result_from_wire(self._request("POST", "/edit", payload))
        return edit_result_from_wire(self._stream_edit(payload, progress, cancel))

    def score(self, original: Image.Image, edited: Image.Image, *, mask: Optional[np.ndarray] = None,
              box: Optional[Box] = None, boxes: Sequence[Box] = (), source_caption: str = "",
              target_caption: str = "", target_text: str = "", source_text: str = "") -> Scores:
        return scores_from_wire(self._request("POST", "/score", {
            "original": encode_image(original), "edited": encode_image(edited),
            "mask": None if mask is None else encode_mask(mask),
            "box": None if box is None else [float(v) for v in box],
            "boxes": [[float(v) for v in b] for b in boxes], "source_caption": source_caption,
            "target_caption": target_caption, "target_text": target_text, "source_text": source_text},
            headers=self._about(original)))

    def status(self) -> dict:
        """The service's status (``/status``), with ``kind: "remote"`` and the URL added."""
        return {**self._request("GET", "/status"), "kind": "remote", "url": self.url}

    def ready(self) -> bool:
        """Whether the service answers ``/ready`` with 200 (models loaded and warmed)."""
        try:
            return self._client.get("/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self._client.close()


__all__ = ["RemoteWorker"]
