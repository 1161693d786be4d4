"""``localedit api``: OpenAI-compatible image editing in front of the localized pipeline.

    localedit api                                 # http://127.0.0.1:8900/v1, no token on loopback
    client = openai.OpenAI(base_url="http://127.0.0.1:8900/v1", api_key="unused")
    client.images.edit(model="localedit", image=open("cat.png", "rb"), prompt="make the cat red")

``POST /v1/images/edits`` takes OpenAI's multipart form: ``image`` (or ``image[]``: the first is
edited), ``prompt`` (the instruction), optional ``mask`` (a PNG of the image's size whose fully
transparent pixels, alpha 0, mark the region to edit: it replaces grounding, as a click selection does
in the chat), ``n`` (1-4: the first edit, then "try again" for each further one), ``size`` (``auto``
or ``WxH``: the answer is resized to it; ``auto`` keeps the input's size, so pixels outside the
region stay the input's), ``output_format`` (``png``, ``jpeg``, ``webp``), ``user`` /
``safety_identifier``. The answer is ``{"created", "data": [{"b64_json", "revised_prompt"}], "size",
"output_format", ...}``; every refusal is OpenAI's error JSON ``{"error": {"message", "type",
"param", "code"}}``. ``GET /v1/models`` lists the one model, ``localedit`` (any ``model`` is accepted).

**Conversations.** Each request runs as a turn of an :class:`agent.runtime.session.Session`. A request
with a ``user`` (or ``safety_identifier``) continues that user's conversation: when its image is
the one the conversation last produced, it is not uploaded again, so "now make it blue" edits the
region of the last edit, "undo" works, and a clarifying question ("which cat?", answered as an
error with code ``clarification_needed``) is answered by the next request's prompt. Without one,
every request is a conversation of its own.

**Limits** are the worker's: the body at most two uploads plus 1 MiB
(:func:`tools.worker.server.request_limit`, 413), within ``upload_timeout`` (408), each image
within the pixel, side and aspect-ratio limits, the whole request within ``worker_timeout``
seconds per image asked for (504; the turn is cancelled). The token rules are the worker's too:
``--token-file`` / ``LOCALEDIT_WORKER_TOKEN``; without one only loopback may listen; the
:class:`~tools.http_guard.ServiceGuard` checks ``Host``, ``Origin`` and the content type.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import re
import time
from typing import Any, Optional

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image

from agent.runtime.session import Conversations, Reply, Session
from agent.runtime.store import ImageStore
from tools.http_guard import ServiceGuard, is_loopback
from tools.images import check_dimensions, load_image, mask_bbox, probe_image
from tools.types import LocaleditError
from tools.worker.limits import Refusal
from tools.worker.server import read_body, request_limit

DEFAULT_PORT = 8900
MODEL_ID = "localedit"
MAX_N = 4
FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
EDITS, MODELS, HEALTH = "/v1/images/edits", "/v1/models", "/health"
_SIZE_RE = re.compile(r"^\s*(\d{1,5})\s*x\s*(\d{1,5})\s*$")


class ApiError(Exception):
    """A request refused in OpenAI's error format."""

    def __init__(self, status: int, message: str, param: Optional[str] = None, code: Optional[str] = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def response(self) -> JSONResponse:
        return JSONResponse(error_json(self.status, self.message, self.param, self.code), status_code=self.status)


def error_json(status: int, message: str, param: Optional[str] = None, code: Optional[str] = None) -> dict:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    kind = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
            429: "rate_limit_error"}.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_body(status: int, message: str) -> bytes:
    """:func:`error_json` encoded, for the guard's refusals."""
    import json

    return json.dumps(error_json(status, message)).encode()


def thread_of(user: Optional[str]) -> Optional[str]:
    """The conversation thread of an API user (None: a new one per request)."""
    user = (user or "").strip()
    return "api-" + hashlib.sha256(user.encode()).hexdigest()[:20] if user else None


def parse_size(size: Optional[str], image: tuple[int, int]) -> tuple[int, int]:
    """``auto`` / None -> the image's size; ``"WxH"`` -> ``(W, H)`` (400 otherwise)."""
    if size in (None, "", "auto"):
        return image
    match = _SIZE_RE.match(size)
    if not match or not all(0 < int(v) <= 8192 for v in match.groups()):
        raise ApiError(400, f"size {size!r} is not 'auto' or WIDTHxHEIGHT (e.g. '1024x1024').", "size")
    return int(match.group(1)), int(match.group(2))


