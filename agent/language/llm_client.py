"""The HTTP side of the LLM: the chat model, each turn's time budget, retries, server capabilities, redaction.

``make_llm`` builds a ``ChatOpenAI`` from the settings (``LOCALEDIT_LLM_MODEL``, ``LOCALEDIT_LLM_BASE_URL``,
``LOCALEDIT_LLM_API_KEY``, falling back to ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``) whose HTTP client
is a ``BoundedTransport``: every request's timeouts are cut to what is left of the turn's budget and a
response body is read only up to ``MAX_RESPONSE_BYTES``, so neither a hung server nor one that
streams garbage can hold a turn past its budget.

``ModelCaller.ask`` sends one list of messages:

* with the photo when the messages carry one, unless this process has learnt that the server
  refuses images: then it resends once without them and remembers that (``agent.language.vision``);
* with the tool definitions, unless this process has learnt that the server rejects them (vLLM
  without ``--enable-auto-tool-choice`` answers 400, Ollama with a model without tool support 400
  "does not support tools", llama.cpp without ``--jinja`` 500): then it resends once without tools
  (the prompt asks for JSON in the text), remembers that for the server, and says so once;
* retrying a connection error, 429 or 5xx up to ``LOCALEDIT_LLM_RETRIES`` times, but never a timed-out
  request to a local server (it is still generating the abandoned answer) and never past the budget.

``redact`` is the one place API keys are removed from text; ``REDACT`` is a logging filter that
applies it to every record of the agent's LLM loggers (message, arguments and traceback).
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence
from urllib.parse import urlsplit

from agent.language import refusals

log = logging.getLogger(__name__)

PLACEHOLDER_KEY = "not-needed"
"""API key sent to a local server (a base URL is set, no key is)."""
MAX_RESPONSE_BYTES = 512 * 1024
"""Largest response body read from the model; a plan is under 2 KB."""
RETRY_PAUSE = 0.5
"""Seconds before the first retry (doubled each time, never past the turn's budget)."""
RETRY_STATUSES = {408, 409, 429, 500, 502, 503, 504}
"""HTTP statuses worth one more try (unless the body says the request's tools are the problem)."""
TOOL_ERROR_STATUSES = {400, 404, 422, 500, 501}
"""Statuses with which servers reject tool definitions they cannot handle."""
_TOOL_ERROR_RE = re.compile(r"\btools?\b|tool[_ ]choice|tool[- ]call|function[- ]call|--jinja|\bfunctions?\b",
                            re.I)


# ------------------------------------------------------------------------------------------
# redaction: the one place
# ------------------------------------------------------------------------------------------

_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
_KEY_RE = re.compile(r"\b(?:sk|key|api|pk|rk|gsk|xai|hf)[-_][A-Za-z0-9_-]{8,}|\bBearer\s+[A-Za-z0-9._~+/=-]{8,}",
                     re.I)


def register_secret(secret: Optional[str]) -> None:
    """Remember a key so ``redact`` removes it wherever it appears (keys shorter than 8 are not worth it)."""
    if secret and len(secret) >= 8:
        with _SECRETS_LOCK:
            _SECRETS.add(secret)


def redact(text: str) -> str:
    """``text`` with every registered key, OPENAI_API_KEY / LOCALEDIT_LLM_API_KEY and anything shaped
    like a key (``sk-...``, ``Bearer ...``) replaced by ``[key]``."""
    text = str(text)
    with _SECRETS_LOCK:
        secrets = set(_SECRETS)
    for name in ("OPENAI_API_KEY", "LOCALEDIT_LLM_API_KEY"):
        value = os.environ.get(name)
        if value and len(value) >= 8:
            secrets.add(value)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "[key]")
    return _KEY_RE.sub("[key]", text)


