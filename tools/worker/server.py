"""``localedit worker``: the vision tools behind an HTTP API on one machine (FastAPI + uvicorn).

    localedit worker                                  # http://127.0.0.1:8800, no token needed on loopback
    localedit worker --host 0.0.0.0 --token SECRET    # any other address REQUIRES a token
    localedit worker --ray                            # the same service on Ray Serve (tools.worker.serve)

The routes are described in :mod:`tools.worker.client`, the JSON values in :mod:`tools.worker.wire`. Here:

* models are loaded once and warmed up at start (a tiny call per tool, in a background thread):
  ``/health`` answers as soon as the process is up, ``/ready`` only once warm-up is done;
* with a token (``--token`` / ``LOCALEDIT_WORKER_TOKEN``) every route but ``/health`` and ``/ready``
  needs ``Authorization: Bearer <token>``, compared in constant time (401 otherwise);
* a request body may be at most :func:`request_limit` bytes (413) and must arrive within
  ``upload_timeout`` seconds (408); it is read as strict JSON (400: NaN, Infinity, too deep) and
  checked field by field (422); each image in it at most ``max_upload_bytes``, and within the
  pixel, side and aspect-ratio limits;
* before any pixel is decoded, the memory the request will need is estimated from the image
  headers (:mod:`tools.worker.limits`): above ``max_request_memory`` it is refused (413, with the
  figure), and the requests running at once stay within that budget together;
* every request runs under ``worker_timeout`` seconds (504). When its answer is no longer wanted
  (timed out, or the client went away) its cancel flag is set: an edit stops at its next diffusion
  step, and a request still waiting for the model never starts. Client mistakes answer 4xx with one
  sentence and leave no traceback in the log; any failure answers that request only.

:class:`WorkerService` (JSON body in, JSON-able dict out) and :func:`create_app` are shared with the
Ray Serve deployment, which passes its own batched edit runner.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
import threading
import time
from collections import Counter
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Awaitable, Callable, Iterator, Literal, Optional

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.requests import ClientDisconnect

from tools.config import Settings
from tools.files import human_bytes
from tools.http_guard import ServiceGuard, bind, check_bind, is_loopback, serve_app  # noqa: F401 - is_loopback: serve.py
from tools.images import probe_image
from tools.stopping import abandon_flag
from tools.types import Box, Cancelled, EditRequest, EditResult, LocaleditError, ModelMissingError, WorkerUnavailableError
from tools.worker.batch import BatchItem, run_grouped
from tools.worker.interface import ProgressFn
from tools.worker.limits import MemoryBudget, Refusal, Ticket, check_estimate, estimate_bytes, parse_json
from tools.worker.wire import (REPLICA_HEADER, caption_to_wire, detections_to_wire, edit_result_to_wire,
                               field_bytes, image_from_bytes, mask_from_bytes, scores_to_wire, segmentation_to_wire)

log = logging.getLogger(__name__)

DEFAULT_PORT = 8800
OPEN_PATHS = frozenset({"/health", "/ready"})  # probes answer without a token

FourFloats = tuple[float, float, float, float]
TwoFloats = tuple[Annotated[float, Field(allow_inf_nan=False)], Annotated[float, Field(allow_inf_nan=False)]]


# --------------------------------------------------------------------------- request bodies


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CaptionBody(_Body):
    image: str


class GroundBody(_Body):
    image: str
    phrase: str = Field(min_length=1, max_length=2000)
    box_threshold: Optional[float] = Field(None, ge=0, le=1)
    text_threshold: Optional[float] = Field(None, ge=0, le=1)


class SegmentBody(_Body):
    """``boxes`` alone, or ``points`` (with at most one box): see ``Worker.segment``."""

    image: str
    boxes: list[FourFloats] = Field(default_factory=list, max_length=64)
    points: list[TwoFloats] = Field(default_factory=list, max_length=64)
    point_labels: Optional[list[Literal[0, 1]]] = None

    @model_validator(mode="after")
    def _prompt(self) -> "SegmentBody":
        if not self.boxes and not self.points:
            raise ValueError("give at least one box or point")
        if self.points and len(self.boxes) > 1:
            raise ValueError("points refine one object: give at most one box with them")
        if self.point_labels is not None and len(self.point_labels) != len(self.points):
            raise ValueError(f"{len(self.points)} points but {len(self.point_labels)} point labels")
        return self


class EditBody(_Body):
    image: str
    mask: Optional[str] = None
    request: EditRequest
    stream: bool = False


class ScoreBody(_Body):
    original: str
    edited: str
    mask: Optional[str] = None
    box: Optional[FourFloats] = None
    boxes: list[FourFloats] = Field(default_factory=list, max_length=64)
    source_caption: str = Field("", max_length=2000)
    target_caption: str = Field("", max_length=2000)
    target_text: str = Field("", max_length=2000)
    source_text: str = Field("", max_length=2000)


IMAGE_FIELDS = {"caption": ("image",), "ground": ("image",), "segment": ("image",), "edit": ("image", "mask"),
                "score": ("original", "edited", "mask")}
"""The fields of each route's body that carry an image (base64 PNG)."""