def mask_region(data: bytes, size: tuple[int, int], limits: dict[str, Any]) -> np.ndarray:
    """The region an OpenAI mask marks: its fully transparent pixels, ``(H, W)`` bool."""
    try:
        probe_image(data, name="The mask", **limits)
        mask = Image.open(io.BytesIO(data))
        mask.load()
    except LocaleditError as err:
        raise ApiError(400, str(err), "mask") from None
    except Exception:  # noqa: BLE001 - PIL raises many kinds for a broken file
        raise ApiError(400, "The mask is not an image PIL can read; send a PNG with an alpha channel.", "mask") from None
    if mask.size != size:
        raise ApiError(400, f"The mask is {mask.size[0]}x{mask.size[1]} but the image is {size[0]}x{size[1]}; "
                            f"they must be the same size.", "mask")
    if "A" not in mask.getbands() and "transparency" not in mask.info:
        raise ApiError(400, "The mask has no alpha channel: send a PNG whose fully transparent pixels mark "
                            "the area to edit.", "mask")
    region = np.asarray(mask.convert("RGBA"))[..., 3] == 0
    if not region.any():
        raise ApiError(400, "The mask has no fully transparent pixel, so it marks nothing to edit.", "mask")
    return region


def _int(value: Optional[str], name: str, default: int, low: int, high: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number, not {value!r}.", name) from None
    if not low <= number <= high:
        raise ApiError(400, f"{name} must be between {low} and {high} here, not {number}.", name)
    return number


class ImagesApi:
    """The edits of the API on shared :class:`~agent.runtime.session.Conversations` (blocking calls)."""

    def __init__(self, conversations: Conversations):
        self.conversations = conversations
        s = conversations.settings
        self.limits = {"max_bytes": s.max_upload_bytes, "max_pixels": s.max_image_pixels,
                       "max_side": s.max_image_side, "max_aspect": s.max_aspect_ratio}

    def session(self, user: Optional[str]) -> Session:
        return self.conversations.session(thread_of(user))

    def edit(self, session: Session, image: bytes, prompt: str, mask: Optional[bytes] = None, n: int = 1,
             size: Optional[str] = None, output_format: str = "png", keep: bool = True) -> dict:
        """One ``/v1/images/edits`` request as turns of ``session``; the OpenAI answer.

        ``keep``: the conversation goes on (a ``user`` was given); else its thread is deleted after the
        answer (the images stay in the content-addressed store, which other threads may share)."""
        try:
            return self._edit(session, image, prompt, mask, n, size, output_format)
        finally:
            if not keep:
                self.conversations.checkpointer.delete_thread(session.thread_id)

    def _edit(self, session: Session, image: bytes, prompt: str, mask: Optional[bytes], n: int,
              size: Optional[str], output_format: str) -> dict:
        try:
            photo = load_image(image, **self.limits)
        except LocaleditError as err:
            raise ApiError(400, str(err), "image") from None
        out_size = parse_size(size, photo.size)
        check_dimensions(out_size, "The size asked for", self.limits["max_pixels"], self.limits["max_side"],
                         self.limits["max_aspect"])
        region = mask_region(mask, photo.size, self.limits) if mask is not None else None
        current = session.current_image()
        if current is None or current.size != photo.size or not np.array_equal(np.asarray(current.convert("RGB")),
                                                                             np.asarray(photo)):
            check(session.send("", image=photo), uploading=True)
        if region is not None:
            self.select(session, region)
        replies = [check(session.send(prompt))]
        while len(replies) < n:
            replies.append(check(session.send("try again")))
        record = session.record() or {}
        revised = (record.get("plan") or {}).get("instruction") or prompt
        data = [{"b64_json": encode(ImageStore.open(r.images["edited"]), out_size, output_format),
                 "revised_prompt": revised} for r in replies]
        return {"created": int(time.time()), "data": data, "background": "opaque", "output_format": output_format,
                "quality": "auto", "size": f"{out_size[0]}x{out_size[1]}"}

    def select(self, session: Session, region: np.ndarray) -> None:
        """The mask's region becomes the next edit's (as a click selection does in the chat)."""
        store = self.conversations.store
        box = mask_bbox(region)
        session.set_selection({"base": session.current_image_path(), "points": [], "box": list(box), "label": None,
                               "mask": store.put_mask(region), "note": "the request's mask"})


def check(reply: Reply, uploading: bool = False) -> Reply:
    """``reply`` if it made an edit (or took the photo), else the matching :class:`ApiError`."""
    if reply.busy:
        raise ApiError(429, reply.text, code="conversation_busy")
    if reply.cancelled:
        raise ApiError(504, reply.text, code="cancelled")
    if reply.question:
        raise ApiError(400, f"{reply.text} (Send the answer as the next prompt with the same 'user'.)",
                       "prompt", "clarification_needed")
    if reply.error:
        raise ApiError(400, reply.text, "image" if uploading else "prompt")
    if not uploading and "edited" not in reply.images:
        raise ApiError(400, f"Nothing was edited: {reply.text}", "prompt", "no_edit")
    return reply


def encode(image: Image.Image, size: tuple[int, int], output_format: str) -> str:
    """``image`` at ``size`` in ``output_format``, base64."""
    if image.size != tuple(size):
        image = image.resize(size, Image.LANCZOS)
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format=FORMATS[output_format])
    return base64.b64encode(buf.getvalue()).decode()