class RedactFilter(logging.Filter):
    """Redacts a log record in place: the formatted message and the traceback text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record whose arguments do not fit its format
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


REDACT = RedactFilter()
"""Attached to every logger of the LLM path (``agent.language.llm``, ``agent.language.llm_client``, ``agent.language.arbiter``)."""
log.addFilter(REDACT)


def describe_error(exc: BaseException) -> str:
    """One redacted sentence about a failed request: ``the language model request failed (APITimeoutError: ...)``."""
    text = str(exc).strip()
    detail = redact(text.splitlines()[0] if text else "")[:160]
    return f"the language model request failed ({type(exc).__name__}{': ' + detail if detail else ''})"


# ------------------------------------------------------------------------------------------
# the server
# ------------------------------------------------------------------------------------------


def is_local_server(base_url: Optional[str]) -> bool:
    """Whether ``base_url`` is on this machine or the local network (loopback, private or link-local
    address, ``localhost``, a ``.local`` / ``.internal`` / ``.lan`` name, or a bare host name such as a
    compose service ``ollama``). None (OpenAI's API) is not."""
    if not base_url:
        return False
    host = (urlsplit(base_url if "//" in base_url else "//" + base_url).hostname or "").lower()
    if not host:
        return False
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal", ".lan", ".home.arpa")):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "." not in host
    return ip.is_loopback or ip.is_private or ip.is_link_local


def is_openai_api(base_url: Optional[str]) -> bool:
    """Whether requests go to OpenAI's own API (which wants only ``max_completion_tokens``)."""
    host = (urlsplit(base_url).hostname or "") if base_url else "api.openai.com"
    return host == "api.openai.com" or host.endswith(".openai.azure.com")


def server_of(llm: Any) -> str:
    """A key for the server and model behind a chat model: ``"http://127.0.0.1:8000/v1 qwen"``."""
    base = getattr(llm, "openai_api_base", None) or getattr(llm, "base_url", None) or "openai"
    model = getattr(llm, "model_name", None) or getattr(llm, "model", None) or type(llm).__name__
    return f"{base} {model}"


def status_of(exc: BaseException) -> Optional[int]:
    """The HTTP status of a failed request, or None (connection error, timeout, bad body)."""
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def is_tools_error(exc: BaseException) -> bool:
    """Whether an error is a server refusing the request's tool definitions (vLLM 400 "auto" tool
    choice requires --enable-auto-tool-choice, Ollama 400 "does not support tools", llama.cpp 500
    "tools param requires --jinja flag", "Unsupported param: tools")."""
    if status_of(exc) not in TOOL_ERROR_STATUSES:
        return False
    text = " ".join(filter(None, (str(exc), str(getattr(exc, "body", "") or ""))))
    return bool(_TOOL_ERROR_RE.search(text))


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_timeout(exc: BaseException) -> bool:
    """Whether a request failed by timing out (the client's read timeout or the turn's budget)."""
    return any("timeout" in type(e).__name__.lower() or isinstance(e, TimeoutError) for e in _causes(exc))


def is_retryable(exc: BaseException, local: bool) -> bool:
    """Whether one more try may help: a connection error, 408/409/429/5xx, or a timeout of a remote
    server. Never a timeout of a local server, an over-long answer, or a malformed one."""
    if any(isinstance(e, ResponseTooLarge) for e in _causes(exc)):
        return False
    if is_timeout(exc):
        return not local
    status = status_of(exc)
    if status is not None:
        return status in RETRY_STATUSES
    return "connection" in type(exc).__name__.lower() or isinstance(exc, ConnectionError)


# ------------------------------------------------------------------------------------------
# the transport: timeouts cut to the turn's deadline, bodies cut to MAX_RESPONSE_BYTES
# ------------------------------------------------------------------------------------------

_DEADLINE: contextvars.ContextVar[Optional[float]] = contextvars.ContextVar("localedit_llm_deadline", default=None)


@contextlib.contextmanager
def request_deadline(deadline: Optional[float]) -> Iterator[None]:
    """Within the block, requests through a ``BoundedTransport`` end by ``deadline`` (``time.monotonic``)."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _httpx() -> Any:
    """The httpx library the installed OpenAI SDK is built on (``httpx2`` for openai>=3, else ``httpx``)."""
    try:
        from langchain_openai._compat import httpx  # documented for objects handed to the SDK client
    except ImportError:  # pragma: no cover - older langchain-openai
        import httpx
    return httpx


class ResponseTooLarge(Exception):
    """The server sent more than ``MAX_RESPONSE_BYTES``: garbage, not a plan."""


def _bounded_transport_class() -> type:
    httpx = _httpx()

    class _Stream(httpx.SyncByteStream):
        def __init__(self, inner: Any, request: Any, deadline: Optional[float], limit: int):
            self._inner, self._request, self._deadline, self._limit = inner, request, deadline, limit

        def __iter__(self) -> Iterator[bytes]:
            total = 0
            for chunk in self._inner:
                total += len(chunk)
                if total > self._limit:
                    raise httpx.ReadError(f"the answer exceeds {self._limit} bytes",
                                          request=self._request) from ResponseTooLarge(total)
                if self._deadline is not None and time.monotonic() > self._deadline:
                    raise httpx.ReadTimeout("the turn's language-model time ran out", request=self._request)
                yield chunk

        def close(self) -> None:
            self._inner.close()

    class BoundedTransport(httpx.HTTPTransport):
        """``httpx.HTTPTransport`` whose requests end by the current ``request_deadline`` and whose
        response bodies stop at ``limit`` bytes."""

        def __init__(self, limit: int = MAX_RESPONSE_BYTES, **kwargs: Any):
            super().__init__(**kwargs)
            self.limit = limit

        def handle_request(self, request: Any) -> Any:
            deadline = _DEADLINE.get()
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise httpx.ConnectTimeout("the turn's language-model time ran out", request=request)
                timeouts = dict(request.extensions.get("timeout") or {})
                request.extensions["timeout"] = {
                    k: left if timeouts.get(k) is None else min(timeouts[k], left)
                    for k in ("connect", "read", "write", "pool")}
            response = super().handle_request(request)
            response.stream = _Stream(response.stream, request, deadline, self.limit)
            return response

    return BoundedTransport


_TRANSPORT_CLASS: Optional[type] = None


def bounded_http_client(limit: int = MAX_RESPONSE_BYTES) -> Any:
    """An ``openai.DefaultHttpxClient`` on a ``BoundedTransport`` (for ``ChatOpenAI(http_client=...)``)."""
    global _TRANSPORT_CLASS
    import openai

    if _TRANSPORT_CLASS is None:
        _TRANSPORT_CLASS = _bounded_transport_class()
    return openai.DefaultHttpxClient(transport=_TRANSPORT_CLASS(limit=limit))


# ------------------------------------------------------------------------------------------
# the model
# ------------------------------------------------------------------------------------------


def make_llm(settings: Any, timeout: Optional[float] = None) -> Optional[Any]:
    """A ``ChatOpenAI`` for ``settings.llm_model``, or None when no LLM is configured.

    An LLM needs ``llm_model`` and ``llm_base_url`` or ``llm_api_key`` (each falling back to the
    OpenAI variable, also when it was set after the settings were made). A base URL with no key (a local server) gets a placeholder key. Answers are
    capped at ``llm_max_tokens``, sent as ``max_completion_tokens`` and, to servers other than
    OpenAI's (Ollama ignores the former), as ``max_tokens`` too. Requests time out after
    ``timeout`` (default ``llm_timeout``); retries are ``ModelCaller``'s, not the SDK's.
    """
    model = getattr(settings, "llm_model", None)
    secret = getattr(settings, "llm_api_key", None)
    # the settings read the OpenAI variables when they were made; a variable set since still counts
    key = (secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret) \
        or os.environ.get("OPENAI_API_KEY") or None
    base_url = getattr(settings, "llm_base_url", None) or os.environ.get("OPENAI_BASE_URL") or None
    if not model or not (key or base_url):
        return None
    register_secret(key)
    from langchain_openai import ChatOpenAI

    cap = int(getattr(settings, "llm_max_tokens", 200))
    extra = None if is_openai_api(base_url) else {"max_tokens": cap}
    return ChatOpenAI(model=model, temperature=0, timeout=timeout or float(getattr(settings, "llm_timeout", 30.0)),
                      max_retries=0, max_tokens=cap, api_key=key or PLACEHOLDER_KEY, base_url=base_url,
                      http_client=bounded_http_client(), extra_body=extra)


class BudgetSpent(TimeoutError):
    """The turn's LLM time ran out before the model answered."""


@dataclass(frozen=True)
class Asked:
    """One answer of the model: the message, whether it was asked with tools, and a note to say once."""

    answer: Any
    with_tools: bool
    note: str = ""


class ModelCaller:
    """Sends messages to one chat model within a deadline (see the module docstring).

    ``tools``: the tool schemas to bind (None: never send tools). ``retries``: extra tries of a
    retryable failure. The server key (``server_of``) is what the capability memory is kept by.
    """

    def __init__(self, llm: Any, tools: Optional[Sequence[Any]] = None, retries: int = 1):
        self.llm = llm
        self.retries = max(0, int(retries))
        self.server = server_of(llm)
        self.local = is_local_server(getattr(llm, "openai_api_base", None))
        self.with_tools = None
        if tools:
            try:
                self.with_tools = llm.bind_tools(list(tools))
            except Exception as e:  # noqa: BLE001 - a model with no tool calling still answers JSON
                log.info("the chat model cannot bind tools (%s); asking for JSON answers", e)

    @property
    def uses_tools(self) -> bool:
        """Whether the next request will carry the tool definitions."""
        return self.with_tools is not None and self.server not in refusals.TOOLS

    images_note = ""

    def _images_allowed(self, messages: Sequence[Any]) -> list[Any]:
        """``messages``, without their images for a server known to refuse them (:mod:`agent.language.vision`)."""
        from agent.language import vision

        return vision.without_images(messages) if self.server in refusals.IMAGES else list(messages)

    def _images_refused(self, exc: BaseException, messages: Sequence[Any]) -> bool:
        """Whether ``exc`` is the server refusing the images of ``messages`` (then remembered, noted once)."""
        from agent.language import vision

        if not vision.has_images(messages) or not vision.is_images_error(exc, status_of(exc)):
            return False
        detail = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else "")[:120]
        self.images_note = ""
        if refusals.IMAGES.remember(self.server):
            self.images_note = (f"the LLM server does not accept images (HTTP {status_of(exc)}: {detail}); "
                                "it gets the photo's caption from now on")
        log.info("%s refuses images (HTTP %s: %s); resending without them", self.server, status_of(exc), detail)
        return True

    def ask(self, messages: Sequence[Any], deadline: float) -> Asked:
        """The model's answer to ``messages``, by ``deadline`` (``time.monotonic``).

        Raises the last error when the model cannot answer (``BudgetSpent`` when time ran out).
        """
        note, tries = "", 0
        messages = self._images_allowed(messages)
        while True:
            tools = self.uses_tools
            left = deadline - time.monotonic()
            if left <= 0.05:
                raise BudgetSpent("the turn's time for the language model ran out")
            try:
                with request_deadline(deadline):
                    answer = (self.with_tools if tools else self.llm).invoke(list(messages))
                return Asked(answer, tools, note)
            except Exception as e:  # noqa: BLE001 - sorted below; the caller falls back to the parser
                if self._images_refused(e, messages):
                    note = note or self.images_note
                    messages = self._images_allowed(messages)
                    continue
                if tools and is_tools_error(e):
                    detail = redact(str(e).strip().splitlines()[0] if str(e).strip() else "")[:120]
                    if refusals.TOOLS.remember(self.server):
                        note = ("the LLM server does not accept tool definitions "
                                f"(HTTP {status_of(e)}: {detail}); asking it for JSON in the text from now on")
                    log.info("%s rejects tools (HTTP %s: %s); resending without them", self.server,
                             status_of(e), detail)
                    continue
                if time.monotonic() >= deadline - 0.05 and is_timeout(e):
                    raise BudgetSpent("the turn's time for the language model ran out") from e
                if tries < self.retries and is_retryable(e, self.local):
                    tries += 1
                    pause = min(RETRY_PAUSE * 2 ** (tries - 1), max(0.0, deadline - time.monotonic() - 0.5))
                    log.warning("LLM request failed (%s); retry %d of %d in %.1f s", describe_error(e), tries,
                                self.retries, pause)
                    time.sleep(pause)
                    continue
                raise