@dataclass
class EditJob:
    """One decoded edit request, ready for the worker (and for batching)."""

    image: Any  # PIL image
    mask: Optional[np.ndarray]
    request: EditRequest
    progress: Optional[ProgressFn] = None
    cancel: threading.Event = field(default_factory=threading.Event)  # set: the client went away or time ran out
    ticket: Ticket = field(default_factory=lambda: Ticket(None, 0))  # its room in the memory budget


def request_limit(settings: Settings) -> int:
    """Largest accepted request body: two images of ``max_upload_bytes`` in base64, plus 1 MiB."""
    return 2 * 4 * ((settings.max_upload_bytes + 2) // 3) + (1 << 20)


# --------------------------------------------------------------------------- the service


class WorkerService:
    """The vision tools as JSON-in, JSON-out calls around one :class:`~tools.worker.local.LocalWorker`.

    Args:
        settings: the worker's settings (limits, timeout, models).
        worker: the worker to serve (default: a new ``LocalWorker(settings)``).
        replica: a name for this process in answers and ``/status`` (default ``host:pid``).
        kind: what ``/status`` reports as ``kind`` ("http" or "ray").
    """

    def __init__(self, settings: Settings, worker=None, replica: Optional[str] = None, kind: str = "http"):
        from tools.worker.local import LocalWorker

        self.settings = settings
        self.worker = worker if worker is not None else LocalWorker(settings)
        self.replica = replica or f"{socket.gethostname()}:{os.getpid()}"
        self.kind = kind
        self.ready = False
        self.warm_error: Optional[str] = None
        self.warm_seconds: Optional[float] = None
        self.started = time.time()
        self.requests: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self._warm_lock = threading.Lock()
        # the worker's own lock (one model call at a time); batches hold it for the whole batch
        self._model_lock = getattr(self.worker, "_run_lock", None) or threading.RLock()
        self.waiting = 0  # requests waiting for the model lock now (``/status``: ``waiting_for_model``)
        self._waiting_lock = threading.Lock()
        self.budget = MemoryBudget(settings.max_request_memory)

    @contextmanager
    def _model(self) -> Iterator[None]:
        """The model lock (one model call at a time), counting the requests that wait for it."""
        with self._waiting_lock:
            self.waiting += 1
        try:
            self._model_lock.acquire()
        finally:
            with self._waiting_lock:
                self.waiting -= 1
        try:
            yield
        finally:
            self._model_lock.release()

    # --- admission and decoding -----------------------------------------------------------------

    def _limits(self) -> dict[str, Any]:
        s = self.settings
        return {"max_bytes": s.max_upload_bytes, "max_pixels": s.max_image_pixels, "max_side": s.max_image_side,
                "max_aspect": s.max_aspect_ratio}

    def admit(self, route: str, body: _Body, cancel: Optional[threading.Event] = None,
              deadline: Optional[float] = None) -> tuple[dict[str, bytes], Ticket]:
        """The encoded images of ``body`` and their room in the memory budget.

        Every image header is checked against the limits, the request's memory is estimated from
        the sizes (nothing decoded yet) and refused above ``max_request_memory`` (413); then it
        waits for room in the budget until ``deadline`` (``time.monotonic()``; 503 after).
        """
        raw = {name: field_bytes(getattr(body, name), name) for name in IMAGE_FIELDS[route]
               if getattr(body, name, None) is not None}
        sizes = [probe_image(data, name=f"The field '{name}'", **self._limits())[0] for name, data in raw.items()]
        need = estimate_bytes(route, sizes, sum(len(d) for d in raw.values()))
        check_estimate(route, need, self.settings.max_request_memory, sizes[0] if sizes else None)
        limit = deadline if deadline is not None else time.monotonic() + float(self.settings.worker_timeout)
        return raw, self.budget.reserve(need, limit, cancel)

    def image(self, data: bytes, field: str = "image"):
        return image_from_bytes(data, field, **self._limits())

    def mask(self, data: Optional[bytes], size: tuple[int, int], field: str = "mask") -> Optional[np.ndarray]:
        if data is None:
            return None
        mask = mask_from_bytes(data, field, **self._limits())
        if mask.shape != (size[1], size[0]):
            raise Refusal(422, f"The field '{field}' is {mask.shape[1]}x{mask.shape[0]} but the image is "
                               f"{size[0]}x{size[1]}, so they do not line up.")
        return mask

    @staticmethod
    def boxes(boxes, size: tuple[int, int], field: str = "boxes") -> list[Box]:
        """``boxes`` checked: non-empty (x1 > x0, y1 > y0) and overlapping the image (422 otherwise)."""
        w, h = size
        out = []
        for box in boxes:
            x0, y0, x1, y1 = (float(v) for v in box)
            if not (x1 > x0 and y1 > y0):
                raise Refusal(422, f"The box {[x0, y0, x1, y1]} in '{field}' is empty: x1 must be greater than "
                                   f"x0 and y1 greater than y0.")
            if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
                raise Refusal(422, f"The box {[x0, y0, x1, y1]} in '{field}' lies outside the {w}x{h} image.")
            out.append((x0, y0, x1, y1))
        return out

    def _run(self, cancel: Optional[threading.Event], fn: Callable, *args, **kwargs) -> Any:
        """``fn`` under the model lock, unless the answer stopped being wanted while it waited; once it
        stops being wanted during the call, the models stop at their next block (:mod:`tools.stopping`)."""
        with self._model():
            if cancel is not None and cancel.is_set():
                self.failures["abandoned"] += 1  # /status: requests dropped before they used the model
                raise Cancelled("The request was abandoned before it started.")
            with abandon_flag(cancel):
                return fn(*args, **kwargs)

    # --- the tools (blocking; JSON-able answers) ----------------------------------------------

    def call(self, route: str, body: _Body, cancel: Optional[threading.Event] = None,
             deadline: Optional[float] = None) -> dict:
        """Answer one ``/caption``, ``/ground``, ``/segment`` or ``/score`` request, start to end."""
        raw, ticket = self.admit(route, body, cancel, deadline)
        with ticket:
            return getattr(self, f"_{route}")(body, raw, cancel)

    def _caption(self, body: CaptionBody, raw: dict[str, bytes], cancel) -> dict:
        return caption_to_wire(self._run(cancel, self.worker.caption, self.image(raw["image"])))

    def _ground(self, body: GroundBody, raw: dict[str, bytes], cancel) -> dict:
        return detections_to_wire(self._run(cancel, self.worker.ground, self.image(raw["image"]), body.phrase,
                                            box_threshold=body.box_threshold, text_threshold=body.text_threshold))

    def _segment(self, body: SegmentBody, raw: dict[str, bytes], cancel) -> dict:
        image = self.image(raw["image"])
        try:
            seg = self._run(cancel, self.worker.segment, image, self.boxes(body.boxes, image.size),
                            points=list(body.points), point_labels=body.point_labels)
        except ValueError as err:  # prompts that miss the image: the client's mistake, one sentence
            raise Refusal(422, str(err)) from err
        return segmentation_to_wire(seg)

    def _score(self, body: ScoreBody, raw: dict[str, bytes], cancel) -> dict:
        original, edited = self.image(raw["original"], "original"), self.image(raw["edited"], "edited")
        if edited.size != original.size:
            raise Refusal(422, f"The field 'edited' is {edited.size[0]}x{edited.size[1]} but 'original' is "
                               f"{original.size[0]}x{original.size[1]}.")
        box = self.boxes([body.box], original.size, "box")[0] if body.box is not None else None
        boxes = self.boxes(body.boxes, original.size) if body.boxes else []
        return scores_to_wire(self._run(
            cancel, self.worker.score, original, edited, mask=self.mask(raw.get("mask"), original.size), box=box,
            boxes=boxes, source_caption=body.source_caption, target_caption=body.target_caption,
            target_text=body.target_text, source_text=body.source_text))

    def prepare_edit(self, body: EditBody, progress: Optional[ProgressFn] = None,
                     cancel: Optional[threading.Event] = None, deadline: Optional[float] = None) -> EditJob:
        """Admit and decode an edit; the job holds its room in the memory budget until it is done."""
        cancel = cancel if cancel is not None else threading.Event()
        raw, ticket = self.admit("edit", body, cancel, deadline)
        try:
            image = self.image(raw["image"])
            return EditJob(image, self.mask(raw.get("mask"), image.size), body.request, progress, cancel, ticket)
        except BaseException:
            ticket.release()
            raise

    def edit(self, job: EditJob) -> dict:
        try:
            result = self.worker.edit(job.image, job.mask, job.request, progress=job.progress, cancel=job.cancel)
            return edit_result_to_wire(result)
        except Cancelled:
            self.failures["cancelled"] += 1  # /status: edits stopped because their answer was no longer wanted
            raise
        finally:
            job.ticket.release()

    def edit_batch(self, jobs: list[EditJob]) -> list[Any]:
        """Run several edits; InstructPix2Pix edits with the same work size and steps share one batched
        pipeline call (:func:`tools.worker.batch.run_grouped`), everything else runs one by one. Returns,
        per job, its answer or the exception it raised: one bad or cancelled job never fails the others."""
        items = [BatchItem(j.image, j.mask, j.request, j.progress, j.cancel) for j in jobs]

        def alone(item: BatchItem) -> Any:
            try:
                return self.worker.edit(item.image, item.mask, item.request, progress=item.progress,
                                        cancel=item.cancel)
            except Exception as err:  # noqa: BLE001 - this job's answer
                return err

        try:
            with self._model():
                answers = run_grouped(self.worker.registry, self.settings, items, alone)
        finally:
            for job in jobs:
                job.ticket.release()
        self.failures["cancelled"] += sum(isinstance(a, Cancelled) for a in answers)
        return [edit_result_to_wire(a) if isinstance(a, EditResult) else a for a in answers]

    # --- warm-up and status -------------------------------------------------------------------

    def warm_up(self) -> None:
        """Load every model and run a tiny call of each tool once (idempotent, never raises)."""
        with self._warm_lock:
            if self.ready:
                return
            started = time.perf_counter()
            try:
                self._warm()
                self.ready, self.warm_error = True, None
            except LocaleditError as err:
                self.warm_error = str(err)
            except Exception as err:  # noqa: BLE001 - /ready reports it; the process stays up
                log.exception("warm-up failed")
                self.warm_error = f"Warming up the models failed ({type(err).__name__}: {err})."[:500]
            self.warm_seconds = time.perf_counter() - started
            log.info("warm-up %s in %.1fs", "done" if self.ready else "failed", self.warm_seconds)

    def _warm(self) -> None:
        from PIL import Image

        from tools.edit import ROLES
        from tools.images import box_to_mask

        registry = getattr(self.worker, "registry", None)
        if registry is not None:
            for role in ("caption", "detector", "sam", "clip", *sorted(set(ROLES.values()))):
                registry.get(role)
        # at the real shape (the work size, 4:3), so the first user's call pays no kernel selection or
        # allocator growth for a new shape; 2 steps: the step count does not change the shapes
        side = int(getattr(getattr(self.worker, "settings", None), "max_side", 512) or 512)
        w_px, h_px = side, max(8, side * 3 // 4 // 8 * 8)
        image = Image.fromarray(np.stack([np.tile(np.linspace(0, 255, w_px, dtype=np.uint8), (h_px, 1)),
                                          np.tile(np.linspace(0, 255, h_px, dtype=np.uint8)[:, None], (1, w_px)),
                                          np.full((h_px, w_px), 128, np.uint8)], axis=-1))
        box = (w_px / 4, h_px / 4, w_px * 3 / 4, h_px * 3 / 4)
        w = self.worker
        w.caption(image)
        w.ground(image, "object")
        w.segment(image, [box])
        mask = box_to_mask(box, image.size)
        edited = w.edit(image, mask, EditRequest("ip2p-composite", "make it red", steps=2)).image
        w.score(image, edited, mask=mask, box=box, source_caption="a photo", target_caption="a red photo",
                target_text="red")

    def status(self) -> dict:
        return {**self.worker.status(), "kind": self.kind, "replica": self.replica, "pid": os.getpid(),
                "ready": self.ready, "warm_error": self.warm_error, "warm_seconds": self.warm_seconds,
                "uptime_s": round(time.time() - self.started, 1), "requests": dict(self.requests),
                "waiting_for_model": self.waiting,
                "failures": dict(self.failures), "memory_budget": self.budget.stats()}


# --------------------------------------------------------------------------- the HTTP app

def classify(err: BaseException, timeout: float) -> tuple[int, str]:
    """The HTTP status and one-sentence reason for an exception raised while answering.

    Only a failure of the worker itself (500) is logged with its traceback; a client's mistake is
    answered, counted in ``/status`` and otherwise kept out of the log.
    """
    if isinstance(err, Refusal):
        return err.status, err.detail
    if isinstance(err, asyncio.TimeoutError):
        return 504, f"The request took longer than the worker's {timeout:g} s limit."
    if isinstance(err, (ModelMissingError, WorkerUnavailableError)):
        return 503, str(err)
    if isinstance(err, Cancelled):
        return 499, str(err)
    if isinstance(err, LocaleditError):
        return 400, str(err)
    log.error("request failed", exc_info=err)
    return 500, f"The worker failed on this request ({type(err).__name__}); it is still serving."


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "body"
    msg = str(first.get("msg", "bad value")).rstrip(".")
    return f"The request field '{where}' is invalid: {msg}."


def parse_body(data: bytes, model: type[_Body]) -> _Body:
    """A request body as ``model``: strict JSON (400), then field by field (422)."""
    try:
        return model.model_validate(parse_json(data))
    except ValidationError as err:
        raise Refusal(422, _first_error(err)) from None


async def read_body(request: Request, limit: int, upload_timeout: float, what: str = "the worker's") -> bytes:
    """The whole body, at most ``limit`` bytes (413), within ``upload_timeout`` seconds (408)."""
    declared = request.headers.get("content-length", "")
    too_big = Refusal(413, f"The request is larger than {what} {human_bytes(limit)} limit.")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks, size = [], 0

    async def collect() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)

    try:
        await asyncio.wait_for(collect(), upload_timeout)
    except asyncio.TimeoutError:
        raise Refusal(408, f"The request body did not arrive within {what} {upload_timeout:g} s "
                           f"upload limit.") from None
    except ClientDisconnect:
        raise Refusal(499, "The client went away before sending the whole request.") from None
    return b"".join(chunks)


async def disconnected(request: Request) -> None:
    """Returns once the client has gone away (call only after the body was read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def in_thread(fn: Callable, *args) -> Any:
    """Run blocking ``fn(*args)`` in the default thread pool (cancelling the await abandons it)."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


ROUTES: dict[str, type[_Body]] = {"caption": CaptionBody, "ground": GroundBody, "segment": SegmentBody,
                                  "score": ScoreBody}


def create_app(service: WorkerService, token: Optional[str] = None,
               edit_runner: Optional[Callable[[EditJob], Awaitable[dict]]] = None, warm_in_background: bool = True,
               host: Optional[str] = None):
    """The FastAPI app serving ``service``, behind :class:`tools.http_guard.ServiceGuard`.

    Args:
        service: the vision tools.
        token: the bearer token every route but the probes requires (None: no check).
        host: the address it listens on: on loopback, clients and ``Host`` must be loopback (None: served
            in-process, only the origin and content-type rules apply).
        edit_runner: runs one :class:`EditJob` and returns its answer (default: ``service.edit`` in a
            thread; Ray Serve passes its ``@serve.batch`` method).
        warm_in_background: start ``service.warm_up`` in a thread when the app starts.
    """
    limit = request_limit(service.settings)
    timeout = float(service.settings.worker_timeout)
    upload_timeout = float(service.settings.upload_timeout)
    run_edit = edit_runner or (lambda job: in_thread(service.edit, job))

    @asynccontextmanager
    async def lifespan(app):
        if warm_in_background:
            threading.Thread(target=service.warm_up, name="warm-up", daemon=True).start()
        yield

    app = FastAPI(title="localedit worker", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    def error(status: int, detail: str, **headers: str) -> JSONResponse:
        return JSONResponse({"detail": detail}, status_code=status, headers=headers or None)

    routes = {f"/{name}": "application/json" for name in (*ROUTES, "edit")}
    app.add_middleware(ServiceGuard, loopback_only=host is not None and is_loopback(host), token=token,
                       origins=service.settings.api_origins, routes={**routes, **dict.fromkeys((*OPEN_PATHS, "/status"))},
                       open_paths=OPEN_PATHS, counter=service.requests, what="this worker")

    @app.middleware("http")
    async def count(request: Request, call_next):  # outside the guard: its refusals are counted too
        path = request.url.path
        response = await call_next(request)
        if response.status_code >= 400 and path not in OPEN_PATHS:
            service.failures[str(response.status_code)] += 1
        response.headers[REPLICA_HEADER] = service.replica
        return response

    async def read(request: Request, model: type[_Body]) -> _Body:
        return await in_thread(parse_body, await read_body(request, limit, upload_timeout), model)

    async def answer(request: Request, work: Awaitable[dict], cancel: threading.Event,
                     deadline: float) -> JSONResponse:
        """``work``'s answer, or its error; abandoned (``cancel`` set) when the deadline passes or
        the client disconnects first, so queued work never starts and an edit stops at its next step."""
        task = asyncio.ensure_future(asyncio.wait_for(work, max(0.0, deadline - time.monotonic())))
        gone = asyncio.ensure_future(disconnected(request))
        try:
            await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                task.cancel()
                task.add_done_callback(lambda t: t.cancelled() or t.exception())
                return error(499, "The client went away before the answer was ready.")
            try:
                return JSONResponse(task.result())
            except Exception as err:  # noqa: BLE001 - every failure answers this request only
                return error(*classify(err, timeout))
        finally:
            cancel.set()
            gone.cancel()

    def tool_route(model: type[_Body], route_name: str):
        async def route(request: Request) -> JSONResponse:
            cancel = threading.Event()  # set once the answer is not wanted: queued work never starts
            deadline = time.monotonic() + timeout
            try:
                body = await read(request, model)
            except Refusal as err:
                return error(err.status, err.detail)
            return await answer(request, in_thread(service.call, route_name, body, cancel, deadline), cancel,
                                deadline)
        return route

    for name, model in ROUTES.items():
        app.add_api_route(f"/{name}", tool_route(model, name), methods=["POST"], name=name)

    @app.post("/edit")
    async def edit(request: Request):
        cancel = threading.Event()  # set when the answer is no longer wanted: the edit stops at its next step
        deadline = time.monotonic() + timeout
        try:
            body = await read(request, EditBody)
        except Refusal as err:
            return error(err.status, err.detail)
        if not body.stream:
            return await answer(request, _edit(body, None, cancel, deadline), cancel, deadline)
        return StreamingResponse(_stream(body, cancel, deadline), media_type="application/x-ndjson")

    async def _edit(body: EditBody, progress: Optional[ProgressFn], cancel: threading.Event, deadline: float) -> dict:
        job = await in_thread(service.prepare_edit, body, progress, cancel, deadline)
        try:
            return await run_edit(job)
        finally:
            job.ticket.release()  # (already given back when the edit ran; this covers a runner that never did)

    async def _stream(body: EditBody, cancel: threading.Event, deadline: float):
        """NDJSON: ``{"progress": [step, total]}`` lines, then ``{"result": ...}`` or ``{"error": ...}``."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def progress(step: int, total: int) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, {"progress": [int(step), int(total)]})

        task = asyncio.ensure_future(asyncio.wait_for(_edit(body, progress, cancel, deadline),
                                                      max(0.0, deadline - time.monotonic())))
        task.add_done_callback(lambda _: loop.call_soon(queue.put_nowait, None))
        try:
            while (item := await queue.get()) is not None:
                yield json.dumps(item) + "\n"
            try:
                yield json.dumps({"result": task.result()}) + "\n"
            except Exception as err:  # noqa: BLE001
                status, detail = classify(err, timeout)
                yield json.dumps({"error": {"status": status, "detail": detail}}) + "\n"
        finally:  # done, timed out, or the client went away: the edit stops at its next step, quietly
            cancel.set()
            if not task.done():
                task.add_done_callback(lambda t: t.cancelled() or t.exception())

    @app.get("/health")
    async def health() -> dict:
        return {"ok": True, "replica": service.replica}

    @app.get("/ready")
    async def ready():
        if service.ready:
            return {"ready": True, "replica": service.replica}
        return error(503, service.warm_error or "The worker is still loading and warming up its models.")

    @app.get("/status")
    async def status() -> dict:
        return await in_thread(service.status)

    return app


# --------------------------------------------------------------------------- binding and running

def serve_http(settings: Settings, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
               token: Optional[str] = None) -> None:
    """Run the worker with uvicorn until interrupted (the port is taken before the banner)."""
    check_bind(host, token)
    sock = bind(host, port)
    app = create_app(WorkerService(settings), token=token, host=host)
    port = sock.getsockname()[1]
    print(f"localedit worker on http://{host}:{port} (token {'required' if token else 'not required'}); "
          f"warming up, GET /ready says when done", file=sys.stderr, flush=True)
    serve_app(app, sock, settings.header_timeout)