async def _form(request: Request, limit: int, upload_timeout: float):
    """The multipart form of ``request``, read within the worker's body limits."""
    body = await read_body(request, limit, upload_timeout, "this API's")
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        return await Request(request.scope, replay).form(max_files=4, max_fields=40, max_part_size=limit)
    except Exception as err:  # noqa: BLE001 - a malformed multipart body
        raise ApiError(400, f"The request is not a valid multipart form ({type(err).__name__}).") from None


async def _file(form, *names: str) -> Optional[bytes]:
    for name in names:
        value = form.get(name)
        if value is not None and hasattr(value, "read"):
            return await value.read()
        if isinstance(value, str) and value:
            raise ApiError(400, f"{name} must be a file (multipart upload), not a text field.", name)
    return None


def create_api_app(conversations: Conversations, token: Optional[str] = None, host: Optional[str] = None) -> FastAPI:
    """The FastAPI app of ``localedit api`` on ``conversations``, behind the guard (module docstring)."""
    api = ImagesApi(conversations)
    settings = conversations.settings
    limit, upload_timeout = request_limit(settings), float(settings.upload_timeout)
    app = FastAPI(title="localedit OpenAI-compatible API", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(ServiceGuard, loopback_only=host is not None and is_loopback(host), token=token,
                       origins=settings.api_origins, routes={EDITS: "multipart/form-data", MODELS: None, HEALTH: None},
                       open_paths=(HEALTH,), error_body=error_body, what="this API")

    @app.get(HEALTH)
    async def health() -> dict:
        return {"ok": True}

    @app.get(MODELS)
    async def models() -> dict:
        return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "localedit"}]}

    @app.post(EDITS)
    async def edits(request: Request):
        try:
            form = await _form(request, limit, upload_timeout)
            image = await _file(form, "image", "image[]")
            if image is None:
                raise ApiError(400, "Send the image to edit as the multipart file 'image'.", "image")
            prompt = str(form.get("prompt") or "").strip()
            if not prompt:
                raise ApiError(400, "Send the instruction as 'prompt', e.g. 'make the cat red'.", "prompt")
            fmt = str(form.get("output_format") or "png").lower()
            if fmt not in FORMATS:
                raise ApiError(400, f"output_format {fmt!r} is not one of {', '.join(FORMATS)}.", "output_format")
            if str(form.get("response_format") or "b64_json") != "b64_json":
                raise ApiError(400, "Only response_format 'b64_json' is served (no image URLs).", "response_format")
            if str(form.get("stream") or "false").lower() not in ("false", "0"):
                raise ApiError(400, "Streaming is not served; leave 'stream' out.", "stream")
            n = _int(form.get("n"), "n", 1, 1, MAX_N)
            mask = await _file(form, "mask")
            user = form.get("safety_identifier") or form.get("user")
            session = api.session(user)
        except ApiError as err:
            return err.response()
        except Refusal as err:
            return ApiError(err.status, err.detail).response()
        work = asyncio.get_running_loop().run_in_executor(None, api.edit, session, image, prompt, mask, n,
                                                          form.get("size"), fmt, bool(thread_of(user)))
        try:
            return JSONResponse(await asyncio.wait_for(asyncio.shield(work), float(settings.worker_timeout) * n))
        except asyncio.TimeoutError:
            session.cancel()  # the edit stops at its next diffusion step
            return ApiError(504, f"The edit took longer than the {float(settings.worker_timeout) * n:g} s "
                                 f"limit and was stopped.", code="timeout").response()
        except ApiError as err:
            return err.response()
        except LocaleditError as err:
            return ApiError(400, str(err)).response()

    return app
